// SPDX-License-Identifier: MIT
using FdSend.Tests.Async;

namespace FdSend.Tests.Untrusted;

/// <summary>FileBroker / FileBrokerClient: "..", absolute paths, symbolic links (inside and
/// out), FIFOs, devices and directories refused with their own error; allowed files arrive
/// read-only and cannot be written; nothing leaks. Every wait is bounded by the test's
/// token (CancelAfter), and a broker that stops serving fails the test instead of leaving the
/// client waiting for a reply.</summary>
[TestFixture]
[NonParallelizable]
[CancelAfter(20_000)]
public class FileBrokerTests : TempDirFixture
{
    private string MakeRoot()
    {
        string root = Path.Combine(Dir.Path, "root");
        Directory.CreateDirectory(Path.Combine(root, "sub"));
        Directory.CreateDirectory(Path.Combine(root, "public"));
        File.WriteAllText(Path.Combine(root, "ok.txt"), "allowed");
        File.WriteAllText(Path.Combine(root, "public", "doc.txt"), "public doc");
        File.WriteAllText(Path.Combine(Dir.Path, "secret"), "secret");
        File.CreateSymbolicLink(Path.Combine(root, "in_link"), "ok.txt");
        File.CreateSymbolicLink(Path.Combine(root, "out_link"), "../secret");
        Directory.CreateSymbolicLink(Path.Combine(root, "sub_link"), "sub");
        File.WriteAllText(Path.Combine(root, "sub", "inner.txt"), "inner");
        MakeFifo(Path.Combine(root, "fifo"));
        return root;
    }

    private static CancellationToken Token => TestContext.CurrentContext.CancellationToken;

    /// <summary>mkfifo(1), bounded: .NET has no mkfifo and neither has libfdsend (a broker has
    /// no use for one), so the tool is run, and killed if it does not finish in 10 s.</summary>
    private static void MakeFifo(string path)
    {
        var start = new System.Diagnostics.ProcessStartInfo("mkfifo") { ArgumentList = { path }, RedirectStandardError = true };
        using var mkfifo = System.Diagnostics.Process.Start(start)!;
        Task<string> stderr = mkfifo.StandardError.ReadToEndAsync();
        if (!mkfifo.WaitForExit(10_000))
        {
            mkfifo.Kill();
            Assert.Fail($"mkfifo {path} did not finish within 10 s");
        }
        Assert.That(mkfifo.ExitCode, Is.EqualTo(0), $"mkfifo {path}: {stderr.Result}");
    }

    [TestCase("../secret", FileBrokerError.Escape)]
    [TestCase("sub/../ok.txt", FileBrokerError.Escape)]
    [TestCase("/etc/hostname", FileBrokerError.Escape)]
    [TestCase("in_link", FileBrokerError.Escape)]
    [TestCase("out_link", FileBrokerError.Escape)]
    [TestCase("sub_link/inner.txt", FileBrokerError.Escape)]
    [TestCase("fifo", FileBrokerError.NotRegularFile)]
    [TestCase("sub", FileBrokerError.NotRegularFile)]
    [TestCase("missing", FileBrokerError.NotFound)]
    [TestCase("", FileBrokerError.InvalidPath)]
    public async Task Refused(string path, FileBrokerError error)
    {
        string root = MakeRoot();
        await WithBroker(root, null, async client =>
        {
            var e = Assert.ThrowsAsync<FileBrokerException>(async () => await client.OpenAsync(path, Token))!;
            Assert.That(e.Error, Is.EqualTo(error), e.Message);
            Assert.That(e.Path, Is.EqualTo(path));
        });
    }

    [Test]
    public async Task Allowed_files_arrive_read_only_and_cannot_be_written()
    {
        string root = MakeRoot();
        await WithBroker(root, null, async client =>
        {
            foreach ((string path, string content) in new[] { ("ok.txt", "allowed"), ("./sub//inner.txt", "inner") })
            {
                using var handle = await client.OpenAsync(path, Token);
                FdInfo info = FdPassing.Describe(handle);
                Assert.That(info.Kind, Is.EqualTo(FdKind.File));
                Assert.That(info.Access, Is.EqualTo(FdAccess.Read));
                Assert.That(TestData.ReadAll(handle), Is.EqualTo(content));
                Assert.Throws<UnauthorizedAccessException>(() => RandomAccess.Write(handle, "x"u8, 0));
            }
        });
    }

    [Test]
    public async Task Devices_are_refused()
    {
        await WithBroker("/dev", null, async client =>
        {
            var e = Assert.ThrowsAsync<FileBrokerException>(async () => await client.OpenAsync("null", Token))!;
            Assert.That(e.Error, Is.EqualTo(FileBrokerError.NotRegularFile));
        });
    }

    [Test]
    public async Task Only_allowed_subdirectories_are_served()
    {
        string root = MakeRoot();
        await WithBroker(root, ["public"], async client =>
        {
            using (var h = await client.OpenAsync("public/doc.txt", Token))
                Assert.That(TestData.ReadAll(h), Is.EqualTo("public doc"));
            var e = Assert.ThrowsAsync<FileBrokerException>(async () => await client.OpenAsync("ok.txt", Token))!;
            Assert.That(e.Error, Is.EqualTo(FileBrokerError.NotAllowed));
        });
    }

    /// <summary>The C broker (fdsend_broker_serve_one) and this one speak the same protocol,
    /// checked through the replies to hand-made requests: requests are judged by libfdsend
    /// (fdsend_broker_check_request): a path is bytes, served as the C broker serves them (a
    /// non-UTF-8 name is looked up, not refused); a payload over 4096 bytes is InvalidPath
    /// before its descriptors are looked at; descriptors make any other request NotAllowed,
    /// and the broker closes them.</summary>
    [TestCase(new byte[] { 0xFF, (byte)'.', (byte)'t', (byte)'x', (byte)'t' }, 0, -15)] // FDSEND_ENOENT
    [TestCase(new byte[] { (byte)'o', (byte)'k', (byte)'.', (byte)'t', (byte)'x', (byte)'t', 0 }, 0, -2)] // FDSEND_EINVAL
    [TestCase(null, 0, -2)]  // 4097 bytes: FDSEND_EINVAL
    [TestCase(null, 1, -2)]  // 4097 bytes and a descriptor: still FDSEND_EINVAL (length first)
    [TestCase(new byte[] { (byte)'o', (byte)'k', (byte)'.', (byte)'t', (byte)'x', (byte)'t' }, 1, -26)] // FDSEND_EPOLICY
    [TestCase(new byte[] { (byte)'o', (byte)'k', (byte)'.', (byte)'t', (byte)'x', (byte)'t' }, 2, -26)]
    public async Task Requests_are_judged_as_the_C_broker_judges_them(byte[]? request, int fdCount, int expected)
    {
        string root = MakeRoot();
        request ??= Enumerable.Repeat((byte)'a', 4097).ToArray();
        using var broker = new FileBroker(root);
        (Socket w, Socket s) = UnixSocketPair.Create(SocketType.Seqpacket);
        using (s)
        {
            int baseline = AsyncTest.SettledFdCount();
            Task<int> serving = broker.ServeAsync(s, Token);
            await using (var worker = new FdChannel(w))
            {
                var extras = Enumerable.Range(0, fdCount)
                    .Select(_ => new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read)).ToArray();
                await worker.SendAsync(request, extras.Select(f => (Descriptor)f).ToArray(), Token);
                foreach (FileStream f in extras)
                    f.Dispose();
                using FdMessage reply = await worker.ReceiveAsync(Token).AsTask().Within();
                Assert.That(BitConverter.ToInt32(reply.Payload.Span), Is.EqualTo(expected));
                Assert.That(reply.FdCount, Is.EqualTo(0));
            }
            Assert.That(await serving.Within(), Is.EqualTo(1));
            AsyncTest.AssertFdCount(baseline - 1, "the worker's socket closed, the request's descriptors closed by the broker");
        }
    }

    private static byte[] Status(int status) => BitConverter.GetBytes(status); // little-endian here

    /// <summary>A hostile broker answers one request with <paramref name="payload"/> and
    /// <paramref name="fds"/>: the client's reply checks are libfdsend's
    /// (fdsend_broker_reply_decode, as fdsend_broker_open applies them), it throws
    /// <typeparamref name="T"/>, and every descriptor of the reply is closed.</summary>
    private static async Task<T> RefusedReply<T>(byte[] payload, params Descriptor[] fds) where T : Exception
    {
        (Socket w, Socket s) = UnixSocketPair.Create(SocketType.Stream);
        await using var broker = new FdChannel(s);
        await using var client = new FileBrokerClient(w);
        int baseline = AsyncTest.SettledFdCount();
        Task answering = Task.Run(async () =>
        {
            using FdMessage request = await broker.ReceiveAsync(Token);
            await broker.SendAsync(payload, fds, Token);
        });
        var e = Assert.ThrowsAsync<T>(async () => await client.OpenAsync("ok.txt", Token))!;
        await answering.Within();
        AsyncTest.AssertFdCount(baseline, "every descriptor of the refused reply closed in the client");
        return e;
    }

    [Test]
    public async Task Hostile_reply_with_a_writable_file_is_refused()
    {
        using var rw = new FileStream(Dir.NewFile("rw"), FileMode.Open, FileAccess.ReadWrite);
        using var wo = new FileStream(Dir.NewFile("wo"), FileMode.Open, FileAccess.Write);
        foreach (FileStream f in new[] { rw, wo })
        {
            var e = await RefusedReply<FdPolicyViolationException>(Status(0), f);
            Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Access), e.Message);
        }
    }

    [Test]
    public async Task Hostile_reply_with_a_directory_or_a_socket_is_refused()
    {
        using var dir = Posix.OpenDirectory(Dir.Path);
        (Socket a, Socket b) = UnixSocketPair.Create(SocketType.Stream);
        using (a)
        using (b)
        {
            var e = await RefusedReply<FdPolicyViolationException>(Status(0), dir);
            Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Kind), e.Message);
            Assert.That(e.Fd!.Value.Kind, Is.EqualTo(FdKind.Directory));
            e = await RefusedReply<FdPolicyViolationException>(Status(0), a);
            Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Kind), e.Message);
        }
    }

    [Test]
    public async Task Hostile_reply_whose_descriptor_count_does_not_match_its_status_is_refused()
    {
        using var f1 = new FileStream(Dir.NewFile("a"), FileMode.Open, FileAccess.Read);
        using var f2 = new FileStream(Dir.NewFile("b"), FileMode.Open, FileAccess.Read);
        var e = await RefusedReply<FdPolicyViolationException>(Status(0));
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.TooFewFds), e.Message);
        e = await RefusedReply<FdPolicyViolationException>(Status(0), f1, f2);
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.TooManyFds), e.Message);
        e = await RefusedReply<FdPolicyViolationException>(Status(-15), f1); // FDSEND_ENOENT with a file
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.TooManyFds), e.Message);
    }

    [TestCase(3)]
    [TestCase(5)]
    [TestCase(100)] // over the client's message limit: refused by the channel first
    public async Task Hostile_reply_of_the_wrong_size_is_refused(int size)
    {
        using var f = new FileStream(Dir.NewFile("a"), FileMode.Open, FileAccess.Read);
        var e = await RefusedReply<FdChannelProtocolException>(new byte[size], f);
        Assert.That(e.Message, Does.Contain($"{size} bytes"));
    }

    [TestCase(1)]
    [TestCase(int.MaxValue)]
    [TestCase(-21)]  // FDSEND_EPROTO: the client's own verdict, never a broker's
    [TestCase(-1)]   // FDSEND_EAGAIN, FDSEND_EOF, FDSEND_ETIMEDOUT: failures of the client's own
    [TestCase(-23)]  // connection, which no refusal may imitate
    [TestCase(-24)]
    [TestCase(-200)]
    [TestCase(int.MinValue)]
    public async Task Hostile_reply_with_a_status_out_of_range_is_refused(int status)
    {
        var e = await RefusedReply<FdChannelProtocolException>(Status(status));
        Assert.That(e.Message, Does.Contain(status.ToString(System.Globalization.CultureInfo.InvariantCulture)));
    }

    /// <summary>Runs <paramref name="body"/> against a broker serving over a stream socket
    /// pair; the broker must end (the client closed its end) once the body is done. If the
    /// broker stops early (a fault), its exception fails the test at once: the client would
    /// otherwise wait for a reply that never comes.</summary>
    private static async Task WithBroker(string root, string[]? allowed, Func<FileBrokerClient, Task> body)
    {
        using var broker = new FileBroker(root, allowed);
        (Socket w, Socket s) = UnixSocketPair.Create(SocketType.Stream);
        using (s)
        {
            Task<int> serving = broker.ServeAsync(s, Token);
            await using (var client = new FileBrokerClient(w))
            {
                Task work = body(client);
                if (await Task.WhenAny(work, serving) == serving && !work.IsCompleted)
                {
                    await serving; // throws the broker's fault
                    Assert.Fail($"the broker stopped serving after {serving.Result} requests while the client was still asking");
                }
                await work;
            }
            await serving.WaitAsync(Token);
        }
    }
}
