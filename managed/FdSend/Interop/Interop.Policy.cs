// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

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
}
