// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>close(2), for received descriptors nobody took. Used only on descriptors this
    /// assembly owns exclusively (fresh from fdsend_recv), so a failure (EINTR on some
    /// systems, EIO) cannot be retried safely and is ignored: Linux frees the descriptor
    /// number whatever close returns.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "close", SetLastError = true)]
    internal static partial int Close(int fd);
}
