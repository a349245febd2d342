/* Error codes, common to every platform: this thread's last OS error, descriptions,
 * version. The OS's own numbers are mapped to FDSEND_E* in errors_posix.c (errno) and
 * win32/errors_win32.c (Win32 and Winsock errors).
 * SPDX-License-Identifier: MIT */
#include "fdsend_internal.h"

#include <errno.h>

FDSEND_THREAD_LOCAL int fdsend_thread_os_error;

int32_t fdsend_fail(int32_t code, int err)
{
    fdsend_thread_os_error = err;
    errno = err;
    return code;
}

int32_t fdsend_last_os_error(void)
{
    return fdsend_thread_os_error;
}

const char *fdsend_strerror(int32_t code)
{
    switch (code) {
    case FDSEND_OK: return "success";
    case FDSEND_EAGAIN: return "the operation would block; nothing was sent or consumed, retry when the socket is ready";
    case FDSEND_EINVAL: return "invalid argument";
    case FDSEND_EBADF: return "not an open file descriptor";
    case FDSEND_ENOTSOCK: return "not a socket";
    case FDSEND_EPIPE: return "the peer has closed the connection";
    case FDSEND_ECONNRESET: return "the connection was reset by the peer";
    case FDSEND_ENOTCONN: return "the socket is not connected";
    case FDSEND_EMSGSIZE: return "the message is too large for this socket";
    case FDSEND_ETOOMANYREFS: return "too many descriptors in flight for this user";
    case FDSEND_EMFILE: return "the descriptor table is full";
    case FDSEND_ENOTSUP: return "not supported on this system or socket";
    case FDSEND_ENOBUFS: return "out of buffer space or memory";
    case FDSEND_ETOOMANYFDS: return "too many descriptors: more than one message can carry (fdsend_max_fds) when sending, or more than the receiver's maxfds (fdsend_msg_recv)";
    case FDSEND_ECONNREFUSED: return "connection refused: nobody is bound at the destination";
    case FDSEND_ENOENT: return "the destination path does not exist";
    case FDSEND_EACCES: return "permission denied";
    case FDSEND_EDESTADDRREQ: return "the socket is not connected: give a destination (fdsend_send_to)";
    case FDSEND_EISCONN: return "the socket is already connected: send without a destination";
    case FDSEND_ENOTUNIX: return "not a Unix domain socket: descriptors can only pass over AF_UNIX";
    case FDSEND_ENAMETOOLONG: return "the socket path is too long";
    case FDSEND_EPROTO: return "the peer broke the message framing protocol";
    case FDSEND_ESRCH: return "the sending process no longer exists";
    case FDSEND_EOF: return "the peer closed the channel at a message boundary (end of messages)";
    case FDSEND_ETIMEDOUT: return "timed out: the socket's send/receive timeout (SO_SNDTIMEO/SO_RCVTIMEO) expired";
    case FDSEND_EPROTOTYPE: return "the socket at the destination is of another type (stream, seqpacket or datagram)";
    case FDSEND_EPOLICY: return "what arrived broke the receive policy (every descriptor was closed)";
    case FDSEND_ENOTSEALED: return "not sealed shared memory of the required seals and size";
    case FDSEND_EESCAPE: return "the path leaves the directory (absolute, \"..\" or a symbolic link)";
    case FDSEND_ENOTREG: return "not a regular file (a directory, FIFO, device or socket)";
    case FDSEND_EOTHER: return "operating system error (see errno / fdsend_last_os_error)";
    default: return "unknown fdsend error code";
    }
}

const char *fdsend_version(void)
{
    return FDSEND_VERSION_STRING;
}

int32_t fdsend_max_fds(void)
{
    return FDSEND_MAX_FDS;
}
