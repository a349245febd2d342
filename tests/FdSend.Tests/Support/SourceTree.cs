// SPDX-License-Identifier: MIT
// Files of the FdSend source tree the tests run from (the conformance sets shared with the C
// tests), found by walking up from the test's directory.
namespace FdSend.Tests.Support;

public static class SourceTree
{
    /// <summary>The file at <paramref name="relativePath"/> (e.g.
    /// "tests/conformance/channel-vectors.txt") below the nearest directory above the test's
    /// own that has it; null when the tests run outside the source tree.</summary>
    public static string? FindFile(string relativePath)
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string p = Path.Combine(d.FullName, relativePath);
            if (File.Exists(p))
                return p;
        }
        return null;
    }
}
