// SPDX-License-Identifier: MIT
// Cancellation of SendFdsAsync / ReceiveFdsAsync at every stage, with the process's fd count
// checked: nothing sent or consumed when cancelled before, nothing closed behind the caller's
// back after, and the socket usable afterwards.
namespace FdSend.Tests.Async;

[TestFixture]
[CancelAfter(30_000)]
public class AsyncCancellationTests : TempDirFixture
{
    [Test]
    public async Task An_already_cancelled_token_sends_and_consumes_nothing()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        pair.A.SendFds(TestData.Utf8("m"), f);
        int baseline = AsyncTest.SettledFdCount();

        Assert.CatchAsync<OperationCanceledException>(async () => await pair.A.SendFdsAsync(TestData.Utf8("no"), f, cts.Token));
        Assert.CatchAsync<OperationCanceledException>(async () => await pair.B.ReceiveFdsAsync(new byte[4], cts.Token));
        AsyncTest.AssertFdCount(baseline);

        using ReceivedFds r = await pair.B.ReceiveFdsAsync(new byte[4]).Within();
        Assert.That(r.BytesReceived, Is.EqualTo(1), "the waiting message is still there, and only it");
        Assert.That(r.Count, Is.EqualTo(1));
        Assert.That(pair.B.Available, Is.Zero);
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    [TestCase(SocketType.Dgram)]
    public async Task A_receive_cancelled_while_waiting_consumes_nothing(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        string p = Dir.NewFile("after");
        using var f = File.OpenHandle(p);
        int baseline = AsyncTest.SettledFdCount();

        using (var cts = new CancellationTokenSource())
        {
            Task<ReceivedFds> pending = pair.B.ReceiveFdsAsync(new byte[8], cts.Token).AsTask();
            await AsyncTest.AssertPending(pending, 100);
            cts.Cancel();
            Assert.CatchAsync<OperationCanceledException>(async () => await pending.Within());
        }
        AsyncTest.AssertFdCount(baseline, "after a cancelled receive");

        pair.A.SendFds(TestData.Utf8("after"), f);
        using (ReceivedFds r = await pair.B.ReceiveFdsAsync(new byte[8]).Within())
        {
            Assert.That(r.BytesReceived, Is.EqualTo(5));
            Assert.That(r.Count, Is.EqualTo(1));
            Assert.That(Posix.GetFileId(r.PeekFd(0)), Is.EqualTo(Posix.GetFileId(p)));
        }
        AsyncTest.AssertFdCount(baseline);
    }

    [Test]
    public async Task Cancellation_racing_with_arrival_never_loses_a_message_or_a_descriptor()
    {
        // Each round: a receive whose token is cancelled at about the moment the message
        // arrives. Either the receive returns the message (cancellation came too late) or it
        // throws and the message is still in the socket. Over all rounds every message and
        // every descriptor is accounted for.
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        using var f = File.OpenHandle(Dir.NewFile("race"));
        int baseline = AsyncTest.SettledFdCount();
        const int rounds = 300;
        int received = 0, cancelled = 0;
        var buffer = new byte[4];
        for (int i = 0; i < rounds; i++)
        {
            using var cts = new CancellationTokenSource();
            Task<ReceivedFds> receive = pair.B.ReceiveFdsAsync(buffer, cts.Token).AsTask();
            byte[] msg = BitConverter.GetBytes(i);
            // Release the send and the cancellation at the same moment, with a varying head
            // start for one of them, so that both orders (and the photo finish) happen.
            using var go = new ManualResetEventSlim();
            long delayTicks = System.Diagnostics.Stopwatch.Frequency * (i % 15) * 20 / 1_000_000; // 0 .. 280 us
            Task send = Task.Run(() => { go.Wait(); pair.A.SendFds(msg, f); });
            Task cancel = Task.Run(() =>
            {
                go.Wait();
                long until = System.Diagnostics.Stopwatch.GetTimestamp() + delayTicks;
                while (System.Diagnostics.Stopwatch.GetTimestamp() < until)
                    Thread.SpinWait(20);
                cts.Cancel();
            });
            go.Set();
            ReceivedFds? r = null;
            try
            {
                r = await receive.Within();
            }
            catch (OperationCanceledException)
            {
                cancelled++;
                await send.Within();
                r = await pair.B.ReceiveFdsAsync(buffer).Within(); // it must still be there
            }
            await cancel;
            using (r)
            {
                Assert.That(BitConverter.ToInt32(buffer), Is.EqualTo(i), "messages in order, none lost");
                Assert.That(r.Count, Is.EqualTo(1));
                received++;
            }
        }
        Assert.That(received, Is.EqualTo(rounds));
        Assert.That(pair.B.Available, Is.Zero, "no message left behind");
        TestContext.Progress.WriteLine($"cancellation race: {cancelled} of {rounds} receives were cancelled before the message arrived");
        AsyncTest.AssertFdCount(baseline);
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public async Task A_send_cancelled_while_the_buffer_is_full_sends_nothing(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        long filled = AsyncTest.Fill(pair.A);
        string p = Dir.NewFile("late");
        using var f = File.OpenHandle(p);
        int baseline = AsyncTest.SettledFdCount();

        using (var cts = new CancellationTokenSource())
        {
            Task<int> send = pair.A.SendFdsAsync(TestData.Utf8("never"), f, cts.Token).AsTask();
            await AsyncTest.AssertPending(send, 150);
            cts.Cancel();
            Assert.CatchAsync<OperationCanceledException>(async () => await send.Within());
        }

        // The peer finds exactly the filler: no byte and no descriptor of the cancelled send.
        if (type == SocketType.Stream)
        {
            byte[] all = AsyncTest.ReadPlain(pair.B, filled);
            Assert.That(all.All(b => b == (byte)'f'), Is.True);
        }
        else
        {
            var buffer = new byte[4096];
            for (long got = 0; got < filled;)
            {
                using ReceivedFds r = pair.B.ReceiveFds(buffer);
                Assert.That(r.Count, Is.Zero);
                Assert.That(buffer[0], Is.EqualTo((byte)'f'));
                got += r.BytesReceived;
            }
        }
        Assert.That(pair.B.Available, Is.Zero, "nothing of the cancelled send arrived");
        AsyncTest.AssertFdCount(baseline, "no descriptor arrived");

        // The socket is still usable.
        Assert.That(await pair.A.SendFdsAsync(TestData.Utf8("next"), f).Within(), Is.EqualTo(4));
        using ReceivedFds next = await pair.B.ReceiveFdsAsync(new byte[8]).Within();
        Assert.That(next.BytesReceived, Is.EqualTo(4));
        Assert.That(next.Count, Is.EqualTo(1));
        Assert.That(Posix.GetFileId(next.PeekFd(0)), Is.EqualTo(Posix.GetFileId(p)));
    }

    [Test]
    public async Task A_stream_send_whose_first_chunk_went_out_finishes_despite_cancellation()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.SendBufferSize = 16 * 1024;
        using var f = File.OpenHandle(Dir.NewFile("x"));
        byte[] data = AsyncTest.Pattern(1024 * 1024, 9);
        using var cts = new CancellationTokenSource();

        Task<int> send = pair.A.SendFdsAsync(data, f, cts.Token).AsTask();
        await AsyncTest.AssertPending(send, 100); // the first chunk is out, the rest waits for room
        cts.Cancel();
        await Task.Delay(50);
        Assert.That(send.IsCompleted, Is.False, "a started send ignores cancellation");

        var buffer = new byte[65536];
        var got = new MemoryStream();
        int fds = 0;
        while (got.Length < data.Length)
        {
            using ReceivedFds r = await pair.B.ReceiveFdsAsync(buffer).Within();
            fds += r.Count;
            got.Write(buffer, 0, r.BytesReceived);
        }
        Assert.That(await send.Within(), Is.EqualTo(data.Length));
        Assert.That(got.ToArray().AsSpan().SequenceEqual(data), Is.True, "the bytes arrive intact and in order");
        Assert.That(fds, Is.EqualTo(1));
    }
}
