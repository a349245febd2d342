// SPDX-License-Identifier: MIT
namespace FdSend;

/// <summary>Library-wide facts about descriptor passing.</summary>
public static class FdPassing
{
    /// <summary>The most descriptors one message carries: 253, Linux's SCM_MAX_FD, which
    /// libfdsend applies on every operating system (fdsend_max_fds()). Sending more in one
    /// call throws <see cref="ArgumentException"/>; send them in several messages.</summary>
    public const int MaxFds = 253;

    /// <summary>The version of the native libfdsend this process loaded
    /// ("MAJOR.MINOR.PATCH"). Reading it loads the native library, so it is also a quick
    /// check that the library is found (<see cref="DllNotFoundException"/> otherwise).</summary>
    public static string NativeVersion => Interop.Version();

    /// <summary>The limit the loaded native library reports (fdsend_max_fds()); equal to
    /// <see cref="MaxFds"/>.</summary>
    public static int NativeMaxFds => Interop.MaxFds();

    /// <summary>
    /// Describes the descriptor behind <paramref name="handle"/> without changing it: its
    /// kind, access mode, flags, socket family/type/listening state, size, memfd seals. For
    /// received descriptors, use <see cref="ReceivedFds.Describe"/> before taking them.
    /// </summary>
    /// <param name="handle">Any handle that owns an open descriptor (SafeFileHandle,
    /// SafeSocketHandle, SafePipeHandle...); referenced for the call.</param>
    /// <exception cref="ArgumentNullException"><paramref name="handle"/> is null.</exception>
    /// <exception cref="ObjectDisposedException">The handle is closed, or its descriptor is not open.</exception>
    public static FdInfo Describe(System.Runtime.InteropServices.SafeHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return FdSendCore.Describe(handle.DangerousGetHandle());
        }
        finally
        {
            if (added)
                handle.DangerousRelease();
        }
    }

    /// <summary>
    /// Duplicates the descriptor behind <paramref name="handle"/> into a new close-on-exec
    /// descriptor for the same open file (the same socket, with the same listen queue), which
    /// the caller owns: the raw number to give an API that takes ownership of a descriptor,
    /// e.g. Kestrel's <c>ListenHandle</c>, while <paramref name="handle"/> stays yours (two
    /// owners that each close their own descriptor, never the other's).
    /// </summary>
    /// <param name="handle">An open handle (a Socket's SafeHandle, a SafeFileHandle...);
    /// referenced for the call.</param>
    /// <returns>The new descriptor (a HANDLE value on Windows); close it, or hand it on.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="handle"/> is null.</exception>
    /// <exception cref="ObjectDisposedException">The handle is closed.</exception>
    /// <exception cref="System.Net.Sockets.SocketException">The descriptor table is full
    /// (<see cref="System.Net.Sockets.SocketError.TooManyOpenSockets"/>).</exception>
    public static unsafe int DuplicateRawFd(System.Runtime.InteropServices.SafeHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        ObjectDisposedException.ThrowIf(handle.IsClosed, handle);
        nint fd = -1;
        int result = Interop.Dup(handle, &fd);
        if (result < 0)
            throw FdSendErrors.Create(result, FdOperation.Describe);
        return (int)fd;
    }

    /// <summary>
    /// Makes the descriptor behind <paramref name="handle"/> inheritable by programs this
    /// process starts (<paramref name="inheritable"/> true: FD_CLOEXEC cleared), or
    /// close-on-exec (false). Descriptors this library creates or receives are already
    /// close-on-exec; use it for descriptors that came another way, e.g. systemd's
    /// socket-activated <c>LISTEN_FDS</c>, which are inherited by every child until cleared.
    /// </summary>
    /// <param name="handle">An open handle; referenced for the call.</param>
    /// <param name="inheritable">True to keep it across exec, false for close-on-exec.</param>
    /// <exception cref="ArgumentNullException"><paramref name="handle"/> is null.</exception>
    /// <exception cref="ObjectDisposedException">The handle is closed, or its descriptor is not open.</exception>
    public static void SetInheritable(System.Runtime.InteropServices.SafeHandle handle, bool inheritable)
    {
        ArgumentNullException.ThrowIfNull(handle);
        ObjectDisposedException.ThrowIf(handle.IsClosed, handle);
        int result = Interop.SetInheritable(handle, inheritable ? 1 : 0);
        if (result < 0)
            throw FdSendErrors.Create(result, FdOperation.Describe);
    }

    /// <summary>
    /// Closes descriptors that you own, typically the ones a span overload of
    /// <c>ReceiveFds</c> stored that you do not keep, in one call into libfdsend
    /// (fdsend_close_all) instead of one per descriptor: with many descriptors per message
    /// that is most of the cost of closing them. Negative entries are skipped (use -1 for a
    /// slot you handed on). Allocates nothing.
    /// </summary>
    /// <param name="fds">The descriptors (HANDLE values on Windows) to close.</param>
    /// <exception cref="ArgumentException">An entry was not an open descriptor (a bug:
    /// closed twice?). Every other entry was still closed.</exception>
    public static unsafe void CloseAll(ReadOnlySpan<int> fds)
    {
        const int Chunk = 256;
        nint* batch = stackalloc nint[Chunk];
        bool notOpen = false;
        for (int start = 0; start < fds.Length; start += Chunk)
        {
            int n = Math.Min(Chunk, fds.Length - start);
            for (int i = 0; i < n; i++)
                batch[i] = fds[start + i];
            if (Interop.CloseAll(batch, n) == (int)Interop.Status.EBADF)
                notOpen = true;
        }
        if (notOpen)
            throw new ArgumentException(
                "At least one entry was not an open descriptor (already closed, or never opened); every other entry was closed.",
                nameof(fds));
    }
}
