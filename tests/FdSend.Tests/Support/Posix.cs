// SPDX-License-Identifier: MIT
// Small POSIX helpers the tests (and the test peer) use to observe what a user would:
// inodes (fstat), fd flags (/proc/self/fdinfo), open fds (/proc/self/fd), ids, limits.
// Linux x64/arm64 only: the tests run there.
using System.Globalization;
using System.Runtime.InteropServices;

namespace FdSend.Tests.Support;

/// <summary>The identity of an open file: st_dev and st_ino.</summary>
internal readonly record struct FileId(ulong Device, ulong Inode)
{
    public override string ToString() => $"{Device}:{Inode}";

    public static FileId Parse(string s)
    {
        string[] parts = s.Split(':');
        return new FileId(ulong.Parse(parts[0], CultureInfo.InvariantCulture),
                          ulong.Parse(parts[1], CultureInfo.InvariantCulture));
    }
}

internal static unsafe partial class Posix
{
    private const string Libc = "libc.so.6";

    [LibraryImport(Libc, EntryPoint = "fstat", SetLastError = true)]
    private static partial int FStatNative(int fd, byte* statBuffer);

    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenNative(string path, int flags);

    /// <summary>A read-only, close-on-exec descriptor of a directory (.NET's own file APIs
    /// refuse to open one): the directory fd of the tests about what a receiver may get.</summary>
    public static Microsoft.Win32.SafeHandles.SafeFileHandle OpenDirectory(string path)
    {
        const int O_RDONLY = 0, O_DIRECTORY = 0x10000, O_CLOEXEC = 0x80000; // Linux x86-64/arm64
        int fd = OpenNative(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            throw new IOException($"open({path}, O_DIRECTORY) failed: errno {Marshal.GetLastPInvokeError()}");
        return new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
    }

    [LibraryImport(Libc, EntryPoint = "dup", SetLastError = true)]
    public static partial int Dup(int fd);

    [LibraryImport(Libc, EntryPoint = "geteuid")]
    public static partial uint GetEUid();

    [LibraryImport(Libc, EntryPoint = "getegid")]
    public static partial uint GetEGid();

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Max;
    }

    private const int RLIMIT_NOFILE = 7;

    [LibraryImport(Libc, EntryPoint = "setrlimit", SetLastError = true)]
    private static partial int SetRLimit(int resource, RLimit* limit);

    [LibraryImport(Libc, EntryPoint = "getrlimit", SetLastError = true)]
    private static partial int GetRLimit(int resource, RLimit* limit);

    /// <summary>st_dev:st_ino of an open fd. struct stat starts with st_dev, st_ino (both
    /// 64-bit) on Linux x86-64 and arm64.</summary>
    public static FileId GetFileId(int fd)
    {
        if (!OperatingSystem.IsLinux() ||
            RuntimeInformation.ProcessArchitecture is not (Architecture.X64 or Architecture.Arm64))
            throw new PlatformNotSupportedException("the struct stat layout here is Linux x64/arm64");
        byte* buffer = stackalloc byte[512];
        if (FStatNative(fd, buffer) != 0)
            throw new IOException($"fstat({fd}) failed: errno {Marshal.GetLastPInvokeError()}");
        return new FileId(*(ulong*)buffer, *(ulong*)(buffer + 8));
    }

    public static FileId GetFileId(SafeHandle handle)
    {
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            return GetFileId((int)handle.DangerousGetHandle());
        }
        finally
        {
            if (added)
                handle.DangerousRelease();
        }
    }

    public static FileId GetFileId(string path)
    {
        using var h = File.OpenHandle(path);
        return GetFileId(h);
    }

    /// <summary>Whether fd is open in this process.</summary>
    public static bool IsOpen(int fd) => File.Exists($"/proc/self/fdinfo/{fd}");

    /// <summary>Whether fd is open in this process on the file <paramref name="id"/>. After a
    /// close, ask this rather than <see cref="IsOpen"/>: another thread of the process (each
    /// new runtime thread opens a few descriptors for a moment) may already have the number.</summary>
    public static bool IsOpenOn(int fd, FileId id)
    {
        try
        {
            return IsOpen(fd) && GetFileId(fd) == id;
        }
        catch (IOException)
        {
            return false; // closed between the two looks
        }
    }

    /// <summary>The fd's open-file flags from /proc/self/fdinfo ("flags:" is octal and
    /// includes O_CLOEXEC (02000000) as the kernel reports close-on-exec there).</summary>
    public static int GetFdInfoFlags(int fd)
    {
        foreach (string line in File.ReadAllLines($"/proc/self/fdinfo/{fd}"))
        {
            if (line.StartsWith("flags:", StringComparison.Ordinal))
                return Convert.ToInt32(line.Substring(6).Trim(), 8);
        }
        throw new IOException($"no flags line in /proc/self/fdinfo/{fd}");
    }

    public const int O_NONBLOCK = 0x800;   // 04000
    public const int O_CLOEXEC = 0x80000;  // 02000000

    public static bool IsCloseOnExec(int fd) => (GetFdInfoFlags(fd) & O_CLOEXEC) != 0;

    public static bool IsNonBlocking(int fd) => (GetFdInfoFlags(fd) & O_NONBLOCK) != 0;

    /// <summary>The numbers of the open descriptors of this process.</summary>
    public static int[] OpenFds()
    {
        var list = new List<int>();
        foreach (string entry in Directory.GetFileSystemEntries("/proc/self/fd"))
        {
            int fd = int.Parse(Path.GetFileName(entry), CultureInfo.InvariantCulture);
            if (IsOpen(fd)) // the enumeration's own directory fd is gone by now
                list.Add(fd);
        }
        return list.ToArray();
    }

    /// <summary>Sets this process's soft RLIMIT_NOFILE, keeping the hard limit (so that it
    /// can be raised back without privileges); returns the previous soft limit.</summary>
    public static ulong SetSoftOpenFileLimit(ulong soft)
    {
        RLimit l;
        if (GetRLimit(RLIMIT_NOFILE, &l) != 0)
            throw new IOException($"getrlimit failed: errno {Marshal.GetLastPInvokeError()}");
        ulong previous = l.Current;
        l.Current = soft;
        if (SetRLimit(RLIMIT_NOFILE, &l) != 0)
            throw new IOException($"setrlimit failed: errno {Marshal.GetLastPInvokeError()}");
        return previous;
    }

    /// <summary>
    /// The open descriptors that tests own or could leak: sockets, pipes, anonymous inodes and
    /// data files. Code files the runtime maps lazily (an assembly or .pdb loaded when an
    /// exception's stack trace is first rendered, or by the tiered-compilation worker, takes
    /// a descriptor that stays) are left out, or the count would change under the tests' feet.
    /// Of this process, or of process <paramref name="pid"/> (a child the test started).
    /// </summary>
    public static IReadOnlyList<(int Fd, string Target)> RelevantFds(int? pid = null)
    {
        var list = new List<(int, string)>();
        foreach (string entry in Directory.GetFileSystemEntries(pid is null ? "/proc/self/fd" : $"/proc/{pid}/fd"))
        {
            string target;
            try
            {
                target = new FileInfo(entry).LinkTarget ?? "?";
            }
            catch (IOException)
            {
                continue; // closed meanwhile (e.g. the enumeration's own directory)
            }
            if (target.EndsWith(".dll", StringComparison.Ordinal) || target.EndsWith(".pdb", StringComparison.Ordinal) ||
                target.EndsWith(".so", StringComparison.Ordinal) || target.Contains(".so.", StringComparison.Ordinal))
                continue;
            list.Add((int.Parse(Path.GetFileName(entry), CultureInfo.InvariantCulture), target));
        }
        return list;
    }
}

/// <summary>
/// This process's descriptor table filled up to a lowered soft RLIMIT_NOFILE, with exactly
/// the asked-for number of slots left free, until disposed (which closes the fillers and
/// restores the limit). What a receiver at its open-file limit looks like.
/// </summary>
/// <remarks>
/// The limit is not computed to the slot: the runtime opens descriptors of its own at any
/// time (an assembly loaded on first use keeps one, a new thread holds a pipe for a moment),
/// so a limit computed to the slot can already be used up when filling starts.
/// Instead the limit leaves some slack, every slot below it is filled until the kernel says
/// EMFILE, and then exactly <c>free</c> fillers are closed. Load and run everything the
/// test does at the limit once beforehand: at the limit, a first use that needs a descriptor
/// (loading libfdsend, an assembly) fails.
/// </remarks>
internal sealed class FullDescriptorTable : IDisposable
{
    private const int Slack = 16;
    private const int EMFILE = 24;

    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle _devNull;
    private readonly List<int> _fillers;
    private readonly ulong _previousSoftLimit;

    private FullDescriptorTable(Microsoft.Win32.SafeHandles.SafeFileHandle devNull, List<int> fillers, ulong previous)
    {
        _devNull = devNull;
        _fillers = fillers;
        _previousSoftLimit = previous;
    }

    /// <summary>Fills the table so that exactly <paramref name="free"/> descriptors can still
    /// be opened. Throws (having undone everything) if that cannot be arranged.</summary>
    public static FullDescriptorTable Leave(int free)
    {
        var devNull = File.OpenHandle("/dev/null");
        int source = (int)devNull.DangerousGetHandle();
        var fillers = new List<int>(capacity: 1024);
        // Descriptors above the limit stay open; only new ones must be below it. So the limit
        // is the number open now plus room, wherever the open ones are numbered (an inherited
        // descriptor may be numbered near the hard limit).
        ulong previous = Posix.SetSoftOpenFileLimit((ulong)(Posix.OpenFds().Length + free + Slack));
        var table = new FullDescriptorTable(devNull, fillers, previous);
        try
        {
            int fd;
            while (fillers.Count < fillers.Capacity && (fd = Posix.Dup(source)) >= 0)
                fillers.Add(fd);
            int errno = Marshal.GetLastPInvokeError();
            if (fillers.Count == fillers.Capacity || errno != EMFILE)
                throw new IOException($"filling the descriptor table stopped after {fillers.Count} with errno {errno}, not at EMFILE");
            if (fillers.Count < free)
                throw new IOException($"only {fillers.Count} slots were free below the lowered limit, {free} wanted");
            for (int i = 0; i < free; i++)
            {
                Posix.Close(fillers[^1]);
                fillers.RemoveAt(fillers.Count - 1);
            }
            return table;
        }
        catch
        {
            table.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (int fd in _fillers)
            Posix.Close(fd);
        _fillers.Clear();
        _devNull.Dispose();
        Posix.SetSoftOpenFileLimit(_previousSoftLimit);
    }
}
