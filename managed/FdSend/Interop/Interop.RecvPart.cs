// SPDX-License-Identifier: MIT
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_recv_state: where a reader is inside the message it reads in pieces
    /// (Windows: the data bytes of the current record still due). Zero = fresh; otherwise
    /// as libfdsend left it. One per socket and reader.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct RecvState
    {
        internal ulong Reserved0;
        internal ulong Reserved1;
    }

    /// <summary>fdsend_recv_part: fdsend_recv for a reader that takes a stream's messages in
    /// pieces, its position in <paramref name="state"/> (POSIX: checked, then fdsend_recv).
    /// Ownership of the descriptors as <see cref="Recv"/>.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_recv_part")]
    internal static unsafe partial long RecvPart(SafeHandle socket, RecvState* state, byte* buffer,
                                                 nuint length, nint* fds, int maxFds, int* fdCount,
                                                 uint* receiveFlags, uint flags);

    /// <summary>fdsend_recv_refused: 1 when a failed <see cref="RecvPart"/>'s code means
    /// libfdsend refused the next record and a reader cannot go past it (Windows: FDSEND_EPROTO,
    /// FDSEND_ESRCH, FDSEND_EACCES); 0 otherwise, and for every code on POSIX. Pure: it leaves
    /// the thread's recorded OS error alone.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_recv_refused")]
    [SuppressGCTransition]
    internal static partial int RecvRefused(long status);
}
