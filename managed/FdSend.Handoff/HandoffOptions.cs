// SPDX-License-Identifier: MIT
using Microsoft.Extensions.Logging;

namespace FdSend.Handoff;

/// <summary>How a <see cref="HandoffServer"/> finds its incumbent, admits successors and
/// bounds each step (docs/handoff-protocol.md).</summary>
public sealed class HandoffOptions
{
    /// <summary>The control socket's path, e.g. <c>/run/myapp/handoff.sock</c>. Its directory
    /// must not be writable by group or others (it is created 0700 if missing).</summary>
    public required string ControlPath { get; init; }

    /// <summary>How long an incumbent waits for a successor's <c>ready</c> after sending its
    /// inventory (30 s by default); past it the handoff is aborted and the incumbent goes on
    /// serving.</summary>
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long each side waits for the other's next message while the inventory is
    /// exchanged (hello, inventory, released; 30 s by default).</summary>
    public TimeSpan MessageTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Who may take over, judged on the successor's credentials as the kernel
    /// recorded them at connect time. Null (the default): only a process of this process's
    /// effective uid.</summary>
    public Func<PeerCredentials, bool>? AuthorizeSuccessor { get; init; }

    /// <summary>On a first start under systemd socket activation (<c>LISTEN_PID</c> is this
    /// process), <see cref="HandoffServer.Listen"/> and <see cref="HandoffServer.BindDatagram"/>
    /// take the socket-activated socket of the same name (<c>LISTEN_FDNAMES</c>, checked like an
    /// inherited one) instead of binding. True by default; it does nothing without
    /// <c>LISTEN_PID</c>. Either way the descriptors are made close-on-exec and the
    /// variables removed when <c>LISTEN_PID</c> is set (docs/systemd.md).</summary>
    public bool UseSystemdActivation { get; init; } = true;

    /// <summary>Whether <see cref="HandoffServer.ReadyAsync"/> tells systemd (sd_notify to
    /// <c>$NOTIFY_SOCKET</c>): <c>READY=1</c>, and for a successor <c>MAINPID=</c> its pid.
    /// True by default; it does nothing without <c>$NOTIFY_SOCKET</c>.</summary>
    public bool NotifySystemd { get; init; } = true;

    /// <summary>Where the handoff logs what it does and why a handoff failed; null for none.</summary>
    public ILogger? Logger { get; init; }

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(ControlPath))
            throw new ArgumentException("HandoffOptions.ControlPath must name the control socket's path.", nameof(ControlPath));
        if (ReadyTimeout <= TimeSpan.Zero || MessageTimeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(ReadyTimeout), "Handoff timeouts must be positive.");
    }
}
