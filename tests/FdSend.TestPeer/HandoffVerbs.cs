// SPDX-License-Identifier: MIT
// FdSend.TestPeer serve --control <path> [options]
// FdSend.TestPeer raw --control <path> garbage|malformed|hello-disconnect
//
// The server process of the handoff tests (tests/FdSend.Handoff.Tests). "serve" runs a
// plain-socket TCP server on FdSend.Handoff: it takes its listeners over from the instance at
// the control path (or binds them: first start), accepts with AcceptAsync and the Superseded
// token, answers each connection with "served-by=<pid>\n" after reading a line, and once
// superseded finishes the connections in flight and exits 0. Standard input at its end (the
// test closing it) stops it too (exit 0). What it does goes to stdout, one line each (the tests
// wait for them):
//   start successor=<true|false> incumbent=<pid|none> names=<n>
//   state=<the inherited state as UTF-8>
//   fd <name> <the first line of the inherited file>
//   listen <name> <endpoint>          (one per --tcp/--unix listener)
//   ready | superseded | stopped | refused <reason> | error <type>: <message>
// Its log (HandoffOptions.Logger) goes to stderr as "<level>: <message>".
//
// serve options:
//   --tcp name=host:port      a TCP listener (port 0: any; a successor then takes whichever
//                             port the incumbent handed over)
//   --unix name=path          a Unix stream listener (not served: counted, handed on)
//   --unix-many N:dir         N Unix listeners dir/l<i>, named u<i> (not served)
//   --state text              the state handed to the successor
//   --add-fd name=file        open file (read-only) and hand it on under name
//   --take-fd name            take the inherited fd name, print its first line, hand it on
//   --ready-timeout-ms N      HandoffOptions.ReadyTimeout (and MessageTimeout)
//   --fail-before-ready       take over, then exit 3 before ReadyAsync
//   --hang                    take over, never say ready (sleeps up to 120 s, then exit 3)
//   --any-uid                 admit successors of any uid
// Exit codes: 0 done, 3 the misbehaviours above, 4 refused, 5 any other error, 2 usage.
//
// raw: connects to the control socket itself and misbehaves: "garbage" writes bytes that are
// no channel frame; "malformed" sends a well-framed message that is no handoff message;
// "hello-disconnect" sends a valid hello and closes at once. Then reads until the incumbent
// closes (10 s at most) and prints "answer <type> <reason>" for a message it got, and "closed".
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using FdSend;
using FdSend.Handoff;
using Microsoft.Extensions.Logging;

/// <summary>The handoff verbs, <c>serve</c> and <c>raw</c>.</summary>
internal static class HandoffVerbs
{
    public static readonly string[] Names = ["serve", "raw"];

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length < 3 || args[1] != "--control")
        {
            Console.Error.WriteLine("usage: FdSend.TestPeer serve|raw --control <path> ...");
            return 2;
        }
        string control = args[2];
        try
        {
            return args[0] switch
            {
                "serve" => await Serve.RunAsync(control, args[3..]),
                "raw" => await Raw.RunAsync(control, args.Length > 3 ? args[3] : ""),
                _ => 2,
            };
        }
        catch (HandoffRefusedException e)
        {
            Out.Line($"refused {e.Reason}");
            return 4;
        }
        catch (Exception e)
        {
            Out.Line($"error {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
            Console.Error.WriteLine(e);
            return 5;
        }
    }
}

internal static class Out
{
    private static readonly object Gate = new();

    public static void Line(string line)
    {
        lock (Gate)
        {
            Console.Out.WriteLine(line);
            Console.Out.Flush();
        }
    }
}

internal sealed class StderrLogger : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (this)
            Console.Error.WriteLine($"{logLevel.ToString().ToLowerInvariant()}: {formatter(state, exception)}");
    }
}

internal static class Serve
{
    public static async Task<int> RunAsync(string control, string[] args)
    {
        var tcp = new List<(string Name, IPEndPoint EndPoint)>();
        var unix = new List<(string Name, string Path)>();
        var addFds = new List<(string Name, string File)>();
        var takeFds = new List<string>();
        string? state = null;
        TimeSpan timeout = TimeSpan.FromSeconds(30);
        bool failBeforeReady = false, hang = false, anyUid = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => args[++i];
            switch (args[i])
            {
                case "--tcp":
                    (string n, string v) = Split(Next());
                    tcp.Add((n, IPEndPoint.Parse(v)));
                    break;
                case "--unix":
                    unix.Add(Split(Next()));
                    break;
                case "--unix-many":
                    string[] spec = Next().Split(':', 2);
                    for (int k = 0; k < int.Parse(spec[0], CultureInfo.InvariantCulture); k++)
                        unix.Add(($"u{k}", Path.Combine(spec[1], $"l{k}")));
                    break;
                case "--state":
                    state = Next();
                    break;
                case "--add-fd":
                    addFds.Add(Split(Next()));
                    break;
                case "--take-fd":
                    takeFds.Add(Next());
                    break;
                case "--ready-timeout-ms":
                    timeout = TimeSpan.FromMilliseconds(int.Parse(Next(), CultureInfo.InvariantCulture));
                    break;
                case "--fail-before-ready":
                    failBeforeReady = true;
                    break;
                case "--hang":
                    hang = true;
                    break;
                case "--any-uid":
                    anyUid = true;
                    break;
                default:
                    throw new ArgumentException($"unknown option {args[i]}");
            }
        }

        var options = new HandoffOptions
        {
            ControlPath = control,
            ReadyTimeout = timeout,
            MessageTimeout = timeout,
            Logger = new StderrLogger(),
            AuthorizeSuccessor = anyUid ? _ => true : null,
        };
        await using HandoffServer server = await HandoffServer.StartAsync(options);
        Out.Line($"start successor={(server.IsSuccessor ? "true" : "false")} incumbent={server.IncumbentPid?.ToString(CultureInfo.InvariantCulture) ?? "none"} names={server.InheritedNames.Count}");
        Out.Line($"state={Encoding.UTF8.GetString(server.InheritedState.Span)}");
        if (state is not null)
            server.StateToHandOff = Encoding.UTF8.GetBytes(state);
        var keep = new List<IDisposable>();
        foreach (string name in takeFds)
        {
            Microsoft.Win32.SafeHandles.SafeFileHandle? h = server.TakeFd(name);
            if (h is null)
            {
                Out.Line($"fd {name} missing");
                continue;
            }
            var buffer = new byte[256];
            int n = RandomAccess.Read(h, buffer, 0);
            Out.Line($"fd {name} {Encoding.UTF8.GetString(buffer, 0, n).Split('\n')[0]}");
            server.AddFd(name, h);
            keep.Add(h);
        }
        foreach ((string name, string file) in addFds)
        {
            Microsoft.Win32.SafeHandles.SafeFileHandle h = File.OpenHandle(file);
            server.AddFd(name, h);
            keep.Add(h);
        }
        var served = new List<Socket>();
        foreach ((string name, IPEndPoint ep) in tcp)
        {
            Socket l = server.Listen(name, ep);
            served.Add(l);
            Out.Line($"listen {name} {l.LocalEndPoint}");
        }
        int unixCount = 0;
        foreach ((string name, string path) in unix)
        {
            server.Listen(name, new UnixDomainSocketEndPoint(path), backlog: 4);
            unixCount++;
        }
        if (unixCount > 0)
            Out.Line($"unix-listeners {unixCount}");
        if (failBeforeReady)
        {
            Out.Line("failing");
            Environment.Exit(3); // no cleanup: as a crash
        }
        if (hang)
        {
            Out.Line("hanging");
            await Task.Delay(TimeSpan.FromSeconds(120));
            Environment.Exit(3);
        }

        var inFlight = new ConcurrentDictionary<Task, bool>();
        Task[] loops = served.Select(l => AcceptLoopAsync(l, server.Superseded, inFlight)).ToArray();
        await server.ReadyAsync();
        Out.Line("ready");

        // Superseded, or standard input at its end (the test stopping this process).
        Task stdinClosed = Task.Run(() =>
        {
            while (Console.In.ReadLine() is not null)
            {
            }
        });
        Task supersededTask = Task.Delay(Timeout.Infinite, server.Superseded).ContinueWith(_ => { }, TaskScheduler.Default);
        Task first = await Task.WhenAny(supersededTask, stdinClosed);
        Out.Line(first == supersededTask ? "superseded" : "stopped");
        if (first != supersededTask)
            await server.DisposeAsync(); // stops the accept loops
        await Task.WhenAll(loops).WaitAsync(TimeSpan.FromSeconds(20));
        await Task.WhenAll(inFlight.Keys).WaitAsync(TimeSpan.FromSeconds(20));
        foreach (IDisposable d in keep)
            d.Dispose();
        return 0;
    }

    private static (string, string) Split(string nameValue)
    {
        int eq = nameValue.IndexOf('=');
        return eq > 0 ? (nameValue[..eq], nameValue[(eq + 1)..]) : throw new ArgumentException($"'{nameValue}' is not name=value");
    }

    private static async Task AcceptLoopAsync(Socket listener, CancellationToken superseded, ConcurrentDictionary<Task, bool> inFlight)
    {
        while (!superseded.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await listener.AcceptAsync(superseded);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (Exception e) when (e is ObjectDisposedException or SocketException)
            {
                if (!superseded.IsCancellationRequested)
                    Console.Error.WriteLine($"accept-error: {e.GetType().Name}: {e.Message}");
                return;
            }
            Task t = AnswerAsync(connection);
            inFlight[t] = true;
            _ = t.ContinueWith(done => inFlight.TryRemove(done, out _), TaskScheduler.Default);
        }
    }

    private static async Task AnswerAsync(Socket connection)
    {
        using (connection)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var buffer = new byte[256];
            int got = 0;
            try
            {
                // The request is read to its blank line ("hi\n\n"), as the C program
                // (native/examples/handoff.c) reads an HTTP request head.
                while (got < buffer.Length && buffer.AsSpan(0, got).IndexOf("\n\n"u8) < 0)
                {
                    int n = await connection.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None, timeout.Token);
                    if (n == 0)
                        return;
                    got += n;
                }
                await connection.SendAsync(Encoding.ASCII.GetBytes($"served-by={Environment.ProcessId}\n"), SocketFlags.None, timeout.Token);
                connection.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                Console.Error.WriteLine($"connection-error: {e.Message}");
            }
        }
    }
}

internal static class Raw
{
    public static async Task<int> RunAsync(string control, string mode)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(control));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        switch (mode)
        {
            case "garbage":
                await socket.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nthis is not a channel frame\r\n\r\n"), SocketFlags.None);
                break;
            case "malformed":
            {
                var channel = new FdChannel(socket, new FdChannelOptions { LeaveOpen = true });
                await channel.SendAsync(Encoding.UTF8.GetBytes("hello\nversions 1\n"), default, timeout.Token);
                break;
            }
            case "hello-disconnect":
            {
                var channel = new FdChannel(socket, new FdChannelOptions { LeaveOpen = true });
                await channel.SendAsync(Encoding.UTF8.GetBytes($"hello\nversions=1\npid={Environment.ProcessId}\n"), default, timeout.Token);
                socket.Close();
                Out.Line("closed");
                return 0;
            }
            default:
                throw new ArgumentException($"unknown raw mode '{mode}'");
        }
        // What the incumbent answers (if anything), until it closes.
        await using (var channel = new FdChannel(socket, new FdChannelOptions { LeaveOpen = true }))
        {
            try
            {
                await foreach (FdMessage m in channel.ReadAllAsync(timeout.Token))
                {
                    using (m)
                    {
                        string[] lines = Encoding.UTF8.GetString(m.Payload.Span).Split('\n');
                        string reason = lines.FirstOrDefault(l => l.StartsWith("reason=", StringComparison.Ordinal))?[7..] ?? "";
                        Out.Line($"answer {lines[0]} {reason}");
                    }
                }
            }
            catch (Exception e) when (e is IOException or SocketException)
            {
                // A reset is how a Unix socket reports a peer that closed with data unread.
                Out.Line($"channel-error {e.Message.ReplaceLineEndings(" ")}");
            }
        }
        Out.Line("closed");
        return 0;
    }
}
