// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;

namespace FdSend;

/// <summary>
/// Starts a child process that holds one end of a connected Unix socket pair, and, in the
/// child, opens that end. .NET's <see cref="Process.Start(ProcessStartInfo)"/> cannot hand a
/// child a descriptor; this passes one: the child's end is made inheritable just for the
/// start, its number goes in the child's environment (<see cref="EnvironmentVariable"/>), and
/// the parent closes its copy afterwards. The parent's end stays close-on-exec.
/// </summary>
/// <remarks>
/// <para>Another thread that starts a process at the same moment may also inherit the child's
/// end (as with any inheritable descriptor); it then holds the connection open until it
/// exits or closes it, so the parent sees end-of-stream later. Start such children from one
/// thread if that matters.</para>
/// <para>Unix only (Linux, macOS, the BSDs): Windows has no socketpair
/// (<see cref="PlatformNotSupportedException"/>).</para>
/// </remarks>
public static class FdChildProcess
{
    /// <summary>The environment variable that carries the child's descriptor number:
    /// <c>FDSEND_SOCKET_FD</c>. A child written in any language can read it.</summary>
    public const string EnvironmentVariable = "FDSEND_SOCKET_FD";

    /// <summary>
    /// Starts the process described by <paramref name="startInfo"/> with one end of a new
    /// connected socket pair, and gives the caller the other end.
    /// </summary>
    /// <param name="startInfo">What to start; its environment gains
    /// <see cref="EnvironmentVariable"/> for this start only (restored afterwards). Use
    /// <see cref="ProcessStartInfo.UseShellExecute"/> = false (the default on .NET).</param>
    /// <param name="socket">The parent's end, owned by the caller (dispose it).</param>
    /// <param name="socketType">The pair's type: Stream (the default), Seqpacket or Dgram.</param>
    /// <returns>The started process (dispose it; wait for it with
    /// <see cref="Process.WaitForExit()"/> or <see cref="Process.WaitForExitAsync"/>).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="startInfo"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="startInfo"/> uses shell execute, which
    /// cannot pass descriptors.</exception>
    /// <exception cref="PlatformNotSupportedException">Windows, or a socket type the OS lacks.</exception>
    /// <exception cref="System.ComponentModel.Win32Exception">The program could not be started;
    /// both ends are closed.</exception>
    public static Process Start(ProcessStartInfo startInfo, out Socket socket,
                                SocketType socketType = SocketType.Stream)
    {
        ArgumentNullException.ThrowIfNull(startInfo);
        if (startInfo.UseShellExecute)
            throw new ArgumentException(
                "A process started through the shell (UseShellExecute = true) cannot inherit a descriptor; set UseShellExecute = false.",
                nameof(startInfo));
        (Socket parentEnd, Socket childEnd) = FdSendCore.CreateSocketPair(socketType);
        string? previous = startInfo.Environment.TryGetValue(EnvironmentVariable, out string? p) ? p : null;
        try
        {
            int result = Interop.SetInheritable(childEnd.SafeHandle, 1);
            if (result < 0)
                throw FdSendErrors.Create(result, FdOperation.SocketPair);
            startInfo.Environment[EnvironmentVariable] =
                ((long)childEnd.SafeHandle.DangerousGetHandle()).ToString(CultureInfo.InvariantCulture);
            Process process = Process.Start(startInfo)
                ?? throw new InvalidOperationException("Process.Start started no process.");
            socket = parentEnd;
            return process;
        }
        catch
        {
            parentEnd.Dispose();
            throw;
        }
        finally
        {
            childEnd.Dispose(); // the child has its own copy now (or never got one)
            if (previous is null)
                startInfo.Environment.Remove(EnvironmentVariable);
            else
                startInfo.Environment[EnvironmentVariable] = previous;
        }
    }

    /// <summary>Whether this process was started with a socket by <see cref="Start"/> (or by
    /// any parent that sets <see cref="EnvironmentVariable"/>), not yet opened.</summary>
    public static bool HasParentSocket =>
        !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(EnvironmentVariable));

    /// <summary>
    /// In a child started by <see cref="Start"/>: opens the socket the parent passed, as a
    /// <see cref="Socket"/> that owns it. The descriptor is made close-on-exec and
    /// <see cref="EnvironmentVariable"/> is removed, so this process's own children inherit
    /// neither. Call it once.
    /// </summary>
    /// <returns>The child's end of the pair, connected to the parent.</returns>
    /// <exception cref="InvalidOperationException"><see cref="EnvironmentVariable"/> is not set
    /// (not started that way, or already opened), is not a number, or names a descriptor that is
    /// not an open Unix socket.</exception>
    public static Socket OpenParentSocket()
    {
        string? text = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrEmpty(text))
            throw new InvalidOperationException(
                $"{EnvironmentVariable} is not set: this process was not started with FdChildProcess.Start (or its socket was already opened).");
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int fd))
            throw new InvalidOperationException($"{EnvironmentVariable} is '{text}', not a descriptor number.");
        FdInfo info;
        try
        {
            info = FdSendCore.Describe(fd);
        }
        catch (ObjectDisposedException e)
        {
            throw new InvalidOperationException($"{EnvironmentVariable} names descriptor {fd}, which is not open in this process.", e);
        }
        if (info.Kind != FdKind.Socket || info.AddressFamily != AddressFamily.Unix)
            throw new InvalidOperationException(
                $"{EnvironmentVariable} names descriptor {fd}, which is a {info.Kind} ({info.AddressFamily}), not a Unix socket.");
        Socket socket = FdSendCore.SocketFromOwnedFd(fd, info.IsNonBlocking);
        Environment.SetEnvironmentVariable(EnvironmentVariable, null);
        int result = Interop.SetInheritable(socket.SafeHandle, 0);
        if (result < 0)
        {
            socket.Dispose();
            throw FdSendErrors.Create(result, FdOperation.SocketPair);
        }
        return socket;
    }
}
