// SPDX-License-Identifier: MIT
using System.Net;
using FdSend.Tests.Async;

namespace FdSend.Tests.Untrusted;

/// <summary>FdReceivePolicy: what breaks it is closed (fd count back at the baseline), reported
/// with index, FdInfo and reason, and the stream stays usable at the next message.</summary>
[TestFixture]
[NonParallelizable]
public class ReceivePolicyTests : TempDirFixture
{
    /// <summary>Sends <paramref name="fds"/> then a plain "next" message; receives under the
    /// policy (sync or async) expecting a violation; checks nothing leaked and "next" arrives.</summary>
    private async Task<FdPolicyViolationException> Refused(FdReceivePolicy policy, bool async, params Descriptor[] fds)
    {
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
        {
            a.SendFds("m"u8, fds);
            a.Send("next"u8);
            int baseline = AsyncTest.SettledFdCount();
            var buffer = new byte[1];
            FdPolicyViolationException e = async
                ? Assert.ThrowsAsync<FdPolicyViolationException>(async () => await b.ReceiveFdsAsync(buffer, policy))!
                : Assert.Throws<FdPolicyViolationException>(() => b.ReceiveFds(buffer, policy))!;
            AsyncTest.AssertFdCount(baseline, "after a refused message");
            Assert.That(e.FdCount, Is.EqualTo(fds.Length));
            Assert.That(e.BytesReceived, Is.EqualTo(1));
            var next = new byte[4];
            Assert.That(b.Receive(next), Is.EqualTo(4));
            Assert.That(TestData.Text(next), Is.EqualTo("next"));
            await Task.CompletedTask;
            return e;
        }
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task Directory_where_a_file_was_expected_is_refused_at_its_index(bool async)
    {
        using var file = new FileStream(Dir.NewFile("ok"), FileMode.Open, FileAccess.Read);
        using var dir = Posix.OpenDirectory(Dir.Path);
        var policy = FdReceivePolicy.AcceptAny.WithRules(FdRule.File);
        FdPolicyViolationException e = await Refused(policy, async, file, dir);
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Kind));
        Assert.That(e.Index, Is.EqualTo(1));
        Assert.That(e.Fd!.Value.Kind, Is.EqualTo(FdKind.Directory));
        Assert.That(e.Message, Is.EqualTo("descriptor 1 is a directory; the policy accepts: regular file"));
    }

    [Test]
    public async Task Writable_file_is_refused_when_read_only_is_required()
    {
        using var file = new FileStream(Dir.NewFile("rw"), FileMode.Open, FileAccess.ReadWrite);
        FdPolicyViolationException e = await Refused(FdReceivePolicy.Exactly(1, FdRule.ReadOnlyFile), false, file);
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Access));
        Assert.That(e.Fd!.Value.Access, Is.EqualTo(FdAccess.ReadWrite));
        Assert.That(e.Message, Does.Contain("is open read-write; the policy accepts: read-only"));
    }

    [Test]
    public async Task Counts_and_fifos()
    {
        using var f1 = new FileStream(Dir.NewFile("1"), FileMode.Open, FileAccess.Read);
        using var f2 = new FileStream(Dir.NewFile("2"), FileMode.Open, FileAccess.Read);
        FdPolicyViolationException e = await Refused(FdReceivePolicy.Exactly(1), false, f1, f2);
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.TooManyFds));
        Assert.That(e.Index, Is.EqualTo(-1));
        e = await Refused(FdReceivePolicy.Exactly(1), false);
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.TooFewFds));
        e = await Refused(FdReceivePolicy.NoFds, true, f1);
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.TooManyFds));
        using var pipe = new System.IO.Pipes.AnonymousPipeServerStream(System.IO.Pipes.PipeDirection.Out);
        e = await Refused(FdReceivePolicy.Exactly(1, FdRule.File), false, pipe.ClientSafePipeHandle);
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Kind));
        Assert.That(e.Message, Does.Contain("is a pipe or FIFO"));
    }

    [Test]
    public async Task Sockets_by_family_type_and_listening()
    {
        var inetOnly = FdReceivePolicy.Exactly(1, FdRule.Socket(AddressFamily.InterNetwork, SocketType.Stream, allowListening: false));
        (Socket x, Socket y) = UnixSocketPair.Create();
        using (x)
        using (y)
        {
            // A Unix socket may carry descriptors of its own: refused by family.
            FdPolicyViolationException e = await Refused(inetOnly, false, x);
            Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Family));
            Assert.That(e.Message, Does.Contain("is a unix socket; the policy accepts the families: inet"));
        }
        using var udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        Assert.That((await Refused(inetOnly, false, udp)).Reason, Is.EqualTo(FdPolicyViolationReason.SocketType));
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        Assert.That((await Refused(inetOnly, false, listener)).Reason, Is.EqualTo(FdPolicyViolationReason.Listening));
    }

    [Test]
    public async Task Memfd_seals_and_size()
    {
        using var unsealed = SealedMemory.Create(new byte[10], FdSeals.None);
        var rule = FdRule.SealedMemory(FdSeals.Write, minSize: 8, maxSize: 64);
        FdPolicyViolationException e = await Refused(FdReceivePolicy.Exactly(1, rule), false, unsealed);
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Seals));
        Assert.That(e.Fd!.Value.Seals, Is.EqualTo(FdSeals.None));
        using var small = SealedMemory.Create(new byte[4]);
        e = await Refused(FdReceivePolicy.Exactly(1, rule), false, small);
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Size));
        Assert.That(e.Message, Is.EqualTo("descriptor 0 is a memfd of 4 bytes; the policy accepts 8 .. 64 bytes"));
    }

    [Test]
    public void Accepted_message_is_handed_out_whole()
    {
        using var file = new FileStream(Dir.NewFile("hello"), FileMode.Open, FileAccess.Read);
        using var memory = SealedMemory.Create("shared"u8);
        var policy = FdReceivePolicy.Exactly(2, FdRule.ReadOnlyFile, FdRule.SealedMemory())
            .RequirePeerUid(Posix.GetEUid()).RequirePeerGid(Posix.GetEGid()).RequirePeerPid(Environment.ProcessId);
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
        {
            a.SendFds("m"u8, file, memory);
            using ReceivedFds r = b.ReceiveFds(new byte[1], policy);
            Assert.That(r.Count, Is.EqualTo(2));
            using ReceivedSealedMemory m = r.TakeSealedMemory(1);
            Assert.That(TestData.Text(m.Span), Is.EqualTo("shared"));
        }
    }

    [Test]
    public void Wrong_peer_is_refused_before_anything_is_received()
    {
        using var file = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
        {
            a.SendFds("m"u8, file);
            int baseline = AsyncTest.SettledFdCount();
            var e = Assert.Throws<FdPolicyViolationException>(
                () => b.ReceiveFds(new byte[1], FdReceivePolicy.AcceptAny.RequirePeerUid(Posix.GetEUid() + 1)))!;
            Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Peer));
            Assert.That(e.Message, Does.Contain("the policy requires uid"));
            AsyncTest.AssertFdCount(baseline);
            Assert.That(b.Available, Is.EqualTo(1), "nothing consumed");
            using ReceivedFds r = b.ReceiveFds(new byte[1], FdReceivePolicy.AcceptAny.RequirePeerUid(Posix.GetEUid()));
            Assert.That(r.Count, Is.EqualTo(1));
        }
    }

    [Test]
    public void Enforce_on_a_channel_message_disposes_it()
    {
        using var dir = Posix.OpenDirectory(Dir.Path);
        (Socket a, Socket b) = UnixSocketPair.Create(SocketType.Seqpacket);
        using var ca = new FdChannel(a);
        using var cb = new FdChannel(b);
        ca.SendAsync("hi"u8.ToArray(), new Descriptor[] { dir }).AsTask().Wait();
        int baseline = AsyncTest.SettledFdCount();
        using FdMessage m = cb.ReceiveAsync().AsTask().Result;
        var e = Assert.Throws<FdPolicyViolationException>(() => FdReceivePolicy.Exactly(1, FdRule.File).Enforce(m.Fds))!;
        Assert.That(e.Index, Is.EqualTo(0));
        AsyncTest.AssertFdCount(baseline);
    }

    [Test]
    public void Close_on_exec_rule_refuses_an_inheritable_descriptor()
    {
        using var file = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        var policy = FdReceivePolicy.Exactly(1, FdRule.File.RequireCloseOnExec());
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
        {
            int baseline = AsyncTest.SettledFdCount();
            a.SendFds("m"u8, file);
            a.SendFds("m"u8, file);
            using (ReceivedFds ok = b.ReceiveFds(new byte[1], policy)) // received ones are close-on-exec
                Assert.That(ok.Count, Is.EqualTo(1));
            ReceivedFds r = b.ReceiveFds(new byte[1], FdReceivePolicy.AcceptAny);
            using (var view = new Microsoft.Win32.SafeHandles.SafeFileHandle(r.PeekFd(0), ownsHandle: false))
                FdPassing.SetInheritable(view, true);
            var e = Assert.Throws<FdPolicyViolationException>(() => policy.Enforce(r))!;
            Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.CloseOnExec));
            Assert.That(e.Index, Is.EqualTo(0));
            Assert.That(e.Fd!.Value.IsCloseOnExec, Is.False);
            Assert.That(e.Message, Is.EqualTo("descriptor 0 (a regular file) is not close-on-exec; the policy requires it"));
            Assert.That(r.IsTaken(0), Is.True, "closed by the check, never handed out");
            AsyncTest.AssertFdCount(baseline, "after a refused message");
        }
    }

    /// <summary>A descriptor that cannot be described (a number that is not open) is a
    /// violation like any other, not an exception of its own: the message's other
    /// descriptors are closed.</summary>
    [Test]
    public void Undescribable_descriptor_is_a_violation_and_the_others_are_closed()
    {
        using var file = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        int baseline = AsyncTest.SettledFdCount();
        int copy = FdPassing.DuplicateRawFd(file.SafeFileHandle);
        FileId id = Posix.GetFileId(copy);
        // int.MaxValue: a closed number that no other thread can be using (never reuse one).
        var r = new ReceivedFds([copy, int.MaxValue], 1, ReceiveFlags.None, isEndOfStream: false);
        var e = Assert.Throws<FdPolicyViolationException>(() => FdReceivePolicy.AcceptAny.WithRules(FdRule.File).Enforce(r))!;
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.Undescribable));
        Assert.That(e.Index, Is.EqualTo(1));
        Assert.That(e.Fd, Is.Null);
        Assert.That(e.FdCount, Is.EqualTo(2));
        Assert.That(e.Message, Does.StartWith("descriptor 1 could not be described"));
        Assert.That(Posix.IsOpenOn(copy, id), Is.False, "descriptor 0 was closed");
        AsyncTest.AssertFdCount(baseline, "after a refused message");
    }

    /// <summary>Descriptors the kernel dropped count as too many, whatever the rules (libfdsend's
    /// rule, as in fdsend_recv_checked); the ones that arrived are closed.</summary>
    [Test]
    public void Dropped_descriptors_are_too_many()
    {
        using var file = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        int baseline = AsyncTest.SettledFdCount();
        int copy = FdPassing.DuplicateRawFd(file.SafeFileHandle);
        var r = new ReceivedFds([copy], 1, ReceiveFlags.FdsTruncated, isEndOfStream: false);
        var e = Assert.Throws<FdPolicyViolationException>(() => FdReceivePolicy.AcceptAny.Enforce(r))!;
        Assert.That(e.Reason, Is.EqualTo(FdPolicyViolationReason.TooManyFds));
        Assert.That(e.Index, Is.EqualTo(-1));
        Assert.That(e.BytesReceived, Is.EqualTo(1));
        Assert.That(e.Message, Is.EqualTo($"the message carried more than 1 descriptors (some were dropped); the policy accepts at most {FdPassing.MaxFds}"));
        AsyncTest.AssertFdCount(baseline, "after a refused message");
    }

    [Test]
    public void Taken_descriptors_are_counted_but_not_checked()
    {
        using var dir = Posix.OpenDirectory(Dir.Path);
        using var file = new FileStream(Dir.NewFile("x"), FileMode.Open, FileAccess.Read);
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
        {
            a.SendFds("m"u8, dir, file);
            using ReceivedFds r = b.ReceiveFds(new byte[1], FdReceivePolicy.AcceptAny);
            using (r.TakeFileHandle(0)) { }
            FdReceivePolicy.Exactly(2, FdRule.File).Enforce(r); // the directory is no longer the message's
            Assert.That(r.IsTaken(1), Is.False);
            Assert.Throws<FdPolicyViolationException>(() => FdReceivePolicy.Exactly(1, FdRule.File).Enforce(r));
        }
    }

    [Test]
    public void Rules_name_only_what_a_descriptor_can_be()
    {
        Assert.That(FdRule.File.RequireCloseOnExec().CloseOnExecRequired, Is.True);
        Assert.That(FdRule.Any.CloseOnExecRequired, Is.False);
        // An empty list would accept nothing in .NET but "any" in C: refused, not guessed.
        Assert.Throws<ArgumentException>(() => FdRule.Any.WithKinds());
        Assert.Throws<ArgumentException>(() => _ = new FdRule { Access = [] });
        Assert.Throws<ArgumentException>(() => FdRule.Any.WithFamilies(AddressFamily.AppleTalk));
        Assert.Throws<ArgumentException>(() => FdRule.Any.WithSocketTypes(SocketType.Raw));
        Assert.Throws<ArgumentException>(() => FdRule.Any.WithKinds((FdKind)42));
        Assert.Throws<ArgumentOutOfRangeException>(() => FdRule.File.WithSize(0, -1));
        Assert.That(FdRule.Any.WithFamilies(AddressFamily.Unknown).WithSocketTypes(SocketType.Unknown).Families,
                    Is.EqualTo(new[] { AddressFamily.Unknown }));
    }

    [Test]
    public void Policies_are_immutable_and_validated()
    {
        FdReceivePolicy p = FdReceivePolicy.AcceptAny;
        FdReceivePolicy q = p.WithCount(1, 2).WithRules(FdRule.File.RequireReadOnly());
        Assert.That(p.MaxFds, Is.EqualTo(FdPassing.MaxFds));
        Assert.That(p.Rules, Is.Empty);
        Assert.That(q.MinFds, Is.EqualTo(1));
        Assert.That(q.Rules[0].Access, Is.EqualTo(new[] { FdAccess.Read }));
        Assert.Throws<ArgumentOutOfRangeException>(() => p.WithCount(2, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => p.WithCount(0, FdPassing.MaxFds + 1));
        Assert.Throws<ArgumentNullException>(() => p.WithRules(null!));
    }
}
