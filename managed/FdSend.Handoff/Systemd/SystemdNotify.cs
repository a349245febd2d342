// SPDX-License-Identifier: MIT
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace FdSend.Handoff;

/// <summary>
/// Tells systemd about this service's state (the sd_notify protocol): each call sends ONE
/// datagram of newline-separated <c>KEY=VALUE</c> assignments, with any descriptors attached,
/// to the socket named by <c>$NOTIFY_SOCKET</c> (a path, or a Linux abstract socket written
/// <c>@name</c>). When <c>$NOTIFY_SOCKET</c> is not set (not run by systemd, or a unit without
/// <c>Type=notify</c>/<c>NotifyAccess=</c>) every call does nothing and returns false.
/// </summary>
/// <remarks>
/// <para>systemd accepts a message only from the processes <c>NotifyAccess=</c> allows: a
/// successor that takes over through a <see cref="HandoffServer"/> is not the main process
/// systemd started, so the unit needs <c>NotifyAccess=all</c> (docs/systemd.md).</para>
/// <para><c>$NOTIFY_SOCKET</c> is left in the environment so that a successor started by this
/// process can notify too.</para>
/// </remarks>
public static class SystemdNotify
{
    /// <summary>The environment variable systemd sets to its notification socket.</summary>
    public const string EnvironmentVariable = "NOTIFY_SOCKET";

    /// <summary>The socket named by <c>$NOTIFY_SOCKET</c>, as <see cref="SocketFdExtensions.SendFdsTo(Socket, string, ReadOnlySpan{byte}, ReadOnlySpan{Descriptor})"/>
    /// takes it (a path, or <c>@name</c> for an abstract socket); null when it is not set.</summary>
    public static string? SocketPath
    {
        get
        {
            string? value = Environment.GetEnvironmentVariable(EnvironmentVariable);
            return string.IsNullOrEmpty(value) ? null : value;
        }
    }

    /// <summary>Whether <c>$NOTIFY_SOCKET</c> is set, i.e. whether notifications go anywhere.</summary>
    public static bool IsAvailable => SocketPath is not null;

    /// <summary>
    /// Sends <paramref name="state"/> (newline-separated <c>KEY=VALUE</c> lines, e.g.
    /// <c>"READY=1\nSTATUS=serving"</c>) and <paramref name="fds"/> as one datagram to
    /// <c>$NOTIFY_SOCKET</c>.
    /// </summary>
    /// <returns>True if sent; false if <c>$NOTIFY_SOCKET</c> is not set (nothing to do).</returns>
    /// <exception cref="ArgumentException"><paramref name="state"/> is empty or contains NUL;
    /// more than <see cref="FdPassing.MaxFds"/> descriptors.</exception>
    /// <exception cref="InvalidOperationException"><c>$NOTIFY_SOCKET</c> is neither an
    /// absolute path nor an <c>@</c> abstract name (e.g. systemd's <c>vsock:</c> form, which
    /// this does not speak).</exception>
    /// <exception cref="SocketException">The datagram could not be sent (no socket at that
    /// path, nobody bound there, its queue full...).</exception>
    public static bool Notify(string state, params ReadOnlySpan<Descriptor> fds)
    {
        ArgumentException.ThrowIfNullOrEmpty(state);
        if (state.Contains('\0'))
            throw new ArgumentException("A notification contains no NUL character.", nameof(state));
        string? path = SocketPath;
        if (path is null)
            return false;
        if (path[0] != '/' && (path[0] != '@' || path.Length < 2))
            throw new InvalidOperationException(
                $"{EnvironmentVariable} is '{path}': neither an absolute path nor an abstract socket name '@...', the two forms this library sends to.");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.SendFdsTo(path, Encoding.UTF8.GetBytes(state), fds);
        return true;
    }

    /// <summary>Sends <c>READY=1</c> (startup finished, or a reload finished), with an
    /// optional <c>STATUS=</c> line and, for a successor that takes over the service,
    /// <c>MAINPID=</c> in the same datagram, so that systemd follows the new process as it
    /// becomes ready.</summary>
    /// <param name="status">A one-line status text for <c>systemctl status</c>, or null.</param>
    /// <param name="mainPid">The process systemd should now treat as the service's main
    /// process (normally <see cref="Environment.ProcessId"/>), or null to leave it.</param>
    /// <returns>False if <c>$NOTIFY_SOCKET</c> is not set.</returns>
    public static bool Ready(string? status = null, int? mainPid = null)
    {
        var text = new StringBuilder();
        if (mainPid is int pid)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pid, nameof(mainPid));
            text.Append("MAINPID=").Append(pid.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        text.Append("READY=1");
        return Notify(WithStatus(text, status));
    }

    /// <summary>Sends <c>RELOADING=1</c> with <c>MONOTONIC_USEC=</c> (the CLOCK_MONOTONIC time
    /// at which the reload started, which systemd 253 and later requires for
    /// <c>Type=notify-reload</c>): the service is reloading; send <see cref="Ready"/> when
    /// done, e.g. from the successor that takes over.</summary>
    public static bool Reloading(string? status = null)
    {
        var text = new StringBuilder("RELOADING=1\nMONOTONIC_USEC=");
        text.Append(MonotonicMicroseconds().ToString(CultureInfo.InvariantCulture));
        return Notify(WithStatus(text, status));
    }

    /// <summary>Sends <c>STOPPING=1</c>: the service is shutting down for good. Not for an
    /// incumbent that hands over to a successor: systemd would take the whole service to be
    /// stopping.</summary>
    public static bool Stopping(string? status = null) =>
        Notify(WithStatus(new StringBuilder("STOPPING=1"), status));

    /// <summary>Sends <c>STATUS=</c><paramref name="status"/> (one line, shown by
    /// <c>systemctl status</c>).</summary>
    public static bool Status(string status)
    {
        ArgumentException.ThrowIfNullOrEmpty(status);
        return Notify(WithStatus(new StringBuilder(), status));
    }

    /// <summary>Sends <c>MAINPID=</c><paramref name="pid"/> alone. Prefer
    /// <see cref="Ready"/> with its <c>mainPid</c>, which says both in one datagram.</summary>
    public static bool MainPid(int pid)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pid);
        return Notify("MAINPID=" + pid.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// Sends <c>FDSTORE=1</c> and <c>FDNAME=</c><paramref name="name"/> with
    /// <paramref name="fds"/>: systemd keeps duplicates of them in the service's descriptor
    /// store, across a crash or a restart of the service, and passes them back to the next
    /// main process in <c>LISTEN_FDS</c> under that name (which <see cref="SystemdListenFds"/>
    /// reads). The unit needs <c>FileDescriptorStoreMax=</c> greater than 0, or systemd drops
    /// them. The caller still owns <paramref name="fds"/>.
    /// </summary>
    /// <param name="name">1 to 255 printable ASCII characters, no ':' (systemd's rule for
    /// descriptor names).</param>
    /// <param name="fds">1 .. <see cref="FdPassing.MaxFds"/> descriptors.</param>
    /// <returns>False if <c>$NOTIFY_SOCKET</c> is not set.</returns>
    public static bool StoreFds(string name, params ReadOnlySpan<Descriptor> fds)
    {
        ValidateFdName(name);
        if (fds.IsEmpty)
            throw new ArgumentException("FDSTORE=1 carries at least one descriptor.", nameof(fds));
        return Notify("FDSTORE=1\nFDNAME=" + name, fds);
    }

    /// <summary>Sends <c>FDSTOREREMOVE=1</c> and <c>FDNAME=</c><paramref name="name"/>: systemd
    /// closes the stored descriptors of that name.</summary>
    /// <returns>False if <c>$NOTIFY_SOCKET</c> is not set.</returns>
    public static bool RemoveStoredFds(string name)
    {
        ValidateFdName(name);
        return Notify("FDSTOREREMOVE=1\nFDNAME=" + name);
    }

    /// <summary>Whether <paramref name="name"/> is a valid systemd descriptor name: 1 to 255
    /// printable ASCII characters, none of them ':' (the separator of
    /// <c>LISTEN_FDNAMES</c>).</summary>
    public static bool IsValidFdName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= 255 && name.All(c => c >= ' ' && c <= '~' && c != ':');

    private static void ValidateFdName(string name)
    {
        if (!IsValidFdName(name))
            throw new ArgumentException($"'{name}' is not a valid systemd descriptor name: 1 to 255 printable ASCII characters, no ':'.", nameof(name));
    }

    private static string WithStatus(StringBuilder text, string? status)
    {
        if (status is not null)
        {
            if (status.Contains('\n'))
                throw new ArgumentException("A status is one line.", nameof(status));
            if (text.Length > 0)
                text.Append('\n');
            text.Append("STATUS=").Append(status);
        }
        return text.ToString();
    }

    /// <summary>CLOCK_MONOTONIC in microseconds: .NET's Stopwatch reads that clock on Linux.</summary>
    internal static long MonotonicMicroseconds() =>
        (long)((Int128)System.Diagnostics.Stopwatch.GetTimestamp() * 1_000_000 / System.Diagnostics.Stopwatch.Frequency);
}
