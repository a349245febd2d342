// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using System.Net;
using FdSend.Tests.Async;

namespace FdSend.Tests;

/// <summary>What a receiver learns before taking (Describe), what it gets when it takes
/// (TakeSocket in every sender mode, TakeAll*), and the socket pair / child process helpers.</summary>
[TestFixture]
[NonParallelizable]
public class DescribeAndTakeTests : TempDirFixture
{
    private static ReceivedFds Pass(params Descriptor[] fds)
    {
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
        {
            a.SendFds(TestData.Utf8("d"), fds);
            return b.ReceiveFds(new byte[1]);
        }
    }

    private static Socket TcpListener()
    {
        var l = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        l.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        l.Listen(16);
        return l;
    }

    // ---- Describe ------------------------------------------------------------------------

    [Test]
    public void Describe_tells_each_kind_before_it_is_taken()
    {
        using var file = new FileStream(Dir.NewFile("hello"), FileMode.Open, FileAccess.Read);
        using var dir = Posix.OpenDirectory(Dir.Path);
        var pipe = new System.IO.Pipes.AnonymousPipeServerStream(System.IO.Pipes.PipeDirection.Out);
        using var _ = pipe;
        using Socket listener = TcpListener();
        using var udp = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp);

        using ReceivedFds r = Pass(Descriptor.FromStream(file), Descriptor.FromHandle(dir),
                                   Descriptor.FromHandle(pipe.SafePipeHandle), Descriptor.FromSocket(listener),
                                   Descriptor.FromSocket(udp));
        FdInfo f = r.Describe(0);
        Assert.That(f.Kind, Is.EqualTo(FdKind.File));
        Assert.That(f.Size, Is.EqualTo(5));
        Assert.That(f.Access, Is.EqualTo(FdAccess.Read));
        Assert.That(f.IsCloseOnExec, Is.True, "received descriptors are close-on-exec");
        Assert.That(f.AddressFamily, Is.EqualTo(AddressFamily.Unspecified));

        Assert.That(r.Describe(1).Kind, Is.EqualTo(FdKind.Directory));
        Assert.That(r.Describe(1).Size, Is.Null);
        Assert.That(r.Describe(2).Kind, Is.EqualTo(FdKind.Pipe));
        Assert.That(r.Describe(2).Access, Is.EqualTo(FdAccess.Write));

        FdInfo l = r.Describe(3);
        Assert.That(l.IsSocket, Is.True);
        Assert.That(l.AddressFamily, Is.EqualTo(AddressFamily.InterNetwork));
        Assert.That(l.SocketType, Is.EqualTo(SocketType.Stream));
        Assert.That(l.IsListening, Is.True);

        FdInfo u = r.Describe(4);
        Assert.That(u.AddressFamily, Is.EqualTo(AddressFamily.InterNetworkV6));
        Assert.That(u.SocketType, Is.EqualTo(SocketType.Dgram));
        Assert.That(u.IsListening, Is.False);

        Assert.That(r.IsTaken(3), Is.False, "describing takes nothing");
        Posix.Close(r.TakeRawFd(0));
        Assert.Throws<InvalidOperationException>(() => r.Describe(0));
    }

    [Test]
    public void Describe_sees_memfd_seals_and_FdPassing_Describe_any_handle()
    {
        using var file = new FileStream(Dir.NewFile("abc"), FileMode.Open, FileAccess.ReadWrite);
        FdInfo info = FdPassing.Describe(file.SafeFileHandle);
        Assert.That(info.Kind, Is.EqualTo(FdKind.File));
        Assert.That(info.Access, Is.EqualTo(FdAccess.ReadWrite));
        Assert.That(info.Size, Is.EqualTo(3));

        var closed = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        SafeHandle h = closed.SafeFileHandle;
        closed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => FdPassing.Describe(h));
        Assert.Throws<ArgumentNullException>(() => FdPassing.Describe(null!));
    }

    [Test]
    public void Describe_after_Dispose_throws_ObjectDisposedException()
    {
        using var file = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        ReceivedFds r = Pass(Descriptor.FromStream(file));
        r.Dispose();
        Assert.Throws<ObjectDisposedException>(() => r.Describe(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Pass().Describe(0));
    }

    // ---- TakeSocket whatever the sender's mode ---------------------------------------------

    [Test]
    public async Task TakeSocket_of_a_listener_after_AcceptAsync_accepts_sync_and_async()
    {
        using Socket listener = TcpListener();
        // The sender's socket has run an async call: .NET made its fd O_NONBLOCK.
        using (var c = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            Task<Socket> accept = listener.AcceptAsync();
            c.Connect(listener.LocalEndPoint!);
            (await accept.Within()).Dispose();
        }
        int fd = (int)listener.SafeHandle.DangerousGetHandle();
        Assert.That(Posix.IsNonBlocking(fd), Is.True, "the premise: the sender's fd is O_NONBLOCK");

        using ReceivedFds r = Pass(Descriptor.FromSocket(listener));
        Assert.That(r.Describe(0).IsNonBlocking, Is.True);
        using Socket taken = r.TakeSocket(0);
        Assert.That(taken.Blocking, Is.True);
        using (var c1 = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            c1.Connect(listener.LocalEndPoint!);
            using Socket s1 = taken.Accept(); // InvalidOperationException before the fix
            Assert.That(s1.Connected, Is.True);
        }
        using (var c2 = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            Task<Socket> a2 = taken.AcceptAsync();
            c2.Connect(listener.LocalEndPoint!);
            using Socket s2 = await a2.Within();
            Assert.That(s2.Connected, Is.True);
        }
        Assert.That(Posix.IsNonBlocking(fd), Is.True, "the sender's mode was not changed");
    }

    [Test]
    public void TakeSocket_of_a_listener_with_Blocking_false_blocks_in_sync_Accept_and_leaves_the_sender_non_blocking()
    {
        using Socket listener = TcpListener();
        listener.Blocking = false; // an event-loop server's listener
        int fd = (int)listener.SafeHandle.DangerousGetHandle();
        using ReceivedFds r = Pass(Descriptor.FromSocket(listener));
        using Socket taken = r.TakeSocket(0);
        Assert.That(taken.Blocking, Is.True);

        // A sync Accept with nothing pending waits (it does not throw WouldBlock or
        // InvalidOperationException) and returns when a client connects.
        Task<Socket> accept = Task.Run(() => taken.Accept());
        Thread.Sleep(100);
        Assert.That(accept.IsCompleted, Is.False, "Accept waits for a connection");
        using var c = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        c.Connect(listener.LocalEndPoint!);
        Assert.That(accept.Wait(10_000), Is.True);
        accept.Result.Dispose();
        Assert.That(Posix.IsNonBlocking(fd), Is.True, "the sender's mode was not changed");
        Assert.That(listener.Blocking, Is.False);
    }

    [Test]
    public async Task TakeSocket_of_a_connected_socket_after_ReceiveAsync_receives_sync()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        await SocketPair.MakeNonBlockingBehindTheScenes(pair.A, pair.B);
        using ReceivedFds r = Pass(Descriptor.FromSocket(pair.B));
        using Socket taken = r.TakeSocket(0);
        pair.A.Send(TestData.Utf8("hi"));
        var buffer = new byte[2];
        Assert.That(taken.Receive(buffer), Is.EqualTo(2)); // InvalidOperationException before the fix
        Assert.That(TestData.Text(buffer), Is.EqualTo("hi"));
        taken.ReceiveTimeout = 200;
        var e = Assert.Throws<SocketException>(() => taken.Receive(buffer));
        Assert.That(e!.SocketErrorCode, Is.EqualTo(SocketError.TimedOut), "a sync receive waits, within its timeout");
    }

    [Test]
    public void TakeSocket_of_a_blocking_descriptor_stays_blocking()
    {
        using Socket listener = TcpListener();
        int fd = (int)listener.SafeHandle.DangerousGetHandle();
        Assert.That(Posix.IsNonBlocking(fd), Is.False);
        using ReceivedFds r = Pass(Descriptor.FromSocket(listener));
        using Socket taken = r.TakeSocket(0);
        Assert.That(Posix.IsNonBlocking((int)taken.SafeHandle.DangerousGetHandle()), Is.False);
        using var c = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        c.Connect(listener.LocalEndPoint!);
        taken.Accept().Dispose();
    }

    [Test]
    public void TakeSocket_of_a_file_throws_and_leaves_it_untaken()
    {
        using var file = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        using ReceivedFds r = Pass(Descriptor.FromStream(file));
        var e = Assert.Throws<ArgumentException>(() => r.TakeSocket(0));
        Assert.That(e!.Message, Does.Contain("File"));
        Assert.That(r.IsTaken(0), Is.False);
        using SafeFileHandle h = r.TakeFileHandle(0);
    }

    [Test]
    public void TakeFileStream_of_a_directory_throws_ArgumentException_and_leaves_it_untaken()
    {
        using var dir = Posix.OpenDirectory(Dir.Path);
        using ReceivedFds r = Pass(Descriptor.FromHandle(dir));
        Assert.Throws<ArgumentException>(() => r.TakeFileStream(0, FileAccess.Read));
        Assert.That(r.IsTaken(0), Is.False);
        Assert.That(r.Describe(0).Kind, Is.EqualTo(FdKind.Directory));
    }

    // ---- TakeAll ---------------------------------------------------------------------------

    [Test]
    public void TakeAllSockets_takes_every_listener_in_order()
    {
        var listeners = Enumerable.Range(0, 40).Select(_ => TcpListener()).ToList();
        try
        {
            int before = AsyncTest.SettledFdCount();
            using (ReceivedFds r = Pass(listeners.Select(Descriptor.FromSocket).ToArray()))
            {
                using Socket first = r.TakeSocket(0);
                Socket[] rest = r.TakeAllSockets();
                Assert.That(rest, Has.Length.EqualTo(39));
                for (int i = 0; i < rest.Length; i++)
                    Assert.That(((IPEndPoint)rest[i].LocalEndPoint!).Port,
                                Is.EqualTo(((IPEndPoint)listeners[i + 1].LocalEndPoint!).Port));
                Assert.That(Enumerable.Range(0, 40).All(r.IsTaken), Is.True);
                Assert.That(r.TakeAllSockets(), Is.Empty, "nothing left");
                foreach (Socket s in rest)
                    s.Dispose();
            }
            AsyncTest.AssertFdCount(before, "every taken socket closed by its owner");
        }
        finally
        {
            foreach (Socket l in listeners)
                l.Dispose();
        }
    }

    [Test]
    public void TakeAllSockets_is_all_or_nothing()
    {
        using Socket l1 = TcpListener(), l2 = TcpListener();
        using var file = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        using ReceivedFds r = Pass(Descriptor.FromSocket(l1), Descriptor.FromStream(file), Descriptor.FromSocket(l2));
        var e = Assert.Throws<ArgumentException>(() => r.TakeAllSockets());
        Assert.That(e!.Message, Does.Contain("index 1"));
        Assert.That(r.IsTaken(0) || r.IsTaken(1) || r.IsTaken(2), Is.False, "nothing was taken");
    }

    [Test]
    public void TakeAllRawFds_and_TakeAllFileHandles_hand_over_ownership()
    {
        using var f = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        FileId id = Posix.GetFileId(f.SafeFileHandle);
        int[] raw;
        using (ReceivedFds r = Pass(f, f, f))
            raw = r.TakeAllRawFds();
        Assert.That(raw, Has.Length.EqualTo(3));
        Assert.That(raw.All(fd => Posix.IsOpenOn(fd, id)), Is.True, "Dispose left the taken fds open");
        FdPassing.CloseAll(raw);

        SafeFileHandle[] handles;
        using (ReceivedFds r = Pass(f, f))
            handles = r.TakeAllFileHandles();
        Assert.That(handles.Select(h => Posix.GetFileId(h)), Is.All.EqualTo(id));
        foreach (SafeFileHandle h in handles)
            h.Dispose();
    }

    [Test]
    public void Concurrent_takes_and_Dispose_hand_out_or_close_each_descriptor_exactly_once()
    {
        using var f = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        FileId id = Posix.GetFileId(f.SafeFileHandle);
        int before = AsyncTest.SettledFdCount();
        for (int round = 0; round < 200; round++)
        {
            ReceivedFds r = Pass(f, f, f, f);
            var taken = new System.Collections.Concurrent.ConcurrentBag<int>();
            using var start = new Barrier(5);
            var threads = Enumerable.Range(0, 5).Select(t => new Thread(() =>
            {
                start.SignalAndWait();
                if (t == 4)
                {
                    r.Dispose();
                    return;
                }
                try
                {
                    taken.Add(r.TakeRawFd(t));
                }
                catch (ObjectDisposedException)
                {
                }
            })).ToList();
            threads.ForEach(th => th.Start());
            threads.ForEach(th => th.Join());
            foreach (int fd in taken)
                Assert.That(Posix.IsOpenOn(fd, id), Is.True, "a taken descriptor was closed by Dispose");
            FdPassing.CloseAll(taken.ToArray()); // throws if one was closed twice
        }
        AsyncTest.AssertFdCount(before, "every descriptor closed exactly once");
    }

    [Test]
    public void DuplicateRawFd_gives_an_independent_owner_of_the_same_listener()
    {
        using Socket listener = TcpListener();
        int dup = FdPassing.DuplicateRawFd(listener.SafeHandle);
        Assert.That(dup, Is.Not.EqualTo((int)listener.SafeHandle.DangerousGetHandle()));
        Assert.That(Posix.IsCloseOnExec(dup), Is.True);
        using (var other = new Socket(new SafeSocketHandle(dup, ownsHandle: true)))
        {
            using var c = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            c.Connect(listener.LocalEndPoint!);
            other.Accept().Dispose(); // the same listen queue
        }
        // The duplicate's owner closed it; the original still listens.
        using var c2 = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        c2.Connect(listener.LocalEndPoint!);
        listener.Accept().Dispose();
        var closed = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        closed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => FdPassing.DuplicateRawFd(closed.SafeHandle));
    }

    [Test]
    public void SetInheritable_decides_whether_a_started_program_keeps_the_descriptor()
    {
        using Socket listener = TcpListener();
        int fd = (int)listener.SafeHandle.DangerousGetHandle();
        Assert.That(FdPassing.Describe(listener.SafeHandle).IsCloseOnExec, Is.True, ".NET's own sockets start close-on-exec");

        FdPassing.SetInheritable(listener.SafeHandle, true);
        Assert.That(Posix.IsCloseOnExec(fd), Is.False);
        Assert.That(ChildSees(fd), Is.True, "an inheritable descriptor is open in the child");

        FdPassing.SetInheritable(listener.SafeHandle, false);
        Assert.That(FdPassing.Describe(listener.SafeHandle).IsCloseOnExec, Is.True);
        Assert.That(ChildSees(fd), Is.False, "a close-on-exec descriptor is not");

        var closed = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        closed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => FdPassing.SetInheritable(closed.SafeHandle, false));
        Assert.Throws<ArgumentNullException>(() => FdPassing.SetInheritable(null!, false));

        static bool ChildSees(int fd)
        {
            using var sh = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", $"[ -e /proc/$$/fd/{fd} ]"]) { UseShellExecute = false })!;
            sh.WaitForExit();
            return sh.ExitCode == 0;
        }
    }

    // ---- Socket pair and child process ----------------------------------------------------

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    [TestCase(SocketType.Dgram)]
    public void UnixSocketPair_gives_two_connected_close_on_exec_ends(SocketType type)
    {
        (Socket a, Socket b) = UnixSocketPair.Create(type);
        using (a)
        using (b)
        {
            Assert.That(a.AddressFamily, Is.EqualTo(AddressFamily.Unix));
            Assert.That(a.SocketType, Is.EqualTo(type));
            Assert.That(a.Blocking && b.Blocking, Is.True);
            Assert.That(Posix.IsCloseOnExec((int)a.SafeHandle.DangerousGetHandle()), Is.True);
            Assert.That(Posix.IsCloseOnExec((int)b.SafeHandle.DangerousGetHandle()), Is.True);
            using var file = new FileStream(Dir.NewFile("pair"), FileMode.Open, FileAccess.Read);
            a.SendFds(TestData.Utf8("p"), file);
            using ReceivedFds r = b.ReceiveFds(new byte[1]);
            Assert.That(Posix.GetFileId(r.PeekFd(0)), Is.EqualTo(Posix.GetFileId(file.SafeFileHandle)));
        }
    }

    [Test]
    public void UnixSocketPair_refuses_other_types()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => UnixSocketPair.Create(SocketType.Raw));
    }

    private static ProcessStartInfo PeerStartInfo(string command)
    {
        var psi = new ProcessStartInfo(Peer.DotnetHost()) { UseShellExecute = false }; // stderr: the test log
        psi.ArgumentList.Add(Peer.PeerDll);
        psi.ArgumentList.Add(command);
        psi.ArgumentList.Add("-"); // the socket comes from FdChildProcess
        return psi;
    }

    /// <summary>The first process start makes .NET open descriptors it keeps (its child
    /// reaping machinery): start one before a baseline is taken.</summary>
    private static void WarmUpProcessStart()
    {
        using Process p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        p.WaitForExit();
    }

    [Test]
    public void FdChildProcess_starts_a_child_holding_the_other_end()
    {
        WarmUpProcessStart();
        int before = AsyncTest.SettledFdCount();
        ProcessStartInfo psi = PeerStartInfo("report");
        using (Process child = FdChildProcess.Start(psi, out Socket socket))
        using (socket)
        {
            Assert.That(psi.Environment.ContainsKey(FdChildProcess.EnvironmentVariable), Is.False,
                        "the start info is left as it was");
            Assert.That(Posix.IsCloseOnExec((int)socket.SafeHandle.DangerousGetHandle()), Is.True);
            using var file = new FileStream(Dir.NewFile("from the parent"), FileMode.Open, FileAccess.Read);
            socket.SendFds(TestData.Utf8("hello"), file);
            socket.ReceiveTimeout = 30_000;
            string report = TestData.ReadToEnd(socket);
            Assert.That(child.WaitForExit(30_000), Is.True);
            Assert.That(child.ExitCode, Is.EqualTo(0), "the peer failed: see its stderr in the test log");
            Assert.That(report, Does.Contain("hello"));
            Assert.That(report, Does.Contain("from the parent"));
        }
        AsyncTest.AssertFdCount(before, "the child's end is closed in the parent");
    }

    [Test]
    public void The_childs_end_is_connected_to_this_process()
    {
        ProcessStartInfo psi = PeerStartInfo("creds");
        using Process child = FdChildProcess.Start(psi, out Socket socket);
        using (socket)
        {
            socket.ReceiveTimeout = 30_000;
            string report = TestData.ReadToEnd(socket);
            Assert.That(child.WaitForExit(30_000), Is.True);
            Assert.That(child.ExitCode, Is.EqualTo(0), "the peer failed: see its stderr in the test log");
            string[] parts = report.Split(' ');
            Assert.That(parts[1], Is.EqualTo(Environment.ProcessId.ToString()), "the child's peer is this process");
        }
    }

    [Test]
    public void FdChildProcess_argument_errors_leave_nothing_open()
    {
        WarmUpProcessStart();
        int before = AsyncTest.SettledFdCount();
        Assert.Throws<ArgumentNullException>(() => FdChildProcess.Start(null!, out _));
        Assert.Throws<ArgumentException>(() => FdChildProcess.Start(new ProcessStartInfo("true") { UseShellExecute = true }, out _));
        Assert.Throws<System.ComponentModel.Win32Exception>(() =>
            FdChildProcess.Start(new ProcessStartInfo(Path.Combine(Dir.Path, "no-such-program")), out _));
        AsyncTest.AssertFdCount(before, "both ends closed when the start fails");
        Assert.That(FdChildProcess.HasParentSocket, Is.False);
        Assert.Throws<InvalidOperationException>(() => FdChildProcess.OpenParentSocket());
    }
}
