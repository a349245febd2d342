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
/// <remarks>Not thread-safe: the channel's receive lock guards it. A frame may span any number
/// of <see cref="OnRead"/> calls, and any time between them (a cancelled receive keeps it).</remarks>
internal sealed unsafe class StreamFrameReader
{
    private const int DiscardChunk = 64 * 1024;

    private readonly FdChannelOptions _options;
    private Interop.FrameReader _codec;
    private readonly byte[] _header = new byte[FrameHeader.Size];
    private readonly nint[] _fds = new nint[FdPassing.MaxFds];
    private readonly PayloadAssembler _payload = new();
    private byte[]? _scratch;
    private int _fdCount;
    private int _part;           // what the read asked for by the last NextRead is (FDSEND_FRAME_*)
    private int _offset;         // and where it goes
    private bool _payloadStarted;

    internal StreamFrameReader(FdChannelOptions options)
    {
        _options = options;
        Init();
    }

    /// <summary>Where the descriptors of a read go (pin it for the read; only the frame's first
    /// read, asked for with maxFds &gt; 0, may put any there).</summary>
    internal nint[] FdBuffer => _fds;

    /// <summary>Whether a frame has started (bytes of it were read).</summary>
    internal bool InFrame
    {
        get
        {
            int part = Want(out ulong offset, out _);
            return part != Interop.FDSEND_FRAME_HEADER || offset != 0;
        }
    }

    /// <summary>Whether the read asked for by the last <see cref="NextRead"/> is a frame's first
    /// (false: a frame is in progress, and a failed read loses the stream's position).</summary>
    internal bool ReadStartsFrame => _part == Interop.FDSEND_FRAME_HEADER && _offset == 0;

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
        _part = Want(out ulong offset, out ulong most);
        _offset = (int)offset;
        maxFds = 0;
        switch (_part)
        {
            case Interop.FDSEND_FRAME_HEADER:
                if (offset == 0)
                    maxFds = FdPassing.MaxFds;
                return _header.AsSpan(_offset, (int)most);
            case Interop.FDSEND_FRAME_PAYLOAD:
                if (!_payloadStarted)
                {
                    _payload.Start((int)most); // allocates nothing: memory follows the bytes that arrive
                    _payloadStarted = true;
                }
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
        bool first = _part == Interop.FDSEND_FRAME_HEADER && _offset == 0;
        if (first)
            _fdCount = fdCount;
        if (_part == Interop.FDSEND_FRAME_PAYLOAD)
            _payload.Advance(count);
        uint inFlags = ((flags & ReceiveFlags.FdsTruncated) != 0 ? Interop.FDSEND_FRAME_IN_CTRUNC : 0) |
                       (count == 0 ? Interop.FDSEND_FRAME_IN_EOF : 0);
        uint length;
        int rc;
        fixed (Interop.FrameReader* codec = &_codec)
        fixed (byte* header = _header)
            rc = Interop.FrameReaderFeed(codec, _part == Interop.FDSEND_FRAME_HEADER ? header + _offset : null,
                                         (ulong)count, first ? fdCount : 0, inFlags, &length);
        if (rc == Interop.FDSEND_FRAME_MORE)
            return false;
        if (rc == (int)Interop.Status.Ok)
        {
            byte[]? buffer = _payload.Take();
            message = FdMessage.FromFrame(new ReadOnlySpan<nint>(_fds, 0, _fdCount), buffer, 0, (int)length);
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
        int headerBytes = _part == Interop.FDSEND_FRAME_HEADER ? _offset + count : FrameHeader.Size;
        Exception e = ChannelErrors.FromVerdict(rc, _header.AsSpan(0, headerBytes), _fdCount,
                                                endedInside: count == 0 && !first, stream: true, _options);
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
