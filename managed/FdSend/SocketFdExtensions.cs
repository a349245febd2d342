// SPDX-License-Identifier: MIT
using System.Net.Sockets;

namespace FdSend;

/// <summary>
/// Send and receive open file descriptors (SCM_RIGHTS) with data on a Unix domain
/// <see cref="Socket"/> (<see cref="AddressFamily.Unix"/>; stream, seqpacket or datagram).
/// </summary>
/// <remarks>
/// <para>Blocking follows <see cref="Socket.Blocking"/>, as Socket's own methods do: a
/// blocking socket waits (within <see cref="Socket.SendTimeout"/> /
/// <see cref="Socket.ReceiveTimeout"/>, then <see cref="SocketError.TimedOut"/>), also after
/// an async call made .NET switch the descriptor to O_NONBLOCK behind the scenes. A socket
/// with <c>Blocking = false</c> throws <see cref="SocketException"/> with
/// <see cref="SocketError.WouldBlock"/> and loses nothing: no byte or descriptor was sent or
/// consumed.</para>
/// <para>Sending never takes ownership: the caller still owns every descriptor it sent
/// (the peer got duplicates). Receiving hands ownership to the caller: through
/// <see cref="ReceivedFds"/> (closes what you do not take) or, in the span overload, as raw
/// fds you must close.</para>
/// <para>On a stream socket a message with descriptors but no data carries one zero byte
/// (as IO::FDPass and OpenSSH do), so that the kernel does not drop the descriptors; a
/// receive with an empty buffer consumes exactly that byte. Receive with a buffer no larger
/// than the sender's data if the stream also carries other data: one receive can return
/// earlier plain data together with the next message's descriptors.</para>
/// <para>Threads: the methods are thread-safe, but as with <see cref="Socket.Send(ReadOnlySpan{byte})"/>
/// two threads sending large data on one stream socket at once may interleave their
/// bytes (a blocking send that the kernel takes in several chunks is not atomic); keep one
/// sender per stream socket, or use seqpacket/datagram sockets, whose messages are atomic.</para>
/// <para>Exceptions: <see cref="SocketException"/> for socket conditions (the
/// <see cref="SocketError"/> .NET uses for the same OS error),
/// <see cref="ObjectDisposedException"/> for a disposed socket or handle,
/// <see cref="ArgumentException"/> for bad arguments (more than
/// <see cref="FdPassing.MaxFds"/> descriptors, a path that does not fit),
/// <see cref="PlatformNotSupportedException"/> where the OS lacks the feature.</para>
/// </remarks>
public static class SocketFdExtensions
{
    /// <summary>
    /// Sends <paramref name="data"/> and <paramref name="fds"/> as ONE message on a connected
    /// Unix domain socket. Allocates nothing.
    /// </summary>
    /// <param name="socket">A connected Unix domain socket (stream, seqpacket, or a datagram
    /// socket connected to its peer).</param>
    /// <param name="data">The data. May be empty: on a stream socket one zero byte then
    /// carries the descriptors (and 0 is returned).</param>
    /// <param name="fds">0 .. <see cref="FdPassing.MaxFds"/> descriptors, still owned by the
    /// caller afterwards. Handles are referenced for the duration of the call.</param>
    /// <returns>The number of data bytes sent. A blocking socket sends all of
    /// <paramref name="data"/> (on a stream socket possibly in several chunks, the
    /// descriptors going with the first). A non-blocking stream socket may send fewer: the
    /// descriptors went with those first bytes; send the rest WITHOUT descriptors, with
    /// <c>SendFds(rest)</c> (on Unix <see cref="Socket.Send(ReadOnlySpan{byte})"/> does too;
    /// on Windows every write on a socket that carries handles must go through SendFds, which
    /// writes libfdsend records, and a plain Socket.Send would break the peer's stream).</returns>
    /// <exception cref="SocketException">See the class remarks; <see cref="SocketError.WouldBlock"/>
    /// on a non-blocking socket whose buffer is full (nothing sent).</exception>
    /// <exception cref="FdPartialSendException">(A <see cref="SocketException"/>.) On a blocking
    /// stream socket, a later chunk failed (the peer closed, a reset, the send timeout, the
    /// socket disposed) after the first chunk and every descriptor went out:
    /// <see cref="FdPartialSendException.BytesSent"/> says how many bytes did. Close the
    /// connection. Every other exception means nothing was sent.</exception>
    /// <exception cref="ObjectDisposedException">The socket or a descriptor's handle is disposed (nothing sent).</exception>
    /// <exception cref="ArgumentException">More than <see cref="FdPassing.MaxFds"/> descriptors,
    /// a <c>default(Descriptor)</c>, or a raw fd that is not open (nothing sent).</exception>
    public static int SendFds(this Socket socket, ReadOnlySpan<byte> data, params ReadOnlySpan<Descriptor> fds) =>
        FdSendCore.Send(socket, null, data, fds, default);

    /// <summary>
    /// Sends <paramref name="data"/> and raw file descriptors as ONE message on a connected
    /// Unix domain socket; like <see cref="SendFds(Socket, ReadOnlySpan{byte}, ReadOnlySpan{Descriptor})"/>.
    /// The caller owns the fds and must keep them open until this returns. Allocates nothing.
    /// </summary>
    /// <param name="socket">A connected Unix domain socket.</param>
    /// <param name="data">The data (may be empty, see the other overload).</param>
    /// <param name="fds">0 .. <see cref="FdPassing.MaxFds"/> open file descriptors.</param>
    /// <returns>The number of data bytes sent (see the other overload for partial sends and
    /// <see cref="FdPartialSendException"/>).</returns>
    public static int SendFds(this Socket socket, ReadOnlySpan<byte> data, ReadOnlySpan<int> fds) =>
        FdSendCore.Send(socket, null, data, default, fds);

    /// <summary>
    /// Sends one datagram with <paramref name="data"/> and <paramref name="fds"/> from an
    /// UNCONNECTED Unix datagram socket to the socket bound at <paramref name="path"/> (what
    /// systemd's sd_notify FDSTORE=1 needs). On Linux a path starting with '@' names an
    /// abstract socket, as does one starting with a NUL character ("\0name", .NET's
    /// spelling). Allocates nothing for an '@' or file path.
    /// </summary>
    /// <param name="socket">An unconnected <see cref="SocketType.Dgram"/> Unix socket.</param>
    /// <param name="path">The receiver's socket path.</param>
    /// <param name="data">The data; a datagram may be empty.</param>
    /// <param name="fds">0 .. <see cref="FdPassing.MaxFds"/> descriptors, still owned by the caller afterwards.</param>
    /// <returns>The number of data bytes sent (the whole datagram).</returns>
    /// <exception cref="SocketException"><see cref="SocketError.AddressNotAvailable"/> when
    /// the path does not exist, <see cref="SocketError.ConnectionRefused"/> when nobody is
    /// bound there, <see cref="SocketError.IsConnected"/> on a connected socket; and see the
    /// class remarks.</exception>
    /// <exception cref="ArgumentException">The path is empty, contains a NUL other than one
    /// leading NUL, or does not fit in a socket address; or see <see cref="SendFds(Socket, ReadOnlySpan{byte}, ReadOnlySpan{Descriptor})"/>.</exception>
    public static int SendFdsTo(this Socket socket, string path, ReadOnlySpan<byte> data, params ReadOnlySpan<Descriptor> fds) =>
        FdSendCore.Send(socket, NativePath(path), data, fds, default);

    /// <summary>Like <see cref="SendFdsTo(Socket, string, ReadOnlySpan{byte}, ReadOnlySpan{Descriptor})"/>
    /// with raw file descriptors, which the caller owns and keeps open until this returns.</summary>
    /// <param name="socket">An unconnected <see cref="SocketType.Dgram"/> Unix socket.</param>
    /// <param name="path">The receiver's socket path.</param>
    /// <param name="data">The data.</param>
    /// <param name="fds">0 .. <see cref="FdPassing.MaxFds"/> open file descriptors.</param>
    /// <returns>The number of data bytes sent.</returns>
    public static int SendFdsTo(this Socket socket, string path, ReadOnlySpan<byte> data, ReadOnlySpan<int> fds) =>
        FdSendCore.Send(socket, NativePath(path), data, default, fds);

    /// <summary>
    /// Sends one datagram with <paramref name="data"/> and <paramref name="fds"/> from an
    /// UNCONNECTED Unix datagram socket to <paramref name="endPoint"/>: the same socket that
    /// <see cref="Socket.SendTo(ReadOnlySpan{byte}, System.Net.EndPoint)"/> or <see cref="Socket.Connect(System.Net.EndPoint)"/>
    /// would reach with that endpoint. An abstract name is spelled as .NET spells it,
    /// <c>new UnixDomainSocketEndPoint("\0name")</c> (whose ToString() shows "@name"); an
    /// endpoint made from "@name" is, for .NET as here, the file "@name" in the current
    /// directory, not an abstract name. Allocates a little (the endpoint's address).
    /// </summary>
    /// <param name="socket">An unconnected <see cref="SocketType.Dgram"/> Unix socket.</param>
    /// <param name="endPoint">The receiver's address.</param>
    /// <param name="data">The data; a datagram may be empty.</param>
    /// <param name="fds">0 .. <see cref="FdPassing.MaxFds"/> descriptors, still owned by the caller afterwards.</param>
    /// <returns>The number of data bytes sent (the whole datagram).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="endPoint"/> is null.</exception>
    /// <exception cref="ArgumentException">The endpoint is unnamed, or an abstract name contains
    /// a NUL byte (which libfdsend's path cannot carry); and see
    /// <see cref="SendFdsTo(Socket, string, ReadOnlySpan{byte}, ReadOnlySpan{Descriptor})"/>.</exception>
    /// <exception cref="SocketException">As for <see cref="SendFdsTo(Socket, string, ReadOnlySpan{byte}, ReadOnlySpan{Descriptor})"/>.</exception>
    public static int SendFdsTo(this Socket socket, UnixDomainSocketEndPoint endPoint, ReadOnlySpan<byte> data,
                                params ReadOnlySpan<Descriptor> fds) =>
        FdSendCore.Send(socket, NativePath(endPoint), data, fds, default);

    /// <summary>Like <see cref="SendFdsTo(Socket, UnixDomainSocketEndPoint, ReadOnlySpan{byte}, ReadOnlySpan{Descriptor})"/>
    /// with raw file descriptors, which the caller owns and keeps open until this returns.</summary>
    /// <param name="socket">An unconnected <see cref="SocketType.Dgram"/> Unix socket.</param>
    /// <param name="endPoint">The receiver's address.</param>
    /// <param name="data">The data.</param>
    /// <param name="fds">0 .. <see cref="FdPassing.MaxFds"/> open file descriptors.</param>
    /// <returns>The number of data bytes sent.</returns>
    public static int SendFdsTo(this Socket socket, UnixDomainSocketEndPoint endPoint, ReadOnlySpan<byte> data,
                                ReadOnlySpan<int> fds) =>
        FdSendCore.Send(socket, NativePath(endPoint), data, default, fds);

    /// <summary>
    /// Receives ONE message: data into <paramref name="buffer"/> and up to
    /// <paramref name="maxFds"/> descriptors into an owning result. Dispose the result
    /// (<c>using</c>): it closes every descriptor you did not take.
    /// </summary>
    /// <param name="socket">A connected (or, for datagrams, bound) Unix domain socket.</param>
    /// <param name="buffer">Where the data goes. Empty on a stream socket: consumes exactly
    /// the one byte that carries descriptors (IO::FDPass's recv).</param>
    /// <param name="maxFds">The most descriptors to accept (default and upper bound
    /// <see cref="FdPassing.MaxFds"/>); any more that arrive are closed and
    /// <see cref="ReceivedFds.FdsTruncated"/> is set.</param>
    /// <returns>The message's byte count, flags and descriptors. Check
    /// <see cref="ReceivedFds.IsEndOfStream"/> on a stream socket.</returns>
    /// <exception cref="SocketException"><see cref="SocketError.WouldBlock"/> on a
    /// non-blocking socket with nothing waiting (nothing consumed),
    /// <see cref="SocketError.TimedOut"/> past <see cref="Socket.ReceiveTimeout"/>;
    /// <see cref="SocketError.ConnectionAborted"/> (stream) or <see cref="SocketError.Interrupted"/>
    /// (seqpacket, datagram) when another thread disposes the socket during the call, as
    /// <see cref="Socket.Receive(Span{byte})"/> throws then (nothing was received; this is not
    /// the peer's end of stream); on Windows, where one receive takes one whole message (a
    /// record), <see cref="SocketError.MessageSize"/> when the message has more data than
    /// <paramref name="buffer"/> holds (nothing consumed: receive again with a larger buffer);
    /// and see the class remarks.</exception>
    /// <exception cref="ObjectDisposedException">The socket was disposed before the call.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxFds"/> is negative.</exception>
    public static ReceivedFds ReceiveFds(this Socket socket, Span<byte> buffer, int maxFds = FdPassing.MaxFds) =>
        FdSendCore.Receive(socket, buffer, maxFds);

    /// <summary>
    /// Receives EXACTLY <c>buffer.Length</c> bytes from a STREAM socket, however many receives
    /// that takes, with every descriptor that comes with them merged, in arrival order, into ONE
    /// owning result: the HAProxy <c>_getsocks</c> / s6-fdholder case (a count, then batches of
    /// descriptors). Dispose the result (<c>using</c>): it closes every descriptor you did not take.
    /// </summary>
    /// <param name="socket">A connected Unix STREAM socket.</param>
    /// <param name="buffer">Filled completely (an empty buffer returns at once, reading
    /// nothing).</param>
    /// <param name="maxFds">The most descriptors to keep over the whole call (default
    /// <see cref="FdPassing.MaxFds"/>; pass more for more: a merged result may hold more than
    /// one message's 253). Any beyond it are closed and <see cref="ReceivedFds.FdsTruncated"/>
    /// is set.</param>
    /// <returns>All <c>buffer.Length</c> bytes with their descriptors; or, if the peer closed
    /// its end before the first byte, a result with <see cref="ReceivedFds.IsEndOfStream"/>
    /// (0 bytes, no descriptors).</returns>
    /// <remarks>Blocking: before the first byte, as <see cref="ReceiveFds(Socket, Span{byte}, int)"/>
    /// (a non-blocking socket throws <see cref="SocketError.WouldBlock"/>, nothing consumed);
    /// once the first byte is in, the call waits for the rest whatever
    /// <see cref="Socket.Blocking"/> says. <see cref="Socket.ReceiveTimeout"/>, when set, bounds
    /// the WHOLE call, not each chunk. Every failure after the first byte closes every
    /// descriptor received by the call (nothing leaks) and leaves the stream at an unknown
    /// position: close the connection.</remarks>
    /// <exception cref="EndOfStreamException">The peer closed its end after the first byte and
    /// before the last (as <see cref="Stream.ReadExactly(Span{byte})"/> throws); the descriptors
    /// received were closed.</exception>
    /// <exception cref="SocketException"><see cref="SocketError.TimedOut"/> when
    /// <see cref="Socket.ReceiveTimeout"/> ran out (before the first byte: nothing consumed;
    /// after it: descriptors closed, bytes lost); <see cref="SocketError.WouldBlock"/> on a
    /// non-blocking socket with nothing waiting; <see cref="SocketError.ConnectionAborted"/> when
    /// the socket is disposed during the call; and see the class remarks.</exception>
    /// <exception cref="ArgumentException">The socket is not a stream socket.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxFds"/> is negative.</exception>
    /// <exception cref="ObjectDisposedException">The socket was disposed before the call.</exception>
    public static ReceivedFds ReceiveFdsExactly(this Socket socket, Span<byte> buffer, int maxFds = FdPassing.MaxFds) =>
        ExactReceiver.Receive(socket, buffer, maxFds);

    /// <summary>
    /// Receives ONE message into caller-provided storage, allocating nothing: data into
    /// <paramref name="buffer"/>, descriptors into <paramref name="fds"/> (at most its length,
    /// capped at <see cref="FdPassing.MaxFds"/>; any more that arrive are closed and
    /// <see cref="ReceiveFlags.FdsTruncated"/> is set).
    /// </summary>
    /// <param name="socket">A connected (or, for datagrams, bound) Unix domain socket.</param>
    /// <param name="buffer">Where the data goes (empty on a stream socket: consume the one
    /// descriptor-carrying byte).</param>
    /// <param name="fds">Where the descriptors go. The caller OWNS fds[0 .. fdCount) and must
    /// close them (or wrap each in a SafeHandle with ownsHandle: true).</param>
    /// <param name="fdCount">How many descriptors were stored.</param>
    /// <param name="flags">What had to be dropped.</param>
    /// <returns>The number of data bytes received; 0 with no descriptors and no flags on a
    /// stream socket means the peer closed its end.</returns>
    /// <exception cref="SocketException">As for the other overload (including
    /// <see cref="SocketError.ConnectionAborted"/> / <see cref="SocketError.Interrupted"/> when
    /// the socket is disposed during the call).</exception>
    /// <exception cref="ObjectDisposedException">The socket was disposed before the call.</exception>
    public static int ReceiveFds(this Socket socket, Span<byte> buffer, Span<int> fds,
                                 out int fdCount, out ReceiveFlags flags) =>
        FdSendCore.Receive(socket, buffer, fds, out fdCount, out flags);

    /// <summary>
    /// The credentials (pid, uid, gid) of the process at the other end of a connected Unix
    /// domain socket, as the kernel recorded them at connect/accept (or socketpair) time.
    /// </summary>
    /// <param name="socket">A connected Unix stream or seqpacket socket (or an accepted one).</param>
    /// <exception cref="SocketException"><see cref="SocketError.NotConnected"/> for a socket
    /// without a peer; <see cref="SocketError.AddressFamilyNotSupported"/> for a non-Unix socket.</exception>
    /// <exception cref="PlatformNotSupportedException">The OS cannot report peer credentials.</exception>
    /// <exception cref="ObjectDisposedException">The socket is disposed.</exception>
    public static PeerCredentials GetPeerCredentials(this Socket socket) =>
        FdSendCore.GetPeerCredentials(socket);

    /// <summary>The path as libfdsend takes it: a file path, or '@' + name for a Linux abstract
    /// socket, which is also accepted in .NET's spelling, a leading NUL ("\0name").</summary>
    private static string NativePath(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        int nul = path.IndexOf('\0', 1);
        if (nul >= 0 || path == "\0")
            throw new ArgumentException(
                "The socket path contains a NUL character (or is a lone NUL). For a Linux abstract socket, start the path with '@' or with one leading NUL, as UnixDomainSocketEndPoint does; no other NUL may appear.",
                nameof(path));
        return path[0] == '\0' ? "@" + path.Substring(1) : path;
    }

    /// <summary>The libfdsend path of an endpoint, read from its socket address (ToString()
    /// cannot tell the abstract name "\0x" from the file "@x": both print "@x").</summary>
    private static string NativePath(UnixDomainSocketEndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        System.Net.SocketAddress address = endPoint.Serialize();
        const int PathOffset = 2; // sun_family, then sun_path
        int length = address.Size - PathOffset;
        if (length <= 0)
            throw new ArgumentException("The endpoint has no path or name (an unnamed socket address); it cannot be sent to.", nameof(endPoint));
        byte[] path = new byte[length];
        for (int i = 0; i < length; i++)
            path[i] = address[PathOffset + i];
        if (path[0] == 0)
        {
            ReadOnlySpan<byte> name = path.AsSpan(1);
            if (name.IsEmpty || name.Contains((byte)0))
                throw new ArgumentException(
                    "The endpoint's abstract name is empty or contains a NUL byte, which libfdsend's '@name' form cannot carry.", nameof(endPoint));
            return "@" + System.Text.Encoding.UTF8.GetString(name);
        }
        int end = path.AsSpan().IndexOf((byte)0);
        string file = System.Text.Encoding.UTF8.GetString(path, 0, end < 0 ? length : end);
        // A file named "@..." (relative to the current directory, as .NET binds it) must not
        // turn into an abstract name on the way through libfdsend's '@' convention.
        return file.StartsWith('@') ? "./" + file : file;
    }
}
