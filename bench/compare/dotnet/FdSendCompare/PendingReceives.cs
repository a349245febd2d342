// The measurement issue 4 asks for: N receives pending at once on N sockets: the
// process's thread count, and the memory each pending receive costs.
//
//   FdSendCompare --pending [N]            the measuring process
//   FdSendCompare --pending-peer PATH N    its peer (started by it): connects a control
//                                          socket and N sockets, then on 'G' sends 16
//                                          bytes + 1 fd on every socket
// Prints one line of key=value pairs, or "not_available=..." while FdSend has no
// ReceiveFdsAsync (then no number is reported at all).
// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
#if FDSEND_ASYNC
using FdSend;
#endif

namespace FdSend.Benchmarks.Compare;

static class PendingReceives
{
    public static int Run(string[] args)
    {
        int count = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 10_000;
#if FDSEND_ASYNC
        return Measure(count).GetAwaiter().GetResult();
#else
        Console.WriteLine($"not_available=FdSend has no ReceiveFdsAsync yet (issue 4): the {count}-pending-receives measurement cannot run; no number is reported");
        return 0;
#endif
    }

#if FDSEND_ASYNC
    static int Threads() => ReadStatus("Threads:");

    static long RssBytes() => ReadStatus("VmRSS:") * 1024L;

    static int ReadStatus(string key)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(key, StringComparison.Ordinal))
                return int.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        throw new InvalidOperationException($"no {key} in /proc/self/status");
    }

    static long ManagedBytes()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    static async Task<int> Measure(int count)
    {
        string path = Path.Combine(Path.GetTempPath(), $"fdsend-pending-{Environment.ProcessId}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(512);
        var psi = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
        foreach (string a in new[] { "--pending-peer", path, count.ToString(CultureInfo.InvariantCulture) })
            psi.ArgumentList.Add(a);
        using Process peer = Process.Start(psi)!;
        var sockets = new Socket[count];
        Socket control;
        try
        {
            control = listener.Accept();
            for (int i = 0; i < count; i++)
                sockets[i] = listener.Accept();
        }
        finally
        {
            File.Delete(path);
        }
        // Everything the application owns anyway: the sockets, a buffer per socket, the
        // array of pending operations.
        var buffers = new byte[count][];
        for (int i = 0; i < count; i++)
            buffers[i] = new byte[Harness.PayloadLength];
        var pending = new ValueTask<ReceivedFds>[count];

        // Warm the async path once (JIT, socket engine thread) on a socket of its own.
        using var devNull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
        var (wa, wb) = Harness.SocketPair();
        ValueTask<ReceivedFds> warm = wb.ReceiveFdsAsync(new byte[Harness.PayloadLength], 1);
        wa.SendFds(Harness.Payload, devNull);
        (await warm.ConfigureAwait(false)).Dispose();
        wa.Dispose();
        wb.Dispose();
        await Task.Delay(200).ConfigureAwait(false);

        // Round 1: the first receive on each socket (which also sets up .NET's per-socket
        // async machinery); round 2: the same sockets again (the steady state).
        Round first = await RunRound(count, sockets, buffers, pending, control).ConfigureAwait(false);
        Round again = await RunRound(count, sockets, buffers, pending, control).ConfigureAwait(false);
        control.Shutdown(SocketShutdown.Send);
        peer.WaitForExit(30_000);
        foreach (Socket s in sockets)
            s.Dispose();
        control.Dispose();
        foreach (Round r in new[] { first, again })
        {
            if (r.Ok != count || r.CompletedEarly != 0)
            {
                Console.Error.WriteLine($"pending: {r.Ok}/{count} receives completed correctly, {r.CompletedEarly} completed before anything was sent");
                return 1;
            }
        }
        Console.WriteLine(FormattableString.Invariant(
            $"pending_receives={count} threads_idle={first.ThreadsIdle} threads_pending={first.ThreadsPending} threads_peak_completing={Math.Max(first.PeakThreads, again.PeakThreads)} ") +
            FormattableString.Invariant(
            $"managed_bytes_per_pending={first.ManagedBytes / count:F0} rss_bytes_per_pending={first.RssBytes / count:F0} ") +
            FormattableString.Invariant(
            $"managed_bytes_per_pending_again={again.ManagedBytes / count:F0} threads_pending_again={again.ThreadsPending} ") +
            FormattableString.Invariant($"all_completed_ms={first.CompleteMs:F0}"));
        return 0;
    }

    sealed record Round(int ThreadsIdle, int ThreadsPending, int PeakThreads, double ManagedBytes, double RssBytes,
                        int CompletedEarly, int Ok, double CompleteMs);

    /// <summary>Measure idle, start one receive per socket, measure, have the peer send on
    /// every socket, and check every receive completes with its message and fd.</summary>
    static async Task<Round> RunRound(int count, Socket[] sockets, byte[][] buffers,
                                      ValueTask<ReceivedFds>[] pending, Socket control)
    {
        int threadsIdle = Threads();
        long managedIdle = ManagedBytes();
        long rssIdle = RssBytes();

        for (int i = 0; i < count; i++)
            pending[i] = sockets[i].ReceiveFdsAsync(buffers[i], 1);
        await Task.Delay(500).ConfigureAwait(false);
        int completedEarly = pending.Count(p => p.IsCompleted);
        int threadsPending = Threads();
        long managedPending = ManagedBytes();
        long rssPending = RssBytes();

        var sw = Stopwatch.StartNew();
        control.Send("G"u8);
        int ok = 0, peakThreads = threadsPending;
        for (int i = 0; i < count; i++)
        {
            using ReceivedFds r = await pending[i].ConfigureAwait(false);
            if (r.BytesReceived == Harness.PayloadLength && r.Count == 1)
                ok++;
            if ((i & 1023) == 0)
                peakThreads = Math.Max(peakThreads, Threads());
        }
        double completeMs = sw.Elapsed.TotalMilliseconds;
        Array.Clear(pending);
        return new Round(threadsIdle, threadsPending, peakThreads, managedPending - managedIdle,
                         rssPending - rssIdle, completedEarly, ok, completeMs);
    }

    /// <summary>The peer: connects, then for every 'G' on the control socket sends one
    /// message + fd on every socket, until the control socket closes.</summary>
    public static int Peer(string[] args)
    {
        string path = args[0];
        int count = int.Parse(args[1], CultureInfo.InvariantCulture);
        var endPoint = new UnixDomainSocketEndPoint(path);
        using var control = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        control.Connect(endPoint);
        var sockets = new Socket[count];
        for (int i = 0; i < count; i++)
        {
            sockets[i] = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            sockets[i].Connect(endPoint);
        }
        Span<byte> go = stackalloc byte[1];
        using var devNull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
        while (control.Receive(go) == 1)
        {
            foreach (Socket s in sockets)
                s.SendFds(Harness.Payload, devNull);
        }
        foreach (Socket s in sockets)
            s.Dispose();
        return 0;
    }
#endif
}
