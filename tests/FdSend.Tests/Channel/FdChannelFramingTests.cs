// SPDX-License-Identifier: MIT
// FdChannel against raw frames written with the plain FdSend calls: the bytes on the wire,
// frames split into single bytes, frames joined in one write, and every kind of malformed
// frame (its descriptors are closed; on a stream the channel faults and later calls throw the
// same; on seqpacket and datagram sockets the record is dropped and the next one arrives).
using FdSend.Tests.Async;

namespace FdSend.Tests.Channel;

[TestFixture]
[CancelAfter(30_000)]
public class FdChannelFramingTests : TempDirFixture
{
    [Test]
    public async Task SendAsync_puts_the_documented_bytes_on_the_wire()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        string p = Dir.NewFile("x");
        using var f = File.OpenHandle(p);
        await using var channel = new FdChannel(pair.A, new FdChannelOptions { LeaveOpen = true });

        await channel.SendAsync(TestData.Utf8("hello"), new Descriptor[] { f, f });
        var buffer = new byte[64];
        using ReceivedFds r = pair.B.ReceiveFds(buffer.AsSpan(0, 13));
        Assert.That(buffer.AsSpan(0, r.BytesReceived).ToArray(),
            Is.EqualTo(new byte[] { 1, 0, 2, 0, 5, 0, 0, 0, (byte)'h', (byte)'e', (byte)'l', (byte)'l', (byte)'o' }));
        Assert.That(r.Count, Is.EqualTo(2), "the descriptors come with the header's first byte");
        Assert.That(Posix.GetFileId(r.PeekFd(1)), Is.EqualTo(Posix.GetFileId(p)));

        // A 70,000-byte payload (sent header-first, then straight from the caller's memory).
        await channel.SendAsync(new byte[70_000], new Descriptor[] { f });
        using ReceivedFds h = pair.B.ReceiveFds(buffer.AsSpan(0, 8));
        Assert.That(buffer.AsSpan(0, 8).ToArray(), Is.EqualTo(new byte[] { 1, 0, 1, 0, 0x70, 0x11, 0x01, 0 }));
        Assert.That(h.Count, Is.EqualTo(1));
        Assert.That(AsyncTest.ReadPlain(pair.B, 70_000).All(b => b == 0), Is.True);

        await channel.SendAsync(ReadOnlyMemory<byte>.Empty);
        using ReceivedFds e = pair.B.ReceiveFds(buffer.AsSpan(0, 8));
        Assert.That(buffer.AsSpan(0, 8).ToArray(), Is.EqualTo(new byte[] { 1, 0, 0, 0, 0, 0, 0, 0 }));
    }

    [Test]
    public async Task A_frame_written_one_byte_at_a_time_arrives_whole()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        string p1 = Dir.NewFile("a"), p2 = Dir.NewFile("b");
        using var f1 = File.OpenHandle(p1);
        using var f2 = File.OpenHandle(p2);
        await using var channel = new FdChannel(pair.B);
        int baseline = AsyncTest.SettledFdCount();

        for (int round = 0; round < 2; round++)
        {
            byte[] payload = AsyncTest.Pattern(40, round);
            byte[] frame = Frames.Make(payload, 2);
            Task<FdMessage> receive = channel.ReceiveAsync().AsTask();
            await Frames.WriteByteByByte(pair.A, frame, new Descriptor[] { f1, f2 });
            using FdMessage m = await receive.Within();
            Assert.That(m.Payload.ToArray(), Is.EqualTo(payload));
            Assert.That(m.FdCount, Is.EqualTo(2));
            Assert.That(Posix.GetFileId(m.Fds.PeekFd(0)), Is.EqualTo(Posix.GetFileId(p1)));
            Assert.That(Posix.GetFileId(m.Fds.PeekFd(1)), Is.EqualTo(Posix.GetFileId(p2)));
        }
        AsyncTest.AssertFdCount(baseline);
    }

    [Test]
    public async Task Frames_joined_in_one_write_come_out_as_separate_messages()
    {
        // The document's example: "ab" with 2 descriptors and "cde" with none, in one sendmsg.
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        await using var channel = new FdChannel(pair.B);
        byte[] both = Frames.Make(TestData.Utf8("ab"), 2).Concat(Frames.Make(TestData.Utf8("cde"), 0)).ToArray();
        Assert.That(both, Is.EqualTo(new byte[] { 1, 0, 2, 0, 2, 0, 0, 0, 0x61, 0x62, 1, 0, 0, 0, 3, 0, 0, 0, 0x63, 0x64, 0x65 }));
        pair.A.SendFds(both, f, f);

        using (FdMessage m = await channel.ReceiveAsync().Within())
        {
            Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("ab"));
            Assert.That(m.FdCount, Is.EqualTo(2));
        }
        using (FdMessage m = await channel.ReceiveAsync().Within())
        {
            Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("cde"));
            Assert.That(m.FdCount, Is.EqualTo(0));
        }
    }

    /// <summary>A malformed stream frame, written raw: (name, frame bytes, descriptors, byte
    /// they are attached to, whether the writer then closes its end).</summary>
    private static IEnumerable<TestCaseData> MalformedStreamFrames()
    {
        yield return new TestCaseData(Frames.Make(new byte[4], 1, version: 2), 1, 0, false).SetArgDisplayNames("version 2");
        yield return new TestCaseData(Frames.Make(new byte[4], 1, flags: 0x80), 1, 0, false).SetArgDisplayNames("flags set");
        yield return new TestCaseData(Frames.Make(new byte[4], 300), 1, 0, false).SetArgDisplayNames("fd_count over 253");
        yield return new TestCaseData(Frames.Make(new byte[4], 2), 1, 0, false).SetArgDisplayNames("fewer descriptors than announced");
        yield return new TestCaseData(Frames.Make(new byte[4], 0), 1, 0, false).SetArgDisplayNames("descriptors not announced");
        yield return new TestCaseData(Frames.Make(new byte[4], 1), 1, 3, false).SetArgDisplayNames("descriptors on a header byte");
        // The header announces none, so that the header is valid and the check that fires is
        // the one for the payload byte (announcing one would fault at the header's end, before
        // the payload, like "fewer descriptors than announced").
        yield return new TestCaseData(Frames.Make(new byte[4], 0), 1, 9, false).SetArgDisplayNames("descriptors on a payload byte");
        yield return new TestCaseData(Frames.Make(new byte[4], 1).Take(5).ToArray(), 1, 0, true).SetArgDisplayNames("end inside the header");
        yield return new TestCaseData(Frames.Make(new byte[4], 1).Take(10).ToArray(), 1, 0, true).SetArgDisplayNames("end inside the payload");
        yield return new TestCaseData(new byte[] { 0 }, 1, 0, false).SetArgDisplayNames("IO::FDPass zero byte");
    }

    [Test]
    public async Task Calls_that_need_no_wait_complete_at_once_and_report_errors_through_their_task()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        int baseline = AsyncTest.SettledFdCount();
        var sender = new FdChannel(pair.A, new FdChannelOptions { LeaveOpen = true });
        var receiver = new FdChannel(pair.B, new FdChannelOptions { LeaveOpen = true });
        try
        {
            ValueTask send = sender.SendAsync(new byte[] { 1, 2, 3 }, new Descriptor[] { f });
            Assert.That(send.IsCompletedSuccessfully, Is.True, "room in the socket: the send completed at once");
            Assert.That(pair.B.Poll(10_000_000, SelectMode.SelectRead), Is.True, "the frame arrived");
            ValueTask<FdMessage> receive = receiver.ReceiveAsync();
            Assert.That(receive.IsCompletedSuccessfully, Is.True, "a whole frame in the socket: the receive completed at once");
            using (FdMessage m = receive.Result)
            {
                Assert.That(m.Payload.ToArray(), Is.EqualTo(new byte[] { 1, 2, 3 }));
                Assert.That(m.FdCount, Is.EqualTo(1));
            }

            // A broken frame waiting in the socket: the receive does not throw, its task does.
            pair.A.SendFds(Frames.Make(new byte[4], 0, version: 9), Array.Empty<Descriptor>());
            Assert.That(pair.B.Poll(10_000_000, SelectMode.SelectRead), Is.True, "the broken frame arrived");
            ValueTask<FdMessage> bad = default;
            Assert.DoesNotThrow(() => bad = receiver.ReceiveAsync());
            Assert.That(bad.IsFaulted, Is.True);
            var e = Assert.ThrowsAsync<FdChannelProtocolException>(async () => await bad);
            Assert.That(receiver.Fault, Is.SameAs(e));

            // So does a send on the faulted channel, and one on a disposed channel.
            ValueTask refused = default;
            Assert.DoesNotThrow(() => refused = receiver.SendAsync(new byte[1]));
            Assert.That(Assert.CatchAsync(async () => await refused), Is.SameAs(e));
            await sender.DisposeAsync();
            ValueTask disposed = default;
            Assert.DoesNotThrow(() => disposed = sender.SendAsync(new byte[1]));
            Assert.ThrowsAsync<ObjectDisposedException>(async () => await disposed);
        }
        finally
        {
            await sender.DisposeAsync();
            await receiver.DisposeAsync();
        }
        AsyncTest.AssertFdCount(baseline, "nothing leaked");
    }

    [TestCaseSource(nameof(MalformedStreamFrames))]
    public async Task A_malformed_stream_frame_faults_the_channel_and_closes_its_descriptors(
        byte[] frame, int fdCount, int fdByte, bool thenClose)
    {
        var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        int baseline = AsyncTest.SettledFdCount();
        var channel = new FdChannel(pair.B);
        try
        {
            Task<FdMessage> receive = channel.ReceiveAsync().AsTask();
            // The faulty part after a few bytes of delay, so that the check works on a frame
            // that arrives in pieces too.
            var fds = Enumerable.Repeat((Descriptor)f, fdCount).ToArray();
            if (fdByte == 0)
                pair.A.SendFds(frame, fds);
            else
                await Frames.WriteByteByByte(pair.A, frame, fds, fdByte, pauseEvery: 4, reader: pair.B);
            if (thenClose)
                pair.A.Shutdown(SocketShutdown.Send);

            var e = Assert.ThrowsAsync<FdChannelProtocolException>(async () => await receive.Within());
            TestContext.Progress.WriteLine($"  {e!.Message}");
            Assert.That(e, Is.InstanceOf<IOException>());
            Assert.That(channel.Fault, Is.SameAs(e));
            AsyncTest.AssertFdCount(baseline, "every descriptor of the malformed frame was closed");

            // The fault sticks: the same exception from every later call, sends included.
            Assert.That(Assert.CatchAsync(async () => await channel.ReceiveAsync()), Is.SameAs(e));
            Assert.That(Assert.CatchAsync(async () => await channel.SendAsync(new byte[1])), Is.SameAs(e));
            Assert.That(Assert.CatchAsync(async () => { await foreach (var m in channel.ReadAllAsync()) m.Dispose(); }), Is.SameAs(e));
        }
        finally
        {
            await channel.DisposeAsync();
            pair.Dispose();
        }
    }

    private static IEnumerable<TestCaseData> MalformedDatagrams()
    {
        foreach (SocketType type in new[] { SocketType.Seqpacket, SocketType.Dgram })
        {
            yield return new TestCaseData(type, Frames.Make(new byte[4], 1, version: 0), 1).SetArgDisplayNames($"{type}: version 0");
            yield return new TestCaseData(type, Frames.Make(new byte[4], 1, version: 2), 1).SetArgDisplayNames($"{type}: version 2");
            yield return new TestCaseData(type, Frames.Make(new byte[4], 1, flags: 0x80), 1).SetArgDisplayNames($"{type}: flags set");
            yield return new TestCaseData(type, Frames.Make(new byte[4], 1, length: 5), 1).SetArgDisplayNames($"{type}: shorter than announced");
            yield return new TestCaseData(type, Frames.Make(new byte[4], 1, length: 3), 1).SetArgDisplayNames($"{type}: longer than announced");
            yield return new TestCaseData(type, new byte[] { 1, 0, 1 }, 1).SetArgDisplayNames($"{type}: shorter than a header");
            yield return new TestCaseData(type, Frames.Make(new byte[4], 3), 1).SetArgDisplayNames($"{type}: fewer descriptors than announced");
            yield return new TestCaseData(type, Frames.Make(new byte[4], 1), 3).SetArgDisplayNames($"{type}: more descriptors than announced");
            yield return new TestCaseData(type, Frames.Make(new byte[4], 0), 2).SetArgDisplayNames($"{type}: descriptors not announced");
            yield return new TestCaseData(type, Frames.Make(new byte[4], 300), 1).SetArgDisplayNames($"{type}: fd_count over 253");
            yield return new TestCaseData(type, Array.Empty<byte>(), 2).SetArgDisplayNames($"{type}: empty record with descriptors");
        }
        yield return new TestCaseData(SocketType.Dgram, Array.Empty<byte>(), 0).SetArgDisplayNames("Dgram: empty datagram");
    }

    /// <summary>A seqpacket record or datagram stands alone: a bad one is dropped with its
    /// descriptors and the receive throws, but the channel is not faulted and the next record
    /// arrives normally (as with fdsend_msg_recv; docs/wire-format.md section 4).</summary>
    [TestCaseSource(nameof(MalformedDatagrams))]
    public Task A_malformed_datagram_frame_is_dropped_and_the_next_one_arrives(SocketType type, byte[] datagram, int fdCount) =>
        ABadRecordIsDroppedAndTheNextOneArrives<FdChannelProtocolException>(type, datagram, fdCount);

    /// <summary>A record whose header announces more than the limit is read into a header-sized
    /// buffer (the limit is not allocated for it), so it is always cut, and reported as too
    /// large even when its size also differs from its header's (docs/wire-format.md section 4).</summary>
    [TestCase(SocketType.Seqpacket)]
    [TestCase(SocketType.Dgram)]
    public Task A_record_announcing_more_than_the_limit_is_rejected_and_the_next_one_arrives(SocketType type) =>
        ABadRecordIsDroppedAndTheNextOneArrives<FdMessageRejectedException>(type, Frames.Make(new byte[4], 1, length: 0xFFFFFFF0), 1);

    private async Task ABadRecordIsDroppedAndTheNextOneArrives<TException>(SocketType type, byte[] datagram, int fdCount)
        where TException : IOException
    {
        using var pair = SocketPair.Create(Dir, type);
        string path = Dir.NewFile("x");
        using var f = File.OpenHandle(path);
        int baseline = AsyncTest.SettledFdCount();
        await using var channel = new FdChannel(pair.B, new FdChannelOptions { LeaveOpen = true });

        for (int round = 0; round < 2; round++)
        {
            Task<FdMessage> receive = channel.ReceiveAsync().AsTask();
            pair.A.SendFds(datagram, Enumerable.Repeat((Descriptor)f, fdCount).ToArray());
            pair.A.SendFds(Frames.Make(TestData.Utf8($"next{round}"), 1), f);

            var e = Assert.ThrowsAsync<TException>(async () => await receive.Within());
            TestContext.Progress.WriteLine($"  {e!.Message}");
            Assert.That(e.Message, Does.Contain("still usable"));
            Assert.That(channel.Fault, Is.Null, "a bad record does not fault the channel");
            AsyncTest.AssertFdCount(baseline, "the bad record's descriptors were closed");

            using (FdMessage m = await channel.ReceiveAsync().Within())
            {
                Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo($"next{round}"));
                Assert.That(m.FdCount, Is.EqualTo(1));
                Assert.That(Posix.GetFileId(m.Fds.PeekFd(0)), Is.EqualTo(Posix.GetFileId(path)));
            }
            AsyncTest.AssertFdCount(baseline, "the good message's descriptor was closed with it");
        }
        await channel.SendAsync(TestData.Utf8("sends work too"));
    }

    [Test]
    public void No_read_failure_is_a_refused_record_here()
    {
        // fdsend_recv_refused, the channel's rule for a record libfdsend refused and that
        // cannot be read past (Windows; FdSend.WinTests' channel_refused_record_faults): the
        // kernel refuses no message that way, so every failed read means what it says here.
        foreach (Interop.Status status in Enum.GetValues<Interop.Status>())
            Assert.That(Interop.RecvRefused((long)status), Is.Zero, status.ToString());
    }

    [Test]
    public async Task An_empty_seqpacket_record_reads_as_the_end_and_the_next_record_follows()
    {
        // No frame is empty, so a zero-byte record without descriptors is the end of the
        // connection, as fdsend_msg_recv says (FDSEND_EOF); the peer may still be connected,
        // and then the next receive reads its next record. After the peer's real close, every
        // receive reports the end.
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        int baseline = AsyncTest.SettledFdCount();
        await using var channel = new FdChannel(pair.B, new FdChannelOptions { LeaveOpen = true });

        pair.A.SendFds(ReadOnlySpan<byte>.Empty, ReadOnlySpan<Descriptor>.Empty);
        pair.A.SendFds(Frames.Make(TestData.Utf8("after"), 1), f);
        Assert.ThrowsAsync<EndOfStreamException>(async () => await channel.ReceiveAsync().Within());
        Assert.That(channel.Fault, Is.Null);
        using (FdMessage m = await channel.ReceiveAsync().Within())
        {
            Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("after"));
            Assert.That(m.FdCount, Is.EqualTo(1));
        }

        // ReadAllAsync ends at an empty record too.
        pair.A.SendFds(Frames.Make(TestData.Utf8("one"), 0), ReadOnlySpan<Descriptor>.Empty);
        pair.A.SendFds(ReadOnlySpan<byte>.Empty, ReadOnlySpan<Descriptor>.Empty);
        var seen = new List<string>();
        await foreach (FdMessage m in channel.ReadAllAsync())
        {
            using (m)
                seen.Add(TestData.Text(m.Payload.Span));
        }
        Assert.That(seen, Is.EqualTo(new[] { "one" }));

        pair.A.Shutdown(SocketShutdown.Send);
        Assert.ThrowsAsync<EndOfStreamException>(async () => await channel.ReceiveAsync().Within());
        Assert.ThrowsAsync<EndOfStreamException>(async () => await channel.ReceiveAsync().Within());
        AsyncTest.AssertFdCount(baseline);
    }

    [Test]
    public void Descriptors_the_kernel_drops_reject_the_message_but_keep_the_channel()
    {
        // MSG_CTRUNC for real, in a child process (FdSend.TestPeer channel-rlimit): it leaves
        // itself room for only two new descriptors (FullDescriptorTable: a lowered soft
        // RLIMIT_NOFILE, every slot below it filled, two freed) and receives a frame with
        // four. Not in this process:
        // with its table full, any thread the runtime starts meanwhile fails (.NET reports it
        // as OutOfMemoryException) and the test host crashed once that way.
        using var f = File.OpenHandle(Dir.NewFile("x"));
        using var peer = AsyncPeerProcess.Start(Dir, "channel-rlimit", 1, "2");
        Socket s = peer.Connections[0];
        s.SendFds(Frames.Make(TestData.Utf8("warm"), 0));
        // Only once the peer has received the warm-up: a channel that reads ahead (Linux)
        // would otherwise take the next frame's descriptors with it, before its table is full.
        var ack = new byte[1];
        Assert.That(s.Receive(ack), Is.EqualTo(1));
        s.SendFds(Frames.Make(TestData.Utf8("four"), 4), f, f, f, f);
        s.SendFds(Frames.Make(TestData.Utf8("next"), 1), f);
        string report = peer.WaitForSuccess().Trim();
        TestContext.Progress.WriteLine($"  {report}");
        Assert.That(report, Does.Contain("rejected=FdsDropped fds=4 "), "the frame with dropped descriptors was rejected");
        Assert.That(report, Does.Contain(" leaked=0 "), "the descriptors that did arrive were closed");
        Assert.That(report, Does.Contain(" next=next nextfds=1 "), "the channel is still in step");
        Assert.That(report, Does.EndWith(" fault=none"));
    }
}
