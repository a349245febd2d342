// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_close_all: closes fds[0 .. count) (HANDLEs on Windows) in one call;
    /// negative entries are skipped. FDSEND_EBADF if one was not open (the rest are closed
    /// anyway). A failing close is not retried: the number is free whatever close returns.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_close_all")]
    internal static partial int CloseAll(nint* fds, int count);
}
