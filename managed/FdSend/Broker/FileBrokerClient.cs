// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace FdSend;

/// <summary>
/// The worker's half of a privilege-separated file opener: asks a <see cref="FileBroker"/>
/// (or a C broker using fdsend_broker_serve_one) to open files and receives them. Each reply
/// is checked by libfdsend, as fdsend_broker_open checks it (fdsend_broker_reply_decode): a
/// 4-byte status a broker may send, exactly one read-only regular file on success, none on a
/// refusal.
/// One request at a time per client.
/// </summary>
public sealed class FileBrokerClient : IAsyncDisposable, IDisposable
{
    private readonly FdChannel _channel;

    /// <summary>Creates a client on a connected Unix socket to the broker.</summary>
    /// <param name="broker">The socket; owned by the client from now on (disposed with it).</param>
    public FileBrokerClient(Socket broker)
    {
        // Up to the most one message carries: the reply's checks (libfdsend's) see and close every
        // descriptor a hostile broker sends, as fdsend_broker_open's do. A payload longer than
        // 64 bytes is dropped unread by the channel and judged by its length.
        _channel = new FdChannel(broker, new FdChannelOptions { MaxMessageSize = 64, MaxFdsPerMessage = FdPassing.MaxFds });
    }

    /// <summary>Asks the broker to open <paramref name="path"/> (relative to its directory).</summary>
    /// <param name="path">A relative path without ".." or symbolic links.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The file, read-only, owned by the caller.</returns>
    /// <exception cref="FileBrokerException">The broker refused: see <see cref="FileBrokerException.Error"/>
    /// (<see cref="FileBrokerError.InvalidPath"/>, nothing sent, for a path that is empty, over
    /// 4096 bytes of UTF-8 or contains NUL).</exception>
    /// <exception cref="FdPolicyViolationException">The broker's reply carried something other
    /// than one read-only regular file with a success, or a descriptor with a refusal (all
    /// closed).</exception>
    /// <exception cref="FdChannelProtocolException">The reply was malformed: not 4 bytes, or a
    /// status that is positive, FDSEND_EPROTO or no FDSEND_E* code (its descriptors closed).</exception>
    /// <exception cref="FdMessageRejectedException">The reply's descriptor could not be
    /// installed in this process (<see cref="FdMessageRejectReason.FdsDropped"/>: at its
    /// open-file limit); the connection stays usable.</exception>
    public async ValueTask<SafeFileHandle> OpenAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] request = Encoding.UTF8.GetBytes(path);
        if (BrokerProtocol.CheckRequest(request, request.Length, 0) != 0)
            throw new FileBrokerException(FileBrokerError.InvalidPath, path,
                $"'{path}': a path must be 1 .. 4096 bytes of UTF-8 without NUL.");
        await _channel.SendAsync(request, default, cancellationToken).ConfigureAwait(false);
        FdMessage? reply = null;
        long length;
        int closed = 0;
        try
        {
            reply = await _channel.ReceiveAsync(cancellationToken).ConfigureAwait(false);
            length = reply.Length;
        }
        catch (FdMessageRejectedException e) when (e.Reason == FdMessageRejectReason.PayloadTooLarge)
        {
            // Longer than any reply: consumed whole, its descriptors closed by the channel. The
            // codec judges what its header announced (closed descriptors count as -1 entries).
            length = e.PayloadLength;
            closed = e.FdCount;
        }
        using (reply)
        {
            nint[] fds = new nint[reply?.FdCount ?? closed];
            Array.Fill(fds, -1);
            if (reply is not null)
            {
                int[] taken = reply.Fds.TakeAllRawFds(); // ours now: DecodeReply closes what it refuses
                for (int i = 0; i < taken.Length; i++)
                    fds[i] = taken[i];
            }
            return BrokerProtocol.DecodeReply(path, reply is null ? default : reply.Payload.Span, length, fds);
        }
    }

    /// <summary>Closes the connection to the broker.</summary>
    public ValueTask DisposeAsync() => _channel.DisposeAsync();

    /// <summary>Closes the connection to the broker.</summary>
    public void Dispose() => _channel.Dispose();
}
