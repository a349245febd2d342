// Two processes: this one sends 16 bytes + 1 fd, the peer (FdSendCompare in its child
// mode) receives it, sends 16 bytes + that fd back and closes it; this one receives and
// closes. Both processes run on one CPU, so that a hand-off is a context switch rather than
// a cross-CPU wake-up (whose latency would dominate and vary from run to run).
// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Net.Sockets;
using System.Reflection;
using BenchmarkDotNet.Attributes;
using FdSend.Benchmarks.Compare;

namespace FdSend.Benchmarks;

[MemoryDiagnoser]
public class PingPong
{
    Socket _socket = null!;
    Process _peer = null!;
    int[] _fd = [];
    Descriptor[] _descriptor = [];
    readonly byte[] _buffer = new byte[Harness.PayloadLength];
    readonly byte[] _payload = Harness.Payload.ToArray();
    readonly int[] _received = new int[1];

    /// <summary>Starts the echo peer: FdSendCompare --child IMPL pingpong1 PATH.</summary>
    void StartPeer(string impl)
    {
        // This (benchmark) thread and, by inheritance, the peer process: one CPU.
        if (OperatingSystem.IsLinux() && Environment.ProcessorCount > 1)
            Process.GetCurrentProcess().ProcessorAffinity = (IntPtr)(1L << (Environment.ProcessorCount - 1));
        string dir = typeof(PingPong).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .First(a => a.Key == "FdSendCompareDir").Value!;
        string exe = Path.Combine(dir, "FdSendCompare");
        if (!File.Exists(exe))
            throw new FileNotFoundException("The echo peer is not built (dotnet build -c Release bench)", exe);
        string path = Path.Combine(Path.GetTempPath(), $"fdsend-bdn-{Environment.ProcessId}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        File.Delete(path);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        _peer = Process.Start(new ProcessStartInfo(exe) { ArgumentList = { "--child", impl, "pingpong1", path } })!;
        if (!listener.Poll(TimeSpan.FromSeconds(30), SelectMode.SelectRead))
            throw new InvalidOperationException("the echo peer did not connect");
        _socket = listener.Accept();
        File.Delete(path);
        var h = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
        GC.SuppressFinalize(h);
        _fd = [(int)h.DangerousGetHandle()];
        _descriptor = [Descriptor.FromRawFd(_fd[0])];
    }

    [GlobalSetup(Target = nameof(SyncRoundTrip))]
    public void SetupSync() => StartPeer("span");

    [GlobalCleanup]
    public void Cleanup()
    {
        _socket.Shutdown(SocketShutdown.Send);
        _peer.WaitForExit(TimeSpan.FromSeconds(30));
        _socket.Dispose();
        _peer.Dispose();
    }

    [Benchmark(Baseline = true, Description = "sync round trip, span overloads")]
    public int SyncRoundTrip()
    {
        _socket.SendFds(Harness.Payload, (ReadOnlySpan<int>)_fd);
        int n = _socket.ReceiveFds(_buffer, _received, out int count, out ReceiveFlags _);
        if (n != Harness.PayloadLength || count != 1)
            throw new InvalidOperationException($"received {n} bytes, {count} fds");
        Harness.Close(_received[0]);
        return n;
    }

#if FDSEND_ASYNC
    [GlobalSetup(Target = nameof(AsyncRoundTrip))]
    public void SetupAsync() => StartPeer("async");

    [Benchmark(Description = "async round trip, SendFdsAsync/ReceiveFdsAsync")]
    public async ValueTask<int> AsyncRoundTrip()
    {
        await _socket.SendFdsAsync(_payload, _descriptor).ConfigureAwait(false);
        using ReceivedFds r = await _socket.ReceiveFdsAsync(_buffer, 1).ConfigureAwait(false);
        return r.Count == 1 ? r.BytesReceived : throw new InvalidOperationException($"received {r}");
    }
#endif
}
