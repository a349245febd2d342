// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static partial class Interop
{
    /// <summary>fdsend_wait: waits until the socket is readable (<see cref="PollIn"/>) or
    /// writable (<see cref="PollOut"/>), an error or hang-up counting as ready, for at most
    /// timeoutMs (-1: no limit); a signal does not end it early. The blocking calls' wait on a
    /// socket .NET has made non-blocking (<see cref="FdSendCore"/>).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_wait")]
    internal static partial int Wait(SafeHandle socket, uint events, int timeoutMs);
}
