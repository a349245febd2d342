// SPDX-License-Identifier: MIT
using System.Diagnostics;

namespace FdSend.Tests;

/// <summary>
/// A blocking socket waits in the kernel (one system call), bounded by ReceiveTimeout /
/// SendTimeout, which .NET puts on the fd as SO_RCVTIMEO / SO_SNDTIMEO: libfdsend's
/// FDSEND_ETIMEDOUT becomes <see cref="SocketError.TimedOut"/>. Once .NET has made the fd
/// O_NONBLOCK (after an async call), the same call waits with Poll, within the same timeout.
/// Either way a wait allocates nothing, and disposing the socket ends a blocked call.
/// </summary>
[TestFixture]
public class TimeoutTests : TempDirFixture
{
    private FileStream NewFile(string content = "x") => new(Dir.NewFile(content), FileMode.Open, FileAccess.Read);

    private static int Fd(Socket s) => (int)s.SafeHandle.DangerousGetHandle();

    [TestCase(-24, "Receive")]
    [TestCase(-24, "Send")]
    [TestCase(-24, "SendTo")]
    public void FDSEND_ETIMEDOUT_maps_to_TimedOut(int code, string op)
    {
        Exception e = FdSendErrors.Create(code, Enum.Parse<FdOperation>(op), "/some/path");
        Assert.That(e, Is.TypeOf<SocketException>());
        Assert.That(((SocketException)e).SocketErrorCode, Is.EqualTo(SocketError.TimedOut));
        Assert.That(e.Message, Does.Contain("timeout"));
    }

    [TestCase(false, SocketType.Stream)]
    [TestCase(false, SocketType.Seqpacket)]
    [TestCase(true, SocketType.Stream)]
    [TestCase(true, SocketType.Seqpacket)]
    public async Task A_receive_times_out_after_ReceiveTimeout_and_consumes_nothing(bool fdMadeNonBlocking, SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        if (fdMadeNonBlocking)
            await SocketPair.MakeNonBlockingBehindTheScenes(pair.A, pair.B);
        else
            Assert.That(Posix.IsNonBlocking(Fd(pair.B)), Is.False, "the premise: a blocking fd");
        pair.B.ReceiveTimeout = 200;

        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<SocketException>(() => pair.B.ReceiveFds(new byte[8]).Dispose())!;
        sw.Stop();
        Assert.That(e.SocketErrorCode, Is.EqualTo(SocketError.TimedOut));
        Assert.That(e.Message, Does.Contain("200 ms"));
        Assert.That(sw.ElapsedMilliseconds, Is.GreaterThanOrEqualTo(180), "waited for the timeout");

        // The span overload times out the same way.
        int[] fds = new int[2];
        e = Assert.Throws<SocketException>(() => pair.B.ReceiveFds(new byte[8], fds, out _, out _))!;
        Assert.That(e.SocketErrorCode, Is.EqualTo(SocketError.TimedOut));

        // Nothing was consumed: the next message arrives whole, with its descriptor.
        using var f = NewFile("after");
        pair.AssertNextMessageArrivesWhole("after", f);
    }

    [Test]
    public void A_send_on_a_blocking_fd_times_out_in_the_kernel_and_sends_nothing_of_that_message()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        pair.A.SendBufferSize = 4096;
        pair.A.SendTimeout = 200;
        Assert.That(Posix.IsNonBlocking(Fd(pair.A)), Is.False, "the premise: a blocking fd");
        using var f = NewFile();
        var chunk = new byte[512];
        int accepted = 0;
        SocketException? timedOut = null;
        long lastCallMs = 0;
        while (timedOut is null && accepted < 100_000)
        {
            var sw = Stopwatch.StartNew();
            try
            {
                pair.A.SendFds(chunk, f);
                accepted++;
            }
            catch (SocketException e)
            {
                timedOut = e;
            }
            lastCallMs = sw.ElapsedMilliseconds;
        }
        Assert.That(timedOut, Is.Not.Null, "the buffer filled up");
        Assert.That(timedOut!.SocketErrorCode, Is.EqualTo(SocketError.TimedOut));
        Assert.That(timedOut.Message, Does.Contain("200 ms"));
        Assert.That(lastCallMs, Is.GreaterThanOrEqualTo(180), "the refused send waited for the timeout");
        Assert.That(Posix.IsNonBlocking(Fd(pair.A)), Is.False, "the kernel did the waiting");

        // Exactly the accepted messages are queued, each with its descriptor; the one that
        // timed out left nothing.
        pair.B.Blocking = false;
        var buffer = new byte[1024];
        int[] fds = new int[2];
        for (int i = 0; i < accepted; i++)
        {
            Assert.That(pair.B.ReceiveFds(buffer, fds, out int count, out _), Is.EqualTo(chunk.Length));
            Assert.That(count, Is.EqualTo(1));
            Posix.Close(fds[0]);
        }
        var wb = Assert.Throws<SocketException>(() => pair.B.ReceiveFds(buffer, fds, out _, out _))!;
        Assert.That(wb.SocketErrorCode, Is.EqualTo(SocketError.WouldBlock));
    }

    /// <summary>A receive that has to wait (the message comes from another thread later)
    /// allocates nothing on the receiving thread: the kernel waits, with the socket's
    /// timeout. (Once .NET has made the fd O_NONBLOCK, the Poll wait reads
    /// Socket.ReceiveTimeout, which boxes: 24 bytes per wait.)</summary>
    [Test]
    public void A_waiting_span_receive_allocates_nothing()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        pair.B.ReceiveTimeout = 30_000;
        // Plain threads and a synchronous semaphore: releasing it allocates nothing on the
        // receiving thread (an async waiter would).
        using var go = new SemaphoreSlim(0);
        byte[] ping = TestData.Utf8("ping");
        var sender = new Thread(() =>
        {
            for (int i = 0; i < 4; i++)
            {
                go.Wait();
                Thread.Sleep(30); // so that the receive below is already waiting
                pair.A.SendFds(ping);
            }
        });
        sender.Start();
        var buffer = new byte[8];
        int[] fds = new int[2];
        long allocated = 0;
        var thread = new Thread(() =>
        {
            // The first round warms up the JIT and the socket's lazily created state.
            go.Release();
            pair.B.ReceiveFds(buffer, fds, out _, out _);
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 3; i++)
            {
                go.Release();
                pair.B.ReceiveFds(buffer, fds, out _, out _);
            }
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        });
        thread.Start();
        Assert.That(thread.Join(TimeSpan.FromSeconds(30)), Is.True, "the receives completed");
        Assert.That(sender.Join(TimeSpan.FromSeconds(30)), Is.True);
        Assert.That(allocated, Is.Zero, "bytes allocated by three waiting receives");
    }

    /// <summary>Disposing the socket while another thread is blocked in a receive (in the
    /// kernel, or in Poll after .NET made the fd O_NONBLOCK) ends that receive: it returns or
    /// throws, it does not hang, and no descriptor is used after it was closed.</summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task Disposing_the_socket_ends_a_blocked_receive(bool fdMadeNonBlocking)
    {
        var pair = SocketPair.Create(Dir, SocketType.Stream);
        try
        {
            if (fdMadeNonBlocking)
                await SocketPair.MakeNonBlockingBehindTheScenes(pair.A, pair.B);
            Exception? outcome = null;
            int bytes = -1;
            var started = new ManualResetEventSlim();
            var thread = new Thread(() =>
            {
                started.Set();
                try
                {
                    using ReceivedFds r = pair.B.ReceiveFds(new byte[8]);
                    bytes = r.BytesReceived;
                }
                catch (Exception e)
                {
                    outcome = e;
                }
            });
            thread.Start();
            started.Wait();
            Thread.Sleep(200); // let it block
            Assert.That(thread.IsAlive, Is.True, "the premise: the receive is blocked");
            pair.B.Dispose();
            Assert.That(thread.Join(TimeSpan.FromSeconds(20)), Is.True, "the blocked receive ended after Dispose");
            // .NET's own Socket.Receive ends the same way: an exception (disposed/aborted)
            // or, when shutdown() unblocked the kernel call, the end of the stream.
            if (outcome is null)
                Assert.That(bytes, Is.Zero, "returned the end of the stream");
            else
                Assert.That(outcome, Is.InstanceOf<ObjectDisposedException>().Or.InstanceOf<SocketException>());
        }
        finally
        {
            pair.Dispose();
        }
    }
}
