// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

internal static unsafe partial class Interop
{
    /// <summary>fdsend_shm_map: maps a memfd read-only once F_SEAL_SHRINK, required_seals and
    /// the size bounds hold (FDSEND_ENOTSEALED otherwise). The descriptor is passed as a raw
    /// number: the caller holds it (ReceivedFds ownership) for the call.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_shm_map")]
    internal static partial int ShmMap(nint fd, uint requiredSeals, long minSize, long maxSize,
                                       void** addr, nuint* len);

    /// <summary>fdsend_shm_unmap: undoes <see cref="ShmMap"/>.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_shm_unmap")]
    internal static partial int ShmUnmap(void* addr, nuint len);
}
