// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>
/// A descriptor to send: a NON-owning reference to an open file descriptor, given as a
/// <see cref="SafeHandle"/> (any kind: <see cref="Microsoft.Win32.SafeHandles.SafeFileHandle"/>,
/// <see cref="SafeSocketHandle"/>, <see cref="Microsoft.Win32.SafeHandles.SafePipeHandle"/>,
/// <see cref="Microsoft.Win32.SafeHandles.SafeMemoryMappedFileHandle"/>...), a
/// <see cref="Socket"/> or a <see cref="FileStream"/> (each converts implicitly), or a raw
/// fd number through the explicit <see cref="FromRawFd"/> (an <see cref="int"/> does not
/// convert implicitly, so that a length or count cannot be sent as a descriptor by mistake).
/// </summary>
/// <remarks>
/// <para>Ownership: sending never closes or takes the descriptor. The caller still owns it
/// afterwards, whatever the outcome; the peer receives its own duplicate.</para>
/// <para>A handle-based descriptor is reference-counted
/// (<see cref="SafeHandle.DangerousAddRef"/>) for the whole native send, so a handle
/// disposed on another thread cannot be closed, and its number reused for another file,
/// in the middle of the send: the send either carries the right file or fails with
/// <see cref="ObjectDisposedException"/> before anything is sent. A raw <see cref="int"/>
/// has no such protection: keep it open until the send returns.</para>
/// <para><c>default(Descriptor)</c> refers to nothing; sending it throws
/// <see cref="ArgumentException"/> (it never silently means fd 0).</para>
/// </remarks>
public readonly struct Descriptor
{
    private readonly SafeHandle? _handle;
    private readonly int _fd;
    private readonly bool _isRawFd;

    private Descriptor(SafeHandle handle)
    {
        _handle = handle;
        _fd = -1;
        _isRawFd = false;
    }

    private Descriptor(int fd)
    {
        _handle = null;
        _fd = fd;
        _isRawFd = true;
    }

    /// <summary>The handle this descriptor refers to, or <see langword="null"/> for a raw fd
    /// or <c>default(Descriptor)</c>. Still owned by whoever created it.</summary>
    public SafeHandle? Handle => _handle;

    /// <summary>The raw fd given to <see cref="FromRawFd"/>, or -1 for a handle-based descriptor
    /// (use <see cref="Handle"/>).</summary>
    public int RawFd => _isRawFd ? _fd : -1;

    /// <summary><see langword="true"/> for <c>default(Descriptor)</c>, which refers to
    /// nothing.</summary>
    public bool IsEmpty => _handle is null && !_isRawFd;

    /// <summary>Refers to the descriptor behind <paramref name="handle"/>; the caller keeps
    /// owning the handle.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="handle"/> is null.</exception>
    public static Descriptor FromHandle(SafeHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        return new Descriptor(handle);
    }

    /// <summary>Refers to <paramref name="socket"/>'s descriptor (through
    /// <see cref="Socket.SafeHandle"/>); the caller keeps owning the socket. This is how a
    /// listening socket is handed to another process.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="socket"/> is null.</exception>
    public static Descriptor FromSocket(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        return new Descriptor(socket.SafeHandle);
    }

    /// <summary>Refers to <paramref name="stream"/>'s descriptor (through
    /// <see cref="FileStream.SafeFileHandle"/>, which flushes the stream's write buffer);
    /// the caller keeps owning the stream. The receiver shares the file offset.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="stream"/> is disposed.</exception>
    public static Descriptor FromStream(FileStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return new Descriptor(stream.SafeFileHandle);
    }

    /// <summary>Refers to the raw file descriptor NUMBER <paramref name="fd"/>, which the caller
    /// owns and must keep open until the send returns (prefer a handle, which cannot be
    /// closed mid-send). There is deliberately no implicit conversion from <see cref="int"/>:
    /// <c>socket.SendFds(data, data.Length)</c> would otherwise compile and send whatever file
    /// has that number.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="fd"/> is negative.</exception>
    public static Descriptor FromRawFd(int fd)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        return new Descriptor(fd);
    }

    /// <summary>Same as <see cref="FromHandle"/>.</summary>
    public static implicit operator Descriptor(SafeHandle handle) => FromHandle(handle);

    /// <summary>Same as <see cref="FromSocket"/>.</summary>
    public static implicit operator Descriptor(Socket socket) => FromSocket(socket);

    /// <summary>Same as <see cref="FromStream"/>.</summary>
    public static implicit operator Descriptor(FileStream stream) => FromStream(stream);

    /// <inheritdoc/>
    public override string ToString() =>
        _handle is not null ? $"{_handle.GetType().Name}" :
        _isRawFd ? $"fd {_fd}" : "(empty)";

    /// <summary>
    /// The fd to put in the message. For a handle, adds a reference first
    /// (<paramref name="referenced"/> becomes true; the caller releases it after the native
    /// call, also when this throws after adding).
    /// </summary>
    internal nint AddRefAndGetFd(int index, ref bool referenced)
    {
        if (_handle is null)
        {
            if (!_isRawFd)
                throw new ArgumentException(
                    $"The descriptor at index {index} is default(Descriptor), which refers to no file descriptor. " +
                    "Pass a SafeHandle, Socket, FileStream or Descriptor.FromRawFd(fd).", "fds");
            return _fd;
        }

        if (_handle.IsClosed)
            throw DisposedHandle(index);
        if (_handle.IsInvalid)
            throw new ArgumentException(
                $"The descriptor at index {index} is an invalid {_handle.GetType().Name} (it holds no file descriptor). Nothing was sent.",
                "fds");
        try
        {
            _handle.DangerousAddRef(ref referenced);
        }
        catch (ObjectDisposedException)
        {
            throw DisposedHandle(index);
        }
        return _handle.DangerousGetHandle();
    }

    private ObjectDisposedException DisposedHandle(int index) =>
        new(_handle!.GetType().FullName,
            $"The {_handle.GetType().Name} at index {index} of the descriptors to send was disposed; nothing was sent. " +
            "Keep the handle (or the Socket/FileStream that owns it) open until the send returns.");
}
