// FdSend in the comparison: each implementation below is one row of the table. To add a
// row, write a transport struct (ITransport or IAsyncTransport from ../Common/Harness.cs)
// and add one line to the list; compare.py picks it up through "FdSendCompare --list".
// The async and channel rows (AsyncTransports.cs) exist when managed/FdSend has the APIs.
// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using FdSend;
using FdSend.Benchmarks.Compare;

return Harness.RunMain(args, "fdsend",
[
    new("span", "FdSend sync, span overloads (caller closes raw fds)", Harness.Run<SpanTransport>),
    new("owning", "FdSend sync, owning ReceivedFds (Dispose closes)", Harness.Run<OwningTransport>),
#if FDSEND_ASYNC
    new("async", "FdSend async, SendFdsAsync/ReceiveFdsAsync (owning ReceivedFds)", Harness.RunAsync<AsyncTransport>),
    // The same with the readiness engine's opt-out: continuations queued to the thread pool
    // instead of run inline on the engine thread (FDSEND_ASYNC_INLINE_COMPLETIONS=0).
    new("async-pool", "FdSend async, continuations on the thread pool (FDSEND_ASYNC_INLINE_COMPLETIONS=0)", OnThreadPool(Harness.RunAsync<AsyncTransport>)),
#endif
#if FDSEND_CHANNEL
    new("channel", "FdSend FdChannel (framed messages, async)", Harness.RunAsync<ChannelTransport>),
    new("channel-pool", "FdSend FdChannel, continuations on the thread pool (FDSEND_ASYNC_INLINE_COMPLETIONS=0)", OnThreadPool(Harness.RunAsync<ChannelTransport>)),
#endif
],
new Dictionary<string, Func<string[], int>>
{
    ["--pending"] = PendingReceives.Run,
#if FDSEND_ASYNC
    ["--pending-peer"] = PendingReceives.Peer,
#endif
});

// Runs a row with FdSend's inline completions switched off (before FdSend reads the
// switch; the child process runs the same row, so it gets it too).
static Func<Options, int> OnThreadPool(Func<Options, int> run) => o =>
{
    AppContext.SetSwitch("FdSend.Async.InlineCompletions", false);
    return run(o);
};

/// <summary>SendFds(data, ReadOnlySpan&lt;int&gt;) + ReceiveFds(buffer, Span&lt;int&gt;, out count,
/// out flags): the zero-allocation pair. The descriptors to send are raw ints, like every
/// other implementation's.</summary>
struct SpanTransport : ITransport
{
    Socket[] _socks;
    int[] _fds;
    byte[] _buffer;

    public void Setup(Socket[] sockets, int[] fds)
    {
        _socks = sockets;
        _fds = fds;
        _buffer = new byte[Harness.PayloadLength];
    }

    public void Send(int end, int nfds)
    {
        int n = _socks[end].SendFds(Harness.Payload, _fds.AsSpan(0, nfds));
        if (n != Harness.PayloadLength)
            throw new InvalidOperationException($"sent {n} bytes");
    }

    public bool Receive(int end, int nfds)
    {
        Span<int> got = stackalloc int[64];
        int n = _socks[end].ReceiveFds(_buffer, got[..nfds], out int count, out ReceiveFlags flags);
        if (n == 0 && count == 0) return false;
        if (n != Harness.PayloadLength || count != nfds || flags != ReceiveFlags.None)
            throw new InvalidOperationException($"received {n} bytes, {count} fds, {flags}");
        FdPassing.CloseAll(got[..count]); // one native call for the message's descriptors
        return true;
    }

    public bool Echo(int end)
    {
        Span<int> got = stackalloc int[1];
        Socket s = _socks[end];
        int n = s.ReceiveFds(_buffer, got, out int count, out ReceiveFlags flags);
        if (n == 0 && count == 0) return false;
        if (n != Harness.PayloadLength || count != 1 || flags != ReceiveFlags.None)
            throw new InvalidOperationException($"received {n} bytes, {count} fds, {flags}");
        s.SendFds(Harness.Payload, (ReadOnlySpan<int>)got);
        Harness.Close(got[0]);
        return true;
    }
}

/// <summary>SendFds(data, ReadOnlySpan&lt;int&gt;) + ReceiveFds(buffer, maxFds) returning an
/// owning ReceivedFds whose Dispose closes the descriptors nobody took.</summary>
struct OwningTransport : ITransport
{
    Socket[] _socks;
    int[] _fds;
    byte[] _buffer;

    public void Setup(Socket[] sockets, int[] fds)
    {
        _socks = sockets;
        _fds = fds;
        _buffer = new byte[Harness.PayloadLength];
    }

    public void Send(int end, int nfds)
    {
        int n = _socks[end].SendFds(Harness.Payload, _fds.AsSpan(0, nfds));
        if (n != Harness.PayloadLength)
            throw new InvalidOperationException($"sent {n} bytes");
    }

    public bool Receive(int end, int nfds)
    {
        using ReceivedFds r = _socks[end].ReceiveFds(_buffer, nfds);
        if (r.IsEndOfStream) return false;
        if (r.BytesReceived != Harness.PayloadLength || r.Count != nfds || r.Flags != ReceiveFlags.None)
            throw new InvalidOperationException($"received {r}");
        return true;
    }

    public bool Echo(int end)
    {
        Socket s = _socks[end];
        using ReceivedFds r = s.ReceiveFds(_buffer, 1);
        if (r.IsEndOfStream) return false;
        if (r.BytesReceived != Harness.PayloadLength || r.Count != 1 || r.Flags != ReceiveFlags.None)
            throw new InvalidOperationException($"received {r}");
        ReadOnlySpan<int> fd = [r.PeekFd(0)];
        s.SendFds(Harness.Payload, fd);
        return true;
    }
}
