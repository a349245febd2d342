// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Diagnostics;
using FdSend.Tests.Async;

namespace FdSend.Tests;

/// <summary>Issue 11 item 6: ReceiveFdsExactly / ReceiveFdsExactlyAsync receive N bytes on a
/// stream socket with every descriptor that comes with them, merged into one owning result.</summary>
[TestFixture]
[CancelAfter(60_000)]
public class ExactReceiveTests : TempDirFixture
{
    private const int Total = 306;
    private static readonly int[] Batches = [252, 54];

    private FileStream NewFile(string content = "x") => new(Dir.NewFile(content), FileMode.Open, FileAccess.Read);

    /// <summary>What HAProxy's _getsocks (and s6-fdholder) put on the wire: a 4-byte count,
    /// then the descriptors in batches, each batch carried by one byte per descriptor.</summary>
    private static Task SendLikeGetsocks(Socket socket, FileStream file) => Task.Run(() =>
    {
        var count = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(count, Total);
        socket.SendFds(count);
        foreach (int batch in Batches)
        {
            var fds = new Descriptor[batch];
            Array.Fill(fds, file);
            socket.SendFds(new byte[batch], fds);
        }
    });

    private static void AssertAllArrived(ReceivedFds r, byte[] buffer, FileStream file, int expectedFds)
    {
        Assert.That(r.BytesReceived, Is.EqualTo(4 + Total));
        Assert.That(r.IsEndOfStream, Is.False);
        Assert.That(BinaryPrimitives.ReadInt32LittleEndian(buffer), Is.EqualTo(Total));
        Assert.That(r.Count, Is.EqualTo(expectedFds));
        FileId id = Posix.GetFileId(file.SafeFileHandle);
        for (int i = 0; i < r.Count; i++)
            Assert.That(Posix.GetFileId(r.PeekFd(i)), Is.EqualTo(id), $"descriptor {i}");
    }

    /// <summary>All 306 in one call (maxFds above the total), or the first 300 with the 6
    /// beyond maxFds closed and flagged.</summary>
    [TestCase(1000, Total, false)]
    [TestCase(300, 300, true)]
    [TestCase(0, 0, true)]
    public async Task A_count_then_306_descriptors_in_two_batches_arrive_in_one_sync_call(int maxFds, int kept, bool truncated)
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var file = NewFile();
        int before = AsyncTest.SettledFdCount();
        Task sender = SendLikeGetsocks(pair.A, file);
        var buffer = new byte[4 + Total];
        using (ReceivedFds r = pair.B.ReceiveFdsExactly(buffer, maxFds))
        {
            AssertAllArrived(r, buffer, file, kept);
            Assert.That(r.FdsTruncated, Is.EqualTo(truncated));
            AsyncTest.AssertFdCount(before + kept, "every kept descriptor is owned by the one result, the rest closed");
        }
        AsyncTest.AssertFdCount(before, "disposing the merged result closed them all");
        await sender.Within();
    }

    [Test]
    public async Task A_count_then_306_descriptors_in_two_batches_arrive_in_one_async_call()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var file = NewFile();
        int before = AsyncTest.SettledFdCount();
        var buffer = new byte[4 + Total];
        ValueTask<ReceivedFds> receive = pair.B.ReceiveFdsExactlyAsync(buffer, maxFds: Total);
        Task sender = SendLikeGetsocks(pair.A, file);
        using (ReceivedFds r = await receive.Within())
        {
            AssertAllArrived(r, buffer, file, Total);
            AsyncTest.AssertFdCount(before + Total);
        }
        AsyncTest.AssertFdCount(before);
        await sender.Within();
    }

    [Test]
    public void End_of_stream_before_the_first_byte_is_a_result([Values] bool async)
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.Shutdown(SocketShutdown.Send);
        var buffer = new byte[8];
        using ReceivedFds r = async
            ? pair.B.ReceiveFdsExactlyAsync(buffer).Within().GetAwaiter().GetResult()
            : pair.B.ReceiveFdsExactly(buffer);
        Assert.That(r.IsEndOfStream, Is.True);
        Assert.That(r.BytesReceived, Is.EqualTo(0));
        Assert.That(r.Count, Is.EqualTo(0));
    }

    [Test]
    public void End_of_stream_after_some_bytes_is_EndOfStreamException_and_closes_what_came([Values] bool async)
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var file = NewFile();
        int before = AsyncTest.SettledFdCount();
        pair.A.SendFds(TestData.Utf8("only ten b"), file, file, file);
        pair.A.Shutdown(SocketShutdown.Send);
        var buffer = new byte[20];
        var e = Assert.Throws<EndOfStreamException>(() =>
        {
            if (async)
                pair.B.ReceiveFdsExactlyAsync(buffer).Within().GetAwaiter().GetResult().Dispose();
            else
                pair.B.ReceiveFdsExactly(buffer).Dispose();
        })!;
        Assert.That(e.Message, Does.Contain("10 of the 20"));
        AsyncTest.AssertFdCount(before, "the 3 descriptors received before the end were closed");
    }

    [Test]
    public void ReceiveTimeout_bounds_the_whole_call_not_each_chunk()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var file = NewFile();
        int before = AsyncTest.SettledFdCount();
        pair.B.ReceiveTimeout = 500;
        using var stop = new CancellationTokenSource();
        // A peer that trickles one byte every 100 ms (each chunk well inside the timeout), the
        // first with a descriptor.
        Task trickle = Task.Run(async () =>
        {
            pair.A.SendFds(new byte[1], file);
            for (int i = 0; i < 50 && !stop.IsCancellationRequested; i++)
            {
                await Task.Delay(100);
                pair.A.Send(new byte[1]);
            }
        });
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<SocketException>(() => pair.B.ReceiveFdsExactly(new byte[50]).Dispose())!;
        sw.Stop();
        stop.Cancel();
        Assert.That(e.SocketErrorCode, Is.EqualTo(SocketError.TimedOut));
        Assert.That(sw.ElapsedMilliseconds, Is.LessThan(3000), "the whole call was bounded (a per-chunk timeout would run 5 s)");
        Assert.That(e.Message, Does.Contain("unknown position"));
        trickle.Wait(10_000);
        AsyncTest.AssertFdCount(before, "the descriptor of the first byte was closed");
    }

    [Test]
    public void Async_cancellation_before_the_first_byte_consumes_nothing()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var cts = new CancellationTokenSource(150);
        Assert.CatchAsync<OperationCanceledException>(async () =>
            (await pair.B.ReceiveFdsExactlyAsync(new byte[4], cts.Token)).Dispose());
        using var file = NewFile();
        pair.AssertNextMessageArrivesWhole("next", file);
    }

    [Test]
    public void Async_cancellation_after_the_first_byte_closes_what_came()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var file = NewFile();
        int before = AsyncTest.SettledFdCount();
        pair.A.SendFds(new byte[3], file, file);
        using var cts = new CancellationTokenSource();
        ValueTask<ReceivedFds> receive = pair.B.ReceiveFdsExactlyAsync(new byte[8], cancellationToken: cts.Token);
        // The call takes what is queued before it first waits: the 3 bytes and 2 descriptors.
        Assert.That(receive.IsCompleted, Is.False);
        Assert.That(pair.B.Poll(0, SelectMode.SelectRead), Is.False, "the first piece was consumed");
        AsyncTest.AssertFdCount(before + 2, "the receive holds the 2 descriptors");
        cts.Cancel();
        Assert.CatchAsync<OperationCanceledException>(async () => (await receive.Within()).Dispose());
        AsyncTest.AssertFdCount(before, "the 2 descriptors received before the cancellation were closed");
    }

    [Test]
    public void Bad_arguments_are_rejected_at_once()
    {
        using var seq = SocketPair.Create(Dir, SocketType.Seqpacket);
        Assert.Throws<ArgumentException>(() => seq.B.ReceiveFdsExactly(new byte[4]));
        Assert.Throws<ArgumentException>(() => _ = seq.B.ReceiveFdsExactlyAsync(new byte[4]));
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        Assert.Throws<ArgumentOutOfRangeException>(() => pair.B.ReceiveFdsExactly(new byte[4], -1));
        pair.B.Blocking = false;
        var e = Assert.Throws<SocketException>(() => pair.B.ReceiveFdsExactly(new byte[4]))!;
        Assert.That(e.SocketErrorCode, Is.EqualTo(SocketError.WouldBlock));
        using ReceivedFds empty = pair.B.ReceiveFdsExactly(Span<byte>.Empty);
        Assert.That(empty.BytesReceived, Is.EqualTo(0));
        Assert.That(empty.IsEndOfStream, Is.False);
    }
}
