// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    internal const uint PollIn = 0x1, PollOut = 0x2, PollErr = 0x4, PollEdge = 0x100, PollOneShot = 0x200;

    /// <summary>fdsend_poll_event: a ready registration's token and FDSEND_POLL_* bits.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct PollEvent
    {
        public ulong Token;
        public uint Events;
        public uint Reserved;
    }

    /// <summary>The readiness engine of libfdsend (epoll / kqueue; WSAPoll on Windows); used by
    /// <see cref="ReadinessEngine"/>'s one thread and by the sockets it registers.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_poller_create")]
    internal static unsafe partial int PollerCreate(nint* poller);

    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_poller_add")]
    internal static partial int PollerAdd(nint poller, nint fd, uint events, ulong token);

    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_poller_modify")]
    internal static partial int PollerModify(nint poller, nint fd, uint events, ulong token);

    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_poller_remove")]
    internal static partial int PollerRemove(nint poller, nint fd);

    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_poller_wait")]
    internal static unsafe partial int PollerWait(nint poller, PollEvent* events, int max, int timeoutMs);
}
