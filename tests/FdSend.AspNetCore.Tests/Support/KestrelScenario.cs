// SPDX-License-Identifier: MIT
// The Kestrel handoff scenario's moving parts, shared by tests/FdSend.AspNetCore.Tests, the
// demo (managed/FdSend.Demo) and the benchmark (linked into each): the sample app
// samples/HandoffWeb as a real process, a client load that counts what it sees, and a
// process's descriptor count.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;

namespace FdSend.KestrelScenario;

/// <summary>One samples/HandoffWeb process started by this one (dotnet HandoffWeb.dll).</summary>
internal sealed partial class WebProcess : IDisposable
{
    private static readonly ConcurrentDictionary<int, int> s_ready = new(); // pid -> port, from every process's output
    private static readonly ConcurrentQueue<string> s_output = new();

    public Process Process { get; }

    private WebProcess(Process process)
    {
        Process = process;
        Pid = process.Id;
    }

    /// <summary>Forgets every process seen so far (one scenario after another).</summary>
    public static void Reset()
    {
        s_ready.Clear();
        s_output.Clear();
    }

    /// <summary>Every line every started process (and its children) printed, in order.</summary>
    public static IEnumerable<string> Output => s_output;

    /// <summary>Where to echo lines as they come (null: keep them only).</summary>
    public static Action<string>? Echo { get; set; }

    /// <summary>The sample's path, written into this assembly at build time.</summary>
    public static string SampleDll =>
        typeof(WebProcess).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .First(a => a.Key == "HandoffWebDll").Value!;

    /// <summary>Starts the sample with its output read here; <paramref name="args"/> as
    /// <c>--Key=value</c> configuration.</summary>
    public static WebProcess Start(string controlPath, int port, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add(SampleDll);
        psi.ArgumentList.Add($"--Port={port}");
        psi.ArgumentList.Add($"--ControlPath={controlPath}");
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        // One line per log entry; the framework's own chatter only from warnings up.
        psi.Environment["Logging__Console__FormatterName"] = "simple";
        psi.Environment["Logging__Console__FormatterOptions__SingleLine"] = "true";
        psi.Environment["Logging__LogLevel__Microsoft"] = "Warning";
        psi.Environment["DOTNET_TieredPGO"] = "0";
        Process p = Process.Start(psi) ?? throw new InvalidOperationException("could not start the sample");
        // Dedicated threads: a blocking read on a pool thread per process would starve the
        // thread pool that the client load's continuations run on (seconds of added latency).
        new Thread(() => Pump(p.StandardOutput)) { IsBackground = true, Name = $"stdout {p.Id}" }.Start();
        new Thread(() => Pump(p.StandardError)) { IsBackground = true, Name = $"stderr {p.Id}" }.Start();
        return new WebProcess(p);
    }

    [GeneratedRegex(@"^HandoffWeb (\d+) ready on [^:]+:(\d+)")]
    private static partial Regex ReadyLine();

    private static void Pump(StreamReader reader)
    {
        string? line;
        while ((line = reader.ReadLine()) != null)
        {
            s_output.Enqueue(line);
            Echo?.Invoke(line);
            Match m = ReadyLine().Match(line);
            if (m.Success)
                s_ready[int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)] = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        }
    }

    /// <summary>Waits until process <paramref name="pid"/> (this one, or one it started) says
    /// it is ready; returns its port.</summary>
    public static int WaitReady(int pid, TimeSpan timeout, Process? mustNotExit = null)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (s_ready.TryGetValue(pid, out int port))
                return port;
            if (mustNotExit is { HasExited: true })
                throw new InvalidOperationException($"process {mustNotExit.Id} exited ({mustNotExit.ExitCode}) before it was ready");
            Thread.Sleep(20);
        }
        throw new TimeoutException($"process {pid} was not ready within {timeout.TotalSeconds} s");
    }

    /// <summary>Waits until some process other than <paramref name="except"/> says it is ready.</summary>
    public static int WaitReadyOther(IReadOnlyCollection<int> except, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            foreach (int pid in s_ready.Keys)
                if (!except.Contains(pid))
                    return pid;
            Thread.Sleep(20);
        }
        throw new TimeoutException($"no new process was ready within {timeout.TotalSeconds} s");
    }

    public int Pid { get; }

    public int WaitReady(TimeSpan timeout) => WaitReady(Pid, timeout, Process);

    /// <summary>Waits for the exit; -1 if it did not exit in time.</summary>
    public int WaitExit(TimeSpan timeout) => Process.WaitForExit(timeout) ? Process.ExitCode : -1;

    public void Dispose()
    {
        if (!Process.HasExited)
            Terminate(Process.Id);
        Process.WaitForExit(10_000);
        if (!Process.HasExited)
            Process.Kill(entireProcessTree: true);
        Process.Dispose();
    }

    /// <summary>SIGTERM: the graceful stop.</summary>
    public static void Terminate(int pid) => _ = kill(pid, 15);

    /// <summary>Whether process <paramref name="pid"/> is alive (or a zombie).</summary>
    public static bool Exists(int pid) => kill(pid, 0) == 0;

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);
}

/// <summary>What a client load saw.</summary>
internal sealed class LoadStats
{
    public long Made, Refused, Failed;
    public long NewConnections, ConnectionCloseResponses;
    public readonly ConcurrentDictionary<int, long> ByPid = new();
    public readonly ConcurrentQueue<string> Errors = new();
    /// <summary>The new-connection client's requests that were answered: when each started
    /// (seconds on the load's clock), its connect time and its whole time (connect to the
    /// end of the answer), in milliseconds.</summary>
    public readonly ConcurrentQueue<(double AtSeconds, double ConnectMs, double RequestMs)> Latencies = new();

    public void Served(int pid) => ByPid.AddOrUpdate(pid, 1, (_, n) => n + 1);

    public void Fail(string what)
    {
        Interlocked.Increment(ref Failed);
        if (Errors.Count < 20)
            Errors.Enqueue($"at {DateTime.Now:HH:mm:ss.fff}: {what}");
    }

    public override string ToString() =>
        $"{Made} requests, {Refused} refused, {Failed} failed; served by " +
        string.Join(", ", ByPid.OrderBy(p => p.Key).Select(p => $"{p.Key}: {p.Value}"));
}

/// <summary>
/// A client load on 127.0.0.1:port, until disposed: <c>fresh</c> workers that open a new
/// connection per request (raw sockets: a refused connect is counted as refused, never
/// retried), and <c>keepAlive</c> workers sharing one HttpClient that keeps its connections.
/// Every request is GET /pid; the answer says which process served it.
/// </summary>
internal sealed class ClientLoad : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _workers = [];
    private readonly HttpClient? _http;
    private readonly Stopwatch _clock;

    public LoadStats Fresh { get; } = new();
    public LoadStats KeepAlive { get; } = new();

    public ClientLoad(int port, int fresh, int keepAlive, TimeSpan pause, Stopwatch? clock = null)
    {
        _clock = clock ?? Stopwatch.StartNew();
        var endpoint = new IPEndPoint(IPAddress.Loopback, port);
        for (int i = 0; i < fresh; i++)
            _workers.Add(Task.Run(() => FreshLoopAsync(endpoint, pause)));
        if (keepAlive > 0)
        {
            var handler = new SocketsHttpHandler
            {
                MaxConnectionsPerServer = keepAlive,
                ConnectCallback = async (context, ct) =>
                {
                    Interlocked.Increment(ref KeepAlive.NewConnections);
                    var s = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                    try
                    {
                        await s.ConnectAsync(context.DnsEndPoint, ct);
                        return new NetworkStream(s, ownsSocket: true);
                    }
                    catch
                    {
                        s.Dispose();
                        throw;
                    }
                },
            };
            _http = new HttpClient(handler) { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(15) };
            for (int i = 0; i < keepAlive; i++)
                _workers.Add(Task.Run(() => KeepAliveLoopAsync(pause)));
        }
    }

    private async Task FreshLoopAsync(IPEndPoint endpoint, TimeSpan pause)
    {
        byte[] request = Encoding.ASCII.GetBytes("GET /pid HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        byte[] buffer = new byte[4096];
        while (!_stop.IsCancellationRequested)
        {
            Interlocked.Increment(ref Fresh.Made);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                double at = _clock.Elapsed.TotalSeconds;
                long t0 = Stopwatch.GetTimestamp();
                await socket.ConnectAsync(endpoint, timeout.Token);
                double connectMs = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                await socket.SendAsync(request, timeout.Token);
                int total = 0, n;
                while ((n = await socket.ReceiveAsync(buffer.AsMemory(total), timeout.Token)) > 0 && total + n < buffer.Length)
                    total += n;
                total += n;
                string answer = Encoding.ASCII.GetString(buffer, 0, total);
                int body = answer.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                string content = body < 0 ? "" : answer[(body + 4)..];
                if (answer.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase))
                    content = content.Split("\r\n") is [_, string data, ..] ? data : "";
                if (!answer.StartsWith("HTTP/1.1 200 ", StringComparison.Ordinal) ||
                    !int.TryParse(content, CultureInfo.InvariantCulture, out int pid))
                    Fresh.Fail(total == 0 ? "connection closed without an answer" : $"bad answer: {answer[..Math.Min(answer.Length, 80)]}");
                else
                {
                    Fresh.Served(pid);
                    Fresh.Latencies.Enqueue((at, connectMs, Stopwatch.GetElapsedTime(t0).TotalMilliseconds));
                }
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
            {
                Interlocked.Increment(ref Fresh.Refused);
            }
            catch (Exception e) when (!_stop.IsCancellationRequested || e is not OperationCanceledException)
            {
                Fresh.Fail($"{e.GetType().Name}: {e.Message}");
            }
            catch (OperationCanceledException)
            {
                Interlocked.Decrement(ref Fresh.Made); // stopped mid-way by Dispose: not a request
            }
            await Task.Delay(pause);
        }
    }

    private async Task KeepAliveLoopAsync(TimeSpan pause)
    {
        while (!_stop.IsCancellationRequested)
        {
            Interlocked.Increment(ref KeepAlive.Made);
            try
            {
                using HttpResponseMessage response = await _http!.GetAsync("pid");
                string body = await response.Content.ReadAsStringAsync();
                if (response.Headers.ConnectionClose == true)
                    Interlocked.Increment(ref KeepAlive.ConnectionCloseResponses);
                if (response.StatusCode != HttpStatusCode.OK || !int.TryParse(body, CultureInfo.InvariantCulture, out int pid))
                    KeepAlive.Fail($"HTTP {(int)response.StatusCode}: {body}");
                else
                    KeepAlive.Served(pid);
            }
            catch (Exception e)
            {
                KeepAlive.Fail($"{e.GetType().Name}: {e.Message} {e.InnerException?.Message}");
            }
            await Task.Delay(pause);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        await Task.WhenAll(_workers).WaitAsync(TimeSpan.FromSeconds(30));
        _http?.Dispose();
    }
}

/// <summary>A long GET /stream?seconds=N: which process sent its lines, and whether it ended.</summary>
internal sealed class LongRequest
{
    public Task<(bool Complete, HashSet<int> Pids, int Lines)> Result { get; }
    public TaskCompletionSource<int> FirstPid { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public LongRequest(int port, int seconds) => Result = Task.Run(() => RunAsync(port, seconds));

    private async Task<(bool, HashSet<int>, int)> RunAsync(int port, int seconds)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(seconds + 30) };
        using HttpResponseMessage response = await http.GetAsync($"http://127.0.0.1:{port}/stream?seconds={seconds}", HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var pids = new HashSet<int>();
        int lines = 0;
        bool complete = false;
        string? line;
        while ((line = await reader.ReadLineAsync()) != null)
        {
            if (line == "end")
            {
                complete = true;
                continue;
            }
            int pid = int.Parse(line.AsSpan(0, line.IndexOf(' ')), CultureInfo.InvariantCulture);
            pids.Add(pid);
            FirstPid.TrySetResult(pid);
            lines++;
        }
        FirstPid.TrySetResult(-1);
        return (complete && lines == seconds * 10, pids, lines);
    }
}

internal static class Fds
{
    /// <summary>The process's open descriptors, less its TCP connections (which come and go
    /// with the clients) and the assemblies the runtime has opened (.dll, .pdb, .so: they
    /// depend on which code paths ran): listeners, the control socket, pipes, epoll...</summary>
    /// <remarks>Under load a connection can open or close between reading the TCP tables and
    /// reading the descriptors, which makes one reading too high, never too low: the lowest of
    /// five readings 50 ms apart is taken.</remarks>
    public static int Count(int pid)
    {
        int lowest = int.MaxValue;
        for (int i = 0; i < 5; i++)
        {
            if (i > 0)
                Thread.Sleep(50);
            lowest = Math.Min(lowest, CountOnce(pid));
        }
        return lowest;
    }

    private static int CountOnce(int pid)
    {
        var connections = new HashSet<string>();
        foreach (string table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
        {
            if (!File.Exists(table))
                continue;
            foreach (string row in File.ReadLines(table).Skip(1))
            {
                string[] f = row.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length > 9 && f[3] != "0A") // not LISTEN
                    connections.Add($"socket:[{f[9]}]");
            }
        }
        int count = 0;
        foreach (string fd in Directory.GetFileSystemEntries($"/proc/{pid}/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(fd).LinkTarget;
            }
            catch (IOException)
            {
                continue; // closed meanwhile
            }
            if (target is null || !(connections.Contains(target) || target.EndsWith(".dll", StringComparison.Ordinal) ||
                                    target.EndsWith(".pdb", StringComparison.Ordinal) || target.Contains(".so", StringComparison.Ordinal)))
                count++;
        }
        return count;
    }

    /// <summary>Each descriptor's target, for a message when counts differ.</summary>
    public static string Describe(int pid) => string.Join(", ",
        Directory.GetFileSystemEntries($"/proc/{pid}/fd").Select(fd =>
        {
            try { return $"{Path.GetFileName(fd)}->{new FileInfo(fd).LinkTarget}"; }
            catch (IOException) { return Path.GetFileName(fd) + "->?"; }
        }));
}

/// <summary>
/// Counts SocketsHttpHandler's own retries: it sends a request again, unseen by its caller,
/// when a pooled connection turned out to be closed by the server before any answer (its
/// trace says "Retry attempt N after connection failure"). Listens to the handler's internal
/// trace source while it lives.
/// </summary>
internal sealed class HttpClientRetries : System.Diagnostics.Tracing.EventListener
{
    private long _count;

    public long Count => Interlocked.Read(ref _count);

    protected override void OnEventSourceCreated(System.Diagnostics.Tracing.EventSource source)
    {
        if (source.Name == "Private.InternalDiagnostics.System.Net.Http")
            EnableEvents(source, System.Diagnostics.Tracing.EventLevel.Verbose);
    }

    protected override void OnEventWritten(System.Diagnostics.Tracing.EventWrittenEventArgs e)
    {
        if (e.Payload is { } payload && payload.Any(p => p is string s && s.Contains("Retry attempt", StringComparison.Ordinal)))
            Interlocked.Increment(ref _count);
    }
}
