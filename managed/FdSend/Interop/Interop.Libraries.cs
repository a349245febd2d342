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
    }

    // Every P/Invoke in this assembly goes through a static method of this class, so the
    // resolver is registered before the first native call. It is the assembly's only static
    // mutable state.
    static Interop() => NativeLibraryResolver.Register();
}
