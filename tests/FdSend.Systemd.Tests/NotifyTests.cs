// SPDX-License-Identifier: MIT
using System.Globalization;
using FdSend.Handoff;

namespace FdSend.Systemd.Tests;

/// <summary>SystemdNotify in this process against a test NOTIFY_SOCKET (path and abstract):
/// one datagram per call, the exact text, the descriptors of FDSTORE=1.</summary>
[TestFixture]
[NonParallelizable]
public class NotifyTests
{
    private string _dir = "";
    private string? _saved;

    [SetUp]
    public void SetUp()
    {
        _dir = Directory.CreateTempSubdirectory("fdsend-notify-").FullName;
        _saved = Environment.GetEnvironmentVariable(SystemdNotify.EnvironmentVariable);
    }

    [TearDown]
    public void TearDown()
    {
        Environment.SetEnvironmentVariable(SystemdNotify.EnvironmentVariable, _saved);
        Directory.Delete(_dir, recursive: true);
    }

    [Test]
    public void Without_NOTIFY_SOCKET_every_call_is_a_no_op()
    {
        Environment.SetEnvironmentVariable(SystemdNotify.EnvironmentVariable, null);
        Assert.That(SystemdNotify.IsAvailable, Is.False);
        Assert.That(SystemdNotify.Ready(), Is.False);
        Assert.That(SystemdNotify.Stopping(), Is.False);
        using var s = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        Assert.That(SystemdNotify.StoreFds("web", s), Is.False);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Each_message_is_one_datagram_with_its_descriptors(bool isAbstract)
    {
        using var notify = new NotifyReceiver(_dir, isAbstract);
        Environment.SetEnvironmentVariable(SystemdNotify.EnvironmentVariable, notify.Address);

        Assert.That(SystemdNotify.Ready(), Is.True);
        Assert.That(notify.ReceiveText(), Is.EqualTo("READY=1"));
        Assert.That(SystemdNotify.Ready("serving", mainPid: 4242), Is.True);
        Assert.That(notify.ReceiveText(), Is.EqualTo("MAINPID=4242\nREADY=1\nSTATUS=serving"));
        SystemdNotify.MainPid(77);
        Assert.That(notify.ReceiveText(), Is.EqualTo("MAINPID=77"));
        SystemdNotify.Status("warming up");
        Assert.That(notify.ReceiveText(), Is.EqualTo("STATUS=warming up"));
        SystemdNotify.Stopping();
        Assert.That(notify.ReceiveText(), Is.EqualTo("STOPPING=1"));

        // MONOTONIC_USEC is CLOCK_MONOTONIC, close to the uptime on a machine that never slept.
        SystemdNotify.Reloading();
        string reloading = notify.ReceiveText();
        Assert.That(reloading, Does.Match(@"^RELOADING=1\nMONOTONIC_USEC=\d+$"));
        long usec = long.Parse(reloading.Split('=')[^1], CultureInfo.InvariantCulture);
        double uptime = double.Parse(File.ReadAllText("/proc/uptime").Split(' ')[0], CultureInfo.InvariantCulture);
        Assert.That(usec / 1e6, Is.InRange(0, uptime + 1));

        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen();
        Assert.That(SystemdNotify.StoreFds("web", listener), Is.True);
        (string store, FdSend.ReceivedFds fds) = notify.Receive();
        using (fds)
        {
            Assert.That(store, Is.EqualTo("FDSTORE=1\nFDNAME=web"));
            Assert.That(fds.Count, Is.EqualTo(1));
            Assert.That(new FileInfo($"/proc/self/fd/{fds.PeekFd(0)}").LinkTarget,
                        Is.EqualTo(new FileInfo($"/proc/self/fd/{listener.SafeHandle.DangerousGetHandle()}").LinkTarget));
        }
        SystemdNotify.RemoveStoredFds("web");
        Assert.That(notify.ReceiveText(), Is.EqualTo("FDSTOREREMOVE=1\nFDNAME=web"));
        Assert.That(notify.HasMore, Is.False);
    }

    [Test]
    public void Bad_names_states_and_sockets_are_refused_clearly()
    {
        using var notify = new NotifyReceiver(_dir, false);
        Environment.SetEnvironmentVariable(SystemdNotify.EnvironmentVariable, notify.Address);
        using var s = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        Assert.Throws<ArgumentException>(() => SystemdNotify.StoreFds("a:b", s));
        Assert.Throws<ArgumentException>(() => SystemdNotify.StoreFds("", s));
        Assert.Throws<ArgumentException>(() => SystemdNotify.StoreFds(new string('x', 256), s));
        Assert.Throws<ArgumentException>(() => SystemdNotify.StoreFds("web"));
        Assert.Throws<ArgumentException>(() => SystemdNotify.Status("two\nlines"));
        Assert.Throws<ArgumentException>(() => SystemdNotify.Notify(""));
        Assert.That(notify.HasMore, Is.False, "nothing sent");

        Environment.SetEnvironmentVariable(SystemdNotify.EnvironmentVariable, "relative/notify.sock");
        Assert.That(Assert.Throws<InvalidOperationException>(() => SystemdNotify.Ready())!.Message, Does.Contain("neither an absolute path"));
        Environment.SetEnvironmentVariable(SystemdNotify.EnvironmentVariable, Path.Combine(_dir, "nobody.sock"));
        Assert.Throws<SocketException>(() => SystemdNotify.Ready());
    }
}
