// SPDX-License-Identifier: MIT
// FdChannel against other processes: a C program that speaks the channel only through
// libfdsend's fdsend_msg_send / fdsend_msg_recv (tests/native-msg/channel_peer.c, built by
// CMake), both directions over a socket path; and a .NET peer answering thousands of
// concurrent requests on a few channels.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using FdSend.Tests.Async;

namespace FdSend.Tests.Channel;

[TestFixture]
[CancelAfter(60_000)]
public class ChannelInteropTests : TempDirFixture
{
    /// <summary>The C peer in the CMake build tree of this checkout
    /// (build/native-&lt;rid&gt;/tests/native-msg/channel_peer), or FDSEND_CHANNEL_PEER.</summary>
    private static string CPeer()
    {
        string? fromEnv = Environment.GetEnvironmentVariable("FDSEND_CHANNEL_PEER");
        if (!string.IsNullOrEmpty(fromEnv))
            return fromEnv;
        DirectoryInfo? root = new(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "native", "include", "fdsend.h")))
            root = root.Parent;
        if (root is null)
        {
            TestContext.Progress.WriteLine("SKIPPED: the C channel peer needs the FdSend source tree (or FDSEND_CHANNEL_PEER)");
            Assert.Ignore("SKIPPED: not running inside the FdSend source tree, so there is no CMake build of tests/native-msg/channel_peer (set FDSEND_CHANNEL_PEER)");
        }
        string peer = Path.Combine(root!.FullName, "build", $"native-{RuntimeInformation.RuntimeIdentifier}", "tests", "native-msg", "channel_peer");
        Assert.That(File.Exists(peer), Is.True,
            $"{peer} is missing: build the native tree first (./build.sh, or 'source eng/common.sh; native_build')");
        return peer;
    }

    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public async Task A_C_peer_using_fdsend_msg_and_a_dotnet_FdChannel_understand_each_other(SocketType type)
    {
        string peerPath = CPeer();
        string path = Dir.NewPath("c");
        using var listener = new Socket(AddressFamily.Unix, type, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var psi = new ProcessStartInfo(peerPath) { UseShellExecute = false, RedirectStandardError = true };
        psi.ArgumentList.Add(path);
        psi.ArgumentList.Add(type == SocketType.Stream ? "stream" : "seqpacket");
        using Process process = Process.Start(psi)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        try
        {
            Assert.That(listener.Poll(TimeSpan.FromSeconds(20), SelectMode.SelectRead), Is.True, "the C peer connects");
            int baseline = AsyncTest.SettledFdCount();
            await using (var channel = new FdChannel(listener.Accept()))
            {
                // C -> .NET: the greeting, with a descriptor .NET never had.
                using (FdMessage hello = await channel.ReceiveAsync().Within())
                {
                    Assert.That(TestData.Text(hello.Payload.Span), Is.EqualTo("hello from C"));
                    Assert.That(hello.FdCount, Is.EqualTo(1));
                    using var file = hello.Fds.TakeFileHandle(0);
                    Assert.That(TestData.ReadAll(file), Is.EqualTo("written by C"));
                }
                int cFdsBefore = await CountPeerFds(channel);

                string[] paths = Enumerable.Range(0, 5).Select(i => Dir.NewFile($"dotnet {i}")).ToArray();
                var files = paths.Select(p => File.OpenHandle(p)).ToArray();
                try
                {
                    int[] sizes = type == SocketType.Stream
                        ? new[] { 0, 1, 8, 100, 70_000, 1_000_000 }
                        : new[] { 0, 1, 8, 100, 70_000 };
                    foreach (int size in sizes)
                    {
                        for (int nfds = 0; nfds <= files.Length; nfds += 2)
                        {
                            // .NET -> C
                            byte[] payload = AsyncTest.Pattern(size, size + nfds);
                            await channel.SendAsync(payload, files.Take(nfds).Select(h => (Descriptor)h).ToArray()).Within();
                            // C -> .NET: reversed payload, descriptors in reverse order.
                            using FdMessage echo = await channel.ReceiveAsync().Within();
                            Assert.That(echo.Payload.Span.SequenceEqual(payload.Reverse().ToArray()), Is.True,
                                $"payload of {size} bytes reversed by C");
                            Assert.That(echo.FdCount, Is.EqualTo(nfds));
                            for (int k = 0; k < nfds; k++)
                                Assert.That(Posix.GetFileId(echo.Fds.PeekFd(k)), Is.EqualTo(Posix.GetFileId(paths[nfds - 1 - k])),
                                    "C received the right files and sent them back");
                        }
                    }
                    // 253 descriptors, the most one message carries.
                    var many = Enumerable.Range(0, FdPassing.MaxFds).Select(i => (Descriptor)files[i % files.Length]).ToArray();
                    await channel.SendAsync(TestData.Utf8("max"), many).Within();
                    using (FdMessage echo = await channel.ReceiveAsync().Within())
                    {
                        Assert.That(TestData.Text(echo.Payload.Span), Is.EqualTo("xam"));
                        Assert.That(echo.FdCount, Is.EqualTo(FdPassing.MaxFds));
                    }
                }
                finally
                {
                    foreach (var f in files)
                        f.Dispose();
                }
                Assert.That(await CountPeerFds(channel), Is.EqualTo(cFdsBefore), "the C peer closed every descriptor it received");
            } // disposing the channel closes the socket: the C peer sees FDSEND_EOF and exits 0
            Assert.That(process.WaitForExit(20_000), Is.True, "the C peer exits at the end of the channel");
            Assert.That(process.ExitCode, Is.EqualTo(0), $"C peer: {await stderr}");
            AsyncTest.AssertFdCount(baseline - 0, "every descriptor .NET received was closed");
        }
        finally
        {
            if (!process.HasExited)
                process.Kill();
        }
    }

    private static async Task<int> CountPeerFds(FdChannel channel)
    {
        await channel.SendAsync(TestData.Utf8("count-fds")).Within();
        using FdMessage answer = await channel.ReceiveAsync().Within();
        return int.Parse(Encoding.ASCII.GetString(answer.Payload.Span));
    }

    [Test]
    public async Task Thousands_of_concurrent_requests_over_channels_to_another_process()
    {
        const int connections = 4, perConnection = 1000; // 4,000 requests, all in flight at once
        string[] paths = Enumerable.Range(0, 3).Select(i => Dir.NewFile($"file {i}")).ToArray();
        var files = paths.Select(p => File.OpenHandle(p)).ToArray();
        FileId[] ids = paths.Select(Posix.GetFileId).ToArray();
        int baseline = AsyncTest.SettledFdCount();
        try
        {
            using (var peer = AsyncPeerProcess.Start(Dir, "channel-echo", connections, connections.ToString()))
            {
                var channels = peer.Connections.Select(s => new FdChannel(s, new FdChannelOptions { LeaveOpen = true })).ToArray();
                await Task.WhenAll(channels.Select(async channel =>
                {
                    // One reader per channel routes the out-of-order replies to their requests.
                    var waiting = new System.Collections.Concurrent.ConcurrentDictionary<int, TaskCompletionSource<FdMessage>>();
                    Task reader = Task.Run(async () =>
                    {
                        for (int n = 0; n < perConnection; n++)
                        {
                            FdMessage reply = await channel.ReceiveAsync();
                            int id = BitConverter.ToInt32(reply.Payload.Span.Slice(3));
                            Assert.That(waiting.TryRemove(id, out var tcs), Is.True, $"a reply to request {id}, which is waiting");
                            tcs!.SetResult(reply);
                        }
                    });
                    await Task.WhenAll(Enumerable.Range(0, perConnection).Select(async i =>
                    {
                        var tcs = new TaskCompletionSource<FdMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
                        waiting[i] = tcs;
                        byte[] request = new byte[4 + i % 200];
                        BitConverter.TryWriteBytes(request, i);
                        Descriptor[] fds = Enumerable.Range(0, i % 4).Select(k => (Descriptor)files[(i + k) % files.Length]).ToArray();
                        await channel.SendAsync(request, fds);
                        using FdMessage reply = await tcs.Task;
                        Assert.That(TestData.Text(reply.Payload.Span.Slice(0, 3)), Is.EqualTo("re:"));
                        Assert.That(reply.Payload.Span.Slice(3).SequenceEqual(request), Is.True);
                        Assert.That(reply.FdCount, Is.EqualTo(fds.Length));
                        for (int k = 0; k < reply.FdCount; k++)
                            Assert.That(Posix.GetFileId(reply.Fds.PeekFd(k)), Is.EqualTo(ids[(i + fds.Length - 1 - k) % files.Length]));
                    }));
                    await reader;
                    await channel.DisposeAsync();
                })).Within(50_000);
                foreach (Socket s in peer.Connections)
                    s.Shutdown(SocketShutdown.Send);
                peer.WaitForSuccess();
            }
            AsyncTest.AssertFdCount(baseline);
        }
        finally
        {
            foreach (var f in files)
                f.Dispose();
        }
    }
}
