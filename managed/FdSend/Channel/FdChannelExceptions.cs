// SPDX-License-Identifier: MIT
namespace FdSend;

/// <summary>
/// The peer broke the channel's wire format (a bad version or flags byte, a descriptor count
/// that differs from the header's, descriptors attached to any byte but the header's first, a
/// datagram whose length differs from its header's, or the end of the stream inside a frame;
/// on Windows also a handle-passing record libfdsend refused: not a record, or its sender check
/// failed, docs/windows-protocol.md). Every descriptor of that frame has been closed. On a
/// stream socket the channel is faulted: every later call throws this same exception; dispose
/// it and close the connection. On a seqpacket or datagram socket only that record was
/// dropped: the channel stays usable and the next receive reads the next record.
/// </summary>
public sealed class FdChannelProtocolException : IOException
{
    /// <summary>Creates the exception with a message that says what the peer did wrong.</summary>
    /// <param name="message">What was wrong with the frame.</param>
    public FdChannelProtocolException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public FdChannelProtocolException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>Why an incoming message was refused by <see cref="FdChannel.ReceiveAsync"/>.</summary>
public enum FdMessageRejectReason
{
    /// <summary>Its payload is longer than <see cref="FdChannelOptions.MaxMessageSize"/>.</summary>
    PayloadTooLarge,

    /// <summary>It carries more descriptors than <see cref="FdChannelOptions.MaxFdsPerMessage"/>.</summary>
    TooManyFds,

    /// <summary>The kernel could not install all of its descriptors (MSG_CTRUNC: this
    /// process is at its open-file limit, RLIMIT_NOFILE, or a security module refused one).</summary>
    FdsDropped,
}

/// <summary>
/// An incoming message broke this side's limits (or lost descriptors in the kernel) and was
/// discarded whole: its payload was read and dropped and every descriptor it carried was
/// closed. The channel stays in step with the peer and usable: receive the next message.
/// </summary>
public sealed class FdMessageRejectedException : IOException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="reason">Which limit the message broke.</param>
    /// <param name="payloadLength">The message's payload length, from its header.</param>
    /// <param name="fdCount">The number of descriptors its header announced.</param>
    /// <param name="message">The text of the exception.</param>
    public FdMessageRejectedException(FdMessageRejectReason reason, long payloadLength, int fdCount, string message)
        : base(message)
    {
        Reason = reason;
        PayloadLength = payloadLength;
        FdCount = fdCount;
    }

    /// <summary>Which limit the message broke.</summary>
    public FdMessageRejectReason Reason { get; }

    /// <summary>The message's payload length, from its header.</summary>
    public long PayloadLength { get; }

    /// <summary>The number of descriptors the message's header announced (all closed).</summary>
    public int FdCount { get; }
}
