// SPDX-License-Identifier: MIT
using System.Text;

namespace FdSend;

/// <summary>What broke a receive policy (<see cref="FdPolicyViolationException.Reason"/>).</summary>
public enum FdPolicyViolationReason
{
    /// <summary>The message carried fewer descriptors than the policy requires.</summary>
    TooFewFds = 1,
    /// <summary>More descriptors than the policy accepts (or the kernel dropped some).</summary>
    TooManyFds = 2,
    /// <summary>The peer's uid, gid or pid is not the required one (or the OS cannot tell).</summary>
    Peer = 3,
    /// <summary>The descriptor is of a kind the rule does not accept.</summary>
    Kind = 4,
    /// <summary>The descriptor's access mode (e.g. writable) is not accepted.</summary>
    Access = 5,
    /// <summary>A socket of a family the rule does not accept.</summary>
    Family = 6,
    /// <summary>A socket of a type the rule does not accept.</summary>
    SocketType = 7,
    /// <summary>A listening socket where the rule refuses them.</summary>
    Listening = 8,
    /// <summary>A memfd without the required seals.</summary>
    Seals = 9,
    /// <summary>A file or memfd whose size is out of bounds.</summary>
    Size = 10,
    /// <summary>A descriptor without close-on-exec where the rule requires it
    /// (<see cref="FdRule.CloseOnExecRequired"/>).</summary>
    CloseOnExec = 11,
    /// <summary>A descriptor that could not be described (not open, or the OS refused to say
    /// what it is): refused, never trusted; <see cref="FdPolicyViolationException.Fd"/> is null.</summary>
    Undescribable = 12,
}

/// <summary>
/// What arrived (or who sent it) broke the receiver's <see cref="FdReceivePolicy"/>. By the
/// time this is thrown EVERY descriptor of the message has been closed (nothing leaks, nothing
/// is handed out) and the message has been consumed, so the next receive reads the next
/// message; a refused peer (<see cref="FdPolicyViolationReason.Peer"/>) is detected before
/// anything is received, so nothing is consumed then.
/// </summary>
public sealed class FdPolicyViolationException : Exception
{
    /// <summary>Creates the exception (thrown by the library; public for tests and wrappers).</summary>
    /// <param name="reason">What was broken.</param>
    /// <param name="index">The descriptor's index in the message; -1 for the count or the peer.</param>
    /// <param name="fd">What the descriptor was; null for index -1.</param>
    /// <param name="fdCount">How many descriptors the message carried.</param>
    /// <param name="message">The specific text: which index, what it was, what was required.</param>
    public FdPolicyViolationException(FdPolicyViolationReason reason, int index, FdInfo? fd, int fdCount, string message)
        : base(message)
    {
        Reason = reason;
        Index = index;
        Fd = fd;
        FdCount = fdCount;
    }

    /// <summary>What was broken.</summary>
    public FdPolicyViolationReason Reason { get; }

    /// <summary>The index of the offending descriptor in the message; -1 when the count or
    /// the peer was the problem.</summary>
    public int Index { get; }

    /// <summary>What the offending descriptor was (described before it was closed); null for
    /// <see cref="Index"/> -1.</summary>
    public FdInfo? Fd { get; }

    /// <summary>How many descriptors the message carried (all closed now).</summary>
    public int FdCount { get; }

    /// <summary>Data bytes received with the refused message (in the caller's buffer); 0 for
    /// a refused peer or when the check ran on descriptors received elsewhere.</summary>
    public int BytesReceived { get; init; }

    /// <summary>The exception for the fdsend_violation libfdsend filled in (it owns the rules
    /// and their messages: native/src/policy.c).</summary>
    /// <param name="v">The violation.</param>
    /// <param name="fdCount">How many descriptors the message carried.</param>
    /// <param name="bytesReceived">Data bytes received with the message.</param>
    internal static unsafe FdPolicyViolationException FromNative(Interop.ViolationNative* v, int fdCount, int bytesReceived)
    {
        var text = new ReadOnlySpan<byte>(v->Message, 256);
        int end = text.IndexOf((byte)0);
        string message = Encoding.UTF8.GetString(end >= 0 ? text[..end] : text);
        var reason = (FdPolicyViolationReason)v->Reason;
        FdInfo? fd = v->Index >= 0 && reason != FdPolicyViolationReason.Undescribable ? FdInfo.FromNative(v->Info) : null;
        return new(reason, v->Index, fd, fdCount, message) { BytesReceived = bytesReceived };
    }
}
