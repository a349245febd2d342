// SPDX-License-Identifier: MIT
using System.Globalization;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace FdSend.Handoff;

// The successor's side of HandoffServer: asking the incumbent for its
// descriptors and filing them under their names (docs/handoff-protocol.md).
public sealed partial class HandoffServer
{
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
}
