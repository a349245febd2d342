// SPDX-License-Identifier: MIT
// The cases: this process receives (or sends) with the managed API, the peer process
// (Peer.cs, or libfdsend's C test program) does the other half over TCP loopback.
using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Pipes;
using System.Net;
using System.Net.Sockets;
using System.Text;
using static FdSend.WinTests.Program;

namespace FdSend.WinTests;

internal static class Cases
{
    internal static readonly string[] Contents =
        ["alpha file\n", "bravo file, longer\n", "charlie\n", "delta: 4th\n", "echo, the fifth file\n"];

    internal static readonly (string Name, Action Body)[] All =
    [
        ("file", File),
        ("pipe", Pipe),
        ("many_handles_one_message", Many),
        ("receive_exactly_merges_records", Exactly),
        ("truncation", Truncation),
        ("listener_handed_over_accepts", () => Listener(asyncFirst: false)),
        ("listener_used_async_by_sender", () => Listener(asyncFirst: true)),
        ("ownership_dispose_closes", Ownership),
        ("async_send_receive", AsyncSendReceive),
        ("async_send_waits_for_room", AsyncWaitsForRoom),
        ("async_send_wait_cancelled", AsyncWaitCancelled),
        ("bad_handle", BadHandle),
        ("peer_gone_before_receive", PeerGone),
        ("peer_closed", PeerClosed),
        ("receive_timeout_and_nonblocking", ReceiveTimeout),
        ("send_timeout", SendTimeout),
        ("large_send_is_records_only", LargeSend),
        ("interop_c_sender", InteropC),
        .. ChannelCases.All,
    ];

    private static void File()
    {
        (Child c, Socket s) = StartPeer("file");
        using (c)
        using (s)
        {
            var buf = new byte[16];
            using ReceivedFds r = s.ReceiveFds(buf);
            Equal(4, r.BytesReceived, "data bytes");
            Equal("file", Encoding.ASCII.GetString(buf, 0, 4), "data");
            Equal(1, r.Count, "handles");
            Equal(FdKind.File, r.Describe(0).Kind, "kind");
            using (FileStream f = r.TakeFileStream(0, FileAccess.Read))
                Equal("file contents through a handle\n", ReadAll(f), "contents through the received handle");
            SendByte(s, (byte)'Y');
            c.ExpectSuccess();
        }
    }

    private static void Pipe()
    {
        (Child c, Socket s) = StartPeer("pipe");
        using (c)
        using (s)
        {
            var buf = new byte[16];
            using ReceivedFds r = s.ReceiveFds(buf);
            Equal(4, r.BytesReceived, "data bytes");
            Equal(1, r.Count, "handles");
            Equal(FdKind.Pipe, r.Describe(0).Kind, "kind");
            using (AnonymousPipeClientStream p = r.TakePipe(0, PipeDirection.In))
            using (var reader = new StreamReader(p))
                Equal("through the pipe", reader.ReadLine(), "line through the received pipe");
            SendByte(s, (byte)'Y');
            c.ExpectSuccess();
        }
    }

    private static void Many()
    {
        (Child c, Socket s) = StartPeer("many");
        using (c)
        using (s)
        {
            var buf = new byte[16];
            using ReceivedFds r = s.ReceiveFds(buf);
            Equal(4, r.BytesReceived, "data bytes");
            Equal(5, r.Count, "handles in one message");
            Check(!r.FdsTruncated, "not truncated");
            FdKind[] kinds = Enumerable.Range(0, 5).Select(i => r.Describe(i).Kind).ToArray();
            Equal("File,File,File,Pipe,File", string.Join(",", kinds), "kinds in order");
            foreach (int i in new[] { 0, 1, 2, 4 })
            {
                using FileStream f = r.TakeFileStream(i, FileAccess.Read);
                Equal(Contents[i == 4 ? 3 : i], ReadAll(f), $"file {i} (order kept)");
            }
            using (AnonymousPipeClientStream p = r.TakePipe(3, PipeDirection.In))
            using (var reader = new StreamReader(p))
                Equal("piped", reader.ReadLine(), "the pipe");
            SendByte(s, (byte)'Y');
            c.ExpectSuccess();
        }
    }

    /// <summary>ReceiveFdsExactly / ReceiveFdsExactlyAsync over records (libfdsend's
    /// fdsend_recv_exact_step): a count, then two batches, merged into one result in arrival
    /// order; handles beyond maxFds closed and flagged.</summary>
    private static void Exactly()
    {
        (Child c, Socket s) = StartPeer("exact");
        using (c)
        using (s)
        {
            var buf = new byte[6];
            using (ReceivedFds r = s.ReceiveFdsExactly(buf, maxFds: 2))
            {
                Equal(6, r.BytesReceived, "data bytes");
                Equal(3, BinaryPrimitives.ReadInt32LittleEndian(buf), "the count");
                Equal("ab", Encoding.ASCII.GetString(buf, 4, 2), "the batches' bytes");
                Equal(2, r.Count, "handles kept (maxFds)");
                Check(r.FdsTruncated, "the third handle closed and flagged");
                using FileStream f = r.TakeFileStream(1, FileAccess.Read);
                Equal(Contents[1], ReadAll(f), "the second handle, in arrival order");
            }
            Array.Clear(buf);
            using (ReceivedFds r = s.ReceiveFdsExactlyAsync(buf).AsTask().GetAwaiter().GetResult())
            {
                Equal(6, r.BytesReceived, "data bytes (async)");
                Equal(3, r.Count, "every handle (async)");
                Check(!r.FdsTruncated, "not truncated (async)");
                using FileStream f = r.TakeFileStream(2, FileAccess.Read);
                Equal(Contents[0], ReadAll(f), "the second batch's handle comes last");
            }
            SendByte(s, (byte)'Y');
            c.ExpectSuccess();
        }
    }

    /// <summary>A receive takes one whole record: a buffer smaller than the record's data is
    /// MessageSize with nothing consumed and no handle taken (the sender's copies stay there);
    /// a receive with room then gets the record whole, two of its five handles (maxFds) and
    /// the truncation flag, the other three closed in the sender.</summary>
    private static void Truncation()
    {
        (Child c, Socket s) = StartPeer("truncate");
        using (c)
        using (s)
        {
            HashSet<nint> before = OpenIoHandles();
            var small = new byte[4];
            var e = Throws<SocketException>(() => s.ReceiveFds(small, maxFds: 2), "a buffer smaller than the record's data");
            Equal(SocketError.MessageSize, e.SocketErrorCode, "MessageSize");
            Check(e.Message.Contains("nothing was received"), "the message says nothing was lost: " + e.Message);
            Check(NewSince(before).Count <= 1, "no handle arrived with the refused receive");
            var buf = new byte[16];
            nint[] values;
            using (ReceivedFds r = s.ReceiveFds(buf, maxFds: 2))
            {
                Equal(10, r.BytesReceived, "the record's data, whole");
                Equal("0123456789", Encoding.ASCII.GetString(buf, 0, 10), "the data");
                Equal(2, r.Count, "two handles taken");
                Check(r.FdsTruncated, "FdsTruncated");
                Check(!r.DataTruncated, "a stream never truncates data");
                values = [r.PeekFd(0), r.PeekFd(1)];
                foreach (nint v in values)
                    Check(IsOpen(v) && !before.Contains(v), $"handle {v} arrived in this process");
                using FileStream f = r.TakeFileStream(1, FileAccess.Read);
                Equal(Contents[1], ReadAll(f), "the second file");
            }
            foreach (nint v in values)
                Check(!IsOpen(v), $"handle {v} closed (taken and disposed, or closed by Dispose)");
            Check(NewSince(before).Count <= 1, "no other handle arrived (three were dropped in the sender)");
            SendByte(s, (byte)'Y');
            c.ExpectSuccess();
        }
    }

    private static void Listener(bool asyncFirst)
    {
        (Child c, Socket s) = StartPeer(asyncFirst ? "listener-async" : "listener");
        using (c)
        using (s)
        {
            Socket l = Listen();
            int port = ((IPEndPoint)l.LocalEndPoint!).Port;
            if (asyncFirst)
            {
                using var cts = new CancellationTokenSource();
                ValueTask<Socket> pending = l.AcceptAsync(cts.Token);
                cts.Cancel();
                try
                {
                    pending.AsTask().GetAwaiter().GetResult();
                }
                catch (OperationCanceledException)
                {
                }
            }
            var data = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(data, port);
            Equal(4, s.SendFds(data, l), "data bytes sent");
            l.Dispose(); // the peer's copy keeps the listener open
            char ready = (char)ReceiveByte(s);
            if (ready == 'N')
            {
                // Reported, not hidden: see docs/platforms.md (win-x64) and issue 15.
                c.WaitExit();
                throw new SkipException(
                    "the peer got a SOCKET that is not a socket to its Winsock (getsockopt: WSAENOTSOCK): " +
                    "it went the handle way (the receiver's pid was not known to the sender)");
            }
            Equal('R', ready, "the peer is ready to accept");
            for (int i = 0; i < 2; i++)
            {
                try
                {
                    using Socket conn = Connect(port);
                    conn.Send(Encoding.ASCII.GetBytes($"hello {i}\n"));
                    var echo = new byte[16];
                    int n = conn.Receive(echo);
                    Equal($"echo {i}\n", Encoding.ASCII.GetString(echo, 0, n), "echo through the accepted connection");
                }
                catch (Exception e)
                {
                    int code = c.WaitExit();
                    if (asyncFirst && i == 1 && c.Output.Contains("bound to an IO completion port", StringComparison.Ordinal))
                    {
                        // Reported, not hidden (docs/windows-protocol.md, issue 15): the peer's
                        // socket is the same kernel object the sender's .NET bound to its own
                        // completion port, and an object is bound to one port only.
                        throw new SkipException(
                            "the peer's AcceptAsync on a listener the sender had used asynchronously: " +
                            "'Asynchronous operations are not allowed on this socket. The underlying OS handle might have " +
                            "been already bound to an IO completion port' (the synchronous Accept through it worked)");
                    }
                    throw new Exception($"connection {i}: {e.Message}; the peer exited with {code}: {c.Output}", e);
                }
            }
            SendByte(s, (byte)'Y');
            c.ExpectSuccess();
        }
    }

    /// <summary>Handles are closed on Dispose (the ones not taken) and by their new owner
    /// (the ones taken): this process's handle count and each handle value say so.</summary>
    private static void Ownership()
    {
        (Child c, Socket s) = StartPeer("many");
        using (c)
        using (s)
        {
            HashSet<nint> before = OpenIoHandles();
            var buf = new byte[16];
            ReceivedFds r = s.ReceiveFds(buf);
            Equal(5, r.Count, "handles");
            nint[] values = Enumerable.Range(0, 5).Select(i => (nint)r.PeekFd(i)).ToArray();
            foreach (nint v in values)
                Check(IsOpen(v) && !before.Contains(v), $"received handle {v} is new and open");
            SafeFileHandleHolder taken = new(r.TakeFileHandle(0));
            Check(r.IsTaken(0), "IsTaken(0)");
            r.Dispose();
            r.Dispose(); // idempotent
            Check(IsOpen(values[0]), "the taken handle is its new owner's (still open)");
            for (int i = 1; i < 5; i++)
                Check(!IsOpen(values[i]), $"untaken handle {i} closed by Dispose");
            taken.Dispose();
            Check(!IsOpen(values[0]), "the taken handle closed by its SafeFileHandle");
            Check(NewSince(before).Intersect(values).Count() == 0, "none of the five is open any more");
            Throws<ObjectDisposedException>(() => r.TakeRawFd(1), "Take after Dispose");
            SendByte(s, (byte)'Y');
            c.ExpectSuccess();
        }
    }

    private sealed class SafeFileHandleHolder(Microsoft.Win32.SafeHandles.SafeFileHandle h) : IDisposable
    {
        public void Dispose() => h.Dispose();
    }

    private static void AsyncSendReceive()
    {
        (Child c, Socket s) = StartPeer("async-send");
        using (c)
        using (s)
        {
            var buf = new byte[16];
            using ReceivedFds r = s.ReceiveFdsAsync(buf).AsTask().WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
            Equal(5, r.BytesReceived, "data bytes");
            Equal(2, r.Count, "handles");
            using (FileStream f = r.TakeFileStream(0, FileAccess.Read))
                Equal("async file\n", ReadAll(f), "file");
            using (AnonymousPipeClientStream p = r.TakePipe(1, PipeDirection.In))
            using (var reader = new StreamReader(p))
                Equal("async pipe", reader.ReadLine(), "pipe");
            Equal(1, s.SendFdsAsync(new byte[] { (byte)'Y' }, Array.Empty<Descriptor>()).AsTask().GetAwaiter().GetResult(), "verdict");
            c.ExpectSuccess();
        }
    }

    /// <summary>Sends 64 KiB records without waiting until the connection is full (the peer
    /// reads nothing meanwhile); returns the data bytes sent. The socket is blocking again
    /// afterwards.</summary>
    private static long FillConnection(Socket s)
    {
        s.SendBufferSize = 64 * 1024;
        var chunk = new byte[64 * 1024];
        long filled = 0;
        s.Blocking = false;
        var sw = Stopwatch.StartNew();
        while (sw.ElapsedMilliseconds < 10_000)
        {
            try
            {
                filled += s.SendFds(chunk);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                break;
            }
        }
        Check(sw.ElapsedMilliseconds < 10_000, $"the connection never filled up ({filled} bytes sent)");
        s.Blocking = true;
        return filled;
    }

    /// <summary>Fills the connection (the peer reads nothing for 1.5 s), then SendFdsAsync
    /// must wait for room (the Windows writability wait) and complete once the peer drains.</summary>
    private static void AsyncWaitsForRoom()
    {
        string go = Path.Combine(Path.GetTempPath(), $"fdsend-win-go-{Environment.ProcessId}-{Guid.NewGuid():N}");
        (Child c, Socket s) = StartPeer("async-drain", go);
        using (c)
        using (s)
        {
            long filled = FillConnection(s);
            using FileStream f = TempFile("sent after waiting for room\n");
            var sw = Stopwatch.StartNew();
            ValueTask<int> send = s.SendFdsAsync("last"u8.ToArray(), f);
            Check(!send.IsCompleted, "the async send waits while the connection is full");
            System.IO.File.WriteAllText(go, "go");
            Equal(4, send.AsTask().WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult(), "last record sent");
            long waited = sw.ElapsedMilliseconds;
            var answer = new byte[8];
            using (ReceivedFds r = s.ReceiveFds(answer))
                Equal(8, r.BytesReceived, "the peer's count");
            Equal(filled + 4, BinaryPrimitives.ReadInt64LittleEndian(answer), "every byte arrived, in records");
            // (How long it waited depends on the loopback's buffer tuning: wine's grows its send
            // buffer, so the wait can end before the peer drains. It did not complete at once.)
            Console.WriteLine($"     filled {filled} bytes; the async send waited {waited} ms for room");
            c.ExpectSuccess();
            System.IO.File.Delete(go);
        }
    }

    /// <summary>SendFdsAsync waiting for room (the writability wait on libfdsend's readiness
    /// engine) is cancelled: OperationCanceledException, and nothing of that record is on the
    /// stream: the receiver drains exactly what was sent before, then the next record (with
    /// a handle) arrives whole.</summary>
    private static void AsyncWaitCancelled()
    {
        (Socket a, Socket b) = Pair();
        using (a)
        using (b)
        {
            long filled = FillConnection(a);
            using FileStream f = TempFile("sent after the cancelled one\n");
            using var cts = new CancellationTokenSource();
            ValueTask<int> send = a.SendFdsAsync("late"u8.ToArray(), f, cts.Token);
            Check(!send.IsCompleted, "the async send waits while the connection is full");
            cts.Cancel();
            Throws<OperationCanceledException>(
                () => send.AsTask().WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult(),
                "the cancelled wait for room");
            var buf = new byte[64 * 1024];
            long drained = 0;
            while (drained < filled)
            {
                using ReceivedFds r = b.ReceiveFds(buf);
                Equal(0, r.Count, "handles in the filler records");
                Check(r.BytesReceived > 0, "a filler record");
                drained += r.BytesReceived;
            }
            Equal(filled, drained, "the bytes sent before the cancelled send");
            Equal(4, a.SendFds("next"u8, f), "the next record sent");
            using ReceivedFds last = b.ReceiveFds(buf);
            Equal(4, last.BytesReceived, "the next record's data");
            Equal("next", Encoding.ASCII.GetString(buf, 0, 4), "the next record's bytes (no 'late')");
            Equal(1, last.Count, "the next record's handle");
            using (FileStream g = last.TakeFileStream(0, FileAccess.Read))
                Equal("sent after the cancelled one\n", ReadAll(g), "contents through the handle");
        }
    }

    private static void BadHandle()
    {
        (Socket a, Socket b) = Pair();
        using (a)
        using (b)
        {
            HashSet<nint> before = OpenIoHandles();
            Throws<ArgumentException>(() => a.SendFds("x"u8, Descriptor.FromRawFd(0x7ffffc)), "a value that is no handle");
            FileStream f = TempFile("closed");
            Microsoft.Win32.SafeHandles.SafeFileHandle h = f.SafeFileHandle;
            f.Dispose();
            Throws<ObjectDisposedException>(() => a.SendFds("x"u8, h), "a disposed SafeHandle");
            Check(NewSince(before).Count <= 1, "nothing left behind by the refused sends");
            b.Blocking = false;
            var e = Throws<SocketException>(() => b.ReceiveFds(new byte[4]), "nothing was sent");
            Equal(SocketError.WouldBlock, e.SocketErrorCode, "nothing arrived from the refused sends");
        }
    }

    /// <summary>The sender exits before the receiver reads: no handle is handed out
    /// (they died with the sender) and the record is consumed whole (a receive reads whole
    /// records and cannot leave its data half-read; the C API's fdsend_recv_part keeps it),
    /// then the end of stream.</summary>
    private static void PeerGone()
    {
        (Child c, Socket s) = StartPeer("die");
        using (c)
        using (s)
        {
            Equal(0, c.WaitExit(), "the sender exited");
            HashSet<nint> before = OpenIoHandles();
            var buf = new byte[32];
            var e = Throws<SocketException>(() => s.ReceiveFds(buf), "receive from a sender that is gone");
            Console.WriteLine($"     sender gone: {e.SocketErrorCode}: {e.Message}");
            Check(e.Message.Contains("ESRCH") && e.Message.Contains("discarded"), "the message says the record was dropped: " + e.Message);
            Check(NewSince(before).Count <= 1, "no handle arrived");
            using (ReceivedFds r = s.ReceiveFds(buf))
                Check(r.IsEndOfStream && r.BytesReceived == 0, "then the end of stream (the record was consumed whole)");
        }
    }

    private static void PeerClosed()
    {
        (Child c, Socket s) = StartPeer("vanish");
        using (c)
        using (s)
        {
            Equal(0, c.WaitExit(), "the peer exited");
            using (ReceivedFds r = s.ReceiveFds(new byte[8]))
                Check(r.IsEndOfStream && r.BytesReceived == 0 && r.Count == 0, "end of stream");
            using FileStream f = TempFile("to nobody");
            var e = Throws<SocketException>(() =>
            {
                for (int i = 0; i < 100; i++)
                {
                    s.SendFds(new byte[1024], f);
                    Thread.Sleep(10);
                }
            }, "sending to a peer that is gone");
            Console.WriteLine($"     send to a closed peer: {e.SocketErrorCode}");
        }
    }

    private static void ReceiveTimeout()
    {
        (Socket a, Socket b) = Pair();
        using (a)
        using (b)
        {
            b.ReceiveTimeout = 300;
            var sw = Stopwatch.StartNew();
            var e = Throws<SocketException>(() => b.ReceiveFds(new byte[4]), "a receive with nothing sent");
            long ms = sw.ElapsedMilliseconds;
            Equal(SocketError.TimedOut, e.SocketErrorCode, "ReceiveTimeout gives TimedOut");
            Check(ms >= 250 && ms < 5000, $"within the timeout ({ms} ms)");
            // The socket is still usable after a timeout.
            Equal(3, a.SendFds("abc"u8), "send");
            using (ReceivedFds r = b.ReceiveFds(new byte[4]))
                Equal(3, r.BytesReceived, "received after the timeout");
            b.Blocking = false;
            sw.Restart();
            e = Throws<SocketException>(() => b.ReceiveFds(new byte[4]), "non-blocking receive, nothing queued");
            Equal(SocketError.WouldBlock, e.SocketErrorCode, "WouldBlock");
            Check(sw.ElapsedMilliseconds < 250, "at once");
            // Span overload and raw handles.
            b.Blocking = true;
            using FileStream f = TempFile("raw");
            Equal(3, a.SendFds("raw"u8, f), "send");
            Span<int> fds = stackalloc int[4];
            Equal(3, b.ReceiveFds(new byte[8], fds, out int count, out ReceiveFlags flags), "span receive");
            Equal(1, count, "one raw handle");
            Equal(ReceiveFlags.None, flags, "flags");
            Check(IsOpen(fds[0]), "raw handle open");
            FdPassing.CloseAll(fds[..1]);
            Check(!IsOpen(fds[0]), "CloseAll closed it");
        }
    }

    private static void SendTimeout()
    {
        (Socket a, Socket b) = Pair();
        using (a)
        using (b)
        {
            a.SendBufferSize = 64 * 1024;
            b.ReceiveBufferSize = 64 * 1024;
            a.SendTimeout = 300;
            var chunk = new byte[64 * 1024];
            var sw = Stopwatch.StartNew();
            SocketException? e = null;
            long sent = 0;
            for (int i = 0; i < 10_000 && e is null; i++)
            {
                try
                {
                    sent += a.SendFds(chunk);
                }
                catch (SocketException x)
                {
                    e = x;
                }
            }
            Check(e is not null, $"a send into a full connection timed out ({sent} bytes went)");
            Console.WriteLine($"     full after {sent} bytes: {e!.GetType().Name} {e.SocketErrorCode} after {sw.ElapsedMilliseconds} ms");
            Equal(SocketError.TimedOut, e.SocketErrorCode, "SendTimeout gives TimedOut");
            Check(e is not FdPartialSendException, "nothing of the timed-out record was sent");
        }
    }

    /// <summary>A send larger than a record goes out as several records: the receiver
    /// (libfdsend) reads them all; raw bytes would make it fail with a protocol error.</summary>
    private static void LargeSend()
    {
        (Socket a, Socket b) = Pair();
        using (a)
        using (b)
        {
            var data = new byte[3 * 1024 * 1024];
            new Random(1).NextBytes(data);
            using FileStream f = TempFile("large");
            var send = Task.Run(() => a.SendFds(data, f));
            var got = new byte[data.Length];
            int total = 0, handles = 0;
            while (total < got.Length)
            {
                using ReceivedFds r = b.ReceiveFds(got.AsSpan(total));
                Check(r.BytesReceived > 0, "data");
                total += r.BytesReceived;
                handles += r.Count;
            }
            Equal(data.Length, send.GetAwaiter().GetResult(), "all sent");
            Equal(1, handles, "the handle went once");
            Check(data.AsSpan().SequenceEqual(got), "the bytes are intact");
        }
    }

    /// <summary>libfdsend's C test program as the sender ("test_win.exe child send"): five
    /// files and "from child"; the managed side answers with a one-byte record that the C
    /// side reads with fdsend_recv.</summary>
    private static void InteropC()
    {
        string? exe = CPeer;
        if (exe is null)
            throw new SkipException("no --c-peer <test_win.exe> given");
        using Socket l = Listen();
        using Child c = Child.Start(exe, "child", "send", ((IPEndPoint)l.LocalEndPoint!).Port.ToString());
        Check(l.Poll(60_000_000, SelectMode.SelectRead), "the C peer connected: " + c.Output);
        using Socket s = l.Accept();
        var buf = new byte[16];
        using (ReceivedFds r = s.ReceiveFds(buf))
        {
            Equal("from child", Encoding.ASCII.GetString(buf, 0, r.BytesReceived), "data from C");
            Equal(5, r.Count, "five handles from C");
            for (int i = 0; i < 5; i++)
            {
                using FileStream f = r.TakeFileStream(i, FileAccess.Read);
                Equal(Contents[i], ReadAll(f), $"C's file {i}");
            }
        }
        SendByte(s, (byte)'Y');
        c.ExpectSuccess();
    }
}
