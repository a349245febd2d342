// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace FdSend;

/// <summary>
/// Async descriptor passing on a Unix domain <see cref="Socket"/>: <c>await</c> without a
/// blocked thread.
/// </summary>
/// <remarks>
/// <para>The same ownership and error rules as <see cref="SocketFdExtensions"/>: sending never
/// takes the caller's descriptors; a received <see cref="ReceivedFds"/> owns its descriptors
/// and closes what you do not take. Errors come as the same exceptions, through the returned
/// task. <see cref="Socket.Blocking"/> does not matter, as for Socket's own async methods.</para>
/// <para>How they wait: each call first tries at once (a message that is already waiting, or
/// room in the send buffer, completes synchronously without allocating anything but the
/// result). Otherwise it registers with FdSend's readiness engine: libfdsend's epoll (Linux) or
/// kqueue (BSDs, macOS) set, waited on by one engine thread at a time (a one-shot interest per
/// wait; on Linux <c>FDSEND_ASYNC_KEEP_REGISTRATION=1</c> keeps a busy socket registered,
/// edge-triggered, instead), so that no thread is blocked per pending operation. When the
/// socket becomes ready, that thread retries the receive (or send) itself and runs your
/// continuation inline, with no thread-pool hop (the fastest for a request/response loop). A
/// continuation that blocks or runs long does not stall the other sockets: within a few
/// milliseconds another engine thread takes over the waiting, and the blocked one rejoins as a
/// spare when your code returns. <c>FDSEND_ASYNC_INLINE_COMPLETIONS=0</c> (or the AppContext
/// switch <c>FdSend.Async.InlineCompletions</c> set to false) queues every continuation to
/// the thread pool instead. The rest of a partly sent stream
/// buffer, which carries no descriptors, goes one counted sendmsg at a time, so that a failure
/// in the middle can say how much went (<see cref="FdPartialSendException"/>). A socket
/// disposed while an operation waits fails it with <see cref="ObjectDisposedException"/>
/// within a quarter of a second. (Windows: readable waits are .NET's zero-byte receive; writable
/// waits use the same engine, on WSAPoll.)</para>
/// <para>Cancellation: a receive cancelled before a message arrived consumes nothing
/// (<see cref="OperationCanceledException"/>); a message that has been received is returned
/// even if cancellation was requested at the same moment, so no descriptor is ever closed
/// behind your back. A send cancelled before its first byte went out sends nothing, neither
/// data nor descriptors; once its first byte is out a stream send always finishes the whole
/// buffer (only disposing the socket stops it), because a half-sent buffer would leave the
/// stream at a position the peer cannot know.</para>
/// <para>Sync and async calls may be mixed on one socket. As with any stream socket, two sends
/// (or two receives) in flight at once on the same socket may interleave their bytes: use
/// <see cref="FdChannel"/> for concurrent messages.</para>
/// </remarks>
public static class SocketFdAsyncExtensions
{
    /// <summary>
    /// Sends <paramref name="data"/> and <paramref name="fds"/> as ONE message on a connected
    /// Unix domain socket; on a stream socket the whole buffer is sent (the descriptors with the
    /// first chunk, the rest without them).
    /// </summary>
    /// <param name="socket">A connected Unix domain socket (stream, seqpacket, or a datagram
    /// socket connected to its peer).</param>
    /// <param name="data">The data. May be empty: on a stream socket one zero byte then carries
    /// the descriptors (and 0 is the result). Must not change until the task completes.</param>
    /// <param name="fds">0 .. <see cref="FdPassing.MaxFds"/> descriptors, still owned by the
    /// caller afterwards; keep them open until the task completes.</param>
    /// <param name="cancellationToken">Cancels the wait for room in the send buffer, as long as
    /// nothing was sent.</param>
    /// <returns>The number of data bytes sent: all of <paramref name="data"/>.</returns>
    /// <exception cref="OperationCanceledException">Cancelled before anything was sent; the
    /// socket stays usable.</exception>
    /// <exception cref="SocketException">As for <see cref="SocketFdExtensions.SendFds(Socket, ReadOnlySpan{byte}, ReadOnlySpan{Descriptor})"/>.</exception>
    /// <exception cref="FdPartialSendException">(A <see cref="SocketException"/>.) On a stream
    /// socket, a later chunk failed after the first chunk and every descriptor went out:
    /// <see cref="FdPartialSendException.BytesSent"/> says how many bytes did. Close the
    /// connection.</exception>
    /// <exception cref="ArgumentException">More than <see cref="FdPassing.MaxFds"/> descriptors,
    /// a <c>default(Descriptor)</c>, or a descriptor that is not open (nothing sent).</exception>
    /// <exception cref="ObjectDisposedException">The socket or a descriptor's handle is disposed.</exception>
    public static ValueTask<int> SendFdsAsync(this Socket socket, ReadOnlyMemory<byte> data,
                                              ReadOnlyMemory<Descriptor> fds,
                                              CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled<int>(cancellationToken);
        int sent;
        try
        {
            if (!AsyncFdCore.TrySend(socket, data, fds, out sent))
                return SendAfterWaitAsync(socket, data, fds, cancellationToken);
        }
        catch (Exception e)
        {
            return ValueTask.FromException<int>(e);
        }
        return Finish(socket, data, sent, fds.Length);
    }

    /// <summary>
    /// Sends <paramref name="data"/> and <paramref name="fds"/> as ONE message; like
    /// <see cref="SendFdsAsync(Socket, ReadOnlyMemory{byte}, ReadOnlyMemory{Descriptor}, CancellationToken)"/>,
    /// and the overload a collection expression binds to:
    /// <c>await socket.SendFdsAsync(data, [file1, file2])</c> (a
    /// <see cref="ReadOnlyMemory{T}"/> cannot be built from one, and a span cannot live across
    /// the await).
    /// </summary>
    /// <param name="socket">A connected Unix domain socket.</param>
    /// <param name="data">The data (may be empty). Must not change until the task completes.</param>
    /// <param name="fds">0 .. <see cref="FdPassing.MaxFds"/> descriptors, still owned by the
    /// caller afterwards; keep them open (and the array unchanged) until the task completes.</param>
    /// <param name="cancellationToken">Cancels the wait for room, as long as nothing was sent.</param>
    /// <returns>The number of data bytes sent: all of <paramref name="data"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="fds"/> is null.</exception>
    /// <exception cref="FdPartialSendException">See the other overload.</exception>
    public static ValueTask<int> SendFdsAsync(this Socket socket, ReadOnlyMemory<byte> data, Descriptor[] fds,
                                              CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(fds);
        return SendFdsAsync(socket, data, new ReadOnlyMemory<Descriptor>(fds), cancellationToken);
    }

    /// <summary>
    /// Sends <paramref name="data"/> and ONE descriptor as one message; like
    /// <see cref="SendFdsAsync(Socket, ReadOnlyMemory{byte}, ReadOnlyMemory{Descriptor}, CancellationToken)"/>
    /// without an array (a <see cref="Socket"/>, <see cref="FileStream"/> or SafeHandle
    /// converts to <see cref="Descriptor"/> implicitly; a raw fd number needs
    /// <see cref="Descriptor.FromRawFd"/>).
    /// </summary>
    /// <param name="socket">A connected Unix domain socket.</param>
    /// <param name="data">The data (may be empty).</param>
    /// <param name="fd">The descriptor, still owned by the caller afterwards.</param>
    /// <param name="cancellationToken">Cancels the wait for room, as long as nothing was sent.</param>
    /// <returns>The number of data bytes sent: all of <paramref name="data"/>.</returns>
    public static ValueTask<int> SendFdsAsync(this Socket socket, ReadOnlyMemory<byte> data, Descriptor fd,
                                              CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled<int>(cancellationToken);
        int sent;
        try
        {
            if (!FdSendCore.TrySend(socket, null, data.Span, AsyncFdCore.One(ref fd), default, out sent))
                return SendAfterWaitAsync(socket, data, new[] { fd }, cancellationToken);
        }
        catch (Exception e)
        {
            return ValueTask.FromException<int>(e);
        }
        return Finish(socket, data, sent, 1);
    }

    /// <summary>
    /// Receives ONE message: data into <paramref name="buffer"/> and up to
    /// <paramref name="maxFds"/> descriptors into an owning result; waits without a thread
    /// until one arrives. Dispose the result (<c>using</c>): it closes every descriptor you did
    /// not take.
    /// </summary>
    /// <param name="socket">A connected (or, for datagrams, bound) Unix domain socket.</param>
    /// <param name="buffer">Where the data goes (see
    /// <see cref="SocketFdExtensions.ReceiveFds(Socket, Span{byte}, int)"/>); must stay
    /// untouched until the task completes.</param>
    /// <param name="maxFds">The most descriptors to accept (0 .. <see cref="FdPassing.MaxFds"/>);
    /// any more that arrive are closed and <see cref="ReceivedFds.FdsTruncated"/> is set.</param>
    /// <param name="cancellationToken">Cancels the wait for a message; nothing is consumed then.</param>
    /// <returns>The message's byte count, flags and descriptors. Check
    /// <see cref="ReceivedFds.IsEndOfStream"/> on a stream socket.</returns>
    /// <exception cref="OperationCanceledException">Cancelled before a message was received
    /// (nothing consumed).</exception>
    /// <exception cref="SocketException">As for the sync receive.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxFds"/> is negative.</exception>
    public static ValueTask<ReceivedFds> ReceiveFdsAsync(this Socket socket, Memory<byte> buffer,
                                                         int maxFds = FdPassing.MaxFds,
                                                         CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentOutOfRangeException.ThrowIfNegative(maxFds);
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled<ReceivedFds>(cancellationToken);
        long observed = ReadinessEngine.ObserveReadable(socket);
        try
        {
            if (FdSendCore.TryReceive(socket, buffer.Span, maxFds, out ReceivedFds? result))
                return new ValueTask<ReceivedFds>(result!);
        }
        catch (Exception e)
        {
            return ValueTask.FromException<ReceivedFds>(e);
        }
        return AsyncFdCore.ReceiveSlowAsync(socket, buffer, maxFds, observed, cancellationToken);
    }

    /// <summary>Like <see cref="ReceiveFdsAsync(Socket, Memory{byte}, int, CancellationToken)"/>
    /// accepting up to <see cref="FdPassing.MaxFds"/> descriptors.</summary>
    /// <param name="socket">A connected (or, for datagrams, bound) Unix domain socket.</param>
    /// <param name="buffer">Where the data goes.</param>
    /// <param name="cancellationToken">Cancels the wait for a message; nothing is consumed then.</param>
    /// <returns>The message, owning its descriptors.</returns>
    public static ValueTask<ReceivedFds> ReceiveFdsAsync(this Socket socket, Memory<byte> buffer,
                                                         CancellationToken cancellationToken) =>
        ReceiveFdsAsync(socket, buffer, FdPassing.MaxFds, cancellationToken);

    /// <summary>
    /// Receives EXACTLY <c>buffer.Length</c> bytes from a STREAM socket with every descriptor
    /// that comes with them merged into ONE owning result; the async form of
    /// <see cref="SocketFdExtensions.ReceiveFdsExactly"/> (same results and exceptions, except
    /// that <see cref="Socket.ReceiveTimeout"/> does not apply, as to Socket's own async calls).
    /// </summary>
    /// <param name="socket">A connected Unix STREAM socket.</param>
    /// <param name="buffer">Filled completely; must stay untouched until the task completes.</param>
    /// <param name="maxFds">The most descriptors to keep over the whole call (see the sync form).</param>
    /// <param name="cancellationToken">Before the first byte: cancels with nothing consumed.
    /// After it: also cancels (a stalled peer must not hold the call forever), but the bytes
    /// already consumed are lost and the descriptors received are closed: the stream is at an
    /// unknown position, close the connection.</param>
    /// <returns>All the bytes with their descriptors, or a result with
    /// <see cref="ReceivedFds.IsEndOfStream"/> if the peer closed before the first byte.</returns>
    /// <exception cref="OperationCanceledException">Cancelled (see <paramref name="cancellationToken"/>).</exception>
    /// <exception cref="EndOfStreamException">The peer closed its end after the first byte and
    /// before the last; the descriptors received were closed.</exception>
    /// <exception cref="SocketException">As for the sync receive.</exception>
    /// <exception cref="ArgumentException">The socket is not a stream socket (thrown at once).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxFds"/> is negative (thrown at once).</exception>
    public static ValueTask<ReceivedFds> ReceiveFdsExactlyAsync(this Socket socket, Memory<byte> buffer,
                                                                int maxFds = FdPassing.MaxFds,
                                                                CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled<ReceivedFds>(cancellationToken);
        return ExactReceiver.ReceiveAsync(socket, buffer, maxFds, cancellationToken);
    }

    /// <summary>Like <see cref="ReceiveFdsExactlyAsync(Socket, Memory{byte}, int, CancellationToken)"/>
    /// keeping up to <see cref="FdPassing.MaxFds"/> descriptors.</summary>
    /// <param name="socket">A connected Unix STREAM socket.</param>
    /// <param name="buffer">Filled completely.</param>
    /// <param name="cancellationToken">See the other overload.</param>
    /// <returns>The bytes with their descriptors.</returns>
    public static ValueTask<ReceivedFds> ReceiveFdsExactlyAsync(this Socket socket, Memory<byte> buffer,
                                                                CancellationToken cancellationToken) =>
        ReceiveFdsExactlyAsync(socket, buffer, FdPassing.MaxFds, cancellationToken);

    private static ValueTask<int> Finish(Socket socket, ReadOnlyMemory<byte> data, int sent, int fdCount)
    {
        if (sent >= data.Length || socket.SocketType != SocketType.Stream)
            return new ValueTask<int>(sent);
        return AsyncFdCore.SendRestCountedAsync(socket, data, sent, fdCount);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<int> SendAfterWaitAsync(Socket socket, ReadOnlyMemory<byte> data,
                                                           ReadOnlyMemory<Descriptor> fds,
                                                           CancellationToken cancellationToken)
    {
        int sent = await AsyncFdCore.SendFirstChunkAsync(socket, data, fds, cancellationToken).ConfigureAwait(false);
        if (sent >= data.Length || socket.SocketType != SocketType.Stream)
            return sent;
        return await AsyncFdCore.SendRestCountedAsync(socket, data, sent, fds.Length).ConfigureAwait(false);
    }
}
