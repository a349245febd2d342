// SPDX-License-Identifier: MIT
// A hostile peer against an FdChannel (.NET): malformed frames, lies about lengths and fd
// counts, floods, descriptors on the wrong byte, peers that stall or vanish mid-frame. The
// channel must report each case with its exception (FdChannelProtocolException faults a
// stream channel, while a bad seqpacket record is dropped alone; FdMessageRejectedException
// leaves it usable), close every descriptor, keep its
// memory bounded, and never hang past the caller's cancellation.
using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Reliability;

[TestFixture]
[NonParallelizable]
public class ChannelHostileTests
{
    [SetUp]
    public void Linux()
    {
        if (!Posix.Supported)
            Assert.Ignore("SKIPPED: Linux x64/arm64 only");
    }

    private static byte[] Header(byte version, byte flags, int nfds, uint len)
    {
        var h = new byte[8];
        h[0] = version;
        h[1] = flags;
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(2), (ushort)nfds);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(4), len);
        return h;
    }

    private static SafeFileHandle TempFile()
    {
        string path = Path.Combine(Path.GetTempPath(), $"fdsend-rel-{Guid.NewGuid():N}");
        SafeFileHandle h = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
        File.Delete(path);
        return h;
    }

    public enum Bad
    {
        Version2,
        UnknownFlags,
        FdCountLies,
        FdsOnPayloadByte,
        LengthLongerThenClose,
        HeaderCutThenClose,
    }

    /// <summary>Every kind of malformed frame: its descriptors are closed and the receive throws
    /// FdChannelProtocolException. A stream channel is then faulted (the next frame's position
    /// is lost); on seqpacket the bad record is dropped alone and the good one the peer sends
    /// after it arrives.</summary>
    [Test]
    public void MalformedFramesCloseEverythingAndFaultOnlyAStream(
        [Values] Bad bad, [Values(SocketType.Stream, SocketType.Seqpacket)] SocketType type)
    {
        var before = Posix.Snapshot();
        var (peer, me) = Posix.SocketPair(type);
        bool stream = type == SocketType.Stream;
        using (SafeFileHandle f = TempFile())
        {
            var payload = new byte[16];
            var fds2 = new Descriptor[] { f, f };
            var fds5 = new Descriptor[] { f, f, f, f, f };
            switch (bad)
            {
                case Bad.Version2:
                    peer.SendFds(Header(2, 0, 2, 16).Concat(payload).ToArray(), fds2);
                    break;
                case Bad.UnknownFlags:
                    peer.SendFds(Header(1, 0x80, 2, 16).Concat(payload).ToArray(), fds2);
                    break;
                case Bad.FdCountLies:
                    peer.SendFds(Header(1, 0, 2, 16).Concat(payload).ToArray(), fds5);
                    break;
                case Bad.FdsOnPayloadByte:
                    if (type == SocketType.Stream)
                    {
                        peer.Send(Header(1, 0, 0, 16).Concat(payload.AsSpan(0, 3).ToArray()).ToArray());
                        peer.SendFds(payload.AsSpan(3), fds2);
                    }
                    else
                    {
                        peer.SendFds(Header(1, 0, 0, 16).Concat(payload).ToArray(), fds2);
                    }
                    break;
                case Bad.LengthLongerThenClose:
                    peer.SendFds(Header(1, 0, 2, 100).Concat(payload).ToArray(), fds2);
                    break;
                case Bad.HeaderCutThenClose:
                    peer.SendFds(Header(1, 0, 2, 16).AsSpan(0, 5), fds2);
                    break;
            }
            if (!stream)
                peer.SendFds(Header(1, 0, 1, 2).Concat("ok"u8.ToArray()).ToArray(), f);
            if (bad is Bad.LengthLongerThenClose or Bad.HeaderCutThenClose)
                peer.Shutdown(SocketShutdown.Send);
        }
        var ch = new FdChannel(me);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var e = Assert.CatchAsync<Exception>(async () => (await ch.ReceiveAsync(cts.Token)).Dispose());
        TestContext.Out.WriteLine($"{bad} ({type}): {e!.GetType().Name}: {e.Message}");
        Assert.That(e, Is.InstanceOf<FdChannelProtocolException>(), $"{bad}: {e}");
        if (stream)
        {
            Assert.That(ch.Fault, Is.Not.Null, "the channel is faulted");
            Assert.CatchAsync<FdChannelProtocolException>(async () => (await ch.ReceiveAsync(cts.Token)).Dispose(),
                "every later call reports the same fault");
        }
        else
        {
            Assert.That(ch.Fault, Is.Null, "a bad record does not fault a seqpacket channel");
            using FdMessage m = ch.ReceiveAsync(cts.Token).AsTask().GetAwaiter().GetResult();
            Assert.That((m.Length, m.FdCount), Is.EqualTo((2, 1)), "the record after the bad one");
        }
        ch.DisposeAsync().AsTask().GetAwaiter().GetResult();
        peer.Dispose();
        Assert.That(Posix.NewFds(before), Is.Empty, "the bad frame's descriptors were closed");
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public async Task OverLimitFramesAreRejectedWholeAndTheChannelGoesOn(SocketType type)
    {
        var before = Posix.Snapshot();
        var (peer, me) = Posix.SocketPair(type);
        using (SafeFileHandle f = TempFile())
        await using (var sender = new FdChannel(peer))
        await using (var ch = new FdChannel(me, new FdChannelOptions { MaxMessageSize = 1024, MaxFdsPerMessage = 0 }))
        {
            var flood = Enumerable.Repeat((Descriptor)f, FdPassing.MaxFds).ToArray();
            var send = Task.Run(async () =>
            {
                for (int i = 0; i < 200; i++)
                {
                    await sender.SendAsync(new byte[i % 2 == 0 ? 10 : 50000], i % 2 == 0 ? flood : Array.Empty<Descriptor>());
                    await sender.SendAsync("ok"u8.ToArray());
                }
            });
            for (int i = 0; i < 200; i++)
            {
                var e = Assert.ThrowsAsync<FdMessageRejectedException>(async () => (await ch.ReceiveAsync()).Dispose());
                Assert.That(e!.Reason, Is.EqualTo(i % 2 == 0 ? FdMessageRejectReason.TooManyFds : FdMessageRejectReason.PayloadTooLarge));
                using FdMessage m = await ch.ReceiveAsync();
                Assert.That((m.Length, m.FdCount), Is.EqualTo((2, 0)), $"the message after rejected one {i}");
            }
            await send;
            TestContext.Out.WriteLine($"{type}: 100 floods of 253 fds and 100 frames of 50 KB rejected whole; " +
                                      "the message after each arrived");
        }
        Assert.That(Posix.NewFds(before), Is.Empty, "25,300 refused descriptors: every one closed");
    }

    /// <summary>A frame announcing 4 GiB followed by junk and the end: discarded in
    /// bounded memory, then a protocol error.</summary>
    [Test]
    public async Task HugeAnnouncedLengthIsDiscardedInBoundedMemory()
    {
        var before = Posix.Snapshot();
        var (peer, me) = Posix.SocketPair(SocketType.Stream);
        var writer = Task.Run(() =>
        {
            peer.Send(Header(1, 0, 0, 0xFFFFFFFFu));
            var junk = new byte[1 << 16];
            for (int i = 0; i < 128; i++)
                peer.Send(junk);
            peer.Dispose();
        });
        await using (var ch = new FdChannel(me, new FdChannelOptions { MaxMessageSize = 1024 }))
        {
            long mem0 = GC.GetTotalAllocatedBytes(true);
            var e = Assert.CatchAsync<Exception>(async () => (await ch.ReceiveAsync()).Dispose());
            long allocated = GC.GetTotalAllocatedBytes(true) - mem0;
            TestContext.Out.WriteLine($"4 GiB announced, 8 MiB sent: {e!.GetType().Name}, {allocated / 1024} KiB allocated");
            Assert.That(e, Is.InstanceOf<FdChannelProtocolException>().Or.InstanceOf<FdMessageRejectedException>());
            Assert.That(allocated, Is.LessThan(4L << 20), "discarding must not buffer the junk");
        }
        await writer;
        Assert.That(Posix.NewFds(before), Is.Empty);
    }

    /// <summary>A peer that sends half a header and stalls: the receive is cancelled by the
    /// caller's deadline, nothing is lost, and when the peer finishes the frame the next
    /// receive delivers it whole with its descriptors.</summary>
    [Test]
    public async Task StalledPeerIsBoundedByCancellationAndNothingIsLost()
    {
        var before = Posix.Snapshot();
        var (peer, me) = Posix.SocketPair(SocketType.Stream);
        using (SafeFileHandle f = TempFile())
        await using (var ch = new FdChannel(me))
        {
            byte[] frame = Header(1, 0, 1, 4).Concat("late"u8.ToArray()).ToArray();
            peer.SendFds(frame.AsSpan(0, 3), f); // the descriptor and 3 header bytes
            using (var cts = new CancellationTokenSource(300))
                Assert.CatchAsync<OperationCanceledException>(async () => (await ch.ReceiveAsync(cts.Token)).Dispose());
            peer.Send(frame.AsSpan(3));
            using FdMessage m = await ch.ReceiveAsync();
            Assert.That((m.Length, m.FdCount), Is.EqualTo((4, 1)));
            Assert.That(Posix.Identify(m.Fds.PeekFd(0)), Is.EqualTo(Posix.Identify(f)));
            peer.Dispose();
        }
        Assert.That(Posix.NewFds(before), Is.Empty);
    }
}
