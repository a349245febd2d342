// SPDX-License-Identifier: MIT
using System.Buffers;

namespace FdSend;

/// <summary>
/// One message received from an <see cref="FdChannel"/>: its payload and the descriptors that
/// came with it, both owned by this object until it is disposed.
/// </summary>
/// <remarks>
/// <para>The payload lives in a pooled buffer that <see cref="Dispose"/> returns to the pool:
/// copy what you need to keep (<c>Payload.ToArray()</c>) before disposing, and do not use a
/// <see cref="ReadOnlyMemory{T}"/> obtained from <see cref="Payload"/> afterwards.</para>
/// <para>The descriptors are taken with <see cref="Fds"/>' <c>Take*</c> methods (as a
/// <see cref="Microsoft.Win32.SafeHandles.SafeFileHandle"/>, <see cref="FileStream"/>,
/// <see cref="System.Net.Sockets.Socket"/>, pipe, memory-mapped file or raw fd); every
/// descriptor not taken is closed by <see cref="Dispose"/> (or by the finalizer of
/// <see cref="Fds"/> if you forget). They are close-on-exec. Always use <c>using</c>.</para>
/// </remarks>
public sealed class FdMessage : IDisposable
{
    private readonly int _offset;
    private readonly int _length;
    private byte[]? _buffer;
    private readonly bool _pooled;

    internal FdMessage(byte[] buffer, int offset, int length, bool pooled, ReceivedFds fds)
    {
        _buffer = buffer;
        _offset = offset;
        _length = length;
        _pooled = pooled;
        Fds = fds;
    }

    /// <summary>A received frame as a message that owns <paramref name="fds"/> (from now on:
    /// nothing below throws once they are wrapped) and <paramref name="buffer"/> (pooled; null
    /// for an empty payload).</summary>
    internal static FdMessage FromFrame(ReadOnlySpan<nint> fds, byte[]? buffer, int offset, int length)
    {
        var received = new ReceivedFds(fds, length, ReceiveFlags.None, isEndOfStream: false);
        return buffer is null
            ? new FdMessage(Array.Empty<byte>(), 0, 0, pooled: false, received)
            : new FdMessage(buffer, offset, length, pooled: true, received);
    }

    /// <summary>The payload, exactly as the peer sent it.</summary>
    /// <exception cref="ObjectDisposedException">This message is disposed.</exception>
    public ReadOnlyMemory<byte> Payload
    {
        get
        {
            byte[]? buffer = _buffer;
            ObjectDisposedException.ThrowIf(buffer is null, this);
            return new ReadOnlyMemory<byte>(buffer, _offset, _length);
        }
    }

    /// <summary>The payload's length in bytes (still readable after <see cref="Dispose"/>).</summary>
    public int Length => _length;

    /// <summary>The descriptors that came with the message, in the order they were sent,
    /// owned by this message until taken (see <see cref="ReceivedFds"/>).</summary>
    public ReceivedFds Fds { get; }

    /// <summary>The number of descriptors that came with the message.</summary>
    public int FdCount => Fds.Count;

    /// <summary>Closes every descriptor not taken and returns the payload buffer to the pool.
    /// Idempotent.</summary>
    public void Dispose()
    {
        Fds.Dispose();
        byte[]? buffer = Interlocked.Exchange(ref _buffer, null);
        if (buffer is not null && _pooled)
            ArrayPool<byte>.Shared.Return(buffer);
    }

    /// <inheritdoc/>
    public override string ToString() => $"FdMessage {{ Length = {_length}, FdCount = {FdCount} }}";
}
