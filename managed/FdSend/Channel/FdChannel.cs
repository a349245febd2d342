// SPDX-License-Identifier: MIT
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
/// message). Nothing blocks a thread: receives and sends that must wait do so on FdSend's
/// readiness engine (see <see cref="SocketFdAsyncExtensions"/>; on Windows a record is waited
/// for with .NET's zero-byte receive).</para>
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
/// <para>Windows: over a connected stream socket (TCP loopback or AF_UNIX), each frame as
/// libfdsend records, its handles in the record that carries its first byte
/// (docs/windows-protocol.md, "The message channel"); everything above holds as for a stream
/// socket.</para>
/// </remarks>
public sealed class FdChannel : IAsyncDisposable, IDisposable
{
    private readonly Socket _socket;
    private readonly FdChannelOptions _options;
    private readonly bool _isStream;
    private readonly ChannelGate _sendGate = new();
    private readonly ChannelGate _receiveGate = new();
    private readonly CancellationTokenSource _disposeCts = new();
    private ExceptionDispatchInfo? _fault;
    private volatile bool _disposed;
    private int _disposeStarted; // 1 once Dispose or DisposeAsync has begun (Interlocked)

    // Guarded by _sendGate.
    private readonly FrameWriter _writer = new();

    // Guarded by _receiveGate: the frame being received, owned by one of the two readers (the
    // other is null). On a stream a frame can be received over several calls (cancellation
    // keeps it), its descriptors held by the reader until the message is handed out.
    private readonly StreamFrameReader? _stream;
    private readonly RecordFrameReader? _records;
    private Interop.RecvState _recvState; // Windows: the stream's read position inside a record
    private StreamAttempt? _rxAttempt; // the stream receive, retried on the readiness engine's thread
    private PollOperation? _rxOperation; // reused: receives are serialized by _receiveGate

    /// <summary>
    /// Creates a channel over a connected Unix domain socket. The socket may be blocking or
    /// not; the channel never blocks a thread on it.
    /// </summary>
    /// <param name="socket">A connected Unix socket of type Stream, Seqpacket or Dgram (a
    /// datagram socket connected to its peer). On Windows, a connected Stream socket (TCP
    /// loopback or AF_UNIX), whose every write is a libfdsend record. Owned by the channel from now on unless
    /// <see cref="FdChannelOptions.LeaveOpen"/> is set.</param>
    /// <param name="options">Limits and ownership; null for the defaults.</param>
    /// <exception cref="ArgumentNullException"><paramref name="socket"/> is null.</exception>
    /// <exception cref="ArgumentException">The socket is not a Unix domain socket, or its type
    /// is not Stream, Seqpacket or Dgram; on Windows, the socket is not a Stream socket.</exception>
    /// <exception cref="ObjectDisposedException">The socket is disposed.</exception>
    public FdChannel(Socket socket, FdChannelOptions? options = null)
    {
        FdSendCore.GetHandle(socket);
        if (OperatingSystem.IsWindows())
        {
            // libfdsend's record protocol carries the handles, over any connected stream socket.
            if (socket.SocketType != SocketType.Stream)
                throw ChannelErrors.WindowsNotStream(socket.SocketType);
        }
        else
        {
            if (socket.AddressFamily != AddressFamily.Unix)
                throw ChannelErrors.NotUnix(socket.AddressFamily);
            if (socket.SocketType is not (SocketType.Stream or SocketType.Seqpacket or SocketType.Dgram))
                throw ChannelErrors.WrongType(socket.SocketType);
        }
        _socket = socket;
        _options = options ?? new FdChannelOptions();
        _isStream = socket.SocketType == SocketType.Stream;
        if (_isStream)
            _stream = new StreamFrameReader(_options);
        else
            _records = new RecordFrameReader(_options, seqpacket: socket.SocketType == SocketType.Seqpacket);
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
            throw ChannelErrors.PayloadTooLarge(payload.Length, _options.MaxMessageSize);
        if (fds.Length > _options.MaxFdsPerMessage)
            throw ChannelErrors.TooManyFds(fds.Length, _options.MaxFdsPerMessage);
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled(cancellationToken);

        // A send that needs no wait (the gate free, room in the socket for the first chunk)
        // completes here, without an async state machine; one that must wait, or has more of
        // its frame to send, goes on in SendCoreAsync holding the gate.
        if (_disposed || Volatile.Read(ref _fault) is not null || !_sendGate.TryEnter())
            return SendCoreAsync(payload, fds, NotEntered, cancellationToken);
        try
        {
            int sent = TrySendFirst(payload, fds);
            ReadOnlyMemory<byte> first = _writer.First;
            if (sent == NothingSent)
                return SendCoreAsync(payload, fds, NothingSent, cancellationToken); // keeps the gate
            if (_isStream && (sent < first.Length || !_writer.Rest.IsEmpty))
                return SendCoreAsync(payload, fds, sent, cancellationToken); // keeps the gate
            if (!_isStream && sent != first.Length)
                throw ChannelErrors.DatagramCut(sent, first.Length);
        }
        catch (Exception e)
        {
            _writer.Release();
            _sendGate.Exit();
            return ValueTask.FromException(_disposed && e is not ObjectDisposedException ? ChannelErrors.Disposed() : e);
        }
        _writer.Release();
        _sendGate.Exit();
        return default;
    }

    // SendCoreAsync's start: the gate not entered yet, or entered with the frame laid out and
    // nothing sent (the socket had no room); a count >= 0 is the bytes of the first chunk sent.
    private const int NotEntered = -2, NothingSent = -1;

    /// <summary>With the send gate held: lays the frame out and makes one attempt at its first
    /// chunk (the one with the descriptors). Returns the bytes of it sent, or
    /// <see cref="NothingSent"/> when the socket has no room.</summary>
    private int TrySendFirst(ReadOnlyMemory<byte> payload, ReadOnlyMemory<Descriptor> fds)
    {
        ThrowIfUnusable();
        _writer.Layout(payload, fds.Length, _isStream);
        return AsyncFdCore.TrySend(_socket, _writer.First, fds, out int sent) ? sent : NothingSent;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendCoreAsync(ReadOnlyMemory<byte> payload, ReadOnlyMemory<Descriptor> fds,
                                          int start, CancellationToken cancellationToken)
    {
        if (start == NotEntered)
        {
            ThrowIfUnusable();
            if (!_sendGate.TryEnter())
                await EnterAsync(_sendGate, cancellationToken).ConfigureAwait(false);
        }
        try
        {
            int sent = start == NotEntered ? TrySendFirst(payload, fds) : start;
            ReadOnlyMemory<byte> first = _writer.First;

            // The first chunk carries the descriptors. Until it is out nothing is sent, so the
            // caller's cancellation may stop the wait.
            if (sent == NothingSent)
                sent = await SendFirstChunkAsync(first, fds, cancellationToken).ConfigureAwait(false);

            if (!_isStream)
            {
                if (sent != first.Length)
                    throw ChannelErrors.DatagramCut(sent, first.Length);
                return;
            }
            if (sent < first.Length || !_writer.Rest.IsEmpty)
                await SendRestOfFrameAsync(first, sent).ConfigureAwait(false);
        }
        catch (Exception e) when (_disposed && e is not ObjectDisposedException)
        {
            throw ChannelErrors.Disposed();
        }
        finally
        {
            _writer.Release();
            _sendGate.Exit();
        }
    }

    /// <summary>The frame has started: finishes it whatever the caller's token says (only
    /// disposal aborts it, with the socket). A failure faults the channel.</summary>
    private async ValueTask SendRestOfFrameAsync(ReadOnlyMemory<byte> first, int sent)
    {
        try
        {
            if (sent < first.Length)
                await AsyncFdCore.SendRestAsync(_socket, first, sent, _disposeCts.Token).ConfigureAwait(false);
            if (!_writer.Rest.IsEmpty)
                await AsyncFdCore.SendRestAsync(_socket, _writer.Rest, 0, _disposeCts.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not FdChannelProtocolException)
        {
            if (_disposed)
                throw ChannelErrors.Disposed();
            IOException broken = ChannelErrors.BrokenInsideFrame(e, sending: true);
            SetFault(broken);
            throw broken;
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
            throw ChannelErrors.Disposed();
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
    /// datagram socket only that record was lost, and the channel stays usable. Windows: also
    /// a record libfdsend refused (not a record, or its sender check failed: the refusal's
    /// exception is the inner one); no handle of it was taken and the channel is
    /// faulted.</exception>
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
        return ReceiveNextAsync(endIsError: true, cancellationToken)!;
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
            cancellationToken.ThrowIfCancellationRequested();
            FdMessage? message = await ReceiveNextAsync(endIsError: false, cancellationToken).ConfigureAwait(false);
            if (message is null)
                yield break;
            yield return message;
        }
    }

    /// <summary>The next message; at a clean end of the connection
    /// <see cref="EndOfStreamException"/> if <paramref name="endIsError"/>, else null.</summary>
    private ValueTask<FdMessage?> ReceiveNextAsync(bool endIsError, CancellationToken cancellationToken)
    {
        // A stream receive that needs no wait (the gate free, a whole frame read ahead or in
        // the socket) completes here, without an async state machine: the common case of a
        // receiver that keeps up with its peer costs no more than the attempt itself.
        if (!_isStream || _disposed || Volatile.Read(ref _fault) is not null || !_receiveGate.TryEnter())
            return ReceiveCoreAsync(endIsError, entered: false, ReadinessEngine.NotObserved, cancellationToken);
        FdMessage? message;
        try
        {
            if (!TryReceiveStream(out long observed, out message))
                return ReceiveCoreAsync(endIsError, entered: true, observed, cancellationToken); // keeps the gate
        }
        catch (Exception e)
        {
            _receiveGate.Exit();
            return ValueTask.FromException<FdMessage?>(_disposed && e is not ObjectDisposedException ? ChannelErrors.Disposed() : e);
        }
        _receiveGate.Exit();
        return message is null && endIsError
            ? ValueTask.FromException<FdMessage?>(ChannelErrors.EndOfStream())
            : new ValueTask<FdMessage?>(message);
    }

    /// <summary>With the receive gate held, on a stream socket: one attempt at the next message
    /// (from the bytes read ahead, then the socket). <paramref name="observed"/> is the engine's
    /// readable-report count from before the attempt: a wait that follows retries only if a
    /// report came since.</summary>
    private bool TryReceiveStream(out long observed, out FdMessage? message)
    {
        ThrowIfUnusable();
        observed = ReadinessEngine.ObserveReadable(_socket);
        return TryAdvanceStream(out message);
    }

    /// <summary><see cref="ReceiveNextAsync"/> that may wait. With <paramref name="entered"/>
    /// the caller holds the receive gate (passed to this call, which releases it) and has just
    /// found the stream socket empty, so the receive waits at once; <paramref name="observed"/>
    /// is <see cref="ReadinessEngine.ObserveReadable"/> from before that attempt.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<FdMessage?> ReceiveCoreAsync(bool endIsError, bool entered, long observed,
                                                         CancellationToken cancellationToken)
    {
        if (!entered)
        {
            ThrowIfUnusable();
            if (!_receiveGate.TryEnter())
                await EnterAsync(_receiveGate, cancellationToken).ConfigureAwait(false);
        }
        CancellationTokenSource? linked = null;
        try
        {
            FdMessage? message = null;
            if (_isStream)
            {
                // Try the socket first (unless the caller just did); only when it has nothing
                // does the receive wait, and then the engine thread advances the frame itself
                // whenever the socket is readable, handing over the message once it is complete.
                if (entered || !TryReceiveStream(out observed, out message))
                {
                    linked = Link(cancellationToken, out CancellationToken token);
                    if (OperatingSystem.IsWindows())
                    {
                        message = await ReceiveStreamWindowsAsync(cancellationToken, token).ConfigureAwait(false);
                    }
                    else
                    {
                        _rxAttempt ??= new StreamAttempt(this);
                        _rxOperation ??= new PollOperation();
                        try
                        {
                            FdSendCore.GetHandle(_socket);
                            await ReadinessEngine.Instance.WaitAttemptAsync(_socket, write: false, _rxAttempt,
                                                                            _rxOperation, token, observed).ConfigureAwait(false);
                        }
                        catch (OperationCanceledException) when (_disposed && !cancellationToken.IsCancellationRequested)
                        {
                            throw ChannelErrors.Disposed();
                        }
                        message = _rxAttempt.Take();
                    }
                }
            }
            else
            {
                ThrowIfUnusable(); // disposed or faulted while this call waited for the gate?
                linked = Link(cancellationToken, out CancellationToken token);
                message = await ReceiveRecordAsync(cancellationToken, token).ConfigureAwait(false);
            }
            return message is null && endIsError ? throw ChannelErrors.EndOfStream() : message;
        }
        catch (Exception e) when (_disposed && e is not ObjectDisposedException)
        {
            throw ChannelErrors.Disposed();
        }
        finally
        {
            linked?.Dispose();
            _receiveGate.Exit();
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

    /// <summary>Windows: waits for the next record (<see cref="AsyncFdCore.WaitRecordAsync"/>)
    /// and advances the frame with it, until a frame is complete. A failed wait is reported by
    /// the receive that follows it, in FdSend's terms (a connection that failed inside a frame
    /// faults the channel, as on POSIX).</summary>
    private async ValueTask<FdMessage?> ReceiveStreamWindowsAsync(CancellationToken cancellationToken, CancellationToken token)
    {
        for (int round = 0; ; round++)
        {
            SocketException? waitFailed = null;
            try
            {
                await AsyncFdCore.WaitRecordAsync(_socket, round, token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_disposed && !cancellationToken.IsCancellationRequested)
            {
                throw ChannelErrors.Disposed();
            }
            catch (SocketException e) when (!token.IsCancellationRequested)
            {
                waitFailed = e; // an error is pending: the receive below reports it in FdSend's terms
            }
            if (TryAdvanceStream(out FdMessage? message))
                return message;
            if (waitFailed is not null)
            {
                // The receive found nothing to report: the wait's error stands (and inside a
                // frame it loses the stream's position, as a failed read does).
                if (!_stream!.InFrame)
                    ExceptionDispatchInfo.Throw(waitFailed);
                throw ReceiveBrokeInsideFrame(waitFailed);
            }
        }
    }

    /// <summary>
    /// Advances the stream frame being received as far as the socket allows without waiting:
    /// the reads <see cref="StreamFrameReader"/> asks for, fed back to it. True with the message
    /// (or null at a clean end of stream) when a frame is complete; false when the socket has
    /// nothing more for now.
    /// </summary>
    private unsafe bool TryAdvanceStream(out FdMessage? message)
    {
        StreamFrameReader reader = _stream!;
        while (true)
        {
            // Bytes read ahead by an earlier read come first (they may hold whole frames).
            try
            {
                if (reader.TryBuffered(out message))
                    return true;
            }
            catch (FdChannelProtocolException e)
            {
                SetFault(e); // the next frame's position is lost
                throw;
            }
            // May throw OutOfMemoryException before the read: nothing consumed, no fault.
            Span<byte> into = reader.NextRead(out int maxFds);
            long n;
            int count;
            ReceiveFlags flags;
            try
            {
                // Windows: the codec's reads take records in pieces, so the read position
                // inside a record is kept in this channel's state (libfdsend keeps none).
                fixed (nint* fds = reader.FdBuffer)
                fixed (Interop.RecvState* state = &_recvState)
                    n = FdSendCore.Receive(_socket, into, fds, maxFds, out count, out flags, out _,
                                           mayBlock: false, OperatingSystem.IsWindows() ? state : null);
            }
            catch (Exception e) // the socket was disposed: nothing read
            {
                reader.NothingRead();
                if (reader.ReadStartsFrame)
                    throw;
                throw ReceiveBrokeInsideFrame(e);
            }
            if (n < 0)
            {
                reader.NothingRead();
                if (n == (long)Interop.Status.EAGAIN)
                {
                    message = null;
                    return false;
                }
                Exception e = FdSendCore.ReceiveFailed(_socket, n);
                if (Interop.RecvRefused(n) != 0)
                    throw RecordRefused(n, e);
                if (reader.ReadStartsFrame)
                    throw e;
                throw ReceiveBrokeInsideFrame(e);
            }
            try
            {
                if (reader.OnRead((int)n, count, flags, out message))
                    return true;
            }
            catch (FdChannelProtocolException e)
            {
                SetFault(e); // the next frame's position is lost
                throw;
            }
        }
    }

    /// <summary>libfdsend refused the record at the stream's read position (its code
    /// <paramref name="status"/>, fdsend_recv_refused: Windows only; <paramref name="cause"/>
    /// its exception): no handle of it was taken and its data stays unread, so nothing can be
    /// read past it. Closes the frame's descriptors and faults the channel, as the C channel
    /// breaks; returns the exception to throw.</summary>
    private FdChannelProtocolException RecordRefused(long status, Exception cause)
    {
        _stream!.Reset();
        FdChannelProtocolException refused = ChannelErrors.RecordRefused(status, cause);
        SetFault(refused);
        return refused;
    }

    /// <summary>The connection failed inside a stream frame: its position is lost. Closes the
    /// frame's descriptors and faults the channel; returns the exception to throw.</summary>
    private IOException ReceiveBrokeInsideFrame(Exception cause)
    {
        _stream!.Reset();
        IOException broken = ChannelErrors.BrokenInsideFrame(cause, sending: false);
        SetFault(broken);
        return broken;
    }

    /// <summary>One seqpacket record or datagram: peeks at its header (fdsend_peek, which
    /// consumes nothing), then receives it whole into the buffer the reader chooses; waits for
    /// a record on the readiness engine.</summary>
    private async ValueTask<FdMessage?> ReceiveRecordAsync(CancellationToken cancellationToken, CancellationToken token)
    {
        while (true)
        {
            if (FdSendCore.TryPeek(_socket, _records!.PeekBuffer.Span, out int peeked) &&
                TryReceiveRecord(peeked, out FdMessage? message))
                return message;
            try
            {
                await AsyncFdCore.WaitReadableAsync(_socket, token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_disposed && !cancellationToken.IsCancellationRequested)
            {
                throw ChannelErrors.Disposed();
            }
            catch (SocketException) when (!token.IsCancellationRequested)
            {
                // An error is pending: the next peek reports it in FdSend's terms.
            }
        }
    }

    /// <summary>Receives the record just peeked at; false if it was gone (wait again).</summary>
    private unsafe bool TryReceiveRecord(int peeked, out FdMessage? message)
    {
        RecordFrameReader reader = _records!;
        Span<byte> into = reader.PrepareReceive(peeked);
        bool got;
        int n, count;
        ReceiveFlags flags;
        try
        {
            fixed (nint* fds = reader.FdBuffer)
                got = FdSendCore.TryReceive(_socket, into, fds, FdPassing.MaxFds, out n, out count, out flags);
        }
        catch
        {
            reader.NothingRead();
            throw;
        }
        if (!got)
        {
            reader.NothingRead();
            message = null;
            return false;
        }
        message = reader.OnRecord(n, count, flags);
        return true;
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
        await _sendGate.EnterAsync(CancellationToken.None).ConfigureAwait(false);
        await _receiveGate.EnterAsync(CancellationToken.None).ConfigureAwait(false);
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
        _sendGate.Enter();
        _receiveGate.Enter();
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

    /// <summary>With both gates held: closes the descriptors of a partly received frame, then
    /// lets the calls waiting at the gates run into the disposed check.</summary>
    private void EndDispose()
    {
        _stream?.Reset();
        _records?.Reset();
        _receiveGate.Exit();
        _sendGate.Exit();
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"FdChannel {{ {_socket.SocketType}, MaxMessageSize = {_options.MaxMessageSize}, MaxFdsPerMessage = {_options.MaxFdsPerMessage}" +
        $"{(_disposed ? ", disposed" : (Fault is not null ? ", faulted" : ""))} }}";

    /// <summary>Waits at <paramref name="gate"/> (the caller's token cancels the wait).</summary>
    private async ValueTask EnterAsync(ChannelGate gate, CancellationToken cancellationToken)
    {
        try
        {
            await gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_disposed && !cancellationToken.IsCancellationRequested)
        {
            throw ChannelErrors.Disposed();
        }
    }

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
            throw ChannelErrors.Disposed();
        Volatile.Read(ref _fault)?.Throw();
    }
}
