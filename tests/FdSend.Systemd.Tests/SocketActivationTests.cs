// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Globalization;
using FdSend;

namespace FdSend.Systemd.Tests;

/// <summary>The test program under systemd-socket-activate (the Debian package systemd): its
/// first instance serves on systemd's fd 3, hands it to a successor on SIGHUP, and a test
/// NOTIFY_SOCKET sees every notification with the descriptors that came with it.</summary>
[TestFixture]
[NonParallelizable]
public class SocketActivationTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("fdsend-systemd-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    internal static string SocketActivate()
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':'))
        {
            string path = Path.Combine(dir, "systemd-socket-activate");
            if (File.Exists(path))
                return path;
        }
        Assert.Ignore("systemd-socket-activate is not installed (Debian/Ubuntu package 'systemd', listed in eng/apt/systemd.txt): the socket activation tests need it");
        return "";
    }

    private App StartActivated(int port, NotifyReceiver notify, params string[] extra)
    {
        var args = new List<string> { "-l", $"127.0.0.1:{port}", "--fdname=web", "-E", $"NOTIFY_SOCKET={notify.Address}" };
        foreach (string pass in new[] { "DOTNET_ROOT", "HOME", "TMPDIR" })
            if (Environment.GetEnvironmentVariable(pass) is not null)
                args.AddRange(["-E", pass]);
        args.AddRange([App.DotnetHost(), App.Dll, "serve", Path.Combine(_dir, "control.sock"), port.ToString(CultureInfo.InvariantCulture)]);
        args.AddRange(extra);
        // As systemd starts a service: every signal at its default disposition. A test host
        // started with SIGHUP ignored (nohup) would otherwise pass that on through every exec,
        // and .NET does not run a PosixSignalRegistration for a signal ignored at its start:
        // the SIGHUP handoff below would never begin (env execs: the pid is the same).
        args.InsertRange(0, ["--default-signal", SocketActivate()]);
        var app = new App("env", args);
        app.WaitStderr("Listening on"); // bound: a connection now starts the program
        return app;
    }

    [TestCase(false, TestName = "Activated_handoff_path_notify_socket")]
    [TestCase(true, TestName = "Activated_handoff_abstract_notify_socket")]
    public void The_first_instance_serves_on_fd_3_and_its_successor_holds_the_only_copy(bool abstractNotify)
    {
        using var notify = new NotifyReceiver(_dir, abstractNotify);
        int port = Net.FreePort();
        string sa = SocketActivate();
        using App app = StartActivated(port, notify, "--fdstore");

        // systemd-socket-activate execs the program at the first connection: same pid.
        int first = Net.ServedBy(port);
        Assert.That(first, Is.EqualTo(app.Pid), $"{sa} execs the app in its own process");
        string ready = app.WaitLine("ready ");
        Assert.That(App.Field(ready, "fd"), Is.EqualTo("3"), "Listen('web') took systemd's fd 3 instead of binding");
        Assert.That(App.Field(ready, "listen-pid-at-start"), Is.EqualTo(first.ToString(CultureInfo.InvariantCulture)));
        Assert.That(App.Field(ready, "listen-pid-now"), Is.EqualTo("-"), "LISTEN_PID removed after import");
        string socketInode = Proc.Target(first, 3)!;
        Assert.That(socketInode, Does.StartWith("socket:["));
        Assert.That(Proc.IsCloseOnExec(first, 3), Is.True, "fd 3 made close-on-exec");

        // FDSTORE=1 with the listener, then READY=1.
        (string store, ReceivedFds stored) = notify.Receive();
        using (stored)
        {
            Assert.That(store, Is.EqualTo("FDSTORE=1\nFDNAME=web"));
            Assert.That(stored.Count, Is.EqualTo(1));
            Assert.That(new FileInfo($"/proc/self/fd/{stored.PeekFd(0)}").LinkTarget, Is.EqualTo(socketInode), "the stored fd is the listener");
            Assert.That(stored.Describe(0).IsListening, Is.True);
        }
        Assert.That(notify.ReceiveText(), Is.EqualTo("READY=1"));

        // SIGHUP: RELOADING=1 with MONOTONIC_USEC, a successor takes over and says MAINPID + READY.
        Proc.Signal(first, "HUP");
        string reloading = notify.ReceiveText();
        Assert.That(reloading, Does.Match(@"^RELOADING=1\nMONOTONIC_USEC=\d+$"));
        string mainPid = notify.ReceiveText();
        Assert.That(mainPid, Does.Match(@"^MAINPID=\d+$"), "MAINPID before the successor says ready");
        int successor = int.Parse(mainPid["MAINPID=".Length..], CultureInfo.InvariantCulture);
        app.Track(successor);
        Assert.That(successor, Is.Not.EqualTo(first));
        Assert.That(notify.ReceiveText(), Is.EqualTo($"MAINPID={successor}\nREADY=1"));
        string ready2 = app.WaitLine("ready ", 1);
        Assert.That(App.Field(ready2, "pid"), Is.EqualTo(successor.ToString(CultureInfo.InvariantCulture)));
        Assert.That(App.Field(ready2, "successor"), Is.EqualTo("True"));
        Assert.That(App.Field(ready2, "listen-pid-at-start"), Is.EqualTo("-"), "the successor did not inherit LISTEN_PID");

        // The successor holds the listener exactly once: the one it received, not an
        // inherited fd 3 besides it.
        int[] copies = Proc.FdsOf(successor, socketInode);
        Assert.That(copies, Has.Length.EqualTo(1), $"the successor's fds for {socketInode}: {string.Join(", ", copies)}");
        Assert.That(copies[0], Is.EqualTo(int.Parse(App.Field(ready2, "fd"), CultureInfo.InvariantCulture)));
        Assert.That(Proc.Environment(successor).Where(v => v.StartsWith("LISTEN_")), Is.Empty);
        Assert.That(Proc.Environment(successor), Does.Contain($"NOTIFY_SOCKET={notify.Address}"), "NOTIFY_SOCKET stays for successors");

        // The first instance exits; the successor serves on the same socket.
        Assert.That(app.WaitExit(), Is.Zero);
        app.WaitLine($"exit pid={first} superseded=True");
        Assert.That(Net.ServedBy(port), Is.EqualTo(successor));

        // A real stop: STOPPING=1, and the successor exits.
        Proc.Signal(successor, "TERM");
        Assert.That(notify.ReceiveText(), Is.EqualTo("STOPPING=1"));
        app.WaitLine($"exit pid={successor} superseded=False");
        Proc.WaitGone(successor);
        Assert.That(app.Stderr, Does.Not.Contain("warn").And.Not.Contain("fail"));
    }
}
