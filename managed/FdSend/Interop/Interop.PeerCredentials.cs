// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_peer_credentials: pid (-1 where unknown), uid and gid of the peer.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_peer_credentials")]
    internal static unsafe partial int PeerCredentials(SafeHandle socket, long* pid, long* uid,
                                                       long* gid);
}
