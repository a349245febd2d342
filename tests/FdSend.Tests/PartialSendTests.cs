// SPDX-License-Identifier: MIT
using FdSend.Tests.Async;

namespace FdSend.Tests;

/// <summary>Issue 11 item 2: a stream send that fails after its first chunk (which carried the
/// descriptors) says how much went, instead of an error that says nothing was sent.</summary>
[TestFixture]
public class PartialSendTests : TempDirFixture
{
    private const int Large = 4 * 1024 * 1024;
    private const int ReadBeforeClosing = 256 * 1024;

    /// <summary>The peer: receives the descriptor with the first bytes, reads
    /// <see cref="ReadBeforeClosing"/> bytes in all, then closes its end. Returns how many
    /// bytes and descriptors it got.</summary>
    private static Task<(int Bytes, int Fds)> ReadPartThenClose(Socket peer) => Task.Run(() =>
    {
        var buffer = new byte[64 * 1024];
        int bytes = 0, fds = 0;
        using (peer)
        {
            while (bytes < ReadBeforeClosing)
            {
                using ReceivedFds r = peer.ReceiveFds(buffer);
                Assert.That(r.IsEndOfStream, Is.False);
                bytes += r.BytesReceived;
                fds += r.Count;
            }
        }
        return (bytes, fds);
    });

    private static void AssertPartial(Exception? e, (int Bytes, int Fds) peer)
    {
        Assert.That(e, Is.TypeOf<FdPartialSendException>(), e?.ToString());
        var p = (FdPartialSendException)e!;
        Assert.That(p.SocketErrorCode, Is.AnyOf(SocketError.Shutdown, SocketError.ConnectionReset),
            "the underlying error's code (EPIPE or ECONNRESET)");
        Assert.That(p.DescriptorsSent, Is.EqualTo(1));
        Assert.That(peer.Fds, Is.EqualTo(1), "the peer did get the descriptor");
        Assert.That(p.BytesSent, Is.GreaterThanOrEqualTo(peer.Bytes).And.LessThan(Large));
        Assert.That(p.Message, Does.Not.Contain("nothing was sent").IgnoreCase);
        Assert.That(p.Message, Does.Contain(p.BytesSent.ToString(System.Globalization.CultureInfo.InvariantCulture)));
    }

    [Test]
    public async Task A_send_that_fails_after_its_first_chunk_reports_what_was_sent([Values] bool async)
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.SendBufferSize = 64 * 1024;
        using var f = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        var peer = ReadPartThenClose(pair.B);
        Exception? e = null;
        try
        {
            if (async)
                await pair.A.SendFdsAsync(new byte[Large], f).Within();
            else
                pair.A.SendFds(new byte[Large], f);
        }
        catch (Exception ex)
        {
            e = ex;
        }
        AssertPartial(e, await peer.Within());
    }
}
