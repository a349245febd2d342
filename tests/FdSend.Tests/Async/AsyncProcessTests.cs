// SPDX-License-Identifier: MIT
// The async API between two real processes (FdSend.TestPeer), and the thread cost of many
// pending receives.
namespace FdSend.Tests.Async;

[TestFixture]
[CancelAfter(60_000)]
public class AsyncProcessTests : TempDirFixture
{
    [Test]
    public async Task Thousands_of_concurrent_async_round_trips_with_another_process()
    {
        const int connections = 32, perConnection = 150; // 4,800 round trips, 32 at any moment
        string[] paths = Enumerable.Range(0, 4).Select(i => Dir.NewFile($"file {i}")).ToArray();
        var files = paths.Select(p => File.OpenHandle(p)).ToArray();
        FileId[] ids = paths.Select(Posix.GetFileId).ToArray();
        int baseline = AsyncTest.SettledFdCount();
        try
        {
            using (var peer = AsyncPeerProcess.Start(Dir, "raw-echo", connections, connections.ToString()))
            {
                int opened = AsyncTest.SettledFdCount();
                await Task.WhenAll(peer.Connections.Select((socket, c) => Task.Run(async () =>
                {
                    var request = new byte[16];
                    var reply = new byte[16];
                    for (int i = 0; i < perConnection; i++)
                    {
                        BitConverter.TryWriteBytes(request.AsSpan(0, 4), c);
                        BitConverter.TryWriteBytes(request.AsSpan(4, 4), i);
                        int which = (c + i) % files.Length;
                        Descriptor[] fds = i % 5 == 0
                            ? Array.Empty<Descriptor>()
                            : new Descriptor[] { files[which], files[(which + 1) % files.Length] };
                        Assert.That(await socket.SendFdsAsync(request, fds), Is.EqualTo(16));

                        int got = 0;
                        while (got < reply.Length)
                        {
                            using ReceivedFds r = await socket.ReceiveFdsAsync(reply.AsMemory(got));
                            Assert.That(r.IsEndOfStream, Is.False, "the peer hung up");
                            if (got == 0)
                            {
                                Assert.That(r.Count, Is.EqualTo(fds.Length));
                                for (int k = 0; k < r.Count; k++)
                                    Assert.That(Posix.GetFileId(r.PeekFd(k)), Is.EqualTo(ids[(which + k) % files.Length]));
                            }
                            else
                            {
                                Assert.That(r.Count, Is.Zero);
                            }
                            got += r.BytesReceived;
                        }
                        Assert.That(reply, Is.EqualTo(request));
                    }
                }))).Within(50_000);
                AsyncTest.AssertFdCount(opened, "every received descriptor was closed");
                foreach (Socket s in peer.Connections)
                    s.Shutdown(SocketShutdown.Send);
                peer.WaitForSuccess();
            }
            AsyncTest.AssertFdCount(baseline);
        }
        finally
        {
            foreach (var f in files)
                f.Dispose();
        }
    }

    [Test]
    public async Task A_send_blocked_on_a_full_buffer_completes_when_the_peer_process_starts_reading()
    {
        using var peer = AsyncPeerProcess.Start(Dir, "slow-reader", 1);
        Socket socket = peer.Connections[0];
        long filled = AsyncTest.Fill(socket);
        string p = Dir.NewFile("handed over");
        using var f = File.OpenHandle(p);
        byte[] data = AsyncTest.Pattern(300_000, 1); // larger than both socket buffers

        Task<int> send = socket.SendFdsAsync(data, f).AsTask();
        await AsyncTest.AssertPending(send, 500);
        peer.Signal(); // the peer starts reading now
        Assert.That(await send.Within(10_000), Is.EqualTo(data.Length));
        socket.Shutdown(SocketShutdown.Send);

        string report = peer.WaitForSuccess().Trim();
        Assert.That(report, Is.EqualTo($"bytes={filled + data.Length} fds=1 ids={Posix.GetFileId(p)}"));
    }

    [Test]
    public async Task A_thousand_pending_receives_do_not_add_threads()
    {
        const int count = 1000;
        var pairs = new List<SocketPair>(count);
        try
        {
            for (int i = 0; i < count; i++)
                pairs.Add(SocketPair.Create(Dir, SocketType.Stream));
            // Warm up the async machinery on one pair, then measure.
            pairs[0].A.Send(new byte[1]);
            using (await pairs[0].B.ReceiveFdsAsync(new byte[1]).Within()) { }
            int idle = await AsyncTest.SteadyThreadCount(300);
            long memoryBefore = GC.GetTotalMemory(forceFullCollection: true);

            var buffers = new byte[count][];
            var receives = new Task<ReceivedFds>[count];
            for (int i = 0; i < count; i++)
            {
                buffers[i] = new byte[4];
                receives[i] = pairs[i].B.ReceiveFdsAsync(buffers[i]).AsTask();
            }
            int pending = await AsyncTest.SteadyThreadCount(500);
            long memoryAfter = GC.GetTotalMemory(forceFullCollection: true);
            Assert.That(receives.Count(r => r.IsCompleted), Is.Zero);
            TestContext.Progress.WriteLine(
                $"threads: {idle} idle, {pending} with {count} receives pending; managed memory per pending receive ~{(memoryAfter - memoryBefore) / count} bytes (including the test's Task wrappers)");
            Assert.That(pending, Is.LessThanOrEqualTo(idle + 3), "pending receives must not hold threads");

            using var f = File.OpenHandle(Dir.NewFile("x"));
            for (int i = 0; i < count; i++)
                pairs[i].A.SendFds(BitConverter.GetBytes(i), f);
            ReceivedFds[] results = await Task.WhenAll(receives).Within(20_000);
            for (int i = 0; i < count; i++)
            {
                using ReceivedFds r = results[i];
                Assert.That(BitConverter.ToInt32(buffers[i]), Is.EqualTo(i));
                Assert.That(r.Count, Is.EqualTo(1));
            }
        }
        finally
        {
            foreach (SocketPair pair in pairs)
                pair.Dispose();
        }
    }
}
