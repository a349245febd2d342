// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_exact_state: where a receive of exactly N bytes stands (bytes and
    /// descriptors merged so far, its FDSEND_RECV_* bits). Zero = a new receive; otherwise as
    /// libfdsend left it. One per receive.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ExactState
    {
        internal ulong Received;
        internal int FdCount;
        internal uint ReceiveFlags;
        internal ulong Reserved0;
        internal ulong Reserved1;
    }

    /// <summary>fdsend_recv_exact_step's result when the receive is complete.</summary>
    internal const int FDSEND_EXACT_DONE = 1;

    /// <summary>fdsend_recv_exact_step: one receive that never waits, merged into
    /// <paramref name="buffer"/>, fds[<c>state.FdCount</c> ..] (up to
    /// <paramref name="maxFds"/>; the rest closed) and <paramref name="state"/>.
    /// FDSEND_EXACT_DONE, 0 (more is due), FDSEND_EAGAIN (nothing queued, nothing lost), or
    /// another negative code: the receive failed and libfdsend closed every descriptor it had
    /// stored (their slots set to -1). Until done, fds[0 .. state.FdCount) belong to the
    /// receive: the caller closes them if it gives up.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_recv_exact_step")]
    internal static unsafe partial int RecvExactStep(SafeHandle socket, ExactState* state, byte* buffer,
                                                     nuint length, nint* fds, int maxFds, uint flags);
}
