// SPDX-License-Identifier: MIT
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
/// directory descriptor. The wire protocol and its checks are libfdsend's
/// (fdsend_broker_check_request, fdsend_broker_reply_encode, as fdsend_broker_serve_one uses
/// them), so a C worker can use this broker and the reverse: a request's path is bytes (UTF-8
/// or not, no NUL, 1 to 4096 of them), looked up as they are.
/// </summary>
public sealed class FileBroker : IDisposable
{
    private readonly SafeFileHandle _directory;
    private readonly byte[][][] _allowed; // each allowed subdirectory's components, UTF-8

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
        _allowed = (allowedSubdirectories ?? []).Select(a => Components(Encoding.UTF8.GetBytes(a)).ToArray()).ToArray();
        foreach (byte[][] a in _allowed)
        {
            if (a.Length == 0 || a.Any(c => c.AsSpan().SequenceEqual(".."u8)))
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
        // descriptor per message. A request may carry none; one that does is refused
        // (libfdsend's request check; two or more are rejected by the channel first), its
        // descriptors closed.
        var options = new FdChannelOptions { LeaveOpen = true, MaxMessageSize = Interop.BrokerMaxPath, MaxFdsPerMessage = 1 };
        await using var channel = new FdChannel(worker, options);
        int served = 0;
        byte[] reply = new byte[Interop.BrokerReplySize];
        while (true)
        {
            int status;
            SafeFileHandle? file = null;
            try
            {
                using FdMessage request = await channel.ReceiveAsync(cancellationToken).ConfigureAwait(false);
                status = Open(request, out file);
            }
            catch (EndOfStreamException)
            {
                return served;
            }
            catch (FdMessageRejectedException e)
            {
                // Consumed whole, its descriptors closed by the channel (too long, too many, or
                // not installable here): judged by what its header announced.
                status = BrokerProtocol.CheckRequest(default, e.PayloadLength, e.FdCount);
            }
            using (file)
            {
                int fdCount = BrokerProtocol.EncodeReply(status, reply);
                Descriptor[] fds = fdCount == 0 ? [] : [file!];
                await channel.SendAsync(reply, fds, cancellationToken).ConfigureAwait(false);
            }
            served++;
        }
    }

    /// <summary>Opens what one request asks for: a status, and the file when it is 0. The
    /// request's descriptors stay the request's (closed with it).</summary>
    private unsafe int Open(FdMessage request, out SafeFileHandle? file)
    {
        file = null;
        ReadOnlySpan<byte> path = request.Payload.Span;
        int status = BrokerProtocol.CheckRequest(path, path.Length, request.FdCount);
        if (status != 0)
            return status;
        if (!IsAllowed(path))
            return (int)Interop.Status.EPOLICY;
        Span<byte> terminated = stackalloc byte[path.Length + 1]; // at most 4097 bytes
        path.CopyTo(terminated);
        terminated[path.Length] = 0;
        nint fd;
        int rc;
        fixed (byte* p = terminated)
            rc = Interop.OpenBeneath(_directory, p, 0, &fd);
        if (rc < 0)
            return rc;
        file = new SafeFileHandle(fd, ownsHandle: true);
        return 0;
    }

    /// <summary>Whether the allowed subdirectories (if any) let <paramref name="path"/> through,
    /// compared component by component as bytes. Absolute paths and paths with ".." pass here:
    /// fdsend_open_beneath refuses them as escapes.</summary>
    private bool IsAllowed(ReadOnlySpan<byte> path)
    {
        if (_allowed.Length == 0 || path[0] == (byte)'/')
            return true;
        List<byte[]> parts = Components(path);
        if (parts.Any(c => c.AsSpan().SequenceEqual(".."u8)))
            return true;
        return _allowed.Any(a => a.Length < parts.Count && a.Select((c, i) => c.AsSpan().SequenceEqual(parts[i])).All(same => same));
    }

    /// <summary>The components of a relative path, without empty ones and ".".</summary>
    private static List<byte[]> Components(ReadOnlySpan<byte> path)
    {
        var parts = new List<byte[]>();
        while (!path.IsEmpty)
        {
            int slash = path.IndexOf((byte)'/');
            ReadOnlySpan<byte> c = slash < 0 ? path : path[..slash];
            if (!c.IsEmpty && !c.SequenceEqual("."u8))
                parts.Add(c.ToArray());
            path = slash < 0 ? default : path[(slash + 1)..];
        }
        return parts;
    }

    /// <summary>Closes the directory. Idempotent.</summary>
    public void Dispose() => _directory.Dispose();
}
