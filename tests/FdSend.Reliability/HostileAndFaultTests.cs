// SPDX-License-Identifier: MIT
// Hostile peers and injected faults against a .NET receiver/sender: unasked descriptor
// floods, foreign control messages from another process, a full non-blocking buffer, an
// idle peer, a peer that exits with descriptors in flight, and a handle disposed by
// another thread while it is being sent (the SafeHandle must keep its fd alive: never a
// wrong descriptor on the wire).
using System.Globalization;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Reliability;

[TestFixture]
[NonParallelizable]
public class HostileAndFaultTests
{
    private const int SO_PASSCRED = 16;

    [SetUp]
    public void Linux()
    {
        if (!Posix.Supported)
            Assert.Ignore("SKIPPED: Linux x64/arm64 only");
    }

    private static SafeFileHandle TempFile(out FdIdentity id)
    {
        string path = Path.Combine(Path.GetTempPath(), $"fdsend-rel-{Guid.NewGuid():N}");
        SafeFileHandle h = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
        File.Delete(path);
        id = Posix.Identify(h);
        return h;
    }

    [Test]
    public void FloodOfUnaskedDescriptorsIsClosedAndReported()
    {
        var before = Posix.Snapshot();
        var (a, b) = Posix.SocketPair(SocketType.Seqpacket);
        using (a)
        using (b)
        using (SafeFileHandle f = TempFile(out _))
        {
            var fds = Enumerable.Repeat((Descriptor)f, FdPassing.MaxFds).ToArray();
            var sender = Task.Run(() =>
            {
                for (int i = 0; i < 1000; i++)
                    a.SendFds("flood"u8, fds);
            });
            var buf = new byte[8];
            for (int i = 0; i < 1000; i++)
            {
                if (i % 2 == 0)
                {
                    using ReceivedFds r = b.ReceiveFds(buf, 0);
                    Assert.That((r.BytesReceived, r.Count, r.Flags), Is.EqualTo((5, 0, ReceiveFlags.FdsTruncated)), $"message {i}");
                }
                else
                {
                    int n = b.ReceiveFds(buf, Span<int>.Empty, out int count, out ReceiveFlags flags);
                    Assert.That((n, count, flags), Is.EqualTo((5, 0, ReceiveFlags.FdsTruncated)), $"message {i}");
                }
                if (i % 200 == 0)
                    Assert.That(Posix.NewFds(before).Count(x => x.Contains("fdsend-rel-", StringComparison.Ordinal)),
                        Is.LessThanOrEqualTo(1), $"after {i} messages of 253 unasked fds");
            }
            sender.Wait();
        }
        Assert.That(Posix.NewFds(before), Is.Empty, "253,000 unasked descriptors: every one closed");
    }

    /// <summary>SCM_CREDENTIALS next to SCM_RIGHTS, two SCM_RIGHTS headers, floods, and a
    /// sender that exits with descriptors in flight: from a Python process.</summary>
    [Test]
    public void ForeignControlMessagesFromAnotherProcess()
    {
        if (!Repo.HasCommand("python3"))
            Assert.Ignore("SKIPPED: python3 is not installed");
        using var dir = new Repo.TempDir();
        var before = Posix.Snapshot();
        using (var l = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            l.Bind(new UnixDomainSocketEndPoint(dir.Sock("h")));
            l.Listen(1);
            using var peer = new Repo.Child("python3", Repo.Interop("hostile_peer.py"), dir.Sock("h"));
            using Socket s = l.Accept();
            // Ask for credentials on every message: the kernel then adds SCM_CREDENTIALS to
            // the control data of each one, next to the rights.
            s.SetSocketOption(SocketOptionLevel.Socket, (SocketOptionName)SO_PASSCRED, 1);
            Assert.That(peer.Wait(), Is.Zero, peer.Output);
            var buf = new byte[4];
            void Expect(string data, int maxFds, int count, ReceiveFlags flags)
            {
                using ReceivedFds r = s.ReceiveFds(buf, maxFds);
                Assert.That(Encoding.ASCII.GetString(buf, 0, r.BytesReceived), Is.EqualTo(data));
                Assert.That((r.Count, r.Flags), Is.EqualTo((count, flags)), $"'{data}' with room for {maxFds}");
                for (int i = 0; i < r.Count; i++)
                {
                    // the file's content names its own inode
                    using SafeFileHandle h = r.TakeFileHandle(i);
                    var tag = new byte[100];
                    string t = Encoding.ASCII.GetString(tag, 0, RandomAccess.Read(h, tag, 0));
                    FdIdentity id = Posix.Identify(h);
                    Assert.That(t, Does.StartWith($"HOSTILE dev={id.Device} ino={id.Inode}"), "wrong descriptor");
                }
            }
            for (int i = 0; i < 5; i++)
                Expect("cred", 8, 3, ReceiveFlags.None);
            for (int i = 0; i < 5; i++)
                Expect("two!", i % 2 == 0 ? 8 : 4, i % 2 == 0 ? 5 : 4, i % 2 == 0 ? ReceiveFlags.None : ReceiveFlags.FdsTruncated);
            for (int i = 0; i < 50; i++)
                Expect("wave", i % 5, i % 5, ReceiveFlags.FdsTruncated);
            Expect("last", 8, 1, ReceiveFlags.None); // its sender has exited already
            using ReceivedFds end = s.ReceiveFds(buf);
            Assert.That(end.IsEndOfStream, Is.True);
        }
        Assert.That(Posix.NewFds(before), Is.Empty);
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public void FullBufferOnNonBlockingSocketLosesNothing(SocketType type)
    {
        var before = Posix.Snapshot();
        var (a, b) = Posix.SocketPair(type);
        using (a)
        using (b)
        using (SafeFileHandle f = TempFile(out FdIdentity id))
        {
            a.Blocking = false;
            var data = new byte[3000];
            int sent = 0, wouldBlock = 0;
            while (wouldBlock < 3)
            {
                try
                {
                    data.AsSpan().Fill((byte)sent);
                    int n = a.SendFds(data, f, f);
                    Assert.That(n, Is.EqualTo(data.Length), "3000-byte messages are not split");
                    Assert.That(wouldBlock, Is.Zero, "a send succeeded after WouldBlock without any reading");
                    sent++;
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
                {
                    wouldBlock++; // nothing was sent
                }
            }
            b.Blocking = false;
            int received = 0;
            var buf = new byte[3000];
            while (true)
            {
                ReceivedFds r;
                try { r = b.ReceiveFds(buf, 4); }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock) { break; }
                using (r)
                {
                    int got = r.BytesReceived;
                    Assert.That(r.Count, Is.EqualTo(2), $"message {received}");
                    for (int i = 0; i < 2; i++)
                        Assert.That(Posix.Identify(r.PeekFd(i)), Is.EqualTo(id));
                    while (got < buf.Length) // stream: the rest, without fds
                    {
                        using ReceivedFds rest = b.ReceiveFds(buf.AsSpan(got), 4);
                        Assert.That(rest.Count, Is.Zero);
                        got += rest.BytesReceived;
                    }
                    Assert.That(buf.All(x => x == (byte)received), Is.True, $"message {received} bytes");
                }
                received++;
            }
            TestContext.Out.WriteLine($"{type}: {sent} messages before the buffer was full, {wouldBlock} WouldBlock, {received} received");
            Assert.That(received, Is.EqualTo(sent), "every message that was sent, and none of the WouldBlock ones");
        }
        Assert.That(Posix.NewFds(before), Is.Empty);
    }

    [Test]
    public void IdlePeerTimesOutAndTheReceiverGoesOn()
    {
        var before = Posix.Snapshot();
        var (a, b) = Posix.SocketPair(SocketType.Stream);
        using (a)
        using (b)
        using (SafeFileHandle f = TempFile(out FdIdentity id))
        {
            b.ReceiveTimeout = 200;
            var t0 = DateTime.UtcNow;
            var e = Assert.Throws<SocketException>(() => b.ReceiveFds(new byte[8]).Dispose());
            Assert.That(e!.SocketErrorCode, Is.EqualTo(SocketError.TimedOut));
            Assert.That(DateTime.UtcNow - t0, Is.LessThan(TimeSpan.FromSeconds(5)));
            // the same receiver then serves the peer when it finally speaks
            a.SendFds("late"u8, f);
            using ReceivedFds r = b.ReceiveFds(new byte[8]);
            Assert.That((r.BytesReceived, r.Count), Is.EqualTo((4, 1)));
            Assert.That(Posix.Identify(r.PeekFd(0)), Is.EqualTo(id));
        }
        Assert.That(Posix.NewFds(before), Is.Empty);
    }

    /// <summary>One thread sends a FileStream's descriptor over and over while another
    /// disposes the FileStream and opens new files (which take the freed fd number). Each
    /// send either delivers the right file or fails with ObjectDisposedException: never
    /// the new file that took the number (the SafeHandle keeps its fd alive for the call).</summary>
    [TestCase("FileStream")]
    [TestCase("SafeFileHandle")]
    public void HandleDisposedDuringSendNeverSendsAnotherFile(string kind)
    {
        var before = Posix.Snapshot();
        var (a, b) = Posix.SocketPair(SocketType.Seqpacket);
        long delivered = 0, disposed = 0;
        using (a)
        using (b)
        {
            var rng = new Random(7);
            for (int round = 0; round < 200; round++)
            {
                string path = Path.Combine(Path.GetTempPath(), $"fdsend-rel-{Guid.NewGuid():N}");
                FileStream? fs = null;
                SafeFileHandle? fh = null;
                if (kind == "FileStream")
                    fs = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
                else
                    fh = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, FileOptions.DeleteOnClose);
                FdIdentity id = Posix.Identify(fs != null ? fs.SafeFileHandle : fh!);
                using var go = new ManualResetEventSlim();
                int sentThisRound = 0, senderDone = 0;
                var sender = Task.Run(() =>
                {
                    go.Set();
                    while (true)
                    {
                        try
                        {
                            if (fs != null)
                                a.SendFds("x"u8, fs);
                            else
                                a.SendFds("x"u8, fh!);
                            Interlocked.Increment(ref sentThisRound);
                        }
                        catch (ObjectDisposedException)
                        {
                            Interlocked.Increment(ref disposed);
                            Volatile.Write(ref senderDone, 1);
                            return;
                        }
                    }
                });
                // The receiver drains as the sender goes (a full buffer would block it).
                var wrong = new List<string>();
                int receivedThisRound = 0;
                var receiver = Task.Run(() =>
                {
                    while (Volatile.Read(ref senderDone) == 0 || receivedThisRound < Volatile.Read(ref sentThisRound))
                    {
                        if (!b.Poll(20_000, SelectMode.SelectRead))
                            continue;
                        using ReceivedFds r = b.ReceiveFds(new byte[1], 2);
                        FdIdentity got = r.Count == 1 ? Posix.Identify(r.PeekFd(0)) : default;
                        if (got != id)
                            lock (wrong) wrong.Add($"message {receivedThisRound}: {r.Count} fds, {got}");
                        receivedThisRound++;
                    }
                });
                go.Wait();
                Thread.SpinWait(rng.Next(1, 20000));
                fs?.Dispose();
                fh?.Dispose();
                // take the freed number with other files while the sender may still be mid-call
                var squatterIds = new List<FdIdentity>();
                var squatters = Enumerable.Range(0, 4).Select(_ => { var h = TempFile(out FdIdentity sid); squatterIds.Add(sid); return h; }).ToArray();
                Assert.That(sender.Wait(30000) && receiver.Wait(30000), Is.True, "the round did not finish");
                foreach (SafeFileHandle sq in squatters)
                    sq.Dispose();
                if (wrong.Count > 0)
                    Assert.Fail($"round {round}: {wrong.Count} of {sentThisRound} messages carried another file than the {kind}'s {id}: " +
                                $"{string.Join("; ", wrong.Take(3))} (squatters: {string.Join(", ", squatterIds)})");
                delivered += receivedThisRound;
                b.Blocking = false;
                Assert.Throws<SocketException>(() => b.ReceiveFds(new byte[1], 2).Dispose(), "a send counted as failed delivered something");
                b.Blocking = true;
            }
        }
        TestContext.Out.WriteLine($"{delivered} sends delivered the right file, {disposed} ended with ObjectDisposedException, 0 wrong");
        Assert.That(disposed, Is.EqualTo(200));
        Assert.That(Posix.NewFds(before), Is.Empty);
    }
}
