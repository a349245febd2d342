// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>The receive policy (native/src/policy.c, which owns the rules and their messages):
/// its structs and its checks.</summary>
internal static unsafe partial class Interop
{
    /// <summary>fdsend_fd_rule, field for field (40 bytes on every platform). Every mask is a
    /// set of 1 &lt;&lt; FDSEND_* value bits; 0 means any.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct FdRuleNative
    {
        internal uint Kinds;
        internal uint Access;
        internal uint Families;
        internal uint SocketTypes;
        internal uint RequiredSeals;
        internal uint Options;
        internal long MinSize;
        internal long MaxSize;
    }

    /// <summary>FDSEND_RULE_* bits of <see cref="FdRuleNative.Options"/>.</summary>
    internal const uint FDSEND_RULE_NO_LISTENING = 1, FDSEND_RULE_CLOEXEC = 2;

    /// <summary>fdsend_policy, field for field (56 bytes on 64-bit platforms).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct PolicyNative
    {
        internal uint StructSize;
        internal uint Options;
        internal int MinFds;
        internal int MaxFds;
        internal long Uid;
        internal long Gid;
        internal long Pid;
        internal FdRuleNative* Rules;
        internal int RuleCount;
        internal uint Reserved;
    }

    /// <summary>FDSEND_POLICY_CHECK_* bits of <see cref="PolicyNative.Options"/>.</summary>
    internal const uint FDSEND_POLICY_CHECK_UID = 1, FDSEND_POLICY_CHECK_GID = 2, FDSEND_POLICY_CHECK_PID = 4;

    /// <summary>fdsend_violation, field for field: what the first broken rule was.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ViolationNative
    {
        internal int Reason;
        internal int Index;
        internal int FdCount;
        internal int Reserved;
        internal long Bytes;
        internal FdInfoNative Info;
        internal fixed byte Message[256];
    }

    /// <summary>fdsend_check_received: the count and every descriptor of a received message
    /// against a policy (fdsend_check_fds), FDSEND_RECV_FDS_TRUNCATED in
    /// <paramref name="receiveFlags"/> counting as too many. On FDSEND_EPOLICY it has closed
    /// EVERY descriptor of fds and set each entry to -1 (an entry of -1 is counted but not
    /// checked). The descriptors are raw numbers: callers hold them (ReceivedFds' gate) for
    /// the call.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_check_received")]
    internal static partial int CheckReceived(PolicyNative* policy, nint* fds, int fdCount, uint receiveFlags,
                                              ViolationNative* violation);

    /// <summary>fdsend_check_fd: one descriptor against one rule, as fdsend_check_fds checks
    /// descriptor <paramref name="index"/>, closing nothing. The caller holds fd for the call.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_check_fd")]
    internal static partial int CheckFd(FdRuleNative* rule, nint fd, int index, ViolationNative* violation);

    /// <summary>fdsend_check_peer: the credentials of the socket's peer against the policy's
    /// FDSEND_POLICY_CHECK_* options. Nothing is received or closed. The marshaller holds a
    /// reference on <paramref name="socket"/> for the call.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_check_peer")]
    internal static partial int CheckPeer(SafeHandle socket, PolicyNative* policy, ViolationNative* violation);
}
