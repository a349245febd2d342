// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>
/// FdSend's one place to wait for many sockets: libfdsend's readiness engine
/// (<c>fdsend_poller_*</c>: epoll on Linux, kqueue on the BSDs and macOS, WSAPoll on Windows,
/// where only writability waits use it so far) run by ONE
/// background thread per process. An async call first tries its socket; only when that would
/// block does it register a <see cref="PollOperation"/> and arm the socket's one-shot interest
/// (readable and/or writable). When the socket becomes ready the engine thread retries the
/// operation's non-blocking system call itself (no thread-pool hop before it), and hands the
/// outcome to the awaiter: by default the awaiter's continuation is queued to the thread pool
/// (user code never runs on the engine thread); with
/// <c>FDSEND_ASYNC_INLINE_COMPLETIONS=1</c> (or the AppContext switch
/// <c>FdSend.Async.InlineCompletions</c>) it runs inline on the engine thread, which suits
/// latency-bound processes whose continuations are short and never block.
/// </summary>
/// <remarks>
/// <para>No thread is blocked per pending operation: 10,000 pending receives are 10,000 small
/// objects and one registration each in the kernel's set.</para>
/// <para>Sockets are registered by a token (slot and generation), never by fd number alone,
/// and a socket's handle is referenced only around each native call, so Socket.Dispose is never
/// held up. A disposed socket is dropped by the kernel from the set without an event, so the
/// engine checks its pending sockets' handles every <see cref="ClosedCheckMs"/> while any
/// operation is pending; their operations then fail as the attempt does on a closed socket
/// (<see cref="ObjectDisposedException"/>).</para>
/// <para>The engine's descriptors are close-on-exec. An epoll set would be shared with a child
/// made by fork() without exec; .NET processes never do that.</para>
/// </remarks>
internal sealed class ReadinessEngine
{
    internal const int ClosedCheckMs = 250;
    private const int IdleCheckMs = 5_000;
    private const int MaxEvents = 256;

    internal static readonly bool InlineCompletions =
        AppContext.TryGetSwitch("FdSend.Async.InlineCompletions", out bool on) ? on :
        Environment.GetEnvironmentVariable("FDSEND_ASYNC_INLINE_COMPLETIONS") is "1" or "true";

    private static ReadinessEngine? s_instance;

    private readonly nint _poller;
    private readonly ConditionalWeakTable<Socket, SocketWaitState> _states = new();
    private readonly object _slotsLock = new();
    private SocketWaitState?[] _slots = new SocketWaitState?[64];
    private uint[] _generations = new uint[64];
    private readonly Stack<int> _freeSlots = new();
    private int _slotCount;
    private int _pending; // operations registered and not completed (for the closed-socket check)

    private ReadinessEngine(nint poller)
    {
        _poller = poller;
        var thread = new Thread(Run) { IsBackground = true, Name = "FdSend readiness engine" };
        thread.UnsafeStart();
    }

    internal static ReadinessEngine Instance => Volatile.Read(ref s_instance) ?? Create();

    private static unsafe ReadinessEngine Create()
    {
        lock (typeof(ReadinessEngine))
        {
            if (s_instance is not null)
                return s_instance;
            nint poller;
            int rc = Interop.PollerCreate(&poller);
            if (rc != 0)
                throw new SocketException((int)FdSendErrors.ToSocketError((Interop.Status)rc), $"FdSend could not start its readiness engine: {Interop.StrError(rc)}");
            Volatile.Write(ref s_instance, new ReadinessEngine(poller));
            return s_instance;
        }
    }

    /// <summary>Registers <paramref name="op"/> (prepared by the caller) for
    /// <paramref name="socket"/> becoming ready in its direction and arms the interest;
    /// returns the operation's task. The caller has just seen the socket not ready.</summary>
    internal ValueTask<bool> Wait(SocketWaitState state, Socket socket, PollOperation op,
                                  CancellationToken cancellationToken)
    {
        op.Begin(this, state, socket, cancellationToken);
        Interlocked.Increment(ref _pending);
        Exception? failed = null;
        lock (state)
        {
            (op.Write ? state.Writers : state.Readers).Add(op);
            failed = Arm(state);
        }
        if (failed is not null)
            op.TryFail(failed);
        else
            op.RegisterCancellation(cancellationToken);
        return new ValueTask<bool>(op, op.Version);
    }

    /// <summary>The socket's registration (created on its first wait).</summary>
    internal SocketWaitState GetState(Socket socket) =>
        _states.TryGetValue(socket, out SocketWaitState? s) ? s : _states.GetValue(socket, NewState);

    /// <summary>Waits until <paramref name="socket"/> is ready in one direction (nothing is
    /// attempted; the caller retries). Completes on the thread pool, never inline.</summary>
    internal ValueTask WaitReadyAsync(Socket socket, bool write, CancellationToken cancellationToken)
    {
        SocketWaitState state = GetState(socket);
        var op = new PollOperation(inline: false);
        op.PrepareWait(write, null);
        Wait(state, socket, op, cancellationToken);
        return new ValueTask(op, op.Version);
    }

    /// <summary>Waits until <paramref name="attempt"/> (retried on the engine thread whenever
    /// the socket is ready in its direction) succeeds.</summary>
    internal ValueTask<bool> WaitAttemptAsync(Socket socket, bool write, IPollAttempt attempt, PollOperation op,
                                              CancellationToken cancellationToken)
    {
        SocketWaitState state = GetState(socket);
        op.PrepareWait(write, attempt);
        return Wait(state, socket, op, cancellationToken);
    }

    /// <summary>Receives one message: the receive is retried on the engine thread when the
    /// socket becomes readable, and its result handed to the awaiter.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<ReceivedFds> ReceiveAsync(Socket socket, Memory<byte> buffer, int maxFds,
                                                       CancellationToken cancellationToken)
    {
        SocketWaitState state = GetState(socket);
        PollOperation op = Interlocked.Exchange(ref state.CachedReceive, null) ?? new PollOperation();
        op.PrepareReceive(buffer, maxFds);
        try
        {
            await Wait(state, socket, op, cancellationToken).ConfigureAwait(false);
            return op.Received!;
        }
        finally
        {
            op.Received = null;
            state.CachedReceive = op;
        }
    }

    private SocketWaitState NewState(Socket socket)
    {
        lock (_slotsLock)
        {
            int slot;
            if (_freeSlots.Count > 0)
            {
                slot = _freeSlots.Pop();
            }
            else
            {
                if (_slotCount == _slots.Length)
                {
                    Array.Resize(ref _slots, _slots.Length * 2);
                    Array.Resize(ref _generations, _generations.Length * 2);
                }
                slot = _slotCount++;
            }
            uint gen = ++_generations[slot];
            var state = new SocketWaitState(socket.SafeHandle, ((ulong)gen << 32) | (uint)slot);
            _slots[slot] = state;
            return state;
        }
    }

    /// <summary>Arms the socket's one-shot interest for the directions that have waiters
    /// (under the state's lock). Arming a socket that is already ready reports it at once, so
    /// nothing that arrived between the caller's attempt and this call is missed.</summary>
    private Exception? Arm(SocketWaitState state)
    {
        uint events = (state.Readers.Count > 0 ? Interop.PollIn : 0) | (state.Writers.Count > 0 ? Interop.PollOut : 0);
        if (events == 0)
            return null;
        SafeSocketHandle? handle = state.Handle;
        if (handle is null)
            return new ObjectDisposedException(typeof(Socket).FullName);
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            nint fd = handle.DangerousGetHandle();
            int rc = state.Registered
                ? Interop.PollerModify(_poller, fd, events | Interop.PollOneShot, state.Token)
                : Interop.PollerAdd(_poller, fd, events | Interop.PollOneShot, state.Token);
            if (rc != 0)
                return (Interop.Status)rc == Interop.Status.EBADF
                    ? new ObjectDisposedException(typeof(Socket).FullName)
                    : new SocketException((int)FdSendErrors.ToSocketError((Interop.Status)rc));
            state.Registered = true;
            return null;
        }
        catch (ObjectDisposedException e)
        {
            return e;
        }
        finally
        {
            if (added)
                handle.DangerousRelease();
        }
    }

    /// <summary>Called by an operation that completed (by the engine, cancellation, or a
    /// failure to arm): drops it from its socket's waiters.</summary>
    internal void Remove(SocketWaitState state, PollOperation op)
    {
        lock (state)
            (op.Write ? state.Writers : state.Readers).Remove(op);
        Interlocked.Decrement(ref _pending);
    }

    internal void Wake() => Interop.PollerWake(_poller);

    private unsafe void Run()
    {
        Interop.PollEvent* events = (Interop.PollEvent*)NativeMemory.Alloc(MaxEvents, (nuint)sizeof(Interop.PollEvent));
        var batch = new List<PollOperation>();
        long lastCheck = Environment.TickCount64;
        while (true)
        {
            int timeout = Volatile.Read(ref _pending) > 0 ? ClosedCheckMs : IdleCheckMs;
            int n = Interop.PollerWait(_poller, events, MaxEvents, timeout);
            for (int i = 0; i < n; i++)
            {
                SocketWaitState? state = Lookup(events[i].Token);
                if (state is not null)
                    Ready(state, events[i].Events, batch);
            }
            long now = Environment.TickCount64;
            if (n <= 0 || now - lastCheck >= ClosedCheckMs)
            {
                lastCheck = now;
                CheckClosed(batch);
            }
        }
    }

    private SocketWaitState? Lookup(ulong token)
    {
        int slot = (int)(uint)token;
        lock (_slotsLock)
        {
            if ((uint)slot >= (uint)_slotCount)
                return null;
            SocketWaitState? s = _slots[slot];
            return s is not null && s.Token == token ? s : null;
        }
    }

    /// <summary>The socket is ready in the given directions: retry its operations there
    /// (outside the lock), then re-arm for whoever still waits.</summary>
    private void Ready(SocketWaitState state, uint events, List<PollOperation> batch)
    {
        batch.Clear();
        lock (state)
        {
            if ((events & (Interop.PollIn | Interop.PollErr)) != 0)
                batch.AddRange(state.Readers);
            if ((events & (Interop.PollOut | Interop.PollErr)) != 0)
                batch.AddRange(state.Writers);
        }
        foreach (PollOperation op in batch)
            op.TryComplete();
        batch.Clear();
        lock (state)
        {
            Exception? failed = Arm(state);
            if (failed is not null)
            {
                batch.AddRange(state.Readers);
                batch.AddRange(state.Writers);
            }
            if (failed is null)
                return;
            foreach (PollOperation op in batch)
                op.TryFail(failed);
        }
    }

    /// <summary>Every <see cref="ClosedCheckMs"/> while operations wait: a socket disposed
    /// meanwhile left the kernel's set without an event, so retry its operations (the attempt
    /// then throws ObjectDisposedException); and free the slots of sockets that are gone.</summary>
    private void CheckClosed(List<PollOperation> batch)
    {
        List<SocketWaitState>? closed = null;
        lock (_slotsLock)
        {
            for (int slot = 0; slot < _slotCount; slot++)
            {
                SocketWaitState? s = _slots[slot];
                if (s is null || !s.IsGone)
                    continue;
                (closed ??= new()).Add(s);
            }
        }
        if (closed is null)
            return;
        foreach (SocketWaitState s in closed)
        {
            Ready(s, Interop.PollIn | Interop.PollOut | Interop.PollErr, batch);
            bool idle;
            lock (s)
                idle = s.Readers.Count == 0 && s.Writers.Count == 0;
            if (!idle)
                continue;
            lock (_slotsLock)
            {
                int slot = (int)(uint)s.Token;
                if (_slots[slot] == s)
                {
                    _slots[slot] = null;
                    _freeSlots.Push(slot);
                }
            }
        }
    }
}

/// <summary>One socket's registration with the <see cref="ReadinessEngine"/>: its token, its
/// waiting operations per direction, and whether the kernel's set has it yet.</summary>
internal sealed class SocketWaitState
{
    private readonly WeakReference<SafeSocketHandle> _handle;
    internal readonly ulong Token;
    internal readonly List<PollOperation> Readers = new(1);
    internal readonly List<PollOperation> Writers = new(1);
    internal bool Registered;
    internal PollOperation? CachedReceive;

    internal SocketWaitState(SafeSocketHandle handle, ulong token)
    {
        _handle = new WeakReference<SafeSocketHandle>(handle);
        Token = token;
    }

    /// <summary>The socket's handle while it is alive (weak: a forgotten socket's handle must
    /// still be finalized, and close its fd).</summary>
    internal SafeSocketHandle? Handle => _handle.TryGetTarget(out SafeSocketHandle? h) && !h.IsClosed ? h : null;

    internal bool IsGone => Handle is null;
}
