// SPDX-License-Identifier: MIT
namespace FdSend.Tests;

/// <summary>The span overloads allocate nothing; the owning receive allocates its result and at
/// most one array. Measured with GC.GetAllocatedBytesForCurrentThread around a warmed-up loop
/// (a correctness check, not a timing).</summary>
[TestFixture]
[NonParallelizable]
public class AllocationTests : TempDirFixture
{
    private const int Iterations = 2000;

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public void Span_overloads_allocate_nothing(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        using var f = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        using var g = File.OpenHandle(Dir.NewFile("y"));
        byte[] data = TestData.Utf8("payload!");
        byte[] buffer = new byte[64];
        int[] fdArray = new int[8];
        int rawFd = (int)f.SafeFileHandle.DangerousGetHandle();
        int[] raw = [rawFd, rawFd];

        long Loop(int n)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < n; i++)
            {
                pair.A.SendFds(data, f.SafeFileHandle, g, pair.A.SafeHandle);
                int got = pair.B.ReceiveFds(buffer, fdArray, out int count, out ReceiveFlags flags);
                if (got != data.Length || count != 3 || flags != ReceiveFlags.None)
                    throw new InvalidOperationException($"unexpected receive {got} {count} {flags}");
                for (int k = 0; k < count; k++)
                    Posix.Close(fdArray[k]);

                pair.A.SendFds(data, raw);
                pair.B.ReceiveFds(buffer, fdArray, out count, out _);
                for (int k = 0; k < count; k++)
                    Posix.Close(fdArray[k]);
            }
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }

        Loop(200); // warm up: JIT tiers, lazy statics, the native library
        long allocated = Loop(Iterations);
        TestContext.Out.WriteLine($"{type}: {allocated} bytes allocated over {Iterations} x 2 send/receive pairs");
        Assert.That(allocated, Is.EqualTo(0));
    }

    [Test]
    public void SendFdsTo_allocates_nothing()
    {
        string path = Dir.NewPath("dg");
        using var receiver = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        receiver.Bind(new UnixDomainSocketEndPoint(path));
        using var sender = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        byte[] data = TestData.Utf8("dgram");
        byte[] buffer = new byte[16];
        int[] fds = new int[4];

        long Loop(int n)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < n; i++)
            {
                sender.SendFdsTo(path, data, f);
                receiver.ReceiveFds(buffer, fds, out int count, out _);
                for (int k = 0; k < count; k++)
                    Posix.Close(fds[k]);
            }
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }

        Loop(200);
        long allocated = Loop(Iterations);
        TestContext.Out.WriteLine($"SendFdsTo: {allocated} bytes over {Iterations} datagrams");
        Assert.That(allocated, Is.EqualTo(0));
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(3)]
    public void The_owning_receive_allocates_the_result_and_at_most_one_array(int fdCount)
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        using var f = File.OpenHandle(Dir.NewFile("x"));
        var fds = new Descriptor[fdCount];
        Array.Fill(fds, f);
        byte[] data = TestData.Utf8("m");
        byte[] buffer = new byte[8];

        long Loop(int n)
        {
            long allocated = 0;
            for (int i = 0; i < n; i++)
            {
                pair.A.SendFds(data, fds);
                long before = GC.GetAllocatedBytesForCurrentThread();
                ReceivedFds r = pair.B.ReceiveFds(buffer);
                allocated += GC.GetAllocatedBytesForCurrentThread() - before;
                if (r.Count != fdCount)
                    throw new InvalidOperationException("unexpected count");
                r.Dispose();
            }
            return allocated;
        }

        Loop(200);
        long total = Loop(Iterations);
        double perReceive = (double)total / Iterations;
        TestContext.Out.WriteLine($"ReceiveFds with {fdCount} fds: {perReceive} bytes per receive");
        // The object (header + 5 fields, 48 bytes on 64-bit) plus, for more than one fd, one
        // int[] of Count-1 (24 + 4*(Count-1) bytes, rounded to 8).
        long expected = 48 + (fdCount > 1 ? 24 + ((4 * (fdCount - 1) + 7) / 8 * 8) : 0);
        Assert.That(perReceive, Is.LessThanOrEqualTo(expected));
    }
}
