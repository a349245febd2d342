// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FdSend;

// The engine's threads (ReadinessEngine): the leader that polls and runs
// what became ready, the spares that wait to lead, and the monitor that takes the leader role
// from a continuation that blocks or runs long.
internal sealed partial class ReadinessEngine
{
    /// <summary>An engine thread: leads (polls, then runs what became ready) until a
    /// continuation it ran inline is taken over by the monitor; then waits as a spare to lead
    /// again, and ends after <see cref="SpareIdleMs"/> unused.</summary>
    private unsafe void Lead()
    {
        Interop.PollEvent* events = (Interop.PollEvent*)NativeMemory.Alloc(MaxEvents, (nuint)sizeof(Interop.PollEvent));
        var batch = new EngineBatch();
        try
        {
            while (true)
            {
                Poll(events, batch);
                if (batch.Count > 0 && !RunBatch(batch) && !WaitAsSpare())
                    return;
            }
        }
        finally
        {
            NativeMemory.Free(events);
        }
    }

    /// <summary>One wait for readiness: the ready sockets' operations are retried (FdSend's
    /// own calls only) and those that are done collected in <paramref name="batch"/>.</summary>
    private unsafe void Poll(Interop.PollEvent* events, EngineBatch batch)
    {
        batch.Count = 0;
        int timeout = Volatile.Read(ref _pending) > 0 ? ClosedCheckMs : IdleCheckMs;
        int n = Interop.PollerWait(_poller, events, MaxEvents, timeout);
        for (int i = 0; i < n; i++)
        {
            SocketWaitState? state = Lookup(events[i].Token);
            if (state is not null)
                Ready(state, events[i].Events, batch);
        }
        long now = Environment.TickCount64;
        if (n <= 0 || now - _lastClosedCheck >= ClosedCheckMs)
        {
            _lastClosedCheck = now;
            CheckClosed(batch);
            if (KeepRegistration && now - _lastIdleSweep >= IdleUnregisterMs)
            {
                _lastIdleSweep = now;
                UnregisterIdle();
            }
        }
    }

    /// <summary>Runs the batch's continuations, watched by the monitor. False if the monitor
    /// took the leader role away meanwhile (this thread then is a spare).</summary>
    private bool RunBatch(EngineBatch batch)
    {
        batch.Next = 0;
        Volatile.Write(ref batch.Progress, batch.Progress + 1);
        Volatile.Write(ref _current, batch);
        Interlocked.Exchange(ref batch.State, EngineBatch.Running);
        if (Volatile.Read(ref _monitorParked) != 0 && Interlocked.Exchange(ref _monitorParked, 0) != 0)
            _monitorWake.Release();
        int i;
        while ((i = Interlocked.Increment(ref batch.Next) - 1) < batch.Count)
        {
            PollOperation op = batch.Ops[i]!;
            batch.Ops[i] = null;
            Volatile.Write(ref batch.Progress, batch.Progress + 1);
            op.Signal();
        }
        return Interlocked.CompareExchange(ref batch.State, EngineBatch.Idle, EngineBatch.Running) == EngineBatch.Running;
    }

    private bool WaitAsSpare()
    {
        lock (_sparesLock)
        {
            _spares++;
            try
            {
                while (_tickets == 0)
                {
                    if (!Monitor.Wait(_sparesLock, SpareIdleMs) && _tickets == 0)
                        return false;
                }
                _tickets--;
                return true;
            }
            finally
            {
                _spares--;
            }
        }
    }

    /// <summary>The monitor: takes the leader role from a continuation that makes no progress
    /// over two checks; parks while no batch runs.</summary>
    private void MonitorLoop()
    {
        EngineBatch? seen = null;
        long seenProgress = 0;
        int quiet = 0;
        while (true)
        {
            Thread.Sleep(MonitorIntervalMs);
            EngineBatch? batch = Volatile.Read(ref _current);
            if (batch is null || Volatile.Read(ref batch.State) != EngineBatch.Running)
            {
                seen = null;
                if (++quiet >= MonitorParkAfterChecks)
                {
                    quiet = 0;
                    Park();
                }
                continue;
            }
            quiet = 0;
            long progress = Volatile.Read(ref batch.Progress);
            if (batch == seen && progress == seenProgress)
            {
                TakeOver(batch);
                seen = null;
                continue;
            }
            seen = batch;
            seenProgress = progress;
        }
    }

    /// <summary>Sleeps until a leader starts running continuations (it releases us).</summary>
    private void Park()
    {
        Interlocked.Exchange(ref _monitorParked, 1);
        EngineBatch? batch = Volatile.Read(ref _current);
        if (batch is not null && Volatile.Read(ref batch.State) == EngineBatch.Running &&
            Interlocked.Exchange(ref _monitorParked, 0) != 0)
            return; // un-parked ourselves: nobody released
        _monitorWake.Wait();
    }

    private void TakeOver(EngineBatch batch)
    {
        if (Interlocked.CompareExchange(ref batch.State, EngineBatch.Deposed, EngineBatch.Running) != EngineBatch.Running)
            return;
        Interlocked.Increment(ref _takeovers);
        int i;
        while ((i = Interlocked.Increment(ref batch.Next) - 1) < batch.Count)
        {
            PollOperation op = batch.Ops[i]!;
            batch.Ops[i] = null;
            ThreadPool.UnsafeQueueUserWorkItem(op, preferLocal: false);
        }
        lock (_sparesLock)
        {
            if (_spares > _tickets)
            {
                _tickets++;
                Monitor.Pulse(_sparesLock);
                return;
            }
        }
        StartThread(Lead, "FdSend readiness engine");
    }
}
