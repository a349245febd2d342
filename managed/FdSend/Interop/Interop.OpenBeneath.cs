// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_open_beneath: a read-only regular file beneath dirfd, no "..", no
    /// absolute path, no symbolic link; *fd is the caller's (-1 on failure).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_open_beneath",
                   StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int OpenBeneath(SafeHandle dirfd, string path, uint flags, nint* fd);
}
