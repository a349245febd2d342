// SPDX-License-Identifier: MIT
// The conformance vectors shared with the C tests (tests/conformance/channel-vectors.txt,
// format described at its top; tests/native-msg/test_msg_vectors.c runs the same vectors
// against fdsend_msg_recv) against FdChannel.ReceiveAsync: raw writes with their descriptors,
// the expected outcome, every descriptor of a frame not handed out closed, and the good frame
// after when the vector says the channel is still usable.
using System.Globalization;
using FdSend.Tests.Async;

namespace FdSend.Tests.Channel;

[TestFixture]
[CancelAfter(30_000)]
public class ChannelVectorTests : TempDirFixture
{
    public sealed record VectorWrite(int FdCount, byte[] Bytes);

    public sealed class Vector
    {
        public string Name = "";
        public int Line;
        public SocketType Type;
        public int Cap = 65536;
        public int MaxFds = 253;
        public List<VectorWrite> Writes = new();
        public bool Close;
        public string[] Expect = Array.Empty<string>(); // one outcome, or the two of "either"
        public byte[] Payload = Array.Empty<byte>();
        public int FdCount;
        public bool AfterGood;

        public override string ToString() => Name;
    }

    private const string RelativePath = "tests/conformance/channel-vectors.txt";
    private static readonly byte[] GoodFrame = { 1, 0, 1, 0, 4, 0, 0, 0, (byte)'n', (byte)'e', (byte)'x', (byte)'t' };

    /// <summary>The vectors file of the source tree this test runs from (walking up from the
    /// test's directory), or FDSEND_CHANNEL_VECTORS; null if there is none.</summary>
    private static string? VectorsFile()
    {
        string? fromEnv = Environment.GetEnvironmentVariable("FDSEND_CHANNEL_VECTORS");
        return string.IsNullOrEmpty(fromEnv) ? SourceTree.FindFile(RelativePath) : fromEnv;
    }

    private static byte[] Hex(IEnumerable<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (string t in tokens)
        {
            if (t == "-")
                continue;
            if (t.Length % 2 != 0)
                throw new FormatException($"odd hex token '{t}'");
            for (int i = 0; i < t.Length; i += 2)
                bytes.Add(byte.Parse(t.AsSpan(i, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
        }
        return bytes.ToArray();
    }

    private static readonly string[] Outcomes = { "ok", "eof", "proto", "rejected-size", "rejected-fds" };

    public static List<Vector> Load(string path)
    {
        var vectors = new List<Vector>();
        Vector? v = null;
        int lineNo = 0;
        foreach (string raw in File.ReadLines(path))
        {
            lineNo++;
            string[] tok = raw.Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries);
            if (tok.Length == 0 || tok[0].StartsWith('#'))
                continue;
            void Require(bool ok)
            {
                if (!ok)
                    throw new FormatException($"{path}:{lineNo}: bad vector line: {raw}");
            }
            if (tok[0] == "vector")
            {
                Require(v is null && tok.Length == 2);
                v = new Vector { Name = tok[1], Line = lineNo };
                continue;
            }
            Require(v is not null);
            switch (tok[0])
            {
                case "socket":
                    Require(tok.Length == 2);
                    v!.Type = tok[1] switch
                    {
                        "stream" => SocketType.Stream,
                        "seqpacket" => SocketType.Seqpacket,
                        "dgram" => SocketType.Dgram,
                        _ => SocketType.Unknown,
                    };
                    Require(v.Type != SocketType.Unknown);
                    break;
                case "limits":
                    Require(tok.Length == 3);
                    v!.Cap = int.Parse(tok[1], CultureInfo.InvariantCulture);
                    v.MaxFds = int.Parse(tok[2], CultureInfo.InvariantCulture);
                    break;
                case "write":
                    Require(tok.Length >= 3);
                    v!.Writes.Add(new VectorWrite(int.Parse(tok[1], CultureInfo.InvariantCulture), Hex(tok.Skip(2))));
                    break;
                case "close":
                    v!.Close = true;
                    break;
                case "expect":
                    Require(tok.Length >= 2);
                    if (tok[1] == "either")
                    {
                        Require(tok.Length == 4 && Outcomes.Contains(tok[2]) && Outcomes.Contains(tok[3]));
                        v!.Expect = new[] { tok[2], tok[3] };
                    }
                    else
                    {
                        Require(Outcomes.Contains(tok[1]));
                        v!.Expect = new[] { tok[1] };
                        if (tok[1] == "ok")
                        {
                            Require(tok.Length == 4);
                            v.Payload = Hex(new[] { tok[2] });
                            v.FdCount = int.Parse(tok[3], CultureInfo.InvariantCulture);
                        }
                        else
                        {
                            Require(tok.Length == 2);
                        }
                    }
                    break;
                case "after":
                    Require(tok.Length == 2 && (tok[1] == "good" || tok[1] == "none"));
                    v!.AfterGood = tok[1] == "good";
                    break;
                case "end":
                    Require(v!.Type != SocketType.Unknown && v.Expect.Length > 0);
                    vectors.Add(v);
                    v = null;
                    break;
                default:
                    Require(false);
                    break;
            }
        }
        if (v is not null)
            throw new FormatException($"{path}: vector {v.Name} has no end");
        return vectors;
    }

    private static IEnumerable<TestCaseData> Vectors()
    {
        string? path = VectorsFile();
        if (path is null)
        {
            yield return new TestCaseData(null).SetArgDisplayNames("vectors file missing");
            yield break;
        }
        foreach (Vector v in Load(path))
            yield return new TestCaseData(v).SetArgDisplayNames(v.Name);
    }

    [Test]
    public void The_vectors_file_parses_and_names_are_unique()
    {
        string? path = VectorsFile();
        if (path is null)
            Assert.Ignore($"SKIPPED: not running inside the FdSend source tree ({RelativePath}; or set FDSEND_CHANNEL_VECTORS)");
        List<Vector> vectors = Load(path!);
        Assert.That(vectors, Is.Not.Empty);
        Assert.That(vectors.Select(v => v.Name), Is.Unique);
    }

    /// <summary>What the receive did, in the vectors' words.</summary>
    private static string Outcome(Exception e) => e switch
    {
        EndOfStreamException => "eof",
        FdChannelProtocolException => "proto",
        FdMessageRejectedException { Reason: FdMessageRejectReason.PayloadTooLarge } => "rejected-size",
        FdMessageRejectedException { Reason: FdMessageRejectReason.TooManyFds } => "rejected-fds",
        _ => $"unexpected {e.GetType().Name}: {e.Message}",
    };

    /// <summary>On a stream, wait (up to 2 s) until the receiver has consumed everything sent
    /// so far, so that the next write reaches it as its own piece.</summary>
    private static async Task WaitConsumed(Socket reader)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (reader.Available > 0 && sw.ElapsedMilliseconds < 2000)
            await Task.Delay(1);
    }

    [TestCaseSource(nameof(Vectors))]
    public async Task Vector_outcome_matches(Vector? v)
    {
        if (v is null)
            Assert.Ignore($"SKIPPED: not running inside the FdSend source tree ({RelativePath}; or set FDSEND_CHANNEL_VECTORS)");
        using var pair = SocketPair.Create(Dir, v!.Type);
        string path = Dir.NewFile("x");
        using var f = File.OpenHandle(path);
        int baseline = AsyncTest.SettledFdCount();
        await using var channel = new FdChannel(pair.B, new FdChannelOptions
        {
            MaxMessageSize = v.Cap,
            MaxFdsPerMessage = v.MaxFds,
            LeaveOpen = true,
        });

        Task<FdMessage> receive = channel.ReceiveAsync().AsTask();
        for (int i = 0; i < v.Writes.Count; i++)
        {
            if (i > 0 && v.Type == SocketType.Stream)
                await WaitConsumed(pair.B);
            VectorWrite w = v.Writes[i];
            int sent = pair.A.SendFds(w.Bytes, Enumerable.Repeat((Descriptor)f, w.FdCount).ToArray());
            Assert.That(sent, Is.EqualTo(w.Bytes.Length), $"write {i}");
        }
        if (v.Close)
        {
            if (v.Type == SocketType.Stream)
                await WaitConsumed(pair.B);
            pair.A.Shutdown(SocketShutdown.Send);
        }

        string outcome;
        try
        {
            using FdMessage m = await receive.Within();
            outcome = "ok";
            if (v.Expect[0] == "ok")
            {
                Assert.That(m.Payload.ToArray(), Is.EqualTo(v.Payload), "payload");
                Assert.That(m.FdCount, Is.EqualTo(v.FdCount), "descriptor count");
                for (int i = 0; i < m.FdCount; i++)
                    Assert.That(Posix.GetFileId(m.Fds.PeekFd(i)), Is.EqualTo(Posix.GetFileId(path)));
            }
        }
        catch (Exception e) when (e is IOException)
        {
            outcome = Outcome(e);
            TestContext.Progress.WriteLine($"  {v.Name}: {e.GetType().Name}: {e.Message}");
        }
        if (v.Expect.Length == 2)
            TestContext.Progress.WriteLine($"  {v.Name}: either {v.Expect[0]} or {v.Expect[1]}; got {outcome}");
        Assert.That(v.Expect, Does.Contain(outcome), $"{v.Name} (line {v.Line})");
        AsyncTest.AssertFdCount(baseline, "every descriptor of the frame was closed or handed out and disposed");

        if (v.AfterGood)
        {
            pair.A.SendFds(GoodFrame, f);
            using (FdMessage m = await channel.ReceiveAsync().Within())
            {
                Assert.That(m.Payload.ToArray(), Is.EqualTo(GoodFrame.AsSpan(8).ToArray()), "the good frame after");
                Assert.That(m.FdCount, Is.EqualTo(1));
                Assert.That(Posix.GetFileId(m.Fds.PeekFd(0)), Is.EqualTo(Posix.GetFileId(path)));
            }
            AsyncTest.AssertFdCount(baseline);
        }
    }
}
