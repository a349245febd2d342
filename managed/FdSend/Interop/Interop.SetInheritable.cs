// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_set_inheritable: clears (inheritable != 0) or sets close-on-exec.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_set_inheritable")]
    internal static partial int SetInheritable(SafeHandle fd, int inheritable);
}
