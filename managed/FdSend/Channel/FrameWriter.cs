// SPDX-License-Identifier: MIT
using System.Buffers;

namespace FdSend;

/// <summary>
/// Lays out the frame of one message for sending, without touching a socket: the header
/// (written by libfdsend's codec, <see cref="FrameHeader.Write"/>) and the payload, as the
/// piece that must go out with the descriptors (<see cref="First"/>) and what follows it
/// (<see cref="Rest"/>, stream only). A record (seqpacket, datagram) and a stream payload up to
/// <see cref="CopyThreshold"/> bytes are copied behind the header into one buffer (one
/// sendmsg); a larger stream payload goes header-first, then straight from the caller's memory.
/// </summary>
/// <remarks>
/// <para>One per channel, reused by each send under the channel's send lock:
/// <see cref="Layout"/>, send, then <see cref="Release"/>.</para>
/// <para>Memory: a frame of up to <see cref="SmallFrame"/> bytes (the common case: a small
/// payload with its descriptors) is laid out in this writer's own buffer, allocated once and
/// reused by every send of the channel, so that it costs no pool rent and return; a larger one is laid out in
/// a buffer rented from <see cref="ArrayPool{T}.Shared"/> and given back by
/// <see cref="Release"/>.</para>
/// </remarks>
internal sealed class FrameWriter
{
    /// <summary>Stream payloads up to this size are copied behind the header.</summary>
    internal const int CopyThreshold = 64 * 1024;

    /// <summary>Frames (header and payload) up to this size are laid out in the writer's own
    /// buffer.</summary>
    internal const int SmallFrame = 1024;

    // The writer's own buffer (allocated by the first send): small frames, and the header of a
    // frame sent in two pieces.
    private byte[]? _small;
    private byte[]? _rented;

    /// <summary>What goes out with the descriptors.</summary>
    internal ReadOnlyMemory<byte> First { get; private set; }

    /// <summary>What follows it (stream only; empty otherwise).</summary>
    internal ReadOnlyMemory<byte> Rest { get; private set; }

    /// <summary>The frame's length in bytes.</summary>
    internal int Length => First.Length + Rest.Length;

    /// <summary>Lays out the frame of <paramref name="payload"/> with
    /// <paramref name="fdCount"/> descriptors (both within the channel's limits).</summary>
    internal void Layout(ReadOnlyMemory<byte> payload, int fdCount, bool stream)
    {
        Release();
        if (!stream || payload.Length <= CopyThreshold)
        {
            int total = FrameHeader.Size + payload.Length;
            byte[] frame = total <= SmallFrame ? _small ??= new byte[SmallFrame]
                : _rented = ArrayPool<byte>.Shared.Rent(total);
            FrameHeader.Write(frame, payload.Length, fdCount);
            payload.Span.CopyTo(frame.AsSpan(FrameHeader.Size));
            First = new ReadOnlyMemory<byte>(frame, 0, total);
            Rest = default;
        }
        else
        {
            byte[] header = _small ??= new byte[SmallFrame];
            FrameHeader.Write(header, payload.Length, fdCount);
            First = new ReadOnlyMemory<byte>(header, 0, FrameHeader.Size);
            Rest = payload;
        }
    }

    /// <summary>Gives back the pooled buffer (if any) and forgets the frame (and the caller's payload).</summary>
    internal void Release()
    {
        First = default;
        Rest = default;
        if (_rented is not null)
            ArrayPool<byte>.Shared.Return(_rented);
        _rented = null;
    }
}
