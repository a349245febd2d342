// SPDX-License-Identifier: MIT
using System.IO.MemoryMappedFiles;
using System.IO.Pipes;
using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;

namespace FdSend;

/// <summary>
/// One received message: how many data bytes arrived (in the caller's buffer), what had to
/// be dropped, and the descriptors that came with it, which this object OWNS until you take
/// them.
/// </summary>
/// <remarks>
/// <para>Ownership: each descriptor can be taken exactly once, by one of the <c>Take*</c>
/// methods, which transfer it to the object they return (close that object to close the
/// descriptor). <see cref="Dispose"/> closes every descriptor not taken; so does the
/// finalizer if you forget to dispose. Always use <c>using</c>.</para>
/// <para>Received descriptors are close-on-exec: child processes do not inherit them unless
/// you clear FD_CLOEXEC yourself.</para>
/// <para>Thread-safe: <c>Take*</c>, <see cref="Describe"/> and <see cref="Dispose"/> may be
/// called from several threads at once; each descriptor is handed out at most once and
/// <see cref="Dispose"/> closes exactly the ones nobody took.</para>
/// </remarks>
public sealed class ReceivedFds : IDisposable
{
    private const int TakenFd = -1;

    // The first descriptor is stored inline; the rest (if any) in one array: a receive costs
    // this object plus at most one array.
    private int _fd0;
    private int[]? _more;
    private int _count;
    private bool _disposed;
    // Guards the slots and _disposed (1 while held; see Hold): a take, a description and
    // Dispose each see every slot either owned here or taken, never half-way. A spin-then-yield
    // flag rather than a lock object, so that a receive still allocates only this object and
    // at most one array; contention means two threads racing over one message, which is rare.
    private int _busy;

    /// <summary>Takes ownership of <paramref name="fds"/>. Nothing can throw after the
    /// array allocation, so a failed construction owns (and the finalizer closes) nothing.</summary>
    internal ReceivedFds(ReadOnlySpan<nint> fds, int bytesReceived, ReceiveFlags flags, bool isEndOfStream)
    {
        BytesReceived = bytesReceived;
        Flags = flags;
        IsEndOfStream = isEndOfStream;
        int[]? more = fds.Length > 1 ? new int[fds.Length - 1] : null;
        _fd0 = fds.Length > 0 ? (int)fds[0] : TakenFd;
        for (int i = 1; i < fds.Length; i++)
            more![i - 1] = (int)fds[i];
        _more = more;
        _count = fds.Length;
        if (_count == 0)
            GC.SuppressFinalize(this); // nothing to close: skip the finalization queue
    }

    /// <summary>Closes the descriptors nobody took, if <see cref="Dispose"/> was not called.</summary>
    ~ReceivedFds() => CloseUntaken();

    /// <summary>Number of data bytes stored at the start of the receive buffer.</summary>
    public int BytesReceived { get; }

    /// <summary>Number of descriptors received (taken or not). Index them 0 .. Count-1.</summary>
    public int Count => _count;

    /// <summary>What had to be dropped; see <see cref="ReceiveFlags"/>.</summary>
    public ReceiveFlags Flags { get; }

    /// <summary>The message had more data than the buffer held (or, on a stream socket with an
    /// empty buffer, the byte consumed was plain data, not a descriptor carrier).</summary>
    public bool DataTruncated => (Flags & ReceiveFlags.DataTruncated) != 0;

    /// <summary>More descriptors arrived than were asked for, or the kernel dropped some; the
    /// ones not stored here were closed.</summary>
    public bool FdsTruncated => (Flags & ReceiveFlags.FdsTruncated) != 0;

    /// <summary>On a stream socket: the peer closed its end (0 bytes, no descriptors, no
    /// flags). Always false for seqpacket and datagram sockets, where an empty message is
    /// legitimate.</summary>
    public bool IsEndOfStream { get; }

    /// <summary>Whether descriptor <paramref name="index"/> has been taken.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is not in 0 .. Count-1.</exception>
    public bool IsTaken(int index)
    {
        using (Hold())
            return Slot(index) == TakenFd;
    }

    /// <summary>The raw number of descriptor <paramref name="index"/> WITHOUT taking it: it
    /// stays owned by this object and is closed by <see cref="Dispose"/> (or the finalizer, if
    /// this object becomes unreachable), so do not close it and do not use it after that.</summary>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    /// <exception cref="InvalidOperationException">The descriptor was already taken.</exception>
    public int PeekFd(int index)
    {
        using (Hold())
            return Untaken(index);
    }

    /// <summary>
    /// Describes descriptor <paramref name="index"/> WITHOUT taking it: its kind (file,
    /// directory, pipe, socket, memfd...), access mode, flags, socket family/type/listening
    /// state, size and memfd seals. Check what a peer sent before you take or trust it.
    /// </summary>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    /// <exception cref="InvalidOperationException">The descriptor was already taken.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is not in 0 .. Count-1.</exception>
    public FdInfo Describe(int index)
    {
        using (Hold())
            return FdSendCore.Describe(Untaken(index));
    }

    /// <summary>Takes descriptor <paramref name="index"/> as a raw fd: the caller owns it from
    /// now on and must close it (close(2), or wrap it in a SafeHandle with ownsHandle: true).</summary>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    /// <exception cref="InvalidOperationException">The descriptor was already taken.</exception>
    public int TakeRawFd(int index)
    {
        using (Hold())
        {
            int fd = Untaken(index);
            MarkTaken(index);
            return fd;
        }
    }

    /// <summary>Takes descriptor <paramref name="index"/> as a <see cref="SafeFileHandle"/>
    /// that owns it (disposing the handle closes the descriptor). Works for any kind of
    /// descriptor; use it with <see cref="RandomAccess"/>, <see cref="FileStream"/> or
    /// <see cref="MemoryMappedFile.CreateFromFile(SafeFileHandle, string?, long, MemoryMappedFileAccess, HandleInheritability, bool)"/>.</summary>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    /// <exception cref="InvalidOperationException">The descriptor was already taken.</exception>
    public SafeFileHandle TakeFileHandle(int index)
    {
        using (Hold())
        {
            int fd = Untaken(index);
            var handle = new SafeFileHandle(fd, ownsHandle: true);
            MarkTaken(index);
            return handle;
        }
    }

    /// <summary>Takes descriptor <paramref name="index"/> as a <see cref="FileStream"/> that
    /// owns it (disposing the stream closes the descriptor). The stream shares the file
    /// offset with the sender's descriptor.</summary>
    /// <param name="index">Which descriptor (0 .. Count-1).</param>
    /// <param name="access">How the stream may be used; must fit how the sender opened it.</param>
    /// <param name="bufferSize">The stream's buffer size; 0 (the default) or 1 for no
    /// buffering, so that reads and writes reach the shared descriptor at once.</param>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    /// <exception cref="InvalidOperationException">The descriptor was already taken.</exception>
    /// <exception cref="ArgumentException">The descriptor is a directory or a socket, or
    /// FileStream rejected it (e.g. <paramref name="access"/> does not fit how it was opened);
    /// it then stays untaken and owned by this object.</exception>
    public FileStream TakeFileStream(int index, FileAccess access, int bufferSize = 0)
    {
        using (Hold())
        {
            int fd = Untaken(index);
            FdInfo info = FdSendCore.Describe(fd);
            if (info.Kind is FdKind.Directory or FdKind.Socket)
                throw new ArgumentException(
                    $"The descriptor at index {index} is a {(info.Kind == FdKind.Directory ? "directory" : "socket")}, which a FileStream cannot read or write; " +
                    (info.Kind == FdKind.Directory ? "take it with TakeFileHandle if you really want a directory handle." : "take it with TakeSocket."),
                    nameof(index));
            var handle = new SafeFileHandle(fd, ownsHandle: true);
            try
            {
                var stream = new FileStream(handle, access, bufferSize);
                MarkTaken(index);
                return stream;
            }
            catch
            {
                handle.SetHandleAsInvalid(); // the descriptor stays ours, untaken
                throw;
            }
        }
    }

    /// <summary>Takes descriptor <paramref name="index"/> as a <see cref="Socket"/> that owns
    /// it (through <see cref="SafeSocketHandle"/>; disposing the socket closes the
    /// descriptor). A received listening socket can accept connections at once, with sync and
    /// async calls alike, whatever mode the sender used: a descriptor that arrives O_NONBLOCK
    /// (any event-loop server's, or a .NET socket after an async call) stays O_NONBLOCK (the
    /// mode is shared with the sender, so it is not changed), and the returned socket reads
    /// <see cref="Socket.Blocking"/> true and waits in its sync calls as .NET does after an
    /// async call. A blocking descriptor stays blocking until you make an async call on it,
    /// which (as for any .NET socket) switches the shared descriptor to O_NONBLOCK.</summary>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    /// <exception cref="InvalidOperationException">The descriptor was already taken.</exception>
    /// <exception cref="ArgumentException">The descriptor is not a socket; it then stays
    /// untaken and owned by this object.</exception>
    public Socket TakeSocket(int index)
    {
        using (Hold())
        {
            int fd = Untaken(index);
            FdInfo info = FdSendCore.Describe(fd);
            if (!info.IsSocket)
                throw NotASocket(index, info);
            Socket socket = FdSendCore.SocketFromOwnedFd(fd, info.IsNonBlocking);
            MarkTaken(index);
            return socket;
        }
    }

    /// <summary>
    /// Takes every descriptor not taken yet, in index order, each as a <see cref="Socket"/>
    /// that owns it (as <see cref="TakeSocket"/> does): e.g. all the listeners a server hands
    /// its successor. All or nothing: if one of them is not a socket, none is taken.
    /// </summary>
    /// <returns>The sockets, in index order (empty if nothing is left to take).</returns>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    /// <exception cref="ArgumentException">A descriptor is not a socket; nothing was taken.</exception>
    public Socket[] TakeAllSockets()
    {
        using (Hold())
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            int n = UntakenCount();
            var infos = n == 0 ? Array.Empty<FdInfo>() : new FdInfo[n];
            for (int i = 0, k = 0; i < _count; i++)
            {
                int fd = Slot(i);
                if (fd == TakenFd)
                    continue;
                infos[k] = FdSendCore.Describe(fd);
                if (!infos[k].IsSocket)
                    throw NotASocket(i, infos[k]);
                k++;
            }
            var sockets = new Socket[n];
            int made = 0;
            try
            {
                for (int i = 0; i < _count; i++)
                {
                    int fd = Slot(i);
                    if (fd == TakenFd)
                        continue;
                    sockets[made] = FdSendCore.SocketFromOwnedFd(fd, infos[made].IsNonBlocking);
                    made++;
                }
            }
            catch
            {
                // Hand back what was made: the descriptors stay ours, untaken.
                for (int j = 0; j < made; j++)
                    sockets[j].SafeHandle.SetHandleAsInvalid();
                throw;
            }
            MarkAllTaken();
            return sockets;
        }
    }

    /// <summary>Takes every descriptor not taken yet, in index order, each as a
    /// <see cref="SafeFileHandle"/> that owns it (see <see cref="TakeFileHandle"/>).</summary>
    /// <returns>The handles, in index order (empty if nothing is left to take).</returns>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    public SafeFileHandle[] TakeAllFileHandles()
    {
        using (Hold())
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var handles = new SafeFileHandle[UntakenCount()];
            for (int i = 0, k = 0; i < _count; i++)
            {
                int fd = Slot(i);
                if (fd != TakenFd)
                    handles[k++] = new SafeFileHandle(fd, ownsHandle: true);
            }
            MarkAllTaken();
            return handles;
        }
    }

    /// <summary>Takes every descriptor not taken yet, in index order, as raw fds: the caller
    /// owns them from now on and must close them (e.g. <see cref="FdPassing.CloseAll"/>).</summary>
    /// <returns>The fds, in index order (empty if nothing is left to take).</returns>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    public int[] TakeAllRawFds()
    {
        using (Hold())
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var fds = new int[UntakenCount()];
            for (int i = 0, k = 0; i < _count; i++)
            {
                int fd = Slot(i);
                if (fd != TakenFd)
                    fds[k++] = fd;
            }
            MarkAllTaken();
            return fds;
        }
    }

    /// <summary>Takes descriptor <paramref name="index"/> (one end of a pipe, or a socket used
    /// like one) as an <see cref="AnonymousPipeClientStream"/> that owns it (disposing the
    /// stream closes the descriptor).</summary>
    /// <param name="index">Which descriptor (0 .. Count-1).</param>
    /// <param name="direction"><see cref="PipeDirection.In"/> to read from it,
    /// <see cref="PipeDirection.Out"/> to write to it.</param>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    /// <exception cref="InvalidOperationException">The descriptor was already taken.</exception>
    /// <exception cref="IOException">The descriptor is not a pipe or socket; it then stays
    /// untaken and owned by this object.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="direction"/> is
    /// <see cref="PipeDirection.InOut"/> (anonymous pipe streams are one-way).</exception>
    public AnonymousPipeClientStream TakePipe(int index, PipeDirection direction)
    {
        if (direction is not (PipeDirection.In or PipeDirection.Out))
            throw new ArgumentOutOfRangeException(nameof(direction),
                "A pipe stream is one-way: use PipeDirection.In to read or PipeDirection.Out to write.");
        using (Hold())
        {
            int fd = Untaken(index);
            var handle = new SafePipeHandle(fd, ownsHandle: true);
            try
            {
                var stream = new AnonymousPipeClientStream(direction, handle);
                MarkTaken(index);
                return stream;
            }
            catch
            {
                handle.SetHandleAsInvalid();
                throw;
            }
        }
    }

    /// <summary>Takes descriptor <paramref name="index"/> (a regular file or a memfd) as a
    /// <see cref="MemoryMappedFile"/> that owns it (disposing the mapping closes the
    /// descriptor).</summary>
    /// <param name="index">Which descriptor (0 .. Count-1).</param>
    /// <param name="access">The mapping's access; must fit how the sender opened the file.</param>
    /// <param name="capacity">The mapping's size; 0 (the default) for the file's size.</param>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    /// <exception cref="InvalidOperationException">The descriptor was already taken.</exception>
    /// <exception cref="ArgumentException">The file is empty and <paramref name="capacity"/>
    /// is 0, or the capacity does not fit; the descriptor then stays untaken.</exception>
    public MemoryMappedFile TakeMemoryMappedFile(int index,
        MemoryMappedFileAccess access = MemoryMappedFileAccess.ReadWrite, long capacity = 0)
    {
        using (Hold())
        {
            int fd = Untaken(index);
            var handle = new SafeFileHandle(fd, ownsHandle: true);
            try
            {
                var mapped = MemoryMappedFile.CreateFromFile(handle, null, capacity, access,
                                                             HandleInheritability.None, leaveOpen: false);
                MarkTaken(index);
                return mapped;
            }
            catch
            {
                handle.SetHandleAsInvalid();
                throw;
            }
        }
    }

    /// <summary>Closes every descriptor that was not taken. Taken ones belong to their new
    /// owners and are not touched. Idempotent.</summary>
    public void Dispose()
    {
        using (Hold())
        {
            if (_disposed)
                return;
            _disposed = true;
            CloseUntaken();
        }
        GC.SuppressFinalize(this);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"ReceivedFds {{ BytesReceived = {BytesReceived}, Count = {Count}, Flags = {Flags}{(IsEndOfStream ? ", EndOfStream" : "")} }}";

    /// <summary>libfdsend's fdsend_check_received over this message's descriptors and
    /// <see cref="Flags"/> (a taken descriptor is passed as -1: counted, not checked) while no
    /// other thread can take, describe or close them. On FDSEND_EPOLICY libfdsend has closed
    /// every one: they are marked taken.</summary>
    internal unsafe int CheckPolicy(Interop.PolicyNative* policy, Interop.ViolationNative* violation)
    {
        using (Hold())
        {
            int count = _count;
            // A merged result (ReceiveFdsExactly) may hold more than FdPassing.MaxFds: too many
            // for any policy, but libfdsend still closes them all.
            Span<nint> fds = count <= FdPassing.MaxFds ? stackalloc nint[count] : new nint[count];
            for (int i = 0; i < count; i++)
                fds[i] = Slot(i);
            int rc;
            fixed (nint* p = fds)
                rc = Interop.CheckReceived(policy, p, count, (uint)Flags, violation);
            if (rc == (int)Interop.Status.EPOLICY)
                MarkAllTaken();
            return rc;
        }
    }

    /// <summary>libfdsend's fdsend_check_fd on descriptor <paramref name="index"/> (closing
    /// nothing) while no other thread can take or close it.</summary>
    /// <exception cref="ObjectDisposedException">This object is disposed.</exception>
    /// <exception cref="InvalidOperationException">The descriptor was already taken.</exception>
    internal unsafe int CheckFd(int index, Interop.FdRuleNative* rule, Interop.ViolationNative* violation)
    {
        using (Hold())
            return Interop.CheckFd(rule, Untaken(index), index, violation);
    }

    /// <summary>Closes the untaken descriptors, one native call per
    /// <see cref="FdPassing.MaxFds"/> of them (a taken slot holds <see cref="TakenFd"/>, -1,
    /// which fdsend_close_all skips). A merged result (ReceiveFdsExactly with a larger maxFds)
    /// may hold more than one message's worth: the stack buffer stays bounded, also on the
    /// finalizer thread.</summary>
    private void CloseUntaken()
    {
        int count = _count;
        Span<nint> batch = stackalloc nint[Math.Min(count, FdPassing.MaxFds)];
        for (int start = 0; start < count; start += batch.Length)
        {
            int n = Math.Min(batch.Length, count - start);
            for (int i = 0; i < n; i++)
            {
                batch[i] = start + i == 0 ? _fd0 : _more![start + i - 1];
                MarkTaken(start + i);
            }
            FdSendCore.CloseAll(batch[..n]);
        }
    }

    /// <summary>Holds the object's gate until the returned scope is disposed.</summary>
    private Gate Hold()
    {
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            var spinner = new SpinWait();
            do
                spinner.SpinOnce(); // spins, then yields, then sleeps
            while (Interlocked.CompareExchange(ref _busy, 1, 0) != 0);
        }
        return new Gate(this);
    }

    private readonly ref struct Gate
    {
        private readonly ReceivedFds _owner;
        internal Gate(ReceivedFds owner) => _owner = owner;
        public void Dispose() => Volatile.Write(ref _owner._busy, 0);
    }

    private static ArgumentException NotASocket(int index, FdInfo info) =>
        new($"The descriptor at index {index} is not a socket but a {info.Kind}. Take it with TakeFileHandle, TakeFileStream or TakePipe instead.",
            nameof(index));

    private int UntakenCount()
    {
        int n = 0;
        for (int i = 0; i < _count; i++)
        {
            if (Slot(i) != TakenFd)
                n++;
        }
        return n;
    }

    private void MarkAllTaken()
    {
        for (int i = 0; i < _count; i++)
            MarkTaken(i);
    }

    private int Slot(int index)
    {
        if ((uint)index >= (uint)_count)
            throw new ArgumentOutOfRangeException(nameof(index), index,
                _count == 0
                    ? "No descriptors were received with this message."
                    : $"Only {_count} descriptors were received: index them 0 .. {_count - 1}.");
        return index == 0 ? _fd0 : _more![index - 1];
    }

    private int Untaken(int index)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int fd = Slot(index);
        if (fd == TakenFd)
            throw new InvalidOperationException(
                $"The descriptor at index {index} was already taken; each received descriptor can be taken only once (its new owner closes it).");
        return fd;
    }

    private void MarkTaken(int index)
    {
        if (index == 0)
            _fd0 = TakenFd;
        else
            _more![index - 1] = TakenFd;
    }
}
