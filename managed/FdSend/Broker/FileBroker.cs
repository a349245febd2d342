// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace FdSend;

/// <summary>
/// The privileged half of a privilege-separated file opener: holds the only descriptor of a
/// directory and opens files beneath it, read-only, for a less trusted worker that asks over a
/// Unix socket (<see cref="FileBrokerClient"/>), passing back the descriptor. Each path is
/// opened with libfdsend's fdsend_open_beneath: relative, no "..", no symbolic link anywhere
/// (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS on Linux 5.6+, an O_NOFOLLOW walk
/// elsewhere), regular files only (FIFOs are opened non-blocking so that they cannot hang the
/// broker, then refused with directories, devices and sockets). The worker never receives a
/// directory descriptor. The wire protocol is libfdsend's (fdsend_broker_serve_one), so a C
/// worker can use this broker and the reverse.
/// </summary>
public sealed class FileBroker : IDisposable
{
    private const int MaxPath = 4096;
    private readonly SafeFileHandle _directory;
    private readonly string[][] _allowed;

    /// <summary>Opens <paramref name="directory"/> to serve files beneath it.</summary>
    /// <param name="directory">The directory the worker may read from.</param>
    /// <param name="allowedSubdirectories">If given, only paths inside one of these
    /// subdirectories (relative to <paramref name="directory"/>, e.g. "public/docs") are
    /// served; others are refused with <see cref="FileBrokerError.NotAllowed"/>.</param>
    /// <exception cref="DirectoryNotFoundException">No such directory.</exception>
    /// <exception cref="IOException">Not a directory, or it cannot be opened.</exception>
    public unsafe FileBroker(string directory, IEnumerable<string>? allowedSubdirectories = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        nint fd;
        int rc = Interop.OpenDirectory(directory, &fd);
        if (rc < 0)
        {
            string text = Interop.StrError(rc);
            throw (Interop.Status)rc == Interop.Status.ENOENT
                ? new DirectoryNotFoundException($"'{directory}': {text}")
                : new IOException($"Cannot serve '{directory}': {text}");
        }
        _directory = new SafeFileHandle(fd, ownsHandle: true);
        _allowed = (allowedSubdirectories ?? []).Select(Components).ToArray();
        foreach (string[] a in _allowed)
        {
            if (a.Length == 0 || a.Contains(".."))
            {
                _directory.Dispose();
                throw new ArgumentException("An allowed subdirectory must be a relative path below the directory, without \"..\".",
                                            nameof(allowedSubdirectories));
            }
        }
    }

    /// <summary>
    /// Serves one worker until it closes its end of <paramref name="worker"/> (or the token is
    /// cancelled): each request is a path, each reply a status and, on success, the file.
    /// Refusals are replies, not exceptions: the worker sees a <see cref="FileBrokerException"/>.
    /// </summary>
    /// <param name="worker">A connected Unix socket (stream or seqpacket) to the worker; left open.</param>
    /// <param name="cancellationToken">Stops serving.</param>
    /// <returns>How many requests were served.</returns>
    /// <exception cref="FdChannelProtocolException">The worker broke the framing (close the socket).</exception>
    public async Task<int> ServeAsync(Socket worker, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(worker);
        ObjectDisposedException.ThrowIf(_directory.IsClosed, this);
        // The limits apply to sends too: a reply carries one file, so the channel must allow one
        // descriptor per message. A request may carry none; one that does is refused below (two
        // or more are rejected by the channel), its descriptors closed.
        var options = new FdChannelOptions { LeaveOpen = true, MaxMessageSize = MaxPath, MaxFdsPerMessage = 1 };
        await using var channel = new FdChannel(worker, options);
        int served = 0;
        byte[] reply = new byte[4];
        while (true)
        {
            int status;
            SafeFileHandle? file = null;
            try
            {
                using FdMessage request = await channel.ReceiveAsync(cancellationToken).ConfigureAwait(false);
                status = request.FdCount != 0 ? (int)Interop.Status.EPOLICY : Open(request.Payload.Span, out file);
            }
            catch (EndOfStreamException)
            {
                return served;
            }
            catch (FdMessageRejectedException e)
            {
                status = e.Reason == FdMessageRejectReason.TooManyFds ? (int)Interop.Status.EPOLICY : (int)Interop.Status.EINVAL;
            }
            using (file)
            {
                BinaryPrimitives.WriteInt32LittleEndian(reply, status);
                if (file is null)
                    await channel.SendAsync(reply, default, cancellationToken).ConfigureAwait(false);
                else
                    await channel.SendAsync(reply, new Descriptor[] { file }, cancellationToken).ConfigureAwait(false);
            }
            served++;
        }
    }

    /// <summary>Opens what one request asks for: a status, and the file when it is 0.</summary>
    private unsafe int Open(ReadOnlySpan<byte> request, out SafeFileHandle? file)
    {
        file = null;
        if (request.IsEmpty || request.IndexOf((byte)0) >= 0)
            return (int)Interop.Status.EINVAL;
        string path;
        try
        {
            path = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(request);
        }
        catch (DecoderFallbackException)
        {
            return (int)Interop.Status.EINVAL;
        }
        if (_allowed.Length > 0 && !path.StartsWith('/'))
        {
            string[] parts = Components(path);
            if (!parts.Contains("..") && !_allowed.Any(a => a.Length < parts.Length && parts.Take(a.Length).SequenceEqual(a)))
                return (int)Interop.Status.EPOLICY;
        }
        nint fd;
        int rc = Interop.OpenBeneath(_directory, path, 0, &fd);
        if (rc < 0)
            return rc;
        file = new SafeFileHandle(fd, ownsHandle: true);
        return 0;
    }

    /// <summary>The components of a relative path, without empty ones and ".".</summary>
    private static string[] Components(string path) =>
        path.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(c => c != ".").ToArray();

    /// <summary>Closes the directory. Idempotent.</summary>
    public void Dispose() => _directory.Dispose();
}
