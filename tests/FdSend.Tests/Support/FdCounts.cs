// SPDX-License-Identifier: MIT
// Counting a process's open descriptors in a way that settles: the baseline and the retrying
// assertion of the fd-leak checks (FdSend.Tests, and FdSend.Handoff.Tests, which links this
// file), for this process or for a child process of the test.
using System.Diagnostics;
using System.Net.Sockets;
using System.Reflection;

namespace FdSend.Tests.Support;

public static class FdCounts
{
    /// <summary>The relevant fd count (<see cref="Posix.RelevantFds"/>) of this process, or
    /// of process <paramref name="pid"/>.</summary>
    public static int Count(int? pid = null) => Posix.RelevantFds(pid).Count;

    private static string Table(int? pid) => string.Join(' ', Posix.RelevantFds(pid).Select(f => $"{f.Fd}={f.Target}"));

    /// <summary>Waits (up to 5 s) for the relevant fd count of this process (or of process
    /// <paramref name="pid"/>) to come back to <paramref name="expected"/> (finalizers may lag a
    /// little), then asserts it.</summary>
    public static void AssertCount(int expected, string because = "", int? pid = null)
    {
        var sw = Stopwatch.StartNew();
        int now = Count(pid);
        while (now != expected && sw.ElapsedMilliseconds < 5000)
        {
            if (pid is null)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
            Thread.Sleep(20);
            now = Count(pid);
        }
        if (now != expected)
            Assert.That(now, Is.EqualTo(expected), $"open descriptors in /proc/{pid?.ToString() ?? "self"}/fd {because}: {Table(pid)}");
    }

    private static int s_processWide;

    /// <summary>Descriptors that exist once per process and are created on first use: FdSend's
    /// readiness engine (its epoll descriptor and wake-up pipe), the pipe .NET's Process class sets up for SIGCHLD
    /// on its first child, and the epoll descriptor of .NET's socket engine (made by the first
    /// async socket operation that waits). Created before any baseline is taken, so a test that
    /// happens to run first (or alone) counts the same as one that runs later.</summary>
    private static void CreateProcessWideDescriptors()
    {
        if (Interlocked.Exchange(ref s_processWide, 1) != 0)
            return;
        // FdSend.ReadinessEngine.Instance (internal; reached by reflection so that any test
        // assembly can link this file).
        typeof(FdSend.FdChannel).Assembly.GetType("FdSend.ReadinessEngine", throwOnError: true)!
            .GetProperty("Instance", BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)!.GetValue(null);
        using (Process p = Process.Start(new ProcessStartInfo("/bin/sh", "-c true") { UseShellExecute = false })!)
            p.WaitForExit();
        using var dir = new TempDir();
        using var pair = SocketPair.Create(dir, SocketType.Stream);
        Task<int> waiting = pair.B.ReceiveAsync(new byte[1].AsMemory()).AsTask();
        pair.A.Send([1]);
        if (!waiting.Wait(10_000))
            throw new TimeoutException("warming up the socket engine: the receive did not complete");
    }

    /// <summary>The relevant fd count once finalizers of earlier tests' objects have run (this
    /// process), or once the table has stopped changing (process <paramref name="pid"/>): the
    /// baseline for <see cref="AssertCount"/>.</summary>
    /// <remarks>Other threads of a .NET process open descriptors for a moment now and then (a
    /// pipe pair that lived a few tens of milliseconds was seen): a baseline read at such a
    /// moment is too high for the rest of the test, which then fails with fewer descriptors
    /// than "expected". So the baseline is read once the table has not changed for 100 ms
    /// (at most 5 s of waiting).</remarks>
    public static int Settled(int? pid = null)
    {
        if (pid is null)
            CreateProcessWideDescriptors();
        var sw = Stopwatch.StartNew();
        string? previous = null;
        long sameSince = 0;
        while (true)
        {
            if (pid is null)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
            IReadOnlyList<(int Fd, string Target)> fds = Posix.RelevantFds(pid);
            string table = string.Join(' ', fds.Select(f => $"{f.Fd}={f.Target}"));
            if (table != previous)
            {
                previous = table;
                sameSince = sw.ElapsedMilliseconds;
            }
            else if (sw.ElapsedMilliseconds - sameSince >= 100 || sw.ElapsedMilliseconds >= 5000)
            {
                return fds.Count;
            }
            Thread.Sleep(20);
        }
    }
}
