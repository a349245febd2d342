// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>
/// FdSend's one place to wait for many sockets: libfdsend's readiness engine
/// (<c>fdsend_poller_*</c>: epoll on Linux, kqueue on the BSDs and macOS, WSAPoll on Windows,
/// where only writability waits use it so far). An async call first
/// tries its socket; only when that would block does it register a <see cref="PollOperation"/>
/// with the socket's state. By default each wait arms a one-shot interest. Opted in
/// (<see cref="KeepRegistration"/>, Linux) the socket itself is registered with the kernel
/// once, edge-triggered, and stays registered while it is in use (no system call per wait: Go's
/// netpoller does the same); readiness reported while nobody waited in a direction sets that
/// direction's ready bit, which the next wait takes and retries instead of waiting (Go's
/// pdReady). One engine thread at a
/// time (the leader) waits in <c>fdsend_poller_wait</c>; when sockets become ready it retries
/// their operations' non-blocking system calls itself, then runs the awaiters' continuations
/// inline, on its own thread: no thread-pool hop, no second thread woken per message (what
/// Go's scheduler gets by running a woken goroutine on the thread that polled).
/// </summary>
/// <remarks>
/// <para>Inline continuations are made safe by a monitor thread (Go's sysmon, in small): every
/// <see cref="MonitorIntervalMs"/> while a leader runs continuations, it checks that the leader
/// made progress. A continuation that blocks or runs long (no progress over two checks)
/// loses the leader role: the monitor hands the rest of that batch's continuations to the
/// thread pool and makes another engine thread (an idle spare, or a new one) the leader, so a
/// blocking continuation delays other sockets by a few milliseconds, never more. The
/// deposed thread, once its continuation returns, waits as a spare (and ends after
/// <see cref="SpareIdleMs"/> unused). The monitor parks when nothing runs.
/// <c>FDSEND_ASYNC_INLINE_COMPLETIONS=0</c> (or the AppContext switch
/// <c>FdSend.Async.InlineCompletions</c> set to false) queues every continuation to the thread
/// pool instead.</para>
/// <para>No thread is blocked per pending operation: 10,000 pending receives are 10,000 small
/// objects and one registration each in the kernel's set.</para>
/// <para>Sockets are registered by a token (slot and generation), never by fd number alone,
/// and a socket's handle is referenced only around each native call, so Socket.Dispose is never
/// held up. A disposed socket is dropped by the kernel from the set without an event, so the
/// engine checks its pending sockets' handles every <see cref="ClosedCheckMs"/> while any
/// operation is pending; their operations then fail as the attempt does on a closed socket
/// (<see cref="ObjectDisposedException"/>).</para>
/// <para>A kept registration leaves the kernel's set when its socket is closed (the kernel
/// drops it with the open file), or after <see cref="IdleUnregisterMs"/> without a wait while
/// the socket is open (removed by number, under a reference to the handle, so the number is
/// still this socket's). The engine never removes a closed socket's registration by number:
/// the number may belong to another socket by then. If a duplicate of a closed socket lives on
/// (in this process, or in one it was sent to), the kernel keeps that registration until the
/// duplicate is closed: its events carry the old token, which no state matches, and cost a
/// wake-up each; registering the same open file under the same number again takes the entry
/// over.</para>
/// <para>The engine's descriptors are close-on-exec. An epoll set would be shared with a child
/// made by fork() without exec; .NET processes never do that.</para>
/// </remarks>
internal sealed partial class ReadinessEngine
{
    internal const int ClosedCheckMs = 250;
    internal const int MonitorIntervalMs = 5;
    internal const int SpareIdleMs = 30_000;
    private const int IdleCheckMs = 5_000;
    private const int MaxEvents = 256;
    private const int MonitorParkAfterChecks = 50;
    /// <summary>A kept registration unused (no wait) for this long, and at most twice as long,
    /// is removed from the kernel's set while its socket is open.</summary>
    internal const int IdleUnregisterMs = 10_000;

    /// <summary>Whether continuations run on the engine thread (the default).</summary>
    internal static readonly bool InlineCompletions =
        AppContext.TryGetSwitch("FdSend.Async.InlineCompletions", out bool on) ? on :
        Environment.GetEnvironmentVariable("FDSEND_ASYNC_INLINE_COMPLETIONS") is not ("0" or "false");

    /// <summary>Whether a socket stays registered, edge-triggered, from its first wait until it
    /// is closed or idle (Linux, opt-in: <c>FDSEND_ASYNC_KEEP_REGISTRATION=1</c>, AppContext
    /// <c>FdSend.Async.KeepRegistration</c> = true), instead of one one-shot registration armed
    /// per wait (the default; Windows always, WSAPoll has no edge mode). Kept, a wait costs no
    /// epoll_ctl (ping-pong about 5% faster), but every message arriving while the receiver is
    /// busy wakes an engine thread: a stream receiver on a second CPU lost a third of its
    /// throughput (bench/PROFILE.md section 17), so it is not the default.</summary>
    internal static readonly bool KeepRegistration = OperatingSystem.IsLinux() &&
        (AppContext.TryGetSwitch("FdSend.Async.KeepRegistration", out bool keep) ? keep :
         Environment.GetEnvironmentVariable("FDSEND_ASYNC_KEEP_REGISTRATION") is "1" or "true");

    private static ReadinessEngine? s_instance;
    private static readonly object s_createLock = new();

    private readonly nint _poller;
    private readonly ConditionalWeakTable<Socket, SocketWaitState> _states = new();
    private readonly object _slotsLock = new();
    private SocketWaitState?[] _slots = new SocketWaitState?[64];
    private uint[] _generations = new uint[64];
    private readonly Stack<int> _freeSlots = new();
    private int _slotCount;
    private int _pending; // operations registered and not completed (for the closed-socket check)
    private long _lastClosedCheck = Environment.TickCount64; // the leader's only
    private long _lastIdleSweep = Environment.TickCount64;   // the leader's only

    // The leader's batch while it runs continuations (watched by the monitor).
    private EngineBatch? _current;
    private int _monitorParked;
    private readonly SemaphoreSlim _monitorWake = new(0);
    private long _takeovers;

    // Spare engine threads (deposed leaders) waiting to lead again.
    private readonly object _sparesLock = new();
    private int _spares;
    private int _tickets;

    private ReadinessEngine(nint poller)
    {
        _poller = poller;
        StartThread(Lead, "FdSend readiness engine");
        StartThread(MonitorLoop, "FdSend engine monitor");
    }

    internal static ReadinessEngine Instance => Volatile.Read(ref s_instance) ?? Create();

    /// <summary>How many times a continuation that blocked or ran long lost the leader role
    /// (for tests and diagnostics).</summary>
    internal long Takeovers => Interlocked.Read(ref _takeovers);

    private static unsafe ReadinessEngine Create()
    {
        lock (s_createLock)
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

    private static void StartThread(ThreadStart run, string name) =>
        new Thread(run) { IsBackground = true, Name = name }.UnsafeStart();

    /// <summary>Not observed: see <see cref="ObserveReadable"/>.</summary>
    internal const long NotObserved = -1;

    /// <summary>Kept registrations: the socket's count of readable reports, to be read before
    /// an attempt and handed to the wait that follows it if the attempt finds nothing
    /// (<see cref="ReceiveAsync"/>): the wait then retries only if readiness was reported
    /// since, instead of whenever it was reported while nobody waited. Cheap (no engine or
    /// state is created); <see cref="NotObserved"/> when registrations are one-shot.</summary>
    internal static long ObserveReadable(Socket socket)
    {
        if (!KeepRegistration)
            return NotObserved;
        ReadinessEngine? engine = Volatile.Read(ref s_instance);
        // No state yet: not registered, so nothing was reported; a state starts at 0.
        return engine is not null && engine._states.TryGetValue(socket, out SocketWaitState? state)
            ? (uint)Volatile.Read(ref state.ReadSeq) : 0;
    }

    /// <summary>Registers <paramref name="op"/> (prepared by the caller) for
    /// <paramref name="socket"/> becoming ready in its direction and arms the interest;
    /// returns the operation's task. The caller has just seen the socket not ready;
    /// <paramref name="observed"/> is <see cref="ObserveReadable"/> from before its attempt,
    /// or <see cref="NotObserved"/>.</summary>
    internal ValueTask<bool> Wait(SocketWaitState state, Socket socket, PollOperation op,
                                  CancellationToken cancellationToken, long observed = NotObserved)
    {
        op.Begin(this, state, socket, cancellationToken);
        Interlocked.Increment(ref _pending);
        state.BeforeWaitForTests?.Invoke();
        Exception? failed;
        while (true)
        {
            lock (state)
            {
                state.Used = true;
                // Kept registration: readiness reported since the caller's attempt (or, not
                // knowing when that was, reported while nobody waited in this direction) may
                // have passed with its edge: retry here rather than wait for another (Go's
                // pdReady; .NET's SocketAsyncContext sequence numbers).
                bool retry = observed >= 0 && KeepRegistration
                    ? (uint)state.Sequence(op.Write) != observed
                    : state.TakeReady(op.Write);
                if (!retry)
                {
                    (op.Write ? state.Writers : state.Readers).Add(op);
                    failed = Arm(state);
                    break;
                }
                observed = (uint)state.Sequence(op.Write);
            }
            if (op.TryAttempt())
            {
                op.Signal();
                return new ValueTask<bool>(op, op.Version);
            }
        }
        if (failed is not null)
        {
            if (op.TryClaim(failed))
                op.Signal(); // nobody awaits it yet: completes synchronously
        }
        else
        {
            op.RegisterCancellation(cancellationToken);
        }
        return new ValueTask<bool>(op, op.Version);
    }

    /// <summary>The socket's registration (created on its first wait).</summary>
    internal SocketWaitState GetState(Socket socket) =>
        _states.TryGetValue(socket, out SocketWaitState? s) ? s : _states.GetValue(socket, NewState);

    /// <summary>Waits until <paramref name="socket"/> is ready in one direction (nothing is
    /// attempted; the caller retries).</summary>
    internal ValueTask WaitReadyAsync(Socket socket, bool write, CancellationToken cancellationToken)
    {
        SocketWaitState state = GetState(socket);
        PollOperation op = (write ? Interlocked.Exchange(ref state.CachedWrite, null) : null) ?? new PollOperation();
        op.PrepareWait(write, null);
        Wait(state, socket, op, cancellationToken);
        return write ? WaitWritable(state, op) : new ValueTask(op, op.Version);
    }

    /// <summary>Awaits a writable wait and gives its operation back to the socket's cache (a
    /// stream sender that fills the buffer waits often).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private static async ValueTask WaitWritable(SocketWaitState state, PollOperation op)
    {
        try
        {
            await new ValueTask(op, op.Version).ConfigureAwait(false);
        }
        finally
        {
            state.CachedWrite = op;
        }
    }

    /// <summary>Waits until <paramref name="attempt"/> (retried on the engine thread whenever
    /// the socket is ready in its direction) succeeds. <paramref name="observed"/>: as for
    /// <see cref="Wait"/> (<see cref="ObserveReadable"/> from before the caller's own attempt,
    /// which found the socket empty).</summary>
    internal ValueTask<bool> WaitAttemptAsync(Socket socket, bool write, IPollAttempt attempt, PollOperation op,
                                              CancellationToken cancellationToken, long observed = NotObserved)
    {
        SocketWaitState state = GetState(socket);
        op.PrepareWait(write, attempt);
        return Wait(state, socket, op, cancellationToken, observed);
    }

    /// <summary>Receives one message: the receive is retried on the engine thread when the
    /// socket becomes readable, and its result handed to the awaiter.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<ReceivedFds> ReceiveAsync(Socket socket, Memory<byte> buffer, int maxFds,
                                                       long observed, CancellationToken cancellationToken)
    {
        SocketWaitState state = GetState(socket);
        PollOperation op = Interlocked.Exchange(ref state.CachedReceive, null) ?? new PollOperation();
        op.PrepareReceive(buffer, maxFds);
        try
        {
            await Wait(state, socket, op, cancellationToken, observed).ConfigureAwait(false);
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

    /// <summary>Makes sure the kernel reports the socket becoming ready in the directions that
    /// have waiters (under the state's lock). One-shot: arms the interest (each wait). Kept
    /// registration: registers the socket edge-triggered the first time (readable, and writable
    /// from the first writable wait on) and then does nothing; what became ready since the last
    /// report while nobody waited is the state's ready bit, checked before this. Arming or
    /// registering a socket that is already ready reports it at once, so nothing that arrived
    /// between the caller's attempt and this call is missed.</summary>
    private Exception? Arm(SocketWaitState state)
    {
        uint events = (state.Readers.Count > 0 ? Interop.PollIn : 0) | (state.Writers.Count > 0 ? Interop.PollOut : 0);
        if (events == 0)
            return null;
        if (KeepRegistration)
        {
            events |= Interop.PollIn | state.Interest;
            if (events == state.Interest)
                return null;
        }
        SafeSocketHandle? handle = state.Handle;
        if (handle is null)
            return new ObjectDisposedException(typeof(Socket).FullName);
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            nint fd = handle.DangerousGetHandle();
            uint mode = KeepRegistration ? Interop.PollEdge : Interop.PollOneShot;
            int rc = state.Interest != 0
                ? Interop.PollerModify(_poller, fd, events | mode, state.Token)
                : Interop.PollerAdd(_poller, fd, events | mode, state.Token);
            if (rc == (int)Interop.Status.EINVAL && state.Interest == 0)
            {
                // EEXIST: this open file came back under the same number while an older socket's
                // registration of it is still in the set (a duplicate kept it open): take it over.
                rc = Interop.PollerModify(_poller, fd, events | mode, state.Token);
            }
            if (rc != 0)
                return (Interop.Status)rc == Interop.Status.EBADF
                    ? new ObjectDisposedException(typeof(Socket).FullName)
                    : new SocketException((int)FdSendErrors.ToSocketError((Interop.Status)rc));
            state.Interest = events;
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

    /// <summary>Called by an operation whose outcome is decided (by the engine, cancellation,
    /// or a failure to arm): drops it from its socket's waiters.</summary>
    internal void Remove(SocketWaitState state, PollOperation op)
    {
        lock (state)
            (op.Write ? state.Writers : state.Readers).Remove(op);
        Interlocked.Decrement(ref _pending);
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
    /// (outside the lock; those done go to <paramref name="batch"/>), then, one-shot, re-arm
    /// for whoever still waits (a kept registration: <see cref="ReadyKept"/>).</summary>
    private void Ready(SocketWaitState state, uint events, EngineBatch batch)
    {
        if (KeepRegistration)
        {
            if ((events & (Interop.PollIn | Interop.PollErr)) != 0)
                ReadyKept(state, write: false, batch);
            if ((events & (Interop.PollOut | Interop.PollErr)) != 0)
                ReadyKept(state, write: true, batch);
            return;
        }
        List<PollOperation> scratch = batch.Scratch;
        scratch.Clear();
        lock (state)
        {
            if ((events & (Interop.PollIn | Interop.PollErr)) != 0)
                scratch.AddRange(state.Readers);
            if ((events & (Interop.PollOut | Interop.PollErr)) != 0)
                scratch.AddRange(state.Writers);
        }
        foreach (PollOperation op in scratch)
        {
            if (op.TryAttempt())
                batch.Add(op);
        }
        scratch.Clear();
        Exception? failed;
        lock (state)
        {
            failed = Arm(state);
            if (failed is null)
                return;
            scratch.AddRange(state.Readers);
            scratch.AddRange(state.Writers);
        }
        foreach (PollOperation op in scratch)
        {
            if (op.TryClaim(failed))
                batch.Add(op);
        }
        scratch.Clear();
    }

    /// <summary>Kept registration, the socket ready in one direction: retries that direction's
    /// waiters until one finds nothing (the next edge then reports newer readiness) or none is
    /// left; then the ready bit is set, so that a wait that starts later retries first instead of
    /// waiting for an edge that has passed (the lost wake-up between an attempt and the wait).
    /// Waiters that joined meanwhile are retried too: several messages may have come with one
    /// edge.</summary>
    private static void ReadyKept(SocketWaitState state, bool write, EngineBatch batch)
    {
        List<PollOperation> scratch = batch.Scratch;
        List<PollOperation> waiters = write ? state.Writers : state.Readers;
        lock (state)
            state.NextSequence(write);
        while (true)
        {
            scratch.Clear();
            lock (state)
            {
                foreach (PollOperation op in waiters)
                {
                    if (op.IsWaiting)
                        scratch.Add(op);
                }
                if (scratch.Count == 0)
                {
                    state.SetReady(write);
                    return;
                }
            }
            bool drained = false;
            foreach (PollOperation op in scratch)
            {
                if (op.TryAttempt(out bool attempted))
                    batch.Add(op);
                else if (attempted)
                    drained = true;
            }
            scratch.Clear();
            if (drained)
                return;
        }
    }

    /// <summary>Kept registrations: removes from the kernel's set those of open sockets that
    /// nobody waited on since the last sweep, so that a socket idle for
    /// <see cref="IdleUnregisterMs"/> holds no registration (epoll would keep one past the
    /// socket's close while a duplicate of it lives, in this process or another one it was sent
    /// to). A closed socket's registration is never removed by number (the number may be
    /// another socket's by now): the kernel drops it with the open file.</summary>
    internal void UnregisterIdle()
    {
        List<SocketWaitState> registered = new();
        lock (_slotsLock)
        {
            for (int slot = 0; slot < _slotCount; slot++)
            {
                SocketWaitState? s = _slots[slot];
                if (s is not null && s.Interest != 0)
                    registered.Add(s);
            }
        }
        foreach (SocketWaitState s in registered)
        {
            lock (s)
            {
                if (s.Interest == 0 || s.Readers.Count > 0 || s.Writers.Count > 0)
                    continue;
                if (s.Used)
                {
                    s.Used = false;
                    continue;
                }
                SafeSocketHandle? handle = s.Handle;
                bool added = false;
                try
                {
                    handle?.DangerousAddRef(ref added);
                    if (added)
                        Interop.PollerRemove(_poller, handle!.DangerousGetHandle());
                }
                catch (ObjectDisposedException)
                {
                }
                finally
                {
                    if (added)
                        handle!.DangerousRelease();
                }
                s.Interest = 0;
                s.ReadReady = s.WriteReady = false;
            }
        }
    }

    /// <summary>Every <see cref="ClosedCheckMs"/> while operations wait: a socket disposed
    /// meanwhile left the kernel's set without an event, so retry its operations (the attempt
    /// then throws ObjectDisposedException); and free the slots of sockets that are gone.</summary>
    private void CheckClosed(EngineBatch batch)
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
