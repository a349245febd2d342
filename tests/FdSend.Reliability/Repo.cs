// SPDX-License-Identifier: MIT
using System.Diagnostics;

namespace FdSend.Reliability;

/// <summary>Where the repository's reliability programs and peer scripts are, and how to
/// run them as separate processes.</summary>
internal static class Repo
{
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        string? d = AppContext.BaseDirectory;
        while (d != null && !File.Exists(Path.Combine(d, "build.sh")))
            d = Path.GetDirectoryName(d);
        return d ?? throw new InvalidOperationException("repository root (build.sh) not found");
    }

    public static string Interop(string file) => Path.Combine(Root, "tests", "interop", file);

    /// <summary>A C program built by eng/reliability.sh (reliability_build_c); the test is
    /// skipped, visibly, when it has not been built.</summary>
    public static string CProgram(string name)
    {
        string p = Path.Combine(Root, "build", "reliability", name);
        if (!File.Exists(p))
            Assert.Ignore($"SKIPPED: {p} is not built (run ./build.sh test, which builds it first)");
        return p;
    }

    public static bool HasCommand(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
            .Any(dir => dir.Length > 0 && File.Exists(Path.Combine(dir, name)));

    public static bool PerlHasFdPass()
    {
        if (!HasCommand("perl"))
            return false;
        using var p = Process.Start(new ProcessStartInfo("perl", "-MIO::FDPass -e1")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        })!;
        p.WaitForExit();
        return p.ExitCode == 0;
    }

    /// <summary>A process whose output is collected; disposing kills it if still running.</summary>
    public sealed class Child : IDisposable
    {
        private readonly Process _p;
        private readonly System.Text.StringBuilder _out = new();

        public Child(string file, params string[] args)
        {
            var psi = new ProcessStartInfo(file)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string a in args)
                psi.ArgumentList.Add(a);
            _p = new Process { StartInfo = psi };
            _p.OutputDataReceived += (_, e) => { if (e.Data != null) lock (_out) _out.AppendLine(e.Data); };
            _p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (_out) _out.AppendLine(e.Data); };
            _p.Start();
            _p.BeginOutputReadLine();
            _p.BeginErrorReadLine();
        }

        public int Id => _p.Id;

        public string Output { get { lock (_out) return _out.ToString(); } }

        public int Wait(int ms = 60000)
        {
            if (!_p.WaitForExit(ms))
            {
                _p.Kill();
                _p.WaitForExit();
                Assert.Fail($"{_p.StartInfo.FileName} did not finish in {ms} ms:\n{Output}");
            }
            _p.WaitForExit(); // flush the output events
            return _p.ExitCode;
        }

        public void Kill()
        {
            if (!_p.HasExited)
                _p.Kill();
            _p.WaitForExit();
        }

        public void Dispose()
        {
            try { if (!_p.HasExited) { _p.Kill(); _p.WaitForExit(); } }
            catch (InvalidOperationException) { }
            _p.Dispose();
        }
    }

    /// <summary>A fresh directory for socket paths; deleted on dispose.</summary>
    public sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("fdsend-rel-").FullName;
        public string Sock(string name) => System.IO.Path.Combine(Path, name);
        public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
    }
}
