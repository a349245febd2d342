// SPDX-License-Identifier: MIT
using System.Net.Sockets;

namespace FdSend;

/// <summary>What kind of object a descriptor refers to (<see cref="FdInfo.Kind"/>).</summary>
public enum FdKind
{
    /// <summary>Anything not listed here (epoll, timerfd, signalfd, an O_PATH handle to a
    /// symlink, ...).</summary>
    Other = 0,
    /// <summary>A regular file (not a memfd).</summary>
    File = 1,
    /// <summary>A directory. Beware: a directory descriptor lets its holder open files relative
    /// to it (and escape a chroot with <c>openat(dirfd, "..")</c>).</summary>
    Directory = 2,
    /// <summary>A pipe or FIFO: a read can block until the writer writes.</summary>
    Pipe = 3,
    /// <summary>A socket; see <see cref="FdInfo.AddressFamily"/>, <see cref="FdInfo.SocketType"/>
    /// and <see cref="FdInfo.IsListening"/>.</summary>
    Socket = 4,
    /// <summary>A Linux memfd (memfd_create); see <see cref="FdInfo.Seals"/>.</summary>
    MemFd = 5,
    /// <summary>A character device (a terminal, /dev/null, ...): reads may block.</summary>
    CharacterDevice = 6,
    /// <summary>A block device.</summary>
    BlockDevice = 7,
    /// <summary>A Linux eventfd.</summary>
    EventFd = 8,
    /// <summary>A Linux pidfd (a handle to a process).</summary>
    PidFd = 9,
}

/// <summary>How the open file behind a descriptor may be used (its O_ACCMODE).</summary>
public enum FdAccess
{
    /// <summary>Neither read nor written (a Linux O_PATH descriptor).</summary>
    None = 0,
    /// <summary>Opened read-only.</summary>
    Read = 1,
    /// <summary>Opened write-only.</summary>
    Write = 2,
    /// <summary>Opened for reading and writing.</summary>
    ReadWrite = 3,
}

/// <summary>The seals in force on a Linux memfd (<c>F_GET_SEALS</c>).</summary>
[Flags]
public enum FdSeals
{
    /// <summary>No seal: the sender can still resize or write the memory.</summary>
    None = 0,
    /// <summary>F_SEAL_SEAL: the set of seals can no longer change.</summary>
    Seal = 1,
    /// <summary>F_SEAL_SHRINK: the file cannot shrink (a mapping cannot SIGBUS).</summary>
    Shrink = 2,
    /// <summary>F_SEAL_GROW: the file cannot grow.</summary>
    Grow = 4,
    /// <summary>F_SEAL_WRITE: the contents can no longer change.</summary>
    Write = 8,
    /// <summary>F_SEAL_FUTURE_WRITE: no new writable mapping or write.</summary>
    FutureWrite = 16,
}

/// <summary>Checks of <see cref="FdSeals"/> values.</summary>
internal static class FdSealBits
{
    /// <summary>Every seal this assembly knows (libfdsend's FDSEND_SEAL_* bits).</summary>
    internal const FdSeals Known = FdSeals.Seal | FdSeals.Shrink | FdSeals.Grow | FdSeals.Write | FdSeals.FutureWrite;

    /// <summary>Throws <see cref="ArgumentException"/> for a bit outside <see cref="Known"/>.</summary>
    internal static void ThrowIfUnknown(FdSeals seals, string paramName)
    {
        if ((seals & ~Known) != 0)
            throw new ArgumentException($"Unknown seal bits in {seals}.", paramName);
    }
}

/// <summary>
/// What a descriptor is, read without changing or consuming anything
/// (<see cref="ReceivedFds.Describe"/>, <see cref="FdPassing.Describe"/>): check what a peer
/// sent before you take or trust it.
/// </summary>
/// <param name="Kind">The kind of object.</param>
/// <param name="Access">How the open file may be used.</param>
/// <param name="IsCloseOnExec">Close-on-exec is set (received descriptors always have it).</param>
/// <param name="IsNonBlocking">O_NONBLOCK is set. It belongs to the open file description,
/// which sender and receiver share: changing it changes it for both.</param>
/// <param name="IsAppend">O_APPEND is set.</param>
/// <param name="IsListening">A socket in the listening state.</param>
/// <param name="AddressFamily">For a socket: <see cref="AddressFamily.Unix"/>,
/// <see cref="AddressFamily.InterNetwork"/>, <see cref="AddressFamily.InterNetworkV6"/> or
/// <see cref="AddressFamily.Unknown"/>; <see cref="AddressFamily.Unspecified"/> otherwise.</param>
/// <param name="SocketType">For a socket: Stream, Dgram, Seqpacket or Unknown;
/// <see cref="SocketType.Unknown"/> otherwise.</param>
/// <param name="Size">For a regular file or memfd: its size in bytes; otherwise null.</param>
/// <param name="Seals">For a memfd: the seals in force; otherwise <see cref="FdSeals.None"/>.</param>
public readonly record struct FdInfo(
    FdKind Kind,
    FdAccess Access,
    bool IsCloseOnExec,
    bool IsNonBlocking,
    bool IsAppend,
    bool IsListening,
    AddressFamily AddressFamily,
    SocketType SocketType,
    long? Size,
    FdSeals Seals)
{
    /// <summary>Whether this is a socket (<see cref="FdKind.Socket"/>).</summary>
    public bool IsSocket => Kind == FdKind.Socket;

    internal static FdInfo FromNative(in Interop.FdInfoNative n) => new(
        Kind: (FdKind)n.Kind,
        Access: (FdAccess)n.Access,
        IsCloseOnExec: (n.Flags & Interop.FDSEND_FD_CLOEXEC) != 0,
        IsNonBlocking: (n.Flags & Interop.FDSEND_FD_NONBLOCK) != 0,
        IsAppend: (n.Flags & Interop.FDSEND_FD_APPEND) != 0,
        IsListening: (n.Flags & Interop.FDSEND_FD_LISTENING) != 0,
        AddressFamily: n.Kind != (int)FdKind.Socket ? AddressFamily.Unspecified : n.Family switch
        {
            Interop.FDSEND_FAMILY_UNIX => AddressFamily.Unix,
            Interop.FDSEND_FAMILY_INET => AddressFamily.InterNetwork,
            Interop.FDSEND_FAMILY_INET6 => AddressFamily.InterNetworkV6,
            _ => AddressFamily.Unknown,
        },
        SocketType: n.SocketType switch
        {
            Interop.FDSEND_SOCK_STREAM => SocketType.Stream,
            Interop.FDSEND_SOCK_DGRAM => SocketType.Dgram,
            Interop.FDSEND_SOCK_SEQPACKET => SocketType.Seqpacket,
            _ => SocketType.Unknown,
        },
        Size: n.Size >= 0 ? n.Size : null,
        Seals: (FdSeals)n.Seals);

    /// <summary>The FDSEND_FAMILY_* value that <see cref="FromNative"/> reports as
    /// <paramref name="family"/>; null for a family it never reports.</summary>
    internal static int? NativeFamily(AddressFamily family) => family switch
    {
        AddressFamily.Unix => Interop.FDSEND_FAMILY_UNIX,
        AddressFamily.InterNetwork => Interop.FDSEND_FAMILY_INET,
        AddressFamily.InterNetworkV6 => Interop.FDSEND_FAMILY_INET6,
        AddressFamily.Unknown => Interop.FDSEND_FAMILY_OTHER, // any other family
        _ => null,
    };

    /// <summary>The FDSEND_SOCK_* value that <see cref="FromNative"/> reports as
    /// <paramref name="type"/>; null for a type it never reports.</summary>
    internal static int? NativeSocketType(SocketType type) => type switch
    {
        SocketType.Stream => Interop.FDSEND_SOCK_STREAM,
        SocketType.Dgram => Interop.FDSEND_SOCK_DGRAM,
        SocketType.Seqpacket => Interop.FDSEND_SOCK_SEQPACKET,
        SocketType.Unknown => 0, // any other type
        _ => null,
    };
}
