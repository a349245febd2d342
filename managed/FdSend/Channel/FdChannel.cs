// SPDX-License-Identifier: MIT
using System.Buffers;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace FdSend;

/// <summary>
/// A message channel over a connected Unix domain socket (stream, seqpacket or datagram):
/// each <see cref="SendAsync"/> arrives as exactly one message at the peer, with its payload
/// and descriptors, however the kernel splits the bytes. It speaks the wire format of the C
/// library's <c>fdsend_msg_send</c> / <c>fdsend_msg_recv</c> (docs/wire-format.md), so either
/// end may be C, .NET or any other implementation of that format.
/// </summary>
/// <remarks>
/// <para>Threads: any number of concurrent <see cref="SendAsync"/> calls are safe (frames are
/// sent one at a time, never interleaved), and so are concurrent receives (each gets a whole
/// message). Nothing blocks a thread: receives wait on .NET's socket engine, sends that meet a
/// full buffer on FdSend's one writability poller (see <see cref="SocketFdAsyncExtensions"/>).</para>
/// <para>Cancellation: a send cancelled before its first byte went out sends nothing; once a
/// frame has started it is always finished (a frame is never half-sent). A receive cancelled
/// in the middle of a frame keeps what it has read, descriptors included, and the next
/// receive continues that frame: nothing is lost or closed.</para>
/// <para>Limits (<see cref="FdChannelOptions"/>) apply on both sides: a send over them throws
/// <see cref="ArgumentException"/> and sends nothing; an incoming message over them is read and
/// discarded whole, its descriptors closed, and the receive throws
/// <see cref="FdMessageRejectedException"/>; the channel stays usable. A frame that breaks the
/// format throws <see cref="FdChannelProtocolException"/> with its descriptors closed. On a
/// stream socket that faults the channel (the next frame's position is lost): every later call
/// throws the same exception. On a seqpacket or datagram socket the bad record is dropped and
/// the channel stays usable (every record stands alone, as in the C library). A stream
/// connection that fails in the middle of a frame faults the channel the same way.</para>
/// <para>End: on a stream or seqpacket socket, the peer's close at a message boundary ends
/// the channel (<see cref="EndOfStreamException"/> from every later receive). A seqpacket peer
/// can also send a zero-byte record without closing: no frame is empty, so it reads as the end
/// too (as in the C library), and a receive after it reads the next record.</para>
/// <para>Memory: a frame header is a promise, not data, so a receive allocates for the bytes
/// that have arrived, not for the length the header announces: nothing until the payload's
/// first bytes come, then at most 64 KiB or twice what has arrived, whichever is larger (the
/// buffer doubles as the payload comes in). An idle peer that sent only a header costs no
/// payload memory.</para>
/// <para>The channel owns the socket (unless <see cref="FdChannelOptions.LeaveOpen"/>): do not
/// read or write it directly while the channel is in use.</para>
/// </remarks>
public sealed class FdChannel : IAsyncDisposable, IDisposable
{
    /// <summary>On a stream socket, payloads up to this size are copied behind the header and
    /// sent with one sendmsg; larger ones are sent header-first, then straight from the
    /// caller's memory.</summary>
    private const int CopyThreshold = 64 * 1024;
    private const int DiscardChunk = 64 * 1024;

    private readonly Socket _socket;
    private readonly FdChannelOptions _options;
    private readonly bool _isStream;
    private readonly bool _isSeqpacket;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly SemaphoreSlim _receiveLock = new(1, 1);
    private readonly CancellationTokenSource _disposeCts = new();
    private readonly byte[] _sendHeader = new byte[FrameHeader.Size];
    private ExceptionDispatchInfo? _fault;
    private volatile bool _disposed;
    private int _disposeStarted; // 1 once Dispose or DisposeAsync has begun (Interlocked)

    // The frame being received (guarded by _receiveLock). On a stream socket a frame can be
    // received over several calls (cancellation keeps it); its descriptors are owned here
    // until the message is handed out.
    private readonly byte[] _rxHeader = new byte[FrameHeader.Size];
    private readonly nint[] _rxFds = new nint[FdPassing.MaxFds];
    private int _rxHeaderGot;
    private int _rxFdCount;
    private bool _rxFdsDropped;
    private bool _rxHeaderDone;
    private FrameHeader _rxFrame;
    private readonly PayloadAssembler _rxPayload = new(); // grows with the bytes that arrive
    private StreamAttempt? _rxAttempt; // the stream receive, retried on the readiness engine's thread
    private PollOperation? _rxOperation; // reused: receives are serialized by _receiveLock
    private bool _rxDiscard;
    private long _rxDiscarded;

    /// <summary>
    /// Creates a channel over a connected Unix domain socket. The socket may be blocking or
    /// not; the channel never blocks a thread on it.
    /// </summary>
    /// <param name="socket">A connected Unix socket of type Stream, Seqpacket or Dgram (a
    /// datagram socket connected to its peer). Owned by the channel from now on unless
    /// <see cref="FdChannelOptions.LeaveOpen"/> is set.</param>
    /// <param name="options">Limits and ownership; null for the defaults.</param>
    /// <exception cref="ArgumentNullException"><paramref name="socket"/> is null.</exception>
    /// <exception cref="ArgumentException">The socket is not a Unix domain socket, or its type
    /// is not Stream, Seqpacket or Dgram.</exception>
    /// <exception cref="ObjectDisposedException">The socket is disposed.</exception>
    /// <exception cref="PlatformNotSupportedException">Windows (the channel's framing mixes
    /// plain bytes into the stream, which libfdsend's Windows record protocol does not allow).</exception>
    public FdChannel(Socket socket, FdChannelOptions? options = null)
    {
        FdSendCore.GetHandle(socket);
        if (OperatingSystem.IsWindows())
            throw new PlatformNotSupportedException(
                "FdChannel is not available on Windows: its framing reads and writes plain stream bytes between descriptor messages, " +
                "and on Windows every write on a socket that carries handles must be a libfdsend record (docs/windows-protocol.md). " +
                "Use SendFds/ReceiveFds (and their async forms) there.");
        if (socket.AddressFamily != AddressFamily.Unix)
            throw new ArgumentException(
                $"A channel carries descriptors, which pass only over Unix domain sockets; this socket is {socket.AddressFamily}. " +
                "Create it with new Socket(AddressFamily.Unix, ...).", nameof(socket));
        if (socket.SocketType is not (SocketType.Stream or SocketType.Seqpacket or SocketType.Dgram))
            throw new ArgumentException(
                $"A channel works over Stream, Seqpacket or Dgram sockets; this socket is {socket.SocketType}.", nameof(socket));
        _socket = socket;
        _options = options ?? new FdChannelOptions();
        _isStream = socket.SocketType == SocketType.Stream;
        _isSeqpacket = socket.SocketType == SocketType.Seqpacket;
    }

    /// <summary>The socket the channel runs on.</summary>
    public Socket Socket => _socket;

    /// <summary>The channel's limits.</summary>
    public FdChannelOptions Options => _options;

    /// <summary>The exception that faulted the channel (a broken frame from the peer on a stream
    /// socket, or a connection that failed in the middle of a frame), or null while it is
    /// healthy. A bad seqpacket or datagram record does not fault the channel.</summary>
    public Exception? Fault => Volatile.Read(ref _fault)?.SourceException;

    // ---- Sending ----------------------------------------------------------------------------

    /// <summary>
    /// Sends one message: <paramref name="payload"/> and <paramref name="fds"/>, as one frame.
    /// Completes when the whole frame is in the socket's send buffer.
    /// </summary>
    /// <param name="payload">0 .. <see cref="FdChannelOptions.MaxMessageSize"/> bytes; must not
    /// change until the task completes.</param>
    /// <param name="fds">0 .. <see cref="FdChannelOptions.MaxFdsPerMessage"/> descriptors, still
    /// owned by the caller afterwards (the peer gets duplicates); keep them open until the task
    /// completes.</param>
    /// <param name="cancellationToken">Cancels the wait for earlier sends and for room in the
    /// socket, as long as nothing of this frame was sent.</param>
    /// <exception cref="ArgumentException">The payload or descriptor count is over the limits,
    /// or a descriptor is <c>default(Descriptor)</c> or not open; nothing was sent.</exception>
    /// <exception cref="OperationCanceledException">Cancelled before anything was sent.</exception>
    /// <exception cref="FdChannelProtocolException">The channel is faulted.</exception>
    /// <exception cref="ObjectDisposedException">The channel (or a descriptor's handle) is disposed.</exception>
    /// <exception cref="SocketException">The socket failed (e.g. <see cref="SocketError.Shutdown"/>
    /// when the peer has closed; <see cref="SocketError.MessageSize"/> when a frame on a
    /// datagram socket does not fit its send buffer, nothing sent).</exception>
    /// <exception cref="IOException">The connection failed in the middle of the frame; the
    /// channel is faulted.</exception>
    public ValueTask SendAsync(ReadOnlyMemory<byte> payload, ReadOnlyMemory<Descriptor> fds = default,
                               CancellationToken cancellationToken = default)
    {
        if (payload.Length > _options.MaxMessageSize)
            throw new ArgumentException(
                $"The payload is {payload.Length} bytes; this channel's MaxMessageSize is {_options.MaxMessageSize}. Nothing was sent.",
                nameof(payload));
        if (fds.Length > _options.MaxFdsPerMessage)
            throw new ArgumentException(
                $"{fds.Length} descriptors were given; this channel's MaxFdsPerMessage is {_options.MaxFdsPerMessage}. Nothing was sent; send them in several messages.",
                nameof(fds));
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled(cancellationToken);
        return SendCoreAsync(payload, fds, cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendCoreAsync(ReadOnlyMemory<byte> payload, ReadOnlyMemory<Descriptor> fds,
                                          CancellationToken cancellationToken)
    {
        ThrowIfUnusable();
        try
        {
            await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_disposed && !cancellationToken.IsCancellationRequested)
        {
            throw Disposed();
        }
        byte[]? rented = null;
        try
        {
            ThrowIfUnusable();
            int total = FrameHeader.Size + payload.Length;
            ReadOnlyMemory<byte> first;
            ReadOnlyMemory<byte> rest = default;
            if (!_isStream || payload.Length <= CopyThreshold)
            {
                rented = ArrayPool<byte>.Shared.Rent(total);
                FrameHeader.Write(rented, payload.Length, fds.Length);
                payload.Span.CopyTo(rented.AsSpan(FrameHeader.Size));
                first = new ReadOnlyMemory<byte>(rented, 0, total);
            }
            else
            {
                FrameHeader.Write(_sendHeader, payload.Length, fds.Length);
                first = _sendHeader;
                rest = payload;
            }

            // The first chunk carries the descriptors. Until it is out nothing is sent, so the
            // caller's cancellation may stop the wait.
            if (!AsyncFdCore.TrySend(_socket, first, fds, out int sent))
                sent = await SendFirstChunkAsync(first, fds, cancellationToken).ConfigureAwait(false);

            if (!_isStream)
            {
                if (sent != total)
                    throw new IOException($"The socket sent {sent} of a {total}-byte datagram frame.");
                return;
            }
            // The frame has started: finish it whatever the caller's token says.
            try
            {
                if (sent < first.Length)
                    await AsyncFdCore.SendRestAsync(_socket, first, sent, _disposeCts.Token).ConfigureAwait(false);
                if (!rest.IsEmpty)
                    await AsyncFdCore.SendRestAsync(_socket, rest, 0, _disposeCts.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not FdChannelProtocolException)
            {
                if (_disposed)
                    throw Disposed();
                var broken = new IOException(
                    "The connection failed in the middle of sending a message, so the peer cannot know where the next one begins. " +
                    "The channel is faulted: dispose it and reconnect. " + e.Message, e);
                SetFault(broken);
                throw broken;
            }
        }
        catch (Exception e) when (_disposed && e is not ObjectDisposedException)
        {
            throw Disposed();
        }
        finally
        {
            if (rented is not null)
                ArrayPool<byte>.Shared.Return(rented);
            _sendLock.Release();
        }
    }

    private async ValueTask<int> SendFirstChunkAsync(ReadOnlyMemory<byte> first, ReadOnlyMemory<Descriptor> fds,
                                                     CancellationToken cancellationToken)
    {
        CancellationTokenSource? linked = Link(cancellationToken, out CancellationToken token);
        try
        {
            return await AsyncFdCore.SendFirstChunkAsync(_socket, first, fds, token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_disposed && !cancellationToken.IsCancellationRequested)
        {
            throw Disposed();
        }
        finally
        {
            linked?.Dispose();
        }
    }

    // ---- Receiving --------------------------------------------------------------------------

    /// <summary>
    /// Receives the next message. Dispose it (<c>using</c>): it owns its payload buffer and
    /// descriptors.
    /// </summary>
    /// <param name="cancellationToken">Cancels the wait. Nothing is lost: a frame that was
    /// partly read is continued by the next receive, its descriptors kept meanwhile.</param>
    /// <returns>The message, exactly as the peer sent it.</returns>
    /// <exception cref="EndOfStreamException">The peer closed the connection at a message
    /// boundary (stream and seqpacket sockets), or sent a zero-byte seqpacket record;
    /// <see cref="ReadAllAsync"/> ends there instead.</exception>
    /// <exception cref="FdMessageRejectedException">The message broke this side's limits, or
    /// its descriptors were dropped by the kernel; it was discarded whole and the channel stays
    /// usable.</exception>
    /// <exception cref="FdChannelProtocolException">The peer broke the wire format; the frame's
    /// descriptors were closed. On a stream socket the channel is faulted; on a seqpacket or
    /// datagram socket only that record was lost, and the channel stays usable.</exception>
    /// <exception cref="OperationCanceledException">Cancelled (nothing lost).</exception>
    /// <exception cref="ObjectDisposedException">The channel is disposed.</exception>
    /// <exception cref="SocketException">The socket failed.</exception>
    /// <exception cref="OutOfMemoryException">No memory for the payload's next buffer. Reported
    /// as itself, never as a connection failure: nothing was read for it, the channel is not
    /// faulted, and the next receive continues the frame.</exception>
    public ValueTask<FdMessage> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled<FdMessage>(cancellationToken);
        ValueTask<FdMessage?> pending = ReceiveOrEndAsync(cancellationToken);
        if (pending.IsCompletedSuccessfully)
        {
            FdMessage? message = pending.Result;
            return message is not null
                ? new ValueTask<FdMessage>(message)
                : ValueTask.FromException<FdMessage>(EndOfStream());
        }
        return AwaitMessage(pending);

        static async ValueTask<FdMessage> AwaitMessage(ValueTask<FdMessage?> pending) =>
            await pending.ConfigureAwait(false) ?? throw EndOfStream();
    }

    /// <summary>
    /// Receives messages until the peer closes the connection at a message boundary (on a
    /// datagram socket, which has no end, until cancelled). Dispose each message.
    /// </summary>
    /// <param name="cancellationToken">Cancels the wait for the next message
    /// (<see cref="OperationCanceledException"/>; nothing is lost).</param>
    /// <returns>The messages, in the order they were sent.</returns>
    /// <exception cref="FdMessageRejectedException">See <see cref="ReceiveAsync"/>; the
    /// enumeration ends with it, but the channel stays usable.</exception>
    /// <exception cref="FdChannelProtocolException">The peer broke the wire format (see
    /// <see cref="ReceiveAsync"/>; the enumeration ends with it).</exception>
    public async IAsyncEnumerable<FdMessage> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (true)
        {
            FdMessage? message = await ReceiveOrEndAsync(cancellationToken).ConfigureAwait(false);
            if (message is null)
                yield break;
            yield return message;
        }
    }

    /// <summary>The next message, or null at a clean end of the connection.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<FdMessage?> ReceiveOrEndAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfUnusable();
        try
        {
            await _receiveLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_disposed && !cancellationToken.IsCancellationRequested)
        {
            throw Disposed();
        }
        CancellationTokenSource? linked = null;
        try
        {
            ThrowIfUnusable();
            CancellationToken token = default;
            bool linkedYet = false;
            while (true)
            {
                int peeked = 0;
                if (_isStream)
                {
                    if (TryAdvanceStream(out FdMessage? message))
                        return message;
                }

                if (!linkedYet)
                {
                    linked = Link(cancellationToken, out token);
                    linkedYet = true;
                }
                try
                {
                    if (_isStream && !OperatingSystem.IsWindows())
                    {
                        // The engine thread advances the frame itself whenever the socket is
                        // readable, and hands over the message once it is complete.
                        _rxAttempt ??= new StreamAttempt(this);
                        _rxOperation ??= new PollOperation();
                        FdSendCore.GetHandle(_socket);
                        await ReadinessEngine.Instance.WaitAttemptAsync(_socket, write: false, _rxAttempt,
                                                                        _rxOperation, token).ConfigureAwait(false);
                        return _rxAttempt.Take();
                    }
                    if (_isStream)
                        await AsyncFdCore.WaitReadableAsync(_socket, token).ConfigureAwait(false);
                    else
                        peeked = await _socket.ReceiveAsync(_rxHeader, SocketFlags.Peek, token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (_disposed && !cancellationToken.IsCancellationRequested)
                {
                    throw Disposed();
                }
                catch (SocketException) when (_isStream && !token.IsCancellationRequested)
                {
                    // An error is pending: let the receive report it (or deliver what is left).
                    if (TryAdvanceStream(out FdMessage? message))
                        return message;
                    throw;
                }
                if (!_isStream && TryReceiveDatagram(peeked, out FdMessage? datagram))
                    return datagram;
            }
        }
        catch (Exception e) when (_disposed && e is not ObjectDisposedException)
        {
            throw Disposed();
        }
        finally
        {
            linked?.Dispose();
            _receiveLock.Release();
        }
    }

    /// <summary><see cref="TryAdvanceStream"/> as the readiness engine's attempt; the
    /// receive that waits takes the message (or null at a clean end) afterwards.</summary>
    private sealed class StreamAttempt(FdChannel channel) : IPollAttempt
    {
        private FdMessage? _message;

        public bool TryAttempt() => channel.TryAdvanceStream(out _message);

        internal FdMessage? Take()
        {
            FdMessage? m = _message;
            _message = null;
            return m;
        }
    }

    /// <summary>
    /// Advances the stream frame being received as far as the socket allows without waiting.
    /// True with the message (or null at a clean end of stream) when a frame is complete;
    /// false when the socket has nothing more for now.
    /// </summary>
    private unsafe bool TryAdvanceStream(out FdMessage? message)
    {
        message = null;
        bool midFrame = _rxHeaderGot > 0;
        try
        {
            while (true)
            {
                int n, count;
                ReceiveFlags flags;
                if (_rxHeaderGot == 0)
                {
                    // The first read: at most the header, and with it the frame's descriptors.
                    bool got;
                    fixed (nint* fds = _rxFds)
                        got = FdSendCore.TryReceive(_socket, _rxHeader, fds, FdPassing.MaxFds, out n, out count, out flags);
                    if (!got)
                        return false;
                    if (n == 0)
                    {
                        if (count == 0 && flags == ReceiveFlags.None)
                            return true; // the peer closed at a frame boundary
                        _rxFdCount = count;
                        throw ProtocolError("descriptors arrived without any data");
                    }
                    midFrame = true;
                    _rxFdCount = count;
                    _rxFdsDropped = (flags & ReceiveFlags.FdsTruncated) != 0;
                    _rxHeaderGot = n;
                    CheckHeaderStart();
                    continue;
                }

                if (_rxHeaderGot < FrameHeader.Size)
                {
                    if (!FdSendCore.TryReceive(_socket, _rxHeader.AsSpan(_rxHeaderGot), null, 0, out n, out count, out flags))
                        return false;
                    CheckContinuation(n, count, flags, "header");
                    _rxHeaderGot += n;
                    CheckHeaderStart();
                    continue;
                }

                if (!_rxHeaderDone)
                {
                    FrameHeader header = FrameHeader.Read(_rxHeader);
                    string? problem = header.Problem();
                    if (problem is not null)
                        throw ProtocolError(problem);
                    if (_rxFdsDropped ? _rxFdCount > header.FdCount : _rxFdCount != header.FdCount)
                        throw ProtocolError($"the frame header announces {header.FdCount} descriptors but {_rxFdCount} came with it");
                    _rxFrame = header;
                    _rxHeaderDone = true;
                    _rxDiscard = header.PayloadLength > (uint)_options.MaxMessageSize || _rxFdsDropped ||
                                 header.FdCount > _options.MaxFdsPerMessage;
                    // Nothing is allocated for the payload yet: the header is a promise, and
                    // memory follows the bytes that actually arrive.
                    if (!_rxDiscard)
                        _rxPayload.Start((int)header.PayloadLength);
                    _rxDiscarded = 0;
                }

                if (_rxDiscard)
                {
                    long remaining = _rxFrame.PayloadLength - _rxDiscarded;
                    if (remaining > 0)
                    {
                        byte[] scratch = ArrayPool<byte>.Shared.Rent((int)Math.Min(remaining, DiscardChunk));
                        try
                        {
                            int chunk = (int)Math.Min(remaining, scratch.Length);
                            if (!FdSendCore.TryReceive(_socket, scratch.AsSpan(0, chunk), null, 0, out n, out count, out flags))
                                return false;
                        }
                        finally
                        {
                            ArrayPool<byte>.Shared.Return(scratch);
                        }
                        CheckContinuation(n, count, flags, "payload");
                        _rxDiscarded += n;
                        continue;
                    }
                    throw Rejected(); // the whole frame is in
                }

                if (!_rxPayload.IsComplete)
                {
                    // GetSpace may throw OutOfMemoryException; it does so before this read, so
                    // nothing is consumed and the frame goes on with a later receive.
                    bool got = FdSendCore.TryReceive(_socket, _rxPayload.GetSpace(), null, 0, out n, out count, out flags);
                    _rxPayload.Advance(got ? n : 0); // gives an unused first buffer back
                    if (!got)
                        return false;
                    CheckContinuation(n, count, flags, "payload");
                    continue;
                }

                // The whole frame is in.
                message = TakeMessage(null, 0);
                return true;
            }
        }
        catch (Exception e) when (midFrame && e is not (FdChannelProtocolException or FdMessageRejectedException or OutOfMemoryException))
        {
            // The connection failed inside a frame: its position is lost.
            ResetReceive(closeFds: true);
            var broken = new IOException(
                "The connection failed in the middle of receiving a message; the frame's descriptors were closed. " +
                "The channel is faulted: dispose it and reconnect. " + e.Message, e);
            SetFault(broken);
            throw broken;
        }
    }

    /// <summary>Rejects a bad version or flags byte as soon as it is in, without waiting for
    /// the rest of the header: a peer speaking another protocol (e.g. IO::FDPass's single
    /// zero byte) may never send 8 bytes.</summary>
    private void CheckHeaderStart()
    {
        if (_rxHeader[0] != FrameHeader.Version)
            throw ProtocolError($"the frame header's version byte is {_rxHeader[0]}; this side speaks version {FrameHeader.Version}");
        if (_rxHeaderGot >= 2 && _rxHeader[1] != 0)
            throw ProtocolError($"the frame header's flags byte is 0x{_rxHeader[1]:x2}; no flags are defined");
    }

    /// <summary>Checks a read that continues a started frame: it must bring data, and no
    /// descriptors (they belong to the header's first byte).</summary>
    private void CheckContinuation(int n, int count, ReceiveFlags flags, string part)
    {
        if (n == 0 && count == 0 && flags == ReceiveFlags.None)
            throw ProtocolError($"the connection ended inside a frame's {part}");
        if (count > 0 || (flags & ReceiveFlags.FdsTruncated) != 0)
            throw ProtocolError($"descriptors were attached to a byte of the frame's {part} other than the header's first (they were closed)");
    }

    /// <summary>
    /// Receives one datagram frame after a peek of <paramref name="peeked"/> header bytes into
    /// _rxHeader. False if the datagram was gone (wait again).
    /// </summary>
    private unsafe bool TryReceiveDatagram(int peeked, out FdMessage? message)
    {
        message = null;
        int n, count;
        ReceiveFlags flags;
        FrameHeader header = FrameHeader.Read(_rxHeader);
        if (peeked >= FrameHeader.Size && header.Problem() is null &&
            header.PayloadLength <= (uint)_options.MaxMessageSize)
        {
            int total = FrameHeader.Size + (int)header.PayloadLength;
            byte[] buffer = ArrayPool<byte>.Shared.Rent(total);
            try
            {
                bool got;
                fixed (nint* fds = _rxFds)
                    got = FdSendCore.TryReceive(_socket, buffer.AsSpan(0, total), fds, FdPassing.MaxFds, out n, out count, out flags);
                if (!got)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    return false;
                }
                _rxFdCount = count;
                header = CheckDatagramHeader(buffer, n);
                if ((flags & ReceiveFlags.DataTruncated) != 0 || n - FrameHeader.Size != header.PayloadLength)
                {
                    string held = (flags & ReceiveFlags.DataTruncated) != 0
                        ? "more"
                        : (n - FrameHeader.Size).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    throw ProtocolError($"a datagram frame's header announces {header.PayloadLength} payload bytes but the datagram holds {held}");
                }
                _rxFdsDropped = (flags & ReceiveFlags.FdsTruncated) != 0;
                if (_rxFdsDropped ? count > header.FdCount : count != header.FdCount)
                    throw ProtocolError($"the frame header announces {header.FdCount} descriptors but {count} came with it");
                if (_rxFdsDropped || header.FdCount > _options.MaxFdsPerMessage)
                    throw Rejected();
            }
            catch
            {
                ArrayPool<byte>.Shared.Return(buffer);
                throw;
            }
            message = TakeMessage(buffer, FrameHeader.Size);
            return true;
        }

        // Malformed, too large, or shorter than a header (or the end of a seqpacket
        // connection): consume the datagram with a header-sized buffer, which closes its
        // descriptors and discards the rest.
        bool consumed;
        fixed (nint* fds = _rxFds)
            consumed = FdSendCore.TryReceive(_socket, _rxHeader, fds, FdPassing.MaxFds, out n, out count, out flags);
        if (!consumed)
            return false;
        _rxFdCount = count;
        if (n == 0 && count == 0 && flags == ReceiveFlags.None && _isSeqpacket)
            return true; // the end of the connection
        header = CheckDatagramHeader(_rxHeader, n);
        _rxFdsDropped = (flags & ReceiveFlags.FdsTruncated) != 0;
        // A protocol error wins over "too large" (docs/wire-format.md section 5), as above.
        if (_rxFdsDropped ? count > header.FdCount : count != header.FdCount)
            throw ProtocolError($"the frame header announces {header.FdCount} descriptors but {count} came with it");
        if (header.PayloadLength > (uint)_options.MaxMessageSize)
            throw Rejected();
        if (n == FrameHeader.Size && header.PayloadLength == 0 && (flags & ReceiveFlags.DataTruncated) == 0 &&
            !_rxFdsDropped && count == header.FdCount && count <= _options.MaxFdsPerMessage)
        {
            message = TakeMessage(null, 0); // an empty message after all
            return true;
        }
        // Only possible if something else reads this socket behind the channel's back: the
        // datagram that was peeked is not the one that was received.
        ResetReceive(closeFds: true);
        throw new IOException(
            "A datagram changed between the channel's peek and its receive: something else is reading this socket. " +
            "That message was lost and its descriptors closed. Do not read a channel's socket directly.");
    }

    /// <summary>The valid header at the start of a received datagram of <paramref name="n"/>
    /// bytes (it becomes the frame being received); a protocol error if the datagram is shorter
    /// than a header or the header is malformed.</summary>
    private FrameHeader CheckDatagramHeader(ReadOnlySpan<byte> datagram, int n)
    {
        if (n < FrameHeader.Size)
            throw ProtocolError($"a datagram of {n} bytes is shorter than a frame header");
        FrameHeader header = FrameHeader.Read(datagram);
        _rxFrame = header;
        string? problem = header.Problem();
        if (problem is not null)
            throw ProtocolError(problem);
        return header;
    }

    /// <summary>Hands the completed frame out as a message; the receive state forgets it. A
    /// stream frame's payload comes from the receive state, a datagram's in
    /// <paramref name="buffer"/> at <paramref name="offset"/> (null: empty).</summary>
    private FdMessage TakeMessage(byte[]? buffer, int offset)
    {
        var fds = new ReceivedFds(new ReadOnlySpan<nint>(_rxFds, 0, _rxFdCount), (int)_rxFrame.PayloadLength,
                                  ReceiveFlags.None, isEndOfStream: false);
        // Nothing below can throw: the descriptors now belong to the message.
        _rxFdCount = 0;
        if (_isStream)
            buffer = _rxPayload.Take();
        var message = buffer is null
            ? new FdMessage(Array.Empty<byte>(), 0, 0, pooled: false, fds)
            : new FdMessage(buffer, offset, (int)_rxFrame.PayloadLength, pooled: true, fds);
        ResetReceive(closeFds: false);
        return message;
    }

    private FdMessageRejectedException Rejected()
    {
        FrameHeader h = _rxFrame;
        bool dropped = _rxFdsDropped;
        ResetReceive(closeFds: true);
        return dropped
            ? new FdMessageRejectedException(FdMessageRejectReason.FdsDropped, h.PayloadLength, h.FdCount,
                $"A message arrived whose {h.FdCount} descriptors the kernel could not all install (this process is at its open-file limit, RLIMIT_NOFILE, or a security module refused one). " +
                "The message was discarded and the descriptors that did arrive were closed; the channel is still usable. Close descriptors you no longer need or raise the limit (ulimit -n).")
            : h.PayloadLength > (uint)_options.MaxMessageSize
                ? new FdMessageRejectedException(FdMessageRejectReason.PayloadTooLarge, h.PayloadLength, h.FdCount,
                    $"A message of {h.PayloadLength} bytes arrived; this channel's MaxMessageSize is {_options.MaxMessageSize}. " +
                    "It was read and discarded, and its descriptors were closed; the channel is still usable.")
                : new FdMessageRejectedException(FdMessageRejectReason.TooManyFds, h.PayloadLength, h.FdCount,
                    $"A message with {h.FdCount} descriptors arrived; this channel's MaxFdsPerMessage is {_options.MaxFdsPerMessage}. " +
                    "It was discarded and its descriptors were closed; the channel is still usable.");
    }

    /// <summary>A frame that breaks the format: its descriptors are closed. On a stream the
    /// position of the next frame is lost, so the channel is faulted; a seqpacket record or
    /// datagram stands alone, so it is dropped and the next one is read normally (as
    /// fdsend_msg_recv does, docs/wire-format.md section 4).</summary>
    private FdChannelProtocolException ProtocolError(string what)
    {
        ResetReceive(closeFds: true);
        if (!_isStream)
        {
            return new FdChannelProtocolException(
                $"The peer broke the FdSend channel wire format: {what}. That record was dropped and its descriptors were closed; " +
                "every record stands alone, so the channel is still usable: receive the next message.");
        }
        var e = new FdChannelProtocolException(
            $"The peer broke the FdSend channel wire format: {what}. Every descriptor of that frame was closed. " +
            "The channel is faulted: dispose it and close the connection.");
        SetFault(e);
        return e;
    }

    /// <summary>Forgets the frame being received; closes its descriptors if asked.</summary>
    private void ResetReceive(bool closeFds)
    {
        if (closeFds && _rxFdCount > 0)
            FdSendCore.CloseAll(new ReadOnlySpan<nint>(_rxFds, 0, _rxFdCount));
        _rxFdCount = 0;
        _rxPayload.Reset();
        _rxHeaderGot = 0;
        _rxHeaderDone = false;
        _rxFdsDropped = false;
        _rxDiscard = false;
        _rxDiscarded = 0;
        _rxFrame = default;
    }

    // ---- State ------------------------------------------------------------------------------

    /// <summary>
    /// Disposes the channel: pending and later calls throw <see cref="ObjectDisposedException"/>,
    /// descriptors of a partly received frame are closed, and the socket is closed (unless
    /// <see cref="FdChannelOptions.LeaveOpen"/>), so the peer sees the end of the connection
    /// at a message boundary. A frame being sent is aborted only together with the socket.
    /// Completes once pending calls have let go of the channel. Safe to call more than once, and
    /// together with or after <see cref="Dispose"/>: only the first call does the work (a later
    /// one returns at once).
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (!BeginDispose())
            return;
        await _sendLock.WaitAsync().ConfigureAwait(false);
        await _receiveLock.WaitAsync().ConfigureAwait(false);
        EndDispose();
    }

    /// <summary>
    /// Disposes the channel synchronously: does what <see cref="DisposeAsync"/> does, blocking
    /// the calling thread (briefly: pending calls are cancelled first) until pending calls have
    /// let go of the channel. Safe to call more than once, and together with or after
    /// <see cref="DisposeAsync"/>: only the first call does the work (a later one returns at
    /// once).
    /// </summary>
    public void Dispose()
    {
        if (!BeginDispose())
            return;
        _sendLock.Wait();
        _receiveLock.Wait();
        EndDispose();
    }

    /// <summary>Marks the channel disposed, cancels pending waits and closes the socket (unless
    /// LeaveOpen). False if another Dispose/DisposeAsync call got here first.</summary>
    private bool BeginDispose()
    {
        if (Interlocked.Exchange(ref _disposeStarted, 1) != 0)
            return false;
        _disposed = true;
        _disposeCts.Cancel();
        if (!_options.LeaveOpen)
            _socket.Dispose();
        return true;
    }

    /// <summary>With both locks held: closes the descriptors of a partly received frame, then
    /// lets the calls queued on the locks run into the disposed check.</summary>
    private void EndDispose()
    {
        ResetReceive(closeFds: true);
        _receiveLock.Release();
        _sendLock.Release();
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"FdChannel {{ {_socket.SocketType}, MaxMessageSize = {_options.MaxMessageSize}, MaxFdsPerMessage = {_options.MaxFdsPerMessage}" +
        $"{(_disposed ? ", disposed" : (Fault is not null ? ", faulted" : ""))} }}";

    private CancellationTokenSource? Link(CancellationToken cancellationToken, out CancellationToken token)
    {
        if (!cancellationToken.CanBeCanceled)
        {
            token = _disposeCts.Token;
            return null;
        }
        var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposeCts.Token);
        token = linked.Token;
        return linked;
    }

    private void SetFault(Exception e) =>
        Interlocked.CompareExchange(ref _fault, ExceptionDispatchInfo.Capture(e), null);

    private void ThrowIfUnusable()
    {
        if (_disposed)
            throw Disposed();
        Volatile.Read(ref _fault)?.Throw();
    }

    private ObjectDisposedException Disposed() =>
        new(nameof(FdChannel), "The channel has been disposed.");

    private static EndOfStreamException EndOfStream() =>
        new("The peer closed the channel at a message boundary: there are no more messages.");
}
