// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_fd_info_t, field for field (40 bytes on every platform).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct FdInfoNative
    {
        internal uint StructSize;
        internal int Kind;
        internal int Access;
        internal uint Flags;
        internal int Family;
        internal int SocketType;
        internal long Size;
        internal uint Seals;
        internal uint Reserved;
    }

    /// <summary>FDSEND_FD_* bits of <see cref="FdInfoNative.Flags"/>.</summary>
    internal const uint FDSEND_FD_CLOEXEC = 1, FDSEND_FD_NONBLOCK = 2, FDSEND_FD_LISTENING = 4, FDSEND_FD_APPEND = 8;

    /// <summary>FDSEND_FAMILY_* values of <see cref="FdInfoNative.Family"/> for a socket.</summary>
    internal const int FDSEND_FAMILY_UNIX = 1, FDSEND_FAMILY_INET = 2, FDSEND_FAMILY_INET6 = 3, FDSEND_FAMILY_OTHER = 4;

    /// <summary>fdsend_fd_info: describes fd without changing it. The descriptor is passed as
    /// a raw number: callers hold it (a SafeHandle reference or ownership) for the call.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_fd_info")]
    internal static partial int FdInfo(nint fd, FdInfoNative* info);
}
