// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_check_fd: one descriptor against one rule, as fdsend_check_fds checks
    /// descriptor <paramref name="index"/>, closing nothing. The caller holds fd for the call.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_check_fd")]
    internal static partial int CheckFd(FdRuleNative* rule, nint fd, int index, ViolationNative* violation);
}
