// SPDX-License-Identifier: MIT
// .NET has no socketpair(): connected Unix socket pairs are made here from a listener (stream,
// seqpacket) or two bound datagram sockets connected to each other, under a short temp dir
// (sun_path holds 107 bytes).
using System.Net.Sockets;
using System.Text;

namespace FdSend.Tests.Support;

/// <summary>A private temporary directory, deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = Directory.CreateTempSubdirectory("fdsend-").FullName;
    }

    public string Path { get; }

    private int _n;

    /// <summary>A fresh path inside the directory (nothing created).</summary>
    public string NewPath(string prefix = "s") => System.IO.Path.Combine(Path, $"{prefix}{Interlocked.Increment(ref _n)}");

    /// <summary>A new file with the given content (unique inode per call).</summary>
    public string NewFile(string content)
    {
        string p = NewPath("f");
        File.WriteAllText(p, content);
        return p;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>The base of the fixtures whose tests make sockets and files: a fresh
/// <see cref="TempDir"/> per test, deleted after it.</summary>
public abstract class TempDirFixture
{
    protected TempDir Dir { get; private set; } = null!;

    [SetUp]
    public void CreateTempDir() => Dir = new TempDir();

    [TearDown]
    public void DeleteTempDir() => Dir.Dispose();
}

/// <summary>Two connected Unix sockets of one type.</summary>
public sealed class SocketPair : IDisposable
{
    public SocketPair(Socket a, Socket b)
    {
        A = a;
        B = b;
    }

    public Socket A { get; }
    public Socket B { get; }

    public void Dispose()
    {
        A.Dispose();
        B.Dispose();
    }

    public static SocketPair Create(TempDir dir, SocketType type)
    {
        if (type == SocketType.Dgram)
        {
            string pa = dir.NewPath("da"), pb = dir.NewPath("db");
            var a = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            var b = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            a.Bind(new UnixDomainSocketEndPoint(pa));
            b.Bind(new UnixDomainSocketEndPoint(pb));
            a.Connect(new UnixDomainSocketEndPoint(pb));
            b.Connect(new UnixDomainSocketEndPoint(pa));
            return new SocketPair(a, b);
        }

        string path = dir.NewPath("l");
        using var listener = new Socket(AddressFamily.Unix, type, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, type, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        Socket server = listener.Accept();
        return new SocketPair(client, server);
    }

    /// <summary>Sends <paramref name="text"/> with <paramref name="file"/> from A and asserts
    /// that B receives exactly that message and that descriptor: after a call that failed,
    /// timed out or would have blocked, the check that it consumed nothing and left the
    /// socket in step.</summary>
    public void AssertNextMessageArrivesWhole(string text, FileStream file)
    {
        A.SendFds(TestData.Utf8(text), file);
        var buffer = new byte[text.Length + 8];
        using ReceivedFds r = B.ReceiveFds(buffer);
        Assert.That(TestData.Text(buffer.AsSpan(0, r.BytesReceived)), Is.EqualTo(text));
        Assert.That(r.Count, Is.EqualTo(1));
        Assert.That(Posix.GetFileId(r.PeekFd(0)), Is.EqualTo(Posix.GetFileId(file.SafeFileHandle)));
    }

    /// <summary>A connected TCP pair on the loopback (A the client, B the accepted socket):
    /// the non-Unix socket of the tests that check what FdSend does there.</summary>
    public static SocketPair CreateTcp()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        return new SocketPair(client, listener.Accept());
    }

    /// <summary>One async round trip from <paramref name="sender"/> to
    /// <paramref name="receiver"/>, after which .NET has made the receiver's fd O_NONBLOCK
    /// while <see cref="Socket.Blocking"/> still reads true (asserted: the premise of the
    /// tests that use it).</summary>
    public static async Task MakeNonBlockingBehindTheScenes(Socket sender, Socket receiver)
    {
        await sender.SendAsync(TestData.Utf8("!"));
        Assert.That(await receiver.ReceiveAsync(new byte[1]), Is.EqualTo(1));
        Assert.That(receiver.Blocking, Is.True);
        Assert.That(Posix.IsNonBlocking((int)receiver.SafeHandle.DangerousGetHandle()), Is.True,
            "the premise: .NET made the fd O_NONBLOCK");
    }
}

public static class TestData
{
    public static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    public static string Text(ReadOnlySpan<byte> bytes) => Encoding.UTF8.GetString(bytes);

    /// <summary>Reads the whole file behind a received descriptor from offset 0 (pread: the
    /// shared offset does not move).</summary>
    public static string ReadAll(Microsoft.Win32.SafeHandles.SafeFileHandle handle)
    {
        var buffer = new byte[4096];
        int n = RandomAccess.Read(handle, buffer, 0);
        return Encoding.UTF8.GetString(buffer, 0, n);
    }

    /// <summary>Reads from a stream socket until the peer closes it.</summary>
    public static string ReadToEnd(Socket socket)
    {
        var all = new MemoryStream();
        var buffer = new byte[4096];
        int n;
        while ((n = socket.Receive(buffer)) > 0)
            all.Write(buffer, 0, n);
        return Encoding.UTF8.GetString(all.ToArray());
    }
}
