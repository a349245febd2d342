// Mono.Posix.NETStandard: Syscall.sendmsg / Syscall.recvmsg with Msghdr, Cmsghdr and the
// CMSG_* helpers, written the way its own tests and users write it, with every buffer and
// object allocated once and reused (pinned payload, one Msghdr per direction).
// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using System.Runtime.InteropServices;
using FdSend.Benchmarks.Compare;
using Mono.Unix.Native;

return Harness.RunMain(args, "mono-posix",
[
    new("mono-posix", "Mono.Posix.NETStandard Syscall.sendmsg/recvmsg", Harness.Run<MonoPosixTransport>),
]);

struct MonoPosixTransport : ITransport
{
    const int MaxFds = 64;
    int[] _socks;
    int[] _fds;
    byte[] _data;          // pinned: Iovec.iov_base is a raw pointer
    byte[] _recvData;      // pinned
    Msghdr _send;
    Msghdr _recv;
    byte[] _recvControl;

    public void Setup(Socket[] sockets, int[] fds)
    {
        _socks = sockets.Select(s => (int)s.Handle).ToArray();
        _fds = fds;
        _data = GC.AllocateArray<byte>(Harness.PayloadLength, pinned: true);
        Harness.Payload.CopyTo(_data);
        _recvData = GC.AllocateArray<byte>(Harness.PayloadLength, pinned: true);
        _send = new Msghdr
        {
            msg_iov = [new Iovec { iov_base = Marshal.UnsafeAddrOfPinnedArrayElement(_data, 0), iov_len = (ulong)_data.Length }],
            msg_iovlen = 1,
            msg_control = new byte[Syscall.CMSG_SPACE(MaxFds * sizeof(int))],
        };
        _recvControl = new byte[Syscall.CMSG_SPACE(MaxFds * sizeof(int))];
        _recv = new Msghdr
        {
            msg_iov = [new Iovec { iov_base = Marshal.UnsafeAddrOfPinnedArrayElement(_recvData, 0), iov_len = (ulong)_recvData.Length }],
            msg_iovlen = 1,
            msg_control = _recvControl,
        };
    }

    void SendFds(int sock, ReadOnlySpan<int> fds)
    {
        _send.msg_controllen = (long)Syscall.CMSG_SPACE((ulong)(fds.Length * sizeof(int)));
        var cmsg = new Cmsghdr
        {
            cmsg_len = (long)Syscall.CMSG_LEN((ulong)(fds.Length * sizeof(int))),
            cmsg_level = UnixSocketProtocol.SOL_SOCKET,
            cmsg_type = UnixSocketControlMessage.SCM_RIGHTS,
        };
        long offset = Syscall.CMSG_FIRSTHDR(_send);
        cmsg.WriteToBuffer(_send, offset);
        long data = Syscall.CMSG_DATA(_send, offset);
        for (int i = 0; i < fds.Length; i++)
            BitConverter.TryWriteBytes(_send.msg_control.AsSpan((int)data + i * sizeof(int)), fds[i]);
        long n;
        do
        {
            n = Syscall.sendmsg(sock, _send, MessageFlags.MSG_NOSIGNAL);
        } while (n < 0 && Stdlib.GetLastError() == Errno.EINTR);
        if (n != Harness.PayloadLength)
            throw new InvalidOperationException($"sendmsg: {n} ({Stdlib.GetLastError()})");
    }

    /// <summary>Receive one message; returns the byte count and stores the fds (the caller
    /// closes them). Extra fds beyond fds.Length are closed here.</summary>
    int ReceiveFds(int sock, Span<int> fds, out int count)
    {
        count = 0;
        _recv.msg_controllen = _recvControl.Length;
        long n;
        do
        {
            n = Syscall.recvmsg(sock, _recv, MessageFlags.MSG_CMSG_CLOEXEC);
        } while (n < 0 && Stdlib.GetLastError() == Errno.EINTR);
        if (n < 0)
            throw new InvalidOperationException($"recvmsg: {Stdlib.GetLastError()}");
        for (long off = Syscall.CMSG_FIRSTHDR(_recv); off != -1; off = Syscall.CMSG_NXTHDR(_recv, off))
        {
            Cmsghdr h = Cmsghdr.ReadFromBuffer(_recv, off);
            if (h.cmsg_level != UnixSocketProtocol.SOL_SOCKET || h.cmsg_type != UnixSocketControlMessage.SCM_RIGHTS)
                continue;
            long data = Syscall.CMSG_DATA(_recv, off);
            long k = (h.cmsg_len - (long)Syscall.CMSG_LEN(0)) / sizeof(int);
            for (long i = 0; i < k; i++)
            {
                int fd = BitConverter.ToInt32(_recvControl, (int)(data + i * sizeof(int)));
                if (count < fds.Length) fds[count++] = fd;
                else Syscall.close(fd);
            }
        }
        return (int)n;
    }

    public void Send(int end, int nfds) => SendFds(_socks[end], _fds.AsSpan(0, nfds));

    public bool Receive(int end, int nfds)
    {
        Span<int> got = stackalloc int[MaxFds];
        int n = ReceiveFds(_socks[end], got[..nfds], out int count);
        if (n == 0 && count == 0) return false;
        if (n != Harness.PayloadLength || count != nfds)
            throw new InvalidOperationException($"received {n} bytes and {count} fds");
        for (int i = 0; i < count; i++)
            Syscall.close(got[i]);
        return true;
    }

    public bool Echo(int end)
    {
        Span<int> got = stackalloc int[1];
        int n = ReceiveFds(_socks[end], got, out int count);
        if (n == 0 && count == 0) return false;
        if (n != Harness.PayloadLength || count != 1)
            throw new InvalidOperationException($"received {n} bytes and {count} fds");
        SendFds(_socks[end], got);
        Syscall.close(got[0]);
        return true;
    }
}
