// SPDX-License-Identifier: MIT
using FdSend.Tests.Async;

namespace FdSend.Tests;

/// <summary>Blocking semantics that match Socket: a blocking socket blocks (also after .NET made
/// the fd O_NONBLOCK because of an async call); Blocking = false gives WouldBlock and loses
/// nothing.</summary>
[TestFixture]
public class BlockingTests : TempDirFixture
{
    private FileStream NewFile(string content = "x") => new(Dir.NewFile(content), FileMode.Open, FileAccess.Read);

    private static int Fd(Socket s) => (int)s.SafeHandle.DangerousGetHandle();

    [Test]
    public async Task A_sync_receive_blocks_after_an_async_call_until_a_delayed_sender_sends()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        await SocketPair.MakeNonBlockingBehindTheScenes(pair.A, pair.B);
        using var f = NewFile("delayed");

        int sentFlag = 0;
        var sender = Task.Run(async () =>
        {
            await Task.Delay(300);
            Volatile.Write(ref sentFlag, 1);
            pair.A.SendFds(TestData.Utf8("late"), f);
        });

        var buffer = new byte[4];
        using ReceivedFds r = pair.B.ReceiveFds(buffer);
        Assert.That(Volatile.Read(ref sentFlag), Is.EqualTo(1), "returned only after the sender sent");
        Assert.That(TestData.Text(buffer), Is.EqualTo("late"));
        Assert.That(Posix.GetFileId(r.PeekFd(0)), Is.EqualTo(Posix.GetFileId(f.SafeFileHandle)));
        await sender;
    }

    [Test]
    public async Task The_zero_allocation_receive_also_blocks_after_an_async_call()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        await SocketPair.MakeNonBlockingBehindTheScenes(pair.A, pair.B);
        int sentFlag = 0;
        var sender = Task.Run(async () =>
        {
            await Task.Delay(200);
            Volatile.Write(ref sentFlag, 1);
            pair.A.SendFds(TestData.Utf8("z"));
        });
        Span<int> fds = stackalloc int[2];
        int n = pair.B.ReceiveFds(new byte[4], fds, out int count, out _);
        Assert.That(Volatile.Read(ref sentFlag), Is.EqualTo(1));
        Assert.That(n, Is.EqualTo(1));
        Assert.That(count, Is.EqualTo(0));
        await sender;
    }

    [Test]
    public async Task A_sync_send_on_a_full_buffer_completes_when_the_reader_drains()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.SendBufferSize = 4096;
        pair.B.ReceiveBufferSize = 4096;
        await SocketPair.MakeNonBlockingBehindTheScenes(pair.B, pair.A); // the SENDER's fd is now O_NONBLOCK

        // Fill the send path completely.
        pair.A.Blocking = false;
        long filled = 0;
        var chunk = new byte[4096];
        foreach (int size in new[] { 4096, 1 })
        {
            while (true)
            {
                try
                {
                    filled += pair.A.Send(chunk.AsSpan(0, size));
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
                {
                    break;
                }
            }
        }
        pair.A.Blocking = true;
        Assert.That(Posix.IsNonBlocking(Fd(pair.A)), Is.True);

        using var f = NewFile("after the flood");
        byte[] message = TestData.Utf8("message with a descriptor");
        int drainFlag = 0;
        var reader = Task.Run(async () =>
        {
            await Task.Delay(300);
            Volatile.Write(ref drainFlag, 1);
            var buffer = new byte[8192];
            var all = new MemoryStream();
            FileId? id = null;
            long fdsAt = -1;
            while (all.Length < filled + message.Length)
            {
                using ReceivedFds r = pair.B.ReceiveFds(buffer);
                if (r.Count > 0)
                {
                    fdsAt = all.Length;
                    id = Posix.GetFileId(r.PeekFd(0));
                }
                all.Write(buffer, 0, r.BytesReceived);
            }
            return (all.ToArray(), id, fdsAt);
        });

        int sent = pair.A.SendFds(message, f);
        Assert.That(Volatile.Read(ref drainFlag), Is.EqualTo(1), "the send waited for the reader");
        Assert.That(sent, Is.EqualTo(message.Length));
        var (bytes, fileId, at) = await reader;
        Assert.That(at, Is.EqualTo(filled), "the descriptor came with the message's first byte");
        Assert.That(fileId, Is.EqualTo(Posix.GetFileId(f.SafeFileHandle)));
        Assert.That(TestData.Text(bytes.AsSpan((int)filled)), Is.EqualTo("message with a descriptor"));
    }

    [Test]
    public void A_non_blocking_receive_with_nothing_waiting_is_WouldBlock_and_consumes_nothing()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        pair.B.Blocking = false;
        var e = Assert.Throws<SocketException>(() => pair.B.ReceiveFds(new byte[4]))!;
        Assert.That(e.SocketErrorCode, Is.EqualTo(SocketError.WouldBlock));
        Span<int> fds = stackalloc int[1];
        try
        {
            pair.B.ReceiveFds(new byte[4], fds, out _, out _);
            Assert.Fail("expected WouldBlock");
        }
        catch (SocketException e2)
        {
            Assert.That(e2.SocketErrorCode, Is.EqualTo(SocketError.WouldBlock));
        }

        using var f = NewFile();
        pair.AssertNextMessageArrivesWhole("data", f);
    }

    [Test]
    public void A_non_blocking_send_on_a_full_buffer_is_WouldBlock_and_sends_nothing()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        pair.A.SendBufferSize = 4096;
        pair.A.Blocking = false;
        using var f = NewFile();
        int messages = 0;
        SocketException? error = null;
        for (int i = 0; i < 100_000 && error is null; i++)
        {
            try
            {
                pair.A.SendFds(TestData.Utf8($"m{i}"));
                messages++;
            }
            catch (SocketException e)
            {
                error = e;
            }
        }
        Assert.That(error?.SocketErrorCode, Is.EqualTo(SocketError.WouldBlock));
        // The failed call carried a descriptor: it must not have been sent, and a retry after
        // draining must deliver it exactly once.
        Assert.Throws<SocketException>(() => pair.A.SendFds(TestData.Utf8("with fd"), f));

        var buffer = new byte[16];
        for (int i = 0; i < messages; i++)
        {
            using ReceivedFds r = pair.B.ReceiveFds(buffer);
            Assert.That(r.Count, Is.EqualTo(0), "no descriptor leaked out of a failed send");
            Assert.That(TestData.Text(buffer.AsSpan(0, r.BytesReceived)), Is.EqualTo($"m{i}"));
        }
        pair.B.Blocking = false;
        Assert.Throws<SocketException>(() => pair.B.ReceiveFds(buffer));

        pair.A.SendFds(TestData.Utf8("with fd"), f);
        using ReceivedFds last = pair.B.ReceiveFds(buffer);
        Assert.That(last.Count, Is.EqualTo(1));
    }

    [Test]
    public async Task A_zero_byte_async_readiness_wait_then_a_sync_receive_gets_the_message()
    {
        // The pattern async code builds on: wait on .NET's event loop without consuming, then
        // receive the message (data and descriptors) with FdSend.
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = NewFile("ready");
        var wait = pair.B.ReceiveAsync(Memory<byte>.Empty).AsTask();
        await Task.Delay(50);
        Assert.That(wait.IsCompleted, Is.False);
        pair.A.SendFds(TestData.Utf8("rdy"), f);
        Assert.That(await wait, Is.EqualTo(0));
        var buffer = new byte[3];
        using ReceivedFds r = pair.B.ReceiveFds(buffer);
        Assert.That(TestData.Text(buffer), Is.EqualTo("rdy"));
        Assert.That(r.Count, Is.EqualTo(1));
    }

    /// <summary>Runs <paramref name="receive"/> on its own thread against B, disposes B once the
    /// call has had time to block, and returns what the call threw (null if it returned).</summary>
    private static Exception? ReceiveWhileDisposing(SocketPair pair, Action<Socket> receive)
    {
        Exception? thrown = null;
        var thread = new Thread(() =>
        {
            try
            {
                receive(pair.B);
            }
            catch (Exception e)
            {
                thrown = e;
            }
        });
        thread.Start();
        Thread.Sleep(300);
        Assert.That(thread.IsAlive, Is.True, "the premise: the receive is blocked");
        pair.B.Dispose();
        Assert.That(thread.Join(10_000), Is.True, "disposing the socket ended the blocked receive");
        return thrown;
    }

    /// <summary>Issue 11 item 1: Socket.Dispose shuts the descriptor down to wake blocked calls,
    /// so recvmsg returns 0. That is not the peer's end of stream: ReceiveFds throws what
    /// Socket.Receive throws in the same situation (ConnectionAborted on stream sockets,
    /// Interrupted on seqpacket), measured here rather than assumed.</summary>
    [Test]
    public async Task A_receive_interrupted_by_disposing_the_socket_throws_what_Socket_Receive_throws(
        [Values(SocketType.Stream, SocketType.Seqpacket)] SocketType type,
        [Values("owning", "span")] string overload,
        [Values(false, true)] bool afterAsyncCall)
    {
        SocketError expected;
        using (var reference = SocketPair.Create(Dir, type))
        {
            var e = ReceiveWhileDisposing(reference, s => s.Receive(new byte[4]));
            Assert.That(e, Is.TypeOf<SocketException>(), "what Socket.Receive does");
            expected = ((SocketException)e!).SocketErrorCode;
        }
        Assert.That(expected, Is.EqualTo(type == SocketType.Stream ? SocketError.ConnectionAborted : SocketError.Interrupted));

        using var pair = SocketPair.Create(Dir, type);
        if (afterAsyncCall)
            await SocketPair.MakeNonBlockingBehindTheScenes(pair.A, pair.B); // the Poll path
        int before = AsyncTest.SettledFdCount();
        Exception? thrown = ReceiveWhileDisposing(pair, s =>
        {
            if (overload == "owning")
            {
                using ReceivedFds r = s.ReceiveFds(new byte[4]);
                Assert.Fail($"returned {r} instead of throwing");
            }
            else
            {
                var fds = new int[2];
                int n = s.ReceiveFds(new byte[4], fds, out int count, out ReceiveFlags flags);
                Assert.Fail($"returned {n} bytes, {count} fds, {flags} instead of throwing");
            }
        });
        Assert.That(thrown, Is.TypeOf<SocketException>());
        Assert.That(((SocketException)thrown!).SocketErrorCode, Is.EqualTo(expected));
        AsyncTest.AssertFdCount(before - 1, "only B's own descriptor went");
    }
}
