// SPDX-License-Identifier: MIT
using System.Net.Sockets;

namespace FdSend.Handoff;

/// <summary>
/// Binding Unix socket paths the way the handoff needs: in a directory only its owner can
/// write, mode 0600 before the file appears, and by <c>rename()</c> over the path, which
/// replaces a stale file atomically and leaves a live one's socket to whoever still holds it.
/// A socket bound this way never unlinks the path when it is disposed (.NET deletes the file
/// a listener was bound to; here that is a temporary name that no longer exists), so an
/// incumbent that closes its copy cannot take the path away from its successor.
/// </summary>
internal static class ControlSocket
{
    private const UnixFileMode GroupOrOtherWrite = UnixFileMode.GroupWrite | UnixFileMode.OtherWrite;

    /// <summary>Creates the directory of <paramref name="path"/> (0700) if missing, and
    /// refuses one that group or others can write.</summary>
    internal static string CheckDirectory(string path)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))
                     ?? throw new ArgumentException($"'{path}' has no directory.", nameof(path));
        if (!Directory.Exists(dir))
            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        UnixFileMode mode = File.GetUnixFileMode(dir);
        if ((mode & GroupOrOtherWrite) != 0)
            throw new UnauthorizedAccessException(
                $"The control socket's directory '{dir}' is writable by group or others (mode {Convert.ToString((int)mode & 0x1FF, 8)}): " +
                "anyone who can write there could replace the socket. Use a directory only this service's user can write, e.g. /run/<app> or $XDG_RUNTIME_DIR.");
        return dir;
    }

    /// <summary>A listening (stream/seqpacket) or bound (dgram) Unix socket at
    /// <paramref name="path"/>, made 0600 under a temporary name and renamed into place.</summary>
    internal static Socket BindUnix(string path, SocketType type, int backlog, bool checkDirectory)
    {
        string dir = checkDirectory ? CheckDirectory(path) : Path.GetDirectoryName(Path.GetFullPath(path))!;
        string temp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}{TempSuffix}");
        var socket = new Socket(AddressFamily.Unix, type, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(temp));
            File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            if (type != SocketType.Dgram)
                socket.Listen(backlog);
            File.Move(temp, path, overwrite: true); // rename(2): atomic
            return socket;
        }
        catch
        {
            socket.Dispose();
            try
            {
                File.Delete(temp);
            }
            catch (IOException)
            {
            }
            throw;
        }
    }

    private const string TempSuffix = ".tmp";

    /// <summary>Whether <paramref name="bound"/> (a socket's address, getsockname) is a
    /// temporary name <see cref="BindUnix"/> gave a socket it then renamed to
    /// <paramref name="path"/>: the kernel keeps reporting the name a socket was bound to, so a
    /// listener bound this way reads as bound to <c>dir/.name.pid.guid.tmp</c>, not to
    /// <c>dir/name</c>.</summary>
    internal static bool IsTemporaryNameOf(string bound, string path)
    {
        string full = Path.GetFullPath(path);
        string prefix = Path.Combine(Path.GetDirectoryName(full) ?? "/", $".{Path.GetFileName(full)}.");
        return bound.StartsWith(prefix, StringComparison.Ordinal) && bound.EndsWith(TempSuffix, StringComparison.Ordinal)
               && !bound.AsSpan(prefix.Length).Contains('/');
    }

    /// <summary>Connects to the incumbent's control socket; null when nobody is there (no file,
    /// or a stale file nobody listens on): a first start.</summary>
    internal static async Task<Socket?> TryConnectAsync(string path, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
            return socket;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.AddressNotAvailable
                                            or SocketError.ConnectionRefused)
        {
            socket.Dispose();
            return null;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
