// SPDX-License-Identifier: MIT
using System.Text;

namespace FdSend.Tests;

/// <summary>The README's C# quick start, compiled and run: the python fdsend and Perl
/// IO::FDPass examples translated to FdSend (over an in-process pair; ChildProcessTests does
/// the same across processes).</summary>
[TestFixture]
public class ReadmeExamplesTests : TempDirFixture
{
    [Test]
    public void Python_fdsend_sendfds_recvfds()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        Socket a = pair.A, b = pair.B;
        string hostsPath = Dir.NewFile("127.0.0.1 localhost\n");
        string passwdPath = Dir.NewFile("root:x:0:0:root:/root:/bin/bash\n");

        // --- README: python fdsend ---
        // fdsend.sendfds(a, "here you go!", fds=[f1, f2])
        using (FileStream f1 = File.OpenRead(hostsPath))
        using (FileStream f2 = File.OpenRead(passwdPath))
            a.SendFds("here you go!"u8, f1, f2);       // we still own f1 and f2

        // msg, fds = fdsend.recvfds(b, 1024, numfds=2)
        var buffer = new byte[1024];
        using ReceivedFds received = b.ReceiveFds(buffer, maxFds: 2);
        string msg = Encoding.UTF8.GetString(buffer, 0, received.BytesReceived);
        using FileStream hosts = received.TakeFileStream(0, FileAccess.Read);
        using var reader = new StreamReader(hosts);
        // received.Dispose() closes fd 1, which we did not take
        // --- end ---

        Assert.That(msg, Is.EqualTo("here you go!"));
        Assert.That(reader.ReadLine(), Is.EqualTo("127.0.0.1 localhost"));
        Assert.That(received.Count, Is.EqualTo(2));
    }

    [Test]
    public void Python_fdsend_error_on_a_non_socket()
    {
        using FileStream notASocket = File.OpenRead(Dir.NewFile("x"));
        using var socket = new Socket(new SafeSocketHandle(notASocket.SafeFileHandle.DangerousGetHandle(), ownsHandle: false));
        // --- README: errors ---
        try
        {
            socket.SendFds("hello"u8, notASocket);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.NotSocket)
        {
            Console.WriteLine($"not a socket: {e.Message}");
            // --- end ---
            return;
        }
        Assert.Fail("expected SocketError.NotSocket");
    }

    [Test]
    public void Perl_IO_FDPass_send_recv()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        Socket socket = pair.A, peer = pair.B;
        string path = Dir.NewFile("passed by IO::FDPass rules\n");
        using FileStream fh = File.OpenRead(path);

        // --- README: IO::FDPass ---
        // IO::FDPass::send fileno $socket, fileno $fh or die;
        socket.SendFds(ReadOnlySpan<byte>.Empty, fh);   // one zero byte carries the fd

        // my $fd = IO::FDPass::recv fileno $peer; $fd >= 0 or die;
        using ReceivedFds r = peer.ReceiveFds(Span<byte>.Empty);   // consumes exactly that byte
        int fd = r.TakeRawFd(0);                                   // yours now: close it
        // --- end ---

        using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        Assert.That(TestData.ReadAll(handle), Is.EqualTo("passed by IO::FDPass rules\n"));
        Assert.That(r.Flags, Is.EqualTo(ReceiveFlags.None));
    }

    [Test]
    public void Zero_allocation_loop_and_peer_credentials()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Seqpacket);
        Socket socket = pair.A, peer = pair.B;
        using FileStream file = File.OpenRead(Dir.NewFile("x"));

        // --- README: zero allocation ---
        Span<byte> buffer = stackalloc byte[256];
        Span<int> fds = stackalloc int[4];
        socket.SendFds("ping"u8, file.SafeFileHandle);
        int n = peer.ReceiveFds(buffer, fds, out int count, out ReceiveFlags flags);
        // fds[0 .. count) are raw descriptors that we own: wrap or close them
        using var first = new Microsoft.Win32.SafeHandles.SafeFileHandle(fds[0], ownsHandle: true);

        PeerCredentials who = peer.GetPeerCredentials();   // Pid, Uid, Gid of the other end
        // --- end ---

        Assert.That(n, Is.EqualTo(4));
        Assert.That(count, Is.EqualTo(1));
        Assert.That(flags, Is.EqualTo(ReceiveFlags.None));
        Assert.That(who.Pid, Is.EqualTo(Environment.ProcessId));
    }
}
