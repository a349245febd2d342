// SPDX-License-Identifier: MIT
using System.Buffers;

namespace FdSend;

/// <summary>
/// Receives seqpacket records and datagrams as frames without touching a socket: the caller
/// peeks at a record's first bytes into <see cref="PeekBuffer"/>, receives it whole into the
/// buffer <see cref="PrepareReceive"/> chooses, and hands the result to
/// <see cref="OnRecord"/>, which asks libfdsend's codec (<c>fdsend_frame_check_record</c>)
/// for the verdict and makes the message or the exception. Every record stands alone: an error
/// in one leaves the reader ready for the next.
/// </summary>
/// <remarks>Memory: a record is received into a buffer of its announced size only when that is
/// within the channel's limit; anything else is received into the 8-byte header buffer (the
/// kernel discards the rest), so an announcement over the limit costs nothing. Not
/// thread-safe: the channel's receive lock guards it.</remarks>
internal sealed unsafe class RecordFrameReader
{
    private readonly FdChannelOptions _options;
    private readonly bool _seqpacket;
    private readonly byte[] _header = new byte[FrameHeader.Size];
    private readonly nint[] _fds = new nint[FdPassing.MaxFds];
    private byte[]? _record;

    internal RecordFrameReader(FdChannelOptions options, bool seqpacket)
    {
        _options = options;
        _seqpacket = seqpacket;
    }

    /// <summary>Where a peek at the next record's header goes.</summary>
    internal Memory<byte> PeekBuffer => _header;

    /// <summary>Where the descriptors of the receive go (room for <see cref="FdPassing.MaxFds"/>).</summary>
    internal nint[] FdBuffer => _fds;

    /// <summary>The buffer to receive the record into, after a peek that brought
    /// <paramref name="peeked"/> of its bytes into <see cref="PeekBuffer"/>: the whole frame
    /// if its header announces a payload within the limit, else the header only.</summary>
    internal Span<byte> PrepareReceive(int peeked)
    {
        ReleaseRecord();
        long announced = peeked >= FrameHeader.Size ? FrameHeader.AnnouncedLength(_header) : -1;
        if (announced <= 0 || announced > _options.MaxMessageSize)
            return _header;
        int total = FrameHeader.Size + (int)announced;
        _record = ArrayPool<byte>.Shared.Rent(total);
        return _record.AsSpan(0, total);
    }

    /// <summary>The receive found nothing (the record was taken by someone else, or the peek
    /// was spurious): gives its buffer back.</summary>
    internal void NothingRead() => ReleaseRecord();

    /// <summary>
    /// Judges the record received into the <see cref="PrepareReceive"/> buffer:
    /// <paramref name="count"/> bytes, <paramref name="fdCount"/> descriptors in
    /// <see cref="FdBuffer"/>, the receive's flags. Returns the message, or null for the end
    /// of a seqpacket connection (an empty record).
    /// </summary>
    /// <exception cref="FdChannelProtocolException">The record broke the format (dropped, its
    /// descriptors closed; the next record is fine).</exception>
    /// <exception cref="FdMessageRejectedException">The record broke the limits (dropped, its
    /// descriptors closed).</exception>
    internal FdMessage? OnRecord(int count, int fdCount, ReceiveFlags flags)
    {
        byte[]? record = _record;
        _record = null;
        ReadOnlySpan<byte> received = record is null ? _header.AsSpan(0, count) : record.AsSpan(0, count);
        uint inFlags = ((flags & ReceiveFlags.FdsTruncated) != 0 ? Interop.FDSEND_FRAME_IN_CTRUNC : 0) |
                       ((flags & ReceiveFlags.DataTruncated) != 0 ? Interop.FDSEND_FRAME_IN_TRUNC : 0) |
                       (_seqpacket ? Interop.FDSEND_FRAME_IN_SEQPACKET : 0);
        long verdict;
        fixed (byte* bytes = received)
            verdict = Interop.FrameCheckRecord(bytes, (ulong)count, fdCount, inFlags,
                                               (ulong)_options.MaxMessageSize, _options.MaxFdsPerMessage);
        // A payload is only ever accepted from the frame-sized buffer (a record received into
        // the header buffer was cut, which the codec never accepts with a payload).
        if (verdict == 0 || (verdict > 0 && record is not null))
        {
            FdMessage message = FdMessage.FromFrame(new ReadOnlySpan<nint>(_fds, 0, fdCount), verdict > 0 ? record : null,
                                                    FrameHeader.Size, (int)verdict);
            if (verdict == 0 && record is not null)
                ArrayPool<byte>.Shared.Return(record);
            return message;
        }
        if (fdCount > 0)
            FdSendCore.CloseAll(new ReadOnlySpan<nint>(_fds, 0, fdCount));
        Exception? e = verdict == (long)Interop.Status.EOF ? null
            : ChannelErrors.FromVerdict(verdict, received.Slice(0, Math.Min(count, FrameHeader.Size)), fdCount,
                                        endedInside: false, stream: false, _options);
        if (record is not null)
            ArrayPool<byte>.Shared.Return(record);
        return e is null ? null : throw e;
    }

    /// <summary>Gives back the buffer of a receive that did not happen.</summary>
    internal void Reset() => ReleaseRecord();

    private void ReleaseRecord()
    {
        if (_record is not null)
            ArrayPool<byte>.Shared.Return(_record);
        _record = null;
    }
}
