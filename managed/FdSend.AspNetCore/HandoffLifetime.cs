// SPDX-License-Identifier: MIT
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using FdSend.Handoff;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Win32.SafeHandles;

namespace FdSend.AspNetCore;

/// <summary>
/// Starts the <see cref="HandoffServer"/> when Kestrel's options are built (before Kestrel
/// binds: the sockets are taken over or bound then), says ready on
/// <see cref="IHostApplicationLifetime.ApplicationStarted"/>, stops the application when
/// superseded, and starts successors on request or SIGHUP.
/// </summary>
internal sealed class HandoffLifetime : IHandoffLifetime, IHostedService, IAsyncDisposable
{
    private readonly KestrelHandoffOptions _options;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Dictionary<string, EndPoint> _endpoints = new(StringComparer.Ordinal);
    // The sockets the handoff server owns; Kestrel gets duplicates. Referenced here too, so
    // that nothing is finalized while Kestrel serves on the same socket.
    private readonly Dictionary<string, Socket> _listeners = new(StringComparer.Ordinal);
    // The descriptors given to Kestrel (it owns and closes them).
    private readonly List<int> _kestrelFds = [];
    private HandoffServer? _server;
    private Task<bool>? _upgrade;
    private PosixSignalRegistration? _sigHup;
    private CancellationTokenRegistration _onSuperseded;
    private CancellationTokenRegistration _onStarted;
    private CancellationTokenRegistration _onStopping;

    public HandoffLifetime(IOptions<KestrelHandoffOptions> options, IHostApplicationLifetime lifetime, ILoggerFactory loggerFactory)
    {
        _options = options.Value;
        _lifetime = lifetime;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger("FdSend.AspNetCore");
    }

    public bool IsSuccessor => Server.IsSuccessor;

    public int? IncumbentPid => Server.IncumbentPid;

    public IReadOnlyDictionary<string, EndPoint> Endpoints
    {
        get { lock (_gate) return new Dictionary<string, EndPoint>(_endpoints); }
    }

    public Task Ready => _ready.Task;

    public CancellationToken Superseded => Server.Superseded;

    public HandoffServer Server => EnsureStarted();

    /// <summary>The handoff server, started on first use: connects to the running instance
    /// and takes its inventory, or finds none (a first start). Blocks: it runs while the host
    /// builds Kestrel's options, before anything listens.</summary>
    private HandoffServer EnsureStarted()
    {
        lock (_gate)
        {
            if (_server is not null)
                return _server;
            HandoffOptions handoffOptions = _options.ToHandoffOptions(_loggerFactory.CreateLogger("FdSend.Handoff"));
            _server = HandoffServer.StartAsync(handoffOptions).GetAwaiter().GetResult();
            if (_server.IsSuccessor)
                _logger.LogInformation("Taking over from process {Pid}", _server.IncumbentPid);
            return _server;
        }
    }

    /// <summary>Gives Kestrel a duplicate of each named listener (Kestrel's ListenHandle owns
    /// and closes the descriptor it is given; the handoff server keeps its own).</summary>
    internal void ConfigureKestrel(KestrelServerOptions kestrel)
    {
        HandoffServer server = EnsureStarted();
        foreach (HandoffEndpoint endpoint in _options.Endpoints)
        {
            Socket socket;
            lock (_gate)
            {
                if (!_listeners.TryGetValue(endpoint.Name, out socket!))
                {
                    socket = server.Listen(endpoint.Name, endpoint.EndPoint, _options.Backlog);
                    _listeners[endpoint.Name] = socket;
                    _endpoints[endpoint.Name] = socket.LocalEndPoint ?? endpoint.EndPoint;
                }
            }
            int fd = FdPassing.DuplicateRawFd(socket.SafeHandle);
            lock (_gate)
                _kestrelFds.Add(fd);
            _logger.LogInformation("Kestrel endpoint '{Name}' on {EndPoint} ({How})", endpoint.Name, socket.LocalEndPoint,
                server.IsSuccessor ? $"taken over from process {server.IncumbentPid}" : "bound");
            kestrel.ListenHandle((ulong)fd, listen =>
            {
                endpoint.Configure?.Invoke(listen);
                FirstRequestGrace.Use(listen, _options.FirstRequestGrace); // after TLS: it watches the HTTP bytes
            });
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        HandoffServer server = EnsureStarted();
        _onStarted = _lifetime.ApplicationStarted.Register(() => _ = SayReadyAsync(server));
        _onStopping = _lifetime.ApplicationStopping.Register(PrepareKestrelClose);
        _onSuperseded = server.Superseded.Register(() =>
        {
            _logger.LogInformation("Superseded by a successor: stopping (in-flight requests finish first)");
            _lifetime.StopApplication();
        });
        if (_options.UpgradeOnSigHup)
        {
            _sigHup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
            {
                context.Cancel = true;
                _logger.LogInformation("SIGHUP: starting a successor");
                _ = UpgradeAsync();
            });
        }
        return Task.CompletedTask;
    }

    /// <summary>
    /// Runs when the application starts stopping, before Kestrel closes its listeners: clears
    /// close-on-exec on Kestrel's descriptors. Kestrel closes a listener with an accept in
    /// flight, and .NET's Socket.Dispose then "unblocks" a handle in use with
    /// connect(AF_UNSPEC), which on Linux stops a listening socket and drops its backlog in
    /// every process that shares it (the successor's too). It skips that for a descriptor
    /// without close-on-exec (one that "may be shared with other processes"). No successor is
    /// started from here on, so nothing inherits them.
    /// </summary>
    private void PrepareKestrelClose()
    {
        int[] fds;
        lock (_gate)
            fds = _kestrelFds.ToArray();
        foreach (int fd in fds)
        {
            try
            {
                using var handle = new SafeFileHandle(fd, ownsHandle: false); // Kestrel owns it
                FdPassing.SetInheritable(handle, inheritable: true);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                _logger.LogWarning("Could not clear close-on-exec on Kestrel's listener {Fd} ({Error}): closing it may stop the successor's listener too",
                    fd, e.Message);
            }
        }
    }

    private async Task SayReadyAsync(HandoffServer server)
    {
        try
        {
            await server.ReadyAsync(_lifetime.ApplicationStopping).ConfigureAwait(false);
            _logger.LogInformation("Ready: serving on {Endpoints}; successors may connect to {Path}",
                string.Join(", ", Endpoints.Select(e => $"{e.Key}={e.Value}")), _options.ControlPath);
            _ready.TrySetResult();
        }
        catch (Exception e)
        {
            _logger.LogError(e, "Could not complete the handoff's ready step; no successor can take over from this process");
            _ready.TrySetException(e);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task<bool> UpgradeAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (_upgrade is null || _upgrade.IsCompleted)
                _upgrade = RunUpgradeAsync();
            return _upgrade.WaitAsync(cancellationToken);
        }
    }

    private async Task<bool> RunUpgradeAsync()
    {
        await Task.Yield();
        try
        {
            await _ready.Task.ConfigureAwait(false);
            bool done = await Server.UpgradeAsync(_lifetime.ApplicationStopping).ConfigureAwait(false);
            if (done)
                _logger.LogInformation("Upgrade: the successor took over");
            else
                _logger.LogWarning("Upgrade: the successor did not take over; still serving");
            return done;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _logger.LogError(e, "Upgrade failed; still serving");
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _sigHup?.Dispose();
        _onStarted.Dispose();
        _onStopping.Dispose();
        _onSuperseded.Dispose();
        HandoffServer? server;
        lock (_gate)
            server = _server;
        if (server is not null)
            await server.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>Runs <see cref="HandoffLifetime.ConfigureKestrel"/> when Kestrel's options are built.</summary>
internal sealed class ConfigureKestrelFromHandoff(HandoffLifetime handoff) : IConfigureOptions<KestrelServerOptions>
{
    public void Configure(KestrelServerOptions options) => handoff.ConfigureKestrel(options);
}
