// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_strerror: a static English description (never NULL, never freed).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_strerror")]
    internal static unsafe partial byte* StrErrorNative(int code);

    internal static unsafe string StrError(int code) =>
        Marshal.PtrToStringUTF8((nint)StrErrorNative(code)) ?? string.Empty;
}
