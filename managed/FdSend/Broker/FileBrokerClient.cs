// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace FdSend;

/// <summary>
/// The worker's half of a privilege-separated file opener: asks a <see cref="FileBroker"/>
/// (or a C broker using fdsend_broker_serve_one) to open files and receives them. Each reply
/// is checked: exactly one read-only regular file on success, none on a refusal.
/// One request at a time per client.
/// </summary>
public sealed class FileBrokerClient : IAsyncDisposable, IDisposable
{
    private static readonly FdReceivePolicy s_reply = FdReceivePolicy.Exactly(1, FdRule.ReadOnlyFile);
    private readonly FdChannel _channel;

    /// <summary>Creates a client on a connected Unix socket to the broker.</summary>
    /// <param name="broker">The socket; owned by the client from now on (disposed with it).</param>
    public FileBrokerClient(Socket broker)
    {
        _channel = new FdChannel(broker, new FdChannelOptions { MaxMessageSize = 64, MaxFdsPerMessage = 1 });
    }

    /// <summary>Asks the broker to open <paramref name="path"/> (relative to its directory).</summary>
    /// <param name="path">A relative path without ".." or symbolic links.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The file, read-only, owned by the caller.</returns>
    /// <exception cref="FileBrokerException">The broker refused: see <see cref="FileBrokerException.Error"/>.</exception>
    /// <exception cref="FdPolicyViolationException">The broker's reply carried something other
    /// than one read-only regular file (closed).</exception>
    /// <exception cref="FdChannelProtocolException">The reply was malformed.</exception>
    public async ValueTask<SafeFileHandle> OpenAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] request = Encoding.UTF8.GetBytes(path);
        if (request.Length == 0 || request.Length > 4096 || path.Contains('\0'))
            throw new FileBrokerException(FileBrokerError.InvalidPath, path,
                $"'{path}': a path must be 1 .. 4096 bytes of UTF-8 without NUL.");
        await _channel.SendAsync(request, default, cancellationToken).ConfigureAwait(false);
        using FdMessage reply = await _channel.ReceiveAsync(cancellationToken).ConfigureAwait(false);
        if (reply.Length != 4)
            throw new FdChannelProtocolException(
                $"The broker's reply has {reply.Length} bytes; a reply is a 4-byte status.");
        int status = BinaryPrimitives.ReadInt32LittleEndian(reply.Payload.Span);
        if (status != 0)
        {
            if (reply.FdCount != 0)
                FdReceivePolicy.NoFds.Enforce(reply.Fds); // throws: a refusal carries no file
            throw new FileBrokerException(FileBrokerException.FromStatus(status), path,
                $"The broker refused '{path}': {Interop.StrError(status)}.");
        }
        s_reply.Enforce(reply.Fds);
        return reply.Fds.TakeFileHandle(0);
    }

    /// <summary>Closes the connection to the broker.</summary>
    public ValueTask DisposeAsync() => _channel.DisposeAsync();

    /// <summary>Closes the connection to the broker.</summary>
    public void Dispose() => _channel.Dispose();
}
