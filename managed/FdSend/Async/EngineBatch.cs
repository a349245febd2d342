// SPDX-License-Identifier: MIT
namespace FdSend;

/// <summary>One engine thread's operations whose outcome is decided, and whose continuations
/// it runs (or the monitor hands to the thread pool, if it took the leader role away).</summary>
internal sealed class EngineBatch
{
    internal const int Idle = 0, Running = 1, Deposed = 2;
    internal PollOperation?[] Ops = new PollOperation?[16];
    internal int Count;
    internal int Next;      // the next to run, taken with Interlocked by the runner and the monitor
    internal long Progress; // bumped before each continuation: the monitor's sign of life
    internal int State;
    internal readonly List<PollOperation> Scratch = new();

    internal void Add(PollOperation op)
    {
        if (Count == Ops.Length)
            Array.Resize(ref Ops, Ops.Length * 2);
        Ops[Count++] = op;
    }
}
