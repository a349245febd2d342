using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace FdSend.Demo;

/// <summary>
/// Scenario 2, a zero-downtime restart: server A accepts TCP connections on 127.0.0.1,
/// starts its successor B, hands B its listening socket over a Unix socket and exits. A
/// client connects throughout; connections that arrive during the handoff wait in the
/// kernel's accept queue of the one listening socket, so none is refused.
/// </summary>
internal static class HandoffDemo
{
    private static readonly TimeSpan ServeBeforeHandoff = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan ClientRunTime = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(60);

    public static int Run()
    {
        Console.WriteLine("=== 2. Handing a listening TCP socket to a successor, while a client keeps connecting ===");
        string dir = Self.TempDir();
        try
        {
            ProcessStartInfo psi = Self.StartInfo("handoff-server", Path.Combine(dir, "handoff.sock"));
            psi.RedirectStandardOutput = true;
            using Process serverA = Process.Start(psi) ?? throw new InvalidOperationException("could not start server A");

            // Forward what A (and B, which inherits A's stdout) print; catch the port.
            var port = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
            var outputDone = Task.Run(() =>
            {
                string? line;
                while ((line = serverA.StandardOutput.ReadLine()) != null)
                {
                    if (line.StartsWith("PORT ", StringComparison.Ordinal))
                        port.TrySetResult(int.Parse(line.AsSpan(5)));
                    else
                        Console.WriteLine(line);
                }
                port.TrySetException(new InvalidOperationException("server A exited before listening"));
            });
            if (!port.Task.Wait(Guard))
                throw new TimeoutException("server A did not start listening");

            ClientStats stats = RunClient(port.Task.Result);
            if (!serverA.WaitForExit(Guard) || !outputDone.Wait(Guard))
                throw new TimeoutException("the servers did not exit");

            Console.WriteLine($"[client] {stats.Made} connections made, {stats.Refused} refused, {stats.Failed} failed; " +
                              $"{stats.ByA} served by A, {stats.ByB} served by B");
            bool ok = stats.Refused == 0 && stats.Failed == 0 && stats.ByA > 0 && stats.ByB > 0 && serverA.ExitCode == 0;
            Console.WriteLine(ok
                ? "[client] no connection was lost across the handoff\n"
                : "[client] the handoff lost connections or a server failed\n");
            return ok ? 0 : 1;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private sealed class ClientStats
    {
        public int Made, Refused, Failed, ByA, ByB;
    }

    /// <summary>Connect, say HELLO, read who answered; again and again; then say QUIT.</summary>
    private static ClientStats RunClient(int port)
    {
        var stats = new ClientStats();
        var endpoint = new IPEndPoint(IPAddress.Loopback, port);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < ClientRunTime)
        {
            string? answer = Ask(endpoint, "HELLO", stats);
            if (answer is null)
                continue;
            stats.Made++;
            if (answer.StartsWith("A ", StringComparison.Ordinal)) stats.ByA++;
            else if (answer.StartsWith("B ", StringComparison.Ordinal)) stats.ByB++;
            Thread.Sleep(2);
        }
        Ask(endpoint, "QUIT", stats);
        return stats;
    }

    private static string? Ask(IPEndPoint endpoint, string request, ClientStats stats)
    {
        try
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.ReceiveTimeout = 10_000;
            socket.Connect(endpoint);
            socket.Send(Encoding.ASCII.GetBytes(request + "\n"));
            return ReadLine(socket);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            stats.Refused++;
        }
        catch (SocketException e)
        {
            Console.WriteLine($"[client] connection failed: {e.SocketErrorCode}");
            stats.Failed++;
        }
        return null;
    }

    /// <summary>Server A: listen, serve for a while, then hand the listener to B and exit.</summary>
    public static int Server(string handoffPath)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(128);
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        Console.WriteLine($"[server A {Environment.ProcessId}] listening on 127.0.0.1:{port}");
        Console.WriteLine($"PORT {port}");

        int served = Serve("A", listener, Stopwatch.StartNew(), ServeBeforeHandoff);

        using var handoff = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        handoff.Bind(new UnixDomainSocketEndPoint(handoffPath));
        handoff.Listen(1);
        using Process successor = Self.Start("handoff-successor", handoffPath);
        using Socket toB = handoff.Accept();
        PeerCredentials peer = toB.GetPeerCredentials();
        if (peer.Pid != successor.Id)
        {
            Console.WriteLine($"[server A] refusing the handoff: the peer is pid {peer.Pid}, not my successor {successor.Id}");
            return 1;
        }
        toB.SendFds("listener"u8, listener);
        // Wait for B's acknowledgement, so that A never exits with the handoff unfinished.
        Span<byte> ack = stackalloc byte[1];
        if (toB.Receive(ack) != 1)
        {
            Console.WriteLine("[server A] the successor did not acknowledge the handoff");
            return 1;
        }
        Console.WriteLine($"[server A] served {served} connections, handed the listening socket to pid {successor.Id} (verified by peer credentials) and exits");
        return 0;
    }

    /// <summary>Server B: receive the listening socket and serve until a client says QUIT.</summary>
    public static int Successor(string handoffPath)
    {
        using var fromA = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        fromA.Connect(new UnixDomainSocketEndPoint(handoffPath));
        Socket listener;
        using (ReceivedFds received = fromA.ReceiveFds(new byte[16], maxFds: 1))
        {
            if (received.Count != 1)
            {
                Console.WriteLine("[server B] no listening socket arrived");
                return 1;
            }
            listener = received.TakeSocket(0);
        }
        using (listener)
        {
            fromA.Send("k"u8);
            Console.WriteLine($"[server B {Environment.ProcessId}] took over the listening socket on {listener.LocalEndPoint}");
            int served = Serve("B", listener, Stopwatch.StartNew(), Guard);
            Console.WriteLine($"[server B] served {served} connections, then was told to quit");
        }
        return 0;
    }

    /// <summary>Answer "HELLO" with the server's name until the time is up or "QUIT" comes.</summary>
    private static int Serve(string name, Socket listener, Stopwatch clock, TimeSpan duration)
    {
        int served = 0;
        while (clock.Elapsed < duration)
        {
            int waitMicros = (int)Math.Max(1, (duration - clock.Elapsed).TotalMicroseconds);
            if (!listener.Poll(Math.Min(waitMicros, 100_000), SelectMode.SelectRead))
                continue;
            using Socket client = listener.Accept();
            string? request = ReadLine(client);
            client.Send(Encoding.ASCII.GetBytes($"{name} {Environment.ProcessId}\n"));
            if (request == "QUIT")
                break;
            served++;
        }
        return served;
    }

    private static string? ReadLine(Socket socket)
    {
        var line = new StringBuilder();
        Span<byte> b = stackalloc byte[1];
        while (socket.Receive(b) == 1)
        {
            if (b[0] == (byte)'\n')
                return line.ToString();
            line.Append((char)b[0]);
        }
        return line.Length > 0 ? line.ToString() : null;
    }
}
