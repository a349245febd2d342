// SPDX-License-Identifier: MIT
// Many threads sending and many receiving on the same pair of sockets (seqpacket: the
// kernel keeps messages whole): every message arrives exactly once with exactly its own
// descriptors; the fd table is clean at the end.
using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Reliability;

[TestFixture]
[NonParallelizable]
public class StressTests
{
    [Test]
    public void ThreadsSharingSocketsLoseAndMixUpNothing()
    {
        if (!Posix.Supported)
            Assert.Ignore("SKIPPED: Linux x64/arm64 only");
        const int senders = 4, receivers = 4, perSender = 3000, filesPerSender = 6;
        var before = Posix.Snapshot();
        var (a, b) = Posix.SocketPair(SocketType.Seqpacket);
        var files = new SafeFileHandle[senders, filesPerSender];
        var ids = new FdIdentity[senders, filesPerSender];
        for (int t = 0; t < senders; t++)
            for (int k = 0; k < filesPerSender; k++)
            {
                string path = Path.Combine(Path.GetTempPath(), $"fdsend-rel-{Guid.NewGuid():N}");
                files[t, k] = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
                File.Delete(path);
                ids[t, k] = Posix.Identify(files[t, k]);
            }
        var seen = new int[senders * perSender];
        long fdsReceived = 0;
        string? failure = null;
        var recv = Enumerable.Range(0, receivers).Select(_ => Task.Run(() =>
        {
            var buf = new byte[16];
            var fds = new int[8];
            while (true)
            {
                int n = b.ReceiveFds(buf, fds, out int count, out ReceiveFlags flags);
                if (n == 0 && count == 0 && flags == ReceiveFlags.None)
                    return; // shut down
                int tid = BinaryPrimitives.ReadInt32LittleEndian(buf);
                int seq = BinaryPrimitives.ReadInt32LittleEndian(buf.AsSpan(4));
                int k0 = buf[8], nk = buf[9];
                if (n != 16 || flags != ReceiveFlags.None || count != nk)
                    failure ??= $"thread {tid} message {seq}: {n} bytes, {count} fds (sent {nk}), {flags}";
                for (int i = 0; i < count; i++)
                {
                    if (Posix.Identify(fds[i]) != ids[tid, (k0 + i) % filesPerSender])
                        failure ??= $"thread {tid} message {seq} fd {i}: wrong descriptor";
                    Posix.Close(fds[i]);
                }
                Interlocked.Add(ref fdsReceived, count);
                Interlocked.Increment(ref seen[tid * perSender + seq]);
            }
        })).ToArray();
        var send = Enumerable.Range(0, senders).Select(tid => Task.Run(() =>
        {
            var buf = new byte[16];
            var d = new Descriptor[4];
            for (int seq = 0; seq < perSender; seq++)
            {
                int k0 = seq % filesPerSender, nk = seq % 5;
                BinaryPrimitives.WriteInt32LittleEndian(buf, tid);
                BinaryPrimitives.WriteInt32LittleEndian(buf.AsSpan(4), seq);
                buf[8] = (byte)k0;
                buf[9] = (byte)nk;
                for (int i = 0; i < nk; i++)
                    d[i] = files[tid, (k0 + i) % filesPerSender];
                a.SendFds(buf, d.AsSpan(0, nk));
            }
        })).ToArray();
        Task.WaitAll(send);
        a.Shutdown(SocketShutdown.Send); // every receiver sees the end
        Task.WaitAll(recv);
        a.Dispose();
        b.Dispose();
        foreach (SafeFileHandle f in files)
            f.Dispose();
        Assert.That(failure, Is.Null);
        Assert.That(seen.Count(x => x == 0), Is.Zero, "lost messages");
        Assert.That(seen.Count(x => x > 1), Is.Zero, "duplicated messages");
        TestContext.Out.WriteLine($"{senders} senders x {perSender}, {receivers} receivers: {seen.Length} messages, {fdsReceived} fds, 0 lost, 0 duplicated");
        Assert.That(Posix.NewFds(before), Is.Empty);
    }

    /// <summary>Many tasks sending on one FdChannel and many receiving on the other end, over a
    /// stream socket (where only the channel keeps frames whole), plus async raw sends on a
    /// seqpacket pair: every message exactly once, with its own descriptors.</summary>
    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public async Task ChannelSharedByManyTasksLosesAndMixesUpNothing(SocketType type)
    {
        if (!Posix.Supported)
            Assert.Ignore("SKIPPED: Linux x64/arm64 only");
        const int senders = 4, receivers = 4, perSender = 2000;
        var before = Posix.Snapshot();
        var (a, b) = Posix.SocketPair(type);
        var files = Enumerable.Range(0, senders).Select(_ =>
        {
            string path = Path.Combine(Path.GetTempPath(), $"fdsend-rel-{Guid.NewGuid():N}");
            SafeFileHandle h = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
            File.Delete(path);
            return h;
        }).ToArray();
        var ids = files.Select(Posix.Identify).ToArray();
        var seen = new int[senders * perSender];
        string? failure = null;
        await using (var tx = new FdChannel(a))
        await using (var rx = new FdChannel(b))
        {
            var recv = Enumerable.Range(0, receivers).Select(_ => Task.Run(async () =>
            {
                while (true)
                {
                    FdMessage m;
                    try { m = await rx.ReceiveAsync(); }
                    catch (EndOfStreamException) { return; }
                    using (m)
                    {
                        int tid = BinaryPrimitives.ReadInt32LittleEndian(m.Payload.Span);
                        int seq = BinaryPrimitives.ReadInt32LittleEndian(m.Payload.Span[4..]);
                        if (m.FdCount != seq % 4 || m.Length != 8 + seq % 100)
                            failure ??= $"task {tid} message {seq}: {m.Length} bytes, {m.FdCount} fds";
                        for (int i = 0; i < m.FdCount; i++)
                            if (Posix.Identify(m.Fds.PeekFd(i)) != ids[tid])
                                failure ??= $"task {tid} message {seq}: wrong descriptor";
                        Interlocked.Increment(ref seen[tid * perSender + seq]);
                    }
                }
            })).ToArray();
            var send = Enumerable.Range(0, senders).Select(tid => Task.Run(async () =>
            {
                for (int seq = 0; seq < perSender; seq++)
                {
                    var payload = new byte[8 + seq % 100];
                    BinaryPrimitives.WriteInt32LittleEndian(payload, tid);
                    BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(4), seq);
                    var d = Enumerable.Repeat((Descriptor)files[tid], seq % 4).ToArray();
                    await tx.SendAsync(payload, d);
                }
            })).ToArray();
            await Task.WhenAll(send);
            a.Shutdown(SocketShutdown.Send); // the end, at a frame boundary
            await Task.WhenAll(recv);
        }
        foreach (SafeFileHandle f in files)
            f.Dispose();
        Assert.That(failure, Is.Null);
        Assert.That(seen.Count(x => x != 1), Is.Zero, "every message exactly once");
        TestContext.Out.WriteLine($"{type}: {senders} sending tasks x {perSender} frames, {receivers} receiving tasks: 0 lost, 0 duplicated");
        Assert.That(Posix.NewFds(before), Is.Empty);
    }
}
