// SPDX-License-Identifier: MIT
// The protocol is language-neutral: the C program native/examples/handoff.c and the .NET
// HandoffServer (FdSend.TestPeer) hand one TCP listener back and forth under load.
using System.Diagnostics;
using System.Text;
using FdSend.Handoff.Tests.Support;

namespace FdSend.Handoff.Tests;

[TestFixture]
[NonParallelizable]
public sealed class InteropTests
{
    /// <summary>native/examples/handoff, as ./build.sh builds it.</summary>
    private static string? CProgram()
    {
        string root = AppContext.BaseDirectory;
        while (root.Length > 1 && !File.Exists(Path.Combine(root, "FdSend.sln")))
            root = Path.GetDirectoryName(root)!;
        string rid = $"linux-{(System.Runtime.InteropServices.RuntimeInformation.OSArchitecture == System.Runtime.InteropServices.Architecture.Arm64 ? "arm64" : "x64")}";
        string path = Path.Combine(root, "build", $"native-{rid}", "native", "examples", "handoff");
        return File.Exists(path) ? path : null;
    }

    /// <summary>The C program serving <c>web</c> on 127.0.0.1:<paramref name="port"/>, its
    /// log collected.</summary>
    private sealed class CPeer : IDisposable
    {
        private readonly StringBuilder _log = new();

        public CPeer(string program, string control, int port)
        {
            var psi = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (string a in new[] { "serve", "--control", control, "--listen", $"web=127.0.0.1:{port}", "--ready-timeout", "10000" })
                psi.ArgumentList.Add(a);
            Process = Process.Start(psi)!;
            Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) { _log.AppendLine(e.Data); Monitor.PulseAll(_log); } };
            Process.OutputDataReceived += (_, _) => { };
            Process.BeginErrorReadLine();
            Process.BeginOutputReadLine();
        }

        public Process Process { get; }

        public string Log { get { lock (_log) return _log.ToString(); } }

        public void WaitForLog(string text, int ms = 20_000)
        {
            var sw = Stopwatch.StartNew();
            lock (_log)
            {
                while (!_log.ToString().Contains(text, StringComparison.Ordinal))
                {
                    int left = ms - (int)sw.ElapsedMilliseconds;
                    if (left <= 0)
                        Assert.Fail($"the C handoff program did not log '{text}': {_log}");
                    Monitor.Wait(_log, left);
                }
            }
        }

        public int WaitForExit(int ms = 20_000)
        {
            if (!Process.WaitForExit(ms))
                Assert.Fail($"the C handoff program did not exit: {Log}");
            Process.WaitForExit();
            return Process.ExitCode;
        }

        public void Dispose()
        {
            if (!Process.HasExited)
                Process.Kill();
            Process.Dispose();
        }
    }

    [Test]
    [CancelAfter(90_000)]
    public async Task C_to_dotnet_to_C_under_load_refuses_and_fails_nothing()
    {
        string? program = CProgram();
        if (program is null)
            Assert.Ignore("native/examples/handoff is not built here (./build.sh builds it)");
        using var dir = new TempDir();
        string control = Path.Combine(dir.Path, "handoff.sock");
        int port;
        using (var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp))
        {
            probe.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
            port = ((System.Net.IPEndPoint)probe.LocalEndPoint!).Port;
        }

        using var first = new CPeer(program, control, port);
        first.WaitForLog("control socket ready");
        await using var load = new LoadClient(port);
        load.WaitForServed(first.Process.Id, 10);

        // C incumbent -> .NET successor
        using HandoffPeerProcess dotnet = HandoffPeerProcess.Start(["serve", "--control", control, "--tcp", $"web=127.0.0.1:{port}"]);
        Assert.That(dotnet.WaitForLine("start "), Does.StartWith($"start successor=true incumbent={first.Process.Id} "), dotnet.ToString());
        dotnet.WaitForLine("ready");
        Assert.That(first.WaitForExit(), Is.EqualTo(0), first.Log);
        load.WaitForServed(dotnet.Pid, 10);
        Assert.That(dotnet.Stderr, Does.Not.Contain("not using the inherited"), "the C listener was taken, not rebound");

        // .NET incumbent -> C successor
        using var last = new CPeer(program, control, port);
        last.WaitForLog("control socket ready");
        dotnet.WaitForLine("superseded", 20_000);
        Assert.That(dotnet.WaitForExit(20_000), Is.EqualTo(0), dotnet.ToString());
        load.WaitForServed(last.Process.Id, 10);

        await load.StopAndAssertCleanAsync();
        TestContext.Out.WriteLine(load.Summary);
        Assert.That(load.ServedByPid(first.Process.Id), Is.GreaterThan(0));
        Assert.That(load.ServedByPid(dotnet.Pid), Is.GreaterThan(0));
        Assert.That(await LoadClient.RequestAsync(port), Is.EqualTo(last.Process.Id), "the C successor serves");
        last.Process.Kill(); // SIGKILL; a SIGTERM would also do
    }
}
