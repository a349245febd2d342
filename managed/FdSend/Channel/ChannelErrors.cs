// SPDX-License-Identifier: MIT
using System.Globalization;
using System.Net.Sockets;

namespace FdSend;

/// <summary>
/// The channel's one place for its exceptions: what the codec's verdicts mean to a caller
/// (<see cref="FromVerdict"/>), limits broken by a send, a connection that failed inside a
/// frame, the end of the channel, disposal.
/// </summary>
internal static class ChannelErrors
{
    /// <summary>
    /// The exception for a frame the codec did not accept (a negative FDSEND_E* code from
    /// fdsend_frame_reader_feed or fdsend_frame_check_record), whose descriptors the caller has
    /// closed. <paramref name="header"/> holds the header bytes that arrived;
    /// <paramref name="fdCount"/> how many descriptors came with the frame.
    /// </summary>
    internal static IOException FromVerdict(long code, ReadOnlySpan<byte> header, int fdCount, bool endedInside,
                                            bool stream, FdChannelOptions options) =>
        (Interop.Status)code switch
        {
            Interop.Status.EMFILE => Rejected(FdMessageRejectReason.FdsDropped, header, options),
            Interop.Status.EMSGSIZE => Rejected(FdMessageRejectReason.PayloadTooLarge, header, options),
            Interop.Status.ETOOMANYFDS => Rejected(FdMessageRejectReason.TooManyFds, header, options),
            Interop.Status.EPROTO => Protocol(endedInside
                ? $"the connection ended inside a frame (header bytes received: {FrameHeader.Describe(header)})"
                : $"header bytes {FrameHeader.Describe(header)}, {fdCount} descriptor(s) with the frame", stream),
            _ => new IOException($"The channel codec answered {(Interop.Status)code} ({code}) to a read it asked for; the frame's descriptors were closed."),
        };

    /// <summary>A frame that broke the format. On a stream the position of the next frame is
    /// lost (the channel faults it); a seqpacket record or datagram stands alone and is dropped
    /// (docs/wire-format.md section 4).</summary>
    internal static FdChannelProtocolException Protocol(string what, bool stream) =>
        stream
            ? new FdChannelProtocolException(
                $"The peer broke the FdSend channel wire format (docs/wire-format.md): {what}. Every descriptor of that frame was closed. " +
                "The channel is faulted: dispose it and close the connection.")
            : new FdChannelProtocolException(
                $"The peer broke the FdSend channel wire format (docs/wire-format.md): {what}. That record was dropped and its descriptors were closed; " +
                "every record stands alone, so the channel is still usable: receive the next message.");

    /// <summary>Windows: libfdsend refused the peer's record (<paramref name="status"/>, for
    /// which fdsend_recv_refused said so: FDSEND_EPROTO, not a record or a sender that is not
    /// the peer, e.g. one that closed its socket before the record's handles were taken;
    /// FDSEND_ESRCH, a sender that is gone; FDSEND_EACCES, one this process may not open).
    /// <paramref name="cause"/> is the code's own exception. The record stays unread, so the
    /// stream cannot go past it: the channel faults.</summary>
    internal static FdChannelProtocolException RecordRefused(long status, Exception cause) =>
        new($"The peer's handle-passing record was refused (docs/windows-protocol.md): {Interop.StrError((int)status)} " +
            $"({(Interop.Status)status}). No handle of it was taken, and its data cannot be read as messages, so the channel is faulted: " +
            "dispose it and close the connection.", cause);

    private static FdMessageRejectedException Rejected(FdMessageRejectReason reason, ReadOnlySpan<byte> header,
                                                       FdChannelOptions options)
    {
        long length = FrameHeader.AnnouncedLength(header);
        int fds = FrameHeader.AnnouncedFds(header);
        string text = reason switch
        {
            FdMessageRejectReason.FdsDropped =>
                $"A message arrived whose {fds} descriptors the kernel could not all install (this process is at its open-file limit, RLIMIT_NOFILE, or a security module refused one). " +
                "The message was discarded and the descriptors that did arrive were closed; the channel is still usable. Close descriptors you no longer need or raise the limit (ulimit -n).",
            FdMessageRejectReason.PayloadTooLarge =>
                $"A message of {length} bytes arrived; this channel's MaxMessageSize is {options.MaxMessageSize}. " +
                "It was read and discarded, and its descriptors were closed; the channel is still usable.",
            _ =>
                $"A message with {fds} descriptors arrived; this channel's MaxFdsPerMessage is {options.MaxFdsPerMessage}. " +
                "It was discarded and its descriptors were closed; the channel is still usable.",
        };
        return new FdMessageRejectedException(reason, length, fds, text);
    }

    /// <summary>A payload over MaxMessageSize given to SendAsync (nothing sent).</summary>
    internal static ArgumentException PayloadTooLarge(int length, int max) =>
        new($"The payload is {length} bytes; this channel's MaxMessageSize is {max}. Nothing was sent.", "payload");

    /// <summary>More descriptors than MaxFdsPerMessage given to SendAsync (nothing sent).</summary>
    internal static ArgumentException TooManyFds(int count, int max) =>
        new($"{count} descriptors were given; this channel's MaxFdsPerMessage is {max}. Nothing was sent; send them in several messages.", "fds");

    /// <summary>The connection failed after part of a stream frame moved: the channel faults.</summary>
    internal static IOException BrokenInsideFrame(Exception cause, bool sending) =>
        new(sending
                ? "The connection failed in the middle of sending a message, so the peer cannot know where the next one begins. " +
                  "The channel is faulted: dispose it and reconnect. " + cause.Message
                : "The connection failed in the middle of receiving a message; the frame's descriptors were closed. " +
                  "The channel is faulted: dispose it and reconnect. " + cause.Message,
            cause);

    /// <summary>A datagram frame the socket took only part of.</summary>
    internal static IOException DatagramCut(int sent, int total) =>
        new(string.Create(CultureInfo.InvariantCulture, $"The socket sent {sent} of a {total}-byte datagram frame."));

    internal static ObjectDisposedException Disposed() => new(nameof(FdChannel), "The channel has been disposed.");

    internal static EndOfStreamException EndOfStream() =>
        new("The peer closed the channel at a message boundary: there are no more messages.");

    /// <summary>Windows: a channel runs over a connected stream socket only (libfdsend's record
    /// protocol, docs/windows-protocol.md).</summary>
    internal static ArgumentException WindowsNotStream(SocketType type) =>
        new($"On Windows a channel works over a connected Stream socket (TCP or AF_UNIX) only; this socket is {type}.", "socket");

    internal static ArgumentException NotUnix(AddressFamily family) =>
        new($"A channel carries descriptors, which pass only over Unix domain sockets; this socket is {family}. " +
            "Create it with new Socket(AddressFamily.Unix, ...).", "socket");

    internal static ArgumentException WrongType(SocketType type) =>
        new($"A channel works over Stream, Seqpacket or Dgram sockets; this socket is {type}.", "socket");
}
