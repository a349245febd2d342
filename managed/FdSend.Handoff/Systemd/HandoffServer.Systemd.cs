// SPDX-License-Identifier: MIT
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace FdSend.Handoff;

// HandoffServer's systemd part (docs/systemd.md): the first instance takes its listeners from
// socket activation, and systemd is told which process is the service's main one and when it
// is ready. HandoffServer.cs calls these at four points: StartAsync, Acquire, ReadyAsync
// (before it says ready, and once it is), and Dispose.
public sealed partial class HandoffServer
{
    private SystemdListenFds? _activation;

    /// <summary>The descriptors systemd passed, if <see cref="HandoffOptions.UseSystemdActivation"/>
    /// and <c>LISTEN_PID</c> is set: imported (close-on-exec, variables removed) before
    /// anything else, so that no successor started later inherits them.</summary>
    private void ImportSystemdActivation()
    {
        if (_options.UseSystemdActivation && Environment.GetEnvironmentVariable("LISTEN_PID") is not null)
            _activation = SystemdListenFds.Import(_logger);
    }

    /// <summary>The socket-activated socket named <paramref name="name"/>, if there is one and
    /// it fits as an inherited one must (kind, family, type, listening, address); null, with
    /// a warning, if it does not (it is closed at <see cref="ReadyAsync"/>).</summary>
    private Socket? TakeSystemdActivated(string name, EndPoint endpoint, SocketType type)
    {
        FdInfo? described = _activation?.Describe(name);
        if (described is not FdInfo info)
            return null;
        string? problem = Misfit(info, endpoint, type);
        Socket? socket = problem is null ? _activation!.TakeSocket(name) : null;
        if (socket is not null && !SameAddress(socket.LocalEndPoint, endpoint))
        {
            problem = $"it is bound to {socket.LocalEndPoint}, not {endpoint} (make the unit's Listen...= and the endpoint given here agree)";
            socket.Dispose(); // this process's copy; systemd keeps its own
            socket = null;
        }
        if (problem is not null)
            _logger.LogWarning("systemd: not using the socket-activated '{Name}': {Problem}; binding it afresh", name, problem);
        else
            _logger.LogInformation("systemd: '{Name}' is the socket-activated {Endpoint}", name, socket!.LocalEndPoint);
        return socket;
    }

    /// <summary>A successor, just before it says ready to its incumbent: MAINPID=, so that
    /// systemd follows this process before the incumbent can exit (systemd reads a
    /// notification that is already queued before it handles the old process's exit).</summary>
    private void NotifySystemdMainPid()
    {
        if (_options.NotifySystemd)
            TryNotify(() => SystemdNotify.MainPid(Environment.ProcessId), "MAINPID");
    }

    /// <summary>Once this process serves alone: closes socket-activated descriptors nobody
    /// took, and sends READY=1 (with MAINPID= for a successor) to $NOTIFY_SOCKET.</summary>
    private void SystemdReady()
    {
        _activation?.Dispose();
        if (_options.NotifySystemd)
            TryNotify(() => SystemdNotify.Ready(mainPid: IsSuccessor ? Environment.ProcessId : null), "READY=1");
    }

    private void TryNotify(Func<bool> notify, string what)
    {
        try
        {
            if (notify())
                _logger.LogInformation("systemd: sent {What} (pid {Pid})", what, Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is SocketException or InvalidOperationException)
        {
            _logger.LogWarning("systemd: could not send {What} to {Socket} ({Error})", what, SystemdNotify.SocketPath, e.Message);
        }
    }
}
