// Send + receive + close in one process, over one connected Unix stream socket pair:
// 1, 16, 64 and 253 descriptors with 16 bytes and with 64 KiB of data, through the
// zero-allocation span overloads (the baseline), the owning ReceivedFds, and the
// handle-based Descriptor (SafeHandle reference counting on the send side).
// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using FdSend.Benchmarks.Compare;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Benchmarks;

[MemoryDiagnoser]
public class SendReceive
{
    [Params(1, 16, 64, 253)]
    public int Fds { get; set; }

    [Params(16, 65536)]
    public int DataBytes { get; set; }

    Socket _a = null!, _b = null!;
    SafeFileHandle[] _handles = [];
    int[] _rawFds = [];
    Descriptor[] _handleDescriptors = [];
    byte[] _data = [], _buffer = [];
    int[] _received = [];

    [GlobalSetup]
    public void Setup()
    {
        (_a, _b) = Harness.SocketPair();
        // Room for a whole 64 KiB message in flight.
        _a.SendBufferSize = 1 << 20;
        _b.ReceiveBufferSize = 1 << 20;
        _handles = new SafeFileHandle[Fds];
        for (int i = 0; i < Fds; i++)
            _handles[i] = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
        _rawFds = _handles.Select(h => (int)h.DangerousGetHandle()).ToArray();
        _handleDescriptors = _handles.Select(h => (Descriptor)h).ToArray();
        _data = new byte[DataBytes];
        new Random(42).NextBytes(_data);
        _buffer = new byte[DataBytes];
        _received = new int[Fds];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _a.Dispose();
        _b.Dispose();
        foreach (SafeFileHandle h in _handles)
            h.Dispose();
    }

    /// <summary>A stream socket may deliver a large message's data in several pieces (the
    /// descriptors come with the first): read the rest.</summary>
    void ReceiveRest(int got)
    {
        while (got < _buffer.Length)
        {
            int n = _b.Receive(_buffer.AsSpan(got));
            if (n <= 0)
                throw new InvalidOperationException("end of stream");
            got += n;
        }
    }

    [Benchmark(Baseline = true, Description = "span overloads (raw int fds in and out)")]
    public int Span()
    {
        _a.SendFds(_data, (ReadOnlySpan<int>)_rawFds);
        int n = _b.ReceiveFds(_buffer, _received, out int count, out ReceiveFlags _);
        if (count != Fds)
            throw new InvalidOperationException($"received {count} fds");
        for (int i = 0; i < count; i++)
            Harness.Close(_received[i]);
        ReceiveRest(n);
        return count;
    }

    [Benchmark(Description = "owning ReceivedFds (Dispose closes)")]
    public int Owning()
    {
        _a.SendFds(_data, (ReadOnlySpan<int>)_rawFds);
        int n, count;
        using (ReceivedFds r = _b.ReceiveFds(_buffer, Fds))
        {
            n = r.BytesReceived;
            count = r.Count;
        }
        if (count != Fds)
            throw new InvalidOperationException($"received {count} fds");
        ReceiveRest(n);
        return count;
    }

    [Benchmark(Description = "SafeHandle descriptors sent, span receive")]
    public int Handles()
    {
        _a.SendFds(_data, _handleDescriptors);
        int n = _b.ReceiveFds(_buffer, _received, out int count, out ReceiveFlags _);
        if (count != Fds)
            throw new InvalidOperationException($"received {count} fds");
        for (int i = 0; i < count; i++)
            Harness.Close(_received[i]);
        ReceiveRest(n);
        return count;
    }
}
