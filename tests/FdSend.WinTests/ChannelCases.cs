// SPDX-License-Identifier: MIT
// FdChannel on Windows: every frame travels as libfdsend records on a TCP loopback
// connection (docs/windows-protocol.md, "The message channel").
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using FdSend;
using static FdSend.WinTests.Program;

namespace FdSend.WinTests;

internal static class ChannelCases
{
    internal static readonly (string Name, Action Body)[] All =
    [
        ("channel_round_trip_two_processes", RoundTrip),
        ("channel_interop_c_echo", InteropCEcho),
        ("channel_limits_reject_and_go_on", Limits),
        ("channel_malformed_frame_faults", Malformed),
        ("channel_empty_record_faults", EmptyRecord),
        ("channel_refused_record_faults", RefusedRecord),
        ("channel_peer_gone", PeerGone),
        ("channel_cancel_and_dispose", CancelAndDispose),
        ("channel_refuses_non_stream", NonStream),
    ];

    private static T Wait<T>(ValueTask<T> task) => task.AsTask().WaitAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();

    private static void Wait(ValueTask task) => task.AsTask().WaitAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();

    private static T ThrowsAsync<T>(Func<ValueTask> call, string what) where T : Exception =>
        Throws<T>(() => Wait(call()), what);

    /// <summary>The messages of <see cref="RoundTrip"/>: a payload and the contents of the
    /// files whose handles go with it (the 200 KiB payload goes as a header record and then
    /// payload records, FrameWriter's large-payload layout).</summary>
    internal static readonly (byte[] Payload, string[] Files)[] Messages =
    [
        ("one file"u8.ToArray(), [Cases.Contents[0]]),
        ([], [Cases.Contents[1], Cases.Contents[2], Cases.Contents[3]]),
        (Enumerable.Range(0, 200 * 1024).Select(i => (byte)(i * 7)).ToArray(), [Cases.Contents[4]]),
        ("no handles"u8.ToArray(), []),
    ];

    /// <summary>Each message to a peer process that echoes it (payload and handles) on its own
    /// channel; the echoed handles read the files' contents; none is left open afterwards (four
    /// handles in the three messages after the first).</summary>
    private static void RoundTrip()
    {
        (Child c, Socket s) = StartPeer("channel-echo");
        EchoRoundTrip(c, s);
    }

    /// <summary>The same messages through libfdsend's C channel on Windows: "test_win.exe child
    /// channel-echo" receives each with <c>fdsend_channel_recv</c> and sends it back with
    /// <c>fdsend_channel_send</c>, so every frame goes .NET to C and C to .NET (the 200 KiB
    /// payload as a header record and payload records both ways).</summary>
    private static void InteropCEcho()
    {
        string exe = CPeer ?? throw new SkipException("no --c-peer <test_win.exe> given");
        using Socket l = Listen();
        Child c = Child.Start(exe, "child", "channel-echo", ((IPEndPoint)l.LocalEndPoint!).Port.ToString());
        Socket s;
        try
        {
            Check(l.Poll(60_000_000, SelectMode.SelectRead), "the C peer connected: " + c.Output);
            s = l.Accept();
        }
        catch
        {
            c.Dispose();
            throw;
        }
        EchoRoundTrip(c, s);
    }

    /// <summary>Each of <see cref="Messages"/> to the echo peer c connected on s; the channel
    /// owns s.</summary>
    private static void EchoRoundTrip(Child c, Socket s)
    {
        using (c)
        {
            HashSet<nint>? before = null;
            var channel = new FdChannel(s);
            try
            {
                foreach ((byte[] payload, string[] files) in Messages)
                {
                    // Counted from after the first message: the runtime opens files of its own
                    // (assemblies) on first use.
                    if (payload != Messages[0].Payload)
                        before ??= OpenIoHandles();
                    FileStream[] streams = files.Select(TempFile).ToArray();
                    try
                    {
                        Descriptor[] fds = streams.Select(f => (Descriptor)f.SafeFileHandle).ToArray();
                        Wait(channel.SendAsync(payload, fds));
                    }
                    finally
                    {
                        foreach (FileStream f in streams)
                            f.Dispose();
                    }
                    using FdMessage echo = Wait(channel.ReceiveAsync());
                    Check(echo.Payload.Span.SequenceEqual(payload), $"the {payload.Length}-byte payload came back intact");
                    Equal(files.Length, echo.FdCount, "handles echoed");
                    for (int i = 0; i < files.Length; i++)
                    {
                        using FileStream f = echo.Fds.TakeFileStream(i, FileAccess.Read);
                        Equal(files[i], ReadAll(f), $"file {i} read through the echoed handle");
                    }
                }
            }
            finally
            {
                Wait(channel.DisposeAsync());
            }
            c.ExpectSuccess(); // its ReadAllAsync ended at our close, at a message boundary
            List<nint> left = NewSince(before!);
            Check(left.Count <= 1, "no handle of the exchange left open: " +
                  string.Join(", ", left.Select(v => $"0x{v:x} (type {GetFileType(v)}, socket type {SoType(v)})")));
        }
    }

    /// <summary>Limits on both sides: the sender refuses (nothing sent), the receiver reads an
    /// over-limit frame whole, closes its handles, throws FdMessageRejectedException and stays
    /// usable.</summary>
    private static void Limits() =>
        WithChannels(new FdChannelOptions { MaxMessageSize = 16, MaxFdsPerMessage = 1 }, (sender, receiver) =>
        {
            Socket a = sender.Socket;
            using FileStream f1 = TempFile("first"), f2 = TempFile("second"), f3 = TempFile("third");
            var strict = new FdChannel(a, new FdChannelOptions { MaxMessageSize = 16, MaxFdsPerMessage = 1, LeaveOpen = true });
            Throws<ArgumentException>(() => strict.SendAsync(new byte[17]), "payload over the sender's limit");
            Throws<ArgumentException>(() => strict.SendAsync("x"u8.ToArray(), new Descriptor[] { f1.SafeFileHandle, f2.SafeFileHandle }),
                                      "handles over the sender's limit");
            strict.Dispose();
            Check(a.Connected, "LeaveOpen kept the socket");

            HashSet<nint> before = OpenIoHandles();
            Wait(sender.SendAsync(new byte[17], new Descriptor[] { f1.SafeFileHandle }));
            var big = ThrowsAsync<FdMessageRejectedException>(async () => (await receiver.ReceiveAsync()).Dispose(), "payload over the receiver's limit");
            Equal(FdMessageRejectReason.PayloadTooLarge, big.Reason, "reason");
            Wait(sender.SendAsync("two"u8.ToArray(), new Descriptor[] { f2.SafeFileHandle, f3.SafeFileHandle }));
            var many = ThrowsAsync<FdMessageRejectedException>(async () => (await receiver.ReceiveAsync()).Dispose(), "handles over the receiver's limit");
            Equal(FdMessageRejectReason.TooManyFds, many.Reason, "reason");
            Check(NewSince(before).Count <= 1, "the rejected frames' handles were closed");

            Wait(sender.SendAsync("ok"u8.ToArray(), new Descriptor[] { f3.SafeFileHandle }));
            using FdMessage m = Wait(receiver.ReceiveAsync());
            Equal("ok", Encoding.ASCII.GetString(m.Payload.Span), "the next message after two rejected ones");
            using FileStream got = m.Fds.TakeFileStream(0, FileAccess.Read);
            Equal("third", ReadAll(got), "its handle");
            Check(receiver.Fault is null, "rejections do not fault the channel");
        });

    /// <summary>A record that is not a frame (version byte 9) with a handle: the receive throws
    /// FdChannelProtocolException, the handle is closed, and the channel stays faulted.</summary>
    private static void Malformed() =>
        WithRawSender((a, _, receiver) =>
        {
            using FileStream f = TempFile("with a broken frame");
            HashSet<nint> before = OpenIoHandles();
            Equal(12, a.SendFds(new byte[] { 9, 0, 1, 0, 4, 0, 0, 0, 1, 2, 3, 4 }, f), "raw record sent");
            ThrowsAsync<FdChannelProtocolException>(async () => (await receiver.ReceiveAsync()).Dispose(), "a broken frame");
            Check(NewSince(before).Count <= 1, "the broken frame's handle was closed");
            Check(receiver.Fault is FdChannelProtocolException, "the channel is faulted");
            ThrowsAsync<FdChannelProtocolException>(async () => (await receiver.ReceiveAsync()).Dispose(), "every later receive");
            ThrowsAsync<FdChannelProtocolException>(() => receiver.SendAsync("x"u8.ToArray()), "and send");
        });

    /// <summary>A hand-made empty libfdsend record (no handle, no data: docs/windows-protocol.md
    /// says n + d &gt; 0, and no FdSend sender writes one), written raw with the connection left
    /// open: where a frame begins, and inside a frame (after a header record with a handle that
    /// announces 4 payload bytes). Each is a protocol error, never the end of the stream (C's
    /// fdsend_msg_recv says FDSEND_EPROTO: test_win.exe's channel_empty_record): the receive
    /// throws FdChannelProtocolException, the channel is faulted, no handle is left open.</summary>
    private static void EmptyRecord()
    {
        byte[] empty = new byte[32];
        "FDSH"u8.CopyTo(empty);
        empty[4] = 1;
        foreach (bool insideFrame in new[] { false, true })
            WithRawSender((a, _, receiver) =>
            {
                using FileStream f = TempFile("before an empty record");
                HashSet<nint> before = OpenIoHandles();
                if (insideFrame)
                    Equal(8, a.SendFds(new byte[] { 1, 0, 1, 0, 4, 0, 0, 0 }, f), "header record sent");
                Equal(32, a.Send(empty), "empty record sent");
                string where = insideFrame ? "inside a frame" : "where a frame begins";
                ThrowsAsync<FdChannelProtocolException>(async () => (await receiver.ReceiveAsync()).Dispose(), "an empty record " + where);
                Check(receiver.Fault is FdChannelProtocolException, "the channel is faulted");
                Check(NewSince(before).Count <= 1, "the frame's handle was closed");
                ThrowsAsync<FdChannelProtocolException>(async () => (await receiver.ReceiveAsync()).Dispose(), "every later receive");
            });
    }

    /// <summary>A hand-made record at a frame's start whose sender check fails
    /// (docs/windows-protocol.md, "Trust model"): it names a process that does not exist
    /// (FDSEND_ESRCH), this process with another creation time (a reused pid: FDSEND_ESRCH), or
    /// this process with a SOCKET value that is not the peer's (FDSEND_EPROTO). Its data is an
    /// honest frame ("evil", no handle) that a channel reading past the refusal would hand out.
    /// The receive throws FdChannelProtocolException (the refusal's exception inside), the
    /// channel is faulted, no handle is left open, and every later receive and send throws,
    /// even after a good message (test_win.exe's channel_refused_record says the same of the C
    /// channel).</summary>
    private static void RefusedRecord()
    {
        foreach (string lie in new[] { "no such process", "another creation time", "not the peer's socket" })
            WithRawSender((a, b, receiver) =>
            {
                // This process's own record header (pid, creation time, SOCKET value), as
                // a plain send without handles writes it.
                Equal(1, a.SendFds("x"u8), "a record without handles sent");
                var own = new byte[33];
                for (int got = 0; got < own.Length;)
                    got += b.Receive(own, got, own.Length - got, SocketFlags.None);
                byte[] record = RefusedRecordBytes(own, lie, b.Handle);
                HashSet<nint> before = OpenIoHandles();
                Equal(record.Length, a.Send(record), "the forged record sent");
                var e = ThrowsAsync<FdChannelProtocolException>(async () => (await receiver.ReceiveAsync()).Dispose(),
                                                                "a record whose sender check fails: " + lie);
                Console.WriteLine($"     {lie}: {e.Message}");
                Check(e.InnerException is not null, "the refusal is the inner exception");
                Check(receiver.Fault is FdChannelProtocolException, "the channel is faulted");
                Check(NewSince(before).Count <= 1, "no handle arrived or was left open");
                using (var sender = new FdChannel(a, new FdChannelOptions { LeaveOpen = true }))
                    Wait(sender.SendAsync("fine"u8.ToArray()));
                ThrowsAsync<FdChannelProtocolException>(async () => (await receiver.ReceiveAsync()).Dispose(),
                                                        "the next receive (the refused record's data is never a message)");
                ThrowsAsync<FdChannelProtocolException>(() => receiver.SendAsync("x"u8.ToArray()), "and a send");
            });
    }

    /// <summary>A version 1 record with one entry (a value that is no handle) from the header
    /// <paramref name="own"/> of a record this process sent, with the lie told: the pid, the
    /// creation time or the SOCKET value changed. Its data is the frame "evil".</summary>
    private static byte[] RefusedRecordBytes(byte[] own, string lie, nint notThePeers)
    {
        byte[] frame = [1, 0, 0, 0, 4, 0, 0, 0, .. "evil"u8];
        var r = new byte[40 + frame.Length];
        own.AsSpan(0, 32).CopyTo(r);
        BinaryPrimitives.WriteUInt16LittleEndian(r.AsSpan(6), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(8), (uint)frame.Length);
        if (lie == "no such process")
            BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(12), 0xFFFFFFF0);
        else if (lie == "another creation time")
            BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(16), BinaryPrimitives.ReadUInt64LittleEndian(r.AsSpan(16)) + 1);
        else
            BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(24), (ulong)notThePeers);
        BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(32), 0x7ffffc);
        frame.CopyTo(r, 40);
        return r;
    }

    /// <summary>The peer closes at a message boundary (EndOfStreamException; ReadAllAsync
    /// ends), and inside a frame (a header announcing 100 bytes, 4 sent: the channel faults,
    /// the frame's handle closed).</summary>
    private static void PeerGone()
    {
        WithChannels(null, (sender, receiver) =>
        {
            Wait(sender.SendAsync("last"u8.ToArray()));
            sender.Dispose();
            using (FdMessage m = Wait(receiver.ReceiveAsync()))
                Equal("last", Encoding.ASCII.GetString(m.Payload.Span), "the message sent before the close");
            ThrowsAsync<EndOfStreamException>(async () => (await receiver.ReceiveAsync()).Dispose(), "then the end");
            int more = 0;
            Wait(new ValueTask(Task.Run(async () => { await foreach (FdMessage m in receiver.ReadAllAsync()) { m.Dispose(); more++; } })));
            Equal(0, more, "ReadAllAsync ends at the end");
        });

        (Socket c, Socket d) = Pair();
        var cut = new FdChannel(d);
        try
        {
            using FileStream f = TempFile("inside a cut frame");
            HashSet<nint> before = OpenIoHandles();
            Equal(12, c.SendFds(new byte[] { 1, 0, 1, 0, 100, 0, 0, 0, 1, 2, 3, 4 }, f), "header and 4 of 100 bytes");
            c.Shutdown(SocketShutdown.Send); // the socket stays open: the receiver's sender check needs it
            var e = ThrowsAsync<IOException>(async () => (await cut.ReceiveAsync()).Dispose(), "the connection ended inside a frame");
            Console.WriteLine($"     ended inside a frame: {e.GetType().Name}: {e.Message}");
            Check(NewSince(before).Count <= 1, "the cut frame's handle was closed");
            Check(cut.Fault is not null, "the channel is faulted");
        }
        finally
        {
            cut.Dispose();
            c.Dispose();
        }

        // The peer sends a message with a handle and closes its socket at once: the receiver
        // cannot check the record's sender any more (windows-protocol.md), refuses the record
        // and cannot read past it: FdChannelProtocolException, the channel faulted.
        (Socket e2, Socket f2) = Pair();
        var refusing = new FdChannel(f2);
        try
        {
            using FileStream f = TempFile("sent just before the close");
            using (var gone = new FdChannel(e2))
                Wait(gone.SendAsync("bye"u8.ToArray(), new Descriptor[] { f.SafeFileHandle }));
            HashSet<nint> before = OpenIoHandles();
            var e = ThrowsAsync<FdChannelProtocolException>(async () => (await refusing.ReceiveAsync()).Dispose(), "a record whose sender closed its socket");
            Console.WriteLine($"     sender closed at once: {e.Message}");
            Check(refusing.Fault is FdChannelProtocolException, "the channel is faulted");
            Check(NewSince(before).Count <= 1, "no handle arrived");
        }
        finally
        {
            refusing.Dispose();
        }
    }

    /// <summary>A receive cancelled while waiting loses nothing (the next one gets the message
    /// sent afterwards, with its handle); a receive pending at Dispose throws
    /// ObjectDisposedException, and the peer then sees the end.</summary>
    private static void CancelAndDispose() =>
        WithChannels(null, (sender, receiver) =>
        {
            using (var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200)))
                ThrowsAsync<OperationCanceledException>(async () => (await receiver.ReceiveAsync(cts.Token)).Dispose(), "cancelled while waiting");
            using (FileStream f = TempFile("after a cancelled receive"))
                Wait(sender.SendAsync("after"u8.ToArray(), new Descriptor[] { f.SafeFileHandle }));
            using (FdMessage m = Wait(receiver.ReceiveAsync()))
            {
                Equal("after", Encoding.ASCII.GetString(m.Payload.Span), "payload");
                using FileStream got = m.Fds.TakeFileStream(0, FileAccess.Read);
                Equal("after a cancelled receive", ReadAll(got), "its handle");
            }
            ValueTask<FdMessage> pending = receiver.ReceiveAsync();
            Check(!pending.IsCompleted, "the receive waits");
            Wait(receiver.DisposeAsync());
            ThrowsAsync<ObjectDisposedException>(async () => (await pending).Dispose(), "the pending receive at Dispose");
            ThrowsAsync<ObjectDisposedException>(async () => (await receiver.ReceiveAsync()).Dispose(), "a receive after Dispose");
            ThrowsAsync<EndOfStreamException>(async () => (await sender.ReceiveAsync()).Dispose(), "the peer sees the end");
        });

    /// <summary>Runs <paramref name="body"/> with two channels over a TCP loopback pair in this
    /// process (handles pass through the record protocol to the same process), then disposes
    /// both.</summary>
    private static void WithChannels(FdChannelOptions? receiverOptions, Action<FdChannel, FdChannel> body)
    {
        (Socket a, Socket b) = Pair();
        var sender = new FdChannel(a);
        var receiver = new FdChannel(b, receiverOptions);
        try
        {
            body(sender, receiver);
        }
        finally
        {
            sender.Dispose();
            receiver.Dispose();
        }
    }

    /// <summary>Runs <paramref name="body"/> with a raw socket (a hostile or hand-made
    /// sender's) and the channel over the other end of its pair, then disposes both; the
    /// receiving socket is passed too, for a body that reads it under the channel.</summary>
    private static void WithRawSender(Action<Socket, Socket, FdChannel> body)
    {
        (Socket a, Socket b) = Pair();
        using (a)
        {
            var receiver = new FdChannel(b);
            try
            {
                body(a, b, receiver);
            }
            finally
            {
                receiver.Dispose();
            }
        }
    }

    private static void NonStream()
    {
        using var udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        var e = Throws<ArgumentException>(() => new FdChannel(udp), "FdChannel over UDP");
        Check(e.Message.Contains("Stream"), "the message says a stream socket is needed: " + e.Message);
    }

    /// <summary>The peer of <see cref="RoundTrip"/>: echoes every message, payload and handles,
    /// until the other side closes.</summary>
    internal static async Task<int> Echo(Socket s)
    {
        await using var channel = new FdChannel(s);
        int count = 0;
        await foreach (FdMessage m in channel.ReadAllAsync())
        {
            using (m)
            {
                Descriptor[] fds = Enumerable.Range(0, m.FdCount).Select(i => Descriptor.FromRawFd(m.Fds.PeekFd(i))).ToArray();
                await channel.SendAsync(m.Payload, fds);
            }
            count++;
        }
        Equal(Messages.Length, count, "messages echoed");
        return 0;
    }
}
