// SPDX-License-Identifier: MIT
using System.Net;
using System.Net.Sockets;
using FdSend.Handoff;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace FdSend.AspNetCore;

/// <summary>
/// What <see cref="Microsoft.AspNetCore.Hosting.HandoffWebHostBuilderExtensions.UseFdSendHandoff"/> hands from one
/// process to the next: the control socket's path, the named Kestrel endpoints, and the
/// handoff's limits (docs/handoff-protocol.md).
/// </summary>
public sealed class KestrelHandoffOptions
{
    private readonly List<HandoffEndpoint> _endpoints = [];

    /// <summary>The control socket's path, e.g. <c>/run/myapp/handoff.sock</c>: where the
    /// running instance waits for its successor, and where a new process looks for one.
    /// Its directory must belong to this user and not be writable by group or others
    /// (it is created 0700 if missing). Required.</summary>
    public string ControlPath { get; set; } = "";

    /// <summary>How long the running instance waits for a successor to be ready after it
    /// sent its listeners (30 s by default); past it the handoff is abandoned and it goes on
    /// serving. Make it longer than the application's own startup.</summary>
    public TimeSpan ReadyTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long each side waits for the other's next message while the listeners are
    /// handed over (30 s by default).</summary>
    public TimeSpan MessageTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Who may take over, judged on the successor's kernel-recorded credentials.
    /// Null (the default): processes of this process's effective uid only.</summary>
    public Func<PeerCredentials, bool>? AuthorizeSuccessor { get; set; }

    /// <summary>Start a successor (the same executable and arguments) when this process
    /// receives SIGHUP, as nginx and HAProxy do. False by default: SIGHUP then keeps .NET's
    /// default meaning.</summary>
    public bool UpgradeOnSigHup { get; set; }

    /// <summary>The listen backlog of sockets bound fresh (512 by default). Connections that
    /// arrive while one process hands over to the next wait in it.</summary>
    public int Backlog { get; set; } = 512;

    /// <summary>How long a connection accepted shortly before this process stops may take to
    /// send its first request and still be answered here (2 s by default; zero turns it off).
    /// Without it, Kestrel's graceful stop closes a just-accepted connection whose request it
    /// has not read yet, and that client sees a failed request.</summary>
    public TimeSpan FirstRequestGrace { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>The endpoints added with <see cref="Listen(string, EndPoint, Action{ListenOptions}?)"/>,
    /// in order.</summary>
    public IReadOnlyList<HandoffEndpoint> Endpoints => _endpoints;

    /// <summary>
    /// Adds a Kestrel endpoint whose listening socket is handed from each process to the next
    /// under <paramref name="name"/>: taken over from the running instance if there is one,
    /// bound to <paramref name="endpoint"/> otherwise.
    /// </summary>
    /// <param name="name">The listener's name in the handoff: 1 to 200 printable ASCII
    /// characters without spaces, unique (e.g. <c>"http"</c>, <c>"https"</c>).</param>
    /// <param name="endpoint">An <see cref="IPEndPoint"/> (TCP; port 0 picks a free port on a
    /// first start and keeps it across handoffs) or a <see cref="UnixDomainSocketEndPoint"/>
    /// with a path.</param>
    /// <param name="configure">Kestrel's options for this endpoint, as for
    /// <c>KestrelServerOptions.Listen</c>: <c>UseHttps(...)</c>, <c>Protocols</c>, connection
    /// middleware.</param>
    /// <returns>These options, for chaining.</returns>
    /// <exception cref="ArgumentException">The name is empty or already used, or the endpoint
    /// is neither an <see cref="IPEndPoint"/> nor a <see cref="UnixDomainSocketEndPoint"/>.</exception>
    public KestrelHandoffOptions Listen(string name, EndPoint endpoint, Action<ListenOptions>? configure = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(endpoint);
        if (endpoint is not (IPEndPoint or UnixDomainSocketEndPoint))
            throw new ArgumentException($"A handed-over endpoint is an IPEndPoint or a UnixDomainSocketEndPoint, not {endpoint.GetType().Name}.", nameof(endpoint));
        if (_endpoints.Any(e => e.Name == name))
            throw new ArgumentException($"The endpoint name '{name}' is already used.", nameof(name));
        _endpoints.Add(new HandoffEndpoint(name, endpoint, configure));
        return this;
    }

    /// <summary>Adds a TCP endpoint on the loopback address (127.0.0.1) and
    /// <paramref name="port"/>; see <see cref="Listen(string, EndPoint, Action{ListenOptions}?)"/>.</summary>
    /// <param name="name">The listener's name in the handoff.</param>
    /// <param name="port">The TCP port (0: a free one, kept across handoffs).</param>
    /// <param name="configure">Kestrel's options for this endpoint.</param>
    /// <returns>These options, for chaining.</returns>
    public KestrelHandoffOptions ListenLocalhost(string name, int port, Action<ListenOptions>? configure = null) =>
        Listen(name, new IPEndPoint(IPAddress.Loopback, port), configure);

    /// <summary>Adds a TCP endpoint on every IPv4 address and <paramref name="port"/>; see
    /// <see cref="Listen(string, EndPoint, Action{ListenOptions}?)"/>.</summary>
    /// <param name="name">The listener's name in the handoff.</param>
    /// <param name="port">The TCP port.</param>
    /// <param name="configure">Kestrel's options for this endpoint.</param>
    /// <returns>These options, for chaining.</returns>
    public KestrelHandoffOptions ListenAnyIP(string name, int port, Action<ListenOptions>? configure = null) =>
        Listen(name, new IPEndPoint(IPAddress.Any, port), configure);

    internal HandoffOptions ToHandoffOptions(Microsoft.Extensions.Logging.ILogger logger)
    {
        if (string.IsNullOrWhiteSpace(ControlPath))
            throw new InvalidOperationException("UseFdSendHandoff: set KestrelHandoffOptions.ControlPath to the control socket's path (e.g. /run/myapp/handoff.sock).");
        if (_endpoints.Count == 0)
            throw new InvalidOperationException("UseFdSendHandoff: add at least one endpoint with KestrelHandoffOptions.Listen.");
        return new HandoffOptions
        {
            ControlPath = ControlPath,
            ReadyTimeout = ReadyTimeout,
            MessageTimeout = MessageTimeout,
            AuthorizeSuccessor = AuthorizeSuccessor,
            Logger = logger,
        };
    }
}

/// <summary>One named Kestrel endpoint handed from process to process.</summary>
/// <param name="Name">Its name in the handoff.</param>
/// <param name="EndPoint">The address it is bound to on a first start (and checked against
/// when taken over).</param>
/// <param name="Configure">Kestrel's options for it (HTTPS, protocols), or null.</param>
public sealed record HandoffEndpoint(string Name, EndPoint EndPoint, Action<ListenOptions>? Configure);
