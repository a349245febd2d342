// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_last_os_error: the OS error (errno / GetLastError) libfdsend saved for
    /// this thread's last failing call, 0 after a success. <see cref="FdSendErrors.Create"/>
    /// reads it on the error path, so the calls it serves need no <c>SetLastError</c> (which
    /// costs two errno calls around every successful call too).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_last_os_error")]
    internal static partial int LastOsError();
}
