// SPDX-License-Identifier: MIT
namespace FdSend;

/// <summary>Taking received shared memory safely.</summary>
public static class SealedMemoryExtensions
{
    /// <summary>
    /// Takes descriptor <paramref name="index"/> as read-only mapped memory, ONLY if it is a
    /// memfd sealed against shrinking (always required: otherwise the sender could truncate it
    /// and every read of the mapping past the new end would kill this process with SIGBUS) and
    /// with every seal of <paramref name="requiredSeals"/>, and its size is within bounds. The
    /// seals are read before the size, so the size cannot shrink in between. On success the
    /// descriptor is taken and closed (the mapping does not need it).
    /// </summary>
    /// <param name="fds">The received message.</param>
    /// <param name="index">Which descriptor.</param>
    /// <param name="requiredSeals">Seals required besides <see cref="FdSeals.Shrink"/>; the
    /// default <see cref="FdSeals.Write"/> means the contents cannot change under you.</param>
    /// <param name="minSize">The smallest size accepted.</param>
    /// <param name="maxSize">The largest size accepted; null for no bound.</param>
    /// <returns>The mapped memory; dispose it to unmap.</returns>
    /// <exception cref="FdPolicyViolationException">Not a memfd
    /// (<see cref="FdPolicyViolationReason.Kind"/>), a seal missing
    /// (<see cref="FdPolicyViolationReason.Seals"/>) or the size out of bounds
    /// (<see cref="FdPolicyViolationReason.Size"/>): nothing was mapped and the descriptor
    /// stays untaken (owned by <paramref name="fds"/>, closed when it is disposed).</exception>
    /// <exception cref="PlatformNotSupportedException">This OS has no memfd seals.</exception>
    /// <exception cref="InvalidOperationException">The descriptor was already taken.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="fds"/> is disposed.</exception>
    public static unsafe ReceivedSealedMemory TakeSealedMemory(this ReceivedFds fds, int index,
                                                               FdSeals requiredSeals = FdSeals.Write,
                                                               long minSize = 0, long? maxSize = null)
    {
        ArgumentNullException.ThrowIfNull(fds);
        ArgumentOutOfRangeException.ThrowIfNegative(minSize);
        if (maxSize is long max)
            ArgumentOutOfRangeException.ThrowIfLessThan(max, minSize, nameof(maxSize));
        FdSealBits.ThrowIfUnknown(requiredSeals, nameof(requiredSeals));
        FdInfo info = fds.Describe(index); // throws if taken or disposed
        void* addr;
        nuint len;
        int rc = Interop.ShmMap(fds.PeekFd(index), (uint)requiredSeals, minSize, maxSize ?? -1, &addr, &len);
        if (rc == (int)Interop.Status.ENOTSEALED)
        {
            FdRule rule = FdRule.SealedMemory(requiredSeals, minSize, maxSize);
            throw rule.Check(fds, index) ?? new FdPolicyViolationException(FdPolicyViolationReason.Seals, index,
                fds.Describe(index), fds.Count, $"descriptor {index} is not memory sealed with {requiredSeals | FdSeals.Shrink}");
        }
        if (rc == (int)Interop.Status.ENOTSUP)
            throw new PlatformNotSupportedException("Received shared memory can be checked only where memfd seals exist (Linux).");
        if (rc < 0)
            throw new IOException($"Could not map the shared memory: {Interop.StrError(rc)}.");
        var memory = new ReceivedSealedMemory(addr, (long)len, info with { Size = (long)len });
        try
        {
            FdPassing.CloseAll([fds.TakeRawFd(index)]);
        }
        catch
        {
            memory.Dispose();
            throw;
        }
        return memory;
    }
}
