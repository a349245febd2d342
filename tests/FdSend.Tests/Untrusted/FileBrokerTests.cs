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

    /// <summary>The C broker (fdsend_broker_serve_one) and this client speak the same
    /// protocol: checked through the reply a .NET broker gives a hand-made request.</summary>
    [Test]
    public async Task Request_with_descriptors_is_refused_and_closed()
    {
        string root = MakeRoot();
        using var broker = new FileBroker(root);
        (Socket w, Socket s) = UnixSocketPair.Create(SocketType.Seqpacket);
        using (s)
        {
            int baseline = AsyncTest.SettledFdCount();
            Task<int> serving = broker.ServeAsync(s, Token);
            await using (var worker = new FdChannel(w))
            {
                using var extra = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
                await worker.SendAsync("ok.txt"u8.ToArray(), new Descriptor[] { extra }, Token);
                using FdMessage reply = await worker.ReceiveAsync(Token).AsTask().Within();
                Assert.That(BitConverter.ToInt32(reply.Payload.Span), Is.EqualTo(-26)); // FDSEND_EPOLICY
                Assert.That(reply.FdCount, Is.EqualTo(0));
            }
            Assert.That(await serving.Within(), Is.EqualTo(1));
            AsyncTest.AssertFdCount(baseline - 1, "the worker's socket closed, the request's descriptor closed by the broker");
        }
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
