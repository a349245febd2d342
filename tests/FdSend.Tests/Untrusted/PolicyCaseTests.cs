// SPDX-License-Identifier: MIT
// The receive-policy cases shared with the C tests (tests/conformance/policy-cases.txt, format
// at its top; tests/native-untrusted/test_policy.c's shared_cases runs the same lines through
// fdsend_check_fds): each line's rule built as an FdRule, enforced on one descriptor; the
// outcome and the message must be the file's (C's), the descriptor closed when refused.
using System.IO.Pipes;
using System.Net;
using System.Runtime.InteropServices;
using FdSend.Tests.Async;
using Microsoft.Win32.SafeHandles;

namespace FdSend.Tests.Untrusted;

[TestFixture]
[NonParallelizable]
public class PolicyCaseTests : TempDirFixture
{
    public sealed record PolicyCase(string Name, int Line, string Fixture, FdRule Rule,
                                    FdPolicyViolationReason? Expected, string Message)
    {
        public override string ToString() => Name;
    }

    private const string RelativePath = "tests/conformance/policy-cases.txt";

    private static string? CasesFile() => SourceTree.FindFile(RelativePath);

    private static T[] Names<T>(string list, Func<string, T> name) => list.Split(',').Select(name).ToArray();

    private static FdKind Kind(string s) => s switch
    {
        "other" => FdKind.Other, "file" => FdKind.File, "directory" => FdKind.Directory,
        "pipe" => FdKind.Pipe, "socket" => FdKind.Socket, "memfd" => FdKind.MemFd,
        "chardev" => FdKind.CharacterDevice, "blockdev" => FdKind.BlockDevice,
        "eventfd" => FdKind.EventFd, "pidfd" => FdKind.PidFd,
        _ => throw new FormatException($"unknown kind '{s}'"),
    };

    private static FdAccess Access(string s) => s switch
    {
        "none" => FdAccess.None, "read" => FdAccess.Read, "write" => FdAccess.Write,
        "readwrite" => FdAccess.ReadWrite,
        _ => throw new FormatException($"unknown access '{s}'"),
    };

    private static AddressFamily Family(string s) => s switch
    {
        "unix" => AddressFamily.Unix, "inet" => AddressFamily.InterNetwork,
        "inet6" => AddressFamily.InterNetworkV6, "other" => AddressFamily.Unknown,
        _ => throw new FormatException($"unknown family '{s}'"),
    };

    private static SocketType Type(string s) => s switch
    {
        "stream" => SocketType.Stream, "dgram" => SocketType.Dgram,
        "seqpacket" => SocketType.Seqpacket, "other" => SocketType.Unknown,
        _ => throw new FormatException($"unknown socket type '{s}'"),
    };

    private static FdSeals Seal(string s) => s switch
    {
        "seal" => FdSeals.Seal, "shrink" => FdSeals.Shrink, "grow" => FdSeals.Grow,
        "write" => FdSeals.Write, "future-write" => FdSeals.FutureWrite,
        _ => throw new FormatException($"unknown seal '{s}'"),
    };

    private static FdPolicyViolationReason? Outcome(string s) => s switch
    {
        "ok" => null, "kind" => FdPolicyViolationReason.Kind, "access" => FdPolicyViolationReason.Access,
        "family" => FdPolicyViolationReason.Family, "socket_type" => FdPolicyViolationReason.SocketType,
        "listening" => FdPolicyViolationReason.Listening, "seals" => FdPolicyViolationReason.Seals,
        "size" => FdPolicyViolationReason.Size, "cloexec" => FdPolicyViolationReason.CloseOnExec,
        _ => throw new FormatException($"unknown outcome '{s}'"),
    };

    private static FdRule Rule(string token, FdRule r)
    {
        string[] kv = token.Split('=', 2);
        string? v = kv.Length == 2 ? kv[1] : null;
        return (kv[0], v) switch
        {
            ("kinds", string l) => r with { Kinds = Names(l, Kind) },
            ("access", string l) => r with { Access = Names(l, Access) },
            ("families", string l) => r with { Families = Names(l, Family) },
            ("types", string l) => r with { SocketTypes = Names(l, Type) },
            ("seals", string l) => r with { RequiredSeals = Names(l, Seal).Aggregate(FdSeals.None, (a, b) => a | b) },
            ("min", string n) => r with { MinSize = long.Parse(n) },
            ("max", string n) => r with { MaxSize = long.Parse(n) },
            ("nolisten", null) => r.RefuseListening(),
            ("cloexec", null) => r.RequireCloseOnExec(),
            _ => throw new FormatException($"unknown rule token '{token}'"),
        };
    }

    public static List<PolicyCase> Load(string path)
    {
        var cases = new List<PolicyCase>();
        int lineNo = 0;
        foreach (string raw in File.ReadLines(path))
        {
            lineNo++;
            string line = raw.TrimEnd();
            if (line.Length == 0 || line.StartsWith('#'))
                continue;
            try
            {
                int arrow = line.IndexOf(" -> ", StringComparison.Ordinal);
                string[] left = line[..arrow].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                string right = line[(arrow + 4)..];
                int bar = right.IndexOf(" | ", StringComparison.Ordinal);
                string outcome = (bar < 0 ? right : right[..bar]).Trim();
                string message = bar < 0 ? "" : right[(bar + 3)..];
                FdRule rule = left.Skip(2).Aggregate(FdRule.Any, (r, t) => Rule(t, r));
                cases.Add(new PolicyCase(left[0], lineNo, left[1], rule, Outcome(outcome), message));
            }
            catch (Exception e) when (e is FormatException or ArgumentException or IndexOutOfRangeException)
            {
                throw new FormatException($"{path}:{lineNo}: bad case line ({e.Message}): {raw}", e);
            }
        }
        return cases;
    }

    private static IEnumerable<TestCaseData> Cases()
    {
        string? path = CasesFile();
        if (path is null)
        {
            yield return new TestCaseData(null).SetArgDisplayNames("cases file missing");
            yield break;
        }
        foreach (PolicyCase c in Load(path))
            yield return new TestCaseData(c).SetArgDisplayNames(c.Name);
    }

    [Test]
    public void The_cases_file_parses_and_names_are_unique()
    {
        string? path = CasesFile();
        if (path is null)
            Assert.Ignore($"SKIPPED: not running inside the FdSend source tree ({RelativePath})");
        List<PolicyCase> cases = Load(path!);
        Assert.That(cases, Has.Count.GreaterThanOrEqualTo(10));
        Assert.That(cases.Select(c => c.Name), Is.Unique);
    }

    /// <summary>Opens the case's descriptor; everything opened goes into <paramref name="owned"/>.
    /// Returns the handle whose descriptor is checked.</summary>
    private SafeHandle Fixture(string name, List<IDisposable> owned)
    {
        T Own<T>(T d) where T : IDisposable
        {
            owned.Add(d);
            return d;
        }
        switch (name)
        {
            case "file-ro" or "file-rw" or "file-inheritable":
                string path = Dir.NewFile("0123456789");
                return Own(File.OpenHandle(path, FileMode.Open, name == "file-rw" ? FileAccess.ReadWrite : FileAccess.Read));
            case "dir":
                return Own(Posix.OpenDirectory(Dir.Path));
            case "pipe":
                return Own(new AnonymousPipeServerStream(PipeDirection.Out)).ClientSafePipeHandle;
            case "devnull":
                return Own(File.OpenHandle("/dev/null"));
            case "unix-stream":
                (Socket a, Socket b) = UnixSocketPair.Create();
                Own(b);
                return Own(a).SafeHandle;
            case "udp":
                return Own(new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp)).SafeHandle;
            case "tcp-listener":
                Socket l = Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
                l.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                l.Listen();
                return l.SafeHandle;
            case "memfd-unsealed":
                return Own(SealedMemory.Create("0123456789"u8, FdSeals.None)).Handle;
            case "memfd-sealed":
                return Own(SealedMemory.Create("0123456789"u8)).Handle;
            default:
                throw new FormatException($"unknown descriptor '{name}'");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void Case(PolicyCase? c)
    {
        if (c is null)
            Assert.Ignore($"SKIPPED: not running inside the FdSend source tree ({RelativePath})");
        if (c!.Fixture.StartsWith("memfd", StringComparison.Ordinal) && !OperatingSystem.IsLinux())
            Assert.Ignore("SKIPPED: memfds are Linux-only");
        var owned = new List<IDisposable>();
        try
        {
            SafeHandle handle = Fixture(c.Fixture, owned);
            int baseline = AsyncTest.SettledFdCount();
            // The message's descriptor: a copy, owned by a ReceivedFds as if it had arrived.
            int copy = FdPassing.DuplicateRawFd(handle);
            if (c.Fixture == "file-inheritable")
            {
                using var view = new SafeFileHandle(copy, ownsHandle: false);
                FdPassing.SetInheritable(view, true);
            }
            var message = new ReceivedFds([copy], 1, ReceiveFlags.None, isEndOfStream: false);
            FdReceivePolicy policy = FdReceivePolicy.AcceptAny.WithCount(0, 1).WithRules(c.Rule);
            if (c.Expected is null)
            {
                Assert.DoesNotThrow(() => policy.Enforce(message), $"policy-cases.txt:{c.Line}");
                message.Dispose();
            }
            else
            {
                var e = Assert.Throws<FdPolicyViolationException>(() => policy.Enforce(message), $"policy-cases.txt:{c.Line}")!;
                Assert.That(e.Reason, Is.EqualTo(c.Expected), $"policy-cases.txt:{c.Line}: {e.Message}");
                Assert.That(e.Message, Is.EqualTo(c.Message), $"policy-cases.txt:{c.Line}");
                Assert.That(e.Index, Is.EqualTo(0));
                Assert.That(message.IsTaken(0), Is.True, "closed by the check");
            }
            AsyncTest.AssertFdCount(baseline, $"policy-cases.txt:{c.Line}: the copy is closed");
        }
        finally
        {
            foreach (IDisposable d in owned)
                d.Dispose();
        }
    }
}
