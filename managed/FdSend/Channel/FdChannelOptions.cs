// SPDX-License-Identifier: MIT
namespace FdSend;

/// <summary>Limits and ownership for an <see cref="FdChannel"/>.</summary>
public sealed class FdChannelOptions
{
    /// <summary>The default <see cref="MaxMessageSize"/>: 16 MiB.</summary>
    public const int DefaultMaxMessageSize = 16 * 1024 * 1024;

    /// <summary>The largest <see cref="MaxMessageSize"/>: what one .NET byte array holds after
    /// the 8-byte frame header.</summary>
    public const int MaxMessageSizeLimit = 0x7FFFFFC7 - 8;

    private readonly int _maxMessageSize = DefaultMaxMessageSize;
    private readonly int _maxFdsPerMessage = FdPassing.MaxFds;

    /// <summary>
    /// The largest payload, in bytes, this side sends or accepts (default
    /// <see cref="DefaultMaxMessageSize"/>). A larger send throws
    /// <see cref="ArgumentException"/> before anything is sent; a larger incoming message is
    /// read and discarded, its descriptors closed, and the receive throws
    /// <see cref="FdMessageRejectedException"/>; the channel stays usable.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative or above <see cref="MaxMessageSizeLimit"/>.</exception>
    public int MaxMessageSize
    {
        get => _maxMessageSize;
        init
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, MaxMessageSizeLimit);
            _maxMessageSize = value;
        }
    }

    /// <summary>
    /// The most descriptors one message may carry, sent or received (0 ..
    /// <see cref="FdPassing.MaxFds"/>, the default). A send with more throws
    /// <see cref="ArgumentException"/> before anything is sent; an incoming message with more
    /// is read whole, its descriptors closed, and the receive throws
    /// <see cref="FdMessageRejectedException"/>; the channel stays usable.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative or above <see cref="FdPassing.MaxFds"/>.</exception>
    public int MaxFdsPerMessage
    {
        get => _maxFdsPerMessage;
        init
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, FdPassing.MaxFds);
            _maxFdsPerMessage = value;
        }
    }

    /// <summary>Whether disposing the channel leaves the socket open (default false: the
    /// channel owns the socket and closes it, so the peer sees the end of the stream at a
    /// message boundary).</summary>
    public bool LeaveOpen { get; init; }
}
