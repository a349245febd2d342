// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace FdSend;

/// <summary>
/// Receives exactly N bytes on a stream socket with every descriptor that comes with them,
/// merged into one owning <see cref="ReceivedFds"/> (the HAProxy <c>_getsocks</c> /
/// s6-fdholder case: a count, then descriptors in batches of at most 253). The one merge loop
/// behind both <see cref="SocketFdExtensions.ReceiveFdsExactly"/> and
/// <see cref="SocketFdAsyncExtensions.ReceiveFdsExactlyAsync(Socket, Memory{byte}, int, CancellationToken)"/>:
/// each attempt is one non-blocking receive (<see cref="TryStep"/>); the sync and async entry
/// points differ only in how they wait between attempts.
/// </summary>
/// <remarks>Every descriptor received is, at every moment, either in <see cref="_fds"/> (owned
/// here until <see cref="Result"/> hands them to a <see cref="ReceivedFds"/>) or closed; any
/// failure closes them all (<see cref="Abandon"/>).</remarks>
internal sealed class ExactReceiver
{
    private readonly Socket _socket;
    private readonly int _length;
    private readonly int _maxFds;
    private nint[]? _fds;
    private int _fdCount;
    private bool _fdsTruncated;

    private ExactReceiver(Socket socket, int length, int maxFds)
    {
        _socket = socket;
        _length = length;
        _maxFds = maxFds;
    }

    /// <summary>Bytes stored so far at the start of the buffer.</summary>
    private int BytesReceived { get; set; }

    /// <summary>The peer closed its end before the first byte.</summary>
    private bool EndOfStream { get; set; }

    private bool Finished => EndOfStream || BytesReceived == _length;

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
            while (!r.Finished)
            {
                if (r.TryStep(buffer))
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
            int got = r.BytesReceived, fds = r._fdCount;
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
            while (!r.Finished)
            {
                if (r.TryStep(buffer.Span))
                    continue;
                try
                {
                    await AsyncFdCore.WaitReadableAsync(socket, cancellationToken).ConfigureAwait(false);
                }
                catch (SocketException) when (!cancellationToken.IsCancellationRequested)
                {
                    // An error is pending: let the receive report it in FdSend's terms (or
                    // take what is still waiting).
                    if (!r.TryStep(buffer.Span))
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

    /// <summary>One non-blocking receive into the rest of <paramref name="buffer"/>, merging its
    /// descriptors. False: nothing waiting (nothing consumed). Throws
    /// <see cref="EndOfStreamException"/> if the stream ends after the first byte, and the
    /// disposal exception if the socket was disposed; the caller then calls
    /// <see cref="Abandon"/>.</summary>
    private unsafe bool TryStep(Span<byte> buffer)
    {
        nint* fds = stackalloc nint[FdPassing.MaxFds];
        if (!FdSendCore.TryReceive(_socket, buffer.Slice(BytesReceived), fds, FdPassing.MaxFds,
                                   out int n, out int count, out ReceiveFlags flags, out bool endOfStream, mayBlock: false))
            return false;
        Merge(new ReadOnlySpan<nint>(fds, count), flags);
        if (n == 0 && count == 0)
            FdSendCore.ThrowIfDisposedDuringReceive(_socket);
        if (endOfStream)
        {
            if (BytesReceived > 0)
                throw FdSendErrors.ExactEndOfStream(BytesReceived, _length, _fdCount);
            EndOfStream = true;
            return true;
        }
        BytesReceived += n;
        return true;
    }

    /// <summary>Keeps up to maxFds descriptors in arrival order; closes the rest.</summary>
    private void Merge(ReadOnlySpan<nint> received, ReceiveFlags flags)
    {
        if ((flags & ReceiveFlags.FdsTruncated) != 0)
            _fdsTruncated = true;
        if (received.IsEmpty)
            return;
        int keep = Math.Min(received.Length, _maxFds - _fdCount);
        if (keep > 0)
        {
            if (_fds is null || _fds.Length < _fdCount + keep)
            {
                nint[] grown;
                try
                {
                    grown = new nint[Math.Max(_fdCount + keep, Math.Min(_maxFds, (_fds?.Length ?? 4) * 2))];
                }
                catch
                {
                    FdSendCore.CloseAll(received); // not merged yet: Abandon would miss them
                    throw;
                }
                if (_fds is not null)
                    _fds.AsSpan(0, _fdCount).CopyTo(grown);
                _fds = grown;
            }
            received.Slice(0, keep).CopyTo(_fds.AsSpan(_fdCount));
            _fdCount += keep;
        }
        if (keep < received.Length)
        {
            _fdsTruncated = true;
            FdSendCore.CloseAll(received.Slice(keep));
        }
    }

    /// <summary>Hands every merged descriptor to one owning result.</summary>
    private ReceivedFds Result()
    {
        ReadOnlySpan<nint> fds = _fds.AsSpan(0, _fdCount);
        var result = new ReceivedFds(fds, BytesReceived,
                                     _fdsTruncated ? ReceiveFlags.FdsTruncated : ReceiveFlags.None, EndOfStream);
        _fdCount = 0; // owned by the result now
        return result;
    }

    /// <summary>Closes every descriptor received so far (after a failure).</summary>
    private void Abandon()
    {
        FdSendCore.CloseAll(_fds.AsSpan(0, _fdCount));
        _fdCount = 0;
    }
}
