// The package test's program: copied into a brand-new console project that references the
// FdSend NuGet package from a local feed (see eng/package.sh). It proves the package works
// on its own: the parent passes a pipe and a file to a child process, which writes through
// the pipe what it read from the file.
using System.Diagnostics;
using System.IO.Pipes;
using System.Net.Sockets;
using System.Text;
using FdSend;

// eng/package.sh deletes this RID's libfdsend from the app's output and runs this: the first
// native call must throw PlatformNotSupportedException (naming the RID and the RIDs the
// package carries, which the script checks), not a bare DllNotFoundException.
if (args.Length == 1 && args[0] == "expect-no-native")
{
    try
    {
        Console.WriteLine($"libfdsend {FdPassing.NativeVersion} loaded, but this RID's library was deleted");
        return 1;
    }
    catch (PlatformNotSupportedException e)
    {
        Console.WriteLine($"PlatformNotSupportedException: {e.Message}");
        return 0;
    }
}

if (args.Length == 2 && args[0] == "child")
{
    using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    socket.Connect(new UnixDomainSocketEndPoint(args[1]));
    using ReceivedFds got = socket.ReceiveFds(new byte[64], maxFds: 4);
    if (got.Count != 2) { Console.Error.WriteLine($"child: expected 2 fds, got {got.Count}"); return 1; }
    using var pipe = got.TakePipe(0, PipeDirection.Out);
    using var file = got.TakeFileStream(1, FileAccess.Read);
    string content = new StreamReader(file).ReadToEnd();
    pipe.Write(Encoding.UTF8.GetBytes($"child {Environment.ProcessId} read: {content}"));
    return 0;
}

string dir = Directory.CreateTempSubdirectory("fdsend-pkgtest-").FullName;
try
{
    string path = Path.Combine(dir, "s.sock");
    using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    listener.Bind(new UnixDomainSocketEndPoint(path));
    listener.Listen(1);

    var psi = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
    if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet")
        psi.ArgumentList.Add(Environment.GetCommandLineArgs()[0]);
    psi.ArgumentList.Add("child");
    psi.ArgumentList.Add(path);
    using var child = Process.Start(psi)!;
    using Socket conn = listener.Accept();

    string filePath = Path.Combine(dir, "secret.txt");
    File.WriteAllText(filePath, "the package works");
    using var file = new FileStream(filePath, FileMode.Open, FileAccess.Read);
    File.Delete(filePath);
    using var pipe = new AnonymousPipeServerStream(PipeDirection.In);
    // A collection expression, not a params list: C# 12 (.NET 8's default) has no params spans.
    conn.SendFds("take these"u8, [pipe.ClientSafePipeHandle, file]);
    pipe.DisposeLocalCopyOfClientHandle();

    string reply = new StreamReader(pipe).ReadToEnd();
    child.WaitForExit();
    Console.WriteLine($"parent got through the passed pipe: \"{reply}\" (native library {FdPassing.NativeVersion})");
    bool ok = child.ExitCode == 0 && reply.EndsWith("read: the package works", StringComparison.Ordinal);
    Console.WriteLine(ok ? "PACKAGE TEST PASSED" : "PACKAGE TEST FAILED");
    return ok ? 0 : 1;
}
finally
{
    Directory.Delete(dir, recursive: true);
}
