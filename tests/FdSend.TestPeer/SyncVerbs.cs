// SPDX-License-Identifier: MIT
// FdSend.TestPeer report|send-files|creds|pipe-write|accept|echo|map-naive|map-checked|list-fds|rlimit-recv
//                 <socket-path> [args...]
//
// Connects a Unix stream socket to <socket-path> (or, when <socket-path> is "-", opens the
// socket its parent passed with FdChildProcess.Start), performs one scripted exchange using FdSend,
// writes a one-line text report back over the socket (when the command has one), and exits.
// Exit code 0 on success; anything else (with a message on stderr) is a failure the test sees.
//
// Commands:
//   report           receive one message with descriptors; report the data, count, flags and,
//                    per descriptor, its dev:ino and (for files) its content read at offset 0
//   send-files F...  open the files read-only, send "files" + their descriptors, exit at once
//                    (the descriptors are in flight when this process is gone)
//   creds            report "<own pid> <peer pid> <peer uid> <peer gid>" (GetPeerCredentials)
//   pipe-write       receive one descriptor (a pipe's write end) and write a line through it
//   accept           receive a listening TCP socket, accept one connection, answer on it
//   echo             send every received message (data + descriptors) back until end of stream
//   map-naive        receive a memfd, map it with TakeMemoryMappedFile (no checks), send "M",
//                    wait for one byte (the sender has shrunk it), read the last byte, report
//                    "survived" (a shrunk memfd kills this process with SIGBUS first)
//   map-checked      the same with TakeSealedMemory: "R" when refused (then wait, report
//                    "refused <reason>"), else "M",
//                    wait, read the last byte, report "survived"
//   list-fds         report the dev:ino of every descriptor open in this process
//   rlimit-recv N    receive a warm-up message; lower RLIMIT_NOFILE and fill the descriptor
//                    table so that exactly N slots are free; send "R"; receive one message,
//                    close what it brought, undo the limit and report its count and flags
using System.Globalization;
using System.IO.Pipes;
using System.Net;
using System.Net.Sockets;
using System.Text;
using FdSend;
using FdSend.Tests.Support;

/// <summary>The verbs of the synchronous fixtures of tests/FdSend.Tests (through Peer).</summary>
internal static class SyncVerbs
{
    public static readonly string[] Names =
        ["report", "send-files", "creds", "pipe-write", "accept", "echo", "map-naive", "map-checked", "list-fds", "rlimit-recv"];

    public static int Run(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: FdSend.TestPeer <command> <socket-path> [args...]");
            return 2;
        }

        using Socket socket = args[1] == "-"
            ? FdChildProcess.OpenParentSocket()
            : new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        if (args[1] != "-")
            socket.Connect(new UnixDomainSocketEndPoint(args[1]));
        socket.ReceiveTimeout = 30_000;
        socket.SendTimeout = 30_000;

        switch (args[0])
        {
            case "report":
                Reply(socket, Report(socket));
                break;

            case "send-files":
            {
                var files = new List<FileStream>();
                foreach (string path in args.Skip(2))
                    files.Add(new FileStream(path, FileMode.Open, FileAccess.Read));
                var descriptors = files.Select(f => (Descriptor)f).ToArray();
                socket.SendFds(Encoding.UTF8.GetBytes("files"), descriptors);
                foreach (var f in files)
                    f.Dispose();
                break;
            }

            case "creds":
            {
                PeerCredentials c = socket.GetPeerCredentials();
                Reply(socket, $"{Environment.ProcessId} {c.Pid} {c.Uid} {c.Gid}");
                break;
            }

            case "pipe-write":
            {
                using ReceivedFds r = socket.ReceiveFds(new byte[16]);
                using AnonymousPipeClientStream pipe = r.TakePipe(0, PipeDirection.Out);
                byte[] line = Encoding.UTF8.GetBytes($"written by {Environment.ProcessId}\n");
                pipe.Write(line);
                break;
            }

            case "accept":
            {
                using ReceivedFds r = socket.ReceiveFds(new byte[16]);
                using Socket listener = r.TakeSocket(0);
                using Socket conn = listener.Accept();
                conn.Send(Encoding.UTF8.GetBytes($"accepted by {Environment.ProcessId} on {((IPEndPoint)listener.LocalEndPoint!).Port}"));
                conn.Shutdown(SocketShutdown.Both);
                break;
            }

            case "echo":
            {
                var buffer = new byte[4096];
                Span<int> fds = stackalloc int[FdPassing.MaxFds];
                while (true)
                {
                    int n = socket.ReceiveFds(buffer, fds, out int count, out ReceiveFlags flags);
                    if (n == 0 && count == 0 && flags == ReceiveFlags.None)
                        break;
                    try
                    {
                        Span<Descriptor> back = new Descriptor[count];
                        for (int i = 0; i < count; i++)
                            back[i] = Descriptor.FromRawFd(fds[i]);
                        socket.SendFds(buffer.AsSpan(0, n), back);
                    }
                    finally
                    {
                        for (int i = 0; i < count; i++)
                            Posix.Close(fds[i]);
                    }
                }
                break;
            }

            case "map-naive":
            {
                using ReceivedFds r = socket.ReceiveFds(new byte[16]);
                long size = r.Describe(0).Size ?? 0;
                using var map = r.TakeMemoryMappedFile(0, System.IO.MemoryMappedFiles.MemoryMappedFileAccess.Read);
                using var view = map.CreateViewAccessor(0, size, System.IO.MemoryMappedFiles.MemoryMappedFileAccess.Read);
                socket.Send("M"u8);
                socket.Receive(new byte[1]);
                byte last = view.ReadByte(size - 1); // SIGBUS here if the memory was shrunk
                Reply(socket, $"survived {last}");
                break;
            }

            case "map-checked":
            {
                using ReceivedFds r = socket.ReceiveFds(new byte[16]);
                ReceivedSealedMemory memory;
                try
                {
                    memory = r.TakeSealedMemory(0, FdSeals.Write, minSize: 1);
                }
                catch (FdPolicyViolationException e)
                {
                    socket.Send("R"u8);
                    // The test sends one byte after either answer; read it before closing, as
                    // the "M" path does, so that it is never left unread in this end (closing
                    // a Unix socket with unread data resets the connection: the test's read
                    // of the report then fails with ECONNRESET).
                    socket.Receive(new byte[1]);
                    Reply(socket, $"refused {e.Reason}: {e.Message}");
                    break;
                }
                using (memory)
                {
                    socket.Send("M"u8);
                    socket.Receive(new byte[1]);
                    Reply(socket, $"survived {memory.Span[^1]}");
                }
                break;
            }

            case "list-fds":
            {
                var ids = new List<string>();
                foreach (int fd in Posix.OpenFds())
                {
                    try
                    {
                        ids.Add($"{fd}={Posix.GetFileId(fd)}");
                    }
                    catch (IOException)
                    {
                        // closed between listing and fstat
                    }
                }
                Reply(socket, string.Join(' ', ids));
                break;
            }

            case "rlimit-recv":
            {
                int free = int.Parse(args[2], CultureInfo.InvariantCulture);
                // A first message runs everything below once (libfdsend is loaded, the code compiled):
                // at the limit, anything that first needs a descriptor of its own would fail.
                LimitReport(socket);
                string report;
                using (FullDescriptorTable.Leave(free))
                {
                    socket.Send("R"u8); // the limit is in place: the parent may send now
                    report = LimitReport(socket);
                }
                Reply(socket, report);
                break;
            }

            default:
                Console.Error.WriteLine($"unknown command {args[0]}");
                return 2;
        }
        return 0;
    }

    // Receives one message and describes it; the received descriptors are closed before it returns.
    private static string LimitReport(Socket socket)
    {
        using ReceivedFds r = socket.ReceiveFds(new byte[16]);
        return $"count={r.Count} flags={r.Flags} bytes={r.BytesReceived}";
    }

    private static string Report(Socket socket)
    {
        var buffer = new byte[256];
        using ReceivedFds r = socket.ReceiveFds(buffer);
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture,
            $"data={Encoding.UTF8.GetString(buffer, 0, r.BytesReceived)};count={r.Count};flags={r.Flags}");
        for (int i = 0; i < r.Count; i++)
        {
            using var handle = r.TakeFileHandle(i);
            string content = "-";
            try
            {
                var b = new byte[256];
                int n = RandomAccess.Read(handle, b, 0);
                content = Encoding.UTF8.GetString(b, 0, n);
            }
            catch (Exception e) when (e is IOException or NotSupportedException or UnauthorizedAccessException)
            {
            }
            sb.Append(CultureInfo.InvariantCulture, $";fd{i}={Posix.GetFileId(handle)}:{content}");
        }
        return sb.ToString();
    }

    private static void Reply(Socket socket, string text)
    {
        socket.Send(Encoding.UTF8.GetBytes(text));
        socket.Shutdown(SocketShutdown.Send);
    }
}
