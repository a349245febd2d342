// SPDX-License-Identifier: MIT
using System.Reflection;
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>
/// Finds libfdsend for this assembly's P/Invokes (its only native library). Registered once,
/// by the assembly's module initializer, before any of its code runs; it keeps no state of its
/// own.
/// </summary>
/// <remarks>
/// Order: (1) the runtime's default probing, which is what works for a NuGet consumer (the
/// package's runtimes/&lt;rid&gt;/native asset is listed in the app's deps.json, and
/// self-contained/NativeAOT publishes put it beside the app); (2) the
/// <c>runtimes/&lt;rid&gt;/native/</c> folders under <see cref="AppContext.BaseDirectory"/>,
/// walking the RID fallback chain (linux-musl-x64 then linux-x64, the same fallback NuGet
/// applies), which is the layout a ProjectReference consumer gets.
/// When neither finds a libfdsend file for this process's RID, the first call into the
/// library throws <see cref="PlatformNotSupportedException"/> naming the RID and the RIDs
/// this build of FdSend carries (<see cref="CarriedRuntimeIdentifiers"/>, written into the
/// assembly by FdSend.csproj from the runtimes folder it packs). A library file that is
/// there but does not load (wrong architecture, a missing C library) is left to the
/// runtime's <see cref="DllNotFoundException"/>, whose message carries the loader's error.
/// </remarks>
internal static class NativeLibraryResolver
{
    /// <summary>Runs exactly once, when the runtime loads this assembly. A module initializer
    /// rather than <see cref="Interop"/>'s static constructor: a static constructor makes every
    /// method that calls a P/Invoke and was compiled before the class was initialized check
    /// for it on each call (bench/PROFILE.md section 19). Registering a resolver is cheap and
    /// touches nothing else.</summary>
#pragma warning disable CA2255 // A library's module initializer: here it only registers the resolver that its own P/Invokes need.
    [System.Runtime.CompilerServices.ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register() =>
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraryResolver).Assembly, Resolve);

    private static nint Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) =>
        libraryName == Interop.Libraries.FdSend ? ResolveFdSend(libraryName, assembly, searchPath) : 0;

    private static nint ResolveFdSend(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        // NativeLibrary.TryLoad does not call back into this resolver.
        if (NativeLibrary.TryLoad(libraryName, assembly, searchPath, out nint handle))
            return handle;

        string fileName = NativeFileName();
        bool found = false;
        foreach (string rid in RidFallbacks())
        {
            string candidate = Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native", fileName);
            if (!File.Exists(candidate))
                continue;
            found = true;
            if (NativeLibrary.TryLoad(candidate, out handle))
                return handle;
        }
        if (found || NativeFileBesideApp(fileName))
            return 0; // there but not loadable: the runtime's DllNotFoundException says why
        throw MissingNativeLibrary(RuntimeInformation.RuntimeIdentifier, fileName, CarriedRuntimeIdentifiers());
    }

    /// <summary>A self-contained or NativeAOT publish puts the library beside the app.</summary>
    private static bool NativeFileBesideApp(string fileName) =>
        File.Exists(Path.Combine(AppContext.BaseDirectory, fileName));

    /// <summary>The exception for "this package has no libfdsend for this platform".</summary>
    internal static PlatformNotSupportedException MissingNativeLibrary(string rid, string fileName, IReadOnlyList<string> carried) =>
        new($"FdSend has no native library for this platform ({rid}): no {fileName} was found for " +
            $"{rid} or the RIDs it falls back to. This FdSend package carries native libraries for: " +
            (carried.Count == 0 ? "(none)" : string.Join(", ", carried)) + ". " +
            (carried.Contains(rid)
                ? $"The package has {rid}'s library, so the app's build or publish left it out (look for runtimes/{rid}/native/{fileName} in its output)."
                : $"On another Unix, build libfdsend from source (see the README) and put it where the app " +
                  $"loads native libraries from (beside the app, or runtimes/{rid}/native/)."));

    /// <summary>The RIDs whose libfdsend this assembly was built (and packed) with, from the
    /// assembly metadata FdSend.csproj writes (FdSend.NativeRuntimeIdentifiers).</summary>
    internal static IReadOnlyList<string> CarriedRuntimeIdentifiers()
    {
        foreach (AssemblyMetadataAttribute a in typeof(NativeLibraryResolver).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>())
        {
            if (a.Key == "FdSend.NativeRuntimeIdentifiers")
                return (a.Value ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        }
        return [];
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
#if NET9_0_OR_GREATER
        Architecture.RiscV64 => "riscv64", // (net8.0's Architecture has no RiscV64; the default arm names it the same)
#endif
        Architecture.S390x => "s390x",
        Architecture.Ppc64le => "ppc64le",
        var other => other.ToString().ToLowerInvariant(),
    };
}
