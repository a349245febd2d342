// SPDX-License-Identifier: MIT
// FdSend's managed API on Windows, between two processes over TCP loopback. Run with no
// arguments for every case, or with case names; "--c-peer <test_win.exe>" adds the
// interop case with libfdsend's C test program. Prints one line per case and a summary;
// exit code 0 only if every case passed (a case that cannot run here says why and is
// counted as skipped).
using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Pipes;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using FdSend;

namespace FdSend.WinTests;

internal static partial class Program
{
    private static string? s_cPeer;

    private static int Main(string[] args)
    {
        if (!OperatingSystem.IsWindows())
        {
            Console.Error.WriteLine("FdSend.WinTests runs on Windows (or under wine) only.");
            return 2;
        }
        if (args.Length >= 3 && args[0] == "peer")
            return Peer.Run(args[1], int.Parse(args[2]), args.Skip(3).ToArray());

        var only = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--c-peer" && i + 1 < args.Length)
                s_cPeer = args[++i];
            else
                only.Add(args[i]);
        }
        Console.WriteLine($"FdSend.WinTests on {RuntimeInformation.OSDescription} ({RuntimeInformation.FrameworkDescription}), " +
                          $"libfdsend {FdPassing.NativeVersion}, wine: {WineVersion() ?? "no"}");
        var cases = Cases.All;
        int pass = 0, fail = 0, skip = 0;
        foreach ((string name, Action body) in cases)
        {
            if (only.Count > 0 && !only.Contains(name))
                continue;
            var sw = Stopwatch.StartNew();
            try
            {
                body();
                pass++;
                Console.WriteLine($"ok   {name} ({sw.ElapsedMilliseconds} ms)");
            }
            catch (SkipException e)
            {
                skip++;
                Console.WriteLine($"skip {name}: {e.Message}");
            }
            catch (Exception e)
            {
                fail++;
                Console.WriteLine($"FAIL {name} ({sw.ElapsedMilliseconds} ms): {e}");
            }
        }
        Console.WriteLine($"FdSend.WinTests: {pass} passed, {fail} failed, {skip} skipped");
        return fail == 0 && pass > 0 ? 0 : 1;
    }

    internal static string? CPeer => s_cPeer;

    private static string? WineVersion()
    {
        nint ntdll = NativeLibrary.Load("ntdll.dll");
        if (!NativeLibrary.TryGetExport(ntdll, "wine_get_version", out nint fn))
            return null;
        unsafe
        {
            return Marshal.PtrToStringAnsi(((delegate* unmanaged<nint>)fn)());
        }
    }

    // ---- Helpers shared by both sides ---------------------------------------------------

    internal static void Check(bool condition, string what)
    {
        if (!condition)
            throw new Exception("check failed: " + what);
    }

    internal static void Equal<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual))
            throw new Exception($"check failed: {what}: expected {expected}, got {actual}");
    }

    internal static T Throws<T>(Action action, string what) where T : Exception
    {
        try
        {
            action();
        }
        catch (T e)
        {
            return e;
        }
        catch (Exception e)
        {
            throw new Exception($"check failed: {what}: expected {typeof(T).Name}, got {e.GetType().Name}: {e.Message}", e);
        }
        throw new Exception($"check failed: {what}: expected {typeof(T).Name}, nothing was thrown");
    }

    internal static Socket Listen()
    {
        var l = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        l.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        l.Listen(8);
        return l;
    }

    internal static Socket Connect(int port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Connect(new IPEndPoint(IPAddress.Loopback, port));
        return s;
    }

    /// <summary>A connected TCP loopback pair in this process.</summary>
    internal static (Socket, Socket) Pair()
    {
        using Socket l = Listen();
        Socket a = Connect(((IPEndPoint)l.LocalEndPoint!).Port);
        Socket b = l.Accept();
        return (a, b);
    }

    internal static FileStream TempFile(string contents)
    {
        string path = Path.Combine(Path.GetTempPath(), $"fdsend-win-{Environment.ProcessId}-{Guid.NewGuid():N}.txt");
        var fs = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete,
                                1, FileOptions.DeleteOnClose);
        fs.Write(Encoding.ASCII.GetBytes(contents));
        fs.Flush();
        fs.Position = 0;
        return fs;
    }

    internal static string ReadAll(Stream s)
    {
        if (s.CanSeek)
            s.Position = 0;
        using var reader = new StreamReader(s, Encoding.ASCII, false, 256, leaveOpen: true);
        return reader.ReadToEnd();
    }

    /// <summary>A record of one byte, without handles (every write on a record stream is a record).</summary>
    internal static void SendByte(Socket s, byte b) => Equal(1, s.SendFds([b]), "one-byte record sent");

    internal static byte ReceiveByte(Socket s)
    {
        var b = new byte[1];
        using ReceivedFds r = s.ReceiveFds(b);
        Equal(1, r.BytesReceived, "one-byte record received");
        Equal(0, r.Count, "no handles with the one-byte record");
        return b[0];
    }

    [LibraryImport("kernel32.dll", SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    internal static partial bool GetHandleInformation(nint handle, out uint flags);

    [LibraryImport("kernel32.dll")]
    internal static partial uint GetFileType(nint handle);

    internal static bool IsOpen(nint handle) => GetHandleInformation(handle, out _);

    /// <summary>The open I/O handles (files, pipes, sockets, devices: what FdSend passes)
    /// of this process, found by walking the handle values as tests/native-win does under
    /// wine (whose GetProcessHandleCount reports 0). The runtime opens handles of its own
    /// now and then, so cases compare these sets for the values they care about rather
    /// than comparing counts.</summary>
    internal static HashSet<nint> OpenIoHandles()
    {
        var set = new HashSet<nint>();
        for (nint v = 4; v < 0x10000; v += 4)
        {
            if (GetHandleInformation(v, out _) && GetFileType(v) != 0)
                set.Add(v);
        }
        return set;
    }

    /// <summary>Values open now that were not in <paramref name="before"/>.</summary>
    internal static List<nint> NewSince(HashSet<nint> before) =>
        OpenIoHandles().Where(v => !before.Contains(v)).ToList();

    [LibraryImport("ws2_32.dll", SetLastError = true)]
    internal static unsafe partial int getsockopt(nint s, int level, int name, byte* value, int* length);

    [LibraryImport("ws2_32.dll")]
    internal static partial int WSAGetLastError();

    /// <summary>getsockopt(SO_TYPE) on a raw handle: the type, or -WSA error.</summary>
    internal static unsafe int SoType(nint handle)
    {
        int type = 0, len = 4;
        if (getsockopt(handle, 0xffff, 0x1008, (byte*)&type, &len) != 0)
            return -WSAGetLastError();
        return type;
    }

    // ---- A second process ---------------------------------------------------------------

    internal sealed class Child : IDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();

        private Child(Process p)
        {
            _process = p;
        }

        internal static Child Start(string exe, params string[] args)
        {
            var psi = new ProcessStartInfo(exe)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (string a in args)
                psi.ArgumentList.Add(a);
            var p = Process.Start(psi)!;
            var c = new Child(p);
            p.OutputDataReceived += (_, e) => { if (e.Data != null) lock (c._output) c._output.AppendLine(e.Data); };
            p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (c._output) c._output.AppendLine(e.Data); };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            return c;
        }

        /// <summary>This program again as "peer name port args...".</summary>
        internal static Child Peer(string name, int port, params string[] args) =>
            Start(Environment.ProcessPath!, ["peer", name, port.ToString(), .. args]);

        internal int WaitExit(int timeoutMs = 60_000)
        {
            if (!_process.WaitForExit(timeoutMs))
            {
                _process.Kill();
                throw new TimeoutException($"the child did not exit within {timeoutMs} ms; output: {Output}");
            }
            _process.WaitForExit();
            return _process.ExitCode;
        }

        internal void ExpectSuccess()
        {
            int code = WaitExit();
            if (code != 0)
                throw new Exception($"the child exited with {code}; its output: {Output}");
        }

        internal string Output
        {
            get
            {
                lock (_output)
                    return _output.ToString().Trim();
            }
        }

        public void Dispose()
        {
            if (!_process.HasExited)
                _process.Kill();
            _process.Dispose();
        }
    }

    /// <summary>Listens, starts a peer, accepts its connection.</summary>
    internal static (Child, Socket) StartPeer(string name, params string[] args)
    {
        using Socket l = Listen();
        Child c = Child.Peer(name, ((IPEndPoint)l.LocalEndPoint!).Port, args);
        try
        {
            l.ReceiveTimeout = 60_000;
            if (!l.Poll(60_000_000, SelectMode.SelectRead))
                throw new TimeoutException("the peer did not connect within 60 s: " + c.Output);
            return (c, l.Accept());
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    internal sealed class SkipException(string why) : Exception(why);

    internal static int LittleEndianInt(ReadOnlySpan<byte> b) => BinaryPrimitives.ReadInt32LittleEndian(b);
}
