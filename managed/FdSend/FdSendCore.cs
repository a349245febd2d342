// SPDX-License-Identifier: MIT
using System.Diagnostics.CodeAnalysis;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>
/// The core of every operation: one native attempt (with FDSEND_DONTWAIT unless the caller
/// lets the kernel wait) that either completes, reports "would block" (returns
/// <see langword="false"/>, nothing sent or consumed), or throws the mapped exception. The sync wrappers in
/// <see cref="SocketFdExtensions"/> wait with libfdsend's <c>fdsend_wait</c> between attempts;
/// async wrappers wait on the <see cref="ReadinessEngine"/> instead and call the same Try
/// methods. Nothing here allocates on success or would-block.
/// </summary>
internal static unsafe class FdSendCore
{
    /// <summary>The socket's handle, or <see cref="ObjectDisposedException"/> if it is closed.
    /// (The marshaller adds a reference for each native call, so a socket disposed after this
    /// check fails that call cleanly instead of using a reused fd.)</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static SafeSocketHandle GetHandle(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        SafeSocketHandle handle = socket.SafeHandle;
        if (handle.IsClosed || handle.IsInvalid)
            ThrowDisposed(socket);
        return handle;
    }

    [DoesNotReturn]
    private static void ThrowDisposed(Socket socket) =>
        throw new ObjectDisposedException(socket.GetType().FullName,
            "The socket has been disposed; nothing was sent or received.");

    /// <summary>
    /// One attempt to send <paramref name="data"/> with <paramref name="fds"/> followed by
    /// <paramref name="rawFds"/> (one message; either may be empty) on a connected socket, or
    /// to <paramref name="path"/> if it is not null. Handles are referenced for the native
    /// call and released after. Returns false if the socket's buffer is full (nothing sent).
    /// On a stream socket <paramref name="bytesSent"/> may be less than data.Length: the
    /// descriptors went with those first bytes; send the rest without them.
    /// </summary>
    internal static bool TrySend(Socket socket, string? path, ReadOnlySpan<byte> data,
                                 ReadOnlySpan<Descriptor> fds, ReadOnlySpan<int> rawFds,
                                 out int bytesSent, bool mayBlock = false)
    {
        SafeSocketHandle socketHandle = GetHandle(socket);
        int count = fds.Length + rawFds.Length;
        if (count > FdPassing.MaxFds)
            throw FdSendErrors.TooManyFds(count);

        nint* native = stackalloc nint[count];
        int referenced = 0; // fds[0 .. referenced) are resolved (and AddRef'd if handles)
        try
        {
            while (referenced < fds.Length)
            {
                bool added = false;
                try
                {
                    native[referenced] = fds[referenced].AddRefAndGetFd(referenced, ref added);
                }
                catch
                {
                    if (added)
                        fds[referenced].Handle!.DangerousRelease();
                    throw;
                }
                referenced++;
            }
            for (int i = 0; i < rawFds.Length; i++)
            {
                if (rawFds[i] < 0)
                    throw new ArgumentOutOfRangeException(nameof(rawFds),
                        $"The file descriptor at index {fds.Length + i} is {rawFds[i]}: descriptors are non-negative. Nothing was sent.");
                native[fds.Length + i] = rawFds[i];
            }

            // The Socket knows its address family: when it is Unix, spare libfdsend its
            // getsockname() check (one system call per send); anything else keeps the check,
            // which refuses TCP (where Linux would silently drop the descriptors).
            uint flags = (mayBlock ? 0 : Interop.FDSEND_DONTWAIT) |
                         (socket.AddressFamily == AddressFamily.Unix ? Interop.FDSEND_UNIX_SOCKET : 0);
            long result;
            fixed (byte* buffer = data)
            {
                result = path is null
                    ? Interop.Send(socketHandle, buffer, (nuint)data.Length, native, count, flags)
                    : Interop.SendTo(socketHandle, path, buffer, (nuint)data.Length, native, count, flags);
            }
            if (result >= 0)
            {
                bytesSent = (int)result;
                return true;
            }
            if (result == (long)Interop.Status.EAGAIN)
            {
                bytesSent = 0;
                return false;
            }
            FdOperation op = path is null ? FdOperation.Send : FdOperation.SendTo;
            if (result == (long)Interop.Status.ETIMEDOUT)
                throw FdSendErrors.TimedOut(op, socket.SendTimeout);
            throw FdSendErrors.Create(result, op, path);
        }
        finally
        {
            for (int i = 0; i < referenced; i++)
                fds[i].Handle?.DangerousRelease();
        }
    }

    /// <summary>
    /// One attempt to receive one message into <paramref name="buffer"/> and up to
    /// <paramref name="maxFds"/> descriptors into <paramref name="fds"/> (the caller then owns
    /// fds[0 .. fdCount)). Returns false if nothing is waiting (nothing consumed).
    /// <paramref name="flags"/> never carries libfdsend's end-of-stream bit (see the overload
    /// with <c>endOfStream</c>).
    /// </summary>
    internal static bool TryReceive(Socket socket, Span<byte> buffer, nint* fds, int maxFds,
                                    out int bytesReceived, out int fdCount, out ReceiveFlags flags,
                                    bool mayBlock = false) =>
        TryReceive(socket, buffer, fds, maxFds, out bytesReceived, out fdCount, out flags, out _, mayBlock);

    /// <summary>
    /// One attempt to receive one message (see the overload above), also saying whether it was
    /// a stream socket's end of stream: libfdsend's FDSEND_RECV_END_OF_STREAM bit (stripped
    /// from <paramref name="flags"/>, which keeps the <see cref="ReceiveFlags"/> values only;
    /// <see cref="DecodeReceiveFlags"/>). With a
    /// <paramref name="state"/> (a reader that takes messages in pieces: the channel on
    /// Windows) the read is fdsend_recv_part, which keeps the reader's position there;
    /// without one, fdsend_recv (Windows: whole records only).
    /// </summary>
    internal static bool TryReceive(Socket socket, Span<byte> buffer, nint* fds, int maxFds,
                                    out int bytesReceived, out int fdCount, out ReceiveFlags flags,
                                    out bool endOfStream, bool mayBlock, Interop.RecvState* state = null)
    {
        long result = Receive(socket, buffer, fds, maxFds, out fdCount, out flags, out endOfStream, mayBlock, state);
        bytesReceived = result >= 0 ? (int)result : 0;
        if (result >= 0)
            return true;
        if (result == (long)Interop.Status.EAGAIN)
            return false;
        throw ReceiveFailed(socket, result);
    }

    /// <summary>
    /// The receive of <see cref="TryReceive(Socket, Span{byte}, nint*, int, out int, out int, out ReceiveFlags, out bool, bool, Interop.RecvState*)"/>
    /// with libfdsend's result as it is, for a caller that judges a failure itself (the
    /// channel asks <c>fdsend_recv_refused</c>): the bytes received (the outputs set), or a
    /// negative FDSEND_E* code (the outputs zero): FDSEND_EAGAIN when nothing is waiting
    /// (nothing consumed); any other code is a failure, whose exception
    /// <see cref="ReceiveFailed"/> makes (call it straight away).
    /// </summary>
    internal static long Receive(Socket socket, Span<byte> buffer, nint* fds, int maxFds, out int fdCount,
                                 out ReceiveFlags flags, out bool endOfStream, bool mayBlock, Interop.RecvState* state)
    {
        SafeSocketHandle socketHandle = GetHandle(socket);
        int count = 0;
        uint receiveFlags = 0;
        long result;
        uint nativeFlags = mayBlock ? 0 : Interop.FDSEND_DONTWAIT;
        fixed (byte* data = buffer)
        {
            result = state is null
                ? Interop.Recv(socketHandle, data, (nuint)buffer.Length, fds, maxFds, &count,
                               &receiveFlags, nativeFlags)
                : Interop.RecvPart(socketHandle, state, data, (nuint)buffer.Length, fds, maxFds, &count,
                                   &receiveFlags, nativeFlags);
        }
        if (result >= 0)
        {
            fdCount = count;
            flags = DecodeReceiveFlags(receiveFlags, out endOfStream);
        }
        else
        {
            fdCount = 0;
            flags = ReceiveFlags.None;
            endOfStream = false;
        }
        return result;
    }

    /// <summary>The exception for a receive that failed with <paramref name="result"/> (a
    /// negative code other than FDSEND_EAGAIN). Call straight after the native call (it reads
    /// the OS error libfdsend saved for it).</summary>
    internal static Exception ReceiveFailed(Socket socket, long result) =>
        result == (long)Interop.Status.ETIMEDOUT
            ? FdSendErrors.TimedOut(FdOperation.Receive, socket.ReceiveTimeout)
            : FdSendErrors.Create(result, FdOperation.Receive);

    /// <summary>
    /// One non-blocking look at the next message's first bytes (fdsend_peek): true with the
    /// bytes copied (0: an empty record or the end of the stream), false when nothing is
    /// queued; nothing is consumed and no descriptor is taken. POSIX only.
    /// </summary>
    internal static bool TryPeek(Socket socket, Span<byte> buffer, out int bytesPeeked)
    {
        long result;
        fixed (byte* data = buffer)
            result = Interop.Peek(GetHandle(socket), data, (nuint)buffer.Length, Interop.FDSEND_DONTWAIT);
        bytesPeeked = result >= 0 ? (int)result : 0;
        if (result >= 0)
            return true;
        if (result == (long)Interop.Status.EAGAIN)
            return false;
        throw FdSendErrors.Create(result, FdOperation.Receive);
    }

    /// <summary>
    /// libfdsend's FDSEND_RECV_* bits as <see cref="ReceiveFlags"/> plus its end-of-stream
    /// verdict: FDSEND_RECV_END_OF_STREAM (4) means the peer closed a stream (libfdsend's one
    /// rule for it, on every OS) and is stripped, as is any bit this assembly does not know (a
    /// newer library's). A libfdsend from before the bit cannot run this assembly (it lacks
    /// fdsend_wait and the other newer exports), so there is no second rule to keep.
    /// </summary>
    internal static ReceiveFlags DecodeReceiveFlags(uint rflags, out bool endOfStream)
    {
        endOfStream = (rflags & Interop.FDSEND_RECV_END_OF_STREAM) != 0;
        return (ReceiveFlags)(rflags & (Interop.FDSEND_RECV_DATA_TRUNCATED | Interop.FDSEND_RECV_FDS_TRUNCATED));
    }

    /// <summary>
    /// One attempt to receive one message with an owning result. Returns false if nothing is
    /// waiting. On success, every descriptor that arrived is either in
    /// <paramref name="result"/> or already closed. A receive that got nothing because the
    /// socket was disposed meanwhile (Dispose shuts the socket down, so the kernel reports 0
    /// bytes) throws what Socket.Receive throws then (<see cref="FdSendErrors.Aborted"/>),
    /// rather than reporting an end of stream that the peer never sent.
    /// </summary>
    internal static bool TryReceive(Socket socket, Span<byte> buffer, int maxFds,
                                    out ReceivedFds? result, bool mayBlock = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxFds);
        int capacity = Math.Min(maxFds, FdPassing.MaxFds);
        nint* fds = stackalloc nint[capacity];
        if (!TryReceive(socket, buffer, fds, capacity, out int bytes, out int count, out ReceiveFlags flags,
                        out bool endOfStream, mayBlock))
        {
            result = null;
            return false;
        }
        if (bytes == 0 && count == 0)
            ThrowIfDisposedDuringReceive(socket);
        var received = new ReadOnlySpan<nint>(fds, count);
        try
        {
            result = new ReceivedFds(received, bytes, flags, endOfStream);
            return true;
        }
        catch
        {
            CloseAll(received);
            throw;
        }
    }

    /// <summary>
    /// Throws <see cref="FdSendErrors.Aborted"/> if <paramref name="socket"/> has been disposed.
    /// Call after a receive that returned 0 bytes and no descriptors (nothing is lost by
    /// throwing then): Socket.Dispose marks the Socket disposed before it shuts the descriptor
    /// down to wake blocked calls, so a 0 that the shutdown caused is always seen here. The
    /// SafeSocketHandle is marked closed only later, so the Socket itself is asked
    /// (<see cref="Socket.Available"/> throws ObjectDisposedException first thing).
    /// </summary>
    internal static void ThrowIfDisposedDuringReceive(Socket socket)
    {
        if (IsDisposed(socket))
            throw FdSendErrors.Aborted(socket.SocketType);
    }

    private static bool IsDisposed(Socket socket)
    {
        if (socket.SafeHandle.IsClosed)
            return true;
        try
        {
            _ = socket.Available;
            return false;
        }
        catch (ObjectDisposedException)
        {
            return true;
        }
        catch (SocketException)
        {
            return false; // not disposed; the socket's own state is not our concern here
        }
    }

    /// <summary>Closes descriptors this assembly owns exclusively (negative entries are
    /// skipped), in one native call.</summary>
    internal static void CloseAll(ReadOnlySpan<nint> fds)
    {
        fixed (nint* p = fds)
            Interop.CloseAll(p, fds.Length);
    }

    // ---- Blocking wrappers: the semantics of Socket's own sync methods ----------------------

    // A blocking socket (Socket.Blocking) makes its attempts without FDSEND_DONTWAIT, so the
    // kernel does the waiting in the one system call (and .NET's SO_RCVTIMEO/SO_SNDTIMEO,
    // set by ReceiveTimeout/SendTimeout, bound it: FDSEND_ETIMEDOUT). FDSEND_EAGAIN then
    // means .NET has put the fd in O_NONBLOCK behind Socket.Blocking (after an async call):
    // from there on the call waits with libfdsend's fdsend_wait, within the same timeout.

    /// <summary>
    /// Sends one message. A blocking socket (<see cref="Socket.Blocking"/>) waits for room
    /// (even when .NET has put the fd in O_NONBLOCK after an async call) up to
    /// <see cref="Socket.SendTimeout"/>, and on a stream socket sends ALL the data: the
    /// descriptors with the first chunk, the rest without; a later chunk that fails throws
    /// <see cref="FdPartialSendException"/> (something was sent). A non-blocking socket throws
    /// WouldBlock when nothing could be sent, and returns a partial count otherwise.
    /// </summary>
    internal static int Send(Socket socket, string? path, ReadOnlySpan<byte> data,
                             ReadOnlySpan<Descriptor> fds, ReadOnlySpan<int> rawFds)
    {
        ArgumentNullException.ThrowIfNull(socket);
        bool blocking = socket.Blocking;
        bool mayBlock = blocking;
        bool continueStream = blocking && path is null && socket.SocketType == SocketType.Stream;
        long deadline = 0;
        int total = 0;
        bool fdsSent = false;
        while (true)
        {
            bool done;
            int sent;
            try
            {
                done = fdsSent
                    ? TrySend(socket, path, data.Slice(total), default, default, out sent, mayBlock)
                    : TrySend(socket, path, data.Slice(total), fds, rawFds, out sent, mayBlock);
            }
            catch (Exception e) when (fdsSent)
            {
                throw FdSendErrors.PartialSend(e, total, data.Length, fds.Length + rawFds.Length);
            }
            if (done)
            {
                fdsSent = true;
                total += sent;
                if (total >= data.Length || !continueStream)
                    return total;
                continue; // a partial send on a blocking stream socket: send the rest, no fds
            }
            if (!blocking)
            {
                if (total > 0)
                    return total;
                throw FdSendErrors.WouldBlock(path is null ? FdOperation.Send : FdOperation.SendTo);
            }
            mayBlock = false; // the fd is O_NONBLOCK: wait with Poll from now on
            try
            {
                WaitUntilReady(socket, SelectMode.SelectWrite, ref deadline);
            }
            catch (Exception e) when (fdsSent)
            {
                throw FdSendErrors.PartialSend(e, total, data.Length, fds.Length + rawFds.Length);
            }
        }
    }

    /// <summary>Receives one message into caller-owned storage (see <see cref="Send"/> for
    /// the blocking rules; <see cref="Socket.ReceiveTimeout"/> applies).</summary>
    internal static int Receive(Socket socket, Span<byte> buffer, Span<int> fds,
                                out int fdCount, out ReceiveFlags flags)
    {
        ArgumentNullException.ThrowIfNull(socket);
        bool blocking = socket.Blocking;
        bool mayBlock = blocking;
        int capacity = Math.Min(fds.Length, FdPassing.MaxFds);
        nint* native = stackalloc nint[capacity];
        long deadline = 0;
        while (true)
        {
            bool received;
            int bytes;
            try
            {
                received = TryReceive(socket, buffer, native, capacity, out bytes, out fdCount, out flags, mayBlock);
            }
            catch (ObjectDisposedException) when (deadline != 0)
            {
                throw FdSendErrors.Aborted(socket.SocketType); // disposed while this call waited
            }
            if (received)
            {
                if (bytes == 0 && fdCount == 0)
                    ThrowIfDisposedDuringReceive(socket);
                for (int i = 0; i < fdCount; i++)
                    fds[i] = (int)native[i];
                return bytes;
            }
            if (!blocking)
                throw FdSendErrors.WouldBlock(FdOperation.Receive);
            mayBlock = false;
            WaitForReceive(socket, ref deadline);
        }
    }

    /// <summary>Receives one message with an owning result.</summary>
    internal static ReceivedFds Receive(Socket socket, Span<byte> buffer, int maxFds)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentOutOfRangeException.ThrowIfNegative(maxFds);
        bool blocking = socket.Blocking;
        bool mayBlock = blocking;
        long deadline = 0;
        while (true)
        {
            bool received;
            ReceivedFds? result;
            try
            {
                received = TryReceive(socket, buffer, maxFds, out result, mayBlock);
            }
            catch (ObjectDisposedException) when (deadline != 0)
            {
                throw FdSendErrors.Aborted(socket.SocketType); // disposed while this call waited
            }
            if (received)
                return result!;
            if (!blocking)
                throw FdSendErrors.WouldBlock(FdOperation.Receive);
            mayBlock = false;
            WaitForReceive(socket, ref deadline);
        }
    }

    /// <summary>Waits until a blocking receive can retry (see <see cref="WaitUntilReady"/>). A
    /// socket disposed during the wait is reported as Socket.Receive reports it
    /// (<see cref="FdSendErrors.Aborted"/>), not as the ObjectDisposedException of a call made
    /// on an already disposed socket.</summary>
    internal static void WaitForReceive(Socket socket, ref long deadline)
    {
        try
        {
            WaitUntilReady(socket, SelectMode.SelectRead, ref deadline);
        }
        catch (ObjectDisposedException)
        {
            throw FdSendErrors.Aborted(socket.SocketType);
        }
    }

    /// <summary>
    /// Waits until the socket is readable/writable (or has an error or hang-up, which the
    /// next attempt reports), within the socket's receive/send timeout counted from the first
    /// wait of this operation (<paramref name="deadline"/>: 0 until then; TickCount64 ms;
    /// long.MaxValue for no timeout). The wait is libfdsend's (fdsend_wait), the one every
    /// blocking call of the library makes; .NET keeps the socket's timeouts for a socket it
    /// made non-blocking, so the deadline is counted here.
    /// </summary>
    private static void WaitUntilReady(Socket socket, SelectMode mode, ref long deadline)
    {
        bool read = mode == SelectMode.SelectRead;
        if (deadline == 0)
        {
            int timeoutMs = read ? socket.ReceiveTimeout : socket.SendTimeout;
            deadline = timeoutMs <= 0 ? long.MaxValue : Environment.TickCount64 + timeoutMs;
        }
        while (true)
        {
            int waitMs = -1;
            if (deadline != long.MaxValue)
            {
                long remaining = deadline - Environment.TickCount64;
                if (remaining <= 0)
                {
                    throw FdSendErrors.TimedOut(read ? FdOperation.Receive : FdOperation.Send,
                                                read ? socket.ReceiveTimeout : socket.SendTimeout);
                }
                waitMs = (int)Math.Min(remaining, int.MaxValue);
            }
            int result = Interop.Wait(GetHandle(socket), read ? Interop.PollIn : Interop.PollOut, waitMs);
            if (result == (int)Interop.Status.Ok)
                return;
            if (result != (int)Interop.Status.ETIMEDOUT)
                throw FdSendErrors.Create(result, read ? FdOperation.Receive : FdOperation.Send);
            // The time ran out: the loop's check reports it against the caller's deadline.
        }
    }

    // ---- Describing descriptors, socket pairs -------------------------------------------------

    /// <summary>fdsend_fd_info for a descriptor the caller keeps open for the call.</summary>
    internal static FdInfo Describe(nint fd)
    {
        Interop.FdInfoNative info = default;
        info.StructSize = (uint)sizeof(Interop.FdInfoNative);
        int result = Interop.FdInfo(fd, &info);
        if (result < 0)
            throw FdSendErrors.Create(result, FdOperation.Describe);
        return FdInfo.FromNative(info);
    }

    /// <summary>A connected pair of close-on-exec Unix sockets, each owned by a
    /// <see cref="Socket"/>.</summary>
    internal static (Socket First, Socket Second) CreateSocketPair(SocketType type)
    {
        int nativeType = type switch
        {
            SocketType.Stream => Interop.FDSEND_SOCK_STREAM,
            SocketType.Dgram => Interop.FDSEND_SOCK_DGRAM,
            SocketType.Seqpacket => Interop.FDSEND_SOCK_SEQPACKET,
            _ => throw new ArgumentOutOfRangeException(nameof(type), type,
                     "A Unix socket pair is of type Stream, Dgram or Seqpacket."),
        };
        nint* sv = stackalloc nint[2];
        int result = Interop.SocketPair(nativeType, sv);
        if (result < 0)
            throw FdSendErrors.Create(result, FdOperation.SocketPair);
        Socket? first = null;
        try
        {
            first = SocketFromOwnedFd(sv[0]);
            sv[0] = -1;
            Socket second = SocketFromOwnedFd(sv[1]);
            return (first, second);
        }
        catch
        {
            first?.Dispose();
            CloseAll(new ReadOnlySpan<nint>(sv, 2));
            throw;
        }
    }

    /// <summary>A <see cref="Socket"/> that owns <paramref name="fd"/>, a socket descriptor
    /// (this assembly's own, or one received). If the open file is O_NONBLOCK (a sender's
    /// event-loop socket; the flag is shared with the sender), .NET is told so before the
    /// socket is handed out: <c>new Socket(SafeSocketHandle)</c> assumes a blocking descriptor,
    /// and its sync calls would then fail with InvalidOperationException. Switching
    /// <see cref="Socket.Blocking"/> to false and back makes .NET keep the descriptor
    /// O_NONBLOCK and emulate blocking calls itself, as after any async call; the descriptor's
    /// mode, which the sender shares, is left as it was. On failure the descriptor stays the
    /// caller's.</summary>
    internal static Socket SocketFromOwnedFd(nint fd, bool nonBlocking = false)
    {
        var handle = new SafeSocketHandle(fd, ownsHandle: true);
        try
        {
            return SocketFromHandle(handle, nonBlocking);
        }
        catch
        {
            handle.SetHandleAsInvalid(); // no usable Socket was made: the descriptor stays the caller's
            throw;
        }
    }

    /// <summary>A <see cref="Socket"/> over <paramref name="handle"/>, told about an
    /// O_NONBLOCK descriptor as <see cref="SocketFromOwnedFd"/> explains (FdSend.Handoff's
    /// systemd import uses it for the descriptors systemd passes).</summary>
    internal static Socket SocketFromHandle(SafeSocketHandle handle, bool nonBlocking)
    {
        var socket = new Socket(handle);
        if (nonBlocking)
        {
            socket.Blocking = false;
            socket.Blocking = true;
        }
        return socket;
    }

    // ---- Peer credentials ---------------------------------------------------------------------

    internal static PeerCredentials GetPeerCredentials(Socket socket)
    {
        SafeSocketHandle handle = GetHandle(socket);
        long pid, uid, gid;
        int result = Interop.PeerCredentials(handle, &pid, &uid, &gid);
        if (result < 0)
            throw FdSendErrors.Create(result, FdOperation.PeerCredentials);
        // pid: -1 where the OS does not report it; 0 on Linux when the peer is in a pid
        // namespace this process cannot see.
        return new PeerCredentials(
            pid > 0 && pid <= int.MaxValue ? (int)pid : null,
            unchecked((uint)uid),
            unchecked((uint)gid));
    }
}
