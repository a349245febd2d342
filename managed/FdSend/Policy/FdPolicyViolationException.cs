// SPDX-License-Identifier: MIT
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
}
