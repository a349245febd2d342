// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_open_directory: O_RDONLY | O_DIRECTORY | O_CLOEXEC; *fd is the caller's.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_open_directory",
                   StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int OpenDirectory(string path, nint* fd);
}
