// SPDX-License-Identifier: MIT
using FdSend.Tests.Async;
using System.IO.MemoryMappedFiles;
using System.IO.Pipes;
using System.Net;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Tests;

/// <summary>What a receiver gets: counts, flags, end of stream, and typed takers that really
/// work (read the file, accept on the socket, write through the pipe).</summary>
[TestFixture]
public class ReceivingTests : TempDirFixture
{
    private FileStream NewFile(string content) => new(Dir.NewFile(content), FileMode.Open, FileAccess.ReadWrite);

    [Test]
    public void More_descriptors_than_maxFds_are_closed_and_flagged()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        using var f = NewFile("x");
        int before = AsyncTest.SettledFdCount();
        pair.A.SendFds(TestData.Utf8("five"), f, f, f, f, f);
        using (ReceivedFds r = pair.B.ReceiveFds(new byte[8], maxFds: 2))
        {
            Assert.That(r.Count, Is.EqualTo(2));
            Assert.That(r.FdsTruncated, Is.True);
            Assert.That(r.DataTruncated, Is.False);
            AsyncTest.AssertFdCount(before + 2, "the 3 extra descriptors were closed");
        }
        AsyncTest.AssertFdCount(before);
    }

    [Test]
    public void MaxFds_zero_receives_data_and_closes_every_descriptor()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = NewFile("x");
        int before = AsyncTest.SettledFdCount();
        pair.A.SendFds(TestData.Utf8("d"), f, f);
        var buffer = new byte[4];
        using ReceivedFds r = pair.B.ReceiveFds(buffer, maxFds: 0);
        Assert.That(r.Count, Is.EqualTo(0));
        Assert.That(r.BytesReceived, Is.EqualTo(1));
        Assert.That(r.Flags, Is.EqualTo(ReceiveFlags.FdsTruncated));
        AsyncTest.AssertFdCount(before);
    }

    [Test]
    public void Span_overload_truncates_to_the_span_length()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Dgram);
        using var f = NewFile("x");
        int before = AsyncTest.SettledFdCount();
        pair.A.SendFds(TestData.Utf8("three"), f, f, f);
        Span<int> fds = stackalloc int[1];
        int n = pair.B.ReceiveFds(new byte[8], fds, out int count, out ReceiveFlags flags);
        Assert.That(n, Is.EqualTo(5));
        Assert.That(count, Is.EqualTo(1));
        Assert.That(flags, Is.EqualTo(ReceiveFlags.FdsTruncated));
        Assert.That(Posix.GetFileId(fds[0]), Is.EqualTo(Posix.GetFileId(f.SafeFileHandle)));
        AsyncTest.AssertFdCount(before + 1, "the 2 descriptors beyond the span were closed");
        Posix.Close(fds[0]);
    }

    [TestCase(SocketType.Seqpacket)]
    [TestCase(SocketType.Dgram)]
    public void A_message_larger_than_the_buffer_sets_DataTruncated_and_keeps_the_descriptors(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        using var f = NewFile("x");
        pair.A.SendFds(TestData.Utf8("0123456789"), f);
        pair.A.SendFds(TestData.Utf8("next"));
        var buffer = new byte[4];
        using (ReceivedFds r = pair.B.ReceiveFds(buffer))
        {
            Assert.That(r.BytesReceived, Is.EqualTo(4));
            Assert.That(TestData.Text(buffer), Is.EqualTo("0123"));
            Assert.That(r.DataTruncated, Is.True);
            Assert.That(r.Count, Is.EqualTo(1));
        }
        using (ReceivedFds r = pair.B.ReceiveFds(buffer))
        {
            Assert.That(TestData.Text(buffer.AsSpan(0, r.BytesReceived)), Is.EqualTo("next"), "the rest of the long message was discarded");
            Assert.That(r.Flags, Is.EqualTo(ReceiveFlags.None));
        }
    }

    [Test]
    public void Empty_buffer_on_a_stream_flags_a_consumed_data_byte()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.Send(TestData.Utf8("A"));
        using ReceivedFds r = pair.B.ReceiveFds(Span<byte>.Empty);
        Assert.That(r.Count, Is.EqualTo(0));
        Assert.That(r.DataTruncated, Is.True, "'A' is not the zero carrier byte");
        Assert.That(r.IsEndOfStream, Is.False);
    }

    [Test]
    public void Earlier_plain_data_can_arrive_together_with_the_next_messages_descriptors()
    {
        // PITFALLS: on a stream, one recvmsg can return earlier plain bytes plus the fds of the
        // next message; a receiver asking for exactly the sender's data size sees them.
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = NewFile("x");
        pair.A.Send(TestData.Utf8("ab"));
        pair.A.SendFds(TestData.Utf8("c"), f);
        pair.A.Send(TestData.Utf8("d"));
        var buffer = new byte[16];
        var got = new List<(string, int)>();
        while (got.Sum(g => g.Item1.Length) < 4)
        {
            using ReceivedFds r = pair.B.ReceiveFds(buffer);
            got.Add((TestData.Text(buffer.AsSpan(0, r.BytesReceived)), r.Count));
        }
        Assert.That(string.Concat(got.Select(g => g.Item1)), Is.EqualTo("abcd"));
        Assert.That(got.Sum(g => g.Item2), Is.EqualTo(1));
        // The descriptor comes in the receive that returns 'c' (never later), and that receive
        // stops there: "d" is not joined to it.
        var withFd = got.Single(g => g.Item2 == 1);
        Assert.That(withFd.Item1, Does.EndWith("c"));
    }

    [TestCase(SocketType.Stream)]
    public void End_of_stream_is_reported_when_the_peer_closes(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        pair.A.Shutdown(SocketShutdown.Send);
        using (ReceivedFds r = pair.B.ReceiveFds(new byte[8]))
        {
            Assert.That(r.IsEndOfStream, Is.True);
            Assert.That(r.BytesReceived, Is.EqualTo(0));
            Assert.That(r.Count, Is.EqualTo(0));
        }
        using (ReceivedFds r = pair.B.ReceiveFds(Span<byte>.Empty))
            Assert.That(r.IsEndOfStream, Is.True, "also with an empty buffer");
        Span<int> fds = stackalloc int[2];
        Assert.That(pair.B.ReceiveFds(new byte[8], fds, out int count, out ReceiveFlags flags), Is.EqualTo(0));
        Assert.That(count, Is.EqualTo(0));
        Assert.That(flags, Is.EqualTo(ReceiveFlags.None));
    }

    [Test]
    public void Received_descriptors_are_close_on_exec()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = NewFile("x");
        pair.A.SendFds(TestData.Utf8("x"), f, f);
        using ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        Assert.That(Posix.IsCloseOnExec(r.PeekFd(0)), Is.True);
        Assert.That(Posix.IsCloseOnExec(r.PeekFd(1)), Is.True);
    }

    [Test]
    public void TakeFileStream_reads_and_writes_the_sent_file()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        string path = Dir.NewFile("line one\n");
        using (var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
            pair.A.SendFds(TestData.Utf8("f"), f);
        using ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        using (FileStream stream = r.TakeFileStream(0, FileAccess.ReadWrite))
        {
            using var reader = new StreamReader(stream, leaveOpen: true);
            Assert.That(reader.ReadLine(), Is.EqualTo("line one"));
            stream.Write(TestData.Utf8("line two\n"));
        }
        Assert.That(File.ReadAllText(path), Is.EqualTo("line one\nline two\n"));
    }

    [Test]
    public void TakeFileHandle_and_TakeRawFd_transfer_ownership()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = NewFile("content");
        pair.A.SendFds(TestData.Utf8("f"), f, f);
        ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        SafeFileHandle h = r.TakeFileHandle(0);
        int raw = r.TakeRawFd(1);
        r.Dispose();
        Assert.That(Posix.IsOpen(raw), Is.True, "a taken raw fd is the caller's");
        Assert.That(TestData.ReadAll(h), Is.EqualTo("content"), "a taken handle outlives the result");
        int fd = (int)h.DangerousGetHandle();
        h.Dispose();
        Assert.That(Posix.IsOpenOn(fd, Posix.GetFileId(f.SafeFileHandle)), Is.False);
        Assert.That(Posix.Close(raw), Is.EqualTo(0));
    }

    [Test]
    public void TakeSocket_gives_a_listening_socket_that_accepts_TCP_connections()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        int port;
        using (var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(4);
            port = ((IPEndPoint)listener.LocalEndPoint!).Port;
            pair.A.SendFds(TestData.Utf8("L"), listener);
        } // our listener is closed: only the received duplicate still listens

        using ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        using Socket received = r.TakeSocket(0);
        Assert.That(received.AddressFamily, Is.EqualTo(AddressFamily.InterNetwork));
        Assert.That(received.SocketType, Is.EqualTo(SocketType.Stream));

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(new IPEndPoint(IPAddress.Loopback, port));
        using Socket accepted = received.Accept();
        accepted.Send(TestData.Utf8("hi"));
        var buffer = new byte[2];
        Assert.That(client.Receive(buffer), Is.EqualTo(2));
        Assert.That(TestData.Text(buffer), Is.EqualTo("hi"));
    }

    [Test]
    public async Task TakeSocket_gives_a_socket_usable_with_async_calls()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var inner = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.SendFds(TestData.Utf8("S"), inner.B);
        using ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        using Socket received = r.TakeSocket(0);
        await inner.A.SendAsync(TestData.Utf8("async"));
        var buffer = new byte[5];
        Assert.That(await received.ReceiveAsync(buffer), Is.EqualTo(5));
        Assert.That(TestData.Text(buffer), Is.EqualTo("async"));
    }

    [Test]
    public void TakePipe_writes_through_the_received_pipe_end()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var server = new AnonymousPipeServerStream(PipeDirection.In);
        pair.A.SendFds(TestData.Utf8("P"), server.ClientSafePipeHandle);
        server.DisposeLocalCopyOfClientHandle();

        using ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        using (AnonymousPipeClientStream writer = r.TakePipe(0, PipeDirection.Out))
            writer.Write(TestData.Utf8("through the pipe"));
        using var reader = new StreamReader(server);
        Assert.That(reader.ReadToEnd(), Is.EqualTo("through the pipe"), "end of file once the only write end is closed");
    }

    [Test]
    public void TakeMemoryMappedFile_maps_the_sent_file()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        string path = Dir.NewFile("mapped!");
        using (var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
            pair.A.SendFds(TestData.Utf8("M"), f);
        using ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        using (MemoryMappedFile mmf = r.TakeMemoryMappedFile(0))
        using (MemoryMappedViewAccessor view = mmf.CreateViewAccessor())
        {
            Assert.That((char)view.ReadByte(0), Is.EqualTo('m'));
            view.Write(0, (byte)'M');
            view.Flush();
        }
        Assert.That(File.ReadAllText(path), Is.EqualTo("Mapped!"));
    }

    [Test]
    public void ReceiveFds_works_on_a_non_Unix_socket_without_descriptors()
    {
        using var tcp = SocketPair.CreateTcp();
        tcp.A.SendFds(TestData.Utf8("tcp"));
        var buffer = new byte[3];
        using ReceivedFds r = tcp.B.ReceiveFds(buffer);
        Assert.That(TestData.Text(buffer), Is.EqualTo("tcp"));
        Assert.That(r.Count, Is.EqualTo(0));
    }
}
