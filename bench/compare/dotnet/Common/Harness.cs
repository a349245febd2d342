// The comparison workloads for .NET implementations: the same loops, payload, batching
// and output line as compare/c/harness.h, over System.Net.Sockets.Socket.
//
// A program implements ITransport (or IAsyncTransport) as a STRUCT: the loops are generic
// over it, so the JIT specialises each loop for one implementation and inlines its calls
// (no interface dispatch inside the measured loop).
//
// Command line of every .NET comparison program (parsed by Harness.RunMain):
//   PROGRAM [IMPL] WORKLOAD SECONDS [WARMUP_SECONDS]
//   PROGRAM --child IMPL WORKLOAD SOCKET_PATH      (the second process of stream1/pingpong1)
// Workloads: inproc1, inproc64, stream1, pingpong1 (see compare/c/harness.h).
// Prints: ops_per_sec=<float> ops=<int> seconds=<float> cpu_seconds=<float> alloc_bytes_per_op=<float>
// (cpu_seconds: this process's CPU time over the timed loop, plus the child's in the
// two-process workloads; alloc_bytes_per_op: GC.GetTotalAllocatedBytes over the loop);
// pingpong1 adds p50_us= p99_us= (round-trip latency percentiles over the timed loop, one
// Stopwatch read per round trip into a preallocated array).
// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;

// The C harness does not zero its stack buffers either (the transports stackalloc room for
// 64 descriptors per receive).
[module: System.Runtime.CompilerServices.SkipLocalsInit]

namespace FdSend.Benchmarks.Compare;

/// <summary>One fd-passing implementation, synchronous calls.</summary>
public interface ITransport
{
    /// <summary>Called once with this process's connected sockets (inproc: [sender,
    /// receiver]; two-process: [mine]) and the descriptors to send (owned by the harness).</summary>
    void Setup(Socket[] sockets, int[] fds);

    /// <summary>Send the 16-byte payload and the first nfds descriptors on sockets[end].</summary>
    void Send(int end, int nfds);

    /// <summary>Receive one 16-byte message with exactly nfds descriptors on sockets[end]
    /// and close the descriptors; false at end of stream; throws on anything else.</summary>
    bool Receive(int end, int nfds);

    /// <summary>Receive a 16-byte + 1-fd message, send 16 bytes + that fd back, close it;
    /// false at end of stream.</summary>
    bool Echo(int end);
}

/// <summary>One fd-passing implementation, asynchronous calls.</summary>
public interface IAsyncTransport
{
    void Setup(Socket[] sockets, int[] fds);
    ValueTask SendAsync(int end, int nfds);
    ValueTask<bool> ReceiveAsync(int end, int nfds);
    ValueTask<bool> EchoAsync(int end);
}

public static partial class Harness
{
    public const int PayloadLength = 16;
    public const int Batch = 64;

    /// <summary>The 16 payload bytes every implementation sends ("fdsend-benchmark").</summary>
    public static ReadOnlySpan<byte> Payload => "fdsend-benchmark"u8;

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int SysClose(int fd);

    /// <summary>close(2) a received raw descriptor (what a caller of a raw-fd API must do).</summary>
    public static void Close(int fd)
    {
        if (SysClose(fd) != 0)
            throw new InvalidOperationException($"close({fd}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public static int FdCount(string workload) => workload switch
    {
        "inproc1" or "stream1" or "pingpong1" => 1,
        "inproc64" => 64,
        _ => throw new ArgumentException($"unknown workload {workload}"),
    };

    /// <summary>Two connected Unix stream sockets in this process (a socketpair made with
    /// the BCL: listen, connect, accept on a temporary path).</summary>
    public static (Socket, Socket) SocketPair()
    {
        string path = TempSocketPath();
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var a = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        a.Connect(new UnixDomainSocketEndPoint(path));
        Socket b = listener.Accept();
        File.Delete(path);
        return (a, b);
    }

    static string TempSocketPath() =>
        Path.Combine(Path.GetTempPath(), $"fdsend-bench-{Environment.ProcessId}-{Guid.NewGuid():N}.sock");

    static int[] OpenDevNull(int n)
    {
        var fds = new int[n];
        for (int i = 0; i < n; i++)
        {
            // The harness owns these for the whole run: leak the SafeHandle deliberately.
            var h = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
            fds[i] = (int)h.DangerousGetHandle();
            GC.SuppressFinalize(h);
        }
        return fds;
    }

    /// <summary>One implementation a program offers: its name on the command line, the
    /// label compare.py shows, and its runner (Run&lt;T&gt; or RunAsync&lt;T&gt;).</summary>
    public sealed record Impl(string Name, string Label, Func<Options, int> Run);

    /// <summary>Entry point shared by the .NET comparison programs.
    /// <c>--list</c> prints one "name TAB label" line per implementation (compare.py builds
    /// its rows from it); <c>--extra NAME ...</c> runs a program-specific mode.</summary>
    public static int RunMain(string[] args, string programName, IReadOnlyList<Impl> impls,
                              IReadOnlyDictionary<string, Func<string[], int>>? extras = null)
    {
        try
        {
            if (args.Length == 1 && args[0] == "--list")
            {
                foreach (Impl i in impls)
                    Console.WriteLine($"{i.Name}\t{i.Label}");
                return 0;
            }
            if (args.Length > 0 && extras is not null && extras.TryGetValue(args[0], out var extra))
                return extra(args[1..]);
            Options o = Options.Parse(args, impls.Count == 1 ? impls[0].Name : null);
            Impl? impl = impls.FirstOrDefault(i => i.Name == o.Impl);
            if (impl is null)
            {
                Console.Error.WriteLine($"{programName}: unknown implementation {o.Impl} (have: {string.Join(", ", impls.Select(i => i.Name))})");
                return 2;
            }
            return impl.Run(o);
        }
        catch (UnsupportedWorkloadException e)
        {
            Console.Error.WriteLine($"{programName}: {e.Message}");
            return 3;
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"{programName}: {e.Message}");
            Console.Error.WriteLine($"usage: {programName} [IMPL] inproc1|inproc64|stream1|pingpong1 SECONDS [WARMUP]");
            return 2;
        }
    }

    // ---- synchronous loops --------------------------------------------------------------

    public static int Run<T>(Options o) where T : struct, ITransport
    {
        T t = default;
        int nfds = FdCount(o.Workload);
        int[] fds = OpenDevNull(nfds);
        if (o.ChildSocketPath is not null)
        {
            using Socket s = ConnectToParent(o.ChildSocketPath);
            t.Setup([s], fds);
            if (o.Workload == "stream1")
            {
                while (t.Receive(0, 1)) { }
                s.Send("A"u8);
            }
            else
            {
                while (t.Echo(0)) { }
            }
            return 0;
        }
        if (o.Workload.StartsWith("inproc", StringComparison.Ordinal))
        {
            var (a, b) = SocketPair();
            t.Setup([a, b], fds);
            if (o.Warmup > 0) InprocLoop(ref t, nfds, o.Warmup);
            long a0 = GC.GetTotalAllocatedBytes(precise: true);
            TimeSpan c0 = Environment.CpuUsage.TotalTime;
            long t0 = Stopwatch.GetTimestamp();
            long ops = InprocLoop(ref t, nfds, o.Seconds);
            long t1 = Stopwatch.GetTimestamp();
            TimeSpan c1 = Environment.CpuUsage.TotalTime;
            return Report(ops, t0, t1, GC.GetTotalAllocatedBytes(precise: true) - a0, c1 - c0);
        }
        using var child = ChildProcess.Start(o);
        Socket sock = child.Socket;
        t.Setup([sock], fds);
        bool stream = o.Workload == "stream1";
        if (o.Warmup > 0) { if (stream) StreamLoop(ref t, o.Warmup); else PingPongLoop(ref t, o.Warmup); }
        if (!stream) s_latencies = new long[1 << 21];
        long alloc0 = GC.GetTotalAllocatedBytes(precise: true);
        double cpu0 = child.CpuSeconds();
        long start = Stopwatch.GetTimestamp();
        long n = stream ? StreamLoop(ref t, o.Seconds) : PingPongLoop(ref t, o.Seconds);
        long alloc = GC.GetTotalAllocatedBytes(precise: true) - alloc0;
        long end = child.EndOfStream(stream);
        double cpu1 = child.CpuSeconds();
        child.WaitForExit();
        return Report(n, start, end, alloc, cpu0 >= 0 && cpu1 >= 0 ? TimeSpan.FromSeconds(cpu1 - cpu0) : null);
    }

    static long InprocLoop<T>(ref T t, int nfds, double seconds) where T : struct, ITransport
    {
        long ops = 0, end = Deadline(seconds);
        do
        {
            for (int k = 0; k < Batch; k++)
            {
                t.Send(0, nfds);
                if (!t.Receive(1, nfds)) throw new InvalidOperationException("unexpected end of stream");
            }
            ops += Batch;
        } while (Stopwatch.GetTimestamp() < end);
        return ops;
    }

    static long StreamLoop<T>(ref T t, double seconds) where T : struct, ITransport
    {
        long ops = 0, end = Deadline(seconds);
        do
        {
            for (int k = 0; k < Batch; k++)
                t.Send(0, 1);
            ops += Batch;
        } while (Stopwatch.GetTimestamp() < end);
        return ops;
    }

    static long PingPongLoop<T>(ref T t, double seconds) where T : struct, ITransport
    {
        long ops = 0, end = Deadline(seconds);
        do
        {
            for (int k = 0; k < Batch; k++)
            {
                long t0 = Stopwatch.GetTimestamp();
                t.Send(0, 1);
                if (!t.Receive(0, 1)) throw new InvalidOperationException("ping-pong peer closed");
                RecordLatency(t0);
            }
            ops += Batch;
        } while (Stopwatch.GetTimestamp() < end);
        return ops;
    }

    // ---- asynchronous loops -------------------------------------------------------------

    public static int RunAsync<T>(Options o) where T : struct, IAsyncTransport =>
        RunAsyncCore<T>(o).GetAwaiter().GetResult();

    static async Task<int> RunAsyncCore<T>(Options o) where T : struct, IAsyncTransport
    {
        var box = new StrongBox<T>(default);
        int nfds = FdCount(o.Workload);
        int[] fds = OpenDevNull(nfds);
        if (o.ChildSocketPath is not null)
        {
            using Socket s = ConnectToParent(o.ChildSocketPath);
            box.Value.Setup([s], fds);
            if (o.Workload == "stream1")
            {
                while (await box.Value.ReceiveAsync(0, 1).ConfigureAwait(false)) { }
                s.Send("A"u8);
            }
            else
            {
                while (await box.Value.EchoAsync(0).ConfigureAwait(false)) { }
            }
            return 0;
        }
        if (o.Workload.StartsWith("inproc", StringComparison.Ordinal))
        {
            var (a, b) = SocketPair();
            box.Value.Setup([a, b], fds);
            if (o.Warmup > 0) await InprocLoopAsync(box, nfds, o.Warmup).ConfigureAwait(false);
            long a0 = GC.GetTotalAllocatedBytes(precise: true);
            TimeSpan c0 = Environment.CpuUsage.TotalTime;
            long t0 = Stopwatch.GetTimestamp();
            long ops = await InprocLoopAsync(box, nfds, o.Seconds).ConfigureAwait(false);
            long t1 = Stopwatch.GetTimestamp();
            TimeSpan c1 = Environment.CpuUsage.TotalTime;
            return Report(ops, t0, t1, GC.GetTotalAllocatedBytes(precise: true) - a0, c1 - c0);
        }
        using var child = ChildProcess.Start(o);
        box.Value.Setup([child.Socket], fds);
        bool stream = o.Workload == "stream1";
        if (o.Warmup > 0) await (stream ? StreamLoopAsync(box, o.Warmup) : PingPongLoopAsync(box, o.Warmup)).ConfigureAwait(false);
        if (!stream) s_latencies = new long[1 << 21];
        long alloc0 = GC.GetTotalAllocatedBytes(precise: true);
        double cpu0 = child.CpuSeconds();
        long start = Stopwatch.GetTimestamp();
        long n = await (stream ? StreamLoopAsync(box, o.Seconds) : PingPongLoopAsync(box, o.Seconds)).ConfigureAwait(false);
        long alloc = GC.GetTotalAllocatedBytes(precise: true) - alloc0;
        long end = child.EndOfStream(stream);
        double cpu1 = child.CpuSeconds();
        child.WaitForExit();
        return Report(n, start, end, alloc, cpu0 >= 0 && cpu1 >= 0 ? TimeSpan.FromSeconds(cpu1 - cpu0) : null);
    }

    // StrongBox: async methods cannot take a ref to a struct; the box keeps one instance.
    public sealed class StrongBox<T>(T value) { public T Value = value; }

    static async Task<long> InprocLoopAsync<T>(StrongBox<T> t, int nfds, double seconds) where T : struct, IAsyncTransport
    {
        long ops = 0, end = Deadline(seconds);
        do
        {
            for (int k = 0; k < Batch; k++)
            {
                await t.Value.SendAsync(0, nfds).ConfigureAwait(false);
                if (!await t.Value.ReceiveAsync(1, nfds).ConfigureAwait(false))
                    throw new InvalidOperationException("unexpected end of stream");
            }
            ops += Batch;
        } while (Stopwatch.GetTimestamp() < end);
        return ops;
    }

    static async Task<long> StreamLoopAsync<T>(StrongBox<T> t, double seconds) where T : struct, IAsyncTransport
    {
        long ops = 0, end = Deadline(seconds);
        do
        {
            for (int k = 0; k < Batch; k++)
                await t.Value.SendAsync(0, 1).ConfigureAwait(false);
            ops += Batch;
        } while (Stopwatch.GetTimestamp() < end);
        return ops;
    }

    static async Task<long> PingPongLoopAsync<T>(StrongBox<T> t, double seconds) where T : struct, IAsyncTransport
    {
        long ops = 0, end = Deadline(seconds);
        do
        {
            for (int k = 0; k < Batch; k++)
            {
                long t0 = Stopwatch.GetTimestamp();
                await t.Value.SendAsync(0, 1).ConfigureAwait(false);
                if (!await t.Value.ReceiveAsync(0, 1).ConfigureAwait(false))
                    throw new InvalidOperationException("ping-pong peer closed");
                RecordLatency(t0);
            }
            ops += Batch;
        } while (Stopwatch.GetTimestamp() < end);
        return ops;
    }

    // ---- shared plumbing ------------------------------------------------------------------

    static long[]? s_latencies; // round-trip times of the timed pingpong1 loop (Stopwatch ticks)
    static int s_latencyCount;

    static void RecordLatency(long t0)
    {
        long[]? l = s_latencies;
        if (l is not null && s_latencyCount < l.Length)
            l[s_latencyCount++] = Stopwatch.GetTimestamp() - t0;
    }

    static string LatencyText()
    {
        long[]? l = s_latencies;
        if (l is null || s_latencyCount == 0) return "";
        Array.Sort(l, 0, s_latencyCount);
        double P(double q) => l[(int)(q * (s_latencyCount - 1))] * 1e6 / Stopwatch.Frequency;
        return FormattableString.Invariant($" p50_us={P(0.50):F2} p99_us={P(0.99):F2}");
    }

    static long Deadline(double seconds) => Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);

    /// <summary>The one output line. allocated: bytes allocated by the whole process
    /// (every thread) during the timed loop; cpu: the CPU time used over it by this process
    /// and, in the two-process workloads, the child.</summary>
    static int Report(long ops, long t0, long t1, long allocated, TimeSpan? cpu = null)
    {
        double secs = (double)(t1 - t0) / Stopwatch.Frequency;
        string cpuText = cpu is { } c ? FormattableString.Invariant($" cpu_seconds={c.TotalSeconds:F4}") : "";
        Console.WriteLine(FormattableString.Invariant(
            $"ops_per_sec={ops / secs:F1} ops={ops} seconds={secs:F4}{cpuText} alloc_bytes_per_op={(double)allocated / ops:F2}{LatencyText()}"));
        return 0;
    }

    static Socket ConnectToParent(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        return s;
    }

    /// <summary>The second process of a two-process workload: this same program started
    /// with --child, connected back through a Unix socket path.</summary>
    sealed class ChildProcess : IDisposable
    {
        readonly Process _process;
        public Socket Socket { get; }

        ChildProcess(Process p, Socket s) { _process = p; Socket = s; }

        public static ChildProcess Start(Options o)
        {
            string path = TempSocketPath();
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            var psi = new ProcessStartInfo { UseShellExecute = false };
            string self = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
            psi.FileName = self;
            if (Path.GetFileNameWithoutExtension(self) == "dotnet")
                psi.ArgumentList.Add(typeof(Harness).Assembly.Location); // started as "dotnet X.dll"
            foreach (string a in new[] { "--child", o.Impl, o.Workload, path })
                psi.ArgumentList.Add(a);
            Process p = Process.Start(psi) ?? throw new InvalidOperationException("could not start the child process");
            try
            {
                if (!listener.Poll(TimeSpan.FromSeconds(30), SelectMode.SelectRead))
                    throw new InvalidOperationException($"the child process did not connect (exited: {p.HasExited})");
                Socket s = listener.Accept();
                return new ChildProcess(p, s);
            }
            catch
            {
                if (!p.HasExited) p.Kill();
                p.Dispose();
                throw;
            }
            finally
            {
                File.Delete(path);
            }
        }

        /// <summary>End of stream; for stream1 wait for the child's acknowledgement that it
        /// has received everything. Returns the timestamp at which the run ended.</summary>
        public long EndOfStream(bool waitForAck)
        {
            Socket.Shutdown(SocketShutdown.Send);
            if (waitForAck)
            {
                Span<byte> ack = stackalloc byte[1];
                if (Socket.Receive(ack) != 1 || ack[0] != (byte)'A')
                    throw new InvalidOperationException("no acknowledgement from the child");
            }
            return Stopwatch.GetTimestamp();
        }

        public void WaitForExit()
        {
            if (!_process.WaitForExit(TimeSpan.FromSeconds(30)))
                throw new InvalidOperationException("the child process did not exit");
            if (_process.ExitCode != 0)
                throw new InvalidOperationException($"the child process failed (exit code {_process.ExitCode})");
        }

        /// <summary>CPU seconds used so far by this process (every thread) plus the child
        /// (every thread, from Linux's /proc/PID/task/TID/schedstat); -1 where /proc does
        /// not say.</summary>
        public double CpuSeconds()
        {
            double mine = Environment.CpuUsage.TotalTime.TotalSeconds;
            try
            {
                long ns = 0;
                foreach (string task in Directory.EnumerateDirectories($"/proc/{_process.Id}/task"))
                {
                    try
                    {
                        string text = File.ReadAllText(Path.Combine(task, "schedstat"));
                        ns += long.Parse(text.AsSpan(0, text.IndexOf(' ')), System.Globalization.CultureInfo.InvariantCulture);
                    }
                    catch (IOException) { } // a thread that just ended
                }
                return mine + ns / 1e9;
            }
            catch (IOException) { return -1; }
            catch (UnauthorizedAccessException) { return -1; }
        }

        public void Dispose()
        {
            Socket.Dispose();
            if (!_process.HasExited) _process.Kill();
            _process.Dispose();
        }
    }
}

public sealed class UnsupportedWorkloadException(string message) : Exception(message);

/// <summary>Parsed command line.</summary>
public sealed record Options(string Impl, string Workload, double Seconds, double Warmup, string? ChildSocketPath)
{
    public static Options Parse(string[] args, string? onlyImpl)
    {
        if (args.Length == 4 && args[0] == "--child")
            return new Options(args[1], args[2], 0, 0, args[3]);
        int i = 0;
        string impl = onlyImpl ?? (args.Length > 0 ? args[i++] : throw new ArgumentException("missing implementation"));
        if (args.Length < i + 2)
            throw new ArgumentException("missing arguments");
        string workload = args[i];
        Harness.FdCount(workload); // validates
        double seconds = double.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture);
        double warmup = args.Length > i + 2 ? double.Parse(args[i + 2], System.Globalization.CultureInfo.InvariantCulture) : 0.5;
        return new Options(impl, workload, seconds, warmup, null);
    }
}
