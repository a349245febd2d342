// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Net;
using System.Text;
using FdSend;

[assembly: System.Runtime.Versioning.UnsupportedOSPlatform("windows")]

namespace FdSend.Systemd.Tests;

/// <summary>A test NOTIFY_SOCKET: a bound Unix datagram socket (a path, or an abstract name
/// given as '@name') that receives sd_notify datagrams with their descriptors.</summary>
internal sealed class NotifyReceiver : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);

    /// <summary>What to put in NOTIFY_SOCKET.</summary>
    public string Address { get; }

    public NotifyReceiver(string dir, bool isAbstract)
    {
        Address = isAbstract ? $"@fdsend-systemd-test-{Guid.NewGuid():N}" : Path.Combine(dir, "notify.sock");
        _socket.Bind(new UnixDomainSocketEndPoint(isAbstract ? "\0" + Address[1..] : Address));
    }

    /// <summary>The next datagram (within <paramref name="seconds"/>): its text and descriptors.</summary>
    public (string Text, ReceivedFds Fds) Receive(double seconds = 30)
    {
        _socket.ReceiveTimeout = (int)(seconds * 1000);
        var buffer = new byte[4096];
        ReceivedFds r = _socket.ReceiveFds(buffer);
        return (Encoding.UTF8.GetString(buffer, 0, r.BytesReceived), r);
    }

    /// <summary>The next datagram's text; fails if it carried descriptors.</summary>
    public string ReceiveText(double seconds = 30)
    {
        (string text, ReceivedFds fds) = Receive(seconds);
        using (fds)
            Assert.That(fds.Count, Is.Zero, $"'{text}' came with descriptors");
        return text;
    }

    /// <summary>Whether a datagram is waiting.</summary>
    public bool HasMore => _socket.Available > 0 || _socket.Poll(0, SelectMode.SelectRead);

    public void Dispose() => _socket.Dispose();
}

internal static class Proc
{
    /// <summary>What /proc/PID/fd/FD points to ("socket:[N]"), or null if it is not open.</summary>
    public static string? Target(int pid, int fd) =>
        File.Exists($"/proc/{pid}/fdinfo/{fd}") ? new FileInfo($"/proc/{pid}/fd/{fd}").LinkTarget : null;

    /// <summary>Every descriptor of process <paramref name="pid"/> that refers to <paramref name="target"/>.</summary>
    public static int[] FdsOf(int pid, string target) =>
        Directory.GetFiles($"/proc/{pid}/fd")
            .Where(f => new FileInfo(f).LinkTarget == target)
            .Select(f => int.Parse(Path.GetFileName(f))).ToArray();

    public static bool IsCloseOnExec(int pid, int fd) =>
        (Convert.ToInt64(File.ReadAllLines($"/proc/{pid}/fdinfo/{fd}").First(l => l.StartsWith("flags:"))[6..].Trim(), 8) & 0x80000) != 0;

    public static string[] Environment(int pid) => File.ReadAllText($"/proc/{pid}/environ").Split('\0');

    public static bool IsAlive(int pid)
    {
        try
        {
            return !File.ReadAllText($"/proc/{pid}/stat").Split(") ")[1].StartsWith('Z');
        }
        catch (IOException)
        {
            return false;
        }
    }

    public static void Signal(int pid, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-" + signal, pid.ToString()]) { UseShellExecute = false })!;
        kill.WaitForExit();
        Assert.That(kill.ExitCode, Is.Zero, $"kill -{signal} {pid}");
    }

    public static void WaitGone(int pid, double seconds = 30)
    {
        var sw = Stopwatch.StartNew();
        while (IsAlive(pid))
        {
            if (sw.Elapsed.TotalSeconds > seconds)
                Assert.Fail($"process {pid} still runs after {seconds} s");
            Thread.Sleep(50);
        }
    }
}

/// <summary>The test program (App/), started with its stdout and stderr read line by line.</summary>
internal sealed class App : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _out = [];
    private readonly List<string> _err = [];
    private readonly HashSet<int> _pids = [];

    public static string Dll => Path.Combine(AppContext.BaseDirectory, "FdSend.Systemd.TestApp.dll");

    /// <summary>The dotnet host that runs the tests (dotnet test sets DOTNET_HOST_PATH).</summary>
    public static string DotnetHost()
    {
        string? host = System.Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
            return host;
        string? self = System.Environment.ProcessPath;
        return self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";
    }

    public App(string program, IEnumerable<string> arguments)
    {
        var psi = new ProcessStartInfo(program, arguments)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string k in psi.Environment.Keys.Where(k => k.StartsWith("LISTEN_") || k == "NOTIFY_SOCKET").ToList())
            psi.Environment.Remove(k);
        _process = new Process { StartInfo = psi };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_out) { _out.Add(e.Data); Monitor.PulseAll(_out); } };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _err.Add(e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        _pids.Add(_process.Id);
    }

    public int Pid => _process.Id;

    public string Stderr { get { lock (_out) return string.Join("\n", _err); } }

    /// <summary>The <paramref name="nth"/> (0-based) stdout line starting with
    /// <paramref name="prefix"/>, from this process or a successor that shares its stdout.</summary>
    public string WaitLine(string prefix, int nth = 0, double seconds = 60)
    {
        var sw = Stopwatch.StartNew();
        lock (_out)
        {
            while (true)
            {
                var hits = _out.Where(l => l.StartsWith(prefix)).ToList();
                if (hits.Count > nth)
                    return hits[nth];
                if (sw.Elapsed.TotalSeconds > seconds)
                    Assert.Fail($"no line '{prefix}' (#{nth}) within {seconds} s; stdout:\n{string.Join("\n", _out)}\nstderr:\n{string.Join("\n", _err)}");
                Monitor.Wait(_out, 200);
            }
        }
    }

    /// <summary>Waits (60 s at most) until stderr has a line containing <paramref name="text"/>.</summary>
    public void WaitStderr(string text, double seconds = 60)
    {
        var sw = Stopwatch.StartNew();
        while (!Stderr.Contains(text))
        {
            if (sw.Elapsed.TotalSeconds > seconds)
                Assert.Fail($"stderr had no '{text}' within {seconds} s:\n{Stderr}");
            Thread.Sleep(20);
        }
    }

    /// <summary>The value of key=value in a line.</summary>
    public static string Field(string line, string key) =>
        line.Split(' ').First(p => p.StartsWith(key + "="))[(key.Length + 1)..];

    /// <summary>Another process to kill at Dispose if it still runs (a successor).</summary>
    public void Track(int pid) => _pids.Add(pid);

    /// <summary>The exit code, once the process has exited (polled: WaitForExit would also
    /// wait for the end of its stdout, which a successor that inherited it keeps open).</summary>
    public int WaitExit(double seconds = 30)
    {
        var sw = Stopwatch.StartNew();
        while (!_process.HasExited)
        {
            if (sw.Elapsed.TotalSeconds > seconds)
                Assert.Fail($"the app did not exit within {seconds} s; stderr:\n{Stderr}");
            Thread.Sleep(20);
        }
        return _process.ExitCode;
    }

    public void Dispose()
    {
        foreach (int pid in _pids.Where(Proc.IsAlive))
        {
            try
            {
                using Process p = Process.GetProcessById(pid);
                p.Kill();
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                // gone meanwhile
            }
        }
        _process.Dispose();
    }
}

internal static class Net
{
    public static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    /// <summary>Connects to 127.0.0.1:<paramref name="port"/> and reads the serving process's pid.</summary>
    public static int ServedBy(int port)
    {
        using var c = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        c.ReceiveTimeout = 30_000;
        c.Connect(new IPEndPoint(IPAddress.Loopback, port));
        var buffer = new byte[32];
        int n = 0, got;
        while ((got = c.Receive(buffer, n, buffer.Length - n, SocketFlags.None)) > 0)
            n += got;
        return int.Parse(Encoding.ASCII.GetString(buffer, 0, n).Trim());
    }
}
