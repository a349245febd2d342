// SPDX-License-Identifier: MIT
using System.Net.Sockets;

namespace FdSend;

/// <summary>One socket's registration with the <see cref="ReadinessEngine"/>: its token, its
/// waiting operations per direction, what the kernel's set has of it, and (kept registrations)
/// per direction whether readiness was reported while nobody waited there. All fields but the
/// caches are under the state's lock.</summary>
internal sealed class SocketWaitState
{
    private readonly WeakReference<SafeSocketHandle> _handle;
    internal readonly ulong Token;
    internal readonly List<PollOperation> Readers = new(1);
    internal readonly List<PollOperation> Writers = new(1);
    internal uint Interest;   // the directions registered in the kernel's set (0: none)
    internal bool ReadReady;  // kept registration: readable reported with no reader waiting
    internal bool WriteReady;
    internal bool Used;       // a wait since the last idle sweep
    internal int ReadSeq;     // kept registration: readable reports so far (see ObserveReadable)
    internal int WriteSeq;
    /// <summary>Tests: runs in each wait after the caller's attempt, before the wait is parked
    /// (where readiness that arrives is the lost wake-up the wait must not miss).</summary>
    internal Action? BeforeWaitForTests { get; set; }
    internal PollOperation? CachedReceive;
    internal PollOperation? CachedWrite;

    internal SocketWaitState(SafeSocketHandle handle, ulong token)
    {
        _handle = new WeakReference<SafeSocketHandle>(handle);
        Token = token;
    }

    /// <summary>The socket's handle while it is alive (weak: a forgotten socket's handle must
    /// still be finalized, and close its fd).</summary>
    internal SafeSocketHandle? Handle => _handle.TryGetTarget(out SafeSocketHandle? h) && !h.IsClosed ? h : null;

    internal bool IsGone => Handle is null;

    /// <summary>Takes the direction's ready bit (true: retry before waiting).</summary>
    internal bool TakeReady(bool write)
    {
        ref bool ready = ref write ? ref WriteReady : ref ReadReady;
        if (!ready)
            return false;
        ready = false;
        return true;
    }

    internal int Sequence(bool write) => write ? WriteSeq : ReadSeq;

    internal void NextSequence(bool write)
    {
        if (write)
            WriteSeq++;
        else
            Volatile.Write(ref ReadSeq, ReadSeq + 1);
    }

    internal void SetReady(bool write)
    {
        if (write)
            WriteReady = true;
        else
            ReadReady = true;
    }
}
