// SPDX-License-Identifier: MIT
// The FdSend .NET library against CPython's socket.send_fds/recv_fds and Perl's IO::FDPass,
// each direction, each peer in its own process over a socket path. The protocol is the one
// tests/interop/README.md describes (and c_peer.c, peer.py, peer.pl implement): message i
// has 1 + (i*7919) % 5000 payload bytes (i*31 + j*17 + 5) & 0xff; in "rights" mode
// 1 + i % 4 descriptors travel with the payload in one message, in "fdpass" mode
// 1 + i % 3 descriptors follow it, one per one-byte carrier. Every descriptor is a
// temporary file whose content names it (message, index, st_dev, st_ino).
using System.Globalization;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Reliability;

[TestFixture]
[NonParallelizable]
public class InteropTests
{
    private const int Messages = 30;

    private static int MsgFds(int i, bool fdpass) => fdpass ? 1 + i % 3 : 1 + i % 4;

    private static byte[] Payload(int i)
    {
        var b = new byte[1 + (i * 7919) % 5000];
        for (int j = 0; j < b.Length; j++)
            b[j] = (byte)((i * 31 + j * 17 + 5) & 0xff);
        return b;
    }

    private static SafeFileHandle TaggedFile(int i, int k)
    {
        string path = Path.Combine(Path.GetTempPath(), $"fdsend-interop-{Guid.NewGuid():N}");
        SafeFileHandle h = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
        File.Delete(path);
        FdIdentity id = Posix.Identify(h);
        byte[] tag = Encoding.ASCII.GetBytes(
            $"FDSEND-INTEROP msg={i} fd={k} dev={id.Device} ino={id.Inode}\n");
        RandomAccess.Write(h, tag, 0);
        return h;
    }

    private static void VerifyTagged(SafeFileHandle h, int i, int k)
    {
        Assert.That(Posix.IsCloseOnExec((int)h.DangerousGetHandle()), Is.True,
            $"message {i} fd {k}: received descriptor is not close-on-exec");
        var buf = new byte[200];
        int n = RandomAccess.Read(h, buf, 0);
        string tag = Encoding.ASCII.GetString(buf, 0, n);
        var f = tag.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Skip(1).Select(x => x.Split('=')).ToDictionary(x => x[0], x => x[1]);
        Assert.That((f["msg"], f["fd"]), Is.EqualTo((i.ToString(CultureInfo.InvariantCulture), k.ToString(CultureInfo.InvariantCulture))),
            $"message {i} fd {k}: got the file of another message (wrong descriptor): {tag}");
        FdIdentity id = Posix.Identify(h);
        Assert.That((id.Device, id.Inode),
            Is.EqualTo((ulong.Parse(f["dev"], CultureInfo.InvariantCulture), ulong.Parse(f["ino"], CultureInfo.InvariantCulture))),
            $"message {i} fd {k}: inode differs from what the sender announced");
    }

    private static Socket Listen(string path, out Socket listener)
    {
        listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        return listener;
    }

    private static Socket Connect(string path)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                s.Connect(new UnixDomainSocketEndPoint(path));
                return s;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                s.Dispose();
                Thread.Sleep(20);
            }
        }
    }

    private static void ReadExactly(Socket s, Span<byte> buf, int i)
    {
        int off = 0;
        while (off < buf.Length)
        {
            using ReceivedFds r = s.ReceiveFds(buf[off..], 8);
            Assert.That(r.Count, Is.Zero, $"message {i}: descriptors arrived with plain data");
            Assert.That(r.BytesReceived, Is.GreaterThan(0), $"message {i}: end of stream in the payload");
            off += r.BytesReceived;
        }
    }

    private static void Send(Socket s, bool fdpass)
    {
        for (int i = 0; i < Messages; i++)
        {
            byte[] payload = Payload(i);
            var files = Enumerable.Range(0, MsgFds(i, fdpass)).Select(k => TaggedFile(i, k)).ToArray();
            try
            {
                if (fdpass)
                {
                    s.Send(payload);
                    foreach (SafeFileHandle f in files)
                        Assert.That(s.SendFds(ReadOnlySpan<byte>.Empty, f), Is.Zero);
                }
                else
                {
                    Descriptor[] d = files.Select(f => (Descriptor)f).ToArray();
                    Assert.That(s.SendFds(payload, d), Is.EqualTo(payload.Length));
                }
            }
            finally
            {
                foreach (SafeFileHandle f in files)
                    f.Dispose();
            }
        }
        s.Shutdown(SocketShutdown.Send);
        Assert.That(s.Receive(new byte[1]), Is.Zero, "the receiver should close after the last message");
    }

    private static void Receive(Socket s, bool fdpass)
    {
        for (int i = 0; i < Messages; i++)
        {
            byte[] want = Payload(i);
            var got = new byte[want.Length];
            int n = MsgFds(i, fdpass);
            if (fdpass)
            {
                ReadExactly(s, got, i);
                for (int k = 0; k < n; k++)
                {
                    using ReceivedFds r = s.ReceiveFds(Span<byte>.Empty, 1);
                    Assert.That((r.BytesReceived, r.Count, r.Flags), Is.EqualTo((0, 1, ReceiveFlags.None)),
                        $"message {i} fd {k}: the IO::FDPass carrier");
                    using SafeFileHandle h = r.TakeFileHandle(0);
                    VerifyTagged(h, i, k);
                }
            }
            else
            {
                using (ReceivedFds r = s.ReceiveFds(got, 8))
                {
                    Assert.That(r.Flags, Is.EqualTo(ReceiveFlags.None), $"message {i}");
                    Assert.That(r.Count, Is.EqualTo(n), $"message {i}: descriptors");
                    for (int k = 0; k < n; k++)
                    {
                        using SafeFileHandle h = r.TakeFileHandle(k);
                        VerifyTagged(h, i, k);
                    }
                    if (r.BytesReceived < want.Length)
                        ReadExactly(s, got.AsSpan(r.BytesReceived), i);
                }
            }
            Assert.That(got, Is.EqualTo(want), $"message {i}: payload");
        }
        using ReceivedFds end = s.ReceiveFds(new byte[1], 8);
        Assert.That(end.IsEndOfStream, Is.True, "expected the end of the stream after the last message");
    }

    private static void RequirePeer(string peer)
    {
        if (!Posix.Supported)
            Assert.Ignore("SKIPPED: Linux x64/arm64 only");
        if (peer == "python" && !Repo.HasCommand("python3"))
            Assert.Ignore("SKIPPED: python3 is not installed");
        if (peer == "perl" && !Repo.PerlHasFdPass())
            Assert.Ignore("SKIPPED: Perl module IO::FDPass is not installed (Debian: libio-fdpass-perl)");
    }

    private static Repo.Child StartPeer(string peer, string role, string path) =>
        peer == "python"
            ? new Repo.Child("python3", Repo.Interop("peer.py"), role, path, Messages.ToString(CultureInfo.InvariantCulture))
            : new Repo.Child("perl", Repo.Interop("peer.pl"), role, path, Messages.ToString(CultureInfo.InvariantCulture));

    [TestCase("python")]
    [TestCase("perl")]
    public void DotNetSends(string peer)
    {
        RequirePeer(peer);
        using var dir = new Repo.TempDir();
        string path = dir.Sock("s");
        var before = Posix.Snapshot();
        using (var child = StartPeer(peer, "recv", path))
        {
            using (Socket s = Connect(path))
                Send(s, peer == "perl");
            int rc = child.Wait();
            TestContext.Out.WriteLine(child.Output);
            Assert.That(rc, Is.Zero, child.Output);
            Assert.That(child.Output, Does.Contain("PASS"));
        }
        Assert.That(Posix.NewFds(before), Is.Empty, "descriptors left open by the exchange");
    }

    [TestCase("python")]
    [TestCase("perl")]
    public void DotNetReceives(string peer)
    {
        RequirePeer(peer);
        using var dir = new Repo.TempDir();
        string path = dir.Sock("s");
        var before = Posix.Snapshot();
        using (Listen(path, out Socket listener))
        using (var child = StartPeer(peer, "send", path))
        {
            using (Socket s = listener.Accept())
                Receive(s, peer == "perl");
            int rc = child.Wait();
            TestContext.Out.WriteLine(child.Output);
            Assert.That(rc, Is.Zero, child.Output);
            Assert.That(child.Output, Does.Contain("PASS"));
        }
        Assert.That(Posix.NewFds(before), Is.Empty, "descriptors left open by the exchange");
    }
}
