// SPDX-License-Identifier: MIT
// The readiness engine runs continuations inline on its own thread by default; a continuation
// that blocks there must not stall every other socket (the monitor hands polling over).
namespace FdSend.Tests.Async;

[TestFixture]
[CancelAfter(60_000)]
public class ReadinessEngineTests : TempDirFixture
{
    [Test]
    public async Task A_blocking_continuation_does_not_stall_other_sockets()
    {
        if (OperatingSystem.IsWindows())
            Assert.Ignore("the readiness engine is POSIX only");
        using var blocked = SocketPair.Create(Dir, SocketType.Stream);
        using var other = SocketPair.Create(Dir, SocketType.Stream);
        string p = Dir.NewFile("f");
        using var f = File.OpenHandle(p);
        int baseline = AsyncTest.SettledFdCount();
        long takeoversBefore = ReadinessEngine.Instance.Takeovers;

        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        string? blockedOn = null;
        async Task BlockAfterReceive()
        {
            using ReceivedFds r = await blocked.B.ReceiveFdsAsync(new byte[16]);
            blockedOn = Thread.CurrentThread.Name;
            entered.Set();
            release.Wait(TimeSpan.FromSeconds(30)); // a continuation that blocks its thread
        }
        Task blocker = BlockAfterReceive(); // pending: nothing was sent yet
        Task<ReceivedFds> second = other.B.ReceiveFdsAsync(new byte[16]).AsTask();
        await AsyncTest.AssertPending(second);
        try
        {
            blocked.A.SendFds(TestData.Utf8("x"), f);
            Assert.That(entered.Wait(TimeSpan.FromSeconds(20)), Is.True, "the first receive did not complete");
            Assert.That(blockedOn, Is.EqualTo("FdSend readiness engine"),
                "the continuation ran inline on the engine thread (the default)");

            other.A.SendFds(TestData.Utf8("yz"), f);
            using ReceivedFds r2 = await second.Within();
            Assert.That(r2.BytesReceived, Is.EqualTo(2));
            Assert.That(r2.Count, Is.EqualTo(1));
            Assert.That(blocker.IsCompleted, Is.False, "the first continuation is still blocked");
            Assert.That(ReadinessEngine.Instance.Takeovers, Is.GreaterThan(takeoversBefore));
        }
        finally
        {
            release.Set();
        }
        await blocker.Within();
        AsyncTest.AssertFdCount(baseline, "after both results were disposed");
    }

    [Test]
    public async Task Many_sockets_ready_at_once_all_complete_while_one_continuation_blocks()
    {
        if (OperatingSystem.IsWindows())
            Assert.Ignore("the readiness engine is POSIX only");
        // One batch of ready sockets: the first continuation blocks; the rest of the batch must
        // still run (handed to the thread pool when the engine thread is taken over).
        const int n = 8;
        var pairs = Enumerable.Range(0, n).Select(_ => SocketPair.Create(Dir, SocketType.Seqpacket)).ToArray();
        using var release = new ManualResetEventSlim();
        int done = 0;
        try
        {
            async Task Receive(SocketPair pair, bool block)
            {
                using ReceivedFds r = await pair.B.ReceiveFdsAsync(new byte[16]);
                Assert.That(r.BytesReceived, Is.EqualTo(1));
                if (block)
                    release.Wait(TimeSpan.FromSeconds(30));
                else
                    Interlocked.Increment(ref done);
            }
            Task[] receives = pairs.Select((pair, i) => Receive(pair, block: i == 0)).ToArray();
            foreach (SocketPair pair in pairs)
                pair.A.SendFds(TestData.Utf8("a"), ReadOnlySpan<Descriptor>.Empty);
            await Task.WhenAll(receives.Skip(1)).Within();
            Assert.That(Volatile.Read(ref done), Is.EqualTo(n - 1));
            release.Set();
            await receives[0].Within();
        }
        finally
        {
            release.Set();
            foreach (SocketPair pair in pairs)
                pair.Dispose();
        }
    }
}
