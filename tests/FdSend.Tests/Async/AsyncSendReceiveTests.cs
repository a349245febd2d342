// SPDX-License-Identifier: MIT
// SendFdsAsync / ReceiveFdsAsync in one process: data, descriptor identity, socket types,
// the synchronous fast path, partial stream sends, errors through the task, sync/async mixing.
using Microsoft.Win32.SafeHandles;

namespace FdSend.Tests.Async;

[TestFixture]
[CancelAfter(30_000)]
public class AsyncSendReceiveTests : TempDirFixture
{
    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    [TestCase(SocketType.Dgram)]
    public async Task Round_trip_carries_data_and_the_same_files(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        string p1 = Dir.NewFile("one"), p2 = Dir.NewFile("two");
        using var f1 = File.OpenHandle(p1);
        using var f2 = File.OpenHandle(p2);
        int baseline = AsyncTest.SettledFdCount();

        int sent = await pair.A.SendFdsAsync(TestData.Utf8("hello"), new Descriptor[] { f1, f2 }).Within();
        Assert.That(sent, Is.EqualTo(5));

        var buffer = new byte[64];
        using (ReceivedFds r = await pair.B.ReceiveFdsAsync(buffer).Within())
        {
            Assert.That(TestData.Text(buffer.AsSpan(0, r.BytesReceived)), Is.EqualTo("hello"));
            Assert.That(r.Count, Is.EqualTo(2));
            Assert.That(r.Flags, Is.EqualTo(ReceiveFlags.None));
            using SafeFileHandle h1 = r.TakeFileHandle(0);
            using SafeFileHandle h2 = r.TakeFileHandle(1);
            Assert.That(Posix.GetFileId(h1), Is.EqualTo(Posix.GetFileId(p1)));
            Assert.That(Posix.GetFileId(h2), Is.EqualTo(Posix.GetFileId(p2)));
            Assert.That(TestData.ReadAll(h2), Is.EqualTo("two"));
            Assert.That(Posix.IsCloseOnExec((int)h1.DangerousGetHandle()), Is.True);
        }
        AsyncTest.AssertFdCount(baseline, "after the received handles were disposed");
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    [TestCase(SocketType.Dgram)]
    public async Task A_pending_receive_waits_without_consuming_and_then_gets_the_descriptors(SocketType type)
    {
        // The zero-byte readiness wait must not eat a datagram (or its descriptors).
        using var pair = SocketPair.Create(Dir, type);
        string p = Dir.NewFile("late");
        using var f = File.OpenHandle(p);

        var buffer = new byte[16];
        Task<ReceivedFds> pending = pair.B.ReceiveFdsAsync(buffer).AsTask();
        await AsyncTest.AssertPending(pending);

        pair.A.SendFds(TestData.Utf8("abc"), f); // the sync API on the other end
        using ReceivedFds r = await pending.Within();
        Assert.That(r.BytesReceived, Is.EqualTo(3));
        Assert.That(r.Count, Is.EqualTo(1));
        using SafeFileHandle h = r.TakeFileHandle(0);
        Assert.That(Posix.GetFileId(h), Is.EqualTo(Posix.GetFileId(p)));

        // And a second message after the wait machinery ran once.
        pair.A.SendFds(TestData.Utf8("de"), f);
        using ReceivedFds r2 = await pair.B.ReceiveFdsAsync(buffer).Within();
        Assert.That(r2.BytesReceived, Is.EqualTo(2));
        Assert.That(r2.Count, Is.EqualTo(1));
    }

    /// <summary>Issue 11 item 4: a collection expression of descriptors compiles with the
    /// async send as with the sync one (it used to fail with CS9174: ReadOnlyMemory cannot be
    /// built from a collection expression), and sends what it lists.</summary>
    [Test]
    public async Task A_collection_expression_of_descriptors_goes_to_the_async_send()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        using var f1 = File.OpenHandle(Dir.NewFile("one"));
        using var f2 = new FileStream(Dir.NewFile("two"), FileMode.Open, FileAccess.Read);
        int sent = await pair.A.SendFdsAsync(TestData.Utf8("list"), [f1, f2]).Within();
        Assert.That(sent, Is.EqualTo(4));
        Assert.That(await pair.A.SendFdsAsync(ReadOnlyMemory<byte>.Empty, []).Within(), Is.EqualTo(0));

        var buffer = new byte[8];
        using (ReceivedFds r = await pair.B.ReceiveFdsAsync(buffer).Within())
        {
            Assert.That(r.Count, Is.EqualTo(2));
            Assert.That(Posix.GetFileId(r.PeekFd(0)), Is.EqualTo(Posix.GetFileId(f1)));
            Assert.That(Posix.GetFileId(r.PeekFd(1)), Is.EqualTo(Posix.GetFileId(f2.SafeFileHandle)));
        }
        using (ReceivedFds r = await pair.B.ReceiveFdsAsync(buffer).Within())
            Assert.That(r.Count, Is.EqualTo(0));
        Assert.Throws<ArgumentNullException>(() => pair.A.SendFdsAsync(TestData.Utf8("x"), (Descriptor[])null!));
    }

    [Test]
    public void A_waiting_message_completes_synchronously_allocating_only_the_result()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        var buffer = new byte[8];
        Descriptor[] fds = { f };
        ReadOnlyMemory<Descriptor> fdMemory = fds;
        // Warm up (JIT, the socket's state, the first ReceivedFds).
        for (int i = 0; i < 3; i++)
        {
            pair.A.SendFdsAsync(TestData.Utf8("w"), fdMemory).AsTask().Wait();
            using ReceivedFds w = pair.B.ReceiveFdsAsync(buffer).AsTask().Result;
        }

        pair.A.SendFds(TestData.Utf8("x"), f);
        long before = GC.GetAllocatedBytesForCurrentThread();
        ValueTask<ReceivedFds> vt = pair.B.ReceiveFdsAsync(buffer);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(vt.IsCompletedSuccessfully, Is.True, "a waiting message is received synchronously");
        using ReceivedFds r = vt.Result;
        Assert.That(r.Count, Is.EqualTo(1));
        Assert.That(allocated, Is.LessThanOrEqualTo(64), "bytes allocated besides the ReceivedFds result");

        byte[] y = TestData.Utf8("y");
        before = GC.GetAllocatedBytesForCurrentThread();
        ValueTask<int> send = pair.A.SendFdsAsync(y, fdMemory);
        allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(send.IsCompletedSuccessfully, Is.True, "a send with room in the buffer completes synchronously");
        Assert.That(allocated, Is.Zero, "bytes allocated by a synchronous SendFdsAsync");
        using ReceivedFds r2 = pair.B.ReceiveFds(buffer);
        Assert.That(r2.Count, Is.EqualTo(1));
    }

    [Test]
    public async Task Empty_data_with_descriptors_on_a_stream_sends_one_carrier_byte()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        Assert.That(await pair.A.SendFdsAsync(ReadOnlyMemory<byte>.Empty, f).Within(), Is.EqualTo(0));
        using ReceivedFds r = await pair.B.ReceiveFdsAsync(Memory<byte>.Empty).Within();
        Assert.That(r.Count, Is.EqualTo(1));
        Assert.That(r.IsEndOfStream, Is.False);
        Assert.That(r.Flags, Is.EqualTo(ReceiveFlags.None));
    }

    [Test]
    public async Task A_large_stream_send_carries_the_descriptors_once_with_the_first_chunk()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.SendBufferSize = 32 * 1024;
        string p = Dir.NewFile("big");
        using var f = File.OpenHandle(p);
        byte[] data = AsyncTest.Pattern(4 * 1024 * 1024, 3);

        Task<int> send = pair.A.SendFdsAsync(data, f).AsTask();
        var received = new MemoryStream();
        var buffer = new byte[100_000];
        int fdsSeen = 0;
        bool first = true;
        while (received.Length < data.Length)
        {
            using ReceivedFds r = await pair.B.ReceiveFdsAsync(buffer).Within();
            Assert.That(r.IsEndOfStream, Is.False);
            if (first)
            {
                Assert.That(r.Count, Is.EqualTo(1), "the descriptor comes with the first chunk");
                Assert.That(Posix.GetFileId(r.PeekFd(0)), Is.EqualTo(Posix.GetFileId(p)));
                first = false;
            }
            fdsSeen += r.Count;
            received.Write(buffer, 0, r.BytesReceived);
        }
        Assert.That(await send.Within(), Is.EqualTo(data.Length));
        Assert.That(fdsSeen, Is.EqualTo(1), "the descriptor is sent exactly once");
        Assert.That(received.ToArray().AsSpan().SequenceEqual(data), Is.True, "the bytes arrive intact and in order");
    }

    [Test]
    public async Task Errors_come_through_the_task_and_lose_nothing()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = File.OpenHandle(Dir.NewFile("x"));

        // Too many descriptors, a default Descriptor: ArgumentException from the task, nothing sent.
        var tooMany = Enumerable.Repeat((Descriptor)f, FdPassing.MaxFds + 1).ToArray();
        ValueTask<int> vt = pair.A.SendFdsAsync(TestData.Utf8("x"), tooMany);
        Assert.ThrowsAsync<ArgumentException>(async () => await vt);
        Assert.ThrowsAsync<ArgumentException>(async () => await pair.A.SendFdsAsync(TestData.Utf8("x"), new Descriptor[] { default }));
        Assert.That(pair.B.Available, Is.Zero, "nothing was sent");
        Assert.Throws<ArgumentOutOfRangeException>(() => pair.B.ReceiveFdsAsync(new byte[1], -1));

        // A disposed socket.
        var gone = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        gone.Dispose();
        Assert.ThrowsAsync<ObjectDisposedException>(async () => await gone.SendFdsAsync(TestData.Utf8("x"), f));
        Assert.ThrowsAsync<ObjectDisposedException>(async () => await gone.ReceiveFdsAsync(new byte[1]));

        // The peer closed: EPIPE as SocketError.Shutdown, and end of stream for the receiver.
        pair.B.Dispose();
        var e = Assert.ThrowsAsync<SocketException>(async () => await pair.A.SendFdsAsync(TestData.Utf8("x"), f));
        Assert.That(e!.SocketErrorCode, Is.EqualTo(SocketError.Shutdown));
        using ReceivedFds end = await pair.A.ReceiveFdsAsync(new byte[4]).Within();
        Assert.That(end.IsEndOfStream, Is.True);
    }

    [Test]
    public async Task Disposing_the_socket_ends_a_pending_receive()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        Task<ReceivedFds> pending = pair.B.ReceiveFdsAsync(new byte[4]).AsTask();
        await AsyncTest.AssertPending(pending, 100);
        pair.B.Dispose();
        Exception? e = null;
        try
        {
            (await pending.Within(5000)).Dispose();
        }
        catch (Exception ex)
        {
            e = ex;
        }
        Assert.That(e, Is.InstanceOf<ObjectDisposedException>().Or.InstanceOf<SocketException>().Or.InstanceOf<OperationCanceledException>());
    }

    [Test]
    public async Task Sync_and_async_calls_mix_on_one_socket()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.ReceiveTimeout = pair.B.ReceiveTimeout = 10_000;
        string p = Dir.NewFile("mix");
        using var f = File.OpenHandle(p);
        FileId id = Posix.GetFileId(p);
        var buffer = new byte[8];
        int baseline = AsyncTest.SettledFdCount();

        for (int i = 0; i < 50; i++)
        {
            byte[] msg = { (byte)i, 1, 2, 3 };
            // Alternate sync/async on each side: the sync calls must still wait.
            Task<ReceivedFds> receive = (i % 2 == 0)
                ? pair.B.ReceiveFdsAsync(buffer).AsTask()
                : Task.Run(() => pair.B.ReceiveFds(buffer));
            if (i % 3 == 0)
                pair.A.SendFds(msg, f);
            else
                await pair.A.SendFdsAsync(msg, f).Within();
            using ReceivedFds r = await receive.Within();
            Assert.That(r.BytesReceived, Is.EqualTo(4));
            Assert.That(buffer[0], Is.EqualTo((byte)i));
            Assert.That(r.Count, Is.EqualTo(1));
            Assert.That(Posix.GetFileId(r.PeekFd(0)), Is.EqualTo(id));
        }
        Assert.That(pair.B.Blocking, Is.True);
        // FdSend's async calls wait on its own readiness engine and leave the descriptor's
        // mode alone (their attempts are MSG_DONTWAIT); .NET's own async calls switch it to
        // O_NONBLOCK behind Socket.Blocking: mix one in too.
        Assert.That(Posix.IsNonBlocking((int)pair.B.SafeHandle.DangerousGetHandle()), Is.False,
            "FdSend's async calls left the descriptor blocking");
        await pair.B.SendAsync(ReadOnlyMemory<byte>.Empty, SocketFlags.None).AsTask().Within();
        Assert.That(Posix.IsNonBlocking((int)pair.B.SafeHandle.DangerousGetHandle()), Is.True,
            ".NET switched the descriptor to O_NONBLOCK for its async calls");
        // A sync receive on that O_NONBLOCK-but-Blocking socket waits instead of failing.
        Task<ReceivedFds> sync = Task.Run(() => pair.B.ReceiveFds(buffer));
        await AsyncTest.AssertPending(sync, 150);
        await pair.A.SendFdsAsync(TestData.Utf8("z"), f).Within();
        using (ReceivedFds z = await sync.Within())
            Assert.That(z.Count, Is.EqualTo(1));
        AsyncTest.AssertFdCount(baseline);
    }
}
