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

    /// <summary>The kinds accepted; null for any.</summary>
    public IReadOnlyList<FdKind>? Kinds { get; init; }

    /// <summary>The access modes accepted (e.g. only <see cref="FdAccess.Read"/>); null for any.</summary>
    public IReadOnlyList<FdAccess>? Access { get; init; }

    /// <summary>Sockets: the families accepted; null for any.</summary>
    public IReadOnlyList<AddressFamily>? Families { get; init; }

    /// <summary>Sockets: the types accepted; null for any.</summary>
    public IReadOnlyList<SocketType>? SocketTypes { get; init; }

    /// <summary>Sockets: whether a listening socket is accepted (default true).</summary>
    public bool AllowListening { get; init; } = true;

    /// <summary>Seals that must be in force; any seal here makes the rule refuse every kind
    /// but <see cref="FdKind.MemFd"/>.</summary>
    public FdSeals RequiredSeals { get; init; }

    /// <summary>Regular files and memfds: the smallest size accepted.</summary>
    public long MinSize { get; init; }

    /// <summary>Regular files and memfds: the largest size accepted; null for no bound.</summary>
    public long? MaxSize { get; init; }

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

    /// <summary>Checks a description against this rule: null if it passes, else why not.</summary>
    internal (FdPolicyViolationReason Reason, string Text)? Check(int index, in FdInfo info)
    {
        var kinds = RequiredSeals != FdSeals.None ? [FdKind.MemFd] : Kinds;
        if (kinds is not null && !kinds.Contains(info.Kind))
            return (FdPolicyViolationReason.Kind,
                    $"descriptor {index} is a {Name(info.Kind)}; the policy accepts: {string.Join(", ", kinds.Select(Name))}");
        if (Access is not null && !Access.Contains(info.Access))
            return (FdPolicyViolationReason.Access,
                    $"descriptor {index} (a {Name(info.Kind)}) is open {Name(info.Access)}; the policy accepts: {string.Join(", ", Access.Select(Name))}");
        if (info.IsSocket)
        {
            if (Families is not null && !Families.Contains(info.AddressFamily))
                return (FdPolicyViolationReason.Family,
                        $"descriptor {index} is a {info.AddressFamily} socket; the policy accepts the families: {string.Join(", ", Families)}");
            if (SocketTypes is not null && !SocketTypes.Contains(info.SocketType))
                return (FdPolicyViolationReason.SocketType,
                        $"descriptor {index} is a {info.SocketType} socket; the policy accepts the types: {string.Join(", ", SocketTypes)}");
            if (!AllowListening && info.IsListening)
                return (FdPolicyViolationReason.Listening,
                        $"descriptor {index} is a listening socket; the policy refuses listening sockets");
        }
        if ((info.Seals & RequiredSeals) != RequiredSeals)
            return (FdPolicyViolationReason.Seals,
                    $"descriptor {index} is a memfd sealed with {info.Seals}; the policy requires the seals {RequiredSeals}");
        if (info.Size is long size && (size < MinSize || size > (MaxSize ?? long.MaxValue)))
            return (FdPolicyViolationReason.Size,
                    $"descriptor {index} is a {Name(info.Kind)} of {size} bytes; the policy accepts {(MaxSize is long max ? $"{MinSize} .. {max}" : $"at least {MinSize}")} bytes");
        return null;
    }

    private static string Name(FdKind kind) => kind switch
    {
        FdKind.File => "regular file",
        FdKind.Directory => "directory",
        FdKind.Pipe => "pipe or FIFO",
        FdKind.Socket => "socket",
        FdKind.MemFd => "memfd",
        FdKind.CharacterDevice => "character device",
        FdKind.BlockDevice => "block device",
        FdKind.EventFd => "eventfd",
        FdKind.PidFd => "pidfd",
        _ => "other descriptor",
    };

    private static string Name(FdAccess access) => access switch
    {
        FdAccess.Read => "read-only",
        FdAccess.Write => "write-only",
        FdAccess.ReadWrite => "read-write",
        _ => "with no access (O_PATH)",
    };
}
