// SPDX-License-Identifier: MIT
namespace FdSend;

internal static partial class Interop
{
    /// <summary>The FDSEND_E* codes of fdsend.h: negative, the same numbers on every OS.</summary>
    internal enum Status
    {
        Ok = 0,
        EAGAIN = -1,
        EINVAL = -2,
        EBADF = -3,
        ENOTSOCK = -4,
        EPIPE = -5,
        ECONNRESET = -6,
        ENOTCONN = -7,
        EMSGSIZE = -8,
        ETOOMANYREFS = -9,
        EMFILE = -10,
        ENOTSUP = -11,
        ENOBUFS = -12,
        ETOOMANYFDS = -13,
        ECONNREFUSED = -14,
        ENOENT = -15,
        EACCES = -16,
        EDESTADDRREQ = -17,
        EISCONN = -18,
        ENOTUNIX = -19,
        ENAMETOOLONG = -20,
        EPROTO = -21,
        ESRCH = -22,
        EOF = -23,
        ETIMEDOUT = -24,
        EPROTOTYPE = -25,
        EPOLICY = -26,
        ENOTSEALED = -27,
        EESCAPE = -28,
        ENOTREG = -29,
        EOTHER = -99,
    }

    /// <summary>FDSEND_DONTWAIT: never block in the kernel; FDSEND_EAGAIN instead.</summary>
    internal const uint FDSEND_DONTWAIT = 1;
    /// <summary>The caller vouches the socket is AF_UNIX: libfdsend skips its getsockname check.</summary>
    internal const uint FDSEND_UNIX_SOCKET = 2;

    /// <summary>FDSEND_RECV_* bits (the same values as <see cref="ReceiveFlags"/>).</summary>
    internal const uint FDSEND_RECV_DATA_TRUNCATED = 1;
    internal const uint FDSEND_RECV_FDS_TRUNCATED = 2;
    /// <summary>Set by a libfdsend that knows it on a stream socket's end of stream; not a
    /// <see cref="ReceiveFlags"/> value (FdSendCore turns it into ReceivedFds.IsEndOfStream).</summary>
    internal const uint FDSEND_RECV_END_OF_STREAM = 4;
}
