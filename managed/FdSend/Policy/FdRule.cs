// SPDX-License-Identifier: MIT
using System.Net.Sockets;

namespace FdSend;

/// <summary>
/// What one received descriptor may be: its kinds, access modes, socket families and types,
/// memfd seals and size. Immutable: every <c>With*</c>/<c>Require*</c> method returns a new
/// rule. <see cref="Any"/> accepts everything; start from it or from a factory
/// (<see cref="File"/>, <see cref="SealedMemory"/>, <see cref="Socket"/>...).
/// </summary>
/// <remarks>A Unix socket can carry descriptors of its own (queued now, or sent later by
/// whoever holds its other end), and nothing on the received socket tells (peeking would
/// install them). Refuse Unix sockets (<see cref="WithFamilies"/> without
/// <see cref="AddressFamily.Unix"/>) where that matters.</remarks>
public sealed record FdRule
{
    /// <summary>Accepts any descriptor.</summary>
    public static FdRule Any { get; } = new();

    /// <summary>A regular file (not a directory, FIFO, device, socket or memfd), read-only.</summary>
    public static FdRule ReadOnlyFile { get; } = new() { Kinds = [FdKind.File], Access = [FdAccess.Read] };

    /// <summary>A regular file, any access mode.</summary>
    public static FdRule File { get; } = new() { Kinds = [FdKind.File] };

    /// <summary>A memfd that carries at least <paramref name="requiredSeals"/> (plus
    /// <see cref="FdSeals.Shrink"/>, always: without it the sender can make every reader of
    /// a mapping die of SIGBUS) and whose size is within the bounds.</summary>
    /// <param name="requiredSeals">Seals that must be in force, e.g. <see cref="FdSeals.Write"/>
    /// for contents that cannot change.</param>
    /// <param name="minSize">The smallest size accepted, in bytes.</param>
    /// <param name="maxSize">The largest size accepted; null for no bound.</param>
    public static FdRule SealedMemory(FdSeals requiredSeals = FdSeals.Shrink | FdSeals.Grow | FdSeals.Write,
                                      long minSize = 0, long? maxSize = null) =>
        new() { Kinds = [FdKind.MemFd], RequiredSeals = requiredSeals | FdSeals.Shrink, MinSize = minSize, MaxSize = maxSize };

    /// <summary>A socket of one of the families and (if given) types, not listening unless
    /// <paramref name="allowListening"/>.</summary>
    /// <param name="family">The one family accepted (e.g. <see cref="AddressFamily.InterNetwork"/>).</param>
    /// <param name="type">The one type accepted; null for any.</param>
    /// <param name="allowListening">Whether a listening socket is accepted.</param>
    public static FdRule Socket(AddressFamily family, SocketType? type = null, bool allowListening = true) =>
        new()
        {
            Kinds = [FdKind.Socket],
            Families = [family],
            SocketTypes = type is { } t ? [t] : null,
            AllowListening = allowListening,
        };

    private readonly IReadOnlyList<FdKind>? _kinds;
    private readonly IReadOnlyList<FdAccess>? _access;
    private readonly IReadOnlyList<AddressFamily>? _families;
    private readonly IReadOnlyList<SocketType>? _socketTypes;
    private readonly long? _maxSize;

    /// <summary>The kinds accepted; null for any.</summary>
    /// <exception cref="ArgumentException">Set to an empty list (which would accept nothing:
    /// leave it null to accept any) or to a value that is not an <see cref="FdKind"/>.</exception>
    public IReadOnlyList<FdKind>? Kinds { get => _kinds; init => _kinds = Checked(value, KindBit, nameof(Kinds)); }

    /// <summary>The access modes accepted (e.g. only <see cref="FdAccess.Read"/>); null for any.</summary>
    /// <exception cref="ArgumentException">Set to an empty list or to a value that is not an
    /// <see cref="FdAccess"/>.</exception>
    public IReadOnlyList<FdAccess>? Access { get => _access; init => _access = Checked(value, AccessBit, nameof(Access)); }

    /// <summary>Sockets: the families accepted (<see cref="AddressFamily.Unix"/>,
    /// <see cref="AddressFamily.InterNetwork"/>, <see cref="AddressFamily.InterNetworkV6"/>,
    /// <see cref="AddressFamily.Unknown"/> for any other, as <see cref="FdInfo.AddressFamily"/>
    /// reports them); null for any.</summary>
    /// <exception cref="ArgumentException">Set to an empty list or to a family
    /// <see cref="FdInfo"/> never reports (e.g. <see cref="AddressFamily.AppleTalk"/>: such a
    /// socket is <see cref="AddressFamily.Unknown"/>).</exception>
    public IReadOnlyList<AddressFamily>? Families { get => _families; init => _families = Checked(value, FamilyBit, nameof(Families)); }

    /// <summary>Sockets: the types accepted (<see cref="SocketType.Stream"/>,
    /// <see cref="SocketType.Dgram"/>, <see cref="SocketType.Seqpacket"/>,
    /// <see cref="SocketType.Unknown"/> for any other); null for any.</summary>
    /// <exception cref="ArgumentException">Set to an empty list or to a type
    /// <see cref="FdInfo"/> never reports (e.g. <see cref="SocketType.Raw"/>: such a socket is
    /// <see cref="SocketType.Unknown"/>).</exception>
    public IReadOnlyList<SocketType>? SocketTypes { get => _socketTypes; init => _socketTypes = Checked(value, SocketTypeBit, nameof(SocketTypes)); }

    /// <summary>Sockets: whether a listening socket is accepted (default true).</summary>
    public bool AllowListening { get; init; } = true;

    /// <summary>Whether the descriptor must be close-on-exec (default false). Received
    /// descriptors always are where the OS sets it atomically (Linux, the BSDs); this matters
    /// for descriptors from elsewhere checked with <see cref="FdReceivePolicy.Enforce"/>.</summary>
    public bool CloseOnExecRequired { get; init; }

    /// <summary>Seals that must be in force; any seal here makes the rule refuse every kind
    /// but <see cref="FdKind.MemFd"/>.</summary>
    public FdSeals RequiredSeals { get; init; }

    /// <summary>Regular files and memfds: the smallest size accepted.</summary>
    public long MinSize { get; init; }

    /// <summary>Regular files and memfds: the largest size accepted; null for no bound.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to a negative size.</exception>
    public long? MaxSize
    {
        get => _maxSize;
        init
        {
            if (value is long max)
                ArgumentOutOfRangeException.ThrowIfNegative(max, nameof(MaxSize));
            _maxSize = value;
        }
    }

    /// <summary>This rule accepting only these kinds.</summary>
    /// <param name="kinds">The kinds accepted.</param>
    public FdRule WithKinds(params FdKind[] kinds) => this with { Kinds = kinds.ToArray() };

    /// <summary>This rule accepting only these access modes.</summary>
    /// <param name="access">The access modes accepted.</param>
    public FdRule WithAccess(params FdAccess[] access) => this with { Access = access.ToArray() };

    /// <summary>This rule accepting only read-only descriptors.</summary>
    public FdRule RequireReadOnly() => WithAccess(FdAccess.Read);

    /// <summary>This rule accepting only sockets of these families.</summary>
    /// <param name="families">The families accepted.</param>
    public FdRule WithFamilies(params AddressFamily[] families) => this with { Families = families.ToArray() };

    /// <summary>This rule accepting only sockets of these types.</summary>
    /// <param name="types">The types accepted.</param>
    public FdRule WithSocketTypes(params SocketType[] types) => this with { SocketTypes = types.ToArray() };

    /// <summary>This rule refusing listening sockets.</summary>
    public FdRule RefuseListening() => this with { AllowListening = false };

    /// <summary>This rule with size bounds for files and memfds.</summary>
    /// <param name="min">The smallest size accepted.</param>
    /// <param name="max">The largest size accepted; null for no bound.</param>
    public FdRule WithSize(long min, long? max) => this with { MinSize = min, MaxSize = max };

    /// <summary>This rule accepting only close-on-exec descriptors.</summary>
    public FdRule RequireCloseOnExec() => this with { CloseOnExecRequired = true };

    /// <summary>
    /// Checks descriptor <paramref name="index"/> of <paramref name="fds"/> against this rule
    /// (through libfdsend's fdsend_check_fd, the rules fdsend_check_fds applies): null if it
    /// passes, else the violation. Closes nothing.
    /// </summary>
    internal unsafe FdPolicyViolationException? Check(ReceivedFds fds, int index)
    {
        Interop.FdRuleNative rule = ToNative();
        Interop.ViolationNative v;
        int rc = fds.CheckFd(index, &rule, &v);
        if (rc == (int)Interop.Status.EPOLICY)
            return FdPolicyViolationException.FromNative(&v, fds.Count, bytesReceived: 0);
        FdReceivePolicy.ThrowIfRefused(rc);
        return null;
    }

    /// <summary>This rule as libfdsend's fdsend_fd_rule (which owns the rules: see
    /// native/src/policy.c).</summary>
    internal Interop.FdRuleNative ToNative() => new()
    {
        Kinds = Mask(Kinds, KindBit),
        Access = Mask(Access, AccessBit),
        Families = Mask(Families, FamilyBit),
        SocketTypes = Mask(SocketTypes, SocketTypeBit),
        RequiredSeals = (uint)RequiredSeals,
        Options = (AllowListening ? 0 : Interop.FDSEND_RULE_NO_LISTENING) |
                  (CloseOnExecRequired ? Interop.FDSEND_RULE_CLOEXEC : 0),
        MinSize = MinSize,
        MaxSize = MaxSize ?? -1,
    };

    private static uint Mask<T>(IReadOnlyList<T>? values, Func<T, int?> value)
    {
        uint mask = 0;
        if (values is not null)
        {
            foreach (T v in values)
                mask |= 1u << value(v)!.Value; // checked (and copied) when the list was set
        }
        return mask;
    }

    /// <summary>A copy of the list (null: any), once every value is one a descriptor can have:
    /// the rule cannot change after it is checked, even if the caller's list does.</summary>
    private static IReadOnlyList<T>? Checked<T>(IReadOnlyList<T>? values, Func<T, int?> value, string property)
    {
        if (values is null)
            return null;
        values = values.ToArray();
        if (values.Count == 0)
            throw new ArgumentException(
                $"An empty list of {typeof(T).Name} values would accept no descriptor; leave it null to accept any.", property);
        foreach (T v in values)
        {
            if (value(v) is null)
                throw new ArgumentException(
                    $"{typeof(T).Name}.{v} is not a value FdInfo reports, so a rule cannot name it" +
                    (typeof(T) == typeof(AddressFamily) || typeof(T) == typeof(SocketType) ? $" (such a socket is {typeof(T).Name}.Unknown)." : "."),
                    property);
        }
        return values;
    }

    private static int? KindBit(FdKind kind) => kind is >= FdKind.Other and <= FdKind.PidFd ? (int)kind : null;

    private static int? AccessBit(FdAccess access) => access is >= FdAccess.None and <= FdAccess.ReadWrite ? (int)access : null;

    private static int? FamilyBit(AddressFamily family) => FdInfo.NativeFamily(family);

    private static int? SocketTypeBit(SocketType type) => FdInfo.NativeSocketType(type);
}
