// SPDX-License-Identifier: MIT
// What a user can observe about descriptors, through libc: identity (fstat), flags
// (fcntl), the fd table (/proc/self/fd), socketpair(2). Linux x64/arm64 (struct stat
// starts with st_dev and st_ino, both 64-bit, on both).
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Reliability;

/// <summary>st_dev, st_ino and O_ACCMODE of an open descriptor.</summary>
internal readonly record struct FdIdentity(ulong Device, ulong Inode, int AccessMode)
{
    public override string ToString() => $"{Device}:{Inode}/{AccessMode}";
}

internal static unsafe partial class Posix
{
    private const string Libc = "libc.so.6";
    public const int F_GETFD = 1, F_GETFL = 3, FD_CLOEXEC = 1, O_ACCMODE = 3;
    public const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_SEQPACKET = 5, SOCK_CLOEXEC = 0x80000;

    [LibraryImport(Libc, EntryPoint = "fstat", SetLastError = true)]
    private static partial int FStat(int fd, byte* buf);

    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int cmd, int arg);

    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Libc, EntryPoint = "socketpair", SetLastError = true)]
    private static partial int SocketPairNative(int domain, int type, int protocol, int* sv);

    public static bool Supported =>
        OperatingSystem.IsLinux() &&
        RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64;

    public static FdIdentity Identify(int fd)
    {
        byte* st = stackalloc byte[512];
        if (FStat(fd, st) != 0)
            throw new IOException($"fstat({fd}): errno {Marshal.GetLastPInvokeError()}");
        int fl = Fcntl(fd, F_GETFL, 0);
        return new FdIdentity(*(ulong*)st, *(ulong*)(st + 8), fl & O_ACCMODE);
    }

    public static FdIdentity Identify(SafeHandle h)
    {
        bool added = false;
        h.DangerousAddRef(ref added);
        try { return Identify((int)h.DangerousGetHandle()); }
        finally { if (added) h.DangerousRelease(); }
    }

    public static bool IsCloseOnExec(int fd) => (Fcntl(fd, F_GETFD, 0) & FD_CLOEXEC) != 0;

    public static bool IsOpen(int fd) => Fcntl(fd, F_GETFD, 0) >= 0;

    /// <summary>Descriptors open in this process (the enumeration's own is not counted).</summary>
    public static int FdCount() => Directory.GetFileSystemEntries("/proc/self/fd").Length - 1;

    /// <summary>fd number -> target of every open descriptor.</summary>
    public static Dictionary<int, string> Snapshot()
    {
        var d = new Dictionary<int, string>();
        foreach (string e in Directory.GetFileSystemEntries("/proc/self/fd"))
        {
            try
            {
                // null: the descriptor closed since the listing (the listing's own one)
                string? target = new FileInfo(e).LinkTarget;
                if (target != null)
                    d[int.Parse(Path.GetFileName(e), System.Globalization.CultureInfo.InvariantCulture)] = target;
            }
            catch (IOException) { }
        }
        return d;
    }

    /// <summary>Descriptors open now that were not open in <paramref name="before"/>, apart
    /// from what the .NET runtime opens lazily on its own (assemblies and native libraries it
    /// maps as it loads them). A descriptor this test received or created and did not close
    /// shows up here: a temporary file, a socket, a pipe.</summary>
    public static List<string> NewFds(Dictionary<int, string> before)
    {
        var leaks = new List<string>();
        foreach (var (fd, target) in Snapshot())
        {
            if (before.TryGetValue(fd, out string? was) && was == target)
                continue;
            if (target.EndsWith(".dll", StringComparison.Ordinal) || target.EndsWith(".so", StringComparison.Ordinal) ||
                target.Contains(".so.", StringComparison.Ordinal) || target.EndsWith(".pdb", StringComparison.Ordinal) ||
                target.StartsWith("/proc/", StringComparison.Ordinal))
                continue;
            leaks.Add($"{fd} -> {target}");
        }
        return leaks;
    }

    /// <summary>The targets of every open descriptor (for a leak report).</summary>
    public static string DescribeFds()
    {
        var lines = new List<string>();
        foreach (string e in Directory.GetFileSystemEntries("/proc/self/fd"))
        {
            string target;
            try { target = new FileInfo(e).LinkTarget ?? "?"; }
            catch (IOException) { target = "(gone)"; }
            lines.Add($"{Path.GetFileName(e)} -> {target}");
        }
        return string.Join("\n", lines);
    }

    /// <summary>A connected pair of Unix sockets (SOCK_STREAM or SOCK_SEQPACKET).</summary>
    public static (Socket, Socket) SocketPair(SocketType type)
    {
        int* sv = stackalloc int[2];
        int t = (type == SocketType.Seqpacket ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC;
        if (SocketPairNative(AF_UNIX, t, 0, sv) != 0)
            throw new IOException($"socketpair: errno {Marshal.GetLastPInvokeError()}");
        return (new Socket(new SafeSocketHandle((IntPtr)sv[0], true)),
                new Socket(new SafeSocketHandle((IntPtr)sv[1], true)));
    }

    /// <summary>A raw socketpair as two owning handles.</summary>
    public static (SafeFileHandle, SafeFileHandle) RawSocketPair()
    {
        int* sv = stackalloc int[2];
        if (SocketPairNative(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            throw new IOException($"socketpair: errno {Marshal.GetLastPInvokeError()}");
        return (new SafeFileHandle((IntPtr)sv[0], true), new SafeFileHandle((IntPtr)sv[1], true));
    }
}
