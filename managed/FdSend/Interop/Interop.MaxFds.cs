// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_max_fds: the most descriptors one message carries.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_max_fds")]
    internal static partial int MaxFds();
}
