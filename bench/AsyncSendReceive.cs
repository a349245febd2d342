// Asynchronous send + receive + close in one process: SendFdsAsync/ReceiveFdsAsync and the
// FdChannel, against the synchronous owning receive (the same result type) as baseline.
// Compiled only when managed/FdSend has the async API / the channel (see the csproj).
// SPDX-License-Identifier: MIT
#if FDSEND_ASYNC
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using FdSend.Benchmarks.Compare;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Benchmarks;

[MemoryDiagnoser]
public class AsyncSendReceive
{
    [Params(1, 64)]
    public int Fds { get; set; }

    Socket _a = null!, _b = null!, _syncA = null!, _syncB = null!;
    SafeFileHandle[] _handles = [];
    int[] _rawFds = [];
    Descriptor[] _fds = [];
    readonly byte[] _payload = Harness.Payload.ToArray();
    readonly byte[] _buffer = new byte[Harness.PayloadLength];
#if FDSEND_CHANNEL
    Socket _chA = null!, _chB = null!;
    FdChannel _sender = null!, _receiver = null!;
#endif

    [GlobalSetup]
    public void Setup()
    {
        (_a, _b) = Harness.SocketPair();
        (_syncA, _syncB) = Harness.SocketPair();
        _handles = new SafeFileHandle[Fds];
        for (int i = 0; i < Fds; i++)
            _handles[i] = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
        _rawFds = _handles.Select(h => (int)h.DangerousGetHandle()).ToArray();
        _fds = _rawFds.Select(fd => Descriptor.FromRawFd(fd)).ToArray();
#if FDSEND_CHANNEL
        (_chA, _chB) = Harness.SocketPair();
        _sender = new FdChannel(_chA);
        _receiver = new FdChannel(_chB);
#endif
    }

    [GlobalCleanup]
    public void Cleanup()
    {
#if FDSEND_CHANNEL
        _sender.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _receiver.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _chA.Dispose();
        _chB.Dispose();
#endif
        foreach (Socket s in new[] { _a, _b, _syncA, _syncB })
            s.Dispose();
        foreach (SafeFileHandle h in _handles)
            h.Dispose();
    }

    [Benchmark(Baseline = true, Description = "sync, owning ReceivedFds")]
    public int Sync()
    {
        _syncA.SendFds(_payload, (ReadOnlySpan<int>)_rawFds);
        using ReceivedFds r = _syncB.ReceiveFds(_buffer, Fds);
        return r.Count == Fds ? r.Count : throw new InvalidOperationException($"received {r}");
    }

    [Benchmark(Description = "SendFdsAsync + ReceiveFdsAsync")]
    public async ValueTask<int> Async()
    {
        await _a.SendFdsAsync(_payload, _fds).ConfigureAwait(false);
        using ReceivedFds r = await _b.ReceiveFdsAsync(_buffer, Fds).ConfigureAwait(false);
        return r.Count == Fds ? r.Count : throw new InvalidOperationException($"received {r}");
    }

#if FDSEND_CHANNEL
    [Benchmark(Description = "FdChannel SendAsync + ReceiveAsync")]
    public async ValueTask<int> Channel()
    {
        await _sender.SendAsync(_payload, _fds).ConfigureAwait(false);
        using FdMessage m = await _receiver.ReceiveAsync().ConfigureAwait(false);
        return m.FdCount == Fds ? m.FdCount : throw new InvalidOperationException($"received {m}");
    }
#endif
}
#endif
