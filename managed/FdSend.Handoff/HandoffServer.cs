// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;

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

    // ---- Taking over (successor) ------------------------------------------------------------

    private async Task TakeOverAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.MessageTimeout);
        while (true)
        {
            try
            {
                await TakeOverOnceAsync(timeout, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when ((e is HandoffRefusedException { Reason: "shutting-down" } || e is GoneBeforeAnswerException) &&
                                      !timeout.IsCancellationRequested)
            {
                // An instance that has just handed over: its successor's control socket is
                // about to replace it at the path (or already has, and the instance we reached
                // just before the rename exited without answering). Connect again shortly.
                FdChannel? old = _incumbent;
                _incumbent = null;
                old?.Dispose();
                if (e is GoneBeforeAnswerException)
                    _logger.LogInformation("handoff: the instance at {Path} closed the connection before answering; connecting again", _options.ControlPath);
                else
                    _logger.LogInformation("handoff: the instance at {Path} is handing over; connecting again", _options.ControlPath);
                try
                {
                    await Task.Delay(100, timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new TimeoutException($"The control path still led to an instance that had handed over after {_options.MessageTimeout.TotalSeconds:0.#} s.");
                }
            }
            catch (GoneBeforeAnswerException e)
            {
                // Past the deadline: what ended the connection, as before this retry existed.
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerException!);
            }
        }
    }

    private async Task TakeOverOnceAsync(CancellationTokenSource timeout, CancellationToken cancellationToken)
    {
        Socket? socket = await ControlSocket.TryConnectAsync(_options.ControlPath, cancellationToken).ConfigureAwait(false);
        if (socket is null)
        {
            _logger.LogInformation("handoff: no running instance at {Path}; binding fresh listeners", _options.ControlPath);
            return;
        }
        var channel = new FdChannel(socket);
        _incumbent = channel;
        try
        {
            SocketException? helloFailed = null;
            try
            {
                await SendAsync(channel, new HandoffMessage(HandoffMessage.Hello)
                    .With("versions", HandoffMessage.Version.ToString(CultureInfo.InvariantCulture))
                    .With("pid", Environment.ProcessId.ToString(CultureInfo.InvariantCulture)), timeout.Token).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                // An incumbent that refuses at once (credentials) may have answered and closed
                // before the hello arrived (EPIPE): its refusal is waiting to be read.
                helloFailed = e;
            }

            HandoffMessage first;
            try
            {
                first = await ReceiveAsync(channel, null, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is HandoffProtocolException { Message: ConnectionClosed } ||
                                      e is SocketException { SocketErrorCode: SocketError.ConnectionReset })
            {
                // Gone before it answered: it changed nothing, so ask again (TakeOverAsync).
                throw new GoneBeforeAnswerException(e);
            }
            catch (IOException) when (helloFailed is not null)
            {
                throw helloFailed;
            }
            if (first.Type == HandoffMessage.Refused)
                throw new HandoffRefusedException(first.Get("reason") ?? "unknown", first.Get("message") ?? "");
            Expect(first, HandoffMessage.Inventory);
            if (first.RequireNumber("version", int.MaxValue) != HandoffMessage.Version)
                throw new HandoffProtocolException($"The running instance answered with version {first.Get("version")}, which this process did not offer.");
            long total = first.RequireNumber("fds", 1_000_000);
            long stateLength = first.RequireNumber("state-length", int.MaxValue);
            IncumbentPid = (int)first.RequireNumber("pid", int.MaxValue);

            long received = 0;
            while (true)
            {
                HandoffMessage m = await ReceiveAsync(channel, this, timeout.Token).ConfigureAwait(false);
                if (m.Type == HandoffMessage.End)
                    break;
                if (m.Type == HandoffMessage.Fds)
                    continue; // filed under their names by ReceiveAsync
                if (m.Type == HandoffMessage.State)
                {
                    if (m.Body.Length != stateLength)
                        throw new HandoffProtocolException($"The state is {m.Body.Length} bytes; the inventory announced {stateLength}.");
                    InheritedState = m.Body;
                    continue;
                }
                throw new HandoffProtocolException($"Unexpected '{m.Type}' message in the inventory.");
            }
            lock (_gate)
                received = _inherited.Count;
            if (received != total)
                throw new HandoffProtocolException($"The inventory announced {total} descriptors and carried {received}.");
            if (stateLength > 0 && InheritedState.Length == 0)
                throw new HandoffProtocolException("The inventory announced a state blob that never came.");
            IsSuccessor = true;
            _logger.LogInformation("handoff: took {Count} descriptors ({Names}) and {State} bytes of state from process {Pid}",
                total, Names(InheritedNames), InheritedState.Length, IncumbentPid);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"The running instance did not send its inventory within {_options.MessageTimeout.TotalSeconds:0.#} s.");
        }
    }

    /// <summary>The incumbent ended the connection before answering the hello (end of stream or
    /// reset): an instance that exited once its control path was replaced, which we reached
    /// just before the rename. TakeOverAsync connects again; past the deadline the cause
    /// surfaces.</summary>
    private sealed class GoneBeforeAnswerException(Exception cause)
        : IOException("The running instance closed the control connection before answering.", cause);

    /// <summary>Receives one message; for an <c>fds</c> message, files its descriptors under
    /// their names in <paramref name="into"/> (closing them on any error).</summary>
    private static async Task<HandoffMessage> ReceiveAsync(FdChannel channel, HandoffServer? into, CancellationToken cancellationToken)
    {
        FdMessage message;
        try
        {
            message = await channel.ReceiveAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (EndOfStreamException)
        {
            throw new HandoffProtocolException(ConnectionClosed);
        }
        bool filed = false;
        try
        {
            HandoffMessage m = HandoffMessage.Parse(message.Payload.Span);
            if (m.Type != HandoffMessage.Fds)
            {
                if (message.FdCount != 0)
                    throw new HandoffProtocolException($"A '{m.Type}' message carried {message.FdCount} descriptors.");
                return m;
            }
            if (into is null)
                throw new HandoffProtocolException("Unexpected 'fds' message.");
            if (m.FdLines.Count != message.FdCount || message.FdCount == 0)
                throw new HandoffProtocolException($"An 'fds' message lists {m.FdLines.Count} names for {message.FdCount} descriptors.");
            into.File(m.FdLines, message.Fds);
            filed = true;
            return m;
        }
        finally
        {
            if (!filed)
                message.Dispose();
        }
    }

    private void File(IReadOnlyList<string> lines, ReceivedFds fds)
    {
        lock (_gate)
        {
            var parsed = new List<(string Role, string Name)>(lines.Count);
            foreach (string line in lines)
            {
                int space = line.IndexOf(' ');
                string role = space > 0 ? line[..space] : "";
                string name = space > 0 ? line[(space + 1)..] : "";
                if (role is not ("listener" or "socket" or "fd") || !HandoffMessage.IsValidName(name))
                    throw new HandoffProtocolException($"Malformed descriptor line '{HandoffMessage.Limit(line)}'.");
                if (_inherited.ContainsKey(name) || parsed.Any(p => p.Name == name))
                    throw new HandoffProtocolException($"The name '{name}' appears twice in the inventory.");
                parsed.Add((role, name));
            }
            _inheritedMessages.Add(fds);
            for (int i = 0; i < parsed.Count; i++)
                _inherited[parsed[i].Name] = (parsed[i].Role, fds, i);
        }
    }

    private static void Expect(HandoffMessage m, string type)
    {
        if (m.Type != type)
            throw new HandoffProtocolException($"Expected a '{type}' message, got '{m.Type}'.");
    }

    // ---- Naming sockets -----------------------------------------------------------------------

    /// <summary>
    /// The listening socket named <paramref name="name"/>: the one the running instance handed
    /// over, if it is a listening socket bound to <paramref name="endpoint"/> (checked), or a
    /// new one bound to <paramref name="endpoint"/> and listening. Either way it is registered
    /// under that name for this process's successor.
    /// </summary>
    /// <param name="name">1 to 200 printable ASCII characters without spaces, unique.</param>
    /// <param name="endpoint">An <see cref="IPEndPoint"/> (TCP) or a
    /// <see cref="UnixDomainSocketEndPoint"/> with a path (Unix stream).</param>
    /// <param name="backlog">The listen backlog of a new socket.</param>
    /// <returns>The listener, owned by this server (do not dispose it; it is closed when this
    /// process is superseded or the server disposed). Ready for sync and async calls.</returns>
    /// <exception cref="ArgumentException">A bad or duplicate name, or an unsupported endpoint.</exception>
    /// <exception cref="SocketException">Binding a new socket failed (e.g. the address is in use).</exception>
    public Socket Listen(string name, EndPoint endpoint, int backlog = 512) =>
        Acquire(name, "listener", endpoint, SocketType.Stream, backlog);

    /// <summary>Like <see cref="Listen"/> for a datagram socket (UDP, or a Unix datagram path):
    /// the handed-over one if it is a datagram socket bound to <paramref name="endpoint"/>, or a
    /// new bound one.</summary>
    public Socket BindDatagram(string name, EndPoint endpoint) =>
        Acquire(name, "socket", endpoint, SocketType.Dgram, 0);

    /// <summary>Takes a non-socket descriptor the running instance handed over under
    /// <paramref name="name"/> (added there with <see cref="AddFd"/>), or null if it handed
    /// none by that name. The caller owns the handle.</summary>
    public SafeFileHandle? TakeFd(string name)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_inherited.Remove(name, out var entry))
                return null;
            return entry.Fds.TakeFileHandle(entry.Index);
        }
    }

    /// <summary>Hands <paramref name="handle"/> (an open file, a memfd...) to this process's
    /// successor under <paramref name="name"/>. The caller keeps owning it and must keep it
    /// open until this process is superseded.</summary>
    public void AddFd(string name, SafeHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        Register(name, new Registered("fd", handle, null));
    }

    /// <summary>Hands a socket this process created itself (listening, or a bound datagram
    /// socket) to its successor under <paramref name="name"/>. The caller keeps owning it.</summary>
    public void AddSocket(string name, Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        Register(name, new Registered(socket.SocketType == SocketType.Dgram ? "socket" : "listener", socket.SafeHandle, null));
    }

    private void Register(string name, Registered entry)
    {
        if (!HandoffMessage.IsValidName(name))
            throw new ArgumentException($"'{name}' is not a valid handoff name: 1 to 200 printable ASCII characters, no spaces.", nameof(name));
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_registry.TryAdd(name, entry))
                throw new ArgumentException($"The name '{name}' is already registered.", nameof(name));
        }
    }

    private Socket Acquire(string name, string role, EndPoint endpoint, SocketType type, int backlog)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        if (!HandoffMessage.IsValidName(name))
            throw new ArgumentException($"'{name}' is not a valid handoff name: 1 to 200 printable ASCII characters, no spaces.", nameof(name));
        if (endpoint is not (IPEndPoint or UnixDomainSocketEndPoint))
            throw new ArgumentException($"A handoff listener is bound to an IPEndPoint or a UnixDomainSocketEndPoint, not {endpoint.GetType().Name}.", nameof(endpoint));
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_registry.ContainsKey(name))
                throw new ArgumentException($"The name '{name}' is already registered.", nameof(name));
            Socket socket = TakeInherited(name, role, endpoint, type) ?? TakeSystemdActivated(name, endpoint, type)
                            ?? BindFresh(name, endpoint, type, backlog);
            _registry[name] = new Registered(role, socket.SafeHandle, socket);
            return socket;
        }
    }

    /// <summary>The inherited socket for <paramref name="name"/> if it fits; null (and closed,
    /// with a warning) if it does not, or if none was inherited.</summary>
    private Socket? TakeInherited(string name, string role, EndPoint endpoint, SocketType type)
    {
        if (!_inherited.Remove(name, out var entry))
            return null;
        FdInfo info = entry.Fds.Describe(entry.Index);
        string? problem = Misfit(info, endpoint, type) ??
            (entry.Role != role ? $"it was handed over as a '{entry.Role}', not a '{role}'" : null);
        Socket? socket = null;
        if (problem is null)
        {
            socket = entry.Fds.TakeSocket(entry.Index);
            if (!SameAddress(socket.LocalEndPoint, endpoint))
            {
                problem = $"it is bound to {socket.LocalEndPoint}, not {endpoint}";
                socket.Dispose(); // our copy only; never shut down: the incumbent still uses it
                socket = null;
            }
        }
        if (problem is not null)
            _logger.LogWarning("handoff: not using the inherited '{Name}': {Problem}; binding it afresh", name, problem);
        return socket;
    }

    /// <summary>Why a descriptor described by <paramref name="info"/> cannot serve as the
    /// <paramref name="type"/> socket for <paramref name="endpoint"/> (a handed-over or a
    /// socket-activated one), or null if it can.</summary>
    private static string? Misfit(FdInfo info, EndPoint endpoint, SocketType type) =>
        !info.IsSocket ? $"it is a {info.Kind}, not a socket" :
        info.AddressFamily != endpoint.AddressFamily ? $"it is an {info.AddressFamily} socket, not {endpoint.AddressFamily}" :
        type == SocketType.Stream && info.SocketType is not (SocketType.Stream or SocketType.Seqpacket) ? $"it is a {info.SocketType} socket, not Stream" :
        type == SocketType.Dgram && info.SocketType != SocketType.Dgram ? $"it is a {info.SocketType} socket, not Dgram" :
        type == SocketType.Stream && !info.IsListening ? "it is not listening" :
        null;

    private static bool SameAddress(EndPoint? bound, EndPoint wanted) => (bound, wanted) switch
    {
        (IPEndPoint b, IPEndPoint w) => b.Address.Equals(w.Address) && (w.Port == 0 || b.Port == w.Port),
        (UnixDomainSocketEndPoint b, UnixDomainSocketEndPoint w) =>
            b.ToString() == w.ToString() || ControlSocket.IsTemporaryNameOf(b.ToString(), w.ToString()),
        _ => false,
    };

    private Socket BindFresh(string name, EndPoint endpoint, SocketType type, int backlog)
    {
        Socket socket;
        if (endpoint is UnixDomainSocketEndPoint unix && !string.IsNullOrEmpty(unix.ToString()) && unix.ToString()[0] != '\0' && unix.ToString()[0] != '@')
        {
            // A path: bound under a temporary name and renamed into place, so that disposing
            // this copy never deletes the path a successor serves on.
            socket = ControlSocket.BindUnix(unix.ToString(), type, backlog, checkDirectory: false);
        }
        else
        {
            ProtocolType protocol = endpoint.AddressFamily == AddressFamily.Unix ? ProtocolType.Unspecified
                                  : type == SocketType.Dgram ? ProtocolType.Udp : ProtocolType.Tcp;
            socket = new Socket(endpoint.AddressFamily, type, protocol);
            try
            {
                if (endpoint.AddressFamily != AddressFamily.Unix)
                    socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(endpoint);
                if (type != SocketType.Dgram)
                    socket.Listen(backlog);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
        _logger.LogInformation("handoff: bound '{Name}' to {Endpoint}", name, socket.LocalEndPoint);
        return socket;
    }

    // ---- Ready, and admitting successors ----------------------------------------------------

    /// <summary>
    /// Says that this process serves on its listeners. A successor: closes every inherited
    /// descriptor it did not take, tells the running instance, which then closes its copies
    /// and lets go, and waits (up to <see cref="HandoffOptions.MessageTimeout"/>) for it to say
    /// so. Then, in any case, binds the control socket and admits the next successor.
    /// </summary>
    /// <exception cref="InvalidOperationException">Called twice.</exception>
    public async Task ReadyAsync(CancellationToken cancellationToken = default)
    {
        FdChannel? incumbent;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_ready)
                throw new InvalidOperationException("ReadyAsync was already called.");
            _ready = true;
            incumbent = _incumbent;
            _incumbent = null;
            CloseUnusedInherited();
        }
        if (incumbent is not null)
        {
            await using (incumbent.ConfigureAwait(false))
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(_options.MessageTimeout);
                try
                {
                    NotifySystemdMainPid();
                    await SendAsync(incumbent, new HandoffMessage(HandoffMessage.Ready), timeout.Token).ConfigureAwait(false);
                    HandoffMessage m = await ReceiveAsync(incumbent, null, timeout.Token).ConfigureAwait(false);
                    Expect(m, HandoffMessage.Released);
                    _logger.LogInformation("handoff: process {Pid} released its listeners; this process serves alone", IncumbentPid);
                }
                catch (Exception e) when (e is IOException or SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
                {
                    // Our listeners are ours either way; the old process is gone or stuck.
                    _logger.LogWarning("handoff: process {Pid} did not confirm the release ({Error}); serving anyway", IncumbentPid, e.Message);
                }
            }
        }
        // The process-wide readiness engine (an epoll descriptor and a wake-up pipe) that the
        // control connections' channels wait on: made now, as this process starts serving,
        // rather than in the middle of its first handoff.
        _ = FdSend.ReadinessEngine.Instance;
        Socket control = ControlSocket.BindUnix(_options.ControlPath, SocketType.Stream, 8, checkDirectory: true);
        lock (_gate)
        {
            if (_disposed)
            {
                control.Dispose();
                throw new ObjectDisposedException(nameof(HandoffServer));
            }
            _control = control;
            _acceptLoop = Task.Run(AcceptSuccessorsAsync);
        }
        _logger.LogInformation("handoff: ready; successors may connect to {Path}", _options.ControlPath);
        SystemdReady();
    }

    /// <summary>Names for a log line: the first ten, then how many more.</summary>
    private static string Names(IEnumerable<string> names)
    {
        string[] all = names.ToArray();
        return all.Length <= 10 ? string.Join(", ", all) : $"{string.Join(", ", all.Take(10))} and {all.Length - 10} more";
    }

    private void CloseUnusedInherited()
    {
        if (_inherited.Count > 0)
            _logger.LogWarning("handoff: closing {Count} inherited descriptors nobody took: {Names}", _inherited.Count, Names(_inherited.Keys));
        _inherited.Clear();
        foreach (ReceivedFds r in _inheritedMessages)
            r.Dispose(); // closes what was not taken
        _inheritedMessages.Clear();
    }

    private async Task AcceptSuccessorsAsync()
    {
        Socket control = _control!;
        while (!_lifetime.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await control.AcceptAsync(_lifetime.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (!_lifetime.IsCancellationRequested)
                    _logger.LogError("handoff: the control socket failed ({Error}); no more successors can connect", e.Message);
                return;
            }
            Task handler = Task.Run(() => HandleSuccessorAsync(connection));
            lock (_handlers)
                _handlers.Add(handler);
            _ = handler.ContinueWith(t =>
            {
                lock (_handlers)
                    _handlers.Remove(t);
            }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private async Task HandleSuccessorAsync(Socket connection)
    {
        await using var channel = new FdChannel(connection);
        PeerCredentials peer;
        try
        {
            peer = connection.GetPeerCredentials();
        }
        catch (SocketException e)
        {
            _logger.LogWarning("handoff: could not read a successor's credentials ({Error}); refused", e.Message);
            return;
        }
        string who = $"process {peer.Pid?.ToString(CultureInfo.InvariantCulture) ?? "?"} (uid {peer.Uid})";

        // The hello first, also before a refusal (docs/handoff-protocol.md): a refusal sent
        // before the hello was read could meet a successor whose hello write then fails.
        HandoffMessage hello;
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token))
        {
            timeout.CancelAfter(_options.MessageTimeout);
            try
            {
                hello = await ReceiveAsync(channel, null, timeout.Token).ConfigureAwait(false);
                Expect(hello, HandoffMessage.Hello);
            }
            catch (HandoffProtocolException e) when (e.Message == ConnectionClosed)
            {
                // Connected and closed without a word (e.g. a superseded instance checking whose
                // socket the control path leads to): nothing to answer.
                return;
            }
            catch (HandoffProtocolException e)
            {
                _logger.LogWarning("handoff: {Who} broke the protocol ({Error}); still serving", who, e.Message);
                await RefuseAsync(channel, "protocol", e.Message).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
            {
                if (!_lifetime.IsCancellationRequested)
                    _logger.LogWarning("handoff: {Who} sent no valid hello ({Error}); still serving", who, e.Message);
                return;
            }
        }
        Func<PeerCredentials, bool> authorize = _options.AuthorizeSuccessor ?? (p => p.Uid == _ownUid);
        if (!authorize(peer))
        {
            _logger.LogWarning("handoff: refused {Who}: its credentials are not authorized", who);
            await RefuseAsync(channel, "unauthorized", $"uid {peer.Uid} may not take over this service").ConfigureAwait(false);
            return;
        }
        if (_superseded.IsCancellationRequested)
        {
            // Until the successor's control socket replaces ours at the path, a new successor
            // reaches us: tell it to try again (it then reaches the new instance).
            await RefuseAsync(channel, "shutting-down", "this instance has handed over; connect again").ConfigureAwait(false);
            return;
        }
        string[] versions = (hello.Get("versions") ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (!versions.Contains(HandoffMessage.Version.ToString(CultureInfo.InvariantCulture)))
        {
            _logger.LogWarning("handoff: {Who} speaks versions '{Versions}', not {Version}; refused", who, hello.Get("versions"), HandoffMessage.Version);
            await RefuseAsync(channel, "unsupported-version", $"this instance speaks version {HandoffMessage.Version}").ConfigureAwait(false);
            return;
        }
        // A handoff is in progress (the cause of 'busy') from the inventory on.
        if (Interlocked.CompareExchange(ref _handoffRunning, 1, 0) != 0)
        {
            _logger.LogWarning("handoff: refused {Who}: another handoff is in progress", who);
            await RefuseAsync(channel, "busy", "another handoff is in progress").ConfigureAwait(false);
            return;
        }
        bool released = false;
        try
        {
            released = await HandOverAsync(channel, who, () => released = true).ConfigureAwait(false);
        }
        catch (Exception e) when (_lifetime.IsCancellationRequested && !released)
        {
            _logger.LogInformation("handoff: handoff to {Who} abandoned: this server is being disposed ({Error})", who, e.Message);
        }
        catch (Exception e)
        {
            // Whatever it was (a peer's garbage, a timeout, a bug here), this task is the last to
            // see it: log it; the incumbent goes on serving unless it has already released.
            if (released)
                _logger.LogWarning("handoff: after handing over to {Who}: {Error}", who, e.Message);
            else
                _logger.LogWarning(e is IOException or SocketException or OperationCanceledException or TimeoutException ? null : e,
                    "handoff: handoff to {Who} failed ({Type}: {Error}); still serving", who, e.GetType().Name, e.Message);
        }
        finally
        {
            if (!released)
                Volatile.Write(ref _handoffRunning, 0);
        }
    }

    /// <summary>Sends <c>refused</c>, then ends the connection gracefully: closing a Unix
    /// socket with unread data (the peer's hello) resets the peer's end, and the refusal it has
    /// not read yet is lost with it. So: shut down sending, read whatever the peer still sends
    /// until it closes (2 s at most), then close.</summary>
    private static async Task RefuseAsync(FdChannel channel, string reason, string message)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await SendAsync(channel, new HandoffMessage(HandoffMessage.Refused).With("reason", reason).With("message", message), timeout.Token)
                .ConfigureAwait(false);
            Socket socket = channel.Socket;
            socket.Shutdown(SocketShutdown.Send);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            var sink = new byte[4096];
            while (await socket.ReceiveAsync(sink, SocketFlags.None, timeout.Token).ConfigureAwait(false) > 0)
            {
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The peer is gone already, or lingers: nothing more to tell.
        }
    }

    /// <summary>One handoff: hello, inventory, the wait for ready. True once released.</summary>
    private async Task<bool> HandOverAsync(FdChannel channel, string who, Action onReleased)
    {
        // Disposing the server abandons a handoff in progress (before ready).
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token))
        {
            timeout.CancelAfter(_options.MessageTimeout);
            List<KeyValuePair<string, Registered>> items;
            ReadOnlyMemory<byte> state;
            lock (_gate)
            {
                items = _registry.ToList();
                state = _stateToHandOff;
            }
            await SendAsync(channel, new HandoffMessage(HandoffMessage.Inventory)
                .With("version", HandoffMessage.Version.ToString(CultureInfo.InvariantCulture))
                .With("pid", Environment.ProcessId.ToString(CultureInfo.InvariantCulture))
                .With("fds", items.Count.ToString(CultureInfo.InvariantCulture))
                .With("state-length", state.Length.ToString(CultureInfo.InvariantCulture)), timeout.Token).ConfigureAwait(false);
            for (int start = 0; start < items.Count; start += MaxFdsPerFrame)
            {
                var batch = items.Skip(start).Take(MaxFdsPerFrame).ToList();
                var m = new HandoffMessage(HandoffMessage.Fds);
                foreach (var item in batch)
                    m.With("fd", $"{item.Value.Role} {item.Key}");
                Descriptor[] fds = batch.Select(item => Descriptor.FromHandle(item.Value.Handle)).ToArray();
                await SendAsync(channel, m, timeout.Token, fds).ConfigureAwait(false);
            }
            if (state.Length > 0)
                await SendAsync(channel, new HandoffMessage(HandoffMessage.State).WithBody(state), timeout.Token).ConfigureAwait(false);
            await SendAsync(channel, new HandoffMessage(HandoffMessage.End), timeout.Token).ConfigureAwait(false);
            _logger.LogInformation("handoff: sent {Count} descriptors to {Who}; waiting for it to be ready", items.Count, who);
        }

        HandoffMessage answer;
        using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token))
        {
            deadline.CancelAfter(_options.ReadyTimeout);
            try
            {
                answer = await ReceiveAsync(channel, null, deadline.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!_lifetime.IsCancellationRequested)
            {
                _logger.LogWarning("handoff: {Who} was not ready within {Seconds:0.#} s; still serving", who, _options.ReadyTimeout.TotalSeconds);
                return false;
            }
        }
        if (answer.Type == HandoffMessage.Abort)
        {
            _logger.LogWarning("handoff: {Who} aborted ({Reason}); still serving", who, answer.Get("reason") ?? "no reason given");
            return false;
        }
        Expect(answer, HandoffMessage.Ready);
        onReleased();
        Release();
        _logger.LogInformation("handoff: {Who} is ready; released the listeners", who);
        using var last = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await SendAsync(channel, new HandoffMessage(HandoffMessage.Released), last.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
        {
            _logger.LogWarning("handoff: could not confirm the release to {Who} ({Error})", who, e.Message);
        }
        return true;
    }

    /// <summary>Stops this process serving: fires <see cref="Superseded"/> first (so that the
    /// application's pending <c>AcceptAsync</c> calls end as cancelled, not as errors on a
    /// closed socket), then closes the listeners this server owns and the control socket (its
    /// path now belongs to the successor, or soon will). Closing, never shutting down: the
    /// sockets are shared with the successor (<see cref="CloseShared"/>).</summary>
    private void Release()
    {
        _superseded.Cancel();
        List<Socket> owned;
        lock (_gate)
        {
            owned = _registry.Values.Select(r => r.OwnedSocket).OfType<Socket>().ToList();
            _registry.Clear();
        }
        foreach (Socket s in owned)
            CloseShared(s);
        // The control socket stays open, answering 'shutting-down', until the successor's
        // replaces it at the path (DisposeAsync waits for that).
    }

    /// <summary>Closes this process's copy of a socket another process shares.</summary>
    /// <remarks>.NET's Socket.Dispose, when it finds the handle in use (another thread inside
    /// accept() at that moment: an application's accept loop under load), "unblocks" it
    /// first: shutdown(), or for a stream socket connect(AF_UNSPEC), which on Linux stops a
    /// listening socket and drops its backlog, in every process that shares it. It skips that
    /// for a descriptor without close-on-exec ("may be shared with other processes"), so the
    /// flag is cleared just before the close; a child started in between would inherit the
    /// descriptor for the moment it takes to close it here.</remarks>
    private static void CloseShared(Socket socket)
    {
        try
        {
            FdPassing.SetInheritable(socket.SafeHandle, inheritable: true);
        }
        catch (Exception e) when (e is ObjectDisposedException or SocketException)
        {
            // Already closed, or the flag could not be changed: the close below is what matters.
        }
        socket.Dispose();
    }

    private static ValueTask SendAsync(FdChannel channel, HandoffMessage message, CancellationToken cancellationToken,
                                       Descriptor[]? fds = null) =>
        channel.SendAsync(message.Encode(), fds ?? ReadOnlyMemory<Descriptor>.Empty, cancellationToken);

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
