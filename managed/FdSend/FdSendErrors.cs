// SPDX-License-Identifier: MIT
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>What was being done when a native call failed: the same code means different
/// things (and deserves different advice) for a send, a receive or a credentials query.</summary>
internal enum FdOperation
{
    Send,
    SendTo,
    Receive,
    PeerCredentials,
    Describe,
    SocketPair,
}

/// <summary>
/// The one place where libfdsend's FDSEND_E* codes become .NET exceptions (like
/// dotnet/runtime's SocketErrorPal): socket conditions are <see cref="SocketException"/>s with
/// the <see cref="SocketError"/> .NET itself uses for that errno; caller mistakes are
/// <see cref="ArgumentException"/>s; a missing OS feature is
/// <see cref="PlatformNotSupportedException"/>. Every message says what to do.
/// </summary>
internal static class FdSendErrors
{
    /// <summary>The <see cref="SocketError"/> for a code, as .NET maps the same errno
    /// (EPIPE is <see cref="SocketError.Shutdown"/> in .NET's own table).</summary>
    internal static SocketError ToSocketError(Interop.Status status) => status switch
    {
        Interop.Status.Ok => SocketError.Success,
        Interop.Status.EAGAIN => SocketError.WouldBlock,
        Interop.Status.EINVAL => SocketError.InvalidArgument,
        Interop.Status.EBADF => SocketError.OperationAborted,
        Interop.Status.ENOTSOCK => SocketError.NotSocket,
        Interop.Status.EPIPE => SocketError.Shutdown,
        Interop.Status.ECONNRESET => SocketError.ConnectionReset,
        Interop.Status.ENOTCONN => SocketError.NotConnected,
        Interop.Status.EMSGSIZE => SocketError.MessageSize,
        Interop.Status.ETOOMANYREFS => SocketError.NoBufferSpaceAvailable,
        Interop.Status.EMFILE => SocketError.TooManyOpenSockets,
        Interop.Status.ENOTSUP => SocketError.OperationNotSupported,
        Interop.Status.ENOBUFS => SocketError.NoBufferSpaceAvailable,
        Interop.Status.ETOOMANYFDS => SocketError.InvalidArgument,
        Interop.Status.ECONNREFUSED => SocketError.ConnectionRefused,
        Interop.Status.ENOENT => SocketError.AddressNotAvailable,
        Interop.Status.EACCES => SocketError.AccessDenied,
        Interop.Status.EDESTADDRREQ => SocketError.DestinationAddressRequired,
        Interop.Status.EISCONN => SocketError.IsConnected,
        Interop.Status.ENOTUNIX => SocketError.AddressFamilyNotSupported,
        Interop.Status.ENAMETOOLONG => SocketError.InvalidArgument,
        Interop.Status.EPROTO => SocketError.ProtocolType,
        Interop.Status.ESRCH => SocketError.SocketError,
        Interop.Status.EOF => SocketError.ConnectionReset,
        Interop.Status.ETIMEDOUT => SocketError.TimedOut,
        Interop.Status.EPROTOTYPE => SocketError.ProtocolType,
        _ => SocketError.SocketError,
    };

    /// <summary>The exception for a negative native result. Call straight after the native
    /// call, before any other libfdsend call on this thread (it reads the OS error libfdsend
    /// saved for the failed call, fdsend_last_os_error).</summary>
    internal static Exception Create(long result, FdOperation op, string? path = null)
    {
        int osError = Interop.LastOsError();
        var status = (Interop.Status)result;
        string text = Interop.StrError((int)result);
        string where = path is null ? "" : $" (destination '{path}')";

        switch (status)
        {
            case Interop.Status.EAGAIN:
                return WouldBlock(op);

            case Interop.Status.EBADF when op == FdOperation.Describe:
                return new ObjectDisposedException("descriptor",
                    "The descriptor is not open (EBADF): it was closed before or during the call.");

            case Interop.Status.EBADF:
                return op is FdOperation.Send or FdOperation.SendTo
                    ? new ArgumentException(
                        "A descriptor to send (or the socket) is not an open file descriptor (EBADF): it was closed before or during the call. " +
                        "Nothing was sent. Pass a SafeHandle, Socket or FileStream rather than a raw int fd: handles cannot be closed during a send.",
                        "fds")
                    : new ObjectDisposedException(typeof(Socket).FullName,
                        "The socket's file descriptor is not open (EBADF): it was closed underneath the Socket object. Nothing was received.");

            case Interop.Status.ETOOMANYFDS:
                return TooManyFds(-1);

            case Interop.Status.ENAMETOOLONG:
                return new ArgumentException(
                    $"The destination path{where} does not fit in a Unix socket address (sun_path holds 107 bytes on Linux, 103 on macOS). " +
                    "Use a shorter path, e.g. a shorter directory or a relative path.", nameof(path));

            case Interop.Status.ENOTSUP when op == FdOperation.PeerCredentials:
                return new PlatformNotSupportedException(
                    "This operating system does not report the credentials of a Unix socket's peer (no SO_PEERCRED, LOCAL_PEERCRED, getpeerucred or getpeereid). " +
                    "Authenticate the peer another way, e.g. with a socket path only the trusted user can reach.");

            case Interop.Status.ENOTSUP when op == FdOperation.SocketPair:
                return new PlatformNotSupportedException(
                    "This operating system cannot create a connected pair of Unix sockets of that type (macOS has no Seqpacket; Windows has no socketpair).");

            case Interop.Status.ENOTSUP:
                return Socket(status, osError,
                    $"Not supported on this system or socket ({text}). Descriptors pass only over Unix domain sockets of type Stream, Seqpacket or Dgram.");

            case Interop.Status.EOF:
                return new EndOfStreamException(
                    "The peer closed the connection at a message boundary (orderly end); no message was received.");

            case Interop.Status.ENOTUNIX when op == FdOperation.PeerCredentials:
                return Socket(status, osError,
                    "Peer credentials exist only for Unix domain sockets; this socket is of another address family (TCP, UDP...). Use a Socket created with AddressFamily.Unix.");

            case Interop.Status.EPROTO:
                return new ProtocolViolationException(
                    "The peer broke the FdSend message framing protocol: " + text + ". Close the connection; its descriptors have been closed.");
        }

        string advice = status switch
        {
            Interop.Status.ENOTSOCK =>
                "The Socket object does not wrap a socket (ENOTSOCK): it was created from a file or pipe handle. Descriptors can only be passed over a Unix domain socket.",
            Interop.Status.EPIPE =>
                "The peer has closed its end (EPIPE); nothing was sent. Nothing more can be sent on this connection: reconnect.",
            Interop.Status.ECONNRESET =>
                "The connection was reset by the peer (ECONNRESET). Reconnect.",
            Interop.Status.ENOTCONN => op switch
            {
                FdOperation.PeerCredentials =>
                    "The socket has no peer credentials (ENOTCONN): it is not connected, or it is a datagram socket connected with Connect(), for which the kernel records none. Query an accepted or connected stream/seqpacket socket.",
                _ =>
                    "The socket is not connected (ENOTCONN). Connect it first; for an unconnected datagram socket use SendFdsTo with the destination path.",
            },
            Interop.Status.EMSGSIZE when op == FdOperation.Receive =>
                "The next message has more data than the buffer holds (EMSGSIZE; Windows, where a receive takes one whole message): nothing was received and no descriptor taken. Receive again with a buffer at least as large as the message the peer sent.",
            Interop.Status.EMSGSIZE =>
                "The message is too large for this socket (EMSGSIZE): a datagram or seqpacket message must fit in the socket's send buffer (Socket.SendBufferSize). Send less data per message or use a stream socket.",
            Interop.Status.ETOOMANYREFS =>
                "Too many descriptors are in flight for this user (ETOOMANYREFS: sent but not yet received, limited by the kernel to RLIMIT_NOFILE). Nothing was sent. Let the peer receive what was already sent, then retry.",
            Interop.Status.EMFILE => op == FdOperation.Receive
                ? "This process's descriptor table is full (EMFILE/ENFILE); the message's descriptors were closed. Close descriptors you no longer need or raise the open-file limit (ulimit -n)."
                : "The descriptor table is full (EMFILE/ENFILE). Close descriptors you no longer need or raise the open-file limit (ulimit -n).",
            Interop.Status.ENOBUFS =>
                "The kernel is out of buffer space or memory (ENOBUFS/ENOMEM); nothing was sent. Retry later or send fewer descriptors per message.",
            Interop.Status.ECONNREFUSED =>
                $"Nobody is receiving at the destination{where} (ECONNREFUSED): the socket file exists but no socket is bound to it any more, or the peer's receive queue is full. Start the receiver, then retry.",
            Interop.Status.ENOENT =>
                $"The destination path{where} does not exist (ENOENT). Start the receiver (it binds the path), then retry.",
            Interop.Status.EACCES =>
                $"Permission denied (EACCES/EPERM){where}: the socket file or its directory is not writable by this user, or a security module refused the descriptors.",
            Interop.Status.EDESTADDRREQ =>
                "The datagram socket is not connected and has no destination (EDESTADDRREQ). Use SendFdsTo with the destination path, or connect the socket.",
            Interop.Status.EISCONN =>
                "The socket is already connected (EISCONN): use SendFds, without a destination path.",
            Interop.Status.EPROTOTYPE =>
                $"The socket at the destination{where} is of another type (EPROTOTYPE): a Dgram socket can only send to a path " +
                "bound by a Dgram socket. Bind the receiver as SocketType.Dgram, or connect a Stream/Seqpacket socket to it instead.",
            Interop.Status.ENOTUNIX =>
                "Descriptors can only be passed over Unix domain sockets (AF_UNIX); this socket is of another address family (TCP, UDP...). " +
                "Create the socket with new Socket(AddressFamily.Unix, ...) and a UnixDomainSocketEndPoint.",
            Interop.Status.EINVAL =>
                $"The operating system rejected the call as invalid (EINVAL){where}. Check that the socket is a Unix domain socket that is connected (or bound, to receive) and not listening.",
            Interop.Status.ESRCH =>
                "The sending process no longer exists (ESRCH), so its handles cannot be duplicated; its message was consumed whole and its data discarded (a receive reads whole messages on Windows).",
            Interop.Status.ETIMEDOUT => op == FdOperation.Receive
                ? "No message arrived within the socket's receive timeout (Socket.ReceiveTimeout); nothing was consumed."
                : "The socket's send buffer stayed full for its send timeout (Socket.SendTimeout); nothing was sent.",
            _ => osError != 0
                ? $"Operating system error {osError}: {Marshal.GetPInvokeErrorMessage(osError)}."
                : $"libfdsend error {result}: {text}.",
        };
        return Socket(status, osError, advice);
    }

    private static SocketException Socket(Interop.Status status, int osError, string message) =>
        new((int)ToSocketError(status), message);

    /// <summary>A non-blocking socket had nothing to receive / no room to send.</summary>
    internal static SocketException WouldBlock(FdOperation op) =>
        new((int)SocketError.WouldBlock, op == FdOperation.Receive
            ? "The socket is non-blocking (Socket.Blocking is false) and no message is waiting; nothing was consumed. Retry when Socket.Poll(..., SelectMode.SelectRead) says it is readable, or use a blocking socket."
            : "The socket is non-blocking (Socket.Blocking is false) and its send buffer is full; nothing was sent (neither data nor descriptors). Retry when Socket.Poll(..., SelectMode.SelectWrite) says it is writable, or use a blocking socket.");

    /// <summary>A receive that was in progress when the socket was disposed (on another thread):
    /// what <see cref="System.Net.Sockets.Socket.Receive(Span{byte})"/> throws then,
    /// <see cref="SocketError.ConnectionAborted"/> on a stream socket and
    /// <see cref="SocketError.Interrupted"/> on others.</summary>
    internal static SocketException Aborted(SocketType type) =>
        new((int)(type == SocketType.Stream ? SocketError.ConnectionAborted : SocketError.Interrupted),
            "The socket was disposed while the receive was waiting; nothing was received. This is not an end of stream from the peer.");

    /// <summary>A stream send whose first chunk (with every descriptor) went out and whose later
    /// chunk failed with <paramref name="error"/>: the one send error after which something
    /// WAS sent. The failed chunk's own message is not reused: it would say nothing was sent.</summary>
    internal static FdPartialSendException PartialSend(SocketError error, int bytesSent, int totalBytes, int descriptorsSent) =>
        new(error, bytesSent, descriptorsSent,
            $"The send failed ({error}) after {bytesSent} of {totalBytes} bytes had been sent" +
            (descriptorsSent > 0
                ? $"; the {descriptorsSent} descriptor(s) went with the first chunk, so the peer may hold them. "
                : ". ") +
            "The stream is now at a position the peer cannot know: close the connection. " +
            "FdPartialSendException.BytesSent and DescriptorsSent say what went.");

    /// <summary>The exception for a stream send that failed with <paramref name="e"/> after
    /// <paramref name="bytesSent"/> bytes and the descriptors went out (see
    /// <see cref="PartialSend(SocketError, int, int, int)"/>); an already partial exception and
    /// anything that is not a socket failure are returned as they are.</summary>
    internal static Exception PartialSend(Exception e, int bytesSent, int totalBytes, int descriptorsSent) => e switch
    {
        FdPartialSendException => e,
        SocketException se => PartialSend(se.SocketErrorCode, bytesSent, totalBytes, descriptorsSent),
        ObjectDisposedException => PartialSend(SocketError.ConnectionAborted, bytesSent, totalBytes, descriptorsSent),
        // A later chunk carries no descriptors: EBADF there is the socket's own descriptor,
        // closed underneath the Socket (ToSocketError(EBADF)).
        ArgumentException => PartialSend(SocketError.OperationAborted, bytesSent, totalBytes, descriptorsSent),
        _ => e,
    };

    /// <summary>ReceiveFdsExactly: the peer closed its end after <paramref name="got"/> of
    /// <paramref name="length"/> bytes (what Stream.ReadExactly throws then).</summary>
    internal static EndOfStreamException ExactEndOfStream(int got, int length, int fdsClosed) =>
        new($"The peer closed the connection after {got} of the {length} bytes expected. " +
            $"The {fdsClosed} descriptor(s) received with them were closed; the bytes are in the buffer but incomplete. Close the connection.");

    /// <summary>ReceiveFdsExactly: Socket.ReceiveTimeout ran out after the first byte.</summary>
    internal static SocketException ExactTimedOut(int got, int length, int fdsClosed, int timeoutMs) =>
        new((int)SocketError.TimedOut,
            $"Only {got} of the {length} bytes expected arrived within Socket.ReceiveTimeout ({timeoutMs} ms, which bounds the whole call). " +
            $"The {fdsClosed} descriptor(s) received with them were closed and the bytes consumed are lost: the stream is at an unknown position, close the connection.");

    /// <summary>A blocking call ran past Socket.ReceiveTimeout / SendTimeout.</summary>
    internal static SocketException TimedOut(FdOperation op, int timeoutMs) =>
        new((int)SocketError.TimedOut, op == FdOperation.Receive
            ? $"No message arrived within Socket.ReceiveTimeout ({timeoutMs} ms); nothing was consumed."
            : $"The socket did not become writable within Socket.SendTimeout ({timeoutMs} ms). Descriptors are sent with the first byte only; if the data was partly sent, the connection's stream position is unknown: close it.");

    internal static ArgumentException TooManyFds(int count) =>
        new(count >= 0
            ? $"{count} descriptors were given but one message carries at most {FdPassing.MaxFds} (FdPassing.MaxFds). Nothing was sent; send them in several messages."
            : $"More descriptors than one message can carry (at most {FdPassing.MaxFds}, FdPassing.MaxFds). Nothing was sent; send them in several messages.",
            "fds");
}
