// SPDX-License-Identifier: MIT
using System.Net.Sockets;

namespace FdSend;

/// <summary>
/// Receiving under an <see cref="FdReceivePolicy"/>: the safe way to take descriptors from a
/// peer you do not trust. The peer is checked before anything is received; the message is
/// received whole (up to <see cref="FdPassing.MaxFds"/> descriptors, so that extra ones are
/// counted, not silently dropped); anything that breaks the policy closes EVERY descriptor of
/// the message and throws <see cref="FdPolicyViolationException"/>, and the socket stays
/// usable at the next message.
/// </summary>
public static class FdReceivePolicyExtensions
{
    /// <summary>Receives ONE message under <paramref name="policy"/>.</summary>
    /// <param name="socket">A connected Unix domain socket.</param>
    /// <param name="buffer">Where the data goes (see <see cref="SocketFdExtensions.ReceiveFds(Socket, Span{byte}, int)"/>).</param>
    /// <param name="policy">What is accepted.</param>
    /// <returns>The message, whose descriptors all passed the policy. Dispose it.</returns>
    /// <exception cref="FdPolicyViolationException">The peer, the count or a descriptor broke
    /// the policy: every descriptor of the message was closed.</exception>
    /// <exception cref="SocketException">As for the receive without a policy.</exception>
    public static ReceivedFds ReceiveFds(this Socket socket, Span<byte> buffer, FdReceivePolicy policy)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(policy);
        policy.CheckPeer(socket);
        return Checked(socket.ReceiveFds(buffer, FdPassing.MaxFds), policy);
    }

    /// <summary>Receives ONE message under <paramref name="policy"/>, waiting without a thread.</summary>
    /// <param name="socket">A connected Unix domain socket.</param>
    /// <param name="buffer">Where the data goes; untouched until the task completes.</param>
    /// <param name="policy">What is accepted.</param>
    /// <param name="cancellationToken">Cancels the wait (nothing consumed then).</param>
    /// <returns>The message, whose descriptors all passed the policy. Dispose it.</returns>
    /// <exception cref="FdPolicyViolationException">As for the sync receive.</exception>
    /// <exception cref="OperationCanceledException">Cancelled before a message arrived.</exception>
    public static async ValueTask<ReceivedFds> ReceiveFdsAsync(this Socket socket, Memory<byte> buffer,
                                                               FdReceivePolicy policy,
                                                               CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(policy);
        policy.CheckPeer(socket);
        ReceivedFds r = await socket.ReceiveFdsAsync(buffer, FdPassing.MaxFds, cancellationToken).ConfigureAwait(false);
        return Checked(r, policy);
    }

    private static ReceivedFds Checked(ReceivedFds r, FdReceivePolicy policy)
    {
        if (r.IsEndOfStream)
            return r;
        FdPolicyViolationException? v;
        try
        {
            v = policy.Check(r);
        }
        catch
        {
            r.Dispose();
            throw;
        }
        if (v is null)
            return r;
        r.Dispose();
        throw v;
    }
}
