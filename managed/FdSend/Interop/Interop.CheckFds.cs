// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_check_fds: the count and every descriptor of a message against a
    /// policy. On FDSEND_EPOLICY it has closed EVERY descriptor of fds and set each entry to -1
    /// (an entry of -1 is counted but not checked). The descriptors are raw numbers: callers
    /// hold them (ReceivedFds' gate) for the call.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_check_fds")]
    internal static partial int CheckFds(PolicyNative* policy, nint* fds, int fdCount, ViolationNative* violation);
}
