// FdSend's asynchronous rows: SendFdsAsync/ReceiveFdsAsync, and the FdChannel message
// channel. Compiled only when managed/FdSend has those APIs (FdSendCompare.csproj defines
// FDSEND_ASYNC / FDSEND_CHANNEL from the files' presence), so the comparison builds at
// every stage of the library.
// SPDX-License-Identifier: MIT
#if FDSEND_ASYNC || FDSEND_CHANNEL
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using FdSend;
using FdSend.Benchmarks.Compare;

static class Check
{
    public static void Sent(int n)
    {
        if (n != Harness.PayloadLength)
            throw new InvalidOperationException($"sent {n} bytes");
    }

    /// <summary>false at end of stream; throws unless 16 bytes + nfds descriptors came.</summary>
    public static bool Received(ReceivedFds r, int nfds)
    {
        if (r.IsEndOfStream) return false;
        if (r.BytesReceived != Harness.PayloadLength || r.Count != nfds || r.Flags != ReceiveFlags.None)
            throw new InvalidOperationException($"received {r}");
        return true;
    }
}
#endif

#if FDSEND_ASYNC
/// <summary>SendFdsAsync(ReadOnlyMemory&lt;byte&gt;, ReadOnlyMemory&lt;Descriptor&gt;) +
/// ReceiveFdsAsync(Memory&lt;byte&gt;, maxFds) returning the owning ReceivedFds. Completed
/// operations take the synchronous path (no state machine); the others use pooled state
/// machines, so that the harness adds no allocation of its own.</summary>
struct AsyncTransport : IAsyncTransport
{
    Socket[] _socks;
    Descriptor[] _fds;
    ReadOnlyMemory<byte> _payload;
    Memory<byte> _buffer;

    public void Setup(Socket[] sockets, int[] fds)
    {
        _socks = sockets;
        _fds = fds.Select(fd => Descriptor.FromRawFd(fd)).ToArray();
        _payload = Harness.Payload.ToArray();
        _buffer = new byte[Harness.PayloadLength];
    }

    public ValueTask SendAsync(int end, int nfds)
    {
        ValueTask<int> t = _socks[end].SendFdsAsync(_payload, _fds.AsMemory(0, nfds));
        if (t.IsCompletedSuccessfully)
        {
            Check.Sent(t.Result);
            return default;
        }
        return Slow(t);

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
        static async ValueTask Slow(ValueTask<int> t) => Check.Sent(await t.ConfigureAwait(false));
    }

    public ValueTask<bool> ReceiveAsync(int end, int nfds)
    {
        ValueTask<ReceivedFds> t = _socks[end].ReceiveFdsAsync(_buffer, nfds);
        if (t.IsCompletedSuccessfully)
        {
            using ReceivedFds r = t.Result;
            return new ValueTask<bool>(Check.Received(r, nfds));
        }
        return Slow(t, nfds);

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        static async ValueTask<bool> Slow(ValueTask<ReceivedFds> t, int nfds)
        {
            using ReceivedFds r = await t.ConfigureAwait(false);
            return Check.Received(r, nfds);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> EchoAsync(int end)
    {
        Socket s = _socks[end];
        using ReceivedFds r = await s.ReceiveFdsAsync(_buffer, 1).ConfigureAwait(false);
        if (!Check.Received(r, 1)) return false;
        Check.Sent(await s.SendFdsAsync(_payload, new Descriptor[] { Descriptor.FromRawFd(r.PeekFd(0)) }).ConfigureAwait(false));
        return true;
    }
}
#endif

#if FDSEND_CHANNEL
/// <summary>FdChannel over each socket: SendAsync(payload, descriptors) and
/// ReceiveAsync() returning an FdMessage (pooled payload buffer + owning ReceivedFds).</summary>
struct ChannelTransport : IAsyncTransport
{
    FdChannel[] _channels;
    Descriptor[] _fds;
    ReadOnlyMemory<byte> _payload;

    public void Setup(Socket[] sockets, int[] fds)
    {
        _channels = sockets.Select(s => new FdChannel(s)).ToArray();
        _fds = fds.Select(fd => Descriptor.FromRawFd(fd)).ToArray();
        _payload = Harness.Payload.ToArray();
    }

    public ValueTask SendAsync(int end, int nfds) => _channels[end].SendAsync(_payload, _fds.AsMemory(0, nfds));

    /// <summary>As AsyncTransport's: a receive that completed takes the synchronous path (no
    /// state machine of the harness's own), the others a pooled one.</summary>
    public ValueTask<bool> ReceiveAsync(int end, int nfds)
    {
        ValueTask<FdMessage> t = _channels[end].ReceiveAsync();
        if (t.IsCompletedSuccessfully)
            return new ValueTask<bool>(Checked(t.Result, nfds));
        return Slow(t, nfds);

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        static async ValueTask<bool> Slow(ValueTask<FdMessage> t, int nfds)
        {
            FdMessage m;
            try
            {
                m = await t.ConfigureAwait(false);
            }
            catch (EndOfStreamException)
            {
                return false;
            }
            return Checked(m, nfds);
        }
    }

    /// <summary>Checks a message (16 bytes, nfds descriptors) and disposes it.</summary>
    static bool Checked(FdMessage m, int nfds)
    {
        using (m)
        {
            if (m.Length != Harness.PayloadLength || m.FdCount != nfds)
                throw new InvalidOperationException($"received {m}");
        }
        return true;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> EchoAsync(int end)
    {
        FdMessage m;
        try
        {
            m = await _channels[end].ReceiveAsync().ConfigureAwait(false);
        }
        catch (EndOfStreamException)
        {
            return false;
        }
        using (m)
        {
            if (m.Length != Harness.PayloadLength || m.FdCount != 1)
                throw new InvalidOperationException($"received {m}");
            await _channels[end].SendAsync(_payload, new Descriptor[] { Descriptor.FromRawFd(m.Fds.PeekFd(0)) }).ConfigureAwait(false);
        }
        return true;
    }
}
#endif
