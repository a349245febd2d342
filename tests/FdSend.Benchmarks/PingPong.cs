// Two processes: this one sends 16 bytes + 1 fd, the peer (FdSendCompare in its child
// mode, FdSend's span overloads) receives it, sends 16 bytes + that fd back and closes it;
// this one receives and closes. Both processes run on one CPU, so that a hand-off is a
// context switch rather than a cross-CPU wake-up (whose latency would dominate and vary).
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
    byte[] _buffer = new byte[Harness.PayloadLength];
    int[] _received = new int[1];

    [GlobalSetup]
    public void Setup()
    {
        // This (benchmark) thread and, by inheritance, the peer process: one CPU.
        if (OperatingSystem.IsLinux() && Environment.ProcessorCount > 1)
            Process.GetCurrentProcess().ProcessorAffinity = (IntPtr)(1L << (Environment.ProcessorCount - 1));
        string dir = typeof(PingPong).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .First(a => a.Key == "FdSendCompareDir").Value!;
        string exe = Path.Combine(dir, "FdSendCompare");
        if (!File.Exists(exe))
            throw new FileNotFoundException("The echo peer is not built (dotnet build -c Release tests/FdSend.Benchmarks)", exe);
        string path = Path.Combine(Path.GetTempPath(), $"fdsend-bdn-{Environment.ProcessId}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        File.Delete(path);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        _peer = Process.Start(new ProcessStartInfo(exe) { ArgumentList = { "--child", "span", "pingpong1", path } })!;
        if (!listener.Poll(TimeSpan.FromSeconds(30), SelectMode.SelectRead))
            throw new InvalidOperationException("the echo peer did not connect");
        _socket = listener.Accept();
        File.Delete(path);
        var h = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
        GC.SuppressFinalize(h);
        _fd = [(int)h.DangerousGetHandle()];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _socket.Shutdown(SocketShutdown.Send);
        _peer.WaitForExit(TimeSpan.FromSeconds(30));
        _socket.Dispose();
        _peer.Dispose();
    }

    [Benchmark(Description = "sync round trip, span overloads")]
    public int SyncRoundTrip()
    {
        _socket.SendFds(Harness.Payload, (ReadOnlySpan<int>)_fd);
        int n = _socket.ReceiveFds(_buffer, _received, out int count, out ReceiveFlags _);
        if (n != Harness.PayloadLength || count != 1)
            throw new InvalidOperationException($"received {n} bytes, {count} fds");
        Harness.Close(_received[0]);
        return n;
    }
}
