// SPDX-License-Identifier: MIT
// HandoffServer in this process on both sides (an incumbent and its successors as two
// servers in one test host): first starts, the control directory's rules, the state blob and
// an extra descriptor, listeners whose address changed, and descriptor counts that come back.
using System.Net;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Handoff.Tests;

/// <summary>Collects log lines ("level: message").</summary>
internal sealed class ListLogger : ILogger
{
    private readonly List<string> _lines = [];

    public string[] Lines
    {
        get
        {
            lock (_lines)
                return _lines.ToArray();
        }
    }

    public string Text => string.Join('\n', Lines);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_lines)
            _lines.Add($"{logLevel}: {formatter(state, exception)}");
    }
}

[TestFixture]
[NonParallelizable]
public sealed class HandoffServerTests : TempDirFixture
{
    private string Control => Path.Combine(Dir.Path, "handoff.sock");

    private HandoffOptions Options(ListLogger? logger = null, int readyTimeoutMs = 10_000) => new()
    {
        ControlPath = Control,
        ReadyTimeout = TimeSpan.FromMilliseconds(readyTimeoutMs),
        MessageTimeout = TimeSpan.FromSeconds(10),
        Logger = logger,
    };

    private static async Task<HandoffServer> StartAsync(HandoffOptions options) =>
        await HandoffServer.StartAsync(options).WaitAsync(TimeSpan.FromSeconds(20));

    [Test]
    [CancelAfter(20_000)]
    public async Task FirstStart_NoIncumbent_BindsFreshAndOpensTheControlSocket0600()
    {
        var log = new ListLogger();
        await using HandoffServer server = await StartAsync(Options(log));
        Assert.That(server.IsSuccessor, Is.False);
        Assert.That(server.IncumbentPid, Is.Null);
        Assert.That(server.InheritedState.Length, Is.EqualTo(0));
        Socket web = server.Listen("web", new IPEndPoint(IPAddress.Loopback, 0));
        Assert.That(((IPEndPoint)web.LocalEndPoint!).Port, Is.Not.Zero);
        Assert.That(File.Exists(Control), Is.False, "no control socket before ready");
        await server.ReadyAsync();
        Assert.That(File.GetUnixFileMode(Control), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        Assert.That(log.Text, Does.Contain("no running instance"));
        Assert.That(Directory.GetFiles(Dir.Path, "*.tmp", SearchOption.AllDirectories), Is.Empty, "no temporary name left behind");
    }

    [Test]
    [CancelAfter(20_000)]
    public async Task StaleControlSocketFile_IsAFirstStart_AndIsReplaced()
    {
        // A socket file nobody listens on (an incumbent that crashed). Bound the handoff's way,
        // so disposing the socket does not delete the path (.NET deletes a listener's file on
        // Dispose, here its temporary name): that is also what keeps a superseded incumbent
        // from deleting its successor's control socket.
        ControlSocket.BindUnix(Control, SocketType.Stream, 1, checkDirectory: true).Dispose();
        Assert.That(File.Exists(Control), Is.True, "the socket file outlives the socket");

        await using HandoffServer server = await StartAsync(Options());
        Assert.That(server.IsSuccessor, Is.False);
        await server.ReadyAsync();
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        probe.Connect(new UnixDomainSocketEndPoint(Control)); // someone listens now
    }

    [Test]
    [CancelAfter(20_000)]
    public async Task StaleRegularFileAtTheControlPath_IsAFirstStart()
    {
        File.WriteAllText(Control, "not a socket");
        await using HandoffServer server = await StartAsync(Options());
        Assert.That(server.IsSuccessor, Is.False);
        await server.ReadyAsync();
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        probe.Connect(new UnixDomainSocketEndPoint(Control));
    }

    [Test]
    [CancelAfter(30_000)]
    public async Task IncumbentThatClosesBeforeAnswering_IsAskedAgain()
    {
        // What a successor meets when it connects to an instance just before that instance's
        // control path is replaced: the instance exits without answering. The first connection
        // is closed at once, the second refused with "busy": the successor asks again after the
        // first and reports the second's refusal.
        using Socket fake = ControlSocket.BindUnix(Control, SocketType.Stream, 4, checkDirectory: true);
        var log = new ListLogger();
        Task incumbent = Task.Run(async () =>
        {
            (await fake.AcceptAsync()).Dispose();
            using Socket second = await fake.AcceptAsync();
            await using var channel = new FdChannel(second);
            using FdMessage hello = await channel.ReceiveAsync();
            Assert.That(Encoding.ASCII.GetString(hello.Payload.Span), Does.StartWith("hello\n"));
            await channel.SendAsync(new HandoffMessage(HandoffMessage.Refused).With("reason", "busy")
                .With("message", "another handoff is in progress").Encode());
        });
        var e = Assert.ThrowsAsync<HandoffRefusedException>(async () => await StartAsync(Options(log)));
        Assert.That(e!.Reason, Is.EqualTo("busy"));
        await incumbent.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.That(log.Text, Does.Contain("closed the connection before answering; connecting again"));
    }

    [TestCase("775")]
    [TestCase("757")]
    [TestCase("1777")]
    public void GroupOrOtherWritableControlDirectory_IsRefusedWithAClearError(string mode)
    {
        string dir = Path.Combine(Dir.Path, "open");
        Directory.CreateDirectory(dir);
        File.SetUnixFileMode(dir, (UnixFileMode)Convert.ToInt32(mode, 8));
        var e = Assert.ThrowsAsync<UnauthorizedAccessException>(async () =>
            await HandoffServer.StartAsync(new HandoffOptions { ControlPath = Path.Combine(dir, "handoff.sock") }));
        Assert.That(e!.Message, Does.Contain(dir).And.Contain("writable by group or others"));
    }

    [Test]
    public async Task MissingControlDirectory_IsCreated0700()
    {
        string dir = Path.Combine(Dir.Path, "new", "run");
        await using HandoffServer server = await StartAsync(new HandoffOptions { ControlPath = Path.Combine(dir, "handoff.sock") });
        await server.ReadyAsync();
        Assert.That(File.GetUnixFileMode(dir), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute));
    }

    [Test]
    [CancelAfter(30_000)]
    public async Task StateBlobExtraFdAndUnixListener_ArriveIntact()
    {
        byte[] state = new byte[100_000];
        new Random(13).NextBytes(state);
        state[0] = (byte)'\n'; // opaque: newlines and zeros included
        string dataPath = Dir.NewFile("the memfd-like state file\nsecond line\n");
        string unixPath = Dir.NewPath("api");
        var log = new ListLogger();

        await using HandoffServer incumbent = await StartAsync(Options());
        Socket web = incumbent.Listen("web", new IPEndPoint(IPAddress.Loopback, 0));
        Socket api = incumbent.Listen("api", new UnixDomainSocketEndPoint(unixPath));
        using SafeFileHandle data = File.OpenHandle(dataPath, FileMode.Open, FileAccess.ReadWrite);
        incumbent.AddFd("data", data);
        incumbent.StateToHandOff = state;
        await incumbent.ReadyAsync();

        await using HandoffServer successor = await StartAsync(Options(log));
        Assert.That(successor.IsSuccessor, Is.True);
        Assert.That(successor.IncumbentPid, Is.EqualTo(Environment.ProcessId));
        Assert.That(successor.InheritedNames, Is.EquivalentTo(new[] { "web", "api", "data" }));
        Assert.That(successor.InheritedState.ToArray(), Is.EqualTo(state));
        Socket web2 = successor.Listen("web", new IPEndPoint(IPAddress.Loopback, 0));
        Socket api2 = successor.Listen("api", new UnixDomainSocketEndPoint(unixPath));
        using SafeFileHandle? data2 = successor.TakeFd("data");
        Assert.That(data2, Is.Not.Null);
        Assert.That(successor.TakeFd("data"), Is.Null, "taken once");
        Assert.That(Posix.GetFileId(data2!), Is.EqualTo(Posix.GetFileId(data)));
        var buffer = new byte[64];
        int n = RandomAccess.Read(data2!, buffer, 0);
        Assert.That(Encoding.UTF8.GetString(buffer, 0, n), Is.EqualTo("the memfd-like state file\nsecond line\n"));
        Assert.That(Posix.GetFileId(web2.SafeHandle), Is.EqualTo(Posix.GetFileId(web.SafeHandle)), "the same TCP socket");
        Assert.That(Posix.GetFileId(api2.SafeHandle), Is.EqualTo(Posix.GetFileId(api.SafeHandle)), "the same Unix socket, not a new one");
        Assert.That(log.Text, Does.Not.Contain("not using the inherited"));

        await successor.ReadyAsync().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.That(incumbent.Superseded.IsCancellationRequested, Is.True);
        Assert.That(log.Text, Does.Contain("released its listeners"));
        // The successor serves on both; the incumbent's copies are closed.
        Assert.That(web.SafeHandle.IsClosed && api.SafeHandle.IsClosed, Is.True);
        using (var c = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            c.Connect(new UnixDomainSocketEndPoint(unixPath));
            using Socket accepted = await api2.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        using (var c = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            c.Connect(web2.LocalEndPoint!);
            using Socket accepted = await web2.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    [Test]
    [CancelAfter(30_000)]
    public async Task ListenerWhoseAddressChanged_IsClosedAndBoundFresh_WithAWarning()
    {
        string oldPath = Dir.NewPath("old"), newPath = Dir.NewPath("new");
        var log = new ListLogger();
        await using HandoffServer incumbent = await StartAsync(Options());
        Socket old = incumbent.Listen("api", new UnixDomainSocketEndPoint(oldPath));
        int oldTcpPort = ((IPEndPoint)incumbent.Listen("web", new IPEndPoint(IPAddress.Loopback, 0)).LocalEndPoint!).Port;
        await incumbent.ReadyAsync();

        await using HandoffServer successor = await StartAsync(Options(log));
        Socket fresh = successor.Listen("api", new UnixDomainSocketEndPoint(newPath));
        Assert.That(fresh.LocalEndPoint!.ToString(), Does.Contain("new").Or.Contain(".new"));
        Assert.That(Posix.GetFileId(fresh.SafeHandle), Is.Not.EqualTo(Posix.GetFileId(old.SafeHandle)));
        using (var c = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            c.Connect(new UnixDomainSocketEndPoint(newPath));
        // A TCP listener configured for another port than the one handed over.
        using var free = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        free.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        int otherPort = ((IPEndPoint)free.LocalEndPoint!).Port;
        free.Dispose();
        Socket web = successor.Listen("web", new IPEndPoint(IPAddress.Loopback, otherPort));
        Assert.That(((IPEndPoint)web.LocalEndPoint!).Port, Is.EqualTo(otherPort));
        Assert.That(log.Lines.Where(l => l.StartsWith("Warning: handoff: not using the inherited", StringComparison.Ordinal)).ToArray(),
            Has.Length.EqualTo(2).And.Some.Contain("'api'").And.Some.Contain($":{oldTcpPort}, not"), log.Text);
        // The incumbent still serves on the old address until the successor is ready.
        using (var c = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            c.Connect(new UnixDomainSocketEndPoint(oldPath));
            using Socket accepted = await old.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        await successor.ReadyAsync().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.That(incumbent.Superseded.IsCancellationRequested, Is.True);
    }

    [Test]
    [CancelAfter(30_000)]
    public async Task NoDescriptorLeaks_InIncumbentOrSuccessor_AfterAFailedAndASuccessfulHandoff()
    {
        int baseline = FdCounts.Settled();
        string unixPath = Dir.NewPath("u");
        string dataPath = Dir.NewFile("data");
        var log = new ListLogger();
        HandoffServer incumbent = await StartAsync(Options(log));
        incumbent.Listen("web", new IPEndPoint(IPAddress.Loopback, 0));
        incumbent.Listen("u", new UnixDomainSocketEndPoint(unixPath));
        incumbent.BindDatagram("dgram", new IPEndPoint(IPAddress.Loopback, 0));
        SafeFileHandle data = File.OpenHandle(dataPath);
        incumbent.AddFd("data", data);
        await incumbent.ReadyAsync();
        int serving = FdCounts.Settled();

        // A successor that takes everything and gives up before ready.
        HandoffServer quitter = await StartAsync(Options());
        Assert.That(quitter.InheritedNames, Has.Count.EqualTo(4));
        quitter.Listen("web", new IPEndPoint(IPAddress.Loopback, 0));
        using (quitter.TakeFd("data"))
        {
        }
        await quitter.DisposeAsync();
        await WaitForAsync(() => log.Text.Contains("still serving"), log);
        FdCounts.AssertCount(serving, "after a successor gave up");

        // A successor that takes only one of the four and says ready: it closes the other three,
        // the incumbent closes everything it owns; back to the baseline once both are disposed.
        HandoffServer successor = await StartAsync(Options());
        successor.Listen("web", new IPEndPoint(IPAddress.Loopback, 0));
        await successor.ReadyAsync().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.That(incumbent.Superseded.IsCancellationRequested, Is.True);
        await incumbent.DisposeAsync();
        data.Dispose();
        await successor.DisposeAsync();
        FdCounts.AssertCount(baseline, "after both servers were disposed");
    }

    private static async Task WaitForAsync(Func<bool> condition, ListLogger log, int timeoutMs = 10_000)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.ElapsedMilliseconds > timeoutMs)
                Assert.Fail($"not within {timeoutMs} ms; log:\n{log.Text}");
            await Task.Delay(20);
        }
    }
}
