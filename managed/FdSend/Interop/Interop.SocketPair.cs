// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>FDSEND_SOCK_*: platform-neutral socket types (fdsend_socketpair, fdsend_fd_info).</summary>
    internal const int FDSEND_SOCK_STREAM = 1, FDSEND_SOCK_DGRAM = 2, FDSEND_SOCK_SEQPACKET = 3;

    /// <summary>fdsend_socketpair: a connected pair of Unix sockets, both close-on-exec,
    /// owned by the caller (sv[0], sv[1]; -1 on failure).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_socketpair")]
    internal static partial int SocketPair(int type, nint* sv);
}
