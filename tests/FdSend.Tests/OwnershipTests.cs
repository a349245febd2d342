// SPDX-License-Identifier: MIT
using FdSend.Tests.Async;
using System.IO.Pipes;
using System.Runtime.CompilerServices;

namespace FdSend.Tests;

/// <summary>Who owns each descriptor, checked in /proc/self/fd: nothing leaks, nothing is
/// closed twice, a handle disposed mid-send never becomes a wrong fd.</summary>
[TestFixture]
[NonParallelizable]
public class OwnershipTests : TempDirFixture
{
    private FileStream NewFile(string content) => new(Dir.NewFile(content), FileMode.Open, FileAccess.Read);

    [Test]
    public void Dispose_closes_every_descriptor_not_taken()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = NewFile("x");
        pair.A.SendFds(TestData.Utf8("x"), f, f, f);
        ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        int[] fds = [r.PeekFd(0), r.PeekFd(1), r.PeekFd(2)];
        using SafeHandleHolder taken = new(r.TakeFileHandle(1));
        Assert.That(fds.All(Posix.IsOpen), Is.True);
        r.Dispose();
        FileId id = Posix.GetFileId(f.SafeFileHandle);
        Assert.That(Posix.IsOpenOn(fds[0], id), Is.False);
        Assert.That(Posix.IsOpenOn(fds[1], id), Is.True, "the taken one belongs to its handle");
        Assert.That(Posix.IsOpenOn(fds[2], id), Is.False);
        r.Dispose(); // idempotent
        Assert.That(Posix.IsOpenOn(fds[1], id), Is.True);
    }

    private sealed class SafeHandleHolder(IDisposable d) : IDisposable
    {
        public void Dispose() => d.Dispose();
    }

    [Test]
    public void Taking_twice_or_after_dispose_throws_and_loses_nothing()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = NewFile("x");
        pair.A.SendFds(TestData.Utf8("x"), f, f);
        ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        int fd0 = r.TakeRawFd(0);
        Assert.That(r.IsTaken(0), Is.True);
        Assert.That(r.IsTaken(1), Is.False);
        Assert.Throws<InvalidOperationException>(() => r.TakeRawFd(0));
        Assert.Throws<InvalidOperationException>(() => r.TakeFileHandle(0));
        Assert.Throws<InvalidOperationException>(() => r.PeekFd(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => r.TakeRawFd(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => r.TakeRawFd(-1));
        r.Dispose();
        Assert.Throws<ObjectDisposedException>(() => r.TakeRawFd(1));
        Assert.Throws<ObjectDisposedException>(() => r.TakeSocket(1));
        Assert.Throws<ObjectDisposedException>(() => r.PeekFd(1));
        Assert.That(Posix.IsOpen(fd0), Is.True);
        Posix.Close(fd0);
    }

    [Test]
    public void A_taker_that_rejects_the_descriptor_leaves_it_untaken_and_closes_it_exactly_once()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = NewFile("not a socket");
        pair.A.SendFds(TestData.Utf8("x"), f);
        ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        int fd = r.PeekFd(0);

        Assert.Throws<ArgumentException>(() => r.TakeSocket(0));
        Assert.Throws<IOException>(() => r.TakePipe(0, PipeDirection.In));
        Assert.Throws<ArgumentOutOfRangeException>(() => r.TakePipe(0, PipeDirection.InOut));
        Assert.That(r.IsTaken(0), Is.False);
        Assert.That(Posix.IsOpen(fd), Is.True);

        // The rejected wrappers' finalizers must not close it.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.That(Posix.IsOpen(fd), Is.True);
        Assert.That(Posix.GetFileId(fd), Is.EqualTo(Posix.GetFileId(f.SafeFileHandle)));

        r.Dispose();
        Assert.That(Posix.IsOpenOn(fd, Posix.GetFileId(f.SafeFileHandle)), Is.False);

        // Reuse the number for another file: nothing may close it behind our back.
        using var other = NewFile("other");
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.That(Posix.IsOpen((int)other.SafeFileHandle.DangerousGetHandle()), Is.True);
        Assert.That(TestData.ReadAll(other.SafeFileHandle), Is.EqualTo("other"));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int[] ReceiveAndForget(Socket s)
    {
        ReceivedFds r = s.ReceiveFds(new byte[1]);
        return [r.PeekFd(0), r.PeekFd(1)];
    }

    [Test]
    public void The_finalizer_closes_descriptors_of_a_result_nobody_disposed()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = NewFile("x");
        FileId id = Posix.GetFileId(f.SafeFileHandle);
        int before = AsyncTest.SettledFdCount(); // settles other tests' garbage too
        pair.A.SendFds(TestData.Utf8("x"), f, f);
        int[] fds = ReceiveAndForget(pair.B);
        // Not AssertFdCount here: its retries collect garbage, which would run the finalizer.
        Assert.That(fds.All(fd => Posix.IsOpen(fd) && Posix.GetFileId(fd) == id), Is.True, "received and open");
        AsyncTest.AssertFdCount(before); // collects garbage until the count is back
        Assert.That(fds.Any(fd => Posix.IsOpen(fd) && Posix.GetFileId(fd) == id), Is.False);
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    [TestCase(SocketType.Dgram)]
    public void Thousands_of_round_trips_leave_the_descriptor_count_unchanged(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        using var f = NewFile("x");
        using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
        var buffer = new byte[8];
        Span<int> raw = stackalloc int[4];
        // warm up (lazy runtime descriptors, e.g. the native library) before counting
        pair.A.SendFds(TestData.Utf8("w"), f);
        pair.B.ReceiveFds(buffer).Dispose();

        int before = AsyncTest.SettledFdCount();
        for (int i = 0; i < 3000; i++)
        {
            pair.A.SendFds(TestData.Utf8("rt"), f, pipe.SafePipeHandle, pipe.ClientSafePipeHandle);
            if (i % 3 == 0)
            {
                using ReceivedFds r = pair.B.ReceiveFds(buffer);
                Assert.That(r.Count, Is.EqualTo(3));
                if (i % 2 == 0)
                    r.TakeFileHandle(1).Dispose();
            }
            else if (i % 3 == 1)
            {
                using ReceivedFds r = pair.B.ReceiveFds(buffer, maxFds: 1); // 2 closed by the library
                Assert.That(r.FdsTruncated, Is.True);
            }
            else
            {
                pair.B.ReceiveFds(buffer, raw, out int count, out _);
                Assert.That(count, Is.EqualTo(3));
                for (int k = 0; k < count; k++)
                    Posix.Close(raw[k]);
            }
        }
        AsyncTest.AssertFdCount(before);
    }

    [Test]
    public void A_handle_disposed_during_sends_gives_ObjectDisposedException_or_the_right_file_never_another()
    {
        // One thread sends a handle over and over until the send fails, while this thread
        // disposes the handle (at a random moment) and opens new files that are likely to
        // reuse its descriptor number; a third thread receives. Every message that arrives
        // must carry the original file (by inode); the failure must be ObjectDisposedException.
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        pair.B.ReceiveTimeout = 30_000;
        string path = Dir.NewFile("original");
        FileId original = Posix.GetFileId(path);
        var random = new Random(7);
        int wrong = 0, received = 0, sentOk = 0, disposedErrors = 0;
        const int Rounds = 100;

        for (int round = 0; round < Rounds; round++)
        {
            var handle = File.OpenHandle(path);
            using var start = new Barrier(2);
            var sender = Task.Run(() =>
            {
                int sent = 0;
                start.SignalAndWait();
                while (true)
                {
                    try
                    {
                        pair.A.SendFds(TestData.Utf8("h"), handle);
                        sent++;
                    }
                    catch (ObjectDisposedException)
                    {
                        Interlocked.Increment(ref disposedErrors);
                        break;
                    }
                }
                pair.A.SendFds(TestData.Utf8("end"));
                return sent;
            });
            var receiver = Task.Run(() =>
            {
                var buffer = new byte[8];
                while (true)
                {
                    using ReceivedFds r = pair.B.ReceiveFds(buffer);
                    if (r.BytesReceived == 3)
                        return;
                    received++;
                    if (Posix.GetFileId(r.PeekFd(0)) != original)
                        wrong++;
                }
            });
            start.SignalAndWait();
            Thread.SpinWait(random.Next(0, 20_000));
            handle.Dispose();
            var decoys = new List<FileStream>();
            for (int i = 0; i < 4; i++)
                decoys.Add(NewFile("decoy"));
            Assert.That(sender.Wait(TimeSpan.FromSeconds(30)), Is.True);
            Assert.That(receiver.Wait(TimeSpan.FromSeconds(30)), Is.True);
            sentOk += sender.Result;
            decoys.ForEach(d => d.Dispose());
        }
        TestContext.Out.WriteLine($"sent {sentOk}, ObjectDisposedException {disposedErrors}");
        Assert.That(wrong, Is.EqualTo(0), "a message carried a file other than the one sent");
        Assert.That(received, Is.EqualTo(sentOk), "every successful send arrived");
        Assert.That(disposedErrors, Is.EqualTo(Rounds), "each round ended with ObjectDisposedException");
    }
}
