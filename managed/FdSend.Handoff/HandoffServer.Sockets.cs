// SPDX-License-Identifier: MIT
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Handoff;

// Naming sockets in HandoffServer: the listeners and descriptors a
// process takes from its incumbent, from systemd, or binds itself.
public sealed partial class HandoffServer
{
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
}
