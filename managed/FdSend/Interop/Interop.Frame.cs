// SPDX-License-Identifier: MIT
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>
/// libfdsend's channel codec (fdsend_frame_*, fdsend.h "Channel codec"): every framing rule of
/// docs/wire-format.md, without I/O, allocation or global state. The .NET channel's readers and
/// writer (managed/FdSend/Channel) do the I/O and ask these functions what each read means.
/// Pure and short, so they run without a GC transition.
/// </summary>
internal static unsafe partial class Interop
{
    /// <summary>fdsend_frame_reader_want: the next read is header bytes.</summary>
    internal const int FDSEND_FRAME_HEADER = 1;
    /// <summary>fdsend_frame_reader_want: the next read is payload bytes.</summary>
    internal const int FDSEND_FRAME_PAYLOAD = 2;
    /// <summary>fdsend_frame_reader_want: the next read is payload bytes to drop.</summary>
    internal const int FDSEND_FRAME_DISCARD = 3;
    /// <summary>fdsend_frame_reader_feed: the frame is not complete yet.</summary>
    internal const int FDSEND_FRAME_MORE = 1;

    /// <summary>FDSEND_FRAME_IN_*: what a read reported besides its bytes.</summary>
    internal const uint FDSEND_FRAME_IN_CTRUNC = 1, FDSEND_FRAME_IN_EOF = 2, FDSEND_FRAME_IN_TRUNC = 4,
                        FDSEND_FRAME_IN_SEQPACKET = 8, FDSEND_FRAME_IN_AHEAD = 16;

    /// <summary>fdsend_frame_reader: FDSEND_FRAME_READER_SIZE (56) bytes, 8-byte aligned,
    /// private to the codec; holds no descriptor and no pointer.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 56)]
    internal struct FrameReader
    {
        private fixed ulong _state[7];
    }

    /// <summary>fdsend_frame_encode: writes a frame's 8-byte header.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_frame_encode")]
    [SuppressGCTransition]
    internal static partial int FrameEncode(byte* header, ulong length, int fdCount);

    /// <summary>fdsend_frame_reader_init: a stream reader with a payload limit and a descriptor limit.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_frame_reader_init")]
    [SuppressGCTransition]
    internal static partial int FrameReaderInit(FrameReader* reader, ulong cap, int maxFds);

    /// <summary>fdsend_frame_reader_want: what the next read is for, where it goes, at most how long.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_frame_reader_want")]
    [SuppressGCTransition]
    internal static partial int FrameReaderWant(FrameReader* reader, ulong* offset, ulong* length);

    /// <summary>fdsend_frame_reader_feed: the outcome of one read.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_frame_reader_feed")]
    [SuppressGCTransition]
    internal static partial int FrameReaderFeed(FrameReader* reader, byte* bytes, ulong count, int fdCount,
                                                uint flags, uint* length);

    /// <summary>fdsend_frame_reader_begin_ahead: a read that may run past the frame (read-ahead).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_frame_reader_begin_ahead")]
    [SuppressGCTransition]
    internal static partial int FrameReaderBeginAhead(FrameReader* reader, ulong count, int fdCount, uint flags);

    /// <summary>fdsend_frame_reader_frame_fds: how many descriptors the frame just completed holds.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_frame_reader_frame_fds")]
    [SuppressGCTransition]
    internal static partial int FrameReaderFrameFds(FrameReader* reader);

    /// <summary>fdsend_frame_check_record: the verdict on one seqpacket record or datagram.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_frame_check_record")]
    [SuppressGCTransition]
    internal static partial long FrameCheckRecord(byte* header, ulong count, int fdCount, uint flags,
                                                  ulong cap, int maxFds);

    /// <summary>fdsend_frame_ahead_size: the bytes a stream reader may read ahead at a frame
    /// boundary on this OS (0: exact reads).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_frame_ahead_size")]
    [SuppressGCTransition]
    internal static partial int FrameAheadSize();
}
