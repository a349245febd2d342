// SPDX-License-Identifier: MIT
using System.Net.Sockets;

namespace FdSend;

/// <summary>
/// A blocking (or async) send on a stream socket failed AFTER part of the data, and with it
/// every descriptor, had been sent: the kernel took the first chunk together with the
/// descriptors, and a later chunk failed (the peer closed, the connection was reset, the send
/// timed out, the socket was disposed). Unlike every other send error, something WAS sent.
/// </summary>
/// <remarks>
/// <para><see cref="SocketException.SocketErrorCode"/> is the error of the chunk that failed
/// (as <see cref="SocketFdExtensions.SendFds(Socket, ReadOnlySpan{byte}, ReadOnlySpan{Descriptor})"/>
/// would report it for a send that failed at once, or <see cref="SocketError.ConnectionAborted"/>
/// for a socket disposed during the send).</para>
/// <para>The peer may hold duplicates of the descriptors (they went with the first chunk) and
/// the first <see cref="BytesSent"/> bytes; the caller still owns its own descriptors. The
/// stream is now at a position the peer cannot know: close the connection.</para>
/// </remarks>
public sealed class FdPartialSendException : SocketException
{
    /// <summary>Creates the exception for a send that failed after
    /// <paramref name="bytesSent"/> bytes and <paramref name="descriptorsSent"/> descriptors
    /// went out.</summary>
    /// <param name="socketError">The error of the chunk that failed.</param>
    /// <param name="bytesSent">Data bytes the kernel accepted before the failure (&gt; 0).</param>
    /// <param name="descriptorsSent">Descriptors that went with the first chunk.</param>
    /// <param name="message">What happened and what to do.</param>
    public FdPartialSendException(SocketError socketError, int bytesSent, int descriptorsSent, string message)
        : base((int)socketError, message)
    {
        BytesSent = bytesSent;
        DescriptorsSent = descriptorsSent;
    }

    /// <summary>How many data bytes were sent (accepted by the kernel) before the failure.</summary>
    public int BytesSent { get; }

    /// <summary>How many descriptors were sent: all of the call's descriptors, which went with
    /// the first chunk (0 if the call had none).</summary>
    public int DescriptorsSent { get; }
}
