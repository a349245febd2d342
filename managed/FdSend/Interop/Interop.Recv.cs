// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_recv: one message's data and descriptors. The descriptors stored in
    /// fds[0 .. *fdCount) belong to the caller; every other one that arrived is already
    /// closed. On error nothing is handed out.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_recv")]
    internal static unsafe partial long Recv(SafeHandle socket, byte* buffer, nuint length,
                                             nint* fds, int maxFds, int* fdCount,
                                             uint* receiveFlags, uint flags);
}
