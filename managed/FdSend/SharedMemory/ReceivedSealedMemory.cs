// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>
/// Received shared memory, mapped read-only after its seals and size were checked
/// (<see cref="SealedMemoryExtensions.TakeSealedMemory"/>): the sender can no longer shrink it,
/// so reading it cannot raise SIGBUS. Dispose it to unmap; spans and streams obtained from it
/// must not be used afterwards.
/// </summary>
public sealed unsafe class ReceivedSealedMemory : IDisposable
{
    private readonly MappingHandle _mapping;

    internal ReceivedSealedMemory(void* address, long length, FdInfo info)
    {
        _mapping = new MappingHandle((nint)address, (nuint)length);
        Length = length;
        Info = info;
    }

    /// <summary>The size in bytes.</summary>
    public long Length { get; }

    /// <summary>What the memfd was when it was checked (kind, seals, size).</summary>
    public FdInfo Info { get; }

    /// <summary>The seals in force when it was checked (seals are never removed).</summary>
    public FdSeals Seals => Info.Seals;

    /// <summary>The contents. Valid until this object is disposed.</summary>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    /// <exception cref="InvalidOperationException">Larger than a span can hold (2 GiB); use
    /// <see cref="CreateStream"/>.</exception>
    public ReadOnlySpan<byte> Span
    {
        get
        {
            ObjectDisposedException.ThrowIf(_mapping.IsClosed, this);
            if (Length > int.MaxValue)
                throw new InvalidOperationException("The memory is larger than a span can hold; use CreateStream.");
            return new ReadOnlySpan<byte>((void*)_mapping.DangerousGetHandle(), (int)Length);
        }
    }

    /// <summary>A read-only stream over the contents; keeps the mapping alive while it is open
    /// (dispose the stream too).</summary>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    public Stream CreateStream()
    {
        ObjectDisposedException.ThrowIf(_mapping.IsClosed, this);
        return new MappingStream(_mapping, Length);
    }

    /// <summary>Unmaps the memory. Idempotent.</summary>
    public void Dispose() => _mapping.Dispose();

    /// <summary>Owns a mapping made by fdsend_shm_map.</summary>
    private sealed class MappingHandle : SafeHandle
    {
        private readonly nuint _length;

        internal MappingHandle(nint address, nuint length) : base(0, ownsHandle: true)
        {
            SetHandle(address);
            _length = length;
        }

        public override bool IsInvalid => handle == 0;

        protected override bool ReleaseHandle() => Interop.ShmUnmap((void*)handle, _length) == 0;
    }

    /// <summary>An UnmanagedMemoryStream that holds a reference on the mapping.</summary>
    private sealed class MappingStream : UnmanagedMemoryStream
    {
        private MappingHandle? _held;

        internal MappingStream(MappingHandle mapping, long length)
        {
            bool added = false;
            mapping.DangerousAddRef(ref added);
            _held = mapping;
            Initialize((byte*)mapping.DangerousGetHandle(), length, length, FileAccess.Read);
        }

        protected override void Dispose(bool disposing)
        {
            base.Dispose(disposing);
            Interlocked.Exchange(ref _held, null)?.DangerousRelease();
        }
    }
}
