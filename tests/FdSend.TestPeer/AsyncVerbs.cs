// SPDX-License-Identifier: MIT
// FdSend.TestPeer raw-echo|channel-echo|slow-reader|channel-rlimit <socket-path> [args...]
//
// The second process of the async and channel tests (tests/FdSend.Tests/Async, Channel).
// Connects Unix stream sockets to <socket-path> and serves them with FdSend's async API; exit
// code 0 when every connection ended cleanly, 1 (with the reason on stderr) otherwise.
//
// Commands:
//   raw-echo N       open N connections; on each, receive 16-byte requests with
//                    ReceiveFdsAsync (the descriptors come with the first chunk) and send each
//                    back unchanged, descriptors included, with SendFdsAsync, until end of stream
//   channel-echo N   open N connections, each an FdChannel; every message is answered
//                    concurrently (many senders on one channel): payload "re:" + payload, the
//                    same descriptors in reverse order; until end of stream
//   slow-reader      open one connection, wait for a line on stdin, then read everything with
//                    the sync ReceiveFds until end of stream and print
//                    "bytes=<n> fds=<count> ids=<dev:ino>,..." on stdout
//   channel-rlimit N open one FdChannel; receive a first message (which warms up the async
//                    machinery) and answer it with one byte 'W' (the host sends the rest only
//                    then: on Linux the channel reads ahead, and a message already queued would
//                    have its descriptors received with the first); lower the soft RLIMIT_NOFILE and fill the descriptor table
//                    so that exactly N slots are free; receive the next message, which is
//                    expected to be rejected because the kernel dropped descriptors; free the
//                    table, restore the limit, receive one more message and print
//                    "rejected=<reason> fds=<n> leaked=<n> next=<payload> nextfds=<n> fault=<type|none>"
//                    (the test host itself must not run out of descriptors: .NET reports a
//                    thread it cannot start then as OutOfMemoryException, and the host crashes)
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using FdSend;
using FdSend.Tests.Support;
using Microsoft.Win32.SafeHandles;

/// <summary>The verbs of the async and channel fixtures.</summary>
internal static class AsyncVerbs
{
    public static readonly string[] Names = ["raw-echo", "channel-echo", "slow-reader", "channel-rlimit"];

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: FdSend.TestPeer <command> <socket-path> [args...]");
            return 2;
        }
        string path = args[1];
        try
        {
            switch (args[0])
            {
                case "raw-echo":
                    await Task.WhenAll(Enumerable.Range(0, int.Parse(args[2], CultureInfo.InvariantCulture))
                                                 .Select(_ => RawEchoAsync(Connect(path))));
                    return 0;
                case "channel-echo":
                    await Task.WhenAll(Enumerable.Range(0, int.Parse(args[2], CultureInfo.InvariantCulture))
                                                 .Select(_ => ChannelEchoAsync(Connect(path))));
                    return 0;
                case "slow-reader":
                    return SlowReader(Connect(path));
                case "channel-rlimit":
                    return await ChannelAtOpenFileLimitAsync(Connect(path), int.Parse(args[2], CultureInfo.InvariantCulture));
                default:
                    Console.Error.WriteLine($"unknown command {args[0]}");
                    return 2;
            }
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"FdSend.TestPeer {args[0]} failed: {e}");
            return 1;
        }
    }

    private static Socket Connect(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    private static async Task RawEchoAsync(Socket socket)
    {
        using (socket)
        {
            var request = new byte[16];
            var fds = new List<ReceivedFds>();
            while (true)
            {
                int got = 0;
                try
                {
                    while (got < request.Length)
                    {
                        ReceivedFds r = await socket.ReceiveFdsAsync(request.AsMemory(got));
                        fds.Add(r);
                        if (r.IsEndOfStream)
                        {
                            if (got == 0)
                                return;
                            throw new IOException($"end of stream after {got} bytes of a request");
                        }
                        if (got > 0 && r.Count > 0)
                            throw new IOException("descriptors arrived after the first chunk of a request");
                        got += r.BytesReceived;
                    }
                    var back = new Descriptor[fds[0].Count];
                    for (int i = 0; i < back.Length; i++)
                        back[i] = Descriptor.FromRawFd(fds[0].PeekFd(i));
                    int sent = await socket.SendFdsAsync(request, back);
                    if (sent != request.Length)
                        throw new IOException($"SendFdsAsync returned {sent}");
                }
                finally
                {
                    foreach (ReceivedFds r in fds)
                        r.Dispose();
                    fds.Clear();
                }
            }
        }
    }

    private static async Task ChannelEchoAsync(Socket socket)
    {
        await using var channel = new FdChannel(socket);
        var replies = new List<Task>();
        await foreach (FdMessage message in channel.ReadAllAsync())
            replies.Add(ReplyAsync(channel, message));
        await Task.WhenAll(replies);

        static async Task ReplyAsync(FdChannel channel, FdMessage message)
        {
            using (message)
            {
                await Task.Yield(); // answer concurrently with the next receive and other replies
                byte[] payload = new byte[3 + message.Length];
                "re:"u8.CopyTo(payload);
                message.Payload.Span.CopyTo(payload.AsSpan(3));
                var back = new Descriptor[message.FdCount];
                for (int i = 0; i < back.Length; i++)
                    back[i] = Descriptor.FromRawFd(message.Fds.PeekFd(back.Length - 1 - i));
                await channel.SendAsync(payload, back);
            }
        }
    }

    private static int SlowReader(Socket socket)
    {
        using (socket)
        {
            Console.In.ReadLine(); // the test says when to start reading
            var buffer = new byte[65536];
            long bytes = 0;
            var ids = new List<string>();
            while (true)
            {
                using ReceivedFds r = socket.ReceiveFds(buffer);
                if (r.IsEndOfStream)
                    break;
                bytes += r.BytesReceived;
                for (int i = 0; i < r.Count; i++)
                    ids.Add(FileId(r.PeekFd(i)));
            }
            Console.Out.WriteLine($"bytes={bytes} fds={ids.Count} ids={string.Join(',', ids)}");
            return 0;
        }
    }

    private static async Task<int> ChannelAtOpenFileLimitAsync(Socket socket, int headroom)
    {
        await using var channel = new FdChannel(socket);
        using (FdMessage warm = await channel.ReceiveAsync())
        {
            if (Encoding.UTF8.GetString(warm.Payload.Span) != "warm")
                throw new IOException("the first message was not the warm-up");
        }
        socket.Send("W"u8);
        int baseline = SettledFdCount();
        string rejected = "none";
        using (FullDescriptorTable.Leave(headroom))
        {
            try
            {
                (await channel.ReceiveAsync()).Dispose();
            }
            catch (FdMessageRejectedException e)
            {
                rejected = $"{e.Reason} fds={e.FdCount}";
            }
        }
        // a runtime thread starting now holds a pipe for a moment: look again
        int leaked = Posix.RelevantFds().Count - baseline;
        for (int i = 0; i < 60 && leaked != 0; i++)
        {
            Thread.Sleep(50);
            leaked = Posix.RelevantFds().Count - baseline;
        }
        using FdMessage next = await channel.ReceiveAsync();
        Console.Out.WriteLine($"rejected={rejected} leaked={leaked} next={Encoding.UTF8.GetString(next.Payload.Span)} " +
                              $"nextfds={next.FdCount} fault={channel.Fault?.GetType().Name ?? "none"}");
        return 0;
    }

    private static string FileId(int fd) => Posix.GetFileId(fd).ToString();

    // The descriptor count once it has stayed the same for 100 ms (at most 3 s): a runtime thread
    // that starts holds a pipe pair for a few tens of milliseconds.
    private static int SettledFdCount()
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        int count = Posix.RelevantFds().Count;
        long sameSince = 0;
        while (sw.ElapsedMilliseconds - sameSince < 100 && sw.ElapsedMilliseconds < 3000)
        {
            Thread.Sleep(20);
            int now = Posix.RelevantFds().Count;
            if (now != count)
            {
                count = now;
                sameSince = sw.ElapsedMilliseconds;
            }
        }
        return count;
    }
}
