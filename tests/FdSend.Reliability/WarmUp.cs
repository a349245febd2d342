// SPDX-License-Identifier: MIT
namespace FdSend.Reliability;

/// <summary>Before any test counts descriptors: let the .NET runtime open what it keeps
/// open for good (the child-process and signal plumbing it creates on the first
/// Process.Start, the first socket's, FdSend's async writability poller), so that the tests' before/after comparisons see only
/// what the test itself left open.</summary>
[SetUpFixture]
public class WarmUp
{
    [OneTimeSetUp]
    public void OpenRuntimePlumbing()
    {
        if (!Posix.Supported)
            return;
        if (Repo.HasCommand("true"))
        {
            using var c = new Repo.Child("true");
            c.Wait();
            using var k = new Repo.Child("sleep", "10");
            k.Kill();
        }
        var (a, b) = Posix.SocketPair(SocketType.Stream);
        a.SendFds(new byte[] { 1 }, ReadOnlySpan<Descriptor>.Empty);
        using (b.ReceiveFds(new byte[1])) { }
        // An async send that meets a full buffer starts FdSend's process-wide writability
        // poller (it keeps a wake-up pipe open for the life of the process).
        a.Blocking = false;
        var chunk = new byte[1 << 16];
        long queued = 0;
        try
        {
            while (true)
                queued += a.Send(chunk);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock) { }
        ValueTask<int> send = a.SendFdsAsync(new byte[] { 2 }, ReadOnlyMemory<Descriptor>.Empty);
        var sink = new byte[1 << 16];
        long got = 0;
        while (got < queued + 1)
            got += b.Receive(sink);
        send.AsTask().GetAwaiter().GetResult();
        a.Dispose();
        b.Dispose();
    }
}
