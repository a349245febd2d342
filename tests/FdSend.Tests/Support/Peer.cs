// SPDX-License-Identifier: MIT
// Starts FdSend.TestPeer as a real child process connected to a listener here.
using System.Diagnostics;
using System.Text;

namespace FdSend.Tests.Support;

public sealed class Peer : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr;

    private Peer(Process process, Socket connection, StringBuilder stderr)
    {
        _process = process;
        Connection = connection;
        _stderr = stderr;
    }

    /// <summary>This side of the connection the child made.</summary>
    public Socket Connection { get; }

    public int Pid => _process.Id;

    public static string PeerDll => Path.Combine(AppContext.BaseDirectory, "FdSend.TestPeer.dll");

    /// <summary>The dotnet host that runs the tests (dotnet test sets DOTNET_HOST_PATH); the
    /// child process of the tests (FdSend.TestPeer) runs under it.</summary>
    public static string DotnetHost()
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
            return host;
        string? self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet")
            return self;
        return "dotnet";
    }

    /// <summary>Starts the peer with a command, waits for it to connect (30 s).</summary>
    public static Peer Start(TempDir dir, string command, params string[] args)
    {
        string path = dir.NewPath("peer");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
        listener.Listen(1);

        var psi = new ProcessStartInfo(DotnetHost())
        {
            UseShellExecute = false,
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        psi.ArgumentList.Add(PeerDll);
        psi.ArgumentList.Add(command);
        psi.ArgumentList.Add(path);
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        Process process = Process.Start(psi) ?? throw new InvalidOperationException("could not start the test peer");
        var stderr = new StringBuilder();
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();

        if (!listener.Poll(TimeSpan.FromSeconds(30), SelectMode.SelectRead))
        {
            process.Kill();
            throw new TimeoutException($"the test peer did not connect: {stderr}");
        }
        var peer = new Peer(process, listener.Accept(), stderr);
        peer.Connection.ReceiveTimeout = 30_000;
        peer.Connection.SendTimeout = 30_000;
        return peer;
    }

    /// <summary>Reads the peer's report (everything until it closes its end). A connection
    /// reset (the child died with data unread) fails the test with the child's exit code and
    /// stderr, which say why.</summary>
    public string ReadReport()
    {
        try
        {
            return TestData.ReadToEnd(Connection);
        }
        catch (SocketException e)
        {
            Assert.Fail($"reading the test peer's report failed ({e.SocketErrorCode}: {e.Message}); {ExitStatus()}");
            throw; // not reached
        }
    }

    /// <summary>Waits for the peer to exit and asserts that it succeeded.</summary>
    public void AssertExitedCleanly()
    {
        if (!_process.WaitForExit(30_000))
        {
            _process.Kill();
            Assert.Fail("the test peer did not exit");
        }
        Assert.That(_process.ExitCode, Is.EqualTo(0), $"test peer failed: {ExitStatus()}");
    }

    /// <summary>Waits (30 s at most) for the peer to exit and returns its exit code (128 + the
    /// signal number when a signal killed it).</summary>
    public int WaitForExitCode()
    {
        Assert.That(_process.WaitForExit(30_000), Is.True, "the test peer did not exit");
        return _process.ExitCode;
    }

    /// <summary>The child's exit code and stderr, once it has exited (10 s at most).</summary>
    private string ExitStatus()
    {
        if (!_process.WaitForExit(10_000))
            return "the test peer is still running";
        _process.WaitForExit(); // flush the async stderr reader
        lock (_stderr)
            return $"the test peer exited with {_process.ExitCode}, stderr: {_stderr}";
    }

    public void Dispose()
    {
        Connection.Dispose();
        if (!_process.HasExited)
        {
            if (!_process.WaitForExit(10_000))
                _process.Kill(entireProcessTree: true);
        }
        _process.Dispose();
    }
}
