// SPDX-License-Identifier: MIT
// Sends that meet a full socket buffer: they wait without a thread each (one shared poller),
// complete as soon as the peer reads, and end when the socket is disposed.
namespace FdSend.Tests.Async;

[TestFixture]
[CancelAfter(30_000)]
public class AsyncBackpressureTests : TempDirFixture
{
    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    [TestCase(SocketType.Dgram)]
    public async Task A_send_blocked_on_a_full_buffer_completes_when_the_peer_reads(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        long filled = AsyncTest.Fill(pair.A);
        string p = Dir.NewFile("waited");
        using var f = File.OpenHandle(p);

        Task<int> send = pair.A.SendFdsAsync(TestData.Utf8("payload"), f).AsTask();
        await AsyncTest.AssertPending(send);

        var buffer = new byte[4096];
        long got = 0;
        while (got < filled)
        {
            using ReceivedFds r = pair.B.ReceiveFds(type == SocketType.Stream
                ? buffer.AsSpan(0, (int)Math.Min(buffer.Length, filled - got))
                : buffer);
            Assert.That(r.Count, Is.Zero);
            got += r.BytesReceived;
        }
        Assert.That(await send.Within(5000), Is.EqualTo(7));
        using ReceivedFds m = pair.B.ReceiveFds(buffer);
        Assert.That(TestData.Text(buffer.AsSpan(0, m.BytesReceived)), Is.EqualTo("payload"));
        Assert.That(m.Count, Is.EqualTo(1));
        Assert.That(Posix.GetFileId(m.PeekFd(0)), Is.EqualTo(Posix.GetFileId(p)));
    }

    [Test]
    public async Task Many_blocked_sends_share_one_thread_and_all_complete()
    {
        const int count = 100;
        var pairs = new List<SocketPair>();
        using var f = File.OpenHandle(Dir.NewFile("x"));
        try
        {
            for (int i = 0; i < count; i++)
            {
                var pair = SocketPair.Create(Dir, SocketType.Stream);
                pairs.Add(pair);
                AsyncTest.Fill(pair.A, 4096);
            }
            // Let the pool settle, then count threads with every send blocked.
            int idle = await AsyncTest.SteadyThreadCount(200);
            var sends = pairs.Select(pair => pair.A.SendFdsAsync(TestData.Utf8("hi"), f).AsTask()).ToArray();
            int busy = await AsyncTest.SteadyThreadCount(300);
            Assert.That(sends.Count(s => s.IsCompleted), Is.Zero);
            TestContext.Progress.WriteLine($"threads: {idle} idle, {busy} with {count} sends waiting for room");
            Assert.That(busy, Is.LessThanOrEqualTo(idle + 3), "blocked sends must not each hold a thread");

            // Drain every peer: every send completes.
            var buffer = new byte[65536];
            foreach (SocketPair pair in pairs)
            {
                pair.B.Blocking = false;
                while (pair.B.Receive(buffer, 0, buffer.Length, SocketFlags.None, out SocketError e) > 0 && e == SocketError.Success)
                {
                }
                pair.B.Blocking = true;
            }
            await Task.WhenAll(sends).Within(10_000);
            Assert.That(sends.All(s => s.Result == 2), Is.True);
        }
        finally
        {
            foreach (SocketPair pair in pairs)
                pair.Dispose();
        }
    }

    [Test]
    public async Task Disposing_the_socket_ends_a_blocked_send()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        AsyncTest.Fill(pair.A);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        Task<int> send = pair.A.SendFdsAsync(TestData.Utf8("x"), f).AsTask();
        await AsyncTest.AssertPending(send, 100);
        pair.A.Dispose();
        Assert.CatchAsync<ObjectDisposedException>(async () => await send.Within(5000));
    }

    [Test]
    public async Task A_blocked_send_to_a_peer_that_closes_fails_with_shutdown()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        AsyncTest.Fill(pair.A);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        Task<int> send = pair.A.SendFdsAsync(TestData.Utf8("x"), f).AsTask();
        await AsyncTest.AssertPending(send, 100);
        pair.B.Dispose();
        var e = Assert.ThrowsAsync<SocketException>(async () => await send.Within(5000));
        Assert.That(e!.SocketErrorCode, Is.EqualTo(SocketError.Shutdown).Or.EqualTo(SocketError.ConnectionReset));
    }
}
