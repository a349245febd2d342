// SPDX-License-Identifier: MIT
using System.IO.MemoryMappedFiles;
using System.IO.Pipes;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Tests;

/// <summary>Round trips through every send overload and socket type, checked by bytes and by
/// the inode (st_dev:st_ino) of every descriptor that arrives.</summary>
[TestFixture]
public class SendingTests : TempDirFixture
{
    private static readonly SocketType[] AllTypes = [SocketType.Stream, SocketType.Seqpacket, SocketType.Dgram];

    /// <summary>Opens n fresh files with distinct content.</summary>
    private List<FileStream> OpenFiles(int n, string tag = "file")
    {
        var files = new List<FileStream>();
        for (int i = 0; i < n; i++)
            files.Add(new FileStream(Dir.NewFile($"{tag} {i}"), FileMode.Open, FileAccess.Read));
        return files;
    }

    private static void AssertSameFiles(ReceivedFds r, IReadOnlyList<FileStream> sent, string tag = "file")
    {
        Assert.That(r.Count, Is.EqualTo(sent.Count));
        for (int i = 0; i < sent.Count; i++)
        {
            Assert.That(Posix.GetFileId(r.PeekFd(i)), Is.EqualTo(Posix.GetFileId(sent[i].SafeFileHandle)), $"inode of fd {i}");
            using SafeFileHandle h = r.TakeFileHandle(i);
            Assert.That(TestData.ReadAll(h), Is.EqualTo($"{tag} {i}"), $"content of fd {i}");
        }
    }

    [TestCaseSource(nameof(AllTypes))]
    public void Descriptors_and_data_round_trip_as_one_message(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        var files = OpenFiles(3);
        try
        {
            int sent = pair.A.SendFds(TestData.Utf8("hello"), files[0], files[1].SafeFileHandle, Descriptor.FromStream(files[2]));
            Assert.That(sent, Is.EqualTo(5));

            var buffer = new byte[64];
            using ReceivedFds r = pair.B.ReceiveFds(buffer);
            Assert.That(r.BytesReceived, Is.EqualTo(5));
            Assert.That(TestData.Text(buffer.AsSpan(0, r.BytesReceived)), Is.EqualTo("hello"));
            Assert.That(r.Flags, Is.EqualTo(ReceiveFlags.None));
            Assert.That(r.IsEndOfStream, Is.False);
            AssertSameFiles(r, files);
        }
        finally
        {
            files.ForEach(f => f.Dispose());
        }
    }

    [TestCaseSource(nameof(AllTypes))]
    public void Raw_int_fds_round_trip_through_the_span_overloads(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        var files = OpenFiles(2);
        try
        {
            ReadOnlySpan<int> raw = [(int)files[0].SafeFileHandle.DangerousGetHandle(), (int)files[1].SafeFileHandle.DangerousGetHandle()];
            Assert.That(pair.A.SendFds(TestData.Utf8("raw"), raw), Is.EqualTo(3));

            var buffer = new byte[16];
            Span<int> fds = stackalloc int[4];
            int n = pair.B.ReceiveFds(buffer, fds, out int count, out ReceiveFlags flags);
            try
            {
                Assert.That(n, Is.EqualTo(3));
                Assert.That(count, Is.EqualTo(2));
                Assert.That(flags, Is.EqualTo(ReceiveFlags.None));
                for (int i = 0; i < 2; i++)
                {
                    Assert.That(fds[i], Is.Not.EqualTo(raw[i]), "the receiver gets its own duplicate");
                    Assert.That(Posix.GetFileId(fds[i]), Is.EqualTo(Posix.GetFileId(files[i].SafeFileHandle)));
                }
            }
            finally
            {
                for (int i = 0; i < count; i++)
                    Posix.Close(fds[i]);
            }
        }
        finally
        {
            files.ForEach(f => f.Dispose());
        }
    }

    [Test]
    public void Int_conversions_send_raw_descriptors()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var file = new FileStream(Dir.NewFile("file 0"), FileMode.Open, FileAccess.Read);
        int fd = (int)file.SafeFileHandle.DangerousGetHandle();
        pair.A.SendFds(TestData.Utf8("x"), Descriptor.FromRawFd(fd));
        using ReceivedFds r = pair.B.ReceiveFds(new byte[4]);
        AssertSameFiles(r, [file]);
    }

    [Test]
    public void Every_kind_of_handle_can_be_sent()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        using var file = new FileStream(Dir.NewFile("file"), FileMode.Open, FileAccess.Read);
        using SafeFileHandle fileHandle = File.OpenHandle(Dir.NewFile("handle"));
        using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
        using var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        string mappedPath = Dir.NewFile("mapped content");
        using var mapped = MemoryMappedFile.CreateFromFile(mappedPath, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);

        pair.A.SendFds(TestData.Utf8("kinds"),
            file, fileHandle, pipe.SafePipeHandle, pipe.ClientSafePipeHandle, tcp, mapped.SafeMemoryMappedFileHandle);

        using ReceivedFds r = pair.B.ReceiveFds(new byte[16]);
        Assert.That(r.Count, Is.EqualTo(6));
        Assert.That(Posix.GetFileId(r.PeekFd(0)), Is.EqualTo(Posix.GetFileId(file.SafeFileHandle)));
        Assert.That(Posix.GetFileId(r.PeekFd(1)), Is.EqualTo(Posix.GetFileId(fileHandle)));
        Assert.That(Posix.GetFileId(r.PeekFd(2)), Is.EqualTo(Posix.GetFileId(pipe.SafePipeHandle)));
        Assert.That(Posix.GetFileId(r.PeekFd(3)), Is.EqualTo(Posix.GetFileId(pipe.ClientSafePipeHandle)));
        Assert.That(Posix.GetFileId(r.PeekFd(4)), Is.EqualTo(Posix.GetFileId(tcp.SafeHandle)));
        Assert.That(Posix.GetFileId(r.PeekFd(5)), Is.EqualTo(Posix.GetFileId(mapped.SafeMemoryMappedFileHandle)));
        Assert.That(Posix.GetFileId(r.PeekFd(5)), Is.EqualTo(Posix.GetFileId(mappedPath)), "the memory-mapped file's descriptor is the file");
    }

    [TestCaseSource(nameof(AllTypes))]
    public void Descriptors_without_data_arrive(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        var files = OpenFiles(2);
        try
        {
            Assert.That(pair.A.SendFds(ReadOnlySpan<byte>.Empty, files[0], files[1]), Is.EqualTo(0));
            using ReceivedFds r = pair.B.ReceiveFds(Span<byte>.Empty);
            Assert.That(r.BytesReceived, Is.EqualTo(0));
            Assert.That(r.Flags, Is.EqualTo(ReceiveFlags.None), "on a stream socket the consumed byte is the zero carrier byte");
            Assert.That(r.IsEndOfStream, Is.False);
            AssertSameFiles(r, files);
        }
        finally
        {
            files.ForEach(f => f.Dispose());
        }
    }

    [Test]
    public void Stream_carrier_byte_is_one_zero_byte_on_the_wire()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var file = new FileStream(Dir.NewFile("file 0"), FileMode.Open, FileAccess.Read);
        pair.A.SendFds(ReadOnlySpan<byte>.Empty, file);
        pair.A.Send(TestData.Utf8("after"));
        // A receiver that asks for data gets the carrier byte (value 0) with the descriptor.
        var buffer = new byte[1];
        using ReceivedFds r = pair.B.ReceiveFds(buffer);
        Assert.That(r.BytesReceived, Is.EqualTo(1));
        Assert.That(buffer[0], Is.EqualTo(0));
        Assert.That(r.Count, Is.EqualTo(1));
        var rest = new byte[16];
        Assert.That(TestData.Text(rest.AsSpan(0, pair.B.Receive(rest))), Is.EqualTo("after"));
    }

    [Test]
    public void Plain_data_without_descriptors_is_sent()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        Assert.That(pair.A.SendFds(TestData.Utf8("plain")), Is.EqualTo(5));
        var buffer = new byte[16];
        using ReceivedFds r = pair.B.ReceiveFds(buffer);
        Assert.That(r.Count, Is.EqualTo(0));
        Assert.That(TestData.Text(buffer.AsSpan(0, r.BytesReceived)), Is.EqualTo("plain"));
    }

    [Test]
    public void SendFdsTo_sends_a_datagram_from_an_unconnected_socket_to_a_path()
    {
        string path = Dir.NewPath("dg");
        using var receiver = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        receiver.Bind(new UnixDomainSocketEndPoint(path));
        using var sender = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        var files = OpenFiles(2);
        try
        {
            Assert.That(sender.SendFdsTo(path, TestData.Utf8("to path"), files[0], files[1]), Is.EqualTo(7));
            ReadOnlySpan<int> raw = [(int)files[0].SafeFileHandle.DangerousGetHandle()];
            Assert.That(sender.SendFdsTo(path, ReadOnlySpan<byte>.Empty, raw), Is.EqualTo(0));

            var buffer = new byte[16];
            using (ReceivedFds r = receiver.ReceiveFds(buffer))
            {
                Assert.That(TestData.Text(buffer.AsSpan(0, r.BytesReceived)), Is.EqualTo("to path"));
                AssertSameFiles(r, files);
            }
            using (ReceivedFds r = receiver.ReceiveFds(buffer))
            {
                Assert.That(r.BytesReceived, Is.EqualTo(0));
                Assert.That(r.IsEndOfStream, Is.False, "an empty datagram is not an end of stream");
                Assert.That(Posix.GetFileId(r.PeekFd(0)), Is.EqualTo(Posix.GetFileId(files[0].SafeFileHandle)));
            }
        }
        finally
        {
            files.ForEach(f => f.Dispose());
        }
    }

    [Test]
    public void SendFdsTo_reaches_a_Linux_abstract_socket_with_an_at_prefix()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("SKIPPED: abstract Unix sockets exist only on Linux");
        string name = $"fdsend-test-{Environment.ProcessId}-{Guid.NewGuid():N}";
        using var receiver = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        receiver.Bind(new UnixDomainSocketEndPoint("\0" + name));
        using var sender = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        using var file = new FileStream(Dir.NewFile("file 0"), FileMode.Open, FileAccess.Read);
        sender.SendFdsTo("@" + name, TestData.Utf8("abstract"), file);
        var buffer = new byte[16];
        using ReceivedFds r = receiver.ReceiveFds(buffer);
        Assert.That(TestData.Text(buffer.AsSpan(0, r.BytesReceived)), Is.EqualTo("abstract"));
        AssertSameFiles(r, [file]);
    }

    /// <summary>Issue 11 item 5: SendFdsTo with a UnixDomainSocketEndPoint reaches the socket
    /// that .NET binds at that same endpoint: a file path; an abstract name in .NET's spelling
    /// ("\0name"); and "@name", which for a UnixDomainSocketEndPoint is the FILE "@name" in
    /// the current directory (not an abstract name), while the string overload takes "@name"
    /// and "\0name" as abstract names.</summary>
    [TestCase("path", false)]
    [TestCase("path", true)]
    [TestCase("nul-abstract", false)]
    [TestCase("nul-abstract", true)]
    [TestCase("at-file", false)]
    [TestCase("string-nul-abstract", false)]
    public void SendFdsTo_reaches_the_socket_bound_at_an_endpoint(string form, bool rawFds)
    {
        if (form.Contains("abstract") && !OperatingSystem.IsLinux())
            Assert.Ignore("SKIPPED: abstract Unix sockets exist only on Linux");
        string unique = $"fdsend-ep-{Environment.ProcessId}-{Guid.NewGuid():N}";
        string previousDirectory = Environment.CurrentDirectory;
        using var receiver = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        using var sender = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        using var file = new FileStream(Dir.NewFile("file 0"), FileMode.Open, FileAccess.Read);
        try
        {
            UnixDomainSocketEndPoint endPoint;
            switch (form)
            {
                case "path":
                    endPoint = new UnixDomainSocketEndPoint(Dir.NewPath("ep"));
                    break;
                case "at-file":
                    // .NET binds "@name" as a file in the current directory: go there.
                    Environment.CurrentDirectory = Dir.Path;
                    endPoint = new UnixDomainSocketEndPoint("@" + unique);
                    break;
                default:
                    endPoint = new UnixDomainSocketEndPoint("\0" + unique);
                    break;
            }
            receiver.Bind(endPoint);
            if (form == "at-file")
                Assert.That(File.Exists(Path.Combine(Dir.Path, "@" + unique)), Is.True, "the premise: .NET made a file");

            int sent = form switch
            {
                "string-nul-abstract" => sender.SendFdsTo("\0" + unique, TestData.Utf8("endpoint"), file),
                _ when rawFds => sender.SendFdsTo(endPoint, TestData.Utf8("endpoint"),
                                                  (ReadOnlySpan<int>)[(int)file.SafeFileHandle.DangerousGetHandle()]),
                _ => sender.SendFdsTo(endPoint, TestData.Utf8("endpoint"), file),
            };
            Assert.That(sent, Is.EqualTo(8));
            receiver.ReceiveTimeout = 10_000;
            var buffer = new byte[16];
            using ReceivedFds r = receiver.ReceiveFds(buffer);
            Assert.That(TestData.Text(buffer.AsSpan(0, r.BytesReceived)), Is.EqualTo("endpoint"));
            AssertSameFiles(r, [file]);
        }
        finally
        {
            Environment.CurrentDirectory = previousDirectory;
        }
    }

    [Test]
    public void An_at_endpoint_is_not_taken_for_an_abstract_name()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("SKIPPED: abstract Unix sockets exist only on Linux");
        // A receiver on the ABSTRACT name must not get what is sent to the FILE endpoint "@name".
        string unique = $"fdsend-ep-{Environment.ProcessId}-{Guid.NewGuid():N}";
        using var abstractReceiver = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        abstractReceiver.Bind(new UnixDomainSocketEndPoint("\0" + unique));
        using var sender = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        string previousDirectory = Environment.CurrentDirectory;
        try
        {
            Environment.CurrentDirectory = Dir.Path; // no file "@name" there
            var e = Assert.Throws<SocketException>(() => sender.SendFdsTo(new UnixDomainSocketEndPoint("@" + unique), TestData.Utf8("x")))!;
            Assert.That(e.SocketErrorCode, Is.EqualTo(SocketError.AddressNotAvailable), "no such file");
        }
        finally
        {
            Environment.CurrentDirectory = previousDirectory;
        }
        abstractReceiver.Blocking = false;
        Assert.That(abstractReceiver.Available, Is.EqualTo(0));
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public void MaxFds_descriptors_fit_in_one_message(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        using var file = new FileStream(Dir.NewFile("file 0"), FileMode.Open, FileAccess.Read);
        var fds = new Descriptor[FdPassing.MaxFds];
        Array.Fill(fds, file);
        pair.A.SendFds(TestData.Utf8("max"), fds);
        using ReceivedFds r = pair.B.ReceiveFds(new byte[8]);
        Assert.That(r.Count, Is.EqualTo(FdPassing.MaxFds));
        Assert.That(r.Flags, Is.EqualTo(ReceiveFlags.None));
        FileId id = Posix.GetFileId(file.SafeFileHandle);
        for (int i = 0; i < r.Count; i++)
            Assert.That(Posix.GetFileId(r.PeekFd(i)), Is.EqualTo(id));
        Assert.That(FdPassing.NativeMaxFds, Is.EqualTo(FdPassing.MaxFds));
    }

    [Test]
    public void A_blocking_stream_send_delivers_all_data_with_the_descriptors_on_the_first_chunk()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.SendBufferSize = 4096;
        pair.B.ReceiveBufferSize = 4096;
        using var file = new FileStream(Dir.NewFile("file 0"), FileMode.Open, FileAccess.Read);
        byte[] data = new byte[1 << 20];
        new Random(1).NextBytes(data);

        int sent = 0;
        var sender = Task.Run(() => sent = pair.A.SendFds(data, file));

        var received = new MemoryStream();
        var buffer = new byte[8192];
        int fdCount = 0;
        FileId? id = null;
        while (received.Length < data.Length)
        {
            using ReceivedFds r = pair.B.ReceiveFds(buffer);
            Assert.That(r.IsEndOfStream, Is.False);
            if (r.Count > 0)
            {
                Assert.That(received.Length, Is.EqualTo(0), "the descriptors arrive with the first bytes");
                id = Posix.GetFileId(r.PeekFd(0));
            }
            fdCount += r.Count;
            received.Write(buffer, 0, r.BytesReceived);
        }
        Assert.That(sender.Wait(TimeSpan.FromSeconds(30)), Is.True);
        Assert.That(sent, Is.EqualTo(data.Length));
        Assert.That(fdCount, Is.EqualTo(1), "the descriptors are sent exactly once");
        Assert.That(id, Is.EqualTo(Posix.GetFileId(file.SafeFileHandle)));
        Assert.That(received.ToArray(), Is.EqualTo(data));
    }

    [Test]
    public void A_non_blocking_stream_send_may_be_partial_and_the_rest_follows_without_descriptors()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.SendBufferSize = 4096;
        pair.B.ReceiveBufferSize = 4096;
        pair.A.Blocking = false;
        using var file = new FileStream(Dir.NewFile("file 0"), FileMode.Open, FileAccess.Read);
        byte[] data = new byte[1 << 20];
        new Random(2).NextBytes(data);

        int first = pair.A.SendFds(data, file);
        Assert.That(first, Is.GreaterThan(0).And.LessThan(data.Length), "a 1 MiB send cannot fit a 4 KiB buffer");

        var reader = Task.Run(() =>
        {
            var received = new MemoryStream();
            var buffer = new byte[8192];
            int fds = 0;
            long fdsAt = -1;
            while (received.Length < data.Length)
            {
                using ReceivedFds r = pair.B.ReceiveFds(buffer);
                if (r.IsEndOfStream)
                    break;
                if (r.Count > 0)
                    fdsAt = received.Length;
                fds += r.Count;
                received.Write(buffer, 0, r.BytesReceived);
            }
            return (received.ToArray(), fds, fdsAt);
        });
        pair.A.Blocking = true;
        pair.A.Send(data.AsSpan(first));
        Assert.That(reader.Wait(TimeSpan.FromSeconds(30)), Is.True);
        var (bytes, count, at) = reader.Result;
        Assert.That(count, Is.EqualTo(1));
        Assert.That(at, Is.EqualTo(0));
        Assert.That(bytes, Is.EqualTo(data));
    }

    [Test]
    public void The_sender_keeps_its_descriptors_open_and_usable()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var file = new FileStream(Dir.NewFile("still mine"), FileMode.Open, FileAccess.Read);
        int fd = (int)file.SafeFileHandle.DangerousGetHandle();
        pair.A.SendFds(TestData.Utf8("x"), file);
        using (pair.B.ReceiveFds(new byte[1])) { }
        Assert.That(Posix.IsOpen(fd), Is.True);
        Assert.That(TestData.ReadAll(file.SafeFileHandle), Is.EqualTo("still mine"));
    }
}
