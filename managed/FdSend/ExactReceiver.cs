// SPDX-License-Identifier: MIT
using System.Buffers;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace FdSend;

/// <summary>
/// Receives exactly N bytes on a stream socket with every descriptor that comes with them,
/// merged into one owning <see cref="ReceivedFds"/> (the HAProxy <c>_getsocks</c> /
/// s6-fdholder case: a count, then descriptors in batches of at most 253). Behind both
/// <see cref="SocketFdExtensions.ReceiveFdsExactly"/> and
/// <see cref="SocketFdAsyncExtensions.ReceiveFdsExactlyAsync(Socket, Memory{byte}, int, CancellationToken)"/>.
/// The merge rules (bytes at their offset, descriptors in arrival order up to maxFds, the rest
/// closed and flagged, the end of the stream before or after the first byte) are libfdsend's
/// <c>fdsend_recv_exact_step</c>, the step <c>fdsend_recv_exact</c> loops over: each attempt
/// here is one such step (<see cref="TryStep"/>). What stays here is ownership (the native
/// descriptor array becomes a <see cref="ReceivedFds"/>), the waiting between steps (sync:
/// fdsend_wait; async: the <see cref="ReadinessEngine"/>) and the exceptions.
/// </summary>
/// <remarks>Every descriptor received is, at every moment, either in
/// <c>_fds[0 .. _state.FdCount)</c> (owned here until <see cref="Result"/> hands them to a
/// <see cref="ReceivedFds"/>) or closed; any failure closes them all (libfdsend when the step
/// fails, <see cref="Abandon"/> when the wait or the caller gives up).</remarks>
internal sealed class ExactReceiver
{
    private readonly Socket _socket;
    private readonly int _length;
    private readonly int _maxFds;
    private nint[] _fds = [];          // rented from ArrayPool once a descriptor may arrive
    private Interop.ExactState _state; // the native step's; zero: a new receive
    private bool _released;            // the descriptors were handed out, or closed

    /// <summary>What one step did (<see cref="TryStep"/>).</summary>
    private enum Step
    {
        /// <summary>Nothing was waiting; nothing consumed: wait, then step again.</summary>
        Nothing,
        /// <summary>A piece arrived and more is due: step again.</summary>
        Progress,
        /// <summary>The receive is complete (FDSEND_EXACT_DONE; a further step says so
        /// again, reading nothing).</summary>
        Done,
    }

    private ExactReceiver(Socket socket, int length, int maxFds)
    {
        _socket = socket;
        _length = length;
        _maxFds = maxFds;
    }

    /// <summary>Bytes stored so far at the start of the buffer.</summary>
    private int BytesReceived => (int)_state.Received;

    /// <summary>Descriptors merged so far (or, after a failed step, closed by it).</summary>
    private int FdCount => _state.FdCount;

    /// <summary>The peer closed its end before the first byte.</summary>
    private bool EndOfStream => (_state.ReceiveFlags & Interop.FDSEND_RECV_END_OF_STREAM) != 0;

    private static ExactReceiver Create(Socket socket, int length, int maxFds)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentOutOfRangeException.ThrowIfNegative(maxFds);
        FdSendCore.GetHandle(socket);
        if (socket.SocketType != SocketType.Stream)
            throw new ArgumentException(
                $"Receiving an exact number of bytes needs a stream socket; this one is {socket.SocketType}, whose messages are received whole by ReceiveFds.",
                nameof(socket));
        return new ExactReceiver(socket, length, maxFds);
    }

    // ---- The entry points ------------------------------------------------------------------

    /// <summary>The sync receive: non-blocking attempts, waits with fdsend_wait in between. A
    /// blocking socket's <see cref="Socket.ReceiveTimeout"/> bounds the whole call (one
    /// deadline from its start, not one per chunk); a non-blocking socket throws WouldBlock
    /// before the first byte, and after it waits for the rest like a blocking one.</summary>
    internal static ReceivedFds Receive(Socket socket, Span<byte> buffer, int maxFds)
    {
        ExactReceiver r = Create(socket, buffer.Length, maxFds);
        bool blocking = socket.Blocking;
        int timeoutMs = socket.ReceiveTimeout;
        long deadline = timeoutMs > 0 ? Environment.TickCount64 + timeoutMs : long.MaxValue;
        bool waited = false;
        try
        {
            for (Step step; (step = r.TryStep(buffer)) != Step.Done;)
            {
                if (step == Step.Progress)
                    continue;
                if (!blocking && r.BytesReceived == 0)
                    throw FdSendErrors.WouldBlock(FdOperation.Receive);
                waited = true;
                FdSendCore.WaitForReceive(socket, ref deadline);
            }
            return r.Result();
        }
        catch (Exception e)
        {
            int got = r.BytesReceived, fds = r.FdCount;
            r.Abandon();
            if (e is ObjectDisposedException && waited)
                throw FdSendErrors.Aborted(SocketType.Stream);
            if (e is SocketException { SocketErrorCode: SocketError.TimedOut } && got > 0)
                throw FdSendErrors.ExactTimedOut(got, buffer.Length, fds, timeoutMs);
            throw;
        }
    }

    /// <summary>The async receive: non-blocking attempts, waits for readability on the
    /// <see cref="ReadinessEngine"/> in between (.NET's zero-byte receive on Windows). Cancellation before the first byte consumes nothing; after
    /// it, the bytes already consumed are lost and the descriptors closed.</summary>
    internal static ValueTask<ReceivedFds> ReceiveAsync(Socket socket, Memory<byte> buffer, int maxFds,
                                                        CancellationToken cancellationToken) =>
        Create(socket, buffer.Length, maxFds).RunAsync(buffer, cancellationToken); // bad arguments throw at once

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<ReceivedFds> RunAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ExactReceiver r = this;
        Socket socket = _socket;
        try
        {
            for (Step step; (step = r.TryStep(buffer.Span)) != Step.Done;)
            {
                if (step == Step.Progress)
                    continue;
                try
                {
                    await AsyncFdCore.WaitReadableAsync(socket, cancellationToken).ConfigureAwait(false);
                }
                catch (SocketException) when (!cancellationToken.IsCancellationRequested)
                {
                    // An error is pending: let the receive report it in FdSend's terms (or
                    // take what is still waiting).
                    if (r.TryStep(buffer.Span) == Step.Nothing)
                        throw;
                }
            }
            return r.Result();
        }
        catch
        {
            r.Abandon();
            throw;
        }
    }

    // ---- The shared loop body ----------------------------------------------------------------

    /// <summary>One fdsend_recv_exact_step into <paramref name="buffer"/>: what it did (see
    /// <see cref="Step"/>). Throws <see cref="EndOfStreamException"/> if the stream ends
    /// after the first byte, the disposal exception if the socket was disposed, and the
    /// mapped exception of any other failure; the caller then calls
    /// <see cref="Abandon"/>.</summary>
    private unsafe Step TryStep(Span<byte> buffer)
    {
        SafeSocketHandle handle = FdSendCore.GetHandle(_socket);
        int capacity = EnsureRoom();
        int rc;
        fixed (byte* data = buffer)
        fixed (nint* fds = _fds)
        fixed (Interop.ExactState* state = &_state)
            rc = Interop.RecvExactStep(handle, state, data, (nuint)buffer.Length, fds, capacity, 0);
        if (rc == Interop.FDSEND_EXACT_DONE)
        {
            if (EndOfStream)
                FdSendCore.ThrowIfDisposedDuringReceive(_socket); // Dispose's shutdown reads as an end
            return Step.Done;
        }
        if (rc == (int)Interop.Status.Ok)
            return Step.Progress;
        if (rc == (int)Interop.Status.EAGAIN)
            return Step.Nothing;
        // A failed step closed every descriptor it had stored and set their slots to -1
        // (Abandon's CloseAll skips them); an argument error closed nothing.
        if (rc == (int)Interop.Status.EPROTO && EndOfStream) // the end came after the first byte
        {
            FdSendCore.ThrowIfDisposedDuringReceive(_socket);
            throw FdSendErrors.ExactEndOfStream(BytesReceived, _length, FdCount);
        }
        throw FdSendErrors.Create(rc, FdOperation.Receive);
    }

    /// <summary>Grows the descriptor array so that the next step cannot run out of room below
    /// maxFds (one step adds at most <see cref="FdPassing.MaxFds"/>): memory in proportion to
    /// what arrived. Returns the maxfds to give the step.</summary>
    private int EnsureRoom()
    {
        int need = (int)Math.Min(_maxFds, (long)FdCount + FdPassing.MaxFds);
        if (_fds.Length < need)
        {
            nint[] grown = ArrayPool<nint>.Shared.Rent(Math.Max(need, Math.Min(_maxFds, _fds.Length * 2)));
            _fds.AsSpan(0, FdCount).CopyTo(grown);
            ReturnArray();
            _fds = grown;
        }
        return Math.Min(_maxFds, _fds.Length);
    }

    private void ReturnArray()
    {
        if (_fds.Length > 0)
            ArrayPool<nint>.Shared.Return(_fds);
        _fds = [];
    }

    /// <summary>Hands every merged descriptor to one owning result.</summary>
    private ReceivedFds Result()
    {
        ReadOnlySpan<nint> fds = _fds.AsSpan(0, FdCount);
        ReceiveFlags flags = (_state.ReceiveFlags & Interop.FDSEND_RECV_FDS_TRUNCATED) != 0
            ? ReceiveFlags.FdsTruncated : ReceiveFlags.None;
        var result = new ReceivedFds(fds, BytesReceived, flags, EndOfStream);
        _released = true; // owned by the result now
        ReturnArray();
        return result;
    }

    /// <summary>Closes every descriptor received so far (after a failure); the slots of those
    /// a failed step already closed hold -1, which CloseAll skips.</summary>
    private void Abandon()
    {
        if (!_released)
            FdSendCore.CloseAll(_fds.AsSpan(0, FdCount));
        _released = true;
        ReturnArray();
    }
}
