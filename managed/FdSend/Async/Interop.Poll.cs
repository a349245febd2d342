// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>struct pollfd: the same layout on every POSIX system (int, short, short).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd
    {
        internal int Fd;
        internal short Events;
        internal short REvents;
    }

    /// <summary>poll(2) event bits: the same values on Linux, macOS, the BSDs and illumos.</summary>
    internal const short POLLIN = 0x0001;
    internal const short POLLOUT = 0x0004;
    internal const short POLLERR = 0x0008;
    internal const short POLLHUP = 0x0010;
    internal const short POLLNVAL = 0x0020;

    /// <summary>poll(2), used only by <see cref="WritableWaiter"/>'s one thread. nfds_t is an
    /// unsigned long on Linux and the BSDs, an unsigned int on macOS: passing a nuint is right
    /// for the former and harmless (a register argument) for the latter.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "poll", SetLastError = true)]
    internal static unsafe partial int Poll(PollFd* fds, nuint count, int timeoutMs);
}
