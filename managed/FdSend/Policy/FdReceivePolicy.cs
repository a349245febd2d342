// SPDX-License-Identifier: MIT
using System.Net.Sockets;

namespace FdSend;

/// <summary>
/// What a receiver accepts in one message from a peer it does not trust: how many
/// descriptors, what each may be (<see cref="FdRule"/>), and optionally who the peer must be.
/// Immutable: every <c>With*</c>/<c>Require*</c> method returns a new policy. Use it with
/// <see cref="FdReceivePolicyExtensions.ReceiveFds(Socket, Span{byte}, FdReceivePolicy)"/>,
/// its async twin, or <see cref="Enforce"/> on descriptors from elsewhere (an
/// <see cref="FdChannel"/> message).
/// </summary>
/// <example><code>
/// var policy = FdReceivePolicy.Exactly(1, FdRule.ReadOnlyFile).RequirePeerUid(1000);
/// using ReceivedFds r = socket.ReceiveFds(buffer, policy); // throws FdPolicyViolationException
/// </code></example>
public sealed class FdReceivePolicy
{
    private readonly FdRule[] _rules;
    // The rules as libfdsend takes them (fdsend_fd_rule), made once: the policy is immutable.
    private readonly Interop.FdRuleNative[] _nativeRules;

    private FdReceivePolicy(int min, int max, FdRule[] rules, uint? uid, uint? gid, int? pid)
    {
        MinFds = min;
        MaxFds = max;
        _rules = rules;
        _nativeRules = Array.ConvertAll(rules, r => r.ToNative());
        RequiredUid = uid;
        RequiredGid = gid;
        RequiredPid = pid;
    }

    /// <summary>Any number of descriptors (0 .. <see cref="FdPassing.MaxFds"/>) of any kind:
    /// the starting point for the <c>With*</c> methods.</summary>
    public static FdReceivePolicy AcceptAny { get; } = new(0, FdPassing.MaxFds, [], null, null, null);

    /// <summary>No descriptors at all: any that arrive are closed and reported.</summary>
    public static FdReceivePolicy NoFds { get; } = new(0, 0, [], null, null, null);

    /// <summary>Exactly <paramref name="count"/> descriptors, each matching
    /// <paramref name="rules"/> (rule i for descriptor i; the last rule for the rest).</summary>
    /// <param name="count">How many descriptors the message must carry.</param>
    /// <param name="rules">The rules; none means any kind.</param>
    public static FdReceivePolicy Exactly(int count, params FdRule[] rules) =>
        AcceptAny.WithCount(count, count).WithRules(rules);

    /// <summary>The fewest descriptors a message must carry.</summary>
    public int MinFds { get; }

    /// <summary>The most descriptors a message may carry.</summary>
    public int MaxFds { get; }

    /// <summary>The rules: descriptor i must match Rules[min(i, Rules.Count - 1)]; empty means
    /// any kind.</summary>
    public IReadOnlyList<FdRule> Rules => _rules;

    /// <summary>The effective uid the peer must have; null for any.</summary>
    public uint? RequiredUid { get; }

    /// <summary>The effective gid the peer must have; null for any.</summary>
    public uint? RequiredGid { get; }

    /// <summary>The pid the peer must have (as the kernel recorded it at connect time); null for any.</summary>
    public int? RequiredPid { get; }

    /// <summary>This policy with another count range.</summary>
    /// <param name="min">The fewest descriptors (0 ..).</param>
    /// <param name="max">The most descriptors (min .. <see cref="FdPassing.MaxFds"/>).</param>
    public FdReceivePolicy WithCount(int min, int max)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(min);
        ArgumentOutOfRangeException.ThrowIfLessThan(max, min);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(max, FdPassing.MaxFds);
        return new(min, max, _rules, RequiredUid, RequiredGid, RequiredPid);
    }

    /// <summary>This policy with these rules (rule i for descriptor i; the last rule for the rest).</summary>
    /// <param name="rules">The rules; none means any kind.</param>
    public FdReceivePolicy WithRules(params FdRule[] rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        foreach (FdRule r in rules)
            ArgumentNullException.ThrowIfNull(r, nameof(rules));
        return new(MinFds, MaxFds, rules.ToArray(), RequiredUid, RequiredGid, RequiredPid);
    }

    /// <summary>This policy requiring the peer to run as <paramref name="uid"/>.</summary>
    /// <param name="uid">The effective uid required.</param>
    public FdReceivePolicy RequirePeerUid(uint uid) => new(MinFds, MaxFds, _rules, uid, RequiredGid, RequiredPid);

    /// <summary>This policy requiring the peer's effective gid.</summary>
    /// <param name="gid">The effective gid required.</param>
    public FdReceivePolicy RequirePeerGid(uint gid) => new(MinFds, MaxFds, _rules, RequiredUid, gid, RequiredPid);

    /// <summary>This policy requiring the peer's pid.</summary>
    /// <param name="pid">The pid required.</param>
    public FdReceivePolicy RequirePeerPid(int pid) => new(MinFds, MaxFds, _rules, RequiredUid, RequiredGid, pid);

    internal bool ChecksPeer => RequiredUid is not null || RequiredGid is not null || RequiredPid is not null;

    /// <summary>
    /// Checks the peer of <paramref name="socket"/> against <see cref="RequiredUid"/>,
    /// <see cref="RequiredGid"/> and <see cref="RequiredPid"/> (nothing to check: returns at
    /// once). Nothing is received.
    /// </summary>
    /// <param name="socket">A connected Unix socket.</param>
    /// <exception cref="FdPolicyViolationException">The peer is not the one required
    /// (<see cref="FdPolicyViolationReason.Peer"/>).</exception>
    /// <exception cref="SocketException">The peer's credentials cannot be read (not connected...).</exception>
    public unsafe void CheckPeer(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (!ChecksPeer)
            return;
        SafeSocketHandle handle = FdSendCore.GetHandle(socket);
        Interop.ViolationNative v;
        int rc;
        fixed (Interop.FdRuleNative* rules = _nativeRules)
        {
            Interop.PolicyNative policy = ToNative(rules);
            rc = Interop.CheckPeer(handle, &policy, &v);
        }
        if (rc == (int)Interop.Status.EPOLICY)
            throw FdPolicyViolationException.FromNative(&v, fdCount: 0, bytesReceived: 0);
        if (rc < 0)
            throw FdSendErrors.Create(rc, FdOperation.PeerCredentials);
    }

    /// <summary>
    /// Checks every descriptor not yet taken in <paramref name="fds"/> (and their count) against
    /// this policy. If they pass, nothing changes. If not, <paramref name="fds"/> is DISPOSED
    /// (every descriptor it still owns is closed) and the violation is thrown.
    /// </summary>
    /// <param name="fds">Received descriptors, e.g. <see cref="FdMessage.Fds"/>.</param>
    /// <exception cref="FdPolicyViolationException">A descriptor or the count broke the
    /// policy; <paramref name="fds"/> is disposed.</exception>
    public void Enforce(ReceivedFds fds)
    {
        ArgumentNullException.ThrowIfNull(fds);
        FdPolicyViolationException? v = Check(fds);
        if (v is not null)
        {
            fds.Dispose();
            throw v;
        }
    }

    /// <summary>The violation, or null. The rules are libfdsend's (fdsend_check_received,
    /// which counts descriptors the kernel dropped as too many): on a violation it has closed
    /// every descriptor <paramref name="fds"/> still owned (they are marked taken); dispose
    /// <paramref name="fds"/> then. A taken descriptor is counted but not checked.</summary>
    internal unsafe FdPolicyViolationException? Check(ReceivedFds fds)
    {
        Interop.ViolationNative v;
        int rc;
        fixed (Interop.FdRuleNative* rules = _nativeRules)
        {
            Interop.PolicyNative policy = ToNative(rules);
            rc = fds.CheckPolicy(&policy, &v);
        }
        if (rc == (int)Interop.Status.EPOLICY)
            return FdPolicyViolationException.FromNative(&v, fds.Count, fds.BytesReceived);
        ThrowIfRefused(rc);
        return null;
    }

    /// <summary>fdsend_check_* refuse only malformed policies and rules (FDSEND_EINVAL), which
    /// this class and <see cref="FdRule"/> never build.</summary>
    internal static void ThrowIfRefused(int rc)
    {
        if (rc < 0)
            throw new InvalidOperationException(
                $"libfdsend refused the policy FdSend built ({Interop.StrError(rc)}); please report this FdSend bug.");
    }

    /// <summary>This policy as libfdsend's fdsend_policy, whose rules are at
    /// <paramref name="rules"/> (<see cref="_nativeRules"/>, pinned by the caller).</summary>
    private unsafe Interop.PolicyNative ToNative(Interop.FdRuleNative* rules) => new()
    {
        StructSize = (uint)sizeof(Interop.PolicyNative),
        Options = (RequiredUid is null ? 0 : Interop.FDSEND_POLICY_CHECK_UID) |
                  (RequiredGid is null ? 0 : Interop.FDSEND_POLICY_CHECK_GID) |
                  (RequiredPid is null ? 0 : Interop.FDSEND_POLICY_CHECK_PID),
        MinFds = MinFds,
        MaxFds = MaxFds,
        Uid = RequiredUid ?? 0,
        Gid = RequiredGid ?? 0,
        Pid = RequiredPid ?? 0,
        Rules = rules,
        RuleCount = _nativeRules.Length,
    };

    /// <inheritdoc/>
    public override string ToString() =>
        $"FdReceivePolicy {{ Fds = {MinFds} .. {MaxFds}, Rules = {_rules.Length}" +
        $"{(RequiredUid is uint u ? $", Uid = {u}" : "")}{(RequiredGid is uint g ? $", Gid = {g}" : "")}{(RequiredPid is int p ? $", Pid = {p}" : "")} }}";
}
