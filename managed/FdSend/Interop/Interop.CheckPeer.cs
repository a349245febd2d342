// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_check_peer: the credentials of the socket's peer against the policy's
    /// FDSEND_POLICY_CHECK_* options. Nothing is received or closed. The marshaller holds a
    /// reference on <paramref name="socket"/> for the call.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_check_peer")]
    internal static partial int CheckPeer(SafeHandle socket, PolicyNative* policy, ViolationNative* violation);
}
