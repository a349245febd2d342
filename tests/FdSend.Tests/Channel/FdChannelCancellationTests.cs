// SPDX-License-Identifier: MIT
// Cancelling FdChannel calls at every stage: before data, in the middle of an incoming frame
// (nothing lost, descriptors kept), while waiting for another sender, before a frame's first
// byte (nothing sent), and after it (the frame is finished anyway).
using FdSend.Tests.Async;

namespace FdSend.Tests.Channel;

[TestFixture]
[CancelAfter(30_000)]
public class FdChannelCancellationTests : TempDirFixture
{
    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    [TestCase(SocketType.Dgram)]
    public async Task A_receive_cancelled_before_any_data_loses_nothing(SocketType type)
    {
        var pair = SocketPair.Create(Dir, type);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        await using var sender = new FdChannel(pair.A);
        await using var receiver = new FdChannel(pair.B);
        int baseline = AsyncTest.SettledFdCount();

        using (var cts = new CancellationTokenSource())
        {
            Task<FdMessage> pending = receiver.ReceiveAsync(cts.Token).AsTask();
            await AsyncTest.AssertPending(pending, 100);
            cts.Cancel();
            Assert.CatchAsync<OperationCanceledException>(async () => await pending.Within());
        }
        Assert.CatchAsync<OperationCanceledException>(async () => await receiver.ReceiveAsync(new CancellationToken(true)));
        AsyncTest.AssertFdCount(baseline);

        await sender.SendAsync(TestData.Utf8("after"), new Descriptor[] { f });
        using (FdMessage m = await receiver.ReceiveAsync().Within())
        {
            Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("after"));
            Assert.That(m.FdCount, Is.EqualTo(1));
        }
        AsyncTest.AssertFdCount(baseline);
    }

    [Test]
    public async Task A_receive_cancelled_in_the_middle_of_a_frame_keeps_it_and_the_next_receive_finishes_it()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        string p1 = Dir.NewFile("one"), p2 = Dir.NewFile("two");
        using var f1 = File.OpenHandle(p1);
        using var f2 = File.OpenHandle(p2);
        var channel = new FdChannel(pair.B);
        int baseline = AsyncTest.SettledFdCount();
        byte[] payload = AsyncTest.Pattern(5000, 7);
        byte[] frame = Frames.Make(payload, 2);

        // Stage 1: part of the header (with the descriptors), then cancel.
        pair.A.SendFds(frame.AsSpan(0, 3), f1, f2);
        await CancelOnceTheReceiveHasReadEverything(channel, pair.B);
        AsyncTest.AssertFdCount(baseline + 2, "the channel keeps the frame's two descriptors, open");

        // Stage 2: the rest of the header and part of the payload, then cancel again.
        pair.A.Send(frame.AsSpan(3, 8 + 1000));
        await CancelOnceTheReceiveHasReadEverything(channel, pair.B);
        AsyncTest.AssertFdCount(baseline + 2);

        // Stage 3: the rest arrives; an uncancelled receive hands out the whole message.
        Task<FdMessage> receive = channel.ReceiveAsync().AsTask();
        pair.A.Send(frame.AsSpan(11 + 1000));
        using (FdMessage m = await receive.Within())
        {
            Assert.That(m.Payload.ToArray(), Is.EqualTo(payload));
            Assert.That(m.FdCount, Is.EqualTo(2));
            Assert.That(Posix.GetFileId(m.Fds.PeekFd(0)), Is.EqualTo(Posix.GetFileId(p1)));
            Assert.That(Posix.GetFileId(m.Fds.PeekFd(1)), Is.EqualTo(Posix.GetFileId(p2)));
        }
        AsyncTest.AssertFdCount(baseline, "the message's descriptors were closed with it");

        // A frame left half-received is closed with the channel.
        pair.A.SendFds(Frames.Make(payload, 1).AsSpan(0, 20), f1);
        await CancelOnceTheReceiveHasReadEverything(channel, pair.B);
        AsyncTest.AssertFdCount(baseline + 1);
        await channel.DisposeAsync();
        AsyncTest.AssertFdCount(baseline - 1, "disposing the channel closed its socket and the kept descriptor");
    }

    /// <summary>
    /// Starts a receive, waits until it has read every byte waiting in the socket (the part of
    /// a frame sent so far, and with it any descriptors), then cancels it; the receive must
    /// end with <see cref="OperationCanceledException"/>, keeping the partial frame.
    /// </summary>
    /// <remarks>The cancellation follows the read, not a timer: a token that fired after a
    /// fixed delay (150 ms) could fire before a stalled test thread even called ReceiveAsync
    /// on a loaded machine, and an already cancelled receive reads nothing, so the frame's
    /// descriptors would still be in the socket rather than kept by the channel.</remarks>
    private static async Task CancelOnceTheReceiveHasReadEverything(FdChannel channel, Socket socket)
    {
        using var cts = new CancellationTokenSource();
        Task<FdMessage> receive = channel.ReceiveAsync(cts.Token).AsTask();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (socket.Available > 0 && !receive.IsCompleted && sw.ElapsedMilliseconds < 20_000)
            await Task.Delay(1);
        Assert.That(socket.Available, Is.Zero, "the receive read the part of the frame that was sent");
        Assert.That(receive.IsCompleted, Is.False, $"the receive ended ({receive.Status}) before the frame was complete");
        cts.Cancel();
        Assert.CatchAsync<OperationCanceledException>(async () => await receive.Within());
    }

    [Test]
    public async Task A_send_cancelled_while_waiting_for_another_sender_sends_nothing()
    {
        var pair = SocketPair.Create(Dir, SocketType.Stream);
        await using var sender = new FdChannel(pair.A);
        await using var receiver = new FdChannel(pair.B);
        pair.A.SendBufferSize = 16 * 1024;
        using var f = File.OpenHandle(Dir.NewFile("x"));

        // A large frame holds the send lock while it waits for the reader.
        byte[] big = AsyncTest.Pattern(2_000_000, 1);
        Task first = sender.SendAsync(big).AsTask();
        await AsyncTest.AssertPending(first, 100);
        using (var cts = new CancellationTokenSource())
        {
            Task second = sender.SendAsync(TestData.Utf8("cancelled"), new Descriptor[] { f }, cts.Token).AsTask();
            await AsyncTest.AssertPending(second, 50);
            cts.Cancel();
            Assert.CatchAsync<OperationCanceledException>(async () => await second.Within());
        }
        Task third = sender.SendAsync(TestData.Utf8("third"), new Descriptor[] { f }).AsTask();

        using (FdMessage m = await receiver.ReceiveAsync().Within())
            Assert.That(m.Payload.Span.SequenceEqual(big), Is.True);
        using (FdMessage m = await receiver.ReceiveAsync().Within())
        {
            Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("third"), "the cancelled message was never sent");
            Assert.That(m.FdCount, Is.EqualTo(1));
        }
        await first.Within();
        await third.Within();
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public async Task A_send_cancelled_before_its_first_byte_sends_nothing_and_the_channel_stays_usable(SocketType type)
    {
        var pair = SocketPair.Create(Dir, type);
        await using var sender = new FdChannel(pair.A);
        await using var receiver = new FdChannel(pair.B);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        // Fill the socket with whole frames so that the next one cannot start.
        pair.A.SendBufferSize = 8 * 1024;
        int queued = 0;
        while (true)
        {
            Task t = sender.SendAsync(new byte[1000]).AsTask();
            await Task.WhenAny(t, Task.Delay(50));
            if (!t.IsCompleted)
            {
                // This one is waiting for room before its first byte: cancel it.
                break;
            }
            queued++;
        }
        // (The loop's last send is the one waiting; cancel a fresh one behind it instead,
        // which waits for the lock, and also test the one waiting for room below.)
        int baseline = AsyncTest.SettledFdCount();
        using (var cts = new CancellationTokenSource())
        {
            Task waiting = sender.SendAsync(TestData.Utf8("never"), new Descriptor[] { f }, cts.Token).AsTask();
            await AsyncTest.AssertPending(waiting, 50);
            cts.Cancel();
            Assert.CatchAsync<OperationCanceledException>(async () => await waiting.Within());
        }
        for (int i = 0; i <= queued; i++)
        {
            using FdMessage m = await receiver.ReceiveAsync().Within();
            Assert.That(m.Length, Is.EqualTo(1000));
            Assert.That(m.FdCount, Is.Zero);
        }
        await sender.SendAsync(TestData.Utf8("next"), new Descriptor[] { f }).Within();
        using (FdMessage m = await receiver.ReceiveAsync().Within())
        {
            Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("next"), "nothing of the cancelled message arrived");
            Assert.That(m.FdCount, Is.EqualTo(1));
        }
        AsyncTest.AssertFdCount(baseline);
    }

    [Test]
    public async Task A_send_cancelled_while_its_own_first_byte_waits_for_room_sends_nothing()
    {
        var pair = SocketPair.Create(Dir, SocketType.Stream);
        long filled = AsyncTest.Fill(pair.A); // raw bytes first: the channel's frame cannot start
        await using var sender = new FdChannel(pair.A, new FdChannelOptions { LeaveOpen = true });
        using var f = File.OpenHandle(Dir.NewFile("x"));
        using (var cts = new CancellationTokenSource())
        {
            Task waiting = sender.SendAsync(TestData.Utf8("never"), new Descriptor[] { f }, cts.Token).AsTask();
            await AsyncTest.AssertPending(waiting, 100);
            cts.Cancel();
            Assert.CatchAsync<OperationCanceledException>(async () => await waiting.Within());
        }
        Assert.That(AsyncTest.ReadPlain(pair.B, filled).All(b => b == (byte)'f'), Is.True);
        Assert.That(pair.B.Available, Is.Zero, "not one byte of the cancelled frame was sent");

        await using var receiver = new FdChannel(pair.B);
        await sender.SendAsync(TestData.Utf8("usable"), new Descriptor[] { f }).Within();
        using FdMessage m = await receiver.ReceiveAsync().Within();
        Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("usable"));
        pair.A.Dispose();
    }

    [Test]
    public async Task A_send_cancelled_after_its_frame_started_finishes_the_frame()
    {
        var pair = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.SendBufferSize = 16 * 1024;
        await using var sender = new FdChannel(pair.A);
        await using var receiver = new FdChannel(pair.B);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        byte[] big = AsyncTest.Pattern(1_000_000, 5);
        using var cts = new CancellationTokenSource();
        Task send = sender.SendAsync(big, new Descriptor[] { f }, cts.Token).AsTask();
        await AsyncTest.AssertPending(send, 100);
        cts.Cancel();
        await Task.Delay(50);
        Assert.That(send.IsCompleted, Is.False, "a started frame is not abandoned");
        using FdMessage m = await receiver.ReceiveAsync().Within();
        Assert.That(m.Payload.Span.SequenceEqual(big), Is.True);
        Assert.That(m.FdCount, Is.EqualTo(1));
        await send.Within(); // completed, not cancelled
        Assert.That(sender.Fault, Is.Null);
    }
}
