// SPDX-License-Identifier: MIT
using System.Globalization;

namespace FdSend.Systemd.Tests;

/// <summary>SystemdListenFds.Import and HandoffServer.Listen against hand-made LISTEN_*
/// variables (sh sets fd 3 and execs the app in its own process, so that LISTEN_PID=$$ is
/// the app's pid): bad input is logged and listed, the variables are cleared, nothing leaks.</summary>
[TestFixture]
[NonParallelizable]
public class ImportTests
{
    /// <summary>Runs 'app ARGS' with fd 3 open on /dev/null (not close-on-exec) and the given
    /// LISTEN_* assignments ($$ is the app's pid).</summary>
    private static App Run(string assignments, params string[] args) =>
        new("/bin/sh", ["-c", $"exec 3</dev/null; {assignments} exec \"$0\" \"$@\"", App.DotnetHost(), App.Dll, .. args]);

    private static string Import(string assignments, out App app)
    {
        app = new App("/bin/sh", ["-c", $"exec 3</dev/null; {assignments} exec \"$0\" \"$@\"", App.DotnetHost(), App.Dll, "import"]);
        Assert.That(app.WaitExit(), Is.Zero, app.Stderr);
        return app.WaitLine("fd4 ");
    }

    private static void AssertCleared(App app) =>
        Assert.That(app.WaitLine("env "), Is.EqualTo("env LISTEN_PID=- LISTEN_FDS=- LISTEN_FDNAMES=-"));

    [Test]
    public void A_LISTEN_PID_of_another_process_is_ignored_and_its_fds_left_alone()
    {
        Import("LISTEN_PID=1 LISTEN_FDS=1 LISTEN_FDNAMES=web", out App app);
        using (app)
        {
            Assert.That(app.WaitLine("count="), Is.EqualTo("count=0 names="));
            Assert.That(app.WaitLine("problem: "), Does.Contain("LISTEN_PID is 1, not this process"));
            AssertCleared(app);
            Assert.That(app.WaitLine("fd3 after-dispose="), Is.EqualTo("fd3 after-dispose=open cloexec=false"), "not ours: untouched");
            Assert.That(app.Stderr, Does.Contain("warning: systemd: LISTEN_PID is 1"));
        }
    }

    [Test]
    public void A_LISTEN_FDS_that_is_not_a_number_takes_nothing()
    {
        Import("LISTEN_PID=$$ LISTEN_FDS=three", out App app);
        using (app)
        {
            Assert.That(app.WaitLine("count="), Is.EqualTo("count=0 names="));
            Assert.That(app.WaitLine("problem: "), Does.Contain("LISTEN_FDS is 'three', not a descriptor count"));
            AssertCleared(app);
            Assert.That(app.WaitLine("fd3 after-dispose="), Is.EqualTo("fd3 after-dispose=open cloexec=false"));
        }
    }

    [Test]
    public void Names_that_do_not_match_the_count_close_the_descriptors()
    {
        Import("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web:admin", out App app);
        using (app)
        {
            Assert.That(app.WaitLine("count="), Is.EqualTo("count=0 names="));
            Assert.That(app.WaitLine("problem: "), Does.Contain("LISTEN_FDNAMES names 2 descriptors, LISTEN_FDS says 1"));
            AssertCleared(app);
            Assert.That(app.WaitLine("fd3 before-dispose="), Is.EqualTo("fd3 before-dispose=closed"), "ours, unusable: closed, not leaked");
        }
    }

    [Test]
    public void A_descriptor_that_is_not_a_socket_is_refused_as_a_socket_and_closed_at_dispose()
    {
        Import("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web", out App app);
        using (app)
        {
            Assert.That(app.WaitLine("count="), Is.EqualTo("count=1 names=web"));
            Assert.That(app.WaitLine("take-socket web="), Is.EqualTo("take-socket web=null"));
            Assert.That(app.Stderr, Does.Contain("warning: systemd: 'web' (fd 3) is a CharacterDevice, not a socket"));
            AssertCleared(app);
            Assert.That(app.WaitLine("fd3 before-dispose="), Is.EqualTo("fd3 before-dispose=open cloexec=true"), "made close-on-exec at import");
            Assert.That(app.WaitLine("fd3 after-dispose="), Is.EqualTo("fd3 after-dispose=closed"));
        }
    }

    [Test]
    public void Without_LISTEN_FDNAMES_every_descriptor_is_unknown()
    {
        Import("LISTEN_PID=$$ LISTEN_FDS=1", out App app);
        using (app)
        {
            Assert.That(app.WaitLine("count="), Is.EqualTo("count=1 names=unknown"));
            AssertCleared(app);
        }
    }

    [Test]
    public void Listen_binds_afresh_when_the_activated_descriptor_is_not_a_socket_and_closes_it()
    {
        string dir = Directory.CreateTempSubdirectory("fdsend-systemd-").FullName;
        try
        {
            int port = Net.FreePort();
            using App app = Run("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web", "serve", Path.Combine(dir, "control.sock"), port.ToString(CultureInfo.InvariantCulture));
            string ready = app.WaitLine("ready ");
            Assert.That(App.Field(ready, "fd"), Is.Not.EqualTo("3"));
            Assert.That(Net.ServedBy(port), Is.EqualTo(app.Pid), "a fresh listener serves");
            Assert.That(app.Stderr, Does.Contain("not using the socket-activated 'web': it is a CharacterDevice, not a socket; binding it afresh"));
            Assert.That(Proc.Target(app.Pid, 3), Is.Null, "the unused fd 3 was closed at ReadyAsync");
            Proc.Signal(app.Pid, "TERM");
            Assert.That(app.WaitExit(), Is.Zero);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
