// SPDX-License-Identifier: MIT
// The second process of the cases in Cases.cs: "peer <case> <port> [args]". Exit code 0
// when its half of the case held; the reason on stderr otherwise.
using System.Buffers.Binary;
using System.IO.Pipes;
using System.Net;
using System.Net.Sockets;
using System.Text;
using static FdSend.WinTests.Program;

namespace FdSend.WinTests;

internal static class Peer
{
    internal static int Run(string name, int port, string[] args)
    {
        try
        {
            using Socket s = Connect(port);
            switch (name)
            {
                case "file": return SendFile(s);
                case "pipe": return SendPipe(s);
                case "many": return SendMany(s);
                case "exact": return SendCountThenBatches(s);
                case "truncate": return SendFive(s);
                case "listener": return ReceiveListener(s);
                case "listener-async": return ReceiveListener(s);
                case "die": return Die(s);
                case "vanish": return 0; // connect and leave
                case "async-drain": return AsyncDrain(s, args[0]).GetAwaiter().GetResult();
                case "async-send": return AsyncSend(s).GetAwaiter().GetResult();
                case "channel-echo": return ChannelCases.Echo(s).GetAwaiter().GetResult();
                default:
                    Console.Error.WriteLine("no peer case " + name);
                    return 2;
            }
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"peer {name}: {e}");
            return 1;
        }
    }

    /// <summary>Sends one file with data; after the parent's verdict, checks that its own
    /// handle still works and that the record's copy is gone from this process.</summary>
    private static int SendFile(Socket s)
    {
        using FileStream f = TempFile("file contents through a handle\n");
        HashSet<nint> before = OpenIoHandles();
        Equal(4, s.SendFds("file"u8, f), "data bytes sent");
        Equal('Y', (char)ReceiveByte(s), "verdict");
        Equal("file contents through a handle\n", ReadAll(f), "the sender's own handle still reads");
        CheckNoCopyLeft(before);
        return 0;
    }

    /// <summary>Sends the read end of an anonymous pipe, then writes a line into it.</summary>
    private static int SendPipe(Socket s)
    {
        using var server = new AnonymousPipeServerStream(PipeDirection.Out, HandleInheritability.None);
        Equal(4, s.SendFds("pipe"u8, server.ClientSafePipeHandle), "data bytes sent");
        server.Write(Encoding.ASCII.GetBytes("through the pipe\n"));
        server.Flush();
        Equal('Y', (char)ReceiveByte(s), "verdict");
        return 0;
    }

    /// <summary>Three files, a pipe's read end and a fourth file in one message.</summary>
    private static int SendMany(Socket s)
    {
        using FileStream a = TempFile(Program_Contents(0)), b = TempFile(Program_Contents(1)), c = TempFile(Program_Contents(2));
        using FileStream d = TempFile(Program_Contents(3));
        using var pipe = new AnonymousPipeServerStream(PipeDirection.Out, HandleInheritability.None);
        HashSet<nint> before = OpenIoHandles();
        Equal(4, s.SendFds("many"u8, a, b, c, pipe.ClientSafePipeHandle, d), "data bytes sent");
        pipe.Write("piped\n"u8);
        Equal('Y', (char)ReceiveByte(s), "verdict");
        CheckNoCopyLeft(before);
        return 0;
    }

    /// <summary>Twice what HAProxy's _getsocks sends, in small: a 4-byte count (3), then a
    /// batch of two handles on "a" and one on "b".</summary>
    private static int SendCountThenBatches(Socket s)
    {
        using FileStream a = TempFile(Program_Contents(0)), b = TempFile(Program_Contents(1));
        for (int round = 0; round < 2; round++)
        {
            Equal(4, s.SendFds(BitConverter.GetBytes(3)), "the count");
            Equal(1, s.SendFds("a"u8, a, b), "the first batch");
            Equal(1, s.SendFds("b"u8, a), "the second batch");
        }
        Equal('Y', (char)ReceiveByte(s), "verdict");
        return 0;
    }

    /// <summary>Five files with ten bytes; the receiver takes two handles and four bytes.</summary>
    private static int SendFive(Socket s)
    {
        var files = Enumerable.Range(0, 5).Select(i => TempFile(Program_Contents(i))).ToArray();
        try
        {
            HashSet<nint> before = OpenIoHandles();
            Equal(10, s.SendFds("0123456789"u8, files.Select(f => (Descriptor)f).ToArray()), "data bytes sent");
            Equal('Y', (char)ReceiveByte(s), "verdict");
            // The receiver took two and closed the three it did not want in this process
            // (DUPLICATE_CLOSE_SOURCE): no copy is left behind here.
            CheckNoCopyLeft(before);
            return 0;
        }
        finally
        {
            foreach (FileStream f in files)
                f.Dispose();
        }
    }

    /// <summary>Receives a listening socket (its port in the data), takes it with TakeSocket
    /// and accepts through it with Accept and with AcceptAsync, echoing each request.
    /// Answers 'N' (and succeeds) if the socket is not a socket to this Winsock.</summary>
    private static int ReceiveListener(Socket s)
    {
        var buf = new byte[4];
        using ReceivedFds r = s.ReceiveFds(buf);
        Equal(1, r.Count, "one handle");
        FdInfo info = r.Describe(0);
        if (SoType(r.PeekFd(0)) == -10038)
        {
            Console.Error.WriteLine($"peer: the received SOCKET is not a socket here (WSAENOTSOCK; described as {info.Kind})");
            SendByte(s, (byte)'N');
            return 0;
        }
        Check(info.IsSocket && info.IsListening, $"a listening socket ({info})");
        int port = LittleEndianInt(buf);
        using Socket l = r.TakeSocket(0);
        Equal(port, ((IPEndPoint)l.LocalEndPoint!).Port, "the listener's port");
        SendByte(s, (byte)'R');
        using (Socket a = l.Accept())
            Echo(a, 0);
        using (Socket a = l.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult())
            Echo(a, 1);
        Equal('Y', (char)ReceiveByte(s), "verdict");
        return 0;

        static void Echo(Socket a, int i)
        {
            var b = new byte[16];
            int n = a.Receive(b);
            Equal($"hello {i}\n", Encoding.ASCII.GetString(b, 0, n), "request through the accepted connection");
            a.Send(Encoding.ASCII.GetBytes($"echo {i}\n"));
        }
    }

    /// <summary>Sends two files with data and exits at once, before the receiver reads.</summary>
    private static int Die(Socket s)
    {
        FileStream a = TempFile("gone 1"), b = TempFile("gone 2");
        Equal(11, s.SendFds("orphan data"u8, a, b), "data bytes sent");
        Environment.Exit(0);
        return 0;
    }

    /// <summary>Reads nothing until the parent says so (so that the parent's async send has to wait for
    /// room), then drains records with ReceiveFdsAsync until one carries a handle, reads the
    /// file through it and answers with the byte count it drained.</summary>
    private static async Task<int> AsyncDrain(Socket s, string go)
    {
        // The parent creates this file once its async send is pending.
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!File.Exists(go) && sw.ElapsedMilliseconds < 60_000)
            await Task.Delay(20);
        await Task.Delay(500);
        var buffer = new byte[256 * 1024];
        long total = 0;
        while (true)
        {
            using ReceivedFds r = await s.ReceiveFdsAsync(buffer);
            Check(!r.IsEndOfStream, "the parent's data ended before its file arrived");
            total += r.BytesReceived;
            if (r.Count > 0)
            {
                Equal(1, r.Count, "one handle with the last record");
                using FileStream f = r.TakeFileStream(0, FileAccess.Read);
                Equal("sent after waiting for room\n", ReadAll(f), "the file sent asynchronously");
                break;
            }
        }
        var answer = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(answer, total);
        Equal(8, await s.SendFdsAsync(answer, Array.Empty<Descriptor>()), "answer sent");
        return 0;
    }

    /// <summary>SendFdsAsync of a file and a pipe, then the parent's verdict with ReceiveFdsAsync.</summary>
    private static async Task<int> AsyncSend(Socket s)
    {
        using FileStream f = TempFile("async file\n");
        using var pipe = new AnonymousPipeServerStream(PipeDirection.Out, HandleInheritability.None);
        Equal(5, await s.SendFdsAsync("async"u8.ToArray(), [f, pipe.ClientSafePipeHandle]), "data bytes sent");
        await pipe.WriteAsync("async pipe\n"u8.ToArray());
        var b = new byte[1];
        using ReceivedFds r = await s.ReceiveFdsAsync(b);
        Equal(1, r.BytesReceived, "verdict received");
        Equal((byte)'Y', b[0], "verdict");
        return 0;
    }

    /// <summary>After the receiver's verdict, no record copy is left in this process: the
    /// receiver took (or dropped) every one of them out of it (DUPLICATE_CLOSE_SOURCE). At
    /// most one new I/O handle is tolerated, for the runtime's own.</summary>
    private static void CheckNoCopyLeft(HashSet<nint> before)
    {
        List<nint> left = NewSince(before);
        Check(left.Count <= 1, $"no record copy left in the sender ({left.Count} new I/O handles still open)");
    }

    private static string Program_Contents(int i) => Cases.Contents[i];
}
