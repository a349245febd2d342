// SPDX-License-Identifier: MIT
using FdSend.Tests.Async;
using System.IO.Pipes;
using System.Net;
using System.Text.RegularExpressions;

namespace FdSend.Tests;

/// <summary>Descriptors passed to and from a REAL child process (FdSend.TestPeer, started with
/// dotnet), which uses FdSend on its side.</summary>
[TestFixture]
public class ChildProcessTests : TempDirFixture
{
    [Test]
    public void The_child_receives_our_files_and_reports_their_inodes_and_content()
    {
        // The fdsend example: a message and several open files to a child.
        var files = new List<FileStream>();
        for (int i = 0; i < 12; i++)
            files.Add(new FileStream(Dir.NewFile($"file number {i}"), FileMode.Open, FileAccess.Read));
        try
        {
            using var peer = Peer.Start(Dir, "report");
            peer.Connection.SendFds(TestData.Utf8("twelve files"), files.Select(f => (Descriptor)f).ToArray());
            string report = peer.ReadReport();
            peer.AssertExitedCleanly();

            Assert.That(report, Does.StartWith("data=twelve files;count=12;flags=None"));
            for (int i = 0; i < 12; i++)
                Assert.That(report, Does.Contain($";fd{i}={Posix.GetFileId(files[i].SafeFileHandle)}:file number {i}"));
        }
        finally
        {
            files.ForEach(f => f.Dispose());
        }
    }

    [Test]
    public void Files_the_child_opened_arrive_here_even_after_the_child_exited()
    {
        string[] paths = [Dir.NewFile("opened by the child 0"), Dir.NewFile("opened by the child 1")];
        using var peer = Peer.Start(Dir, "send-files", paths);
        peer.AssertExitedCleanly(); // gone before we receive: the descriptors are in flight

        var buffer = new byte[16];
        using ReceivedFds r = peer.Connection.ReceiveFds(buffer);
        Assert.That(TestData.Text(buffer.AsSpan(0, r.BytesReceived)), Is.EqualTo("files"));
        Assert.That(r.Count, Is.EqualTo(2));
        for (int i = 0; i < 2; i++)
        {
            Assert.That(Posix.GetFileId(r.PeekFd(i)), Is.EqualTo(Posix.GetFileId(paths[i])));
            using FileStream s = r.TakeFileStream(i, FileAccess.Read);
            using var reader = new StreamReader(s);
            Assert.That(reader.ReadToEnd(), Is.EqualTo($"opened by the child {i}"));
        }
    }

    [Test]
    public void Peer_credentials_name_the_child_and_the_child_sees_us()
    {
        using var peer = Peer.Start(Dir, "creds");
        PeerCredentials mine = peer.Connection.GetPeerCredentials();
        string[] report = peer.ReadReport().Split(' ');
        peer.AssertExitedCleanly();

        Assert.That(mine.Pid, Is.EqualTo(peer.Pid));
        Assert.That(mine.Uid, Is.EqualTo(Posix.GetEUid()));
        Assert.That(mine.Gid, Is.EqualTo(Posix.GetEGid()));
        Assert.That(report[0], Is.EqualTo(peer.Pid.ToString()), "the child's own pid");
        Assert.That(report[1], Is.EqualTo(Environment.ProcessId.ToString()), "the child sees this process");
        Assert.That(report[2], Is.EqualTo(Posix.GetEUid().ToString()));
    }

    [Test]
    public void A_listening_TCP_socket_handed_to_the_child_accepts_there()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(4);
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;

        using var peer = Peer.Start(Dir, "accept");
        peer.Connection.SendFds(TestData.Utf8("L"), listener);
        listener.Dispose(); // only the child's duplicate listens now

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(new IPEndPoint(IPAddress.Loopback, port));
        string answer = TestData.ReadToEnd(client);
        peer.AssertExitedCleanly();
        Assert.That(answer, Is.EqualTo($"accepted by {peer.Pid} on {port}"));
    }

    [Test]
    public void The_child_writes_through_a_pipe_end_we_sent()
    {
        using var pipe = new AnonymousPipeServerStream(PipeDirection.In);
        using var peer = Peer.Start(Dir, "pipe-write");
        peer.Connection.SendFds(TestData.Utf8("P"), pipe.ClientSafePipeHandle);
        pipe.DisposeLocalCopyOfClientHandle();
        using var reader = new StreamReader(pipe);
        Assert.That(reader.ReadToEnd(), Is.EqualTo($"written by {peer.Pid}\n"));
        peer.AssertExitedCleanly();
    }

    [Test]
    public void Received_descriptors_do_not_leak_into_child_processes()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var f = new FileStream(Dir.NewFile("private"), FileMode.Open, FileAccess.Read);
        pair.A.SendFds(TestData.Utf8("x"), f);
        using ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        FileId id = Posix.GetFileId(r.PeekFd(0));

        using var peer = Peer.Start(Dir, "list-fds");
        string report = peer.ReadReport();
        peer.AssertExitedCleanly();
        Assert.That(report, Does.Not.Contain($"={id}"), $"the child inherited the received descriptor: {report}");
        Assert.That(Regex.Matches(report, "=").Count, Is.GreaterThan(2), "the child did report its descriptors");
    }

    [Test]
    public void A_child_at_its_open_file_limit_gets_FdsTruncated_not_a_crash()
    {
        using var f = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        using var peer = Peer.Start(Dir, "rlimit-recv", "2");
        peer.Connection.SendFds(TestData.Utf8("warm"), f);
        var ready = new byte[1];
        Assert.That(peer.Connection.Receive(ready), Is.EqualTo(1), "the child lowered its limit");
        peer.Connection.SendFds(TestData.Utf8("many"), Enumerable.Repeat((Descriptor)f, 10).ToArray());
        string report = peer.ReadReport();
        peer.AssertExitedCleanly();
        var m = Regex.Match(report, @"count=(\d+) flags=(\S+) bytes=4");
        Assert.That(m.Success, Is.True, report);
        Assert.That(int.Parse(m.Groups[1].Value), Is.LessThanOrEqualTo(2), "only the free slots were filled");
        Assert.That(m.Groups[2].Value, Does.Contain("FdsTruncated"));
    }

    [Test]
    public void Round_trips_through_a_child_keep_our_descriptor_count_unchanged()
    {
        using var f = new FileStream(Dir.NewFile("echo"), FileMode.Open, FileAccess.Read);
        using var peer = Peer.Start(Dir, "echo");
        FileId id = Posix.GetFileId(f.SafeFileHandle);
        var buffer = new byte[16];
        peer.Connection.SendFds(TestData.Utf8("w"), f);
        peer.Connection.ReceiveFds(buffer).Dispose();

        int before = AsyncTest.SettledFdCount();
        for (int i = 0; i < 500; i++)
        {
            peer.Connection.SendFds(TestData.Utf8($"m{i % 10}"), f, f);
            using ReceivedFds r = peer.Connection.ReceiveFds(buffer);
            Assert.That(TestData.Text(buffer.AsSpan(0, r.BytesReceived)), Is.EqualTo($"m{i % 10}"));
            Assert.That(r.Count, Is.EqualTo(2));
            if (i % 100 == 0)
                Assert.That(Posix.GetFileId(r.PeekFd(1)), Is.EqualTo(id));
        }
        AsyncTest.AssertFdCount(before);
        peer.Connection.Shutdown(SocketShutdown.Send);
        peer.AssertExitedCleanly();
    }
}
