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

    /// <summary>Runs 'app import' with the given LISTEN_* assignments and checks, in its output:
    /// what it took, the problem it reported (or none), that the variables are gone, and the
    /// state of fd 3 at the point named by <paramref name="fd3Line"/>.</summary>
    [TestCase("LISTEN_PID=1 LISTEN_FDS=1 LISTEN_FDNAMES=web", "count=0 names=", "LISTEN_PID is 1, not this process",
              "fd3 after-dispose=open cloexec=false", TestName = "Another_process_LISTEN_PID_is_ignored_and_fd3_left_alone")]
    [TestCase("LISTEN_PID=$$ LISTEN_FDS=three", "count=0 names=", "LISTEN_FDS is 'three', not a descriptor count",
              "fd3 after-dispose=open cloexec=false", TestName = "LISTEN_FDS_not_a_number_takes_nothing")]
    [TestCase("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web:admin", "count=0 names=", "LISTEN_FDNAMES names 2 descriptors, LISTEN_FDS says 1",
              "fd3 before-dispose=closed", TestName = "Names_count_mismatch_closes_the_descriptors")]
    [TestCase("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web", "count=1 names=web", null,
              "fd3 before-dispose=open cloexec=true", TestName = "Not_a_socket_is_made_close_on_exec_and_not_taken_as_a_socket")]
    [TestCase("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web", "count=1 names=web", null,
              "fd3 after-dispose=closed", TestName = "Not_a_socket_is_closed_at_dispose")]
    [TestCase("LISTEN_PID=$$ LISTEN_FDS=1", "count=1 names=unknown", null,
              "fd3 after-dispose=closed", TestName = "Without_LISTEN_FDNAMES_the_name_is_unknown")]
    public void Import_handles_what_it_finds(string assignments, string taken, string? problem, string fd3Line)
    {
        using App app = Run(assignments, "import");
        Assert.That(app.WaitExit(), Is.Zero, app.Stderr);
        Assert.That(app.WaitLine("count="), Is.EqualTo(taken));
        if (problem is null)
            Assert.That(app.Stderr, Does.Not.Contain("warning: systemd: LISTEN"));
        else
        {
            Assert.That(app.WaitLine("problem: "), Does.Contain(problem));
            Assert.That(app.Stderr, Does.Contain("warning: systemd: " + problem));
        }
        if (taken == "count=1 names=web")
        {
            Assert.That(app.WaitLine("take-socket web="), Is.EqualTo("take-socket web=null"));
            Assert.That(app.Stderr, Does.Contain("warning: systemd: 'web' (fd 3) is a CharacterDevice, not a socket"));
        }
        Assert.That(app.WaitLine("env "), Is.EqualTo("env LISTEN_PID=- LISTEN_FDS=- LISTEN_FDNAMES=-"), "the variables are removed");
        Assert.That(app.WaitLine(fd3Line.Split('=')[0] + "="), Is.EqualTo(fd3Line));
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
