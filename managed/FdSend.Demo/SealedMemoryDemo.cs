using System.Net.Sockets;
using System.Text;

namespace FdSend.Demo;

/// <summary>
/// Scenario 3, receiving from a peer you do not trust: the parent sends a child two pieces of
/// shared memory, one sealed (it can never shrink, grow or change) and one plain memfd, which
/// it then shrinks to nothing, as a hostile sender would to kill a reader of the mapping with
/// SIGBUS. The child takes the sealed one under a receive policy and maps it; the policy
/// refuses the unsealed one before anything is mapped, and closes it.
/// </summary>
internal static class SealedMemoryDemo
{
    private const string Text = "sealed before sending: no one can shrink or rewrite these bytes";

    public static int Run()
    {
        Console.WriteLine("=== 3. Sealed shared memory: the child maps what cannot shrink, refuses what can ===");
        if (!OperatingSystem.IsLinux())
        {
            Console.WriteLine("(skipped: memfd seals exist only on Linux; elsewhere shared memory cannot be sealed)\n");
            return 0;
        }
        return Self.RunWithChild("sealed-child", "the child mapped the sealed memory and refused the unsealed memfd", (_, connection) =>
        {
            using (SealedMemory sealedMemory = SealedMemory.Create(Encoding.UTF8.GetBytes(Text), name: "demo-sealed"))
            {
                connection.SendFds("sealed"u8, sealedMemory);
                Console.WriteLine($"[parent {Environment.ProcessId}] sent {sealedMemory.Length} bytes of memory sealed {sealedMemory.Seals}");
            }
            using (SealedMemory unsealed = SealedMemory.Create(Encoding.UTF8.GetBytes(Text), FdSeals.None, name: "demo-unsealed"))
            {
                connection.SendFds("unsealed"u8, unsealed);
                RandomAccess.SetLength(unsealed.Handle, 0); // the attack: every page of a mapping is gone
                Console.WriteLine("[parent] sent a memfd without seals, then shrank it to 0 bytes (a reader that mapped it would die of SIGBUS)");
            }
        });
    }

    public static int Child(string socketPath)
    {
        using Socket socket = Self.ConnectUnix(socketPath);

        // Every message: exactly one memfd sealed against shrinking, growing and writing, at most 1 MiB.
        var policy = FdReceivePolicy.Exactly(1, FdRule.SealedMemory(maxSize: 1 << 20));
        var buffer = new byte[16];
        bool mapped = false, refused = false;

        using (ReceivedFds first = socket.ReceiveFds(buffer, policy))
        using (ReceivedSealedMemory memory = first.TakeSealedMemory(0))
        {
            string text = Encoding.UTF8.GetString(memory.Span);
            Console.WriteLine($"[child {Environment.ProcessId}] \"{Encoding.UTF8.GetString(buffer, 0, first.BytesReceived)}\": " +
                              $"mapped {memory.Length} bytes, seals {memory.Seals}: \"{text}\"");
            mapped = text == Text;
        }

        try
        {
            using ReceivedFds second = socket.ReceiveFds(buffer, policy);
            Console.WriteLine("[child] the unsealed memfd was accepted!");
        }
        catch (FdPolicyViolationException e) when (e.Reason == FdPolicyViolationReason.Seals)
        {
            Console.WriteLine($"[child] refused by the policy ({e.Reason}), closed, never mapped: {e.Message}");
            refused = true;
        }
        return mapped && refused ? 0 : 1;
    }
}
