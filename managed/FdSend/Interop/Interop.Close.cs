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

    /// <summary>CloseHandle, for received HANDLEs on Windows (where libfdsend passes handles
    /// by duplication; their values fit in 32 bits, as Windows guarantees for kernel
    /// handles).</summary>
    [LibraryImport(Libraries.Kernel32, EntryPoint = "CloseHandle", SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    internal static partial bool CloseHandle(nint handle);

    /// <summary>Closes a received descriptor (a HANDLE on Windows).</summary>
    internal static void CloseDescriptor(int fd)
    {
        if (OperatingSystem.IsWindows())
            CloseHandle(fd);
        else
            Close(fd);
    }
}
