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

    // No static constructor here: with one, every method compiled before the class was
    // initialized (the ones with stackalloc and a loop skip tiering and stay so) pays a
    // class-initialization check at each P/Invoke. The resolver is registered by the
    // module initializer (NativeLibraryResolver), before any code of this assembly runs.
}
