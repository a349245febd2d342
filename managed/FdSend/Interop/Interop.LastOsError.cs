// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_last_os_error: the errno saved by the last failing call on this thread.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_last_os_error")]
    internal static partial int LastOsError();
}
