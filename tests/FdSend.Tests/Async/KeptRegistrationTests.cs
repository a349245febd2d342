// SPDX-License-Identifier: MIT
// On Linux the readiness engine registers a socket once, edge-triggered, and keeps the
// registration while the socket is in use (ReadinessEngine.KeepRegistration): no re-arm per
// wait. What that must not break: readiness that arrives between a failed attempt and the wait
// (the lost wake-up), several messages reported by one edge, a socket closed while registered
// whose number (or open file) comes back, cancellation, many sockets, idle unregistration.
using System.Globalization;
using System.Text.RegularExpressions;

namespace FdSend.Tests.Async;

[TestFixture]
[CancelAfter(120_000)]
public partial class KeptRegistrationTests : TempDirFixture
{
    [SetUp]
    public void LinuxOnly()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("kept (edge-triggered) registrations are the Linux engine's");
        if (!ReadinessEngine.KeepRegistration)
            Assert.Ignore("kept registrations are opt-in (FDSEND_ASYNC_KEEP_REGISTRATION=1); " +
                          "./build.sh test managed runs the async and channel tests again with it");
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public async Task Readiness_arriving_around_the_wait_is_never_lost(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        string p = Dir.NewFile("f");
        using var f = File.OpenHandle(p);
        int baseline = AsyncTest.SettledFdCount();
        var buffer = new byte[16];
        using var go = new SemaphoreSlim(0);
        int iterations = 3000;
        // The sender sends each message after a varying spin, so that it lands before the
        // receive's attempt, between the attempt and the wait, or after the wait started.
        var sender = new Thread(() =>
        {
            for (int i = 0; i < iterations; i++)
            {
                go.Wait();
                Thread.SpinWait(i % 7 * 37);
                pair.A.SendFds(new[] { (byte)i }, i % 5 == 0 ? [Descriptor.FromHandle(f)] : ReadOnlySpan<Descriptor>.Empty);
            }
        }) { IsBackground = true, Name = "race sender" };
        sender.Start();
        for (int i = 0; i < iterations; i++)
        {
            go.Release();
            if (i % 3 == 0)
                Thread.SpinWait(i % 11 * 23);
            using ReceivedFds r = await pair.B.ReceiveFdsAsync(buffer).Within(20_000);
            Assert.That(r.BytesReceived, Is.EqualTo(1), $"iteration {i}");
            Assert.That(buffer[0], Is.EqualTo((byte)i), $"iteration {i}");
            Assert.That(r.Count, Is.EqualTo(i % 5 == 0 ? 1 : 0), $"iteration {i}");
        }
        Assert.That(sender.Join(TimeSpan.FromSeconds(20)), Is.True);
        AsyncTest.AssertFdCount(baseline, "after every message was received and disposed");
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task Readiness_reported_between_the_attempt_and_the_wait_completes_it(bool exact)
    {
        // Deterministic form of the race above: after the receive's attempt found nothing and
        // before its wait is parked, a message arrives and the engine handles its edge (finding
        // no waiter). The wait must retry instead of waiting for an edge that has passed.
        // exact: ReceiveFdsExactlyAsync, whose readable wait uses the ready bit; otherwise
        // ReceiveFdsAsync, whose wait compares the report count read before its attempt.
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        await ReceiveAfterWait(pair); // registered: later readiness comes as edges
        SocketWaitState state = ReadinessEngine.Instance.GetState(pair.B);
        var buffer = new byte[2];
        for (int i = 0; i < 20; i++)
        {
            int hooked = 0;
            state.BeforeWaitForTests = () =>
            {
                if (Interlocked.Exchange(ref hooked, 1) != 0)
                    return;
                int seq = Volatile.Read(ref state.ReadSeq);
                pair.A.SendFds(new byte[] { 7, (byte)i }, ReadOnlySpan<Descriptor>.Empty);
                SpinWait.SpinUntil(() => Volatile.Read(ref state.ReadSeq) != seq, 10_000);
            };
            try
            {
                using ReceivedFds r = exact
                    ? await pair.B.ReceiveFdsExactlyAsync(buffer).Within(10_000)
                    : await pair.B.ReceiveFdsAsync(buffer).Within(10_000);
                Assert.That(r.BytesReceived, Is.EqualTo(2), $"iteration {i}");
                Assert.That(buffer, Is.EqualTo(new byte[] { 7, (byte)i }));
                Assert.That(hooked, Is.EqualTo(1), "the receive waited");
            }
            finally
            {
                state.BeforeWaitForTests = null;
            }
        }
    }

    [Test]
    public async Task A_wait_for_readability_sees_data_that_came_around_it()
    {
        // ReceiveFdsExactlyAsync waits with the attempt-free readable wait between pieces.
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        var buffer = new byte[4];
        for (int i = 0; i < 1000; i++)
        {
            Task<ReceivedFds> receive = pair.B.ReceiveFdsExactlyAsync(buffer).AsTask();
            var t = Task.Run(() =>
            {
                pair.A.SendFds(new byte[] { 1, 2 }, ReadOnlySpan<Descriptor>.Empty);
                Thread.SpinWait(i % 13 * 31);
                pair.A.SendFds(new byte[] { 3, (byte)i }, ReadOnlySpan<Descriptor>.Empty);
            });
            using ReceivedFds r = await receive.Within(20_000);
            await t.Within();
            Assert.That(r.BytesReceived, Is.EqualTo(4), $"iteration {i}");
            Assert.That(buffer, Is.EqualTo(new byte[] { 1, 2, 3, (byte)i }), $"iteration {i}");
        }
    }

    [Test]
    public async Task Writable_waits_around_a_draining_peer_are_never_lost()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        var data = new byte[64 * 1024];
        for (int i = 0; i < 40; i++)
        {
            long filled = AsyncTest.Fill(pair.A);
            ValueTask<int> send = pair.A.SendFdsAsync(data, ReadOnlyMemory<Descriptor>.Empty);
            Task<byte[]> drain = Task.Run(() => AsyncTest.ReadPlain(pair.B, filled + data.Length));
            Assert.That(await send.Within(20_000), Is.EqualTo(data.Length), $"iteration {i}");
            Assert.That((await drain.Within(20_000)).Length, Is.EqualTo(filled + data.Length));
        }
    }

    [Test]
    public async Task Several_messages_reported_together_reach_every_waiting_receive()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        for (int round = 0; round < 50; round++)
        {
            const int n = 8;
            var buffers = Enumerable.Range(0, n).Select(_ => new byte[4]).ToArray();
            Task<ReceivedFds>[] receives = buffers.Select(b => pair.B.ReceiveFdsAsync(b).AsTask()).ToArray();
            if (round == 0)
                await AsyncTest.AssertPending(receives[0]);
            for (int i = 0; i < n; i++)
                pair.A.SendFds(new[] { (byte)i }, ReadOnlySpan<Descriptor>.Empty);
            ReceivedFds[] got = await Task.WhenAll(receives).Within(20_000);
            Assert.That(got.Select(r => r.BytesReceived), Is.All.EqualTo(1), $"round {round}");
            Assert.That(buffers.Select(b => b[0]).Order(), Is.EqualTo(Enumerable.Range(0, n).Select(i => (byte)i)),
                $"round {round}: every message reached one receive");
            foreach (ReceivedFds r in got)
                r.Dispose();
        }
        // One waiting receive, a burst of three: the rest is there for the next receives.
        var one = new byte[4];
        Task<ReceivedFds> first = pair.B.ReceiveFdsAsync(one).AsTask();
        await AsyncTest.AssertPending(first);
        for (int i = 0; i < 3; i++)
            pair.A.SendFds(new[] { (byte)(10 + i) }, ReadOnlySpan<Descriptor>.Empty);
        (await first.Within()).Dispose();
        Assert.That(one[0], Is.EqualTo(10));
        for (int i = 1; i < 3; i++)
        {
            (await pair.B.ReceiveFdsAsync(one).Within()).Dispose();
            Assert.That(one[0], Is.EqualTo(10 + i));
        }
    }

    [Test]
    public async Task Cancellation_while_registered_consumes_nothing()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        string p = Dir.NewFile("f");
        using var file = new FileStream(p, FileMode.Open, FileAccess.Read);
        await ReceiveAfterWait(pair); // registered now
        int baseline = AsyncTest.SettledFdCount();
        var buffer = new byte[16];
        for (int i = 0; i < 300; i++)
        {
            using var cts = new CancellationTokenSource();
            Task<ReceivedFds> receive = pair.B.ReceiveFdsAsync(buffer, cts.Token).AsTask();
            // Cancel and send race; either the receive got the message, or it was cancelled
            // and the message is still there, whole.
            var send = Task.Run(() => pair.A.SendFds(TestData.Utf8("m"), file));
            cts.Cancel();
            await send.Within();
            try
            {
                using ReceivedFds r = await receive.Within();
                Assert.That(r.BytesReceived, Is.EqualTo(1));
                Assert.That(r.Count, Is.EqualTo(1));
            }
            catch (OperationCanceledException)
            {
                using ReceivedFds r = await pair.B.ReceiveFdsAsync(buffer).Within();
                Assert.That(r.BytesReceived, Is.EqualTo(1), $"iteration {i}: the message survived the cancellation");
                Assert.That(r.Count, Is.EqualTo(1));
            }
        }
        // A cancelled wait leaves the registration usable.
        using (var cts = new CancellationTokenSource())
        {
            Task<ReceivedFds> pending = pair.B.ReceiveFdsAsync(buffer, cts.Token).AsTask();
            await AsyncTest.AssertPending(pending);
            cts.Cancel();
            Assert.That(async () => await pending.Within(), Throws.InstanceOf<OperationCanceledException>());
        }
        pair.AssertNextMessageArrivesWhole("after", file);
        AsyncTest.AssertFdCount(baseline, "after every message was received and disposed");
    }

    [Test]
    public async Task A_socket_closed_while_registered_leaves_its_number_to_the_next_socket()
    {
        var old = SocketPair.Create(Dir, SocketType.Seqpacket);
        await ReceiveAfterWait(old);
        int number = (int)old.B.Handle;
        // A duplicate keeps the old open file (and so its registration in the engine's epoll
        // set) alive after the socket is closed: its events carry the old socket's token.
        int dup = Posix.Dup(number);
        Assert.That(dup, Is.GreaterThanOrEqualTo(0));
        using var keptAlive = new Socket(new SafeSocketHandle(dup, ownsHandle: true));
        // The next socket made takes the lowest free number: the one just closed.
        string path = Dir.NewPath("l");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        using var newPeer = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        newPeer.Connect(new UnixDomainSocketEndPoint(path));
        old.B.Dispose();
        try
        {
            using Socket newSocket = listener.Accept();
            if ((int)newSocket.Handle != number)
                Assert.Ignore($"fd {number} was taken by another thread before the new socket");
            var buffer = new byte[16];
            Task<ReceivedFds> receive = newSocket.ReceiveFdsAsync(buffer).AsTask();
            await AsyncTest.AssertPending(receive);
            // The old open file becomes readable: its stale registration fires with the old
            // token, which must reach nobody.
            old.A.SendFds(TestData.Utf8("old"), ReadOnlySpan<Descriptor>.Empty);
            await AsyncTest.AssertPending(receive);
            newPeer.SendFds(TestData.Utf8("new!"), ReadOnlySpan<Descriptor>.Empty);
            using (ReceivedFds r = await receive.Within())
                Assert.That(r.BytesReceived, Is.EqualTo(4));
            Assert.That(buffer.AsSpan(0, 4).ToArray(), Is.EqualTo(TestData.Utf8("new!")));
            // The old file's message is still there for whoever holds it.
            using (ReceivedFds r = await keptAlive.ReceiveFdsAsync(buffer).Within())
                Assert.That(r.BytesReceived, Is.EqualTo(3));
        }
        finally
        {
            old.Dispose();
        }
    }

    [Test]
    public async Task An_open_file_back_under_its_old_number_takes_over_the_stale_registration()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        await ReceiveAfterWait(pair);
        int number = (int)pair.B.Handle;
        int dup = Posix.Dup(number);
        Assert.That(dup, Is.GreaterThanOrEqualTo(0));
        using var keptAlive = new Socket(new SafeSocketHandle(dup, ownsHandle: true));
        pair.B.Dispose(); // the registration of (this open file, number) stays in the set
        int again = Posix.Dup(dup);
        Assert.That(again, Is.GreaterThanOrEqualTo(0));
        using var back = new Socket(new SafeSocketHandle(again, ownsHandle: true));
        if (again != number)
            Assert.Ignore($"the duplicate got fd {again}, not the old number {number}");
        // Registering (this open file, number) again finds the old entry (EEXIST): the engine
        // takes it over with the new socket's token.
        var buffer = new byte[16];
        Task<ReceivedFds> receive = back.ReceiveFdsAsync(buffer).AsTask();
        await AsyncTest.AssertPending(receive);
        pair.A.SendFds(TestData.Utf8("back"), ReadOnlySpan<Descriptor>.Empty);
        using ReceivedFds r = await receive.Within();
        Assert.That(r.BytesReceived, Is.EqualTo(4));
    }

    [Test]
    public async Task Many_sockets_stay_registered_until_idle_and_work_after()
    {
        const int n = 200;
        var pairs = Enumerable.Range(0, n).Select(_ => SocketPair.Create(Dir, SocketType.Seqpacket)).ToArray();
        try
        {
            int baseline = AsyncTest.SettledFdCount();
            for (int round = 0; round < 3; round++)
            {
                await ReceiveOnAll(pairs);
                if (round == 1)
                {
                    Assert.That(pairs.Count(p => EpollRegistrations(p.B) == 1), Is.EqualTo(n),
                        "each socket is registered exactly once, and stays so between waits");
                    // Two sweeps: the first sees them used, the second unregisters them.
                    ReadinessEngine.Instance.UnregisterIdle();
                    ReadinessEngine.Instance.UnregisterIdle();
                    Assert.That(pairs.Count(p => EpollRegistrations(p.B) != 0), Is.EqualTo(0),
                        "idle sockets leave the kernel's set");
                }
            }
            Assert.That(pairs.Count(p => EpollRegistrations(p.B) == 1), Is.EqualTo(n), "registered again on use");
            AsyncTest.AssertFdCount(baseline, "no descriptor gained or lost");
        }
        finally
        {
            foreach (SocketPair pair in pairs)
                pair.Dispose();
        }
    }

    private static async Task ReceiveOnAll(SocketPair[] pairs)
    {
        var buffers = pairs.Select(_ => new byte[4]).ToArray();
        Task<ReceivedFds>[] receives = pairs.Select((p, i) => p.B.ReceiveFdsAsync(buffers[i]).AsTask()).ToArray();
        await AsyncTest.AssertPending(receives[^1], 50);
        for (int i = 0; i < pairs.Length; i++)
            pairs[i].A.SendFds(new[] { (byte)i }, ReadOnlySpan<Descriptor>.Empty);
        ReceivedFds[] got = await Task.WhenAll(receives).Within();
        for (int i = 0; i < pairs.Length; i++)
        {
            Assert.That(got[i].BytesReceived, Is.EqualTo(1));
            Assert.That(buffers[i][0], Is.EqualTo((byte)i));
            got[i].Dispose();
        }
    }

    /// <summary>One receive that had to wait (so the socket is registered with the engine).</summary>
    private static async Task ReceiveAfterWait(SocketPair pair)
    {
        Task<ReceivedFds> receive = pair.B.ReceiveFdsAsync(new byte[16]).AsTask();
        await AsyncTest.AssertPending(receive, 50);
        pair.A.SendFds(TestData.Utf8("r"), ReadOnlySpan<Descriptor>.Empty);
        (await receive.Within()).Dispose();
    }

    /// <summary>How many epoll sets of this process hold <paramref name="socket"/> (its number
    /// and its open file's inode), from /proc/self/fdinfo's "tfd:" lines.</summary>
    private static int EpollRegistrations(Socket socket)
    {
        int fd = (int)socket.Handle;
        string ino = Posix.GetFileId(fd).Inode.ToString("x", CultureInfo.InvariantCulture);
        int count = 0;
        foreach (string info in Directory.EnumerateFiles("/proc/self/fdinfo"))
        {
            string text;
            try
            {
                text = File.ReadAllText(info);
            }
            catch (IOException)
            {
                continue; // closed meanwhile
            }
            foreach (Match m in TfdLine().Matches(text))
            {
                if (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) == fd && m.Groups[2].Value == ino)
                    count++;
            }
        }
        return count;
    }

    [GeneratedRegex(@"^tfd:\s+(\d+)\s.*\sino:([0-9a-f]+)", RegexOptions.Multiline)]
    private static partial Regex TfdLine();
}
