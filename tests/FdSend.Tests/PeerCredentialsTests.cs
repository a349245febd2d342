// SPDX-License-Identifier: MIT
namespace FdSend.Tests;

/// <summary>Peer credentials as the kernel recorded them (the child-process case is in
/// ChildProcessTests).</summary>
[TestFixture]
public class PeerCredentialsTests : TempDirFixture
{
    [TestCase(SocketType.Stream)]
    [TestCase(SocketType.Seqpacket)]
    public void Both_ends_of_an_in_process_connection_report_this_process(SocketType type)
    {
        using var pair = SocketPair.Create(Dir, type);
        var expected = new PeerCredentials(Environment.ProcessId, Posix.GetEUid(), Posix.GetEGid());
        Assert.That(pair.A.GetPeerCredentials(), Is.EqualTo(expected));
        Assert.That(pair.B.GetPeerCredentials(), Is.EqualTo(expected));
    }

    [Test]
    public void A_received_connected_socket_still_reports_the_original_peer()
    {
        using var pair = SocketPair.Create(Dir, SocketType.Stream);
        using var inner = SocketPair.Create(Dir, SocketType.Stream);
        pair.A.SendFds(TestData.Utf8("s"), inner.A);
        using ReceivedFds r = pair.B.ReceiveFds(new byte[1]);
        using Socket received = r.TakeSocket(0);
        Assert.That(received.GetPeerCredentials().Pid, Is.EqualTo(Environment.ProcessId));
    }
}
