// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>
/// The async layer over <see cref="FdSendCore"/>'s non-blocking attempts: readiness waits on
/// libfdsend's readiness engine (<see cref="ReadinessEngine"/>, one per process, led by one
/// thread at a time; the receive itself is retried there), and the loops that retry after them. Shared by
/// <see cref="SocketFdAsyncExtensions"/>, <see cref="ExactReceiver"/> and
/// <see cref="FdChannel"/>. On Windows a readable wait is .NET's zero-byte receive and a
/// writable wait the same engine (libfdsend's on WSAPoll there).
/// </summary>
internal static class AsyncFdCore
{
    /// <summary>Waits until <paramref name="socket"/> is readable (data, end of stream or an
    /// error); consumes nothing and occupies no thread while it waits. The continuation runs
    /// inline on the engine thread unless inline completions are off (then on the thread
    /// pool).</summary>
    internal static ValueTask WaitReadableAsync(Socket socket, CancellationToken cancellationToken)
    {
        if (OperatingSystem.IsWindows())
            return WaitReadableWindowsAsync(socket, cancellationToken);
        FdSendCore.GetHandle(socket);
        return ReadinessEngine.Instance.WaitReadyAsync(socket, write: false, cancellationToken);
    }

    /// <summary>Waits until <paramref name="socket"/> is writable (room in its send buffer, or
    /// an error); the continuation runs as <see cref="WaitReadableAsync"/>'s.</summary>
    internal static ValueTask WaitWritableAsync(Socket socket, CancellationToken cancellationToken)
    {
        FdSendCore.GetHandle(socket);
        return ReadinessEngine.Instance.WaitReadyAsync(socket, write: true, cancellationToken);
    }

    private static async ValueTask WaitReadableWindowsAsync(Socket socket, CancellationToken cancellationToken) =>
        await socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Windows, after a non-blocking receive found no record: waits until one may be readable.
    /// With nothing queued that is .NET's zero-byte receive (readable). With bytes queued (part
    /// of a record: libfdsend receives a record only once its header and handle table are in),
    /// readability says nothing new, so it waits on a timer that backs off with
    /// <paramref name="round"/> (the caller's count of fruitless attempts) from 1 ms to 50 ms:
    /// a peer that sends half a record and stops costs a check per 50 ms, not a spinning thread.
    /// </summary>
    internal static ValueTask WaitRecordAsync(Socket socket, int round, CancellationToken cancellationToken)
    {
        if (socket.Available == 0)
            return WaitReadableWindowsAsync(socket, cancellationToken);
        return new ValueTask(Task.Delay(Math.Min(1 << Math.Min(round, 6), 50), cancellationToken));
    }

    /// <summary>One non-blocking send attempt of a whole buffer with descriptors (kept out of
    /// async methods so that spans never live across an await).</summary>
    internal static bool TrySend(Socket socket, ReadOnlyMemory<byte> data, ReadOnlyMemory<Descriptor> fds, out int sent) =>
        FdSendCore.TrySend(socket, null, data.Span, fds.Span, default, out sent);

    /// <summary>Sends data[sent..] without descriptors, finishing a stream send whose first
    /// chunk (with the descriptors) is out: one non-blocking send per attempt (on Windows each
    /// is a record, as every write on a socket that carries handles must be), waiting for room
    /// on the readiness engine in between. Not cancellable by the caller: a half-sent buffer
    /// would leave the stream at a position the peer cannot know (<paramref name="abortToken"/>,
    /// the owner's disposal, aborts it). Errors pass through as they are (the caller, which
    /// framed the data, knows what they mean); see <see cref="SendRestCountedAsync"/> for the
    /// public API's sends.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal static async ValueTask<int> SendRestAsync(Socket socket, ReadOnlyMemory<byte> data, int sent,
                                                       CancellationToken abortToken)
    {
        var progress = new StrongBox<int>(sent);
        await SendEachAttemptAsync(socket, data, progress, abortToken).ConfigureAwait(false);
        return progress.Value;
    }

    /// <summary>
    /// <see cref="SendRestAsync"/> for the public API's sends: a failure becomes an
    /// <see cref="FdPartialSendException"/> that says exactly how much went (every attempt is
    /// counted). <paramref name="data"/> is the whole send, <paramref name="sent"/> bytes of
    /// which went with the <paramref name="descriptorsSent"/> descriptors.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal static async ValueTask<int> SendRestCountedAsync(Socket socket, ReadOnlyMemory<byte> data, int sent,
                                                              int descriptorsSent)
    {
        var progress = new StrongBox<int>(sent);
        try
        {
            await SendEachAttemptAsync(socket, data, progress, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            throw FdSendErrors.PartialSend(e, progress.Value, data.Length, descriptorsSent);
        }
        return progress.Value;
    }

    /// <summary>Sends data[progress..] without descriptors, one non-blocking fdsend_send per
    /// attempt (on Windows each is a record), waiting for room in between;
    /// <paramref name="progress"/> counts what went, also when it fails.</summary>
    private static async ValueTask SendEachAttemptAsync(Socket socket, ReadOnlyMemory<byte> data, StrongBox<int> progress,
                                                        CancellationToken abortToken)
    {
        while (progress.Value < data.Length)
        {
            if (TrySend(socket, data.Slice(progress.Value), ReadOnlyMemory<Descriptor>.Empty, out int n))
                progress.Value += n;
            else
                await WaitWritableAsync(socket, abortToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Sends the first chunk of <paramref name="data"/> with <paramref name="fds"/>, waiting for
    /// room as long as nothing at all was sent (cancellable there: nothing is lost); returns the
    /// bytes that went out with the descriptors.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal static async ValueTask<int> SendFirstChunkAsync(Socket socket, ReadOnlyMemory<byte> data,
                                                             ReadOnlyMemory<Descriptor> fds,
                                                             CancellationToken cancellationToken)
    {
        while (true)
        {
            await WaitWritableAsync(socket, cancellationToken).ConfigureAwait(false);
            if (TrySend(socket, data, fds, out int sent))
                return sent;
        }
    }

    /// <summary>
    /// Receives one message (<see cref="FdSendCore.TryReceive(Socket, Span{byte}, int, out ReceivedFds?, bool)"/>)
    /// once the socket is readable: on POSIX the engine thread retries the receive itself and
    /// hands the message to the awaiter. A message that was received is returned even if
    /// cancellation was requested meanwhile. <paramref name="observed"/>:
    /// <see cref="ReadinessEngine.ObserveReadable"/> from before the caller's attempt.
    /// </summary>
    internal static ValueTask<ReceivedFds> ReceiveSlowAsync(Socket socket, Memory<byte> buffer, int maxFds,
                                                          long observed, CancellationToken cancellationToken)
    {
        if (OperatingSystem.IsWindows())
            return ReceiveSlowWindowsAsync(socket, buffer, maxFds, cancellationToken);
        return ReadinessEngine.Instance.ReceiveAsync(socket, buffer, maxFds, observed, cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<ReceivedFds> ReceiveSlowWindowsAsync(Socket socket, Memory<byte> buffer, int maxFds,
                                                                      CancellationToken cancellationToken)
    {
        for (int round = 0; ; round++)
        {
            try
            {
                await WaitRecordAsync(socket, round, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException) when (!cancellationToken.IsCancellationRequested)
            {
                // The socket has an error pending: let the receive report it in FdSend's terms
                // (and hand out a message that is still waiting, if any).
                if (FdSendCore.TryReceive(socket, buffer.Span, maxFds, out ReceivedFds? pending))
                    return pending!;
                throw;
            }
            if (FdSendCore.TryReceive(socket, buffer.Span, maxFds, out ReceivedFds? result))
                return result!;
        }
    }

    /// <summary>A span over one descriptor stored in a field or local, without an array.</summary>
    internal static ReadOnlySpan<Descriptor> One(ref Descriptor fd) => MemoryMarshal.CreateReadOnlySpan(ref fd, 1);
}
