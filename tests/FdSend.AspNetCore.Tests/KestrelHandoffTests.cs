// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Net.Http;
using FdSend.KestrelScenario;

namespace FdSend.AspNetCore.Tests;

/// <summary>
/// samples/HandoffWeb handed from process to process under client load (docs/handoff-protocol.md):
/// nothing refused, nothing failed, a long request drains on the old process, a failed
/// successor costs nothing, no descriptor leaks. Every wait is bounded.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class KestrelHandoffTests
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(60);
    private readonly List<WebProcess> _processes = [];
    private readonly List<int> _adopted = []; // started by a process under test (POST /upgrade)
    private string _dir = "";
    private string _control = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Directory.CreateTempSubdirectory("fdsend-kestrel-").FullName; // 0700
        _control = Path.Combine(_dir, "handoff.sock");
        WebProcess.Echo = null;
        WebProcess.Reset();
    }

    [TearDown]
    public void TearDown()
    {
        foreach (int pid in _adopted)
            WebProcess.Terminate(pid);
        foreach (WebProcess p in _processes)
            p.Dispose();
        foreach (int pid in _adopted)
            for (int i = 0; i < 100 && WebProcess.Exists(pid); i++)
                Thread.Sleep(100);
        if (TestContext.CurrentContext.Result.Outcome.Status != NUnit.Framework.Interfaces.TestStatus.Passed)
            foreach (string line in WebProcess.Output.TakeLast(200))
                TestContext.Out.WriteLine(line);
        _processes.Clear();
        _adopted.Clear();
        Directory.Delete(_dir, recursive: true);
    }

    private WebProcess StartSample(params string[] args)
    {
        WebProcess p = WebProcess.Start(_control, 0, args);
        _processes.Add(p);
        return p;
    }

    [Test]
    [CancelAfter(120_000)]
    public async Task ThreeHandoffsUnderLoadRefuseNothingFailNothingAndDrainALongRequest()
    {
        var clock = Stopwatch.StartNew();
        using var retries = new HttpClientRetries();
        WebProcess first = StartSample();
        int port = first.WaitReady(Start);
        ClientLoad load = new(port, fresh: 2, keepAlive: 2, pause: TimeSpan.FromMilliseconds(5));
        var generations = new List<int> { first.Pid };
        var fdCounts = new List<int>();
        try
        {
            await Task.Delay(1000);
            WebProcess? current = first;
            for (int handoff = 1; handoff <= 3; handoff++)
            {
                int incumbent = generations[^1];
                fdCounts.Add(Fds.Count(incumbent));
                var stream = new LongRequest(port, seconds: 3);
                Assert.That(await stream.FirstPid.Task.WaitAsync(TimeSpan.FromSeconds(30)), Is.EqualTo(incumbent),
                    "the long request starts on the running process");

                int successor;
                if (handoff < 3)
                {
                    // A deploy script (or systemd's ExecReload) starts the new version.
                    WebProcess next = StartSample();
                    Assert.That(next.WaitReady(Start), Is.EqualTo(port));
                    successor = next.Pid;
                    current = next;
                }
                else
                {
                    // The app upgrades itself: POST /upgrade starts its successor.
                    using var http = new HttpClient { Timeout = Start };
                    using HttpResponseMessage r = await http.PostAsync($"http://127.0.0.1:{port}/upgrade", null);
                    Assert.That((int)r.StatusCode, Is.EqualTo(200), await r.Content.ReadAsStringAsync());
                    successor = WebProcess.WaitReadyOther(generations, Start);
                    _adopted.Add(successor);
                }
                TestContext.Out.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: handoff {handoff}: {incumbent} -> {successor}");
                generations.Add(successor);

                WebProcess old = _processes.Single(p => p.Pid == incumbent);
                Assert.That(old.WaitExit(Start), Is.EqualTo(0), $"process {incumbent} exits 0 after draining");
                var (complete, pids, lines) = await stream.Result.WaitAsync(TimeSpan.FromSeconds(30));
                Assert.That(complete, Is.True, $"the long request completes ({lines} lines)");
                Assert.That(pids, Is.EquivalentTo(new[] { incumbent }), "the old process served all of it, while draining");
                await Task.Delay(700);
            }
            fdCounts.Add(Fds.Count(generations[^1]));
        }
        finally
        {
            await load.DisposeAsync();
        }
        TestContext.Out.WriteLine($"new connection per request: {load.Fresh}");
        TestContext.Out.WriteLine($"keep-alive HttpClient: {load.KeepAlive}; {load.KeepAlive.NewConnections} connections opened, " +
                                  $"{load.KeepAlive.ConnectionCloseResponses} responses said Connection: close, " +
                                  $"{retries.Count} requests were sent again by HttpClient itself (a pooled connection closed under it)");
        TestContext.Out.WriteLine($"descriptors (less TCP connections and assemblies) of each process while serving: {string.Join(", ", fdCounts)}");
        TestContext.Out.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s in all");
        Assert.Multiple(() =>
        {
            Assert.That(load.Fresh.Refused, Is.Zero, "refused connections");
            Assert.That(load.Fresh.Failed, Is.Zero, "failed requests (new connections): " + string.Join("; ", load.Fresh.Errors));
            Assert.That(load.KeepAlive.Failed, Is.Zero, "failed requests (keep-alive): " + string.Join("; ", load.KeepAlive.Errors));
            Assert.That(load.Fresh.Made, Is.GreaterThan(100));
            Assert.That(load.KeepAlive.Made, Is.GreaterThan(100));
            Assert.That(load.Fresh.ByPid.Keys.Union(load.KeepAlive.ByPid.Keys), Is.EquivalentTo(generations),
                "every process served, none other");
            Assert.That(fdCounts.Distinct().Count(), Is.EqualTo(1), "no process holds more descriptors than its predecessor");
        });
    }

    [Test]
    [CancelAfter(120_000)]
    public async Task ASuccessorThatFailsAtStartupCostsNothingAndTheIncumbentServesOn()
    {
        WebProcess incumbent = StartSample();
        int port = incumbent.WaitReady(Start);
        ClientLoad load = new(port, fresh: 2, keepAlive: 1, pause: TimeSpan.FromMilliseconds(5));
        int fdsBefore, fdsAfter;
        string before, after;
        WebProcess good;
        try
        {
            await Task.Delay(700);
            fdsBefore = Fds.Count(incumbent.Pid);
            before = Fds.Describe(incumbent.Pid);

            TestContext.Out.WriteLine($"{DateTime.Now:HH:mm:ss.fff}: starting the successor that fails");
            WebProcess bad = StartSample("--FailAtStartup=true");
            int code = bad.WaitExit(Start);
            Assert.That(code, Is.Not.EqualTo(0).And.Not.EqualTo(-1), "the bad successor fails");
            TestContext.Out.WriteLine($"{DateTime.Now:HH:mm:ss.fff}: it exited with {code}");
            for (int i = 0; i < 50 && !WebProcess.Output.Any(l => l.Contains("FailAtStartup is set")); i++)
                await Task.Delay(100); // its last output may still be in the pipe
            Assert.That(WebProcess.Output.Any(l => l.Contains("FailAtStartup is set")), "it failed where it was told to");
            await Task.Delay(700);
            Assert.That(incumbent.Process.HasExited, Is.False, "the incumbent serves on");
            long servedBefore = load.Fresh.ByPid.GetValueOrDefault(incumbent.Pid);
            await Task.Delay(500);
            Assert.That(load.Fresh.ByPid.GetValueOrDefault(incumbent.Pid), Is.GreaterThan(servedBefore), "and answers");
            fdsAfter = Fds.Count(incumbent.Pid);
            after = Fds.Describe(incumbent.Pid);

            // The failed attempt left the incumbent ready for the next successor.
            TestContext.Out.WriteLine($"{DateTime.Now:HH:mm:ss.fff}: starting a good successor");
            good = StartSample();
            Assert.That(good.WaitReady(Start), Is.EqualTo(port));
            TestContext.Out.WriteLine($"{DateTime.Now:HH:mm:ss.fff}: it is ready");
            Assert.That(incumbent.WaitExit(Start), Is.EqualTo(0));
            await Task.Delay(500);
        }
        finally
        {
            await load.DisposeAsync();
        }
        TestContext.Out.WriteLine($"new connection per request: {load.Fresh}");
        TestContext.Out.WriteLine($"keep-alive HttpClient: {load.KeepAlive}");
        TestContext.Out.WriteLine($"incumbent's descriptors (less TCP connections and assemblies): {fdsBefore} before the failed successor, {fdsAfter} after");
        Assert.Multiple(() =>
        {
            Assert.That(load.Fresh.Refused, Is.Zero, "refused connections");
            Assert.That(load.Fresh.Failed, Is.Zero, "failed requests (new connections): " + string.Join("; ", load.Fresh.Errors));
            Assert.That(load.KeepAlive.Failed, Is.Zero, "failed requests (keep-alive): " + string.Join("; ", load.KeepAlive.Errors));
            Assert.That(fdsAfter, Is.EqualTo(fdsBefore), $"the failed handoff leaked no descriptor: before {before}; after {after}");
            Assert.That(load.Fresh.ByPid.Keys.Union(load.KeepAlive.ByPid.Keys), Is.EquivalentTo(new[] { incumbent.Pid, good.Pid }));
        });
    }
}
