// SPDX-License-Identifier: MIT
// The channel's frame readers, writer and gate without a socket: bytes, descriptor counts and
// kernel flags are fed to StreamFrameReader / RecordFrameReader exactly as a receive would
// report them, and the outcome checked (the message, or the exception with every descriptor of
// the frame closed). The rules themselves are libfdsend's codec; these tests pin how the .NET
// side drives it: read sizes, descriptor ownership, memory, and the errors a caller sees.
using FdSend.Tests.Async;

namespace FdSend.Tests.Channel;

[TestFixture]
[CancelAfter(30_000)]
public class FrameCodecDriverTests : TempDirFixture
{
    private static readonly FdChannelOptions Defaults = new();

    /// <summary>Real descriptors (dups of one file) for a frame, and its identity.</summary>
    private (int[] Fds, FileId Id) OpenFds(int count)
    {
        string p = Dir.NewFile("f");
        using var h = File.OpenHandle(p);
        var fds = new int[count];
        for (int i = 0; i < count; i++)
            fds[i] = Posix.Dup((int)h.DangerousGetHandle());
        return (fds, Posix.GetFileId(p));
    }

    private static void AssertClosed(int[] fds, FileId id)
    {
        foreach (int fd in fds)
            Assert.That(Posix.IsOpenOn(fd, id), Is.False, $"descriptor {fd} was closed");
    }

    private static void CopyFds(int[] fds, nint[] into)
    {
        for (int i = 0; i < fds.Length; i++)
            into[i] = fds[i];
    }

    [Test]
    public void A_frame_fed_one_byte_at_a_time_is_one_message_with_its_descriptors()
    {
        (int[] fds, FileId id) = OpenFds(2);
        var reader = new StreamFrameReader(Defaults);
        byte[] frame = Frames.Make(TestData.Utf8("hello"), 2);
        List<object> outcomes = FeedStreamWithFds(reader, frame, fds, chunk: 1);
        Assert.That(outcomes, Has.Count.EqualTo(2));
        using (var m = (FdMessage)outcomes[0])
        {
            Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("hello"));
            Assert.That(m.FdCount, Is.EqualTo(2));
            Assert.That(Posix.GetFileId(m.Fds.PeekFd(1)), Is.EqualTo(id));
        }
        AssertClosed(fds, id);
        Assert.That(outcomes[1], Is.EqualTo("eof"));
    }

    /// <summary>
    /// Feeds <paramref name="stream"/> to the reader in reads of at most <paramref name="chunk"/>
    /// bytes (never more than the reader asks for), <paramref name="fds"/> arriving with byte
    /// <paramref name="fdByte"/> (into the reader's descriptor buffer if that read has room,
    /// else closed and reported as FdsTruncated, as fdsend_recv does), then the end of the
    /// stream unless <paramref name="end"/> is false. Returns the outcomes in order: messages,
    /// "eof", rejections (the run goes on with the next frame), or a protocol error (which
    /// ends the run).
    /// </summary>
    private static List<object> FeedStreamWithFds(StreamFrameReader reader, byte[] stream, int[] fds, int chunk,
                                                  int fdByte = 0, ReceiveFlags firstFlags = ReceiveFlags.None,
                                                  bool end = true)
    {
        var outcomes = new List<object>();
        int at = 0;
        try
        {
            while (true)
            {
                // Frames held from a read-ahead read come first, as FdChannel takes them.
                try
                {
                    if (reader.TryBuffered(out FdMessage? held))
                    {
                        outcomes.Add(held is null ? "eof" : held);
                        continue;
                    }
                }
                catch (FdMessageRejectedException e)
                {
                    outcomes.Add(e);
                    continue;
                }
                Span<byte> into = reader.NextRead(out int maxFds);
                Assert.That(into.Length, Is.GreaterThan(0), "every read asks for at least one byte");
                if (at == stream.Length)
                {
                    if (!end)
                    {
                        reader.NothingRead();
                        return outcomes;
                    }
                    bool done = reader.OnRead(0, 0, ReceiveFlags.None, out FdMessage? last);
                    Assert.That(done, Is.True, "the end of the stream ends the frame or the channel");
                    outcomes.Add(last is null ? "eof" : last);
                    return outcomes;
                }
                int n = Math.Min(Math.Min(into.Length, chunk), stream.Length - at);
                if (at < fdByte && at + n > fdByte)
                    n = fdByte - at; // the kernel stops a read at the byte that carries descriptors
                int count = 0;
                ReceiveFlags flags = ReceiveFlags.None;
                if (at == fdByte && (fds.Length > 0 || firstFlags != ReceiveFlags.None))
                {
                    if (maxFds >= fds.Length)
                    {
                        CopyFds(fds, reader.FdBuffer);
                        count = fds.Length;
                    }
                    else
                    {
                        foreach (int fd in fds)
                            Posix.Close(fd); // what fdsend_recv does with descriptors it has no room for
                        if (fds.Length > 0)
                            flags |= ReceiveFlags.FdsTruncated;
                    }
                    flags |= firstFlags;
                }
                stream.AsSpan(at, n).CopyTo(into);
                at += n;
                try
                {
                    if (reader.OnRead(n, count, flags, out FdMessage? message))
                        outcomes.Add(message is null ? "eof" : message);
                }
                catch (FdMessageRejectedException e)
                {
                    outcomes.Add(e); // the frame was consumed whole: the reader is at the next one
                }
            }
        }
        catch (IOException e)
        {
            outcomes.Add(e);
            return outcomes;
        }
    }

    [Test]
    public void Reads_never_ask_past_the_header_or_the_payload([Values(1, 3, 8, 100_000)] int chunk)
    {
        var reader = new StreamFrameReader(Defaults, readAhead: false);
        byte[] a = Frames.Make(AsyncTest.Pattern(70_000, 1), 0), b = Frames.Make(TestData.Utf8("xy"), 0);
        byte[] both = a.Concat(b).ToArray();
        int at = 0;
        var messages = new List<FdMessage>();
        while (at < both.Length)
        {
            Span<byte> into = reader.NextRead(out int maxFds);
            int n = Math.Min(into.Length, chunk);
            Assert.That(at + into.Length, Is.LessThanOrEqualTo(at < a.Length ? a.Length : both.Length),
                "no read may reach into the next frame");
            if (at == 0 || at == a.Length)
                Assert.That(into.Length, Is.LessThanOrEqualTo(FrameHeader.Size), "a frame's first read asks for its header only");
            Assert.That(maxFds, Is.EqualTo(at == 0 || at == a.Length ? FdPassing.MaxFds : 0), "only a frame's first read takes descriptors");
            both.AsSpan(at, n).CopyTo(into);
            at += n;
            if (reader.OnRead(n, 0, ReceiveFlags.None, out FdMessage? m))
                messages.Add(m!);
        }
        Assert.That(messages, Has.Count.EqualTo(2));
        Assert.That(messages[0].Payload.ToArray(), Is.EqualTo(AsyncTest.Pattern(70_000, 1)));
        Assert.That(TestData.Text(messages[1].Payload.Span), Is.EqualTo("xy"));
        messages.ForEach(m => m.Dispose());
    }

    [Test]
    public void A_read_ahead_read_holds_several_frames_and_gives_each_its_descriptors()
    {
        // As Linux delivers them: one read runs through frames without descriptors and stops
        // after the write that carries some (fdByte: where that frame begins).
        (int[] fds, FileId id) = OpenFds(2);
        var reader = new StreamFrameReader(Defaults, readAhead: true);
        byte[] a = Frames.Make(TestData.Utf8("one"), 0), b = Frames.Make(TestData.Utf8("two"), 2),
               c = Frames.Make(AsyncTest.Pattern(10_000, 3), 0);
        byte[] all = a.Concat(b).Concat(c).ToArray();
        Span<byte> into = reader.NextRead(out int maxFds);
        Assert.That(into.Length, Is.EqualTo(StreamFrameReader.AheadSize), "a read at a boundary fills the buffer");
        Assert.That(maxFds, Is.EqualTo(FdPassing.MaxFds));
        int n = a.Length + b.Length;
        all.AsSpan(0, n).CopyTo(into);
        CopyFds(fds, reader.FdBuffer);
        Assert.That(reader.OnRead(n, 2, ReceiveFlags.None, out FdMessage? first), Is.True);
        using (first)
        {
            Assert.That(TestData.Text(first!.Payload.Span), Is.EqualTo("one"));
            Assert.That(first.FdCount, Is.EqualTo(0), "the descriptors are the second frame's");
        }
        Assert.That(reader.InFrame, Is.True, "bytes of the next frame are held");
        Assert.That(() => reader.NextRead(out _), Throws.InvalidOperationException, "held bytes come first");
        Assert.That(reader.TryBuffered(out FdMessage? second), Is.True);
        using (second)
        {
            Assert.That(TestData.Text(second!.Payload.Span), Is.EqualTo("two"));
            Assert.That(second.FdCount, Is.EqualTo(2));
            Assert.That(Posix.GetFileId(second.Fds.PeekFd(0)), Is.EqualTo(id));
        }
        Assert.That(reader.TryBuffered(out _), Is.False);
        // the third frame: a read-ahead read that ends inside its payload, then exact reads
        int at = n;
        into = reader.NextRead(out _);
        int k = Math.Min(into.Length, all.Length - at);
        all.AsSpan(at, k).CopyTo(into);
        at += k;
        Assert.That(reader.OnRead(k, 0, ReceiveFlags.None, out _), Is.False);
        while (true)
        {
            into = reader.NextRead(out maxFds);
            Assert.That(maxFds, Is.EqualTo(0), "the rest of a frame takes no descriptors");
            Assert.That(at + into.Length, Is.LessThanOrEqualTo(all.Length), "never past the frame");
            all.AsSpan(at, into.Length).CopyTo(into);
            at += into.Length;
            if (reader.OnRead(into.Length, 0, ReceiveFlags.None, out FdMessage? third))
            {
                using (third)
                    Assert.That(third!.Payload.ToArray(), Is.EqualTo(AsyncTest.Pattern(10_000, 3)));
                break;
            }
        }
        AssertClosed(fds, id);
    }

    [Test]
    public void Descriptors_no_frame_of_their_read_announces_are_a_protocol_error()
    {
        (int[] fds, FileId id) = OpenFds(1);
        var reader = new StreamFrameReader(Defaults, readAhead: true);
        byte[] two = Frames.Make(TestData.Utf8("one"), 0).Concat(Frames.Make(TestData.Utf8("two"), 0)).ToArray();
        List<object> outcomes = FeedStreamWithFds(reader, two, fds, chunk: 100_000);
        Assert.That(outcomes, Has.Count.EqualTo(2));
        ((FdMessage)outcomes[0]).Dispose();
        Assert.That(outcomes[1], Is.TypeOf<FdChannelProtocolException>());
        AssertClosed(fds, id);
    }

    [TestCase(new byte[] { 0 }, TestName = "Bad_version_byte_alone")]
    [TestCase(new byte[] { 2, 0, 0, 0, 0, 0, 0, 0 }, TestName = "Bad_version")]
    [TestCase(new byte[] { 1, 4, 0, 0, 0, 0, 0, 0 }, TestName = "Bad_flags")]
    [TestCase(new byte[] { 1, 0, 3, 0, 0, 0, 0, 0 }, TestName = "More_descriptors_announced_than_came")]
    [TestCase(new byte[] { 1, 0, 255, 0, 0, 0, 0, 0 }, TestName = "Descriptor_count_over_253")]
    [TestCase(new byte[] { 1, 0, 2, 0, 5, 0, 0, 0, (byte)'a' }, TestName = "End_of_stream_inside_the_payload")]
    [TestCase(new byte[] { 1, 0, 2, 0 }, TestName = "End_of_stream_inside_the_header")]
    public void A_malformed_stream_frame_is_a_protocol_error_with_its_descriptors_closed(byte[] bytes)
    {
        (int[] fds, FileId id) = OpenFds(2);
        var reader = new StreamFrameReader(Defaults);
        List<object> outcomes = FeedStreamWithFds(reader, bytes, fds, chunk: 3);
        Assert.That(outcomes, Has.Count.EqualTo(1));
        Assert.That(outcomes[0], Is.TypeOf<FdChannelProtocolException>());
        Assert.That(((Exception)outcomes[0]).Message, Does.Contain("faulted"));
        AssertClosed(fds, id);
    }

    [Test]
    public void Descriptors_on_a_later_byte_of_the_frame_are_a_protocol_error()
    {
        (int[] fds, FileId id) = OpenFds(1);
        (int[] late, FileId lateId) = OpenFds(1);
        var reader = new StreamFrameReader(Defaults);
        List<object> outcomes = FeedStreamWithFds(reader, Frames.Make(TestData.Utf8("abc"), 1), fds, chunk: 100);
        ((FdMessage)outcomes[0]).Dispose();
        // Second frame: its descriptors ride on byte 3 of the header (fdsend_recv closes them
        // for a read with maxFds 0 and reports FdsTruncated).
        reader = new StreamFrameReader(Defaults);
        outcomes = FeedStreamWithFds(reader, Frames.Make(TestData.Utf8("abc"), 0), late, chunk: 100, fdByte: 3);
        Assert.That(outcomes[0], Is.TypeOf<FdChannelProtocolException>());
        AssertClosed(late, lateId);
        AssertClosed(fds, id);
    }

    [Test]
    public void Frames_over_the_limits_are_read_whole_and_rejected_then_the_next_frame_arrives()
    {
        var options = new FdChannelOptions { MaxMessageSize = 100, MaxFdsPerMessage = 1 };
        (int[] fds, FileId id) = OpenFds(2);
        var reader = new StreamFrameReader(options);
        byte[] big = Frames.Make(AsyncTest.Pattern(300_000, 2), 0);
        byte[] next = Frames.Make(TestData.Utf8("next"), 0);
        List<object> outcomes = FeedStreamWithFds(reader, big.Concat(next).ToArray(), Array.Empty<int>(), chunk: 50_000, end: false);
        var e = (FdMessageRejectedException)outcomes[0];
        Assert.That(e.Reason, Is.EqualTo(FdMessageRejectReason.PayloadTooLarge));
        Assert.That(e.PayloadLength, Is.EqualTo(300_000));
        Assert.That(reader.PayloadCapacity, Is.Zero, "nothing of a discarded payload is kept");
        using (var after = (FdMessage)outcomes[1])
            Assert.That(TestData.Text(after.Payload.Span), Is.EqualTo("next"), "the reader is at the next frame");

        reader = new StreamFrameReader(options);
        outcomes = FeedStreamWithFds(reader, Frames.Make(TestData.Utf8("ab"), 2).Concat(next).ToArray(), fds, chunk: 5, end: false);
        var tooMany = (FdMessageRejectedException)outcomes[0];
        Assert.That(tooMany.Reason, Is.EqualTo(FdMessageRejectReason.TooManyFds));
        Assert.That(tooMany.FdCount, Is.EqualTo(2));
        AssertClosed(fds, id);
        using (var after = (FdMessage)outcomes[1])
            Assert.That(TestData.Text(after.Payload.Span), Is.EqualTo("next"));
    }

    [Test]
    public void Descriptors_the_kernel_dropped_make_the_frame_rejected_not_a_protocol_error()
    {
        (int[] fds, FileId id) = OpenFds(2);
        var reader = new StreamFrameReader(Defaults);
        // 4 announced, 2 arrived, MSG_CTRUNC.
        List<object> outcomes = FeedStreamWithFds(reader, Frames.Make(TestData.Utf8("abc"), 4), fds, chunk: 100,
                                                  firstFlags: ReceiveFlags.FdsTruncated, end: false);
        var e = (FdMessageRejectedException)outcomes[0];
        Assert.That(e.Reason, Is.EqualTo(FdMessageRejectReason.FdsDropped));
        Assert.That(e.FdCount, Is.EqualTo(4));
        AssertClosed(fds, id);
    }

    [Test]
    public void Reset_closes_the_descriptors_of_a_partly_received_frame()
    {
        (int[] fds, FileId id) = OpenFds(3);
        var reader = new StreamFrameReader(Defaults);
        List<object> outcomes = FeedStreamWithFds(reader, Frames.Make(TestData.Utf8("abcdef"), 3).AsSpan(0, 10).ToArray(),
                                                  fds, chunk: 100, end: false);
        Assert.That(outcomes, Is.Empty);
        Assert.That(reader.InFrame, Is.True);
        Assert.That(Posix.IsOpenOn(fds[0], id), Is.True, "the reader holds them meanwhile");
        reader.Reset();
        Assert.That(reader.InFrame, Is.False);
        AssertClosed(fds, id);
    }

    // ---- Records (seqpacket, datagram) ---------------------------------------------------

    /// <summary>Peeks and receives one record as the channel does (at most what the receive
    /// buffer holds; the rest cut, as the kernel does).</summary>
    private static object FeedRecord(RecordFrameReader reader, byte[] record, int[] fds, ReceiveFlags extra = ReceiveFlags.None)
    {
        int peeked = Math.Min(record.Length, FrameHeader.Size);
        record.AsSpan(0, peeked).CopyTo(reader.PeekBuffer.Span);
        Span<byte> into = reader.PrepareReceive(peeked);
        int n = Math.Min(into.Length, record.Length);
        record.AsSpan(0, n).CopyTo(into);
        CopyFds(fds, reader.FdBuffer);
        ReceiveFlags flags = extra | (n < record.Length ? ReceiveFlags.DataTruncated : ReceiveFlags.None);
        try
        {
            return (object?)reader.OnRecord(n, fds.Length, flags) ?? "eof";
        }
        catch (IOException e)
        {
            return e;
        }
    }

    [Test]
    public void A_good_record_is_a_message_and_an_empty_seqpacket_record_is_the_end()
    {
        (int[] fds, FileId id) = OpenFds(1);
        var reader = new RecordFrameReader(Defaults, seqpacket: true);
        using (var m = (FdMessage)FeedRecord(reader, Frames.Make(TestData.Utf8("rec"), 1), fds))
        {
            Assert.That(TestData.Text(m.Payload.Span), Is.EqualTo("rec"));
            Assert.That(Posix.GetFileId(m.Fds.PeekFd(0)), Is.EqualTo(id));
        }
        using (var empty = (FdMessage)FeedRecord(reader, Frames.Make(ReadOnlySpan<byte>.Empty, 0), Array.Empty<int>()))
            Assert.That(empty.Length, Is.Zero);
        Assert.That(FeedRecord(reader, Array.Empty<byte>(), Array.Empty<int>()), Is.EqualTo("eof"));
        var datagrams = new RecordFrameReader(Defaults, seqpacket: false);
        Assert.That(FeedRecord(datagrams, Array.Empty<byte>(), Array.Empty<int>()), Is.TypeOf<FdChannelProtocolException>(),
            "an empty datagram is not an end");
    }

    [TestCase(new byte[] { 1, 0, 0, 0 }, 1, TestName = "Record_shorter_than_a_header")]
    [TestCase(new byte[] { 1, 0, 1, 0, 5, 0, 0, 0, 1, 2 }, 1, TestName = "Record_shorter_than_its_header_says")]
    [TestCase(new byte[] { 1, 0, 1, 0, 1, 0, 0, 0, 1, 2 }, 1, TestName = "Record_longer_than_its_header_says")]
    [TestCase(new byte[] { 9, 0, 1, 0, 0, 0, 0, 0 }, 1, TestName = "Record_with_a_bad_version")]
    [TestCase(new byte[] { 1, 0, 2, 0, 0, 0, 0, 0 }, 1, TestName = "Record_with_fewer_descriptors_than_announced")]
    [TestCase(new byte[] { }, 1, TestName = "Empty_record_with_descriptors")]
    public void A_malformed_record_is_dropped_with_its_descriptors_closed_and_the_reader_goes_on(byte[] record, int fdCount)
    {
        (int[] fds, FileId id) = OpenFds(fdCount);
        var reader = new RecordFrameReader(Defaults, seqpacket: true);
        object outcome = FeedRecord(reader, record, fds);
        Assert.That(outcome, Is.TypeOf<FdChannelProtocolException>());
        Assert.That(((Exception)outcome).Message, Does.Contain("still usable"));
        AssertClosed(fds, id);
        using var next = (FdMessage)FeedRecord(reader, Frames.Make(TestData.Utf8("next"), 0), Array.Empty<int>());
        Assert.That(TestData.Text(next.Payload.Span), Is.EqualTo("next"));
    }

    [Test]
    public void A_record_over_the_limit_is_received_into_the_header_buffer_and_rejected()
    {
        (int[] fds, FileId id) = OpenFds(1);
        var reader = new RecordFrameReader(new FdChannelOptions { MaxMessageSize = 10 }, seqpacket: false);
        byte[] record = Frames.Make(AsyncTest.Pattern(5000, 3), 1);
        record.AsSpan(0, FrameHeader.Size).CopyTo(reader.PeekBuffer.Span);
        Assert.That(reader.PrepareReceive(FrameHeader.Size).Length, Is.EqualTo(FrameHeader.Size),
            "an announcement over the limit costs no memory");
        reader.NothingRead();
        object outcome = FeedRecord(reader, record, fds);
        Assert.That(outcome, Is.TypeOf<FdMessageRejectedException>());
        Assert.That(((FdMessageRejectedException)outcome).Reason, Is.EqualTo(FdMessageRejectReason.PayloadTooLarge));
        AssertClosed(fds, id);
    }

    // ---- Writer ----------------------------------------------------------------------------

    [Test]
    public void The_writer_lays_out_the_documented_bytes()
    {
        var writer = new FrameWriter();
        writer.Layout(TestData.Utf8("hello"), 2, stream: true);
        Assert.That(writer.First.ToArray(), Is.EqualTo(new byte[] { 1, 0, 2, 0, 5, 0, 0, 0, (byte)'h', (byte)'e', (byte)'l', (byte)'l', (byte)'o' }));
        Assert.That(writer.Rest.IsEmpty, Is.True, "a small payload goes in one piece");

        byte[] big = AsyncTest.Pattern(70_000, 4);
        writer.Layout(big, 1, stream: true);
        Assert.That(writer.First.ToArray(), Is.EqualTo(new byte[] { 1, 0, 1, 0, 0x70, 0x11, 0x01, 0 }), "header first");
        Assert.That(writer.Rest.ToArray(), Is.EqualTo(big), "then the caller's memory");

        writer.Layout(big, 0, stream: false);
        Assert.That(writer.First.Length, Is.EqualTo(FrameHeader.Size + big.Length), "a record is one piece");
        Assert.That(writer.Rest.IsEmpty, Is.True);
        writer.Release();
        Assert.That(writer.Length, Is.Zero);
    }

    // ---- Gate ------------------------------------------------------------------------------

    [Test]
    public async Task The_gate_admits_one_call_at_a_time_in_arrival_order_and_a_cancelled_waiter_leaves_the_line()
    {
        var gate = new ChannelGate();
        Assert.That(gate.TryEnter(), Is.True);
        Assert.That(gate.TryEnter(), Is.False);
        var order = new List<int>();
        using var cts = new CancellationTokenSource();
        Task first = Enter(1, CancellationToken.None);
        Task cancelled = gate.EnterAsync(cts.Token).AsTask();
        Task third = Enter(3, CancellationToken.None);
        cts.Cancel();
        Assert.That(async () => await cancelled, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(first.IsCompleted || third.IsCompleted, Is.False, "nobody enters while the gate is held");
        gate.Exit();
        await Task.WhenAll(first, third).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.That(order, Is.EqualTo(new[] { 1, 3 }));
        Assert.That(gate.TryEnter(), Is.True, "free again once the last waiter left");
        gate.Exit();

        async Task Enter(int id, CancellationToken token)
        {
            await gate.EnterAsync(token);
            lock (order)
                order.Add(id);
            await Task.Yield();
            gate.Exit();
        }
    }
}
