// SPDX-License-Identifier: MIT
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Handoff;

/// <summary>
/// The descriptors systemd passed to this process by socket activation (or from its
/// descriptor store): <c>LISTEN_FDS</c> descriptors from fd 3, named by
/// <c>LISTEN_FDNAMES</c>, meant for this process if <c>LISTEN_PID</c> is its pid (the
/// sd_listen_fds protocol). <see cref="Import"/> takes ownership of them, makes them
/// close-on-exec and removes the three variables, so that programs this process starts
/// inherit neither the descriptors nor the claim to them (aspnetcore#29189).
/// </summary>
/// <remarks>
/// <para>Take what you use with <see cref="TakeSocket"/> (or <see cref="TakeFileHandle"/> for
/// a FIFO or another non-socket); <see cref="Dispose"/> closes the rest. A
/// <see cref="HandoffServer"/> does this itself for the names its <c>Listen</c> asks for
/// (<see cref="HandoffOptions.UseSystemdActivation"/>).</para>
/// <para>The variables are removed from .NET's environment, which is what
/// <see cref="System.Diagnostics.Process.Start(System.Diagnostics.ProcessStartInfo)"/> passes
/// on; native code that reads the C library's environment directly still sees them.</para>
/// </remarks>
public sealed class SystemdListenFds : IDisposable
{
    /// <summary>The first descriptor systemd passes (SD_LISTEN_FDS_START).</summary>
    public const int FirstFd = 3;

    /// <summary>The name of a descriptor systemd did not name (no <c>LISTEN_FDNAMES</c>).</summary>
    public const string UnknownName = "unknown";

    private const int MaxCount = 65536;

    private readonly object _gate = new();
    private readonly List<Entry> _entries = [];
    private readonly List<string> _problems = [];
    private readonly ILogger _logger;
    private bool _disposed;

    private sealed class Entry(int fd, string name, FdInfo info, SafeHandle handle)
    {
        public int Fd { get; } = fd;
        public string Name { get; } = name;
        public FdInfo Info { get; } = info;
        public SafeHandle? Handle { get; set; } = handle; // null once taken
    }

    private SystemdListenFds(ILogger logger) => _logger = logger;

    /// <summary>Whether <c>LISTEN_PID</c> names this process, i.e. whether
    /// <see cref="Import"/> would take descriptors (read without changing anything).</summary>
    public static bool IsActivated =>
        int.TryParse(Environment.GetEnvironmentVariable("LISTEN_PID"), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)
        && pid == Environment.ProcessId;

    /// <summary>
    /// Reads <c>LISTEN_PID</c>, <c>LISTEN_FDS</c> and <c>LISTEN_FDNAMES</c>, takes the
    /// descriptors if they are meant for this process, and removes the three variables in
    /// every case (as sd_listen_fds does when asked to unset them).
    /// </summary>
    /// <remarks>Never throws for what it finds: a <c>LISTEN_PID</c> of another process (the
    /// variables were inherited; the descriptors are left alone), a <c>LISTEN_FDS</c> that is
    /// not a count, a <c>LISTEN_FDNAMES</c> whose count differs (the descriptors are closed:
    /// which is which is unknown), a descriptor that is not open: each is logged as a warning
    /// and listed in <see cref="Problems"/>. Call it once, early, before starting other
    /// programs.</remarks>
    /// <param name="logger">Where warnings go; null for none.</param>
    public static SystemdListenFds Import(ILogger? logger = null)
    {
        var result = new SystemdListenFds(logger ?? NullLogger.Instance);
        string? pidText = Environment.GetEnvironmentVariable("LISTEN_PID");
        string? countText = Environment.GetEnvironmentVariable("LISTEN_FDS");
        string? namesText = Environment.GetEnvironmentVariable("LISTEN_FDNAMES");
        Environment.SetEnvironmentVariable("LISTEN_PID", null);
        Environment.SetEnvironmentVariable("LISTEN_FDS", null);
        Environment.SetEnvironmentVariable("LISTEN_FDNAMES", null);
        if (pidText is null)
            return result; // not socket-activated
        if (!int.TryParse(pidText, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid <= 0)
        {
            result.Problem($"LISTEN_PID is '{Limit(pidText)}', not a process id; ignoring LISTEN_FDS");
            return result;
        }
        if (pid != Environment.ProcessId)
        {
            result.Problem($"LISTEN_PID is {pid}, not this process ({Environment.ProcessId}): the variables were inherited; ignoring them");
            return result;
        }
        if (!int.TryParse(countText, NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count > MaxCount)
        {
            result.Problem($"LISTEN_FDS is '{Limit(countText ?? "")}', not a descriptor count (0..{MaxCount}); no descriptor taken");
            return result;
        }
        string[] names;
        if (namesText is null)
        {
            names = Enumerable.Repeat(UnknownName, count).ToArray();
        }
        else
        {
            names = namesText.Split(':');
            if (names.Length != count)
            {
                result.Problem($"LISTEN_FDNAMES names {names.Length} descriptors, LISTEN_FDS says {count}; which is which is unknown, so the {count} descriptors from fd {FirstFd} are closed");
                for (int i = 0; i < count; i++)
                    CloseIfOpen(FirstFd + i);
                return result;
            }
        }
        for (int i = 0; i < count; i++)
            result.Add(FirstFd + i, names[i].Length == 0 ? UnknownName : names[i]);
        if (count > 0)
            result._logger.LogInformation("systemd: took {Count} socket-activated descriptors ({Names})",
                result._entries.Count, string.Join(", ", result._entries.Select(e => $"{e.Name}=fd {e.Fd} {Describe(e.Info)}")));
        return result;
    }

    private void Add(int fd, string name)
    {
        var probe = new SafeFileHandle(fd, ownsHandle: false);
        FdInfo info;
        try
        {
            info = FdPassing.Describe(probe);
        }
        catch (ObjectDisposedException)
        {
            Problem($"LISTEN_FDS includes fd {fd} ('{name}'), which is not open");
            return;
        }
        FdPassing.SetInheritable(probe, false);
        SafeHandle handle = info.IsSocket ? new SafeSocketHandle(fd, ownsHandle: true) : new SafeFileHandle(fd, ownsHandle: true);
        _entries.Add(new Entry(fd, name, info, handle));
    }

    /// <summary>What <see cref="Import"/> found wrong (also logged as warnings); empty when
    /// all was well or there was nothing to import.</summary>
    public IReadOnlyList<string> Problems
    {
        get { lock (_gate) return _problems.ToArray(); }
    }

    /// <summary>How many descriptors were imported (taken or not).</summary>
    public int Count
    {
        get { lock (_gate) return _entries.Count; }
    }

    /// <summary>The names of the descriptors not yet taken, in descriptor order (a name may
    /// repeat: several sockets of one systemd unit share its name).</summary>
    public IReadOnlyList<string> Names
    {
        get { lock (_gate) return _entries.Where(e => e.Handle is not null).Select(e => e.Name).ToArray(); }
    }

    /// <summary>Whether a descriptor named <paramref name="name"/> is still there to take.</summary>
    public bool Contains(string name)
    {
        lock (_gate)
            return _entries.Any(e => e.Handle is not null && e.Name == name);
    }

    /// <summary>What the first not-yet-taken descriptor named <paramref name="name"/> is, or
    /// null if there is none.</summary>
    public FdInfo? Describe(string name)
    {
        lock (_gate)
            return _entries.FirstOrDefault(e => e.Handle is not null && e.Name == name)?.Info;
    }

    /// <summary>
    /// Takes the first not-yet-taken socket named <paramref name="name"/>: a
    /// <see cref="Socket"/> that owns it, ready for sync and async calls. Null if there is no
    /// descriptor of that name; null, with a warning, if that descriptor is not a socket (it
    /// stays here: <see cref="TakeFileHandle"/>).
    /// </summary>
    public Socket? TakeSocket(string name)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Entry? e = _entries.FirstOrDefault(e => e.Handle is not null && e.Name == name);
            if (e is null)
                return null;
            if (!e.Info.IsSocket)
            {
                _logger.LogWarning("systemd: '{Name}' (fd {Fd}) is a {Kind}, not a socket", name, e.Fd, e.Info.Kind);
                return null;
            }
            // As for a received socket, .NET is told about O_NONBLOCK (systemd's NonBlocking=).
            Socket socket = FdSend.FdSendCore.SocketFromHandle((SafeSocketHandle)e.Handle!, e.Info.IsNonBlocking);
            e.Handle = null;
            return socket;
        }
    }

    /// <summary>Takes the first not-yet-taken descriptor named <paramref name="name"/> that
    /// is NOT a socket (a FIFO, a file, a character device: systemd's ListenFIFO= and the
    /// like), or null.</summary>
    public SafeFileHandle? TakeFileHandle(string name)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Entry? e = _entries.FirstOrDefault(e => e.Handle is SafeFileHandle && e.Name == name);
            if (e is null)
                return null;
            var handle = (SafeFileHandle)e.Handle!;
            e.Handle = null;
            return handle;
        }
    }

    /// <summary>Closes every descriptor not taken (systemd keeps its own copies).</summary>
    public void Dispose()
    {
        List<Entry> left;
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
            left = _entries.Where(e => e.Handle is not null).ToList();
            foreach (Entry e in left)
            {
                e.Handle!.Dispose();
                e.Handle = null;
            }
        }
        if (left.Count > 0)
            _logger.LogInformation("systemd: closed socket-activated descriptors nobody took: {Names}", string.Join(", ", left.Select(e => e.Name)));
    }

    private void Problem(string text)
    {
        lock (_gate)
            _problems.Add(text);
        _logger.LogWarning("systemd: {Problem}", text);
    }

    private static void CloseIfOpen(int fd)
    {
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            FdPassing.Describe(handle);
        }
        catch (ObjectDisposedException)
        {
            handle.SetHandleAsInvalid(); // not open: nothing to close
        }
    }

    internal static string Describe(FdInfo info) => info.IsSocket
        ? $"({info.AddressFamily} {info.SocketType}{(info.IsListening ? ", listening" : "")})"
        : $"({info.Kind})";

    private static string Limit(string s) => s.Length <= 40 ? s : s[..40] + "...";
}
