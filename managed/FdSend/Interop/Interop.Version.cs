// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_version: "MAJOR.MINOR.PATCH" (static string).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_version")]
    internal static unsafe partial byte* VersionNative();

    internal static unsafe string Version() =>
        Marshal.PtrToStringUTF8((nint)VersionNative()) ?? string.Empty;
}
