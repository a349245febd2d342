// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend.Tests;

/// <summary>The native library is found the way a NuGet consumer's app finds it: in
/// runtimes/&lt;rid&gt;/native/ under the output folder, with no environment tricks.</summary>
[TestFixture]
public class NativeLibraryTests
{
    [Test]
    public void The_native_library_loads_from_the_runtimes_folder_of_the_output()
    {
        Assert.That(FdPassing.NativeVersion, Does.Match(@"^\d+\.\d+\.\d+$"));
        string rid = RuntimeInformation.RuntimeIdentifier;
        string expected = Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native", "libfdsend.so");
        Assert.That(File.Exists(expected), Is.True, $"{expected} is copied to the output");
        Assert.That(File.Exists(Path.Combine(AppContext.BaseDirectory, "libfdsend.so")), Is.False,
            "no copy beside the assemblies: the runtimes layout alone must work");
        string maps = File.ReadAllText("/proc/self/maps");
        Assert.That(maps, Does.Contain(expected), "the loaded libfdsend is the one in runtimes/<rid>/native");
    }

    [Test]
    public void The_native_limit_matches_the_managed_constant()
    {
        Assert.That(FdPassing.NativeMaxFds, Is.EqualTo(FdPassing.MaxFds));
    }
}
