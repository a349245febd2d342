// SPDX-License-Identifier: MIT
// FdChannel is IDisposable as well as IAsyncDisposable: the synchronous Dispose ends pending
// calls, closes a partly received frame's descriptors and the socket, like DisposeAsync; the
// two may be called in any order, repeatedly and at the same time.
using FdSend.Tests.Async;

namespace FdSend.Tests.Channel;

[TestFixture]
[CancelAfter(60_000)]
public class FdChannelDisposeTests : TempDirFixture
{
    [Test]
    public async Task Dispose_does_what_DisposeAsync_does()
    {
        var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        int baseline = AsyncTest.SettledFdCount();
        pair.A.SendBufferSize = 16 * 1024;
        FdChannel channel;
        Task<FdMessage> pendingReceive;
        Task pendingSend;
        using (channel = new FdChannel(pair.B))
        {
            Assert.That(channel, Is.InstanceOf<IDisposable>());
            // A frame half received (its descriptor kept by the channel), a receive waiting for
            // the rest, and a large send waiting for room.
            pair.A.SendFds(Frames.Make(new byte[100], 1).AsSpan(0, 20), f);
            pendingReceive = channel.ReceiveAsync().AsTask();
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while (pair.B.Available > 0 && sw.ElapsedMilliseconds < 20_000)
                await Task.Delay(1);
            pendingSend = channel.SendAsync(new byte[4 << 20]).AsTask();
            await AsyncTest.AssertPending(pendingReceive, 100);
            await AsyncTest.AssertPending(pendingSend, 10);
            AsyncTest.AssertFdCount(baseline + 1, "the partial frame's descriptor is held by the channel");
        } // Dispose

        Assert.ThrowsAsync<ObjectDisposedException>(async () => await pendingReceive.Within());
        Assert.CatchAsync(async () => await pendingSend.Within()); // ObjectDisposedException or the aborted frame's error
        Assert.ThrowsAsync<ObjectDisposedException>(async () => await channel.ReceiveAsync());
        Assert.ThrowsAsync<ObjectDisposedException>(async () => await channel.SendAsync(new byte[1]));
        Assert.That(() => channel.Socket.Available, Throws.InstanceOf<ObjectDisposedException>(), "the channel owned the socket");
        AsyncTest.AssertFdCount(baseline - 1, "the socket and the partial frame's descriptor were closed");
        pair.A.Dispose();
    }

    [Test]
    public async Task Dispose_ends_the_connection_at_a_frame_boundary_and_LeaveOpen_keeps_the_socket()
    {
        var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        await using var peer = new FdChannel(pair.A);
        var channel = new FdChannel(pair.B);
        await channel.SendAsync(TestData.Utf8("last"));
        channel.Dispose();
        using (FdMessage m = await peer.ReceiveAsync().Within())
            Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("last"));
        Assert.ThrowsAsync<EndOfStreamException>(async () => await peer.ReceiveAsync().Within());

        using var other = SocketPair.Create(Dir, SocketType.Stream);
        new FdChannel(other.A, new FdChannelOptions { LeaveOpen = true }).Dispose();
        other.A.Send(new byte[1]);
    }

    [Test]
    public async Task Dispose_and_DisposeAsync_in_any_order_repeatedly_or_at_once()
    {
        int baseline = AsyncTest.SettledFdCount();
        using var f = File.OpenHandle(Dir.NewFile("x"));
        for (int round = 0; round < 40; round++)
        {
            var pair = SocketPair.Create(Dir, SocketType.Stream);
            var channel = new FdChannel(pair.B);
            pair.A.SendFds(Frames.Make(new byte[10], 1).AsSpan(0, 4), f);
            Task<FdMessage> pending = channel.ReceiveAsync().AsTask();
            switch (round % 4)
            {
                case 0:
                    channel.Dispose();
                    await channel.DisposeAsync();
                    channel.Dispose();
                    break;
                case 1:
                    await channel.DisposeAsync();
                    channel.Dispose();
                    await channel.DisposeAsync();
                    break;
                default:
                    // At the same time, from several threads.
                    using (var start = new Barrier(4))
                    {
                        Task[] all = Enumerable.Range(0, 4).Select(i => Task.Run(async () =>
                        {
                            start.SignalAndWait();
                            if (i % 2 == 0)
                                channel.Dispose();
                            else
                                await channel.DisposeAsync();
                        })).ToArray();
                        await Task.WhenAll(all).Within();
                    }
                    break;
            }
            Assert.CatchAsync<Exception>(async () => (await pending.Within()).Dispose());
            Assert.That(pending.Exception?.InnerException, Is.InstanceOf<ObjectDisposedException>());
            pair.A.Dispose();
        }
        AsyncTest.AssertFdCount(baseline + 1, "every socket and partial frame's descriptor closed (+1: the file)");
    }
}
