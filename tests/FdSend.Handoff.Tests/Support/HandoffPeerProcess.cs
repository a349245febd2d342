// SPDX-License-Identifier: MIT
// FdSend.TestPeer's handoff verbs (tests/FdSend.TestPeer) as a real process, and a client
// that loads the TCP server it runs with one new connection per request.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;

namespace FdSend.Handoff.Tests.Support;

/// <summary>One FdSend.TestPeer process: its stdout lines (what it did) and stderr (its
/// handoff log) collected; stopped by closing its standard input, killed if still running
/// when disposed.</summary>
public sealed class HandoffPeerProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _stdout = [];
    private readonly StringBuilder _stderr = new();

    private HandoffPeerProcess(Process process) => _process = process;

    public int Pid => _process.Id;

    public static string PeerDll => Peer.PeerDll;

    /// <summary>The dotnet host that runs the tests (FdSend.Tests' Peer.DotnetHost).</summary>
    public static string DotnetHost() => Peer.DotnetHost();

    /// <summary>Starts <c>FdSend.TestPeer args...</c>; with <paramref name="runAs"/>, under
    /// <c>setpriv</c> with that user's ids (the test runs as root).</summary>
    public static HandoffPeerProcess Start(IEnumerable<string> args, string? runAs = null)
    {
        var psi = new ProcessStartInfo(runAs is null ? DotnetHost() : "setpriv")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        if (runAs is not null)
        {
            foreach (string a in new[] { $"--reuid={runAs}", "--regid=nogroup", "--clear-groups", DotnetHost() })
                psi.ArgumentList.Add(a);
            psi.Environment["DOTNET_CLI_HOME"] = "/tmp";
            psi.Environment["HOME"] = "/tmp";
        }
        psi.ArgumentList.Add(PeerDll);
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        Process process = Process.Start(psi) ?? throw new InvalidOperationException("could not start FdSend.TestPeer");
        var peer = new HandoffPeerProcess(process);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
                lock (peer._stdout)
                {
                    peer._stdout.Add(e.Data);
                    Monitor.PulseAll(peer._stdout);
                }
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (peer._stderr) peer._stderr.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return peer;
    }

    public string Stdout
    {
        get
        {
            lock (_stdout)
                return string.Join('\n', _stdout);
        }
    }

    public string Stderr
    {
        get
        {
            lock (_stderr)
                return _stderr.ToString();
        }
    }

    /// <summary>The first stdout line that starts with <paramref name="prefix"/>, waiting for
    /// it (fails the test if the process exits or the time runs out first).</summary>
    public string WaitForLine(string prefix, int timeoutMs = 30_000)
    {
        var sw = Stopwatch.StartNew();
        lock (_stdout)
        {
            while (true)
            {
                string? line = _stdout.FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
                if (line is not null)
                    return line;
                long left = timeoutMs - sw.ElapsedMilliseconds;
                if (left <= 0 || (_process.HasExited && !Monitor.Wait(_stdout, 200)))
                    break;
                Monitor.Wait(_stdout, (int)Math.Min(left, 200));
            }
        }
        Assert.Fail($"FdSend.TestPeer {Pid} {(_process.HasExited ? $"exited ({_process.ExitCode})" : "is still running")} without printing '{prefix}' within {timeoutMs} ms.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
        return "";
    }

    /// <summary>Waits for stderr (the handoff log) to contain <paramref name="text"/>.</summary>
    public void WaitForLog(string text, int timeoutMs = 30_000)
    {
        var sw = Stopwatch.StartNew();
        while (!Stderr.Contains(text, StringComparison.Ordinal))
        {
            if (sw.ElapsedMilliseconds > timeoutMs)
                Assert.Fail($"FdSend.TestPeer {Pid} did not log '{text}' within {timeoutMs} ms.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
            Thread.Sleep(20);
        }
    }

    /// <summary>The port of the TCP listener <paramref name="name"/> ("listen name ip:port").</summary>
    public int Port(string name = "web") =>
        IPEndPoint.Parse(WaitForLine($"listen {name} ").Split(' ')[2]).Port;

    /// <summary>Waits for the process to exit and returns its exit code.</summary>
    public int WaitForExit(int timeoutMs = 30_000)
    {
        if (!_process.WaitForExit(timeoutMs))
        {
            Kill();
            Assert.Fail($"FdSend.TestPeer {Pid} did not exit within {timeoutMs} ms.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
        }
        _process.WaitForExit(); // flush the async readers
        return _process.ExitCode;
    }

    public bool HasExited => _process.HasExited;

    /// <summary>Closes its standard input: a serving peer stops and exits 0.</summary>
    public void Stop() => _process.StandardInput.Close();

    public void Kill()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
    }

    public override string ToString() => $"FdSend.TestPeer {Pid}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            try
            {
                _process.StandardInput.Close();
            }
            catch (IOException)
            {
            }
            if (!_process.WaitForExit(5_000))
                Kill();
        }
        _process.WaitForExit(5_000);
        _process.Dispose();
    }
}

/// <summary>A bounded client loop: one new TCP connection to 127.0.0.1:port per request,
/// "hi\n\n" sent, the answer "served-by=pid" read to its end; counts answers per pid, refused
/// connections and other failures.</summary>
public sealed class LoadClient : IAsyncDisposable
{
    private const int MaxRequests = 20_000;

    private readonly IPEndPoint _server;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<int, int> _servedBy = new();
    private readonly ConcurrentQueue<string> _failures = new();
    private readonly Task _loop;
    private int _refused, _failed, _requests;

    public LoadClient(int port, int delayMs = 3)
    {
        _server = new IPEndPoint(IPAddress.Loopback, port);
        _loop = Task.Run(() => RunAsync(delayMs));
    }

    public int Requests => Volatile.Read(ref _requests);
    public int Refused => Volatile.Read(ref _refused);
    public int Failed => Volatile.Read(ref _failed);
    public IReadOnlyDictionary<int, int> ServedBy => _servedBy;

    public int ServedByPid(int pid) => _servedBy.TryGetValue(pid, out int n) ? n : 0;

    /// <summary>Waits until <paramref name="pid"/> has answered at least <paramref name="count"/> requests.</summary>
    public void WaitForServed(int pid, int count, int timeoutMs = 30_000)
    {
        var sw = Stopwatch.StartNew();
        while (ServedByPid(pid) < count)
        {
            if (sw.ElapsedMilliseconds > timeoutMs || _loop.IsCompleted)
                Assert.Fail($"process {pid} answered {ServedByPid(pid)} of {count} requests within {timeoutMs} ms. {Summary}");
            Thread.Sleep(10);
        }
    }

    public string Summary =>
        $"requests={Requests} refused={Refused} failed={Failed} served-by=[{string.Join(", ", _servedBy.Select(kv => $"{kv.Key}:{kv.Value}"))}] first failures: {string.Join(" | ", _failures.Take(5))}";

    /// <summary>Stops the loop and asserts that no request was refused or failed.</summary>
    public async Task StopAndAssertCleanAsync()
    {
        await DisposeAsync();
        Assert.That((Refused, Failed), Is.EqualTo((0, 0)), $"refused and failed requests: {Summary}");
    }

    /// <summary>One request on a new connection: the pid that answered.</summary>
    public static async Task<int> RequestAsync(int port, CancellationToken cancellationToken = default)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), timeout.Token);
        await s.SendAsync("hi\n\n"u8.ToArray(), SocketFlags.None, timeout.Token); // a request head, to its blank line
        var buffer = new byte[1024];
        int got = 0, n;
        while (got < buffer.Length && (n = await s.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None, timeout.Token)) > 0)
            got += n;
        // "served-by=<pid>\n": the whole answer of FdSend.TestPeer, the body of the C
        // program's (native/examples/handoff.c) HTTP answer.
        string answer = Encoding.ASCII.GetString(buffer, 0, got);
        int at = answer.IndexOf("served-by=", StringComparison.Ordinal);
        int end = at < 0 ? -1 : answer.IndexOf('\n', at);
        if (at < 0 || end < 0)
            throw new IOException($"unexpected answer '{answer}'");
        return int.Parse(answer.AsSpan(at + 10, end - at - 10), System.Globalization.CultureInfo.InvariantCulture);
    }

    private async Task RunAsync(int delayMs)
    {
        while (!_stop.IsCancellationRequested && _requests < MaxRequests)
        {
            Interlocked.Increment(ref _requests);
            try
            {
                int pid = await RequestAsync(_server.Port);
                _servedBy.AddOrUpdate(pid, 1, (_, v) => v + 1);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
            {
                Interlocked.Increment(ref _refused);
                _failures.Enqueue("refused");
            }
            catch (Exception e)
            {
                Interlocked.Increment(ref _failed);
                _failures.Enqueue($"{e.GetType().Name}: {e.Message}");
            }
            if (delayMs > 0)
                await Task.Delay(delayMs);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        await _loop.WaitAsync(TimeSpan.FromSeconds(30));
    }
}
