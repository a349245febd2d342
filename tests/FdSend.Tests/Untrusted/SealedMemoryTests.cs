// SPDX-License-Identifier: MIT
using FdSend.Tests.Async;

namespace FdSend.Tests.Untrusted;

/// <summary>Sealed shared memory. The attack, in a child peer process: an unsealed memfd the
/// sender shrinks after sending kills a reader that mapped it naively (SIGBUS). The defence:
/// TakeSealedMemory refuses it (the child lives), accepts sealed memory, which the sender can
/// no longer shrink.</summary>
[TestFixture]
[NonParallelizable]
public class SealedMemoryTests : TempDirFixture
{
    private const int Size = 2 * 65536;

    private static byte[] Data()
    {
        var d = new byte[Size];
        d.AsSpan().Fill((byte)'z');
        return d;
    }

    /// <summary>Sends memory to the peer, shrinks it once the peer says it mapped (or refused),
    /// and returns whether the shrink worked and the peer's process.</summary>
    private (bool Shrunk, Peer Peer, string First) Exchange(string command, FdSeals seals)
    {
        using var memory = SealedMemory.Create(Data(), seals);
        Peer peer = Peer.Start(Dir, command);
        peer.Connection.SendFds("m"u8, memory);
        var b = new byte[1];
        Assert.That(peer.Connection.Receive(b), Is.EqualTo(1), "the peer did not answer");
        bool shrunk;
        try
        {
            RandomAccess.SetLength(memory.Handle, 0);
            shrunk = true;
        }
        catch (UnauthorizedAccessException)
        {
            shrunk = false; // EPERM: sealed
        }
        peer.Connection.Send("s"u8);
        return (shrunk, peer, TestData.Text(b));
    }

    [Test]
    public void Attack_unsealed_memfd_kills_a_naive_reader_with_SIGBUS()
    {
        (bool shrunk, Peer peer, string first) = Exchange("map-naive", FdSeals.None);
        using (peer)
        {
            Assert.That(first, Is.EqualTo("M"));
            Assert.That(shrunk, Is.True, "an unsealed memfd can be shrunk by its sender");
            string report = "";
            try { report = TestData.ReadToEnd(peer.Connection); } catch (SocketException) { }
            Assert.That(report, Does.Not.StartWith("survived"));
            // Killed by SIGBUS (7): 128 + 7, or the runtime aborts (SIGABRT, 128 + 6) after
            // reporting the fault.
            Assert.That(peer.WaitForExitCode(), Is.AnyOf(128 + 7, 128 + 6), "the reader died of the fault");
        }
    }

    [Test]
    public void Defence_TakeSealedMemory_refuses_the_unsealed_memfd()
    {
        (bool _, Peer peer, string first) = Exchange("map-checked", FdSeals.None);
        using (peer)
        {
            Assert.That(first, Is.EqualTo("R"));
            Assert.That(peer.ReadReport(), Does.StartWith("refused Seals: descriptor 0 is a memfd sealed with none; the policy requires the seals shrink|write"));
            peer.AssertExitedCleanly();
        }
    }

    [Test]
    public void Defence_TakeSealedMemory_accepts_sealed_memory_that_cannot_shrink()
    {
        (bool shrunk, Peer peer, string first) = Exchange("map-checked", FdSeals.Shrink | FdSeals.Grow | FdSeals.Write);
        using (peer)
        {
            Assert.That(first, Is.EqualTo("M"));
            Assert.That(shrunk, Is.False, "sealed memory cannot be shrunk");
            Assert.That(peer.ReadReport(), Is.EqualTo($"survived {(int)'z'}"));
            peer.AssertExitedCleanly();
        }
    }

    [Test]
    public void Take_checks_seals_size_and_kind_and_leaves_refused_descriptors_untaken()
    {
        using var shrinkOnly = SealedMemory.Create("abc"u8, FdSeals.Shrink);
        using var sealedMem = SealedMemory.Create("abcdef"u8);
        using var file = new FileStream(Dir.NewFile("file"), FileMode.Open, FileAccess.Read);
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
        {
            int baseline = AsyncTest.SettledFdCount();
            a.SendFds("m"u8, shrinkOnly, sealedMem, file);
            using (ReceivedFds r = b.ReceiveFds(new byte[1]))
            {
                var e = Assert.Throws<FdPolicyViolationException>(() => r.TakeSealedMemory(0))!;
                Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Seals));
                Assert.That(r.IsTaken(0), Is.False);
                Assert.That(r.TakeSealedMemory(0, FdSeals.None).Span.ToArray(), Is.EqualTo("abc"u8.ToArray()));
                e = Assert.Throws<FdPolicyViolationException>(() => r.TakeSealedMemory(1, maxSize: 5))!;
                Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Size));
                e = Assert.Throws<FdPolicyViolationException>(() => r.TakeSealedMemory(2))!;
                Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Kind));
                using ReceivedSealedMemory m = r.TakeSealedMemory(1, FdSeals.Write, 6, 6);
                Assert.That(r.IsTaken(1), Is.True);
                Assert.That(m.Seals & FdSeals.Write, Is.EqualTo(FdSeals.Write));
                using Stream s = m.CreateStream();
                Assert.That(new StreamReader(s).ReadToEnd(), Is.EqualTo("abcdef"));
            }
            AsyncTest.AssertFdCount(baseline, "every received descriptor closed, taken or not");
        }
    }

    [Test]
    public void Created_memory_is_immutable()
    {
        using var memory = SealedMemory.Create("data"u8);
        FdInfo info = FdPassing.Describe(memory.Handle);
        Assert.That(info.Kind, Is.EqualTo(FdKind.MemFd));
        Assert.That(info.Size, Is.EqualTo(4));
        Assert.That(info.Seals, Is.EqualTo(FdSeals.Shrink | FdSeals.Grow | FdSeals.Write));
        Assert.Throws<UnauthorizedAccessException>(() => RandomAccess.Write(memory.Handle, "x"u8, 0));
        Assert.Throws<ArgumentException>(() => SealedMemory.Create("x"u8, (FdSeals)64));
    }
}
