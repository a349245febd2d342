// SPDX-License-Identifier: MIT
// Real processes (FdSend.TestPeer) handing a TCP server over, under load from a client
// that opens a new connection per request on 127.0.0.1: successful handoffs, and every way a
// successor can fail, after which the incumbent must still serve and still hand over.
using System.Diagnostics;
using FdSend.Handoff.Tests.Support;

namespace FdSend.Handoff.Tests;

[TestFixture]
[NonParallelizable]
public sealed class HandoffProcessTests
{
    private TempDir _dir = null!;
    private string _control = null!;
    private readonly List<HandoffPeerProcess> _peers = [];

    [SetUp]
    public void SetUp()
    {
        _dir = new TempDir();
        _control = Path.Combine(_dir.Path, "handoff.sock");
    }

    [TearDown]
    public void TearDown()
    {
        foreach (HandoffPeerProcess p in _peers)
            p.Dispose();
        _peers.Clear();
        _dir.Dispose();
    }

    private HandoffPeerProcess Serve(params string[] extra) => Start(["serve", "--control", _control, "--tcp", "web=127.0.0.1:0", .. extra]);

    private HandoffPeerProcess Start(IEnumerable<string> args, string? runAs = null)
    {
        HandoffPeerProcess p = HandoffPeerProcess.Start(args, runAs);
        _peers.Add(p);
        return p;
    }

    /// <summary>A first instance, serving and ready, with its port.</summary>
    private (HandoffPeerProcess Peer, int Port) FirstInstance(params string[] extra)
    {
        HandoffPeerProcess p = Serve(extra);
        Assert.That(p.WaitForLine("start "), Does.StartWith("start successor=false incumbent=none"), p.ToString());
        int port = p.Port();
        p.WaitForLine("ready");
        return (p, port);
    }

    /// <summary>A successor takes over from <paramref name="incumbent"/>: it says ready, the
    /// incumbent says superseded and exits 0, and the load sees the successor answer.</summary>
    private HandoffPeerProcess HandOver(HandoffPeerProcess incumbent, int port, LoadClient? load, params string[] extra)
    {
        HandoffPeerProcess next = Serve(extra);
        Assert.That(next.WaitForLine("start "), Does.StartWith($"start successor=true incumbent={incumbent.Pid} "), next.ToString());
        Assert.That(next.Port(), Is.EqualTo(port), "the successor took the incumbent's listener");
        next.WaitForLine("ready");
        incumbent.WaitForLine("superseded", 20_000);
        Assert.That(incumbent.WaitForExit(20_000), Is.EqualTo(0), incumbent.ToString());
        Assert.That(incumbent.Stderr, Does.Not.Contain("accept-error").And.Not.Contain("connection-error"), incumbent.ToString());
        Assert.That(next.Stderr, Does.Not.Contain("did not confirm the release"), next.ToString());
        load?.WaitForServed(next.Pid, 10);
        return next;
    }

    [Test]
    [CancelAfter(60_000)]
    public async Task ThreeHandoffsInARowUnderLoad_RefuseNothing_FailNothing()
    {
        (HandoffPeerProcess current, int port) = FirstInstance();
        var pids = new List<int> { current.Pid };
        await using var load = new LoadClient(port);
        load.WaitForServed(current.Pid, 20);
        for (int i = 0; i < 3; i++)
        {
            current = HandOver(current, port, load);
            pids.Add(current.Pid);
        }
        await load.StopAndAssertCleanAsync();
        Assert.That(pids.Where(pid => load.ServedByPid(pid) > 0), Is.EquivalentTo(pids), load.Summary);
        Assert.That(await LoadClient.RequestAsync(port), Is.EqualTo(current.Pid), "the last instance still serves");
        TestContext.Out.WriteLine(load.Summary);
        current.Stop();
        Assert.That(current.WaitForExit(), Is.EqualTo(0), current.ToString());
    }

    /// <summary>The frame of every failure test: an incumbent under load; <paramref name="fail"/>
    /// makes a handoff fail; then 0 refused or failed requests, the incumbent still serving with
    /// as many descriptors open as before, and a good successor taking over from it.</summary>
    private async Task AfterFailure_IncumbentServesAndHandsOver(Action<HandoffPeerProcess> fail, params string[] incumbentOptions)
    {
        (HandoffPeerProcess incumbent, int port) = FirstInstance(incumbentOptions);
        Assert.That(await LoadClient.RequestAsync(port), Is.EqualTo(incumbent.Pid));
        int fdsBefore = FdCounts.Settled(incumbent.Pid);
        await using (var load = new LoadClient(port))
        {
            load.WaitForServed(incumbent.Pid, 10);
            fail(incumbent);
            int served = load.ServedByPid(incumbent.Pid);
            load.WaitForServed(incumbent.Pid, served + 10);
            await load.StopAndAssertCleanAsync();
            Assert.That(load.ServedBy.Keys, Is.EquivalentTo(new[] { incumbent.Pid }), load.Summary);
        }
        Assert.That(incumbent.HasExited, Is.False, incumbent.ToString());
        FdCounts.AssertCount(fdsBefore, "in the incumbent after the failed handoff", incumbent.Pid);
        Assert.That(incumbent.Stdout, Does.Not.Contain("superseded"));

        HandoffPeerProcess next = HandOver(incumbent, port, load: null);
        Assert.That(await LoadClient.RequestAsync(port), Is.EqualTo(next.Pid));
    }

    [Test]
    [CancelAfter(60_000)]
    public Task SuccessorExitsBeforeReady() => AfterFailure_IncumbentServesAndHandsOver(incumbent =>
    {
        HandoffPeerProcess bad = Serve("--fail-before-ready");
        bad.WaitForLine("failing");
        Assert.That(bad.WaitForExit(), Is.EqualTo(3));
        incumbent.WaitForLog("still serving");
    });

    [Test]
    [CancelAfter(60_000)]
    public Task SuccessorHangsPastTheReadyTimeout() => AfterFailure_IncumbentServesAndHandsOver(incumbent =>
    {
        HandoffPeerProcess bad = Serve("--hang");
        bad.WaitForLine("hanging");
        incumbent.WaitForLog("was not ready within");
        bad.Kill();
        bad.WaitForExit();
    }, "--ready-timeout-ms", "1500");

    [TestCase("garbage", "closed")]
    [TestCase("malformed", "answer refused protocol")]
    [TestCase("hello-disconnect", "closed")]
    [CancelAfter(60_000)]
    public Task SuccessorBreaksTheProtocol(string mode, string expected) => AfterFailure_IncumbentServesAndHandsOver(incumbent =>
    {
        HandoffPeerProcess bad = Start(["raw", "--control", _control, mode]);
        Assert.That(bad.WaitForExit(), Is.EqualTo(0), bad.ToString());
        Assert.That(bad.Stdout, Does.Contain(expected), bad.ToString());
        incumbent.WaitForLog(mode == "hello-disconnect" ? "failed" : "still serving");
    });

    [Test]
    [CancelAfter(60_000)]
    public async Task SuccessorOfAnotherUid_IsRefusedUnauthorized()
    {
        if (!File.Exists("/usr/bin/setpriv") && !File.Exists("/bin/setpriv"))
            Assert.Ignore("setpriv (util-linux) is missing: cannot start a successor as 'nobody'");
        if (Posix.GetEUid() != 0)
            Assert.Ignore("not root: cannot start a successor as 'nobody'");
        // 'nobody' must reach the control socket: the directory 0755 (never group/other
        // writable, which the handoff refuses) and the socket file opened up to others once the
        // incumbent made it 0600, as a looser deployment might. The uid policy is what refuses.
        File.SetUnixFileMode(_dir.Path, (UnixFileMode)Convert.ToInt32("755", 8));
        await AfterFailure_IncumbentServesAndHandsOver(incumbent =>
        {
            File.SetUnixFileMode(_control, (UnixFileMode)Convert.ToInt32("666", 8));
            HandoffPeerProcess bad = Start(["serve", "--control", _control, "--tcp", "web=127.0.0.1:0"], runAs: "nobody");
            Assert.That(bad.WaitForLine("refused", 30_000), Is.EqualTo("refused unauthorized"), bad.ToString());
            Assert.That(bad.WaitForExit(), Is.EqualTo(4));
            incumbent.WaitForLog("not authorized");
        });
    }

    [Test]
    [CancelAfter(60_000)]
    public Task TwoSuccessorsAtOnce_TheSecondIsRefusedBusy() => AfterFailure_IncumbentServesAndHandsOver(incumbent =>
    {
        HandoffPeerProcess first = Serve("--hang");
        first.WaitForLine("hanging");
        // A second successor in another process, and one in this process (the exception).
        HandoffPeerProcess second = Serve();
        Assert.That(second.WaitForLine("refused"), Is.EqualTo("refused busy"), second.ToString());
        Assert.That(second.WaitForExit(), Is.EqualTo(4));
        var e = Assert.ThrowsAsync<HandoffRefusedException>(async () =>
            await HandoffServer.StartAsync(new HandoffOptions { ControlPath = _control }));
        Assert.That(e!.Reason, Is.EqualTo("busy"));
        Assert.That(second.HasExited && !first.HasExited, Is.True);
        first.Kill(); // the first successor dies before ready: the incumbent goes on
        first.WaitForExit();
        incumbent.WaitForLog("still serving");
    });

    [Test]
    [CancelAfter(60_000)]
    public void AThousandListenersInOneHandoff()
    {
        string listeners = Path.Combine(_dir.Path, "l");
        Directory.CreateDirectory(listeners);
        string[] many = ["--unix-many", $"1000:{listeners}"];
        (HandoffPeerProcess incumbent, int port) = FirstInstance(many);
        Assert.That(incumbent.WaitForLine("unix-listeners"), Is.EqualTo("unix-listeners 1000"));
        var sw = Stopwatch.StartNew();
        HandoffPeerProcess next = HandOver(incumbent, port, load: null, many);
        TestContext.Out.WriteLine($"1,001 listeners handed over in {sw.ElapsedMilliseconds} ms (process start included)");
        Assert.That(next.WaitForLine("start "), Does.EndWith("names=1001"));
        Assert.That(next.Stderr, Does.Not.Contain("not using the inherited").And.Not.Contain("binding it afresh").And.Not.Contain("nobody took"), next.ToString());
        Assert.That(next.Stderr, Does.Contain("took 1001 descriptors"));
        // Each path still reaches a listening socket: the one handed over (none was rebound).
        foreach (int i in new[] { 0, 252, 253, 506, 759, 999 })
        {
            using var c = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            c.Connect(new UnixDomainSocketEndPoint(Path.Combine(listeners, $"l{i}")));
        }
        Assert.That(FdCounts.Count(next.Pid), Is.InRange(1001, 1100));
    }
}
