// SPDX-License-Identifier: MIT
// The README's "Async and the message channel" examples, compiled and run (the code between
// the "--- README" markers is what the README shows).
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Tests.Async;

[TestFixture]
[CancelAfter(20_000)]
public class ReadmeAsyncExamplesTests : TempDirFixture
{
    [Test]
    public async Task Async_send_and_receive()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        Socket socket = pair.A, peer = pair.B;
        string logPath = Dir.NewFile("");
        CancellationToken cancellationToken = CancellationToken.None;
        Task<string> receiving = Task.Run(async () =>
        {
            // --- README: async receive ---
            var buffer = new byte[64];
            using ReceivedFds received = await peer.ReceiveFdsAsync(buffer, maxFds: 4, cancellationToken);
            if (received.IsEndOfStream)
                return "";
            using FileStream log = received.TakeFileStream(0, FileAccess.Write);
            log.Write(Encoding.UTF8.GetBytes($"hello from {Environment.ProcessId}\n"));
            // disposing `received` closes any other descriptor that came with the message
            // --- end ---
            return Encoding.UTF8.GetString(buffer, 0, received.BytesReceived);
        });

        // --- README: async send ---
        using (FileStream log = File.Open(logPath, FileMode.Append, FileAccess.Write))
            await socket.SendFdsAsync("log"u8.ToArray(), log, cancellationToken);   // we still own `log`
        // --- end ---

        Assert.That(await receiving.Within(), Is.EqualTo("log"));
        Assert.That(File.ReadAllText(logPath), Is.EqualTo($"hello from {Environment.ProcessId}\n"));
    }

    [Test]
    public async Task Channel_send_and_read_all()
    {
        var pair = SocketPair.Create(Dir, SocketType.Stream);
        Socket connectedSocket = pair.A;
        using SafeFileHandle file1 = File.OpenHandle(Dir.NewFile("one"));
        using SafeFileHandle file2 = File.OpenHandle(Dir.NewFile("two"));
        var seen = new List<string>();
        CancellationToken cancellationToken = CancellationToken.None;

        Task reading = Task.Run(async () =>
        {
            await using var channel = new FdChannel(pair.B);
            // --- README: channel receive ---
            await foreach (FdMessage message in channel.ReadAllAsync(cancellationToken))
            {
                using (message)                       // owns the payload buffer and the descriptors
                {
                    string text = Encoding.UTF8.GetString(message.Payload.Span);
                    if (message.FdCount > 0)
                    {
                        using SafeFileHandle first = message.Fds.TakeFileHandle(0);
                        text += ": " + TestData.ReadAll(first);
                    }
                    seen.Add(text);
                }
            }
            // ReadAllAsync ends when the peer closes the connection between two messages
            // --- end ---
        });

        // --- README: channel send ---
        await using (var channel = new FdChannel(connectedSocket,
                         new FdChannelOptions { MaxMessageSize = 1 << 20, MaxFdsPerMessage = 16 }))
        {
            await channel.SendAsync("two files"u8.ToArray(), new Descriptor[] { file1, file2 });
            await channel.SendAsync("no files"u8.ToArray());   // messages never interleave, even
                                                               // with many concurrent senders
        }   // disposing closes the socket: the reader's ReadAllAsync ends
        // --- end ---

        await reading.Within();
        Assert.That(seen, Is.EqualTo(new[] { "two files: one", "no files" }));
        pair.B.Dispose();
    }

    [Test]
    public async Task Channel_errors()
    {
        var pair = SocketPair.Create(Dir, SocketType.Stream);
        await using var sender = new FdChannel(pair.A);
        await using var channel = new FdChannel(pair.B, new FdChannelOptions { MaxMessageSize = 4 });
        await sender.SendAsync("too long"u8.ToArray());
        await sender.SendAsync("ok"u8.ToArray());
        var log = new List<string>();
        for (int i = 0; i < 2; i++)
        {
            // --- README: channel errors ---
            try
            {
                using FdMessage message = await channel.ReceiveAsync();
                log.Add(Encoding.UTF8.GetString(message.Payload.Span));
            }
            catch (FdMessageRejectedException e)     // over this side's limits: discarded whole,
            {                                        // its descriptors closed; keep receiving
                log.Add($"rejected: {e.Reason}");
            }
            catch (FdChannelProtocolException)       // the peer broke the format: the channel is
            {                                        // faulted, every later call throws this
                throw;
            }
            catch (EndOfStreamException)             // the peer closed between two messages
            {
                break;
            }
            // --- end ---
        }
        Assert.That(log, Is.EqualTo(new[] { "rejected: PayloadTooLarge", "ok" }));
    }
}
