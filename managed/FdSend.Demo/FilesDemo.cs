using System.Net.Sockets;
using System.Text;

namespace FdSend.Demo;

/// <summary>
/// Scenario 1, python-fdsend's example: the parent sends one message and 12 open files to a
/// child in a single call. The files are deleted from disk before the child reads them, so
/// the child can only reach them through the descriptors it was given.
/// </summary>
internal static class FilesDemo
{
    private const int FileCount = 12;

    public static int Run()
    {
        Console.WriteLine("=== 1. A message and 12 open files, parent -> child, in one call ===");
        return Self.RunWithChild("files-child", "the child read every file through its descriptor", (dir, connection) =>
        {
            PeerCredentials peer = connection.GetPeerCredentials();
            Console.WriteLine($"[parent {Environment.ProcessId}] child connected; the kernel says its pid is {peer.Pid}, uid {peer.Uid}");

            var files = new FileStream[FileCount];
            var descriptors = new Descriptor[FileCount];
            try
            {
                for (int i = 0; i < FileCount; i++)
                {
                    string path = Path.Combine(dir, $"file{i + 1:00}.txt");
                    File.WriteAllText(path, $"I am file #{i + 1}, written by process {Environment.ProcessId}.\n");
                    files[i] = new FileStream(path, FileMode.Open, FileAccess.Read);
                    descriptors[i] = files[i];
                    File.Delete(path); // only the open descriptor keeps it alive now
                }
                Console.WriteLine($"[parent] opened {FileCount} files and deleted them from disk");

                byte[] message = Encoding.UTF8.GetBytes("hello from the parent: here are twelve open files");
                int sent = connection.SendFds(message, descriptors);
                Console.WriteLine($"[parent] sent {sent} bytes and {FileCount} descriptors in one message");
            }
            finally
            {
                // The child has its own copies now; ours can go.
                foreach (FileStream? f in files)
                    f?.Dispose();
            }
        });
    }

    public static int Child(string socketPath)
    {
        using Socket socket = Self.ConnectUnix(socketPath);

        // fdsend's recvfds(sock, 128, numfds=32) in C#:
        var buffer = new byte[128];
        using ReceivedFds received = socket.ReceiveFds(buffer, maxFds: 32);
        string text = Encoding.UTF8.GetString(buffer, 0, received.BytesReceived);
        Console.WriteLine($"[child {Environment.ProcessId}] received \"{text}\" and {received.Count} descriptors" +
                          (received.FdsTruncated || received.DataTruncated ? " (truncated!)" : ""));

        int ok = 0;
        for (int i = 0; i < received.Count; i++)
        {
            int fd = received.PeekFd(i);
            using FileStream file = received.TakeFileStream(i, FileAccess.Read);
            using var reader = new StreamReader(file);
            string line = reader.ReadLine() ?? "";
            Console.WriteLine($"[child]   fd {fd,3}: {line}");
            if (line.StartsWith($"I am file #{i + 1},", StringComparison.Ordinal))
                ok++;
        }
        return ok == FileCount && received.Count == FileCount ? 0 : 1;
    }
}
