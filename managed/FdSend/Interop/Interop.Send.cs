// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_send: data plus descriptors in one message on a connected socket.
    /// The marshaller holds a reference on <paramref name="socket"/> for the call.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_send")]
    internal static unsafe partial long Send(SafeHandle socket, byte* buffer, nuint length,
                                             nint* fds, int fdCount, uint flags);
}
