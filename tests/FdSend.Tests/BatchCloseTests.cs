// SPDX-License-Identifier: MIT
using FdSend.Tests.Async;

namespace FdSend.Tests;

/// <summary><see cref="FdPassing.CloseAll"/>: the span overloads' descriptors closed in one
/// native call; and the owning result's Dispose, which uses the same call. Descriptor counts
/// use the settled baseline and retrying check of <see cref="AsyncTest"/>: the test host
/// opens descriptors of its own now and then.</summary>
[TestFixture]
public class BatchCloseTests : TempDirFixture
{
    private FileStream NewFile(string content = "x") => new(Dir.NewFile(content), FileMode.Open, FileAccess.Read);

    private int[] DupMany(FileStream f, int n)
    {
        var fds = new int[n];
        int fd = (int)f.SafeFileHandle.DangerousGetHandle();
        for (int i = 0; i < n; i++)
        {
            fds[i] = Posix.Dup(fd);
            Assert.That(fds[i], Is.GreaterThanOrEqualTo(0));
        }
        return fds;
    }

    [Test]
    public void CloseAll_closes_a_received_message_of_64_descriptors()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        using var f = NewFile();
        var sent = Enumerable.Range(0, 64).Select(_ => (Descriptor)f).ToArray();
        pair.A.SendFds(TestData.Utf8("many"), sent);
        int before = AsyncTest.SettledFdCount();
        var fds = new int[FdPassing.MaxFds];
        pair.B.ReceiveFds(new byte[8], fds, out int count, out _);
        Assert.That(count, Is.EqualTo(64));
        AsyncTest.AssertFdCount(before + 64);

        FdPassing.CloseAll(fds.AsSpan(0, count));

        FileId id = Posix.GetFileId(f.SafeFileHandle);
        Assert.That(fds.Take(count).Where(fd => Posix.IsOpenOn(fd, id)), Is.Empty);
        AsyncTest.AssertFdCount(before);
    }

    [Test]
    public void Negative_entries_are_skipped_and_the_others_closed()
    {
        using var f = NewFile();
        int[] fds = DupMany(f, 3);
        int kept = fds[1];
        fds[1] = -1;
        FdPassing.CloseAll(fds);
        FileId id = Posix.GetFileId(f.SafeFileHandle);
        Assert.That(Posix.IsOpenOn(fds[0], id), Is.False);
        Assert.That(Posix.IsOpenOn(fds[2], id), Is.False);
        Assert.That(Posix.IsOpenOn(kept, id), Is.True);
        Posix.Close(kept);
        FdPassing.CloseAll(ReadOnlySpan<int>.Empty); // nothing to do
    }

    [Test]
    public void More_descriptors_than_one_batch_are_all_closed()
    {
        using var f = NewFile();
        int before = AsyncTest.SettledFdCount();
        int[] fds = DupMany(f, 600); // three native calls of at most 256
        AsyncTest.AssertFdCount(before + 600);
        FdPassing.CloseAll(fds);
        FileId id = Posix.GetFileId(f.SafeFileHandle);
        Assert.That(fds.Where(fd => Posix.IsOpenOn(fd, id)), Is.Empty);
        AsyncTest.AssertFdCount(before);
    }

    [Test]
    public void A_descriptor_that_is_not_open_is_ArgumentException_and_the_rest_are_still_closed()
    {
        using var f = NewFile();
        int[] open = DupMany(f, 2);
        // A number no descriptor can have (Linux caps fs.nr_open at 2^31 - 64): a number just
        // closed here could be reused at once by another thread of the test host (each new
        // runtime thread opens a few descriptors for a moment), and CloseAll would close that.
        int[] fds = [int.MaxValue, open[0], open[1]];
        var e = Assert.Throws<ArgumentException>(() => FdPassing.CloseAll(fds))!;
        Assert.That(e.ParamName, Is.EqualTo("fds"));
        FileId id = Posix.GetFileId(f.SafeFileHandle);
        Assert.That(Posix.IsOpenOn(open[0], id), Is.False);
        Assert.That(Posix.IsOpenOn(open[1], id), Is.False);
    }

    [Test]
    public void CloseAll_allocates_nothing()
    {
        using var f = NewFile();
        int[] fds = DupMany(f, 64);
        FdPassing.CloseAll(fds); // warm up
        fds = DupMany(f, 64);
        long before = GC.GetAllocatedBytesForCurrentThread();
        FdPassing.CloseAll(fds);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }

    [Test]
    public void Dispose_of_the_owning_result_closes_the_untaken_and_leaves_the_taken_open()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = NewFile();
        pair.A.SendFds(TestData.Utf8("m"), Enumerable.Range(0, 5).Select(_ => (Descriptor)f).ToArray());
        int before = AsyncTest.SettledFdCount();
        ReceivedFds r = pair.B.ReceiveFds(new byte[4]);
        Assert.That(r.Count, Is.EqualTo(5));
        int[] numbers = Enumerable.Range(0, 5).Select(r.PeekFd).ToArray();
        using Microsoft.Win32.SafeHandles.SafeFileHandle taken = r.TakeFileHandle(3);
        r.Dispose();
        FileId id = Posix.GetFileId(f.SafeFileHandle);
        for (int i = 0; i < 5; i++)
            Assert.That(Posix.IsOpenOn(numbers[i], id), Is.EqualTo(i == 3), $"descriptor {i}");
        AsyncTest.AssertFdCount(before + 1);
    }
}
