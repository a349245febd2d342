/* fdsend_send / fdsend_send_to / fdsend_recv / fdsend_recv_exact / fdsend_close_all on POSIX
 * systems (the peer's credentials: peer_posix.c).
 * SPDX-License-Identifier: MIT */
#include "fdsend_posix.h"
#include "fdsend_internal.h"
#include "recv_exact.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#if USE_RAW_SENDMSG_FALLBACK
#  include <sys/syscall.h>
#endif /* USE_RAW_SENDMSG_FALLBACK */


int32_t fdsend_fail_io(int sock, int dontwait)
{
    int err = errno;
    if ((err == EAGAIN || err == EWOULDBLOCK) && !dontwait && !fdsend_is_nonblocking(sock))
        return fdsend_fail(FDSEND_ETIMEDOUT, err);
    return fdsend_fail_errno();
}

int32_t fdsend_fail_recv(int sock, int dontwait)
{
    int err = errno;
    if (err == EINVAL) {
        /* Linux: recvmsg on a stream socket that is not connected (or listens) says EINVAL,
         * which would read as a bad argument. */
        struct sockaddr_storage ss;
        socklen_t l = sizeof ss;
        if (getpeername(sock, (struct sockaddr *)&ss, &l) != 0 && errno == ENOTCONN)
            return fdsend_fail(FDSEND_ENOTCONN, ENOTCONN);
        errno = err;
    }
    return fdsend_fail_io(sock, dontwait);
}

/* SO_TYPE of sock, or a negative FDSEND_E* code. */
static int32_t socket_type(int sock, int *type)
{
    socklen_t l = sizeof *type;
    if (getsockopt(sock, SOL_SOCKET, SO_TYPE, type, &l) != 0)
        return fdsend_fail_errno();
    return FDSEND_OK;
}

/* FDSEND_OK if sock is an AF_UNIX socket, FDSEND_ENOTUNIX if it is another kind of socket,
 * or the error getsockname gave (FDSEND_ENOTSOCK, FDSEND_EBADF). Checked before every send
 * with descriptors: a TCP socket (Linux 6.x) or a netlink socket accepts an SCM_RIGHTS
 * message and silently drops the descriptors, so the kernel's answer cannot be trusted. */
int32_t fdsend_check_unix_socket(int sock)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(sock, (struct sockaddr *)&ss, &l) != 0)
        return fdsend_fail_errno();
    if (ss.ss_family != AF_UNIX)
        return fdsend_fail(FDSEND_ENOTUNIX, EAFNOSUPPORT);
    return FDSEND_OK;
}

static FDSEND_ALWAYS_INLINE int32_t validate_send(intptr_t sock, const void *buf, size_t len,
                                                  const intptr_t *fds, int32_t nfds,
                                                  uint32_t flags)
{
    if (!fdsend_valid_fd(sock))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    if ((buf == NULL && len > 0) || len > (size_t)SSIZE_MAX || nfds < 0 ||
        (fds == NULL && nfds > 0) ||
        (flags & ~(uint32_t)(FDSEND_DONTWAIT | FDSEND_UNIX_SOCKET)) != 0)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    return fdsend_check_send_fds(fds, nfds, flags);
}

int32_t fdsend_check_send_fds(const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    int32_t i;
    if (nfds > FDSEND_MAX_FDS)
        return fdsend_fail(FDSEND_ETOOMANYFDS, EINVAL);
    for (i = 0; i < nfds; i++) {
        if (!fdsend_valid_fd(fds[i]))
            return fdsend_fail(FDSEND_EBADF, EBADF);
    }
#if !HAVE_MSG_DONTWAIT
    if (flags & FDSEND_DONTWAIT)
        return fdsend_fail(FDSEND_ENOTSUP, ENOTSUP);
#else
    (void)flags;
#endif /* !HAVE_MSG_DONTWAIT */
    return FDSEND_OK;
}

/* The fdsend_msg_op for sendmsg. */
static ssize_t sendmsg_op(int sock, struct msghdr *msg, int flags)
{
    ssize_t n = sendmsg(sock, msg, flags);
#if USE_RAW_SENDMSG_FALLBACK
    /* musl < 1.2.4 on 64-bit copies the control data into a 1024-byte buffer, only to
     * zero the padding of its cmsghdr, and fails with ENOMEM before the system call
     * when there is more (253 fds need 1032 bytes). Our padding is already zero (the
     * memsets in fdsend_sendmsg_fds), so the kernel takes the message as it is. Nothing
     * was sent. */
    if (n < 0 && errno == ENOMEM && msg->msg_controllen > 1024)
        n = (ssize_t)syscall(SYS_sendmsg, sock, msg, flags);
#endif /* USE_RAW_SENDMSG_FALLBACK */
    return n;
}

/* fdsend_sendmsg_fds's body, inline in fdsend_send and fdsend_send_to (the channel calls
 * the function below). */
static FDSEND_ALWAYS_INLINE int64_t sendmsg_fds(int sock, const struct sockaddr *dest,
                                                socklen_t destlen, struct iovec *iov,
                                                int iovcnt, const intptr_t *fds, int32_t nfds,
                                                uint32_t flags, fdsend_deadline *d)
{
    send_control control;
    fdsend_deadline local;
    struct msghdr msg;
    int sendflags = 0;
    ssize_t n;

    memset(&msg, 0, sizeof msg);
    msg.msg_name = (void *)dest;
    msg.msg_namelen = destlen;
    msg.msg_iov = iov;
    msg.msg_iovlen = iovcnt;
    if (nfds > 0) {
        /* Exactly one SCM_RIGHTS header: buffer CMSG_SPACE, cmsg_len CMSG_LEN (an aligned
         * cmsg_len would make Linux send an extra fd read from the padding). */
        struct cmsghdr *cmsg;
        unsigned char *data;
        int32_t i;
        size_t space = CMSG_SPACE((size_t)nfds * sizeof(int));
        /* Zero every byte the fields below do not write: the header with its padding (musl's
         * 64-bit cmsghdr pads a 32-bit cmsg_len, and the kernel reads 64 bits; the BSDs pad
         * between header and data) and the last alignment unit, which holds the tail
         * padding; the descriptors are written over the rest. Constant sizes: no call. */
        memset(control.buf, 0, (size_t)CMSG_LEN(0));
        memset(control.buf + space - FDSEND_CMSG_ALIGNTO, 0, FDSEND_CMSG_ALIGNTO);
        msg.msg_control = control.buf;
        msg.msg_controllen = space;
        cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        data = CMSG_DATA(cmsg);
        for (i = 0; i < nfds; i++) {
            int fd = (int)fds[i];
            memcpy(data + (size_t)i * sizeof(int), &fd, sizeof fd);
        }
    }
    /* else: NULL control, length 0 (macOS and the BSDs reject an empty non-NULL one). */

#if HAVE_MSG_NOSIGNAL
    sendflags |= MSG_NOSIGNAL;
#elif HAVE_SO_NOSIGPIPE
    {
        int one = 1;
        if (setsockopt(sock, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one) != 0)
            return fdsend_fail_errno();
    }
#endif /* HAVE_MSG_NOSIGNAL */
#if HAVE_MSG_DONTWAIT
    if (flags & FDSEND_DONTWAIT)
        sendflags |= MSG_DONTWAIT;
#else
    (void)flags; /* callers refuse FDSEND_DONTWAIT up front */
#endif /* HAVE_MSG_DONTWAIT */

    if (d == NULL) {
        fdsend_deadline_start_send(&local, (flags & FDSEND_DONTWAIT) != 0);
        d = &local;
    }
#if HAVE_MSG_DONTWAIT
    if (!d->started && (flags & FDSEND_DONTWAIT) == 0) {
        /* A blocking send whose deadline has not started (fdsend_deadline_start_send): this
         * first attempt does not wait. A send almost always finds room, and then the call
         * needs no deadline, so no clock is read: that reading was about a tenth of
         * libfdsend's own cost per message (bench/PROFILE.md section 21). When it would
         * wait (or a signal came first), the deadline starts now and the blocking attempt
         * below waits in the kernel. A stream message that found room for only a part
         * returns that part, as a blocking sendmsg cut short does (fdsend_send sends the
         * rest: send_rest; the channel finishes its frame). */
        n = sendmsg_op(sock, &msg, sendflags | MSG_DONTWAIT);
        if (n >= 0)
            return (int64_t)n;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return fdsend_fail_io(sock, 0);
        fdsend_deadline_renew(d);
    }
#endif /* HAVE_MSG_DONTWAIT */
    n = fdsend_io(sendmsg_op, sock, &msg, sendflags, d);

    if (n < 0)
        return fdsend_fail_io(sock, (flags & FDSEND_DONTWAIT) != 0);
    return (int64_t)n;
}

int64_t fdsend_sendmsg_fds(int sock, const struct sockaddr *dest, socklen_t destlen,
                           struct iovec *iov, int iovcnt, const intptr_t *fds,
                           int32_t nfds, uint32_t flags, fdsend_deadline *d)
{
    return sendmsg_fds(sock, dest, destlen, iov, iovcnt, fds, nfds, flags, d);
}

/* A blocking send's first attempt (sendmsg_fds) found room for only the first len_sent
 * bytes of a stream message, where the blocking sendmsg it stands for would have waited for
 * room for the rest: send the rest (the descriptors went with the first bytes) with that
 * blocking call, SO_SNDTIMEO counted from now. Returns the bytes sent in all; if sending the
 * rest fails, the part already sent (the failure shows on the next call, as after a blocking
 * sendmsg cut short). A socket in O_NONBLOCK mode keeps its part: its sendmsg would have
 * returned that too. Out of line: only a send that fills the socket's buffer comes here. */
static int64_t send_rest(int sock, const struct sockaddr *dest, socklen_t destlen,
                         const unsigned char *buf, size_t len, int64_t len_sent)
{
    struct iovec iov;
    fdsend_deadline d;
    int64_t n;
    if (fdsend_is_nonblocking(sock))
        return len_sent;
    iov.iov_base = (void *)(buf + len_sent);
    iov.iov_len = len - (size_t)len_sent;
    fdsend_deadline_start(&d, POLLOUT, 0);
    n = fdsend_sendmsg_fds(sock, dest, destlen, &iov, 1, NULL, 0, 0, &d);
    return n < 0 ? len_sent : len_sent + n;
}

/* fdsend_send and fdsend_send_to: the AF_UNIX check and the stream carrier byte, then the
 * one sendmsg (and, on a blocking stream socket short of room, send_rest). */
static FDSEND_ALWAYS_INLINE int64_t send_message(int sock, const struct sockaddr *dest,
                                                 socklen_t destlen, const void *buf, size_t len,
                                                 const intptr_t *fds, int32_t nfds,
                                                 uint32_t flags)
{
    struct iovec iov;
    unsigned char carrier = 0;
    int carrier_byte = 0;
    int64_t n;

    if (nfds > 0 && (flags & FDSEND_UNIX_SOCKET) == 0) {
        int32_t rc = fdsend_check_unix_socket(sock);
        if (rc != FDSEND_OK)
            return rc;
    }
    iov.iov_base = (void *)buf;
    iov.iov_len = len;
    if (len == 0 && nfds > 0) {
        /* A stream socket drops fds sent with zero bytes: carry them on one zero byte. */
        int type = 0;
        int32_t rc = socket_type(sock, &type);
        if (rc != FDSEND_OK)
            return rc;
        if (type == SOCK_STREAM) {
            iov.iov_base = &carrier;
            iov.iov_len = 1;
            carrier_byte = 1;
        }
    }

    n = sendmsg_fds(sock, dest, destlen, &iov, 1, fds, nfds, flags, NULL);
    if (n < 0)
        return n;
    if ((size_t)n < iov.iov_len && (flags & FDSEND_DONTWAIT) == 0)
        n = send_rest(sock, dest, destlen, iov.iov_base, iov.iov_len, n);
    fdsend_clear_error();
    return carrier_byte ? 0 : n;
}

int64_t fdsend_send(intptr_t sock, const void *buf, size_t len, const intptr_t *fds,
                    int32_t nfds, uint32_t flags)
{
    int32_t rc = validate_send(sock, buf, len, fds, nfds, flags);
    if (rc != FDSEND_OK)
        return rc;
    return send_message((int)sock, NULL, 0, buf, len, fds, nfds, flags);
}

int64_t fdsend_send_to(intptr_t sock, const char *path, const void *buf, size_t len,
                       const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    struct sockaddr_un addr;
    size_t plen;
    socklen_t addrlen;
    int32_t rc = validate_send(sock, buf, len, fds, nfds, flags);
    if (rc != FDSEND_OK)
        return rc;
    if (path == NULL || path[0] == '\0')
        return fdsend_fail(FDSEND_EINVAL, EINVAL);

    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    plen = strlen(path);
#if HAVE_ABSTRACT_SOCKETS
    /* An abstract name has no terminating NUL: "@" + 107 bytes fills sun_path[108]. */
    if (path[0] == '@' ? plen > sizeof addr.sun_path : plen >= sizeof addr.sun_path)
        return fdsend_fail(FDSEND_ENAMETOOLONG, ENAMETOOLONG);
#else
    if (plen >= sizeof addr.sun_path)
        return fdsend_fail(FDSEND_ENAMETOOLONG, ENAMETOOLONG);
#endif /* HAVE_ABSTRACT_SOCKETS */
    memcpy(addr.sun_path, path, plen);
#if HAVE_ABSTRACT_SOCKETS
    if (path[0] == '@') {
        addr.sun_path[0] = '\0'; /* abstract namespace: the length counts, no terminator */
        addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    } else
#endif /* HAVE_ABSTRACT_SOCKETS */
    {
        addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
    }
    return send_message((int)sock, (const struct sockaddr *)&addr, addrlen, buf, len, fds,
                        nfds, flags);
}

int32_t fdsend_cloexec_or_close(int *fds, int32_t n)
{
    int32_t i, j;
    for (i = 0; i < n; i++) {
        if (fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0) {
            int err = errno;
            for (j = 0; j < n; j++)
                close(fds[j]);
            return fdsend_fail(fdsend_status_from_errno(err), err);
        }
    }
    return FDSEND_OK;
}

/* The checks fdsend_recv and fdsend_recv_exact make first, in this order, with their
 * out-parameters cleared: FDSEND_EBADF, then fdsend_check_recv_args's. FDSEND_OK when they
 * pass. */
static FDSEND_ALWAYS_INLINE int32_t validate_recv(intptr_t sock, const void *buf, size_t len,
                                                  const intptr_t *fds, int32_t maxfds,
                                                  int32_t *nfds, uint32_t *rflags,
                                                  uint32_t flags)
{
    if (nfds != NULL)
        *nfds = 0;
    if (rflags != NULL)
        *rflags = 0;
    if (!fdsend_valid_fd(sock))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    if (len > (size_t)SSIZE_MAX) /* one recvmsg's length */
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    return fdsend_check_recv_args(buf, len, fds, maxfds, nfds, flags,
                                  FDSEND_DONTWAIT | FDSEND_UNIX_SOCKET);
}

void fdsend_close_excess(int fd, void *ctx)
{
    (void)ctx;
    close(fd);
}

/* fdsend_recv_piece's body, inline in fdsend_recv (the channel, fdsend_recv_exact and
 * fdsend_recv_part call the function below). */
static FDSEND_ALWAYS_INLINE int64_t recv_piece(int sock, struct iovec *iov, int iovcnt,
                                               int dontwait, int *out, int32_t maxout,
                                               fdsend_piece *pc, fdsend_deadline *d)
{
    recv_control control;
    struct msghdr msg;
    fdsend_parse_result pr;
    int recvflags = 0;
    ssize_t n;

    memset(pc, 0, sizeof *pc);
#if HAVE_MSG_DONTWAIT
    if (dontwait)
        recvflags |= MSG_DONTWAIT;
#endif /* HAVE_MSG_DONTWAIT */
#if HAVE_MSG_CMSG_CLOEXEC
    recvflags |= MSG_CMSG_CLOEXEC;
#endif /* HAVE_MSG_CMSG_CLOEXEC */
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = iovcnt;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;

    n = fdsend_io(fdsend_recvmsg_op, sock, &msg, recvflags, d);
    if (n < 0) /* nothing was received, so no fd can be pending */
        return fdsend_fail_recv(sock, dontwait);

    if (!fdsend_parse_rights_common(control.buf, (size_t)msg.msg_controllen, out, maxout, &pr))
        pr = fdsend_parse_rights(control.buf, (size_t)msg.msg_controllen, out, maxout,
                                 fdsend_close_excess, NULL);
#if !HAVE_MSG_CMSG_CLOEXEC
    {
        int32_t rc = fdsend_cloexec_or_close(out, pr.taken);
        if (rc != FDSEND_OK)
            return rc;
    }
#endif /* !HAVE_MSG_CMSG_CLOEXEC */
    pc->taken = pr.taken;
    pc->excess = pr.excess;
    pc->ctrunc = (msg.msg_flags & MSG_CTRUNC) != 0;
    pc->malformed = pr.malformed;
    pc->dtrunc = (msg.msg_flags & MSG_TRUNC) != 0;
    return (int64_t)n;
}

int64_t fdsend_recv_piece(int sock, struct iovec *iov, int iovcnt, int dontwait, int *out,
                          int32_t maxout, fdsend_piece *pc, fdsend_deadline *d)
{
    return recv_piece(sock, iov, iovcnt, dontwait, out, maxout, pc, d);
}

int64_t fdsend_recv(intptr_t sock, void *buf, size_t len, intptr_t *fds, int32_t maxfds,
                    int32_t *nfds, uint32_t *rflags, uint32_t flags)
{
    struct iovec iov;
    fdsend_deadline dl;
    int got[FDSEND_MAX_FDS];
    fdsend_piece pc;
    unsigned char carrier = 0xff;
    int carrier_byte = 0;
    uint32_t out_flags = 0;
    int32_t i;
    int64_t n;

    int32_t vrc = validate_recv(sock, buf, len, fds, maxfds, nfds, rflags, flags);
    if (vrc != FDSEND_OK)
        return vrc;

    iov.iov_base = buf;
    iov.iov_len = len;
    if (len == 0) {
        /* On a stream socket, consume the one byte that carries the fds. */
        int type = 0;
        int32_t rc = socket_type((int)sock, &type);
        if (rc != FDSEND_OK)
            return rc;
        if (type == SOCK_STREAM) {
            iov.iov_base = &carrier;
            iov.iov_len = 1;
            carrier_byte = 1;
        }
    }

    fdsend_deadline_start(&dl, POLLIN, (flags & FDSEND_DONTWAIT) != 0);
    n = recv_piece((int)sock, &iov, 1, (flags & FDSEND_DONTWAIT) != 0, got,
                   maxfds < FDSEND_MAX_FDS ? maxfds : FDSEND_MAX_FDS, &pc, &dl);
    if (n < 0)
        return n;

    if (pc.ctrunc || pc.excess > 0 || pc.malformed)
        out_flags |= FDSEND_RECV_FDS_TRUNCATED;
    if (pc.dtrunc)
        out_flags |= FDSEND_RECV_DATA_TRUNCATED;
    if (n == 0 && pc.taken + pc.excess == 0 && !pc.ctrunc) {
        /* Nothing at all: the end of a stream, or an empty seqpacket/datagram message. */
        int type = SOCK_STREAM;
        if (carrier_byte || (socket_type((int)sock, &type) == FDSEND_OK && type == SOCK_STREAM))
            out_flags |= FDSEND_RECV_END_OF_STREAM;
    }
    if (carrier_byte && n > 0) {
        /* The byte is the fd carrier unless it is not zero or came with no fds at all. */
        int fds_came = pc.taken + pc.excess > 0 || pc.ctrunc;
        if (carrier != 0 || !fds_came)
            out_flags |= FDSEND_RECV_DATA_TRUNCATED;
        n = 0;
    }

    for (i = 0; i < pc.taken; i++)
        fds[i] = (intptr_t)got[i];
    if (nfds != NULL)
        *nfds = pc.taken;
    if (rflags != NULL)
        *rflags = out_flags;
    fdsend_clear_error();
    return n;
}

int32_t fdsend_close_all(const intptr_t *fds, int32_t nfds)
{
    int32_t i, rc = FDSEND_OK;
    int err = 0;
    if (nfds < 0 || (fds == NULL && nfds > 0))
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    for (i = 0; i < nfds; i++) {
        if (fds[i] < 0)
            continue;
        if (fds[i] > INT_MAX || (close((int)fds[i]) != 0 && errno == EBADF)) {
            rc = FDSEND_EBADF;
            err = EBADF;
        }
        /* Other failures (EINTR, EIO) still free the number: nothing to retry. */
    }
    if (rc != FDSEND_OK)
        return fdsend_fail(rc, err);
    fdsend_clear_error();
    return FDSEND_OK;
}

/* ---- fdsend_recv_exact_step and fdsend_recv_exact ---------------------------------------
 * The step, the loop (recv_exact.h) and the merge rules (recv_exact.c) are every
 * platform's; here are the POSIX receive of a piece and the wait between pieces. */

struct fdsend_exact_io {
    int s;
    int dontwait;   /* FDSEND_DONTWAIT: the first receive does not wait */
    fdsend_deadline dl;
};

/* One receive into the rest of buf (dontwait as given, within d), merged into st:
 * FDSEND_EXACT_DONE, FDSEND_OK (more is due), or a negative code (recorded), the piece's
 * own descriptors closed (fdsend_exact_ops.piece). */
static int32_t exact_piece(int s, fdsend_exact_state *st, unsigned char *buf, size_t len,
                           intptr_t *fds, int32_t maxfds, int dontwait, fdsend_deadline *d)
{
    struct iovec iov;
    int got[FDSEND_MAX_FDS];
    fdsend_piece pc;
    int32_t i, rc;
    int64_t n;

    iov.iov_base = buf + st->received;
    iov.iov_len = len - (size_t)st->received;
    /* Beyond the room, recv_piece closes the descriptors and counts them (pc.excess). */
    n = fdsend_recv_piece(s, &iov, 1, dontwait, got, fdsend_exact_room(st, maxfds), &pc, d);
    if (n < 0)
        return (int32_t)n;
    for (i = 0; i < pc.taken; i++)
        fds[st->nfds + i] = (intptr_t)got[i];
    /* On a stream socket with bytes still due, 0 bytes is the end of the stream. */
    rc = fdsend_exact_merge(st, len, (size_t)n, pc.taken,
                            pc.excess > 0 || pc.malformed || pc.ctrunc, n == 0);
    if (rc < 0)
        return fdsend_fail(rc, EPROTO);
    return rc;
}

/* (Inline: the loop calls it through exact_ops, which the compiler resolves.) */
static FDSEND_ALWAYS_INLINE int32_t exact_io_piece(fdsend_exact_io *io, fdsend_exact_state *st,
                                                  unsigned char *buf, size_t len,
                                                  intptr_t *fds, int32_t maxfds, int first)
{
    if (first)
        fdsend_deadline_start(&io->dl, POLLIN, io->dontwait);
    return exact_piece(io->s, st, buf, len, fds, maxfds, first ? io->dontwait : 1, &io->dl);
}

static int32_t exact_io_wait_inside(fdsend_exact_io *io, int32_t rc)
{
    return fdsend_wait_inside(io->s, rc, &io->dl);
}

static const fdsend_exact_ops exact_ops = {exact_io_piece, exact_io_wait_inside};

/* The check a receive makes once: sock is a stream socket (then recorded in st). FDSEND_OK
 * or a recorded code. */
static int32_t exact_begin(intptr_t sock, fdsend_exact_state *st)
{
    int type = 0;
    int32_t rc = socket_type((int)sock, &type);
    if (rc != FDSEND_OK)
        return rc;
    if (type != SOCK_STREAM)
        return fdsend_fail(FDSEND_ENOTSUP, EPROTOTYPE);
    fdsend_exact_begin(st, sock);
    return FDSEND_OK;
}

/* The checks every step makes: the socket, the arguments and the state, then (the first
 * step) exact_begin. FDSEND_OK or a recorded code; nothing is closed. (fdsend_recv_exact
 * checks its arguments as fdsend_recv does, then calls exact_begin.) */
static int32_t exact_check(intptr_t sock, fdsend_exact_state *st, const void *buf, size_t len,
                           const intptr_t *fds, int32_t maxfds, uint32_t flags)
{
    if (!fdsend_valid_fd(sock))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    if (len > (size_t)SSIZE_MAX ||
        fdsend_exact_args(sock, st, buf, len, fds, maxfds, flags) != FDSEND_OK)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    return fdsend_exact_checked(st) ? FDSEND_OK : exact_begin(sock, st);
}

int32_t fdsend_recv_exact_step(intptr_t sock, fdsend_exact_state *state, void *buf,
                               size_t len, intptr_t *fds, int32_t maxfds, uint32_t flags)
{
    fdsend_exact_io io;
    int32_t rc = exact_check(sock, state, buf, len, fds, maxfds, flags);
    if (rc != FDSEND_OK)
        return rc;
#if !HAVE_MSG_DONTWAIT
    (void)io;
    return fdsend_fail(FDSEND_ENOTSUP, ENOTSUP); /* a step must not wait */
#else
    io.s = (int)sock;
    io.dontwait = 1;
    return fdsend_exact_step_io(&exact_ops, &io, state, (unsigned char *)buf, len, fds, maxfds);
#endif /* !HAVE_MSG_DONTWAIT */
}

/* What a cancelled thread (recvmsg and poll are cancellation points) must close. */
typedef struct exact_call {
    fdsend_exact_state *st;
    intptr_t *fds;
} exact_call;

static void exact_cancelled(void *arg)
{
    exact_call *c = arg;
    fdsend_exact_abandon(c->st, c->fds);
}

int64_t fdsend_recv_exact(intptr_t sock, void *buf, size_t len, intptr_t *fds,
                          int32_t maxfds, int32_t *nfds, uint32_t *rflags, uint32_t flags)
{
    fdsend_exact_state st = FDSEND_EXACT_STATE_INIT;
    fdsend_exact_io io;
    exact_call call;
    int64_t n;
    int32_t rc;

    rc = validate_recv(sock, buf, len, fds, maxfds, nfds, rflags, flags);
    if (rc == FDSEND_OK) /* the socket, the arguments (a fresh state needs no check) */
        rc = exact_begin(sock, &st);
    if (rc != FDSEND_OK)
        return rc;
    io.s = (int)sock;
    io.dontwait = (flags & FDSEND_DONTWAIT) != 0;
    call.st = &st;
    call.fds = fds;
    pthread_cleanup_push(exact_cancelled, &call);
    n = fdsend_exact_run(&exact_ops, &io, &st, (unsigned char *)buf, len, fds, maxfds, nfds,
                         rflags);
    pthread_cleanup_pop(0);
    return n;
}

/* ---- int descriptors ---------------------------------------------------------------- */

int64_t fdsend_sendfds(int sock, const void *buf, size_t len, const int *fds, int nfds,
                       unsigned flags)
{
    intptr_t wide[FDSEND_MAX_FDS];
    int i;
    /* The checks fdsend_send makes before it reads fds[], in its order. */
    if (sock < 0)
        return fdsend_fail(FDSEND_EBADF, EBADF);
    if (nfds < 0 || (fds == NULL && nfds > 0))
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    if (nfds > FDSEND_MAX_FDS)
        return fdsend_fail(FDSEND_ETOOMANYFDS, EINVAL);
    for (i = 0; i < nfds; i++)
        wide[i] = (intptr_t)fds[i];
    return fdsend_send((intptr_t)sock, buf, len, nfds > 0 ? wide : NULL, (int32_t)nfds,
                       (uint32_t)flags);
}

int64_t fdsend_recvfds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds,
                       unsigned *rflags, unsigned flags)
{
    intptr_t wide[FDSEND_MAX_FDS];
    int32_t got = 0, i;
    uint32_t rf = 0;
    int64_t n;
    if (nfds != NULL)
        *nfds = 0;
    if (rflags != NULL)
        *rflags = 0;
    /* No message carries more than FDSEND_MAX_FDS: a larger maxfds needs no more room. */
    n = fdsend_recv((intptr_t)sock, buf, len, fds != NULL ? wide : NULL,
                    maxfds > FDSEND_MAX_FDS ? FDSEND_MAX_FDS : (int32_t)maxfds,
                    nfds != NULL ? &got : NULL, &rf, (uint32_t)flags);
    if (n < 0)
        return n;
    for (i = 0; i < got; i++)
        fds[i] = (int)wide[i];
    if (nfds != NULL)
        *nfds = (int)got;
    if (rflags != NULL)
        *rflags = (unsigned)rf;
    return n;
}
