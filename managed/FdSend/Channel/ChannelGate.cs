// SPDX-License-Identifier: MIT
namespace FdSend;

/// <summary>
/// One direction's lock of an <see cref="FdChannel"/>: an async mutex whose uncontended enter
/// and exit are one interlocked operation each (no lock object, no task), queueing waiters
/// only while another call holds it. Waiters are let in in arrival order; their continuations
/// never run inside <see cref="Exit"/>.
/// </summary>
internal sealed class ChannelGate
{
    private const int Free = 0, Held = 1, HeldWithWaiters = 2;

    private int _state;
    private readonly Queue<Waiter> _waiters = new(); // guarded by itself

    /// <summary>Enters if the gate is free; false otherwise (nothing queued).</summary>
    internal bool TryEnter() => Interlocked.CompareExchange(ref _state, Held, Free) == Free;

    /// <summary>Enters, waiting in line while another call holds the gate.</summary>
    /// <exception cref="OperationCanceledException">Cancelled while waiting (not entered).</exception>
    internal ValueTask EnterAsync(CancellationToken cancellationToken)
    {
        if (TryEnter())
            return ValueTask.CompletedTask;
        return EnterSlowAsync(cancellationToken);
    }

    /// <summary>Enters, blocking the calling thread while another call holds the gate.</summary>
    internal void Enter()
    {
        if (!TryEnter())
            EnterSlowAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
    }

    /// <summary>Leaves the gate; the first waiter in line (if any) holds it from now on.</summary>
    internal void Exit()
    {
        if (Interlocked.CompareExchange(ref _state, Free, Held) == Held)
            return;
        Waiter? next = null;
        lock (_waiters)
        {
            while (_waiters.TryDequeue(out Waiter? w))
            {
                if (w.Claim())
                {
                    next = w;
                    break;
                }
            }
            // The gate passes to next (still held), or becomes free.
            Volatile.Write(ref _state, next is null ? Free : _waiters.Count > 0 ? HeldWithWaiters : Held);
        }
        next?.Admit();
    }

    private ValueTask EnterSlowAsync(CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled(cancellationToken);
        Waiter waiter;
        lock (_waiters)
        {
            while (true)
            {
                int state = Volatile.Read(ref _state);
                if (state == Free)
                {
                    if (Interlocked.CompareExchange(ref _state, _waiters.Count > 0 ? HeldWithWaiters : Held, Free) == Free)
                        return ValueTask.CompletedTask;
                    continue;
                }
                // Mark the gate contended so that Exit looks at the queue.
                if (state == HeldWithWaiters || Interlocked.CompareExchange(ref _state, HeldWithWaiters, Held) == Held)
                    break;
            }
            waiter = new Waiter();
            // Registered before the waiter is in line, so that Exit (which needs this lock to
            // admit it) always finds the registration to drop.
            if (cancellationToken.CanBeCanceled)
                waiter.Registration = cancellationToken.UnsafeRegister(static (s, token) => ((Waiter)s!).Cancel(token), waiter);
            _waiters.Enqueue(waiter);
        }
        return new ValueTask(waiter.Task);
    }

    /// <summary>A call waiting in line. Exactly one of <see cref="Claim"/> (by Exit) and
    /// <see cref="Cancel"/> wins.</summary>
    private sealed class Waiter : TaskCompletionSource
    {
        private int _decided;
        internal CancellationTokenRegistration Registration;

        internal Waiter() : base(TaskCreationOptions.RunContinuationsAsynchronously)
        {
        }

        internal bool Claim() => Interlocked.Exchange(ref _decided, 1) == 0;

        internal void Admit()
        {
            Registration.Dispose();
            TrySetResult();
        }

        internal void Cancel(CancellationToken token)
        {
            if (Interlocked.Exchange(ref _decided, 1) == 0)
                TrySetCanceled(token);
        }
    }
}
