// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_dup: a new close-on-exec descriptor for the same open file, owned by
    /// the caller (*out; -1 on failure).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_dup")]
    internal static partial int Dup(SafeHandle fd, nint* result);
}
