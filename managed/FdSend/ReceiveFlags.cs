// SPDX-License-Identifier: MIT
namespace FdSend;

/// <summary>What a receive had to drop. Both flags mean something was lost and cannot be
/// recovered; nothing that was dropped stays open.</summary>
[Flags]
public enum ReceiveFlags
{
    /// <summary>Nothing was dropped.</summary>
    None = 0,

    /// <summary>The message had more data than the buffer held. On a datagram or seqpacket
    /// socket the rest of the message is discarded by the kernel. On a stream socket this is
    /// set only for a zero-length buffer, when the byte consumed was not the zero byte that
    /// carries descriptors (plain data was swallowed).</summary>
    DataTruncated = 1,

    /// <summary>More descriptors arrived than the caller asked for (the extra ones were
    /// closed), or the kernel dropped some (for example because this process was at its
    /// open-file limit).</summary>
    FdsTruncated = 2,
}
