// SPDX-License-Identifier: MIT
using System.Diagnostics;
using FdSend.KestrelScenario;

namespace FdSend.Demo;

/// <summary>
/// Scenario 4, zero-downtime restarts of an ASP.NET Core app (FdSend.AspNetCore): the
/// sample samples/HandoffWeb serves on 127.0.0.1 while clients keep sending requests, and is
/// handed over three times: twice by starting a new process (as a deploy script or systemd's
/// ExecReload would), once by asking it to upgrade itself (POST /upgrade). Each new process
/// takes the listening socket over; each old one finishes its requests and exits.
/// </summary>
internal static class KestrelDemo
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(60);

    public static int Run()
    {
        Console.WriteLine("=== 4. An ASP.NET Core app (Kestrel) handed over 3 times while clients keep sending requests ===");
        string dir = Self.TempDir(); // 0700: the control socket's directory
        string control = Path.Combine(dir, "handoff.sock");
        var started = new List<WebProcess>();
        var pids = new List<int>();
        int? adopted = null;
        WebProcess.Echo = line =>
        {
            if (line.StartsWith("HandoffWeb ", StringComparison.Ordinal) || line.Contains("FdSend.AspNetCore[", StringComparison.Ordinal))
                Console.WriteLine($"  [app] {line.Replace("info: ", "", StringComparison.Ordinal)}");
        };
        try
        {
            var clock = Stopwatch.StartNew();
            started.Add(WebProcess.Start(control, 0));
            int port = started[0].WaitReady(Guard);
            pids.Add(started[0].Pid);
            Console.WriteLine($"[demo] process {started[0].Pid} serves http://127.0.0.1:{port}/; clients start: " +
                              "2 opening a new connection per request, 2 sharing a keep-alive HttpClient");
            ClientLoad load = new(port, fresh: 2, keepAlive: 2, pause: TimeSpan.FromMilliseconds(5));
            bool exitsOk = true;
            try
            {
                Thread.Sleep(1000);
                for (int handoff = 1; handoff <= 3; handoff++)
                {
                    int old = pids[^1];
                    long t0 = Stopwatch.GetTimestamp();
                    int next;
                    if (handoff < 3)
                    {
                        Console.WriteLine($"[demo] handoff {handoff}: starting a new process (as a deploy script would)");
                        WebProcess p = WebProcess.Start(control, 0);
                        started.Add(p);
                        p.WaitReady(Guard);
                        next = p.Pid;
                    }
                    else
                    {
                        Console.WriteLine($"[demo] handoff {handoff}: POST /upgrade (the app starts its own successor)");
                        using var http = new HttpClient { Timeout = Guard };
                        using HttpResponseMessage r = http.PostAsync($"http://127.0.0.1:{port}/upgrade", null).GetAwaiter().GetResult();
                        next = WebProcess.WaitReadyOther(pids, Guard);
                        adopted = next;
                    }
                    pids.Add(next);
                    double readyMs = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                    int code = started.Single(p => p.Pid == old).WaitExit(Guard);
                    exitsOk &= code == 0;
                    Console.WriteLine($"[demo] process {next} took over {readyMs:0} ms after it was started; " +
                                      $"process {old} drained and exited with {code} {Stopwatch.GetElapsedTime(t0).TotalMilliseconds - readyMs:0} ms later");
                    Thread.Sleep(700);
                }
            }
            finally
            {
                load.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            Console.WriteLine($"[client] new connection per request: {load.Fresh}");
            Console.WriteLine($"[client] keep-alive HttpClient: {load.KeepAlive} ({load.KeepAlive.NewConnections} connections opened)");
            foreach (string e in load.Fresh.Errors.Concat(load.KeepAlive.Errors))
                Console.WriteLine($"[client]   {e}");
            bool ok = exitsOk && load.Fresh.Refused == 0 && load.Fresh.Failed == 0 && load.KeepAlive.Failed == 0
                      && pids.All(p => load.Fresh.ByPid.ContainsKey(p) || load.KeepAlive.ByPid.ContainsKey(p));
            Console.WriteLine(ok
                ? $"[client] no request was refused or failed across 3 handoffs; 4 processes served ({clock.Elapsed.TotalSeconds:0.0} s)\n"
                : "[client] the handoffs lost requests or a process failed\n");
            return ok ? 0 : 1;
        }
        finally
        {
            WebProcess.Echo = null;
            if (adopted is int pid)
            {
                WebProcess.Terminate(pid);
                for (int i = 0; i < 100 && WebProcess.Exists(pid); i++)
                    Thread.Sleep(100);
            }
            foreach (WebProcess p in started)
                p.Dispose();
            Directory.Delete(dir, recursive: true);
        }
    }
}
