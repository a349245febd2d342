// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_peek: copies the next message's first bytes without consuming
    /// anything (no descriptor is taken); waits as fdsend_recv (FDSEND_DONTWAIT: never).
    /// POSIX only (FDSEND_ENOTSUP on Windows).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_peek")]
    internal static unsafe partial long Peek(SafeHandle socket, byte* buffer, nuint length, uint flags);
}
