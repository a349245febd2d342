// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using System.Threading.Tasks.Sources;

namespace FdSend;

/// <summary>What a <see cref="PollOperation"/> retries on the engine thread when its socket
/// becomes ready: one non-blocking attempt, FdSend's own code only (never user code). True
/// when the operation is done (its outcome kept by the implementer), false to wait again; an
/// exception fails the operation.</summary>
internal interface IPollAttempt
{
    bool TryAttempt();
}

/// <summary>
/// One pending wait on the <see cref="ReadinessEngine"/>: completes with true when its
/// attempt succeeded (or, without an attempt, when the socket became ready), or with the
/// attempt's exception, or with <see cref="OperationCanceledException"/> (nothing consumed).
/// Reusable once its result was taken: one per socket is cached for receives
/// (<see cref="SocketWaitState.CachedReceive"/>).
/// </summary>
/// <remarks>Completing happens in two steps so that the engine never runs user code while it
/// still holds other sockets' outcomes unseen: <see cref="TryAttempt()"/> (or
/// <see cref="TryClaim"/>) decides the outcome and drops the operation from its socket's
/// waiters; <see cref="Signal"/> then hands it to the awaiter, whose continuation runs right
/// there when <see cref="ReadinessEngine.InlineCompletions"/> is on (the default).</remarks>
internal sealed class PollOperation : IValueTaskSource<bool>, IValueTaskSource, IThreadPoolWorkItem
{
    private const int Waiting = 0, Attempting = 1, Done = 2;

    private ManualResetValueTaskSourceCore<bool> _core;
    private ReadinessEngine? _engine;
    private SocketWaitState? _state;
    private Socket? _socket; // keeps the socket (and its handle) alive while pending
    private CancellationToken _cancellationToken;
    private CancellationTokenRegistration _registration;
    private Exception? _error;
    private int _status = Done;

    internal bool Write;
    internal IPollAttempt? Attempt;

    // The receive of SocketFdAsyncExtensions.ReceiveFdsAsync, done on the engine thread.
    internal Memory<byte> Buffer;
    internal int MaxFds;
    internal ReceivedFds? Received;
    private bool _isReceive;

    internal PollOperation() =>
        _core.RunContinuationsAsynchronously = !ReadinessEngine.InlineCompletions;

    internal short Version => _core.Version;

    internal void PrepareReceive(Memory<byte> buffer, int maxFds)
    {
        Write = false;
        Attempt = null;
        _isReceive = true;
        Buffer = buffer;
        MaxFds = maxFds;
        Received = null;
    }

    internal void PrepareWait(bool write, IPollAttempt? attempt)
    {
        Write = write;
        Attempt = attempt;
        _isReceive = false;
    }

    internal void Begin(ReadinessEngine engine, SocketWaitState state, Socket socket, CancellationToken cancellationToken)
    {
        _core.Reset();
        _engine = engine;
        _state = state;
        _socket = socket;
        _cancellationToken = cancellationToken;
        _registration = default;
        _error = null;
        Volatile.Write(ref _status, Waiting);
    }

    internal void RegisterCancellation(CancellationToken cancellationToken)
    {
        if (cancellationToken.CanBeCanceled)
            _registration = cancellationToken.UnsafeRegister(static s => ((PollOperation)s!).Cancel(), this);
    }

    /// <summary>Whether the operation still waits (no outcome decided yet).</summary>
    internal bool IsWaiting => Volatile.Read(ref _status) == Waiting;

    /// <summary>The socket being ready: retries the operation (on the engine thread, or on the
    /// caller's when readiness came while it was not registered). True when it is done (outcome
    /// kept, dropped from the waiters): the caller must then <see cref="Signal"/> it. False
    /// while it still waits (or someone else finished it).</summary>
    internal bool TryAttempt() => TryAttempt(out _);

    /// <summary><see cref="TryAttempt()"/>; <paramref name="attempted"/> says whether the
    /// attempt was made (false: someone else decided the outcome first). Attempted and not done
    /// means the socket had nothing for it at that moment (EAGAIN): newer readiness will be
    /// reported.</summary>
    internal bool TryAttempt(out bool attempted)
    {
        attempted = false;
        if (Interlocked.CompareExchange(ref _status, Attempting, Waiting) != Waiting)
            return false;
        attempted = true;
        bool done;
        try
        {
            done = _isReceive ? FdSendCore.TryReceive(_socket!, Buffer.Span, MaxFds, out Received)
                : Attempt is null || Attempt.TryAttempt();
        }
        catch (Exception e)
        {
            Decide(e);
            return true;
        }
        if (done)
        {
            Decide(null);
            return true;
        }
        Volatile.Write(ref _status, Waiting);
        // A cancellation that came while we were attempting found us busy: honour it now.
        return _cancellationToken.IsCancellationRequested && TryClaim(new OperationCanceledException(_cancellationToken));
    }

    /// <summary>Fails the operation with <paramref name="e"/> if it still waits; true if it did
    /// (the caller must then <see cref="Signal"/> it).</summary>
    internal bool TryClaim(Exception e)
    {
        if (Interlocked.CompareExchange(ref _status, Attempting, Waiting) != Waiting)
            return false;
        Decide(e);
        return true;
    }

    /// <summary>On the cancelling thread: the awaiter's continuation is not run inside
    /// <see cref="CancellationTokenSource.Cancel()"/> (it goes to the thread pool).</summary>
    private void Cancel()
    {
        if (!TryClaim(new OperationCanceledException(_cancellationToken)))
            return;
        if (_core.RunContinuationsAsynchronously)
            Signal();
        else
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    private void Decide(Exception? error)
    {
        _error = error;
        _engine!.Remove(_state!, this);
    }

    /// <summary>Hands the decided outcome to the awaiter (runs its continuation here when
    /// continuations are inline).</summary>
    internal void Signal()
    {
        Exception? error = _error;
        _error = null;
        Volatile.Write(ref _status, Done);
        if (error is null)
            _core.SetResult(true);
        else
            _core.SetException(error);
    }

    void IThreadPoolWorkItem.Execute() => Signal();

    public bool GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _registration.Dispose();
            _registration = default;
            _socket = null;
            Attempt = null;
            Buffer = default;
            _state = null;
        }
    }

    void IValueTaskSource.GetResult(short token) => GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token,
                            ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
