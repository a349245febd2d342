// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>P/Invoke declarations: one file per native function (Interop.&lt;Name&gt;.cs).</summary>
internal static partial class Interop
{
    internal static class Libraries
    {
        /// <summary>The native library, named libfdsend on every OS (a native fdsend.dll would
        /// collide with the managed FdSend.dll on case-insensitive file systems).</summary>
        internal const string FdSend = "libfdsend";

        /// <summary>The C library (for close(2)); mapped to the real file name per OS by
        /// <see cref="NativeLibraryResolver"/>.</summary>
        internal const string Libc = "libc";

        /// <summary>Windows' kernel32 (CloseHandle for received handles).</summary>
        internal const string Kernel32 = "kernel32.dll";
    }

    // Every P/Invoke in this assembly goes through a static method of this class, so the
    // resolver is registered before the first native call. It is the assembly's only static
    // mutable state.
    static Interop() => NativeLibraryResolver.Register();
}
