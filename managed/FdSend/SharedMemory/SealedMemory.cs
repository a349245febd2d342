// SPDX-License-Identifier: MIT
using Microsoft.Win32.SafeHandles;

namespace FdSend;

/// <summary>
/// Shared memory to SEND: a Linux memfd filled with your bytes and sealed, so that no one
/// (you included) can shrink, grow or write it any more: a receiver can map it without fear
/// of SIGBUS or of contents changing under it. Send <see cref="Handle"/> (it converts to a
/// <see cref="Descriptor"/>); the receiver takes it with
/// <see cref="SealedMemoryExtensions.TakeSealedMemory"/>.
/// </summary>
/// <remarks>Linux only: the BSDs and macOS have no seals (libfdsend makes unsealed POSIX
/// shared memory there, which a checked receiver refuses), so <see cref="Create"/> with seals
/// throws <see cref="PlatformNotSupportedException"/> there.</remarks>
public sealed class SealedMemory : IDisposable
{
    private SealedMemory(SafeFileHandle handle, long length, FdSeals seals)
    {
        Handle = handle;
        Length = length;
        Seals = seals;
    }

    /// <summary>The memfd; owned by this object (disposing it closes the descriptor; the
    /// receivers keep their own).</summary>
    public SafeFileHandle Handle { get; }

    /// <summary>The size in bytes.</summary>
    public long Length { get; }

    /// <summary>The seals applied.</summary>
    public FdSeals Seals { get; }

    /// <summary>Creates sealed memory holding <paramref name="data"/>.</summary>
    /// <param name="data">The contents.</param>
    /// <param name="seals">The seals to apply; the default makes it immutable. Add
    /// <see cref="FdSeals.Seal"/> to forbid further seals.</param>
    /// <param name="name">A name for debugging (/proc/&lt;pid&gt;/fd shows "memfd:name").</param>
    /// <exception cref="PlatformNotSupportedException">No memfd seals on this OS.</exception>
    /// <exception cref="ArgumentException"><paramref name="seals"/> has unknown bits, or
    /// <paramref name="name"/> contains a NUL.</exception>
    /// <exception cref="IOException">The OS refused (out of memory or descriptors).</exception>
    public static unsafe SealedMemory Create(ReadOnlySpan<byte> data,
                                             FdSeals seals = FdSeals.Shrink | FdSeals.Grow | FdSeals.Write,
                                             string? name = null)
    {
        FdSealBits.ThrowIfUnknown(seals, nameof(seals));
        if (name is not null && name.Contains('\0'))
            throw new ArgumentException("The name contains a NUL character.", nameof(name));
        nint fd;
        int rc;
        fixed (byte* p = data)
            rc = Interop.ShmCreate(name ?? "fdsend", p, (nuint)data.Length, (uint)seals, &fd);
        if (rc < 0)
        {
            int os = Interop.LastOsError();
            string text = Interop.StrError(rc);
            throw (Interop.Status)rc switch
            {
                Interop.Status.ENOTSUP => new PlatformNotSupportedException(
                    $"Sealed shared memory needs Linux memfd seals ({text}); this OS can share memory only unsealed (seals: None)."),
                Interop.Status.EINVAL => new ArgumentException(text, nameof(seals)),
                _ => new IOException($"Could not create sealed memory: {text} (errno {os})."),
            };
        }
        return new SealedMemory(new SafeFileHandle(fd, ownsHandle: true), data.Length, seals);
    }

    /// <summary>The memfd as a <see cref="Descriptor"/> to send.</summary>
    /// <param name="memory">The memory.</param>
    public static implicit operator Descriptor(SealedMemory memory) => Descriptor.FromHandle(memory.Handle);

    /// <summary>Closes this process's descriptor (receivers keep theirs).</summary>
    public void Dispose() => Handle.Dispose();
}
