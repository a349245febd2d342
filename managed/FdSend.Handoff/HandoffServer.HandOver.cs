// SPDX-License-Identifier: MIT
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace FdSend.Handoff;

// The incumbent's side of HandoffServer: saying ready, admitting
// successors on the control socket, handing everything over and releasing it.
public sealed partial class HandoffServer
{
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
}
