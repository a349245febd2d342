// The .NET floor: libc's sendmsg/recvmsg/close called directly through [LibraryImport],
// no FdSend, written exactly like compare/c/bench_raw.c (aligned control buffer sized with
// CMSG_SPACE for the message's fds, cmsg_len from CMSG_LEN, MSG_NOSIGNAL, MSG_CMSG_CLOEXEC,
// every header walked, extra fds closed, EINTR retried). Its ratio to raw C is what the
// P/Invoke transitions alone cost; RESULTS.md also gives FdSend's span row against it.
// Benchmark code, not the library: the library's "no P/Invoke into libc from managed code"
// rule does not apply here. Linux LP64 only (struct layouts and constants below).
// SPDX-License-Identifier: MIT
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using FdSend.Benchmarks.Compare;

return Harness.RunMain(args, "pinvoke-floor",
[
    new("pinvoke-floor", ".NET floor: libc sendmsg/recvmsg/close via [LibraryImport] (no FdSend)", Harness.Run<PInvokeFloorTransport>),
]);

/// <summary>The per-message code of bench_raw.c in C#: each call builds its msghdr and
/// control buffer on the stack (no allocation, nothing zeroed but the msghdr, as in C);
/// the sockets' descriptor numbers are read once in Setup.</summary>
unsafe struct PInvokeFloorTransport : ITransport
{
    const int MaxFds = 64; // the harness sends at most 64 (inproc64)
    int[] _socks;
    int[] _fds;

    public void Setup(Socket[] sockets, int[] fds)
    {
        _socks = sockets.Select(s => (int)s.Handle).ToArray();
        _fds = fds;
    }

    static long SendFds(int sock, ReadOnlySpan<int> fds)
    {
        ControlBuffer control;
        byte* buf = (byte*)&control;
        Libc.IoVec iov;
        Libc.MsgHdr msg = default; // memset(&msg, 0, sizeof msg)
        fixed (byte* payload = Harness.Payload)
        fixed (int* src = fds)
        {
            iov.Base = payload;
            iov.Length = Harness.PayloadLength;
            msg.Iov = &iov;
            msg.IovLength = 1;
            if (fds.Length > 0)
            {
                nuint bytes = (nuint)fds.Length * sizeof(int);
                msg.Control = buf;
                msg.ControlLength = Libc.CmsgSpace(bytes);
                var cmsg = (Libc.CmsgHdr*)buf; // CMSG_FIRSTHDR: the buffer holds at least one header
                cmsg->Level = Libc.SOL_SOCKET;
                cmsg->Type = Libc.SCM_RIGHTS;
                cmsg->Length = Libc.CmsgLen(bytes);
                Buffer.MemoryCopy(src, Libc.CmsgData(cmsg), bytes, bytes);
            }
            nint n;
            do
            {
                n = Libc.SendMsg(sock, &msg, Libc.MSG_NOSIGNAL);
            } while (n < 0 && Marshal.GetLastPInvokeError() == Libc.EINTR);
            return n;
        }
    }

    /// <summary>bench_recv: receive one message into buf, at most fds.Length descriptors
    /// into fds (count), the rest closed; the byte count, or -1.</summary>
    static long ReceiveFds(int sock, Span<byte> data, Span<int> fds, out int count)
    {
        ControlBuffer control;
        byte* buf = (byte*)&control;
        Libc.IoVec iov;
        Libc.MsgHdr msg = default;
        count = 0;
        fixed (byte* d = data)
        {
            iov.Base = d;
            iov.Length = (nuint)data.Length;
            msg.Iov = &iov;
            msg.IovLength = 1;
            msg.Control = buf;
            msg.ControlLength = Libc.CmsgSpace((nuint)fds.Length * sizeof(int));
            nint n;
            do
            {
                n = Libc.RecvMsg(sock, &msg, Libc.MSG_CMSG_CLOEXEC);
            } while (n < 0 && Marshal.GetLastPInvokeError() == Libc.EINTR);
            if (n < 0)
                return -1;
            for (Libc.CmsgHdr* cmsg = Libc.CmsgFirstHdr(&msg); cmsg != null; cmsg = Libc.CmsgNxtHdr(&msg, cmsg))
            {
                if (cmsg->Level != Libc.SOL_SOCKET || cmsg->Type != Libc.SCM_RIGHTS)
                    continue;
                nuint k = (cmsg->Length - Libc.CmsgLen(0)) / sizeof(int);
                int* p = (int*)Libc.CmsgData(cmsg);
                for (nuint i = 0; i < k; i++)
                {
                    int fd = Unsafe.ReadUnaligned<int>(p + i);
                    if (count < fds.Length)
                        fds[count++] = fd;
                    else
                        Libc.Close(fd); // CMSG_SPACE(1 int) has room for 2 on LP64
                }
            }
            return n;
        }
    }

    public void Send(int end, int nfds) => Send(end, _fds.AsSpan(0, nfds));

    public bool Receive(int end, int nfds)
    {
        Span<int> got = stackalloc int[MaxFds];
        if (!ReceiveExactly(end, got[..nfds])) return false;
        foreach (int fd in got[..nfds])
            Libc.Close(fd);
        return true;
    }

    public bool Echo(int end)
    {
        Span<int> got = stackalloc int[1];
        if (!ReceiveExactly(end, got)) return false;
        Send(end, got);
        Libc.Close(got[0]);
        return true;
    }

    /// <summary>One 16-byte message with exactly fds.Length descriptors; false at end of
    /// stream; throws on anything else.</summary>
    bool ReceiveExactly(int end, Span<int> fds)
    {
        Span<byte> data = stackalloc byte[Harness.PayloadLength];
        long n = ReceiveFds(_socks[end], data, fds, out int count);
        if (n == 0 && count == 0) return false;
        if (n != Harness.PayloadLength || count != fds.Length)
            throw new InvalidOperationException($"received {n} bytes and {count} fds (errno {Marshal.GetLastPInvokeError()})");
        return true;
    }

    void Send(int end, ReadOnlySpan<int> fds)
    {
        if (SendFds(_socks[end], fds) != Harness.PayloadLength)
            throw new InvalidOperationException($"sendmsg: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>bench_raw.c's raw_control union: room for CMSG_SPACE(64 ints), aligned for
    /// a cmsghdr (8 bytes). A local, uninitialised (SkipLocalsInit), like the C stack
    /// buffer.</summary>
    [InlineArray((MaxFds * sizeof(int) + 16) / sizeof(ulong))]
    struct ControlBuffer { ulong _element; }
}

/// <summary>libc's socket calls and the CMSG_* macros for Linux LP64 (glibc's
/// bits/socket.h). sendmsg and recvmsg set SetLastError: the EINTR retry must read the
/// errno of that call, not one a runtime transition may have overwritten since (the stub
/// clears and reads errno around each call: about 1.6% of inproc1 per CPU-second, 5
/// interleaved rounds, against a copy reading errno unsafely after a failure). close's
/// result is not checked (as in bench_raw.c), so it does not.</summary>
static unsafe partial class Libc
{
    public const int SOL_SOCKET = 1;
    public const int SCM_RIGHTS = 1;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int MSG_CMSG_CLOEXEC = 0x40000000;
    public const int EINTR = 4;

    public struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    public struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public byte* Control;
        public nuint ControlLength;
        public int Flags;
    }

    public struct CmsgHdr
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    public static partial nint SendMsg(int sockfd, MsgHdr* msg, int flags);

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    public static partial nint RecvMsg(int sockfd, MsgHdr* msg, int flags);

    [LibraryImport("libc", EntryPoint = "close")]
    public static partial int Close(int fd);

    static nuint Align(nuint n) => (n + (nuint)sizeof(nuint) - 1) & ~((nuint)sizeof(nuint) - 1);

    public static nuint CmsgSpace(nuint bytes) => Align(bytes) + Align((nuint)sizeof(CmsgHdr));

    public static nuint CmsgLen(nuint bytes) => Align((nuint)sizeof(CmsgHdr)) + bytes;

    public static byte* CmsgData(CmsgHdr* cmsg) => (byte*)(cmsg + 1);

    public static CmsgHdr* CmsgFirstHdr(MsgHdr* msg) =>
        msg->ControlLength >= (nuint)sizeof(CmsgHdr) ? (CmsgHdr*)msg->Control : null;

    /// <summary>glibc's __cmsg_nxthdr: the next header, or null when it (or its declared
    /// length) would run past the end of the control buffer.</summary>
    public static CmsgHdr* CmsgNxtHdr(MsgHdr* msg, CmsgHdr* cmsg)
    {
        if (cmsg->Length < (nuint)sizeof(CmsgHdr))
            return null;
        byte* end = msg->Control + msg->ControlLength;
        var next = (CmsgHdr*)((byte*)cmsg + Align(cmsg->Length));
        if ((byte*)(next + 1) > end || (nuint)(end - (byte*)next) < Align(next->Length))
            return null;
        return next;
    }
}
