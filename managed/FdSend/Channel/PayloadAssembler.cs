// SPDX-License-Identifier: MIT
using System.Buffers;

namespace FdSend;

/// <summary>
/// The payload of the stream frame being received, held in memory that grows with the bytes
/// that actually arrived, never with what the header announced: a header is a promise, not
/// data, and allocating its length up front let nine bytes from a peer pin MaxMessageSize
/// (16 MiB by default) until the payload came, if ever.
/// </summary>
/// <remarks>
/// <para>Memory: no buffer while nothing of the payload has arrived (the buffer rented for a
/// read that found nothing is given back at once); then min(announced, <see cref="FirstChunk"/>)
/// bytes; each time the buffer is full and more is announced, a buffer twice as large (capped
/// at the announced length) replaces it. So a peer holds at most max(<see cref="FirstChunk"/>,
/// 2 x what it sent) per connection, and a payload of n bytes is copied at most about n more
/// times in total on top of the kernel's copy (1 + 1/2 + 1/4 ... of it). A payload up to
/// <see cref="FirstChunk"/> bytes, the common case, takes one pooled buffer and no copy.</para>
/// <para>Every buffer comes from <see cref="ArrayPool{T}.Shared"/>; the finished one is
/// handed out with <see cref="Take"/> (the <see cref="FdMessage"/> returns it to the pool).
/// A failed allocation (<see cref="OutOfMemoryException"/>) happens before the read it was
/// for, so nothing is consumed and the frame can go on later.</para>
/// <para>Not thread-safe: the channel's receive lock guards it.</para>
/// </remarks>
internal sealed class PayloadAssembler
{
    /// <summary>The first buffer of a payload holds at most this many bytes.</summary>
    internal const int FirstChunk = 64 * 1024;

    private byte[]? _buffer;
    private int _length;
    private int _received;

    /// <summary>The payload length the header announced.</summary>
    internal int Length => _length;

    /// <summary>The payload bytes received so far.</summary>
    internal int Received => _received;

    /// <summary>Whether every announced byte has arrived.</summary>
    internal bool IsComplete => _received == _length;

    /// <summary>The size of the buffer held now (0: none); what this payload costs in memory.</summary>
    internal int Capacity => _buffer?.Length ?? 0;

    /// <summary>Begins a payload of <paramref name="length"/> bytes (allocates nothing).</summary>
    internal void Start(int length)
    {
        Reset();
        _length = length;
    }

    /// <summary>
    /// Where the next read goes: free space for at most the missing bytes, growing the buffer
    /// first if it is full. Follow with <see cref="Advance"/> (0 when the read found nothing).
    /// </summary>
    /// <exception cref="OutOfMemoryException">No memory for the buffer; nothing changed.</exception>
    internal Span<byte> GetSpace()
    {
        int missing = _length - _received;
        if (missing <= 0)
            return Span<byte>.Empty;
        if (_buffer is null)
        {
            _buffer = ArrayPool<byte>.Shared.Rent(Math.Min(_length, FirstChunk));
        }
        else if (_received == _buffer.Length)
        {
            byte[] larger = ArrayPool<byte>.Shared.Rent((int)Math.Min(_length, 2L * _buffer.Length));
            _buffer.AsSpan(0, _received).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = larger;
        }
        return _buffer.AsSpan(_received, Math.Min(missing, _buffer.Length - _received));
    }

    /// <summary>Counts <paramref name="count"/> bytes written into the space of
    /// <see cref="GetSpace"/>. With 0 while nothing has arrived, gives the buffer back, so that
    /// a payload that has not started holds no memory.</summary>
    internal void Advance(int count)
    {
        _received += count;
        if (_received == 0 && _buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }
    }

    /// <summary>The complete payload's buffer (its first <see cref="Length"/> bytes; null for
    /// an empty payload), now owned by the caller, who returns it to
    /// <see cref="ArrayPool{T}.Shared"/>. The assembler forgets the payload.</summary>
    internal byte[]? Take()
    {
        byte[]? buffer = _buffer;
        _buffer = null;
        _length = 0;
        _received = 0;
        return buffer;
    }

    /// <summary>Forgets the payload and returns its buffer to the pool.</summary>
    internal void Reset()
    {
        if (_buffer is not null)
            ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = null;
        _length = 0;
        _received = 0;
    }
}
