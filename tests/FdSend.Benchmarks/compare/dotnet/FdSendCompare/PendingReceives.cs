// The measurement issue 4 asks for: N receives pending at once on N sockets, the
// process's thread count and the memory each pending receive costs.
// SPDX-License-Identifier: MIT
namespace FdSend.Benchmarks.Compare;

static class PendingReceives
{
    /// <summary>FdSendCompare --pending [N]. Prints one line of key=value results, or
    /// "not_available=..." while FdSend has no asynchronous receive.</summary>
    public static int Run(string[] args)
    {
        int count = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 10_000;
        // NOT AVAILABLE YET: this needs FdSend's ReceiveFdsAsync (issue 4), which does not
        // exist in managed/FdSend at the time of writing. When it does, this method will:
        // start a child process that connects N sockets; accept them; read Threads from
        // /proc/self/status and GC.GetTotalMemory(true) + VmRSS; start N ReceiveFdsAsync
        // calls; read them again (threads within a few of idle; (memory delta) / N per
        // pending receive); have the child send one message + fd on every socket; check
        // all N complete with an fd; print the numbers.
        Console.WriteLine($"not_available=FdSend has no ReceiveFdsAsync yet (issue 4): the {count}-pending-receives measurement cannot run; no number is reported");
        return 0;
    }
}
