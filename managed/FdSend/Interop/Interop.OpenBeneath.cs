// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_open_beneath: a read-only regular file beneath dirfd, no "..", no
    /// absolute path, no symbolic link; *fd is the caller's (-1 on failure). The path is the
    /// NUL-terminated bytes a broker's request carried (any bytes but NUL).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_open_beneath")]
    internal static partial int OpenBeneath(SafeHandle dirfd, byte* path, uint flags, nint* fd);
}
