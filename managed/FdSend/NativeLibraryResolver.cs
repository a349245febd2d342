// SPDX-License-Identifier: MIT
using System.Reflection;
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>
/// Finds libfdsend (and the C library) for this assembly's P/Invokes. Registered once, from
/// <see cref="Interop"/>'s static constructor; the only static mutable state of FdSend.
/// </summary>
/// <remarks>
/// Order: (1) the runtime's default probing, which is what works for a NuGet consumer (the
/// package's runtimes/&lt;rid&gt;/native asset is listed in the app's deps.json, and
/// self-contained/NativeAOT publishes put it beside the app); (2) the
/// <c>runtimes/&lt;rid&gt;/native/</c> folders under <see cref="AppContext.BaseDirectory"/>,
/// walking the RID fallback chain (linux-musl-x64 then linux-x64, the same fallback NuGet
/// applies), which is the layout a ProjectReference consumer gets.
/// Returning zero lets the runtime throw its usual <see cref="DllNotFoundException"/>.
/// </remarks>
internal static class NativeLibraryResolver
{
    /// <summary>Called exactly once, by <see cref="Interop"/>'s static constructor.</summary>
    internal static void Register() =>
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraryResolver).Assembly, Resolve);

    private static nint Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        return libraryName switch
        {
            Interop.Libraries.FdSend => ResolveFdSend(libraryName, assembly, searchPath),
            Interop.Libraries.Libc => ResolveLibc(),
            _ => 0,
        };
    }

    private static nint ResolveFdSend(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        // NativeLibrary.TryLoad does not call back into this resolver.
        if (NativeLibrary.TryLoad(libraryName, assembly, searchPath, out nint handle))
            return handle;

        string fileName = NativeFileName();
        foreach (string rid in RidFallbacks())
        {
            if (TryLoadFrom(AppContext.BaseDirectory, rid, fileName, out handle))
                return handle;
        }
        return 0;
    }

    private static bool TryLoadFrom(string baseDir, string rid, string fileName, out nint handle)
    {
        string candidate = Path.Combine(baseDir, "runtimes", rid, "native", fileName);
        handle = 0;
        return File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out handle);
    }

    private static string NativeFileName() =>
        OperatingSystem.IsWindows() ? "libfdsend.dll" :
        OperatingSystem.IsMacOS() || OperatingSystem.IsIOS() || OperatingSystem.IsTvOS() ||
        OperatingSystem.IsMacCatalyst() ? "libfdsend.dylib" :
        "libfdsend.so";

    /// <summary>This process's RID first, then the portable RIDs it falls back to.</summary>
    private static IEnumerable<string> RidFallbacks()
    {
        string rid = RuntimeInformation.RuntimeIdentifier;
        string arch = ArchName();
        string os = OsName();
        yield return rid;
        // NuGet's RID graph: linux-musl-x64 -> linux-x64; a distro-specific RID of a
        // non-portable runtime build (e.g. fedora.40-x64) -> its portable RID.
        string portable = $"{os}-{arch}";
        if (!string.Equals(portable, rid, StringComparison.Ordinal))
            yield return portable;
    }

    private static string OsName() =>
        OperatingSystem.IsLinux() ? "linux" :
        OperatingSystem.IsMacOS() ? "osx" :
        OperatingSystem.IsFreeBSD() ? "freebsd" :
        OperatingSystem.IsWindows() ? "win" :
        // illumos, solaris, ...: the RID's own first part.
        RuntimeInformation.RuntimeIdentifier.Split('-')[0].Split('.')[0];

    private static string ArchName() => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => "x64",
        Architecture.X86 => "x86",
        Architecture.Arm64 => "arm64",
        Architecture.Arm => "arm",
        Architecture.Armv6 => "armv6",
        Architecture.LoongArch64 => "loongarch64",
        Architecture.RiscV64 => "riscv64",
        Architecture.S390x => "s390x",
        Architecture.Ppc64le => "ppc64le",
        var other => other.ToString().ToLowerInvariant(),
    };

    /// <summary>The C library's real file name: dlopen("libc") finds nothing on glibc, where
    /// libc.so is a linker script.</summary>
    private static nint ResolveLibc()
    {
        string[] candidates =
            OperatingSystem.IsLinux() ? ["libc.so.6", $"libc.musl-{MuslArch()}.so.1", "libc.so"] :
            OperatingSystem.IsMacOS() || OperatingSystem.IsIOS() || OperatingSystem.IsTvOS() ||
            OperatingSystem.IsMacCatalyst() ? ["/usr/lib/libSystem.B.dylib", "libc.dylib"] :
            OperatingSystem.IsFreeBSD() ? ["libc.so.7", "libc.so"] :
            ["libc.so", "libc.so.1", "libc"];
        foreach (string name in candidates)
        {
            if (NativeLibrary.TryLoad(name, out nint handle))
                return handle;
        }
        return 0;
    }

    private static string MuslArch() => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => "x86_64",
        Architecture.Arm64 => "aarch64",
        Architecture.X86 => "i386",
        Architecture.Arm => "armhf",
        var other => other.ToString().ToLowerInvariant(),
    };
}
