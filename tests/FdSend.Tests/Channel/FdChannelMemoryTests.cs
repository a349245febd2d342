// SPDX-License-Identifier: MIT
// FdChannel's receive memory follows the bytes that arrived, not the length a frame header
// announces: idle peers that sent only a maximal header cost next to nothing, a large payload
// sent in small pieces still arrives whole, and the buffer grows geometrically.
using FdSend.Tests.Async;

namespace FdSend.Tests.Channel;

[TestFixture]
[NonParallelizable]
[CancelAfter(120_000)]
public class FdChannelMemoryTests : TempDirFixture
{
    /// <summary>The soft RLIMIT_NOFILE of this process, from /proc/self/limits.</summary>
    private static long OpenFileLimit()
    {
        foreach (string line in File.ReadAllLines("/proc/self/limits"))
        {
            if (!line.StartsWith("Max open files", StringComparison.Ordinal))
                continue;
            string soft = line.Substring("Max open files".Length).TrimStart().Split(' ')[0];
            return soft == "unlimited" ? long.MaxValue : long.Parse(soft, System.Globalization.CultureInfo.InvariantCulture);
        }
        throw new InvalidOperationException("no 'Max open files' line in /proc/self/limits");
    }

    [Test]
    public async Task Idle_peers_that_sent_only_a_maximal_header_cost_no_payload_memory()
    {
        // 1,000 connections (2,000 descriptors here) when the table has room for four times
        // that; fewer otherwise, so that the test host's table stays at most half full.
        long room = OpenFileLimit() - Posix.OpenFds().Length;
        int peers = (int)Math.Min(1000, room / 4);
        Assert.That(peers, Is.GreaterThanOrEqualTo(100), $"too few free descriptors for the test (room {room})");

        int baselineFds = AsyncTest.SettledFdCount();
        var pairs = new List<SocketPair>(peers);
        var channels = new List<FdChannel>(peers);
        var receives = new List<Task<FdMessage>>(peers);
        byte[] header = Frames.Make(ReadOnlySpan<byte>.Empty, 0, length: FdChannelOptions.DefaultMaxMessageSize);
        try
        {
            // Every channel waits in a receive before the header comes, as a server does.
            for (int i = 0; i < peers; i++)
            {
                var pair = SocketPair.Create(Dir, SocketType.Stream);
                pairs.Add(pair);
                var channel = new FdChannel(pair.B);
                channels.Add(channel);
                receives.Add(channel.ReceiveAsync().AsTask());
            }
            long before = GC.GetTotalMemory(forceFullCollection: true);

            // Each peer sends the 9th..16th byte of its attack: a header announcing the
            // largest accepted payload, and then nothing. Stop early (rather than let a
            // regression allocate gigabytes) once the heap has grown by 256 MiB.
            for (int i = 0; i < peers; i++)
            {
                pairs[i].A.Send(header);
                if (i % 10 == 9)
                {
                    await WaitUntilRead(pairs, i + 1);
                    long grown = GC.GetTotalMemory(forceFullCollection: false) - before;
                    Assert.That(grown, Is.LessThan(256L << 20),
                        $"after {i + 1} idle headers the heap grew by {grown >> 20} MiB: the announced length was allocated");
                }
            }
            await WaitUntilRead(pairs, peers);
            long after = GC.GetTotalMemory(forceFullCollection: true);
            long growth = after - before;
            TestContext.Progress.WriteLine(
                $"  {peers} channels, each with a pending receive after a header announcing {FdChannelOptions.DefaultMaxMessageSize} bytes: " +
                $"GC heap {before / 1024} KiB -> {after / 1024} KiB ({growth / 1024} KiB, {growth / peers} bytes a peer)");
            Assert.That(growth, Is.LessThan(4L << 20), "the headers pinned memory");
            Assert.That(receives.Count(r => r.IsCompleted), Is.Zero, "every receive still waits for its payload");
        }
        finally
        {
            foreach (FdChannel channel in channels)
                await channel.DisposeAsync();
            foreach (Task<FdMessage> receive in receives)
                Assert.CatchAsync<ObjectDisposedException>(async () => (await receive.Within()).Dispose());
            foreach (SocketPair pair in pairs)
                pair.Dispose();
        }
        AsyncTest.AssertFdCount(baselineFds);
    }

    /// <summary>Waits until the channels of the first <paramref name="count"/> pairs have read
    /// every byte sent to them.</summary>
    private static async Task WaitUntilRead(List<SocketPair> pairs, int count)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < count; i++)
        {
            while (pairs[i].B.Available > 0)
            {
                Assert.That(sw.ElapsedMilliseconds, Is.LessThan(30_000), $"channel {i} did not read its header");
                await Task.Delay(1);
            }
        }
    }

    [Test]
    public async Task A_large_message_sent_in_small_pieces_arrives_intact()
    {
        // 8 MiB + 3 bytes (not a power of two) from a raw peer, header first, then the payload
        // in pieces of 1 to 4,000 bytes; the channel grows its buffer as they come.
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        await using var channel = new FdChannel(pair.B, new FdChannelOptions { LeaveOpen = true });
        int baseline = AsyncTest.SettledFdCount();
        byte[] payload = AsyncTest.Pattern((8 << 20) + 3, 5);
        byte[] frame = Frames.Make(payload, 1);

        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        Task<FdMessage> receive = channel.ReceiveAsync().AsTask();
        Task writer = Task.Run(() =>
        {
            var random = new Random(11);
            pair.A.SendFds(frame.AsSpan(0, 8), f);
            for (int at = 8; at < frame.Length;)
            {
                int n = Math.Min(random.Next(1, 4001), frame.Length - at);
                pair.A.Send(frame.AsSpan(at, n));
                at += n;
            }
        });
        using (FdMessage m = await receive.Within(60_000))
        {
            long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
            TestContext.Progress.WriteLine($"  {payload.Length} bytes in small pieces: {allocated / 1024} KiB allocated while receiving");
            Assert.That(m.Length, Is.EqualTo(payload.Length));
            Assert.That(m.Payload.Span.SequenceEqual(payload), Is.True, "the payload is intact");
            Assert.That(m.FdCount, Is.EqualTo(1));
            Assert.That(Posix.GetFileId(m.Fds.PeekFd(0)), Is.EqualTo(Posix.GetFileId(f)));
            // Geometric growth: 64 KiB, 128 KiB ... 8 MiB, 16 MiB (the pool's size for 8 MiB + 3)
            // is about 2 x 16 MiB at most, whatever the pool already held.
            Assert.That(allocated, Is.LessThan(40L << 20), "the buffers grew geometrically");
        }
        await writer.Within();
        AsyncTest.AssertFdCount(baseline, "the message's descriptor was closed with it");
    }

    [Test]
    public void The_payload_buffer_grows_with_the_bytes_that_arrive()
    {
        // PayloadAssembler without a socket: a 16 MiB announcement, bytes arriving in reads of
        // random sizes (0 = a read that found nothing).
        var assembler = new PayloadAssembler();
        int length = 16 << 20;
        assembler.Start(length);
        Assert.That(assembler.Capacity, Is.Zero, "nothing is allocated for a header alone");

        Span<byte> space = assembler.GetSpace();
        Assert.That(space.Length, Is.EqualTo(PayloadAssembler.FirstChunk));
        assembler.Advance(0);
        Assert.That(assembler.Capacity, Is.Zero, "a read that found nothing gives its buffer back");

        var random = new Random(3);
        byte[] expected = AsyncTest.Pattern(length, 9);
        int grows = 0, capacity = 0;
        while (!assembler.IsComplete)
        {
            space = assembler.GetSpace();
            int n = Math.Min(space.Length, random.Next(0, 300_000));
            expected.AsSpan(assembler.Received, n).CopyTo(space);
            assembler.Advance(n);
            if (assembler.Capacity != capacity)
            {
                grows++;
                capacity = assembler.Capacity;
            }
            if (assembler.Received > 0)
                Assert.That(assembler.Capacity, Is.LessThanOrEqualTo(Math.Max(PayloadAssembler.FirstChunk, 2L * assembler.Received)),
                    $"memory held after {assembler.Received} bytes");
        }
        Assert.That(grows, Is.LessThanOrEqualTo(10), "64 KiB doubling to 16 MiB");
        byte[]? buffer = assembler.Take();
        Assert.That(buffer, Is.Not.Null);
        Assert.That(buffer.AsSpan(0, length).SequenceEqual(expected), Is.True, "every byte kept across the copies");
        System.Buffers.ArrayPool<byte>.Shared.Return(buffer!);

        // A small payload: one buffer of about its size, no growth.
        assembler.Start(100);
        space = assembler.GetSpace();
        Assert.That(space.Length, Is.EqualTo(100));
        assembler.Advance(100);
        Assert.That(assembler.IsComplete, Is.True);
        Assert.That(assembler.Capacity, Is.LessThan(1024));
        assembler.Reset();
        Assert.That(assembler.Capacity, Is.Zero);
    }
}
