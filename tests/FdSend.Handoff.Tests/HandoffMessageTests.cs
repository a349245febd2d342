// SPDX-License-Identifier: MIT
// The handoff protocol's codec (HandoffMessage): what a peer could get wrong is a
// HandoffProtocolException, and what one side encodes the other parses back.
using System.Text;

namespace FdSend.Handoff.Tests;

[TestFixture]
public sealed class HandoffMessageTests
{
    private static readonly object[] Malformed =
    [
        new object[] { "", "no type line" },
        new object[] { "\n", "no type line" },
        new object[] { "hello", "no type line" },
        new object[] { "bogus\n", "Unknown message type" },
        new object[] { "HELLO\n", "Unknown message type" },
        new object[] { "hello \n", "Unknown message type" },
        new object[] { "hello\nversions=1", "no newline" },
        new object[] { "hello\nversions\n", "malformed line" },
        new object[] { "hello\n=1\n", "malformed line" },
        new object[] { "hello\n\n", "malformed line" },
        new object[] { "hello\nVersions=1\n", "malformed line" },
        new object[] { "hello\nkey_x=1\n", "malformed line" },
        new object[] { "hello\nkey x=1\n", "malformed line" },
        new object[] { "hello\nversions=1\nversions=2\n", "repeats 'versions'" },
        new object[] { "hello\r\nversions=1\r\n", "Unknown message type" },
    ];

    [TestCaseSource(nameof(Malformed))]
    public void MalformedPayload_IsAProtocolError(string payload, string expected)
    {
        var e = Assert.Throws<HandoffProtocolException>(() => HandoffMessage.Parse(Encoding.UTF8.GetBytes(payload)));
        Assert.That(e!.Message, Does.Contain(expected));
    }

    [TestCase(new byte[] { 0xFF, (byte)'\n' })]
    [TestCase(new byte[] { (byte)'h', (byte)'e', (byte)'l', (byte)'l', (byte)'o', (byte)'\n', (byte)'a', (byte)'=', 0xC3, (byte)'\n' })]
    public void InvalidUtf8_IsAProtocolError(byte[] payload)
    {
        var e = Assert.Throws<HandoffProtocolException>(() => HandoffMessage.Parse(payload));
        Assert.That(e!.Message, Does.Contain("UTF-8"));
    }

    [Test]
    public void LongPeerText_IsCutInTheMessage()
    {
        var e = Assert.Throws<HandoffProtocolException>(() => HandoffMessage.Parse(Encoding.UTF8.GetBytes(new string('x', 10_000) + "\n")));
        Assert.That(e!.Message, Has.Length.LessThan(200));
    }

    [TestCase("fds=abc")]
    [TestCase("fds=-1")]
    [TestCase("fds=+1")]
    [TestCase("fds= 1")]
    [TestCase("fds=1.0")]
    [TestCase("fds=1000001")]
    [TestCase("fds=99999999999999999999999")]
    [TestCase("fds=")]
    [TestCase("other=1")]
    public void BadOrMissingNumbers_AreProtocolErrors(string field)
    {
        HandoffMessage m = HandoffMessage.Parse(Encoding.UTF8.GetBytes($"inventory\n{field}\n"));
        Assert.Throws<HandoffProtocolException>(() => m.RequireNumber("fds", 1_000_000));
    }

    [Test]
    public void MissingField_IsAProtocolError_NamingIt()
    {
        HandoffMessage m = HandoffMessage.Parse("refused\n"u8);
        var e = Assert.Throws<HandoffProtocolException>(() => m.Require("reason"));
        Assert.That(e!.Message, Does.Contain("'reason'").And.Contain("'refused'"));
        Assert.That(m.Get("reason"), Is.Null);
    }

    [Test]
    public void RoundTrip_Fields_UnknownKeysKept_FdLinesInOrder()
    {
        HandoffMessage hello = HandoffMessage.Parse(new HandoffMessage(HandoffMessage.Hello)
            .With("versions", "1,2").With("pid", "42").With("x-later-addition", "ignored by old readers").Encode());
        Assert.That(hello.Type, Is.EqualTo("hello"));
        Assert.That(hello.Get("versions"), Is.EqualTo("1,2"));
        Assert.That(hello.RequireNumber("pid", int.MaxValue), Is.EqualTo(42));
        Assert.That(hello.Get("x-later-addition"), Is.EqualTo("ignored by old readers"));

        var fds = new HandoffMessage(HandoffMessage.Fds);
        string[] lines = Enumerable.Range(0, 253).Select(i => $"listener name-{i}=x").ToArray();
        foreach (string l in lines)
            fds.With("fd", l);
        HandoffMessage back = HandoffMessage.Parse(fds.Encode());
        Assert.That(back.FdLines, Is.EqualTo(lines));

        HandoffMessage empty = HandoffMessage.Parse(new HandoffMessage(HandoffMessage.End).Encode());
        Assert.That((empty.Type, empty.FdLines.Count), Is.EqualTo(("end", 0)));
        Assert.That(HandoffMessage.Parse("released\nvalue=a=b=c\n"u8).Get("value"), Is.EqualTo("a=b=c"));
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(70_000)]
    public void RoundTrip_StateBody_IsOpaque(int length)
    {
        byte[] body = new byte[length];
        new Random(length).NextBytes(body);
        if (length > 0)
            body[0] = (byte)'\n';
        HandoffMessage back = HandoffMessage.Parse(new HandoffMessage(HandoffMessage.State).WithBody(body).Encode());
        Assert.That(back.Type, Is.EqualTo("state"));
        Assert.That(back.Body.ToArray(), Is.EqualTo(body));
        // "state" text that looks like fields stays body.
        Assert.That(HandoffMessage.Parse("state\nnot=a field\n"u8).Get("not"), Is.Null);
    }

    [Test]
    public void EncodingAValueWithANewline_IsRefused() =>
        Assert.Throws<ArgumentException>(() => new HandoffMessage(HandoffMessage.Refused).With("message", "two\nlines"));

    [TestCase("web", true)]
    [TestCase("a", true)]
    [TestCase("!~", true)]
    [TestCase("", false)]
    [TestCase("has space", false)]
    [TestCase("tab\t", false)]
    [TestCase("é", false)]
    [TestCase("line\n", false)]
    public void Names(string name, bool valid) => Assert.That(HandoffMessage.IsValidName(name), Is.EqualTo(valid));

    [Test]
    public void Names_LengthLimit()
    {
        Assert.That(HandoffMessage.IsValidName(new string('n', 200)), Is.True);
        Assert.That(HandoffMessage.IsValidName(new string('n', 201)), Is.False);
    }
}
