// SPDX-License-Identifier: MIT
// FdChannel between two in-process endpoints: messages with descriptors over every socket
// type, limits on both sides, many concurrent senders and receivers, end of stream, dispose.
using FdSend.Tests.Async;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Tests.Channel;

[TestFixture]
[CancelAfter(30_000)]
public class FdChannelTests : TempDirFixture
{
    private (FdChannel A, FdChannel B) Channels(SocketType type, FdChannelOptions? a = null, FdChannelOptions? b = null)
    {
        var pair = SocketPair.Create(Dir, type);
        return (new FdChannel(pair.A, a), new FdChannel(pair.B, b));
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    [TestCase(SocketType.Dgram)]
    public async Task Each_send_arrives_as_one_message_with_its_descriptors(SocketType type)
    {
        int baseline = AsyncTest.SettledFdCount();
        string[] paths = { Dir.NewFile("zero"), Dir.NewFile("one"), Dir.NewFile("two") };
        var files = paths.Select(p => File.OpenHandle(p)).ToArray();
        var (a, b) = Channels(type);
        await using (a)
        await using (b)
        {
            int[] sizes = type == SocketType.Stream
                ? new[] { 0, 1, 7, 8, 9, 1000, 65_536, 65_537, 300_000, 2_000_000 }
                : new[] { 0, 1, 7, 8, 9, 1000, 65_536, 100_000 };
            Task sender = Task.Run(async () =>
            {
                for (int i = 0; i < sizes.Length; i++)
                {
                    Descriptor[] fds = files.Take(i % 4).Select(h => (Descriptor)h).ToArray();
                    await a.SendAsync(AsyncTest.Pattern(sizes[i], i), fds);
                }
            });
            for (int i = 0; i < sizes.Length; i++)
            {
                using FdMessage m = await b.ReceiveAsync().Within();
                Assert.That(m.Length, Is.EqualTo(sizes[i]));
                Assert.That(m.Payload.Span.SequenceEqual(AsyncTest.Pattern(sizes[i], i)), Is.True, $"payload {i} intact");
                Assert.That(m.FdCount, Is.EqualTo(i % 4));
                for (int k = 0; k < m.FdCount; k++)
                    Assert.That(Posix.GetFileId(m.Fds.PeekFd(k)), Is.EqualTo(Posix.GetFileId(paths[k])), "descriptors in the order sent");
                if (m.FdCount > 0)
                {
                    using SafeFileHandle h = m.Fds.TakeFileHandle(0);
                    Assert.That(TestData.ReadAll(h), Is.EqualTo("zero"));
                    Assert.That(Posix.IsCloseOnExec((int)h.DangerousGetHandle()), Is.True);
                }
            }
            await sender.Within();
        }
        foreach (var f in files)
            f.Dispose();
        AsyncTest.AssertFdCount(baseline);
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public async Task ReadAllAsync_ends_at_a_clean_end_and_ReceiveAsync_then_says_end_of_stream(SocketType type)
    {
        var (a, b) = Channels(type);
        await using (b)
        {
            for (int i = 0; i < 5; i++)
                await a.SendAsync(BitConverter.GetBytes(i));
            await a.DisposeAsync(); // closes the socket after the last whole frame

            var seen = new List<int>();
            await foreach (FdMessage m in b.ReadAllAsync().WithCancellation(CancellationToken.None))
            {
                using (m)
                    seen.Add(BitConverter.ToInt32(m.Payload.Span));
            }
            Assert.That(seen, Is.EqualTo(new[] { 0, 1, 2, 3, 4 }));
            Assert.ThrowsAsync<EndOfStreamException>(async () => await b.ReceiveAsync());
            Assert.ThrowsAsync<ObjectDisposedException>(async () => await a.SendAsync(new byte[1]));
        }
    }

    [Test]
    public async Task The_sender_enforces_its_limits_before_sending_anything()
    {
        var options = new FdChannelOptions { MaxMessageSize = 100, MaxFdsPerMessage = 2 };
        var (a, b) = Channels(SocketType.Stream, options);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        await using (a)
        await using (b)
        {
            var e1 = Assert.Throws<ArgumentException>(() => a.SendAsync(new byte[101]).GetAwaiter().GetResult());
            Assert.That(e1!.ParamName, Is.EqualTo("payload"));
            var e2 = Assert.Throws<ArgumentException>(() => a.SendAsync(new byte[1], new Descriptor[] { f, f, f }).GetAwaiter().GetResult());
            Assert.That(e2!.ParamName, Is.EqualTo("fds"));
            Assert.ThrowsAsync<ArgumentException>(async () => await a.SendAsync(new byte[1], new Descriptor[] { default }));
            Assert.That(a.Socket.Available + b.Socket.Available, Is.Zero);

            await a.SendAsync(new byte[100], new Descriptor[] { f, f });
            using FdMessage m = await b.ReceiveAsync().Within();
            Assert.That(m.Length, Is.EqualTo(100), "the first message the peer sees is the valid one");
            Assert.That(m.FdCount, Is.EqualTo(2));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new FdChannelOptions { MaxFdsPerMessage = FdPassing.MaxFds + 1 });
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new FdChannelOptions { MaxMessageSize = -1 });
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    [TestCase(SocketType.Dgram)]
    public async Task The_receiver_discards_a_message_over_its_limits_and_stays_usable(SocketType type)
    {
        var strict = new FdChannelOptions { MaxMessageSize = 1000, MaxFdsPerMessage = 1 };
        var (a, b) = Channels(type, null, strict);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        await using (a)
        await using (b)
        {
            int baseline = AsyncTest.SettledFdCount();
            int big = type == SocketType.Stream ? 5_000_000 : 50_000;
            Task sending = Task.Run(async () =>
            {
                await a.SendAsync(new byte[big], new Descriptor[] { f });
                await a.SendAsync(TestData.Utf8("ok 1"), new Descriptor[] { f });
                await a.SendAsync(TestData.Utf8("two fds"), new Descriptor[] { f, f });
                await a.SendAsync(TestData.Utf8("ok 2"));
            });

            var e = Assert.ThrowsAsync<FdMessageRejectedException>(async () => await b.ReceiveAsync().Within());
            Assert.That(e!.Reason, Is.EqualTo(FdMessageRejectReason.PayloadTooLarge));
            Assert.That(e.PayloadLength, Is.EqualTo(big));
            Assert.That(e.FdCount, Is.EqualTo(1));
            using (FdMessage m = await b.ReceiveAsync().Within())
            {
                Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("ok 1"));
                Assert.That(m.FdCount, Is.EqualTo(1));
            }
            e = Assert.ThrowsAsync<FdMessageRejectedException>(async () => await b.ReceiveAsync().Within());
            Assert.That(e!.Reason, Is.EqualTo(FdMessageRejectReason.TooManyFds));
            Assert.That(e.FdCount, Is.EqualTo(2));
            using (FdMessage m = await b.ReceiveAsync().Within())
                Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("ok 2"));
            await sending.Within();
            Assert.That(b.Fault, Is.Null);
            AsyncTest.AssertFdCount(baseline, "the rejected messages' descriptors were closed");
        }
    }

    [Test]
    public async Task Many_concurrent_senders_never_interleave_frames()
    {
        const int senders = 16, perSender = 60;
        string p = Dir.NewFile("shared");
        using var f = File.OpenHandle(p);
        FileId id = Posix.GetFileId(p);
        int baseline = AsyncTest.SettledFdCount();
        var (a, b) = Channels(SocketType.Stream);
        a.Socket.SendBufferSize = 32 * 1024; // force partial sends and waits for room
        await using (a)
        await using (b)
        {
            static int Size(int s, int i) => (s * 7919 + i * 104_729) % 5 == 0 ? 70_000 + s * 100 + i : (s * 31 + i * 17) % 3000;

            Task[] sending = Enumerable.Range(0, senders).Select(s => Task.Run(async () =>
            {
                for (int i = 0; i < perSender; i++)
                {
                    byte[] payload = AsyncTest.Pattern(Size(s, i) + 8, s * 1000 + i);
                    BitConverter.TryWriteBytes(payload.AsSpan(0, 4), s);
                    BitConverter.TryWriteBytes(payload.AsSpan(4, 4), i);
                    Descriptor[] fds = Enumerable.Repeat((Descriptor)f, i % 3).ToArray();
                    await a.SendAsync(payload, fds);
                }
            })).ToArray();

            var next = new int[senders];
            for (int n = 0; n < senders * perSender; n++)
            {
                using FdMessage m = await b.ReceiveAsync().Within();
                int s = BitConverter.ToInt32(m.Payload.Span);
                int i = BitConverter.ToInt32(m.Payload.Span.Slice(4));
                Assert.That(i, Is.EqualTo(next[s]), $"sender {s}'s messages arrive in order");
                next[s]++;
                byte[] expected = AsyncTest.Pattern(Size(s, i) + 8, s * 1000 + i);
                Assert.That(m.Payload.Span.Slice(8).SequenceEqual(expected.AsSpan(8)), Is.True, $"message {s}/{i} intact");
                Assert.That(m.FdCount, Is.EqualTo(i % 3));
                for (int k = 0; k < m.FdCount; k++)
                    Assert.That(Posix.GetFileId(m.Fds.PeekFd(k)), Is.EqualTo(id));
            }
            await Task.WhenAll(sending).Within();
        }
        AsyncTest.AssertFdCount(baseline);
    }

    [Test]
    public async Task Concurrent_receivers_each_get_whole_messages()
    {
        var (a, b) = Channels(SocketType.Stream);
        await using (a)
        await using (b)
        {
            const int total = 400;
            var got = new System.Collections.Concurrent.ConcurrentBag<int>();
            Task[] receivers = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
            {
                try
                {
                    await foreach (FdMessage m in b.ReadAllAsync())
                    {
                        using (m)
                        {
                            int v = BitConverter.ToInt32(m.Payload.Span);
                            Assert.That(m.Length, Is.EqualTo(4 + v % 500));
                            got.Add(v);
                        }
                    }
                }
                catch (ObjectDisposedException)
                {
                }
            })).ToArray();
            for (int i = 0; i < total; i++)
            {
                var payload = new byte[4 + i % 500];
                BitConverter.TryWriteBytes(payload, i);
                await a.SendAsync(payload);
            }
            await a.DisposeAsync();
            await Task.WhenAll(receivers).Within();
            Assert.That(got.OrderBy(x => x), Is.EqualTo(Enumerable.Range(0, total)));
        }
    }

    [Test]
    public async Task Disposing_ends_pending_calls_and_closes_the_socket_at_a_frame_boundary()
    {
        var (a, b) = Channels(SocketType.Stream);
        await using (b)
        {
            Task<FdMessage> pending = a.ReceiveAsync().AsTask();
            await AsyncTest.AssertPending(pending, 100);
            await a.DisposeAsync().AsTask().Within();
            Assert.ThrowsAsync<ObjectDisposedException>(async () => await pending.Within());
            Assert.ThrowsAsync<ObjectDisposedException>(async () => await a.ReceiveAsync());
            Assert.That(() => a.Socket.Available, Throws.InstanceOf<ObjectDisposedException>(), "the channel owned the socket");
            Assert.ThrowsAsync<EndOfStreamException>(async () => await b.ReceiveAsync().Within());
        }

        // LeaveOpen: the socket survives the channel.
        var pair = SocketPair.Create(Dir, SocketType.Stream);
        var c = new FdChannel(pair.A, new FdChannelOptions { LeaveOpen = true });
        await c.DisposeAsync();
        pair.A.Send(new byte[1]);
        pair.Dispose();
    }

    [Test]
    public void The_constructor_refuses_sockets_it_cannot_work_with()
    {
        using var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Assert.Throws<ArgumentException>(() => _ = new FdChannel(tcp));
        var gone = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        gone.Dispose();
        Assert.Throws<ObjectDisposedException>(() => _ = new FdChannel(gone));
        Assert.Throws<ArgumentNullException>(() => _ = new FdChannel(null!));
    }
}
