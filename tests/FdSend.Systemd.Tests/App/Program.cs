// SPDX-License-Identifier: MIT
// The systemd tests' program (tests/FdSend.Systemd.Tests). Lines on stdout are what the tests
// read; the library's log goes to stderr.
//   serve CONTROL_PATH PORT [--fdstore]   a handoff server on 127.0.0.1:PORT named "web":
//       socket-activated on a first start, handed over on SIGHUP, STOPPING=1 on SIGTERM
//   import                                SystemdListenFds.Import, and what it left behind
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using FdSend;
using FdSend.Handoff;
using Microsoft.Extensions.Logging;

[assembly: System.Runtime.Versioning.UnsupportedOSPlatform("windows")]

var log = new StderrLogger();
Console.Out.Flush();
switch (args.FirstOrDefault())
{
    case "serve":
        return await Serve(args[1], int.Parse(args[2]), args.Contains("--fdstore"), log);
    case "import":
        return Import(log);
    default:
        Console.Error.WriteLine("usage: serve CONTROL_PATH PORT [--fdstore] | import");
        return 2;
}

static void Say(string line)
{
    Console.Out.WriteLine(line);
    Console.Out.Flush();
}

static async Task<int> Serve(string controlPath, int port, bool fdStore, ILogger log)
{
    string listenPidAtStart = Environment.GetEnvironmentVariable("LISTEN_PID") ?? "-";
    await using HandoffServer server = await HandoffServer.StartAsync(new HandoffOptions
    {
        ControlPath = controlPath,
        Logger = log,
    });
    Socket listener = server.Listen("web", new IPEndPoint(IPAddress.Loopback, port));
    if (fdStore && !server.IsSuccessor)
        SystemdNotify.StoreFds("web", listener);      // FDSTORE=1, FDNAME=web, with the listener

    using var stopping = CancellationTokenSource.CreateLinkedTokenSource(server.Superseded);
    Task serving = AcceptLoop(listener, stopping.Token);
    await server.ReadyAsync();                        // READY=1 (a successor: with MAINPID=)

    using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
    {
        context.Cancel = true;
        SystemdNotify.Reloading();                    // RELOADING=1, MONOTONIC_USEC=...
        _ = server.UpgradeAsync();                    // the successor takes over
    });
    using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
    {
        context.Cancel = true;
        SystemdNotify.Stopping();                     // STOPPING=1: a real stop, not a handoff
        stopping.Cancel();
    });

    Say($"ready pid={Environment.ProcessId} successor={server.IsSuccessor} listen-pid-at-start={listenPidAtStart} " +
        $"listen-pid-now={Environment.GetEnvironmentVariable("LISTEN_PID") ?? "-"} " +
        $"fd={listener.SafeHandle.DangerousGetHandle()}");
    await serving;                                    // until superseded or stopped
    Say($"exit pid={Environment.ProcessId} superseded={server.Superseded.IsCancellationRequested}");
    return 0;
}

// Answers every connection with this process's pid, until superseded or stopped.
static async Task AcceptLoop(Socket listener, CancellationToken stopping)
{
    while (!stopping.IsCancellationRequested)
    {
        Socket client;
        try
        {
            client = await listener.AcceptAsync(stopping);
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
            return;
        }
        using (client)
            client.Send(Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n"));
    }
}

static int Import(ILogger log)
{
    using (SystemdListenFds fds = SystemdListenFds.Import(log))
    {
        Say($"count={fds.Count} names={string.Join(",", fds.Names)}");
        foreach (string p in fds.Problems)
            Say($"problem: {p}");
        foreach (string name in fds.Names.Distinct().ToList())
        {
            using Socket? s = fds.TakeSocket(name);
            Say($"take-socket {name}={(s is null ? "null" : s.LocalEndPoint?.ToString())}");
        }
        Say($"env LISTEN_PID={Environment.GetEnvironmentVariable("LISTEN_PID") ?? "-"} LISTEN_FDS={Environment.GetEnvironmentVariable("LISTEN_FDS") ?? "-"} LISTEN_FDNAMES={Environment.GetEnvironmentVariable("LISTEN_FDNAMES") ?? "-"}");
        Say($"fd3 before-dispose={FdState(3)}");
    }
    Say($"fd3 after-dispose={FdState(3)}");
    Say($"fd4 after-dispose={FdState(4)}");
    return 0;
}

// "closed", or "open cloexec=BOOL" from /proc/self/fdinfo (flags are octal; O_CLOEXEC 02000000).
static string FdState(int fd)
{
    string path = $"/proc/self/fdinfo/{fd}";
    if (!File.Exists(path))
        return "closed";
    string flags = File.ReadAllLines(path).First(l => l.StartsWith("flags:")).Split(':')[1].Trim();
    bool cloexec = (Convert.ToInt64(flags, 8) & 0x80000) != 0;
    return $"open cloexec={cloexec.ToString().ToLowerInvariant()}";
}

sealed class StderrLogger : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        Console.Error.WriteLine($"{logLevel.ToString().ToLowerInvariant()}: {formatter(state, exception)}");
        Console.Error.Flush();
    }
}
