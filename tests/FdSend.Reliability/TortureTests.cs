// SPDX-License-Identifier: MIT
// The .NET library as one side of a torture phase, the C torture program (torture --peer)
// as the other, in separate processes over a socket path: random fd counts (0..253),
// payloads (0..64 KiB), receive capacities that force data and fd truncation, bare fd
// messages; every byte and every descriptor's identity verified (by the C side when .NET
// sends, by this side when .NET receives), descriptor tables back to where they were, and
// a killed peer in the middle of the stream.
using System.Globalization;
using System.IO.Pipes;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Reliability;

[TestFixture]
[NonParallelizable]
public class TortureTests
{
    private const int Count = 3000;

    private static ulong Seed => ulong.Parse(
        Environment.GetEnvironmentVariable("FDSEND_TORTURE_SEED") ?? "20261121", CultureInfo.InvariantCulture);

    /// <summary>The sender's pool: temporary files, pipe ends and socketpair ends.</summary>
    private sealed class Pool : IDisposable
    {
        public readonly List<SafeHandle> Handles = new();
        private readonly List<IDisposable> _owners = new();

        public Pool()
        {
            for (int i = 0; i < Torture.PoolFiles; i++)
            {
                string path = Path.Combine(Path.GetTempPath(), $"fdsend-torture-{Guid.NewGuid():N}");
                SafeFileHandle h = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
                File.Delete(path);
                Handles.Add(h);
            }
            for (int i = 0; i < Torture.PoolPipes; i++)
            {
                var server = new AnonymousPipeServerStream(PipeDirection.Out, HandleInheritability.None);
                _owners.Add(server);
                Handles.Add(server.ClientSafePipeHandle); // read end
                Handles.Add(server.SafePipeHandle);       // write end
            }
            for (int i = 0; i < Torture.PoolSockPairs; i++)
            {
                var (a, b) = Posix.RawSocketPair();
                Handles.Add(a);
                Handles.Add(b);
            }
        }

        public void Dispose()
        {
            foreach (SafeHandle h in Handles)
                h.Dispose();
            foreach (IDisposable o in _owners)
                o.Dispose();
        }
    }

    private static string Kind(SocketType t) => t == SocketType.Seqpacket ? "seqpacket" : "stream";

    private static Socket Listen(string path, SocketType type)
    {
        var l = new Socket(AddressFamily.Unix, type, ProtocolType.Unspecified);
        l.Bind(new UnixDomainSocketEndPoint(path));
        l.Listen(1);
        return l;
    }

    private static void SendAll(Socket s, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
            data = data[s.Send(data)..];
    }

    /// <summary>Runs the sender side; returns the messages sent before the peer went away
    /// (all of them unless it was killed). Raw messages rotate between the sync Descriptor
    /// overload, the sync raw-fd overload and SendFdsAsync.</summary>
    private static int RunSender(Socket s, bool stream, ulong seed, int count, bool peerMayDie) =>
        RunSenderAsync(s, stream, seed, count, peerMayDie).GetAwaiter().GetResult();

    private static async Task<int> RunSenderAsync(Socket s, bool stream, ulong seed, int count, bool peerMayDie)
    {
        using var pool = new Pool();
        var ids = pool.Handles.Select(Posix.Identify).ToArray();
        var buf = new byte[Torture.MaxMsg];
        var sc = new Sched();
        var fds = new Descriptor[Torture.MaxFds];
        var raw = new int[Torture.MaxFds];
        Torture.WritePool(buf, ids);
        SendAll(s, buf.AsSpan(0, Torture.PoolMsgLen));
        for (uint seq = 1; seq <= count; seq++)
        {
            Torture.MakeSched(seed, seq, sc);
            Torture.MakeBytes(seed, seq, sc, buf);
            int len = sc.Bare ? 0 : Torture.WireLen(stream, sc);
            try
            {
                int sent;
                if (seq % 3 == 2)
                {
                    for (int i = 0; i < sc.NFds; i++)
                        fds[i] = pool.Handles[sc.Idx[i]];
                    sent = await s.SendFdsAsync(buf.AsMemory(0, len), fds.AsMemory(0, sc.NFds));
                }
                else if (seq % 3 == 0)
                {
                    for (int i = 0; i < sc.NFds; i++)
                        fds[i] = pool.Handles[sc.Idx[i]];
                    sent = s.SendFds(buf.AsSpan(0, len), fds.AsSpan(0, sc.NFds));
                }
                else
                {
                    // the raw-fd overload; the pool's handles stay open throughout
                    for (int i = 0; i < sc.NFds; i++)
                        raw[i] = (int)pool.Handles[sc.Idx[i]].DangerousGetHandle();
                    sent = s.SendFds(buf.AsSpan(0, len), raw.AsSpan(0, sc.NFds));
                }
                Assert.That(sent, Is.EqualTo(len), $"message {seq}: a blocking send sends everything");
            }
            catch (SocketException e) when (peerMayDie)
            {
                TestContext.Out.WriteLine($"message {seq}: the killed receiver's socket: {e.SocketErrorCode}");
                return (int)seq - 1;
            }
        }
        return count;
    }

    /// <summary>The sender side over an FdChannel (the wire format of fdsend_msg_*); the C
    /// receiver checks every frame, with its own per-frame limits.</summary>
    private static async Task RunChannelSenderAsync(Socket s, ulong seed, int count)
    {
        using var pool = new Pool();
        var ids = pool.Handles.Select(Posix.Identify).ToArray();
        var buf = new byte[Torture.MaxMsg];
        var sc = new Sched();
        var fds = new Descriptor[Torture.MaxFds];
        await using var ch = new FdChannel(s, new FdChannelOptions { LeaveOpen = true });
        Torture.WritePool(buf, ids);
        await ch.SendAsync(buf.AsMemory(0, Torture.PoolMsgLen));
        for (uint seq = 1; seq <= count; seq++)
        {
            Torture.MakeSched(seed, seq, sc);
            Torture.MakeBytes(seed, seq, sc, buf);
            for (int i = 0; i < sc.NFds; i++)
                fds[i] = pool.Handles[sc.Idx[i]];
            await ch.SendAsync(buf.AsMemory(0, Torture.FrameLen(sc)), fds.AsMemory(0, sc.NFds));
        }
    }

    /// <summary>The receiver side over an FdChannel with limits of its own: frames over them
    /// must be rejected whole (FdMessageRejectedException, descriptors closed) and the
    /// channel must go on.</summary>
    private static async Task<string> RunChannelReceiverAsync(Socket s, ulong seed, int count, int maxSize, int maxFds)
    {
        await using var ch = new FdChannel(s, new FdChannelOptions { LeaveOpen = true, MaxMessageSize = maxSize, MaxFdsPerMessage = maxFds });
        FdIdentity[] pool;
        using (FdMessage m = await ch.ReceiveAsync())
            pool = Torture.ReadPool(m.Payload.Span);
        var sc = new Sched();
        var exp = new byte[Torture.MaxMsg];
        long ok = 0, rejected = 0, fdsGot = 0, bytes = 0;
        for (uint seq = 1; seq <= count; seq++)
        {
            Torture.MakeSched(seed, seq, sc);
            Torture.MakeBytes(seed, seq, sc, exp);
            int len = Torture.FrameLen(sc);
            bool over = len > maxSize || sc.NFds > maxFds;
            try
            {
                using FdMessage m = await ch.ReceiveAsync();
                Assert.That(over, Is.False, $"frame {seq} ({len} bytes, {sc.NFds} fds) should have been rejected");
                Assert.That(m.Payload.Span.SequenceEqual(exp.AsSpan(0, len)), Is.True, $"frame {seq}: payload");
                Assert.That(m.FdCount, Is.EqualTo(sc.NFds), $"frame {seq}: fds");
                for (int i = 0; i < m.FdCount; i++)
                {
                    int fd = m.Fds.PeekFd(i);
                    Assert.That(Posix.IsCloseOnExec(fd), Is.True);
                    if (Posix.Identify(fd) != pool[sc.Idx[i]])
                        Assert.Fail($"frame {seq} fd {i}: wrong descriptor");
                }
                ok++;
                fdsGot += m.FdCount;
                bytes += len;
            }
            catch (FdMessageRejectedException e)
            {
                Assert.That(over, Is.True, $"frame {seq} ({len} bytes, {sc.NFds} fds) rejected: {e.Message}");
                Assert.That((e.PayloadLength, e.FdCount), Is.EqualTo(((long)len, sc.NFds)), $"frame {seq}: what the rejection reports");
                rejected++;
            }
        }
        Assert.ThrowsAsync<EndOfStreamException>(async () => (await ch.ReceiveAsync()).Dispose());
        return $"frames={ok} rejected={rejected} fds={fdsGot} bytes={bytes}";
    }

    private sealed class Receiver
    {
        private readonly Socket _s;
        private readonly bool _stream;
        private readonly ulong _seed;
        private FdIdentity[] _pool = Array.Empty<FdIdentity>();
        private readonly byte[] _buf = new byte[Torture.MaxMsg + 128];
        private readonly byte[] _exp = new byte[Torture.MaxMsg];
        private readonly int[] _fds = new int[Torture.MaxFds];
        private Rng _chunks;
        public long Messages, FdsReceived, FdsDropped, FdTruncations, DataTruncations, Bytes;

        public Receiver(Socket s, bool stream, ulong seed)
        {
            _s = s;
            _stream = stream;
            _seed = seed;
            _chunks = new Rng(seed ^ 0x5EED);
        }

        private readonly byte[] _asyncBuffer = new byte[Torture.MaxMsg + 128];

        private ReceivedFds ReceiveAsyncInto(Span<byte> into, int cap)
        {
            ReceivedFds r = _s.ReceiveFdsAsync(_asyncBuffer.AsMemory(0, into.Length), cap).AsTask().GetAwaiter().GetResult();
            _asyncBuffer.AsSpan(0, r.BytesReceived).CopyTo(into);
            return r;
        }

        private void CheckFd(int fd, Sched sc, int i, uint seq)
        {
            Assert.That(Posix.IsCloseOnExec(fd), Is.True, $"message {seq} fd {i}: not close-on-exec");
            FdIdentity got = Posix.Identify(fd), want = _pool[sc.Idx[i]];
            if (got != want)
                Assert.Fail($"message {seq} fd {i}: identity {got}, sent pool[{sc.Idx[i]}] = {want} (wrong descriptor)");
        }

        /// <summary>One receive; checks the fds against sc (when they belong to a message
        /// start) and closes them, the ReceivedFds way on odd messages (take some, let
        /// Dispose close the rest), the span way on even ones.</summary>
        private int ReceiveOnce(Span<byte> into, int fdCap, Sched? sc, uint seq, out ReceiveFlags flags, out int nf)
        {
            int cap = Math.Min(fdCap, Torture.MaxFds);
            int n;
            if (seq % 2 == 1)
            {
                // odd messages: ReceivedFds, from ReceiveFdsAsync for every third one
                using ReceivedFds r = seq % 3 == 0 && _asyncBuffer.Length >= into.Length
                    ? ReceiveAsyncInto(into, cap)
                    : _s.ReceiveFds(into, cap);
                n = r.BytesReceived;
                flags = r.Flags;
                nf = r.Count;
                for (int i = 0; i < nf; i++)
                {
                    if (sc == null)
                        Assert.Fail($"message {seq}: descriptors arrived in the middle of a message");
                    CheckFd(r.PeekFd(i), sc!, i, seq);
                    if (i % 2 == 0)
                        Posix.Close(r.TakeRawFd(i)); // taken: ours to close; the rest Dispose closes
                }
            }
            else
            {
                n = _s.ReceiveFds(into, _fds.AsSpan(0, cap), out nf, out flags);
                for (int i = 0; i < nf; i++)
                {
                    if (sc == null)
                        Assert.Fail($"message {seq}: descriptors arrived in the middle of a message");
                    CheckFd(_fds[i], sc!, i, seq);
                    Posix.Close(_fds[i]);
                }
            }
            return n;
        }

        public void ReceivePool()
        {
            int off = 0;
            while (off < Torture.PoolMsgLen)
            {
                int n = _s.ReceiveFds(_buf.AsSpan(off, _stream ? Torture.PoolMsgLen - off : Torture.PoolMsgLen + 8),
                                      Span<int>.Empty, out int nf, out ReceiveFlags fl);
                Assert.That((n > 0, nf, fl), Is.EqualTo((true, 0, ReceiveFlags.None)), "pool announcement");
                off += n;
            }
            Assert.That(off, Is.EqualTo(Torture.PoolMsgLen));
            _pool = Torture.ReadPool(_buf);
        }

        /// <summary>Receives messages 1..count; returns false at an end of stream before the
        /// end (allowed only when the peer was killed).</summary>
        public bool Run(int count, Func<long, bool>? afterMessage = null)
        {
            var sc = new Sched();
            for (uint seq = 1; seq <= count; seq++)
            {
                Torture.MakeSched(_seed, seq, sc);
                int explen = Torture.WireLen(_stream, sc);
                Torture.MakeBytes(_seed, seq, sc, _exp);
                bool fdTrunc = sc.FdCap < sc.NFds;
                if (!_stream)
                {
                    int cap = sc.RecvLen0 ? 0 : (int)sc.DataCap;
                    int n = ReceiveOnce(_buf.AsSpan(0, cap), sc.FdCap, sc, seq, out ReceiveFlags fl, out int nf);
                    if (n == 0 && nf == 0 && fl == ReceiveFlags.None)
                        return false;
                    int want = Math.Min(cap, explen);
                    Assert.That(n, Is.EqualTo(want), $"message {seq}: bytes");
                    Assert.That(fl.HasFlag(ReceiveFlags.DataTruncated), Is.EqualTo(cap < explen), $"message {seq}: DataTruncated");
                    Assert.That(fl.HasFlag(ReceiveFlags.FdsTruncated), Is.EqualTo(fdTrunc), $"message {seq}: FdsTruncated");
                    Assert.That(nf, Is.EqualTo(Math.Min(sc.NFds, sc.FdCap)), $"message {seq}: fds");
                    Assert.That(_buf.AsSpan(0, n).SequenceEqual(_exp.AsSpan(0, n)), Is.True, $"message {seq}: payload");
                    Bytes += n;
                    if (cap < explen) DataTruncations++;
                    FdsReceived += nf;
                    FdsDropped += sc.NFds - nf;
                }
                else
                {
                    int off = 0;
                    while (off < explen)
                    {
                        int n, nf;
                        ReceiveFlags fl;
                        bool start = off == 0;
                        int fdCap = start && sc.NFds > 0 ? sc.FdCap : Torture.MaxFds;
                        if (start && sc.RecvLen0)
                        {
                            n = ReceiveOnce(Span<byte>.Empty, fdCap, sc, seq, out fl, out nf);
                            Assert.That(n, Is.Zero);
                            if (nf == 0 && fl == ReceiveFlags.None)
                                return false;
                            _buf[0] = 0;
                            n = 1;
                        }
                        else
                        {
                            int rem = explen - off;
                            int want = _chunks.Below(2) == 0 ? rem : 1 + (int)_chunks.Below((uint)rem);
                            n = ReceiveOnce(_buf.AsSpan(0, want), fdCap, start ? sc : null, seq, out fl, out nf);
                            if (n == 0 && nf == 0 && fl == ReceiveFlags.None)
                                return false;
                        }
                        Assert.That(fl.HasFlag(ReceiveFlags.DataTruncated), Is.False, $"message {seq}: DataTruncated on a stream");
                        if (start)
                        {
                            Assert.That(fl.HasFlag(ReceiveFlags.FdsTruncated), Is.EqualTo(fdTrunc), $"message {seq}: FdsTruncated");
                            Assert.That(nf, Is.EqualTo(Math.Min(sc.NFds, sc.FdCap)), $"message {seq}: fds");
                            FdsReceived += nf;
                            FdsDropped += sc.NFds - nf;
                        }
                        else
                        {
                            Assert.That((nf, fl), Is.EqualTo((0, ReceiveFlags.None)), $"message {seq}: fds in the middle");
                        }
                        if (!_buf.AsSpan(0, n).SequenceEqual(_exp.AsSpan(off, n)))
                            Assert.Fail($"message {seq}: payload differs at offset {off}");
                        off += n;
                        Bytes += n;
                    }
                }
                if (fdTrunc) FdTruncations++;
                Messages++;
                if (afterMessage != null && !afterMessage(Messages))
                    afterMessage = null;
            }
            return true;
        }

        public void ExpectEnd()
        {
            int n = _s.ReceiveFds(_buf.AsSpan(0, 16), _fds.AsSpan(0, 8), out int nf, out ReceiveFlags fl);
            Assert.That((n, nf, fl), Is.EqualTo((0, 0, ReceiveFlags.None)), "end of stream after the last message");
        }

        public override string ToString() =>
            $"messages={Messages} fds={FdsReceived} dropped={FdsDropped} fd-truncations={FdTruncations} " +
            $"data-truncations={DataTruncations} bytes={Bytes}";
    }

    private static void RequireSupported()
    {
        if (!Posix.Supported)
            Assert.Ignore("SKIPPED: Linux x64/arm64 only");
    }

    private static Repo.Child StartC(string role, string path, SocketType type, ulong seed, int count, bool channel = false)
    {
        var args = new List<string> { "--peer", role, "--connect", path, "--type", Kind(type),
            "--seed", seed.ToString(CultureInfo.InvariantCulture), "--count", count.ToString(CultureInfo.InvariantCulture) };
        if (channel)
            args.Add("--channel");
        return new Repo.Child(Repo.CProgram("torture"), args.ToArray());
    }

    /// <summary>Starts the C torture peer in <paramref name="role"/>, runs
    /// <paramref name="exchange"/> on the connection it makes, then asserts that the peer
    /// exited with 0 (having printed <paramref name="passLine"/>, when given) and that no
    /// descriptor of this process was left open.</summary>
    private static void WithCPeer(string role, SocketType type, ulong seed, int count, bool channel,
                                  Action<Socket> exchange, string? passLine = null)
    {
        RequireSupported();
        using var dir = new Repo.TempDir();
        var before = Posix.Snapshot();
        using (Socket l = Listen(dir.Sock("t"), type))
        using (Repo.Child c = StartC(role, dir.Sock("t"), type, seed, count, channel))
        {
            using (Socket s = l.Accept())
                exchange(s);
            int rc = c.Wait();
            TestContext.Out.WriteLine(c.Output);
            Assert.That(rc, Is.Zero, c.Output);
            if (passLine is not null)
                Assert.That(c.Output, Does.Contain(passLine));
        }
        Assert.That(Posix.NewFds(before), Is.Empty, "descriptors left open");
    }

    /// <summary>FdChannel (.NET) sends frames to fdsend_msg_recv (C), which applies the
    /// schedule's per-frame limits: the two implementations of the wire format agree.</summary>
    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public void FdChannelSendsToCChannel(SocketType type) =>
        WithCPeer("recv", type, Seed + 3, Count, channel: true,
                  s => RunChannelSenderAsync(s, Seed + 3, Count).GetAwaiter().GetResult(),
                  "PASS torture peer recv channel");

    /// <summary>fdsend_msg_send (C) sends frames to an FdChannel (.NET) with limits of its
    /// own (8 KiB, 32 fds): larger frames are rejected whole, the rest arrive intact.</summary>
    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public void CChannelSendsToFdChannel(SocketType type) =>
        WithCPeer("send", type, Seed + 4, Count, channel: true, s =>
        {
            string r = RunChannelReceiverAsync(s, Seed + 4, Count, 8192, 32).GetAwaiter().GetResult();
            TestContext.Out.WriteLine($"FdChannel receiver ({Kind(type)}): {r}");
            Assert.That(r, Does.Not.Contain("rejected=0 "), "the limits should reject some frames");
        });

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public void DotNetSendsToCTorture(SocketType type) =>
        WithCPeer("recv", type, Seed, Count, channel: false,
                  s => Assert.That(RunSender(s, type == SocketType.Stream, Seed, Count, false), Is.EqualTo(Count)),
                  "PASS torture peer recv");

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public void DotNetReceivesFromCTorture(SocketType type) =>
        WithCPeer("send", type, Seed, Count, channel: false, s =>
        {
            var r = new Receiver(s, type == SocketType.Stream, Seed);
            r.ReceivePool();
            Assert.That(r.Run(Count), Is.True, "end of stream before the last message");
            r.ExpectEnd();
            TestContext.Out.WriteLine($".NET receiver ({Kind(type)}): {r}");
            Assert.That(r.FdTruncations, Is.GreaterThan(0), "the schedule forces fd truncation");
            if (type == SocketType.Seqpacket)
                Assert.That(r.DataTruncations, Is.GreaterThan(0), "the schedule forces data truncation");
        });

    /// <summary>The C sender is SIGKILLed in mid-stream: everything that arrived is intact,
    /// the stream ends, nothing stays open.</summary>
    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public void CSenderKilledMidStream(SocketType type)
    {
        RequireSupported();
        using var dir = new Repo.TempDir();
        var before = Posix.Snapshot();
        const int count = 200000; // far more than arrive before the kill
        using (Socket l = Listen(dir.Sock("t"), type))
        using (Repo.Child c = StartC("send", dir.Sock("t"), type, Seed + 1, count))
        {
            using (Socket s = l.Accept())
            {
                var r = new Receiver(s, type == SocketType.Stream, Seed + 1);
                r.ReceivePool();
                bool all = true;
                try
                {
                    all = r.Run(count, m =>
                    {
                        if (m != 500)
                            return true;
                        c.Kill();
                        return false;
                    });
                }
                catch (AssertionException e) when (type == SocketType.Stream && e.Message.Contains("bytes", StringComparison.Ordinal))
                {
                    throw;
                }
                TestContext.Out.WriteLine($"after SIGKILL at message 500: {r}");
                Assert.That(all, Is.False, "the stream should end early");
                Assert.That(r.Messages, Is.GreaterThanOrEqualTo(500));
            }
        }
        Assert.That(Posix.NewFds(before), Is.Empty, "descriptors left open");
    }

    /// <summary>The C receiver is SIGKILLed in mid-stream: the .NET sender gets a
    /// SocketException (no SIGPIPE, no crash) and its pool is intact and closed.</summary>
    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public void CReceiverKilledMidStream(SocketType type)
    {
        RequireSupported();
        using var dir = new Repo.TempDir();
        var before = Posix.Snapshot();
        const int count = 200000;
        using (Socket l = Listen(dir.Sock("t"), type))
        using (Repo.Child c = StartC("recv", dir.Sock("t"), type, Seed + 2, count))
        {
            using Socket s = l.Accept();
            var killer = Task.Run(() => { Thread.Sleep(300); c.Kill(); });
            int sent = RunSender(s, type == SocketType.Stream, Seed + 2, count, true);
            killer.Wait();
            TestContext.Out.WriteLine($"{sent} messages sent before the receiver was killed");
            Assert.That(sent, Is.LessThan(count));
        }
        Assert.That(Posix.NewFds(before), Is.Empty, "descriptors left open");
    }
}
