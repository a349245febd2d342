// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_send_to: one datagram to the socket bound at <paramref name="path"/>
    /// ('@' prefix: Linux abstract namespace). The path is marshalled as UTF-8 (on the stack
    /// for any path that fits in sun_path).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_send_to",
                   StringMarshalling = StringMarshalling.Utf8)]
    internal static unsafe partial long SendTo(SafeHandle socket, string path, byte* buffer,
                                               nuint length, nint* fds, int fdCount, uint flags);
}
