// SPDX-License-Identifier: MIT
namespace FdSend.Reliability;

/// <summary>Before any test counts descriptors: let the .NET runtime open what it keeps
/// open for good (the child-process and signal plumbing it creates on the first
/// Process.Start, the first socket's), so that the tests' before/after comparisons see only
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
        a.Dispose();
        b.Dispose();
    }
}
