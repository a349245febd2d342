// SPDX-License-Identifier: MIT
// The handoff benchmark (bench/README.md, "Handoff").
//   HandoffBench [--listeners 1,100,1000] [--rounds 5] [--kestrel-seconds 3] [--handoffs 3]
//                [--no-kestrel] [--write PATH]
//   1. Handoff latency: a chain of plain FdSend.Handoff processes, each with N Unix-socket
//      listeners, each taking over from the one before: successor connects -> its ReadyAsync
//      returns (hello, inventory, N descriptors checked, ready, released), and ready -> the
//      incumbent's exit as its parent sees it. Medians (and min/max) over the rounds.
//   2. What a client sees: samples/HandoffWeb under a new-connection-per-request load,
//      steady state, then handed over several times: connect time and request time
//      (connect -> whole answer: includes any wait in the accept queue) p50/p99/max, for
//      requests that started during a handoff (successor started -> old process exited)
//      and for the others.
// Internal roles (started by this program): node <control> <dir> <n> <report-path>
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.Versioning;
using System.Text;
using FdSend.Handoff;
using FdSend.KestrelScenario;

[assembly: UnsupportedOSPlatform("windows")]

namespace FdSend.Benchmarks.Handoff;

internal static class Program
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(120);

    private static int Main(string[] args)
    {
        if (args.Length == 5 && args[0] == "node")
            return Node(args[1], args[2], int.Parse(args[3], CultureInfo.InvariantCulture), args[4]).GetAwaiter().GetResult();

        int[] listeners = [1, 100, 1000];
        int rounds = 5, handoffs = 3;
        double kestrelSeconds = 3;
        bool kestrel = true;
        string? write = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--listeners": listeners = args[++i].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(); break;
                case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--handoffs": handoffs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--kestrel-seconds": kestrelSeconds = double.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--no-kestrel": kestrel = false; break;
                case "--write": write = args[++i]; break;
                default:
                    Console.Error.WriteLine($"unknown argument {args[i]}");
                    return 2;
            }
        }
        var report = new StringBuilder();
        report.AppendLine("# FdSend handoff benchmark results").AppendLine();
        report.AppendLine("Written by `bench/handoff/HandoffBench` (`./build.sh bench`, README.md: \"Handoff\") from a real run; do not edit by hand. " +
                          "The machine is shared and noisy (2 cores, other builds running): read medians, and the spread.").AppendLine();
        report.AppendLine($"Machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}; " +
                          $"load average {File.ReadAllText("/proc/loadavg").Split(' ').Take(3).Aggregate((a, b) => a + " " + b)} at the start; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC.").AppendLine();

        report.AppendLine("## Handoff latency (plain FdSend.Handoff processes, Unix-socket listeners)").AppendLine();
        report.AppendLine($"A chain of processes, each taking over from the one before ({rounds} handoffs per row). " +
                          "*connect to ready*: the successor's `StartAsync` (connect, hello, inventory with every descriptor) plus `Listen` for each listener (each checked) plus `ReadyAsync` (ready sent, released received). " +
                          "*ready to exit*: from the successor's ready to the incumbent's exit as its parent sees it (the incumbent exits as soon as it is superseded: no requests to drain). " +
                          "Milliseconds: median (min-max).").AppendLine();
        report.AppendLine("| listeners | connect to ready | of which: inventory received | of which: Listen (checks) | ready to incumbent exit |");
        report.AppendLine("|---|---|---|---|---|");
        foreach (int n in listeners)
        {
            var (toReady, inventory, listen, toExit) = LatencyChain(n, rounds);
            string row = $"| {n:N0} | {Summary(toReady)} | {Summary(inventory)} | {Summary(listen)} | {Summary(toExit)} |";
            Console.WriteLine(row);
            report.AppendLine(row);
        }

        if (kestrel)
        {
            report.AppendLine().AppendLine("## What a client sees: samples/HandoffWeb handed over under load").AppendLine();
            report.AppendLine($"Two clients each open a new connection per request (GET /pid, 5 ms apart) on 127.0.0.1: {kestrelSeconds:0.#} s of steady state, then {handoffs} handoffs, each a new process started " +
                              "and the old one left to drain. *during a handoff*: requests that started between the start of a successor process and the exit of the process it replaced " +
                              "(on 2 cores the successor's own start-up competes with the server for the CPU: that is in these numbers too). " +
                              "*request*: connect to the whole answer, so it includes any wait in the accept queue. Milliseconds.").AppendLine();
            foreach (string line in KestrelUnderHandoffs(kestrelSeconds, handoffs))
            {
                Console.WriteLine(line);
                report.AppendLine(line);
            }
        }
        if (write is not null)
        {
            File.WriteAllText(write, report.ToString());
            Console.WriteLine($"wrote {write}");
        }
        return 0;
    }

    private static string Summary(List<double> ms) =>
        ms.Count == 0 ? "n/a" : $"{Median(ms):0.0} ({ms.Min():0.0}-{ms.Max():0.0})";

    private static double Median(List<double> values)
    {
        var s = values.OrderBy(v => v).ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }

    private static double Percentile(List<double> values, double p)
    {
        var s = values.OrderBy(v => v).ToList();
        return s.Count == 0 ? double.NaN : s[Math.Min(s.Count - 1, (int)Math.Ceiling(p / 100 * s.Count) - 1)];
    }

    private static double Ms(long from, long to) => (to - from) * 1000.0 / Stopwatch.Frequency;

    // ---- 1. Handoff latency ---------------------------------------------------------------

    /// <summary>rounds+1 processes in a chain; returns each handoff's timings.</summary>
    private static (List<double> ToReady, List<double> Inventory, List<double> Listen, List<double> ToExit) LatencyChain(int n, int rounds)
    {
        string dir = Directory.CreateTempSubdirectory("fdsend-handoff-bench-").FullName;
        string control = Path.Combine(dir, "control.sock");
        var toReady = new List<double>();
        var inventory = new List<double>();
        var listen = new List<double>();
        var toExit = new List<double>();
        Process? incumbent = null;
        try
        {
            incumbent = StartNode(control, dir, n, Path.Combine(dir, "report-0"));
            WaitReport(Path.Combine(dir, "report-0"), incumbent);
            for (int r = 1; r <= rounds; r++)
            {
                string reportPath = Path.Combine(dir, $"report-{r}");
                Process successor = StartNode(control, dir, n, reportPath);
                string[] f = WaitReport(reportPath, successor).Split(' ');
                long connect = long.Parse(f[0], CultureInfo.InvariantCulture);
                long took = long.Parse(f[1], CultureInfo.InvariantCulture);
                long ready = long.Parse(f[2], CultureInfo.InvariantCulture);
                long listened = long.Parse(f[3], CultureInfo.InvariantCulture);
                if (!incumbent.WaitForExit(Guard))
                    throw new TimeoutException("the incumbent did not exit");
                long exited = Stopwatch.GetTimestamp();
                if (incumbent.ExitCode != 0)
                    throw new InvalidOperationException($"the incumbent exited with {incumbent.ExitCode}");
                toReady.Add(Ms(connect, ready));
                inventory.Add(Ms(connect, took));
                listen.Add(Ms(took, listened));
                toExit.Add(Ms(ready, exited));
                incumbent.Dispose();
                incumbent = successor;
            }
        }
        finally
        {
            if (incumbent is not null)
            {
                WebProcess.Terminate(incumbent.Id);
                if (!incumbent.WaitForExit(10_000))
                    incumbent.Kill();
                incumbent.Dispose();
            }
            Directory.Delete(dir, recursive: true);
        }
        return (toReady, inventory, listen, toExit);
    }

    private static Process StartNode(string control, string dir, int n, string report)
    {
        string exe = Environment.ProcessPath!;
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet")
            psi.ArgumentList.Add(typeof(Program).Assembly.Location);
        foreach (string a in new[] { "node", control, dir, n.ToString(CultureInfo.InvariantCulture), report })
            psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    private static string WaitReport(string path, Process p)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Guard)
        {
            if (File.Exists(path))
                return File.ReadAllText(path).Trim();
            if (p.HasExited)
                throw new InvalidOperationException($"process {p.Id} exited with {p.ExitCode} before it was ready");
            Thread.Sleep(5);
        }
        throw new TimeoutException($"process {p.Id} was not ready");
    }

    /// <summary>One process of the chain: take over (or bind) n Unix listeners, ready, report
    /// its timestamps, serve until superseded (or SIGTERM), exit 0.</summary>
    private static async Task<int> Node(string control, string dir, int n, string reportPath)
    {
        using var stop = new CancellationTokenSource();
        using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        long connect = Stopwatch.GetTimestamp();
        await using HandoffServer server = await HandoffServer.StartAsync(new HandoffOptions { ControlPath = control });
        long took = Stopwatch.GetTimestamp();
        for (int i = 0; i < n; i++)
            server.Listen($"l{i}", new UnixDomainSocketEndPoint(Path.Combine(dir, $"l{i}.sock")));
        long listened = Stopwatch.GetTimestamp();
        await server.ReadyAsync();
        long ready = Stopwatch.GetTimestamp();
        string tmp = reportPath + ".tmp";
        File.WriteAllText(tmp, $"{connect} {took} {ready} {listened}");
        File.Move(tmp, reportPath);
        try
        {
            await Task.Delay(Timeout.Infinite, CancellationTokenSource.CreateLinkedTokenSource(server.Superseded, stop.Token).Token);
        }
        catch (OperationCanceledException)
        {
        }
        return 0;
    }

    // ---- 2. Kestrel under handoffs -----------------------------------------------------

    private static IEnumerable<string> KestrelUnderHandoffs(double steadySeconds, int handoffs)
    {
        string dir = Directory.CreateTempSubdirectory("fdsend-handoff-bench-").FullName;
        string control = Path.Combine(dir, "handoff.sock");
        var processes = new List<WebProcess>();
        var windows = new List<(double From, double To)>();
        LoadStats stats;
        var clock = Stopwatch.StartNew();
        try
        {
            processes.Add(WebProcess.Start(control, 0));
            int port = processes[0].WaitReady(Guard);
            var load = new ClientLoad(port, fresh: 2, keepAlive: 0, pause: TimeSpan.FromMilliseconds(5), clock);
            try
            {
                Thread.Sleep(TimeSpan.FromSeconds(steadySeconds));
                for (int h = 0; h < handoffs; h++)
                {
                    WebProcess old = processes[^1];
                    double from = clock.Elapsed.TotalSeconds;
                    WebProcess next = WebProcess.Start(control, 0);
                    processes.Add(next);
                    next.WaitReady(Guard);
                    if (old.WaitExit(Guard) != 0)
                        throw new InvalidOperationException("an old process did not exit 0");
                    windows.Add((from, clock.Elapsed.TotalSeconds));
                    Thread.Sleep(TimeSpan.FromSeconds(steadySeconds / handoffs));
                }
            }
            finally
            {
                load.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            stats = load.Fresh;
        }
        finally
        {
            foreach (WebProcess p in processes)
                p.Dispose();
            Directory.Delete(dir, recursive: true);
        }
        bool During(double at) => windows.Any(w => at >= w.From && at <= w.To);
        var samples = stats.Latencies.ToList();
        yield return $"{stats.Made:N0} requests, {stats.Refused} refused, {stats.Failed} failed; {windows.Count} handoffs, " +
                     $"{windows.Sum(w => w.To - w.From):0.0} s of {clock.Elapsed.TotalSeconds:0.0} s within one.";
        yield return "";
        yield return "| requests | count | connect p50 | connect p99 | connect max | request p50 | request p99 | request max |";
        yield return "|---|---|---|---|---|---|---|---|";
        foreach (var (label, set) in new[] { ("steady state", samples.Where(s => !During(s.AtSeconds)).ToList()),
                                             ("during a handoff", samples.Where(s => During(s.AtSeconds)).ToList()) })
        {
            var c = set.Select(s => s.ConnectMs).ToList();
            var r = set.Select(s => s.RequestMs).ToList();
            yield return $"| {label} | {set.Count:N0} | {Percentile(c, 50):0.00} | {Percentile(c, 99):0.00} | {(c.Count > 0 ? c.Max() : double.NaN):0.00} | " +
                         $"{Percentile(r, 50):0.00} | {Percentile(r, 99):0.00} | {(r.Count > 0 ? r.Max() : double.NaN):0.00} |";
        }
    }
}
