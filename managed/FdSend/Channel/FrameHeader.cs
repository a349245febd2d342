// SPDX-License-Identifier: MIT
using System.Buffers.Binary;

namespace FdSend;

/// <summary>
/// The 8-byte frame header of the message channel, as fdsend_msg_send / fdsend_msg_recv
/// (native/src/msg.c) put it on the wire: byte 0 the version (1), byte 1 the flags (0), bytes
/// 2-3 the descriptor count (u16 little-endian, at most 253), bytes 4-7 the payload length
/// (u32 little-endian). The descriptors travel in one SCM_RIGHTS message attached to the
/// header's first byte; the payload follows the header.
/// </summary>
internal readonly struct FrameHeader
{
    internal const int Size = 8;
    internal const byte Version = 1;

    internal FrameHeader(byte version, byte flags, int fdCount, uint payloadLength)
    {
        VersionByte = version;
        Flags = flags;
        FdCount = fdCount;
        PayloadLength = payloadLength;
    }

    internal byte VersionByte { get; }
    internal byte Flags { get; }
    internal int FdCount { get; }
    internal uint PayloadLength { get; }

    internal static void Write(Span<byte> destination, int payloadLength, int fdCount)
    {
        destination[0] = Version;
        destination[1] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(destination.Slice(2), (ushort)fdCount);
        BinaryPrimitives.WriteUInt32LittleEndian(destination.Slice(4), (uint)payloadLength);
    }

    internal static FrameHeader Read(ReadOnlySpan<byte> source) =>
        new(source[0], source[1],
            BinaryPrimitives.ReadUInt16LittleEndian(source.Slice(2)),
            BinaryPrimitives.ReadUInt32LittleEndian(source.Slice(4)));

    /// <summary>Why this header is malformed, or null if it is valid.</summary>
    internal string? Problem() =>
        VersionByte != Version
            ? $"the frame header's version byte is {VersionByte}; this side speaks version {Version}"
            : Flags != 0
                ? $"the frame header's flags byte is 0x{Flags:x2}; no flags are defined"
                : FdCount > FdPassing.MaxFds
                    ? $"the frame header announces {FdCount} descriptors; a frame carries at most {FdPassing.MaxFds}"
                    : null;

    public override string ToString() =>
        $"version {VersionByte}, flags 0x{Flags:x2}, {FdCount} descriptors, {PayloadLength} payload bytes";
}
