// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FdSend.Handoff;

/// <summary>
/// One process's part in zero-downtime restarts (docs/handoff-protocol.md): it takes its
/// listeners over from the running instance, if there is one, or binds them; says when it
/// serves; and later hands everything to its own successor and tells the application it has
/// been superseded.
/// </summary>
/// <remarks>
/// <para>Use: <see cref="StartAsync"/>; <see cref="Listen"/> (and <see cref="BindDatagram"/>,
/// <see cref="TakeFd"/>) for each named socket; start serving on them; then
/// <see cref="ReadyAsync"/>. From then on a successor (started by <see cref="UpgradeAsync"/>,
/// systemd's ExecReload, a deploy script...) can connect to the control socket and take over;
/// when it has said ready, <see cref="Superseded"/> fires, the listeners this server returned
/// are closed (the successor's copies keep them open, backlog included), and the application
/// drains and exits.</para>
/// <para>Failure is safe: a successor that fails before it says ready changes nothing here.
/// One handoff runs at a time; others are refused (<c>busy</c>).</para>
/// <para>The sockets <see cref="Listen"/> returns belong to this server: use them until
/// <see cref="Superseded"/>, and do not dispose them. Accept with async calls
/// (<c>AcceptAsync</c> with the <see cref="Superseded"/> token) or a Poll loop: a thread blocked
/// in a sync <c>Accept</c> when the listener is closed makes .NET shut the socket down, and the
/// socket is shared with the successor.</para>
/// </remarks>
public sealed partial class HandoffServer : IAsyncDisposable, IDisposable
{
    private const int MaxFdsPerFrame = 253;
    private const string ConnectionClosed = "The other side closed the control connection.";

    private readonly HandoffOptions _options;
    private readonly ILogger _logger;
    private readonly uint _ownUid;
    private readonly CancellationTokenSource _superseded = new();
    private readonly CancellationTokenSource _lifetime = new();
    private readonly object _gate = new();

    // What this process got from its incumbent (successor only): name -> (role, message, index).
    private readonly Dictionary<string, (string Role, ReceivedFds Fds, int Index)> _inherited = new(StringComparer.Ordinal);
    private readonly List<ReceivedFds> _inheritedMessages = [];
    private FdChannel? _incumbent;

    // What this process will hand on: name -> (role, handle, the Socket this server owns or null).
    private readonly Dictionary<string, Registered> _registry = new(StringComparer.Ordinal);
    private ReadOnlyMemory<byte> _stateToHandOff;

    private Socket? _control;
    private Task? _acceptLoop;
    // Handoffs in progress (at most one past the checks, others being refused): DisposeAsync
    // waits for them, so that a superseded process that disposes its server before exiting
    // has sent 'released' first.
    private readonly HashSet<Task> _handlers = [];
    private int _handoffRunning;
    private bool _ready;
    private bool _disposed;

    private sealed record Registered(string Role, SafeHandle Handle, Socket? OwnedSocket);

    private HandoffServer(HandoffOptions options, uint ownUid)
    {
        _options = options;
        _logger = options.Logger ?? NullLogger.Instance;
        _ownUid = ownUid;
    }

    /// <summary>Whether this process took over from a running instance (false: first start,
    /// nobody answered at the control path).</summary>
    public bool IsSuccessor { get; private set; }

    /// <summary>The process id of the instance this one took over from, if any.</summary>
    public int? IncumbentPid { get; private set; }

    /// <summary>The state blob the incumbent handed over (empty on a first start).</summary>
    public ReadOnlyMemory<byte> InheritedState { get; private set; }

    /// <summary>The names of the descriptors handed over and not yet taken.</summary>
    public IReadOnlyCollection<string> InheritedNames
    {
        get
        {
            lock (_gate)
                return _inherited.Keys.ToArray();
        }
    }

    /// <summary>Fires once a successor has said ready: stop accepting, finish in-flight work,
    /// dispose this server (DisposeAsync waits until the successor has been told
    /// <c>released</c>), exit. It fires just before this server closes its listeners, so that
    /// pending <c>AcceptAsync</c> calls with this token end as cancelled rather than failing on
    /// a closed socket.</summary>
    public CancellationToken Superseded => _superseded.Token;

    /// <summary>The state blob to hand to a successor (read when one connects).</summary>
    public ReadOnlyMemory<byte> StateToHandOff
    {
        get { lock (_gate) return _stateToHandOff; }
        set { lock (_gate) _stateToHandOff = value; }
    }

    /// <summary>
    /// Starts this process's part: connects to the control socket and, if a running instance
    /// answers, receives its inventory (its listeners stay open there until
    /// <see cref="ReadyAsync"/>). If nobody answers, this is a first start.
    /// </summary>
    /// <exception cref="HandoffRefusedException">The running instance refused (another handoff
    /// in progress, credentials refused...). Nothing was taken; it goes on serving.</exception>
    /// <exception cref="HandoffProtocolException">The running instance broke the protocol.</exception>
    /// <exception cref="TimeoutException">The inventory did not arrive within
    /// <see cref="HandoffOptions.MessageTimeout"/>.</exception>
    public static async Task<HandoffServer> StartAsync(HandoffOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        // Before anything else: a successor trusts whoever answers at the control path, so a
        // directory others can write is refused here, not only when binding at ReadyAsync.
        ControlSocket.CheckDirectory(options.ControlPath);
        var server = new HandoffServer(options, OwnUid());
        try
        {
            server.ImportSystemdActivation(); // Systemd/HandoffServer.Systemd.cs
            await server.TakeOverAsync(cancellationToken).ConfigureAwait(false);
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    // ---- Self-upgrade -----------------------------------------------------------------------

    /// <summary>
    /// Starts a new instance of this program (the same executable and arguments; the
    /// environment is inherited), which takes over through the control socket. Like
    /// tableflip's Upgrade(): call it on SIGHUP, or from an admin endpoint.
    /// </summary>
    /// <returns>True once the new instance is ready and this one has been superseded; false if
    /// it exited, or was not ready in time (this instance goes on serving).</returns>
    /// <exception cref="InvalidOperationException"><see cref="ReadyAsync"/> has not been called yet.</exception>
    public async Task<bool> UpgradeAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (!_ready)
                throw new InvalidOperationException("Call ReadyAsync before UpgradeAsync: a successor needs the control socket.");
        }
        if (_superseded.IsCancellationRequested)
            return true;
        using Process successor = Process.Start(SelfStartInfo())
            ?? throw new InvalidOperationException("The successor process could not be started.");
        _logger.LogInformation("handoff: started successor process {Pid}", successor.Id);
        Task superseded = Task.Delay(Timeout.Infinite, _superseded.Token);
        Task exited = successor.WaitForExitAsync(cancellationToken);
        Task timedOut = Task.Delay(_options.MessageTimeout + _options.ReadyTimeout, cancellationToken);
        Task first = await Task.WhenAny(superseded, exited, timedOut).ConfigureAwait(false);
        if (first == superseded || _superseded.IsCancellationRequested)
            return true;
        cancellationToken.ThrowIfCancellationRequested();
        if (first == exited)
            _logger.LogWarning("handoff: successor process {Pid} exited with {Code} before it was ready; still serving", successor.Id, successor.ExitCode);
        else
            _logger.LogWarning("handoff: successor process {Pid} was not ready in time; still serving", successor.Id);
        return false;
    }

    /// <summary>How to start this program again: the executable, and for a framework-dependent
    /// app run as <c>dotnet app.dll</c>, the app's path first; then this process's arguments.</summary>
    internal static ProcessStartInfo SelfStartInfo()
    {
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("This process's executable path is unknown.");
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false };
        // [0] is the app's own path (its .dll when run as 'dotnet app.dll').
        string[] args = Environment.GetCommandLineArgs();
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet" && args.Length > 0)
            psi.ArgumentList.Add(args[0]);
        foreach (string a in args.Skip(1))
            psi.ArgumentList.Add(a);
        return psi;
    }

    // ---- Lifetime ---------------------------------------------------------------------------

    /// <summary>The effective uid of this process, as the kernel reports it for a socket
    /// peer: the default policy admits successors of the same uid.</summary>
    private static uint OwnUid()
    {
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
            return a.GetPeerCredentials().Uid;
    }

    /// <summary>Stops admitting successors and closes what this server owns: the control
    /// socket, the listeners it returned, inherited descriptors nobody took.</summary>
    public void Dispose()
    {
        List<Socket> owned;
        FdChannel? incumbent;
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
            owned = _registry.Values.Select(r => r.OwnedSocket).OfType<Socket>().ToList();
            _registry.Clear();
            incumbent = _incumbent;
            _incumbent = null;
            _inherited.Clear();
            foreach (ReceivedFds r in _inheritedMessages)
                r.Dispose();
            _inheritedMessages.Clear();
        }
        _lifetime.Cancel();
        _control?.Dispose();
        _activation?.Dispose();
        incumbent?.Dispose();
        foreach (Socket s in owned)
            CloseShared(s);
    }

    /// <summary>After a handoff: until the successor's control socket replaces this one at
    /// the path (or <see cref="HandoffOptions.MessageTimeout"/> passes), a new successor
    /// still reaches this instance, which answers 'shutting-down' so that it tries again;
    /// closing earlier would leave it a stale file. Asks the path's socket whose it is
    /// (its peer credentials) every 50 ms.</summary>
    private async Task WaitUntilControlPathIsNotOursAsync()
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < _options.MessageTimeout)
        {
            using (Socket? probe = await ControlSocket.TryConnectAsync(_options.ControlPath, CancellationToken.None).ConfigureAwait(false))
            {
                if (probe is null || probe.GetPeerCredentials().Pid != Environment.ProcessId)
                    return;
            }
            await Task.Delay(50).ConfigureAwait(false);
        }
        _logger.LogWarning("handoff: the control path still leads to this instance after {Seconds:0.#} s; closing it anyway", _options.MessageTimeout.TotalSeconds);
    }

    /// <inheritdoc cref="Dispose"/>
    /// <remarks>After a handoff, first waits (up to <see cref="HandoffOptions.MessageTimeout"/>)
    /// for the successor's control socket to replace this one at the path. Also waits for the accept loop and for a handoff in progress to end: one that
    /// was past ready finishes (the successor gets its <c>released</c>); one before ready is
    /// abandoned (the successor sees the connection close).</remarks>
    public async ValueTask DisposeAsync()
    {
        if (_superseded.IsCancellationRequested)
            await WaitUntilControlPathIsNotOursAsync().ConfigureAwait(false);
        Dispose();
        if (_acceptLoop is not null)
            await _acceptLoop.ConfigureAwait(false);
        Task[] handlers;
        lock (_handlers)
            handlers = _handlers.ToArray();
        await Task.WhenAll(handlers).ConfigureAwait(false);
    }
}
