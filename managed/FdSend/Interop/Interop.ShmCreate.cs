// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_shm_create: a memfd holding data[0 .. len), sealed with seals
    /// (FDSEND_SEAL_* bits, the values of <see cref="FdSeals"/>); *fd is the caller's.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_shm_create",
                   StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int ShmCreate(string? name, byte* data, nuint len, uint seals, nint* fd);
}
