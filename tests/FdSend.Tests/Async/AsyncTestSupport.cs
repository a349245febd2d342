// SPDX-License-Identifier: MIT
// Helpers of the Async and Channel fixtures: the FdSend.TestPeer child process, socket-buffer
// filling, fd and thread counts that settle, and timeouts that turn a hang into a failure.
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace FdSend.Tests.Async;

/// <summary>FdSend.TestPeer's async and channel verbs (tests/FdSend.TestPeer) running as a
/// real child process, connected to a listener here.</summary>
public sealed class AsyncPeerProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();

    private AsyncPeerProcess(Process process, Socket[] connections)
    {
        _process = process;
        Connections = connections;
    }

    /// <summary>This side of each connection the child made, in accept order.</summary>
    public Socket[] Connections { get; }

    public int Pid => _process.Id;

    /// <summary>Starts the peer and accepts <paramref name="connections"/> connections (30 s).</summary>
    public static AsyncPeerProcess Start(TempDir dir, string command, int connections, params string[] extraArgs)
    {
        string path = dir.NewPath("ap");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(connections);

        var psi = new ProcessStartInfo(Peer.DotnetHost())
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add(Peer.PeerDll);
        psi.ArgumentList.Add(command);
        psi.ArgumentList.Add(path);
        foreach (string a in extraArgs)
            psi.ArgumentList.Add(a);
        Process process = Process.Start(psi) ?? throw new InvalidOperationException("could not start FdSend.TestPeer");
        var sockets = new Socket[connections];
        var peer = new AsyncPeerProcess(process, sockets);
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (peer._stdout) peer._stdout.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (peer._stderr) peer._stderr.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        for (int i = 0; i < connections; i++)
        {
            if (!listener.Poll(TimeSpan.FromSeconds(30), SelectMode.SelectRead))
            {
                peer.Kill();
                throw new TimeoutException($"FdSend.TestPeer did not connect: {peer.Stderr}");
            }
            sockets[i] = listener.Accept();
        }
        return peer;
    }

    public string Stderr
    {
        get
        {
            lock (_stderr)
                return _stderr.ToString();
        }
    }

    /// <summary>Writes a line to the peer's standard input.</summary>
    public void Signal(string line = "go")
    {
        _process.StandardInput.WriteLine(line);
        _process.StandardInput.Flush();
    }

    /// <summary>Waits for the peer to exit with 0 and returns what it printed.</summary>
    public string WaitForSuccess(int timeoutMs = 30_000)
    {
        if (!_process.WaitForExit(timeoutMs))
        {
            Kill();
            Assert.Fail($"FdSend.TestPeer did not exit within {timeoutMs} ms: {Stderr}");
        }
        _process.WaitForExit(); // flush the async readers
        Assert.That(_process.ExitCode, Is.EqualTo(0), $"FdSend.TestPeer failed: {Stderr}");
        lock (_stdout)
            return _stdout.ToString();
    }

    private void Kill()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
    }

    public void Dispose()
    {
        foreach (Socket? s in Connections)
            s?.Dispose();
        // Process.Dispose leaves a standard input that was used (Signal) to its user: closed
        // here, not by a finalizer in some later test that counts this process's descriptors.
        _process.StandardInput.Dispose();
        if (!_process.HasExited && !_process.WaitForExit(10_000))
            Kill();
        _process.Dispose();
    }
}

public static partial class AsyncTest
{
    /// <summary>Fails the test instead of hanging it.</summary>
    public static async Task<T> Within<T>(this Task<T> task, int ms = 20_000)
    {
        if (await Task.WhenAny(task, Task.Delay(ms)).ConfigureAwait(false) != task)
            Assert.Fail($"the operation did not complete within {ms} ms");
        return await task.ConfigureAwait(false);
    }

    public static async Task Within(this Task task, int ms = 20_000)
    {
        if (await Task.WhenAny(task, Task.Delay(ms)).ConfigureAwait(false) != task)
            Assert.Fail($"the operation did not complete within {ms} ms");
        await task.ConfigureAwait(false);
    }

    public static Task<T> Within<T>(this ValueTask<T> task, int ms = 20_000) => task.AsTask().Within(ms);

    public static Task Within(this ValueTask task, int ms = 20_000) => task.AsTask().Within(ms);

    /// <summary>Asserts that the task does not complete within <paramref name="ms"/>.</summary>
    public static async Task AssertPending(Task task, int ms = 200)
    {
        await Task.WhenAny(task, Task.Delay(ms)).ConfigureAwait(false);
        Assert.That(task.IsCompleted, Is.False, $"the operation completed ({task.Status}) but should still be waiting");
    }

    /// <summary>Writes to <paramref name="socket"/> until its send buffer (and the peer's
    /// receive buffer) is full; returns the bytes written. The socket stays blocking.</summary>
    public static long Fill(Socket socket, int sendBufferSize = 16 * 1024)
    {
        socket.SendBufferSize = sendBufferSize;
        bool wasBlocking = socket.Blocking;
        socket.Blocking = false;
        long total = 0;
        var chunk = new byte[4096];
        Array.Fill(chunk, (byte)'f');
        try
        {
            while (true)
            {
                int n = socket.Send(chunk, 0, chunk.Length, SocketFlags.None, out SocketError error);
                if (error == SocketError.WouldBlock)
                    break;
                if (error != SocketError.Success)
                    throw new SocketException((int)error);
                total += n;
            }
        }
        finally
        {
            socket.Blocking = wasBlocking;
        }
        return total;
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes of plain data (sync), asserting
    /// that no descriptors come with them.</summary>
    public static byte[] ReadPlain(Socket socket, long count)
    {
        var all = new byte[count];
        long got = 0;
        var buffer = new byte[65536];
        while (got < count)
        {
            using ReceivedFds r = socket.ReceiveFds(buffer.AsSpan(0, (int)Math.Min(buffer.Length, count - got)));
            Assert.That(r.IsEndOfStream, Is.False, $"end of stream after {got} of {count} bytes");
            Assert.That(r.Count, Is.EqualTo(0), "descriptors came with plain data");
            buffer.AsSpan(0, r.BytesReceived).CopyTo(all.AsSpan((int)got));
            got += r.BytesReceived;
        }
        return all;
    }

    public static int FdCount() => FdCounts.Count();

    /// <inheritdoc cref="FdCounts.AssertCount"/>
    public static void AssertFdCount(int expected, string because = "") => FdCounts.AssertCount(expected, because);

    /// <inheritdoc cref="FdCounts.Settled"/>
    public static int SettledFdCount() => FdCounts.Settled();

    /// <summary>The runtime's service threads (names as /proc shows them, cut to 15 bytes). .NET
    /// starts several on demand and ends them when idle (the tiered-compilation worker comes
    /// when a method has run 30 times and leaves a few seconds later), and no operation can
    /// hold one, so they are not counted.</summary>
    private static readonly string[] s_runtimeServiceThreads =
    [
        ".NET Tiered Com", ".NET BGC", ".NET TP Gate", ".NET TP Wait", ".NET Timer", ".NET EventPipe",
        ".NET Debugger", ".NET DebugPipe", ".NET SigHandler", ".NET Finalizer", ".NET SynchManag",
    ];

    /// <summary>The threads of this process that an operation could hold (/proc/self/task): all
    /// of them (thread-pool workers, long-running tasks, threads of FdSend or the test) but the
    /// runtime's service threads.</summary>
    public static int ThreadCount()
    {
        int count = 0;
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            string name;
            try
            {
                name = File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n');
            }
            catch (IOException)
            {
                continue; // the thread ended meanwhile
            }
            if (!s_runtimeServiceThreads.Contains(name))
                count++;
        }
        return count;
    }

    /// <summary>The lowest <see cref="ThreadCount"/> seen over <paramref name="milliseconds"/>
    /// (sampled every 20 ms): the threads that stayed. A thread held by a pending operation
    /// stays for the whole window; a thread that came and went within it does not.</summary>
    public static async Task<int> SteadyThreadCount(int milliseconds)
    {
        var sw = Stopwatch.StartNew();
        int lowest = ThreadCount();
        while (sw.ElapsedMilliseconds < milliseconds)
        {
            await Task.Delay(20);
            lowest = Math.Min(lowest, ThreadCount());
        }
        return lowest;
    }

    public static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        for (int i = 0; i < length; i++)
            b[i] = (byte)(i * 31 + seed * 7 + (i >> 8));
        return b;
    }
}
