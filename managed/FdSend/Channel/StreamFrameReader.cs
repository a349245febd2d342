// SPDX-License-Identifier: MIT
using System.Buffers;

namespace FdSend;

/// <summary>
/// Receives stream frames without touching a socket: it says where the next read goes
/// (<see cref="NextRead"/>) and is told what that read returned (<see cref="OnRead"/>); the
/// rules (how much to read, what each read means) are libfdsend's codec
/// (<c>fdsend_frame_reader_*</c>), whose 56-byte state this object holds. What it owns besides:
/// the header bytes, the frame's descriptors until they are handed out in an
/// <see cref="FdMessage"/> or closed, the payload's memory (<see cref="PayloadAssembler"/>: it
/// grows with the bytes that arrive) and a scratch buffer for payloads being discarded.
/// </summary>
/// <remarks>
/// <para>Not thread-safe: the channel's receive lock guards it. A frame may span any number
/// of <see cref="OnRead"/> calls, and any time between them (a cancelled receive keeps it).</para>
/// <para>Read-ahead (where the codec allows it, fdsend_frame_ahead_size: Linux;
/// docs/wire-format.md 4.1): at a frame boundary with nothing held it
/// asks for a whole buffer (<see cref="AheadSize"/> bytes) instead of the 8 header bytes, so a
/// message usually costs one receive instead of two; the bytes past the frame are held for the
/// next receives (<see cref="TryBuffered"/>), and the read's descriptors go to the frame the
/// codec assigns them to. Elsewhere every read is exactly what the codec asks for.</para>
/// </remarks>
internal sealed unsafe class StreamFrameReader
{
    private const int DiscardChunk = 64 * 1024;
    /// <summary>How much a read at a frame boundary asks for where reading ahead is safe: the
    /// codec's rule (fdsend_frame_ahead_size: 4096 on Linux, 0 elsewhere), asked once.</summary>
    internal static readonly int AheadSize = Interop.FrameAheadSize();
    private const int AheadPart = -1; // _part of a read-ahead read

    private readonly FdChannelOptions _options;
    private Interop.FrameReader _codec;
    private readonly byte[] _header = new byte[FrameHeader.Size];
    private readonly nint[] _fds = new nint[FdPassing.MaxFds];
    private readonly PayloadAssembler _payload = new();
    private byte[]? _scratch;
    private readonly byte[]? _ahead; // the read-ahead buffer (null: exact reads)
    private int _aheadPos, _aheadEnd; // its bytes not fed to the codec yet
    private int _fdCount;        // descriptors in _fds: the frame's, or a read-ahead read's not taken yet
    private int _part;           // what the read asked for by the last NextRead is (FDSEND_FRAME_*, AheadPart)
    private int _offset;         // and where it goes
    private bool _payloadStarted;

    internal StreamFrameReader(FdChannelOptions options)
        : this(options, readAhead: AheadSize > 0)
    {
    }

    /// <summary>A reader that reads ahead or not (tests choose; the channel takes the OS's
    /// default).</summary>
    internal StreamFrameReader(FdChannelOptions options, bool readAhead)
    {
        _options = options;
        if (readAhead && AheadSize > 0) // never where the codec says reading ahead is unsafe
            _ahead = new byte[AheadSize];
        Init();
    }

    /// <summary>Where the descriptors of a read go (pin it for the read; only the frame's first
    /// read, asked for with maxFds &gt; 0, may put any there).</summary>
    internal nint[] FdBuffer => _fds;

    /// <summary>Whether a frame has started (bytes of it were read), or bytes of later frames
    /// are held.</summary>
    internal bool InFrame
    {
        get
        {
            int part = Want(out ulong offset, out _);
            return part != Interop.FDSEND_FRAME_HEADER || offset != 0 || _aheadPos < _aheadEnd;
        }
    }

    /// <summary>Whether the read asked for by the last <see cref="NextRead"/> is a frame's first
    /// (false: a frame is in progress, and a failed read loses the stream's position).</summary>
    internal bool ReadStartsFrame => _part == AheadPart || (_part == Interop.FDSEND_FRAME_HEADER && _offset == 0);

    /// <summary>The payload memory held now (0: none): what the frame costs so far.</summary>
    internal int PayloadCapacity => _payload.Capacity;

    /// <summary>
    /// Where the next read's bytes go (never more than the codec allows: the header exactly,
    /// then at most the missing payload bytes), and how many descriptors it may take
    /// (<paramref name="maxFds"/>: <see cref="FdPassing.MaxFds"/> for the frame's first read,
    /// 0 for every later one). Follow with <see cref="OnRead"/>, or <see cref="NothingRead"/>
    /// when the read found nothing.
    /// </summary>
    /// <exception cref="OutOfMemoryException">No memory for the payload's next buffer; nothing
    /// changed, the frame goes on with a later call.</exception>
    internal Span<byte> NextRead(out int maxFds)
    {
        if (_aheadPos < _aheadEnd)
            throw new InvalidOperationException("The channel's frame reader holds bytes read ahead: TryBuffered first.");
        _part = Want(out ulong offset, out ulong most);
        _offset = (int)offset;
        maxFds = 0;
        if (_ahead is not null && _part == Interop.FDSEND_FRAME_HEADER && offset == 0)
        {
            _part = AheadPart;
            maxFds = FdPassing.MaxFds;
            return _ahead;
        }
        switch (_part)
        {
            case Interop.FDSEND_FRAME_HEADER:
                if (offset == 0)
                    maxFds = FdPassing.MaxFds;
                return _header.AsSpan(_offset, (int)most);
            case Interop.FDSEND_FRAME_PAYLOAD:
                StartPayload(offset, most);
                return _payload.GetSpace();
            case Interop.FDSEND_FRAME_DISCARD:
                _scratch ??= ArrayPool<byte>.Shared.Rent(DiscardChunk);
                return _scratch.AsSpan(0, (int)Math.Min(most, (ulong)DiscardChunk));
            default:
                throw new InvalidOperationException($"The channel's frame reader is not readable ({(Interop.Status)_part}).");
        }
    }

    /// <summary>The read asked for by <see cref="NextRead"/> found nothing (nothing consumed):
    /// gives back a payload buffer that holds nothing yet.</summary>
    internal void NothingRead()
    {
        if (_part == Interop.FDSEND_FRAME_PAYLOAD)
            _payload.Advance(0);
    }

    /// <summary>
    /// Feeds the result of the read asked for by <see cref="NextRead"/>: <paramref name="count"/>
    /// bytes (0: the stream ended), <paramref name="fdCount"/> descriptors in
    /// <see cref="FdBuffer"/>, and the receive's flags. True when a frame is done:
    /// <paramref name="message"/> is the message, or null at a clean end of the stream.
    /// </summary>
    /// <exception cref="FdChannelProtocolException">The frame broke the format; its descriptors
    /// were closed; the reader is broken (the stream's position is lost).</exception>
    /// <exception cref="FdMessageRejectedException">The frame was consumed whole and refused;
    /// its descriptors were closed; the reader is at the next frame.</exception>
    internal bool OnRead(int count, int fdCount, ReceiveFlags flags, out FdMessage? message)
    {
        message = null;
        uint inFlags = ((flags & ReceiveFlags.FdsTruncated) != 0 ? Interop.FDSEND_FRAME_IN_CTRUNC : 0) |
                       (count == 0 ? Interop.FDSEND_FRAME_IN_EOF : 0);
        int rc;
        if (_part == AheadPart)
        {
            _fdCount = fdCount;
            fixed (Interop.FrameReader* codec = &_codec)
                rc = Interop.FrameReaderBeginAhead(codec, (ulong)count, fdCount, inFlags);
            if (rc == Interop.FDSEND_FRAME_MORE)
            {
                _aheadPos = 0;
                _aheadEnd = count;
                return TryBuffered(out message);
            }
            return Outcome(rc, 0, headerBytes: 0, endedInside: false, out message);
        }
        bool first = _part == Interop.FDSEND_FRAME_HEADER && _offset == 0;
        if (first)
            _fdCount = fdCount;
        if (_part == Interop.FDSEND_FRAME_PAYLOAD)
            _payload.Advance(count);
        uint length;
        fixed (Interop.FrameReader* codec = &_codec)
        fixed (byte* header = _header)
            rc = Interop.FrameReaderFeed(codec, _part == Interop.FDSEND_FRAME_HEADER ? header + _offset : null,
                                         (ulong)count, first ? fdCount : 0, inFlags, &length);
        if (rc == Interop.FDSEND_FRAME_MORE)
            return false;
        int headerBytes = _part == Interop.FDSEND_FRAME_HEADER ? _offset + count : FrameHeader.Size;
        return Outcome(rc, length, headerBytes, endedInside: count == 0 && !first, out message);
    }

    /// <summary>
    /// Advances the frame with the bytes read ahead and held (none: false at once), as far as
    /// they go. True when a frame is done: <paramref name="message"/> is the message; false when
    /// every held byte is fed and the frame (if one has begun) needs more from the socket.
    /// </summary>
    /// <exception cref="FdChannelProtocolException">As <see cref="OnRead"/>.</exception>
    /// <exception cref="FdMessageRejectedException">As <see cref="OnRead"/>.</exception>
    /// <exception cref="OutOfMemoryException">No memory for the payload's next buffer: nothing
    /// changed, the frame goes on with a later call.</exception>
    internal bool TryBuffered(out FdMessage? message)
    {
        message = null;
        while (_aheadPos < _aheadEnd)
        {
            int part = Want(out ulong offset, out ulong most);
            int k = (int)Math.Min(most, (ulong)(_aheadEnd - _aheadPos));
            ReadOnlySpan<byte> piece = _ahead.AsSpan(_aheadPos, k);
            switch (part)
            {
                case Interop.FDSEND_FRAME_HEADER:
                    piece.CopyTo(_header.AsSpan((int)offset)); // kept for the error messages
                    break;
                case Interop.FDSEND_FRAME_PAYLOAD:
                    StartPayload(offset, most);
                    {
                        // As much as the payload's buffer holds now (it may have to grow for
                        // the rest, next time round): a failed allocation changes nothing.
                        Span<byte> space = _payload.GetSpace();
                        k = Math.Min(k, space.Length);
                        piece = piece[..k];
                        piece.CopyTo(space);
                        _payload.Advance(k);
                    }
                    break;
            }
            uint length;
            int rc;
            fixed (Interop.FrameReader* codec = &_codec)
            fixed (byte* bytes = _ahead)
                rc = Interop.FrameReaderFeed(codec, bytes + _aheadPos, (ulong)k, 0, Interop.FDSEND_FRAME_IN_AHEAD, &length);
            _aheadPos += k;
            if (rc == Interop.FDSEND_FRAME_MORE)
                continue;
            int headerBytes = part == Interop.FDSEND_FRAME_HEADER ? (int)offset + k : FrameHeader.Size;
            return Outcome(rc, length, headerBytes, endedInside: false, out message);
        }
        return false;
    }

    /// <summary>A frame's outcome from the codec: the message (true), the clean end (true, null),
    /// or the exception, with the descriptors closed.</summary>
    private bool Outcome(int rc, uint length, int headerBytes, bool endedInside, out FdMessage? message)
    {
        message = null;
        // The descriptors held are the frame's if it took them (exact reads: those of its
        // first read; read-ahead: all of that read's, or none).
        bool took = rc != (int)Interop.Status.EPROTO && rc != (int)Interop.Status.EOF && FrameFds() > 0;
        if (rc == (int)Interop.Status.Ok)
        {
            byte[]? buffer = _payload.Take();
            int fdCount = took ? _fdCount : 0;
            message = FdMessage.FromFrame(new ReadOnlySpan<nint>(_fds, 0, fdCount), buffer, 0, (int)length);
            if (took)
                _fdCount = 0;
            NextFrame();
            return true;
        }
        if (rc == (int)Interop.Status.EOF)
        {
            // The end at a frame boundary. A later receive asks the socket again (which
            // reports the end again), so the reader starts over rather than staying ended.
            Init();
            return true;
        }
        // Refused: the frame's descriptors are closed; broken: every one held, and the bytes
        // held are dropped (the stream's position is lost).
        bool broken = rc == (int)Interop.Status.EPROTO;
        Exception e = ChannelErrors.FromVerdict(rc, _header.AsSpan(0, headerBytes), took || broken ? _fdCount : 0,
                                                endedInside, stream: true, _options);
        if (broken)
            _aheadPos = _aheadEnd = 0;
        if (took || broken)
            CloseFds();
        NextFrame();
        throw e;
    }

    /// <summary>Forgets the frame being received (closing its descriptors) and starts over at
    /// a frame boundary.</summary>
    internal void Reset()
    {
        CloseFds();
        NextFrame();
        _aheadPos = _aheadEnd = 0;
        Init();
    }

    private void NextFrame()
    {
        _payload.Reset();
        _payloadStarted = false;
        if (_scratch is not null)
        {
            ArrayPool<byte>.Shared.Return(_scratch);
            _scratch = null;
        }
    }

    private void CloseFds()
    {
        if (_fdCount > 0)
            FdSendCore.CloseAll(new ReadOnlySpan<nint>(_fds, 0, _fdCount));
        _fdCount = 0;
    }

    private void Init()
    {
        fixed (Interop.FrameReader* codec = &_codec)
            Interop.FrameReaderInit(codec, (ulong)_options.MaxMessageSize, _options.MaxFdsPerMessage);
    }

    /// <summary>Begins the payload (once per frame) when the codec first asks for payload bytes:
    /// <paramref name="offset"/> + <paramref name="most"/> is its whole length. Allocates nothing:
    /// memory follows the bytes that arrive.</summary>
    private void StartPayload(ulong offset, ulong most)
    {
        if (_payloadStarted)
            return;
        _payload.Start((int)(offset + most));
        _payloadStarted = true;
    }

    private int FrameFds()
    {
        fixed (Interop.FrameReader* codec = &_codec)
            return Interop.FrameReaderFrameFds(codec);
    }

    private int Want(out ulong offset, out ulong most)
    {
        ulong o, n;
        int part;
        fixed (Interop.FrameReader* codec = &_codec)
            part = Interop.FrameReaderWant(codec, &o, &n);
        offset = o;
        most = n;
        return part;
    }
}
