// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_check_received: the count and every descriptor of a received message
    /// against a policy (fdsend_check_fds), FDSEND_RECV_FDS_TRUNCATED in
    /// <paramref name="receiveFlags"/> counting as too many. On FDSEND_EPOLICY it has closed
    /// EVERY descriptor of fds and set each entry to -1 (an entry of -1 is counted but not
    /// checked). The descriptors are raw numbers: callers hold them (ReceivedFds' gate) for
    /// the call.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_check_received")]
    internal static partial int CheckReceived(PolicyNative* policy, nint* fds, int fdCount, uint receiveFlags,
                                              ViolationNative* violation);
}
