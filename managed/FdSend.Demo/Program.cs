// The FdSend demo: four scenarios, each across real processes, printing what happens.
//   FdSend.Demo            run every scenario
//   FdSend.Demo files      1. a message and 12 open files sent to a child in one call
//   FdSend.Demo handoff    2. a TCP server hands its listening socket to a successor
//   FdSend.Demo sealed     3. sealed shared memory mapped by a child, an unsealed memfd refused
//   FdSend.Demo kestrel    4. an ASP.NET Core app (samples/HandoffWeb) handed over 3 times under load
//                          (not in the NativeAOT build of the demo, tests/FdSend.AotCheck)
// The other verbs are the child roles the demo starts itself.
using System.Diagnostics;
using System.Net.Sockets;

namespace FdSend.Demo;

internal static class Program
{
    private static int Main(string[] args)
    {
        try
        {
            string verb = args.Length == 0 ? "all" : args[0];
            return verb switch
            {
#if KESTREL_DEMO
                "all" => FilesDemo.Run() == 0 && HandoffDemo.Run() == 0 && SealedMemoryDemo.Run() == 0 && KestrelDemo.Run() == 0 ? 0 : 1,
                "kestrel" => KestrelDemo.Run(),
#else
                "all" => FilesDemo.Run() == 0 && HandoffDemo.Run() == 0 && SealedMemoryDemo.Run() == 0 ? 0 : 1,
#endif
                "files" => FilesDemo.Run(),
                "handoff" => HandoffDemo.Run(),
                "sealed" => SealedMemoryDemo.Run(),
                "files-child" when args.Length == 2 => FilesDemo.Child(args[1]),
                "handoff-server" when args.Length == 2 => HandoffDemo.Server(args[1]),
                "handoff-successor" when args.Length == 2 => HandoffDemo.Successor(args[1]),
                "sealed-child" when args.Length == 2 => SealedMemoryDemo.Child(args[1]),
                _ => Usage(),
            };
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"demo failed: {e}");
            return 1;
        }
    }

    private static int Usage()
    {
        Console.Error.WriteLine("usage: FdSend.Demo [files|handoff|sealed|kestrel]");
        return 2;
    }
}

/// <summary>Starting this same program again in another role, however it was launched.</summary>
internal static class Self
{
    public static ProcessStartInfo StartInfo(params string[] args)
    {
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false };
        // Launched as `dotnet FdSend.Demo.dll`: the host needs the assembly path again.
        // (An apphost or a NativeAOT binary is started directly.)
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet")
            psi.ArgumentList.Add(Environment.GetCommandLineArgs()[0]);
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        return psi;
    }

    public static Process Start(params string[] args) =>
        Process.Start(StartInfo(args)) ?? throw new InvalidOperationException("could not start a child process");

    public static string TempDir() => Directory.CreateTempSubdirectory("fdsend-demo-").FullName;

    /// <summary>
    /// The skeleton of a parent-and-child scenario: a temporary directory, a Unix socket there,
    /// the child role <paramref name="role"/> started with its path and accepted; then
    /// <paramref name="parent"/> (given the directory and the connection), and the child's end
    /// (<see cref="Finish"/>). The directory is deleted afterwards.
    /// </summary>
    public static int RunWithChild(string role, string success, Action<string, Socket> parent)
    {
        string dir = TempDir();
        try
        {
            string socketPath = Path.Combine(dir, role + ".sock");
            using Socket listener = ListenUnix(socketPath);
            using Process child = Start(role, socketPath);
            using Socket connection = listener.Accept();
            parent(dir, connection);
            return Finish(child, success);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A Unix stream socket listening at <paramref name="path"/>, for one child.</summary>
    public static Socket ListenUnix(string path)
    {
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        return listener;
    }

    /// <summary>A Unix stream socket connected to <paramref name="path"/> (the child's side).</summary>
    public static Socket ConnectUnix(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    /// <summary>Waits for a child role (killed after 30 s), prints <paramref name="success"/>
    /// or its failure, and returns its exit code.</summary>
    public static int Finish(Process child, string success)
    {
        if (!child.WaitForExit(30_000))
        {
            child.Kill();
            Console.WriteLine("[parent] the child did not finish within 30 s\n");
            return 1;
        }
        Console.WriteLine(child.ExitCode == 0
            ? $"[parent] {success}\n"
            : $"[parent] the child failed with exit code {child.ExitCode}\n");
        return child.ExitCode;
    }
}
