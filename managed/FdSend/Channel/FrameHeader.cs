// SPDX-License-Identifier: MIT
using System.Buffers.Binary;

namespace FdSend;

/// <summary>
/// The channel's 8-byte frame header (docs/wire-format.md section 1). Its rules live in
/// libfdsend's codec (<c>fdsend_frame_*</c>): this class only asks it to write a header, and
/// reads the announced fields back for what an exception reports. It never judges a header.
/// </summary>
internal static unsafe class FrameHeader
{
    /// <summary>FDSEND_MSG_HEADER_SIZE.</summary>
    internal const int Size = 8;

    /// <summary>Writes the header of a frame of <paramref name="payloadLength"/> bytes and
    /// <paramref name="fdCount"/> descriptors into <paramref name="destination"/>[0..8) (the
    /// codec's fdsend_frame_encode; the callers have checked both against the channel's
    /// limits, which are within the format's).</summary>
    internal static void Write(Span<byte> destination, int payloadLength, int fdCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, Size);
        int rc;
        fixed (byte* header = destination)
            rc = Interop.FrameEncode(header, (ulong)payloadLength, fdCount);
        if (rc != 0)
            throw new InvalidOperationException($"fdsend_frame_encode refused {payloadLength} bytes and {fdCount} descriptors ({(Interop.Status)rc}).");
    }

    /// <summary>The descriptor count a header announces (bytes 2-3), for reports only.</summary>
    internal static int AnnouncedFds(ReadOnlySpan<byte> header) =>
        header.Length >= 4 ? BinaryPrimitives.ReadUInt16LittleEndian(header.Slice(2)) : 0;

    /// <summary>The payload length a header announces (bytes 4-7), for reports only.</summary>
    internal static long AnnouncedLength(ReadOnlySpan<byte> header) =>
        header.Length >= Size ? BinaryPrimitives.ReadUInt32LittleEndian(header.Slice(4)) : 0;

    /// <summary>The header bytes as hex ("01 00 02 00 ..."), for exception messages.</summary>
    internal static string Describe(ReadOnlySpan<byte> header) =>
        header.IsEmpty ? "none" : string.Join(' ', header.ToArray().Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));
}
