/* fdsend_recv_part on POSIX: the kernel keeps a stream's position, so the caller's state
 * is only checked (as the library leaves it: all zero) and the call is fdsend_recv. The
 * Windows counterpart, where the state holds a record's data bytes still due, is in
 * native/src/win32/io.c. Also fdsend_peek, the other read that consumes nothing, and
 * fdsend_recv_refused (never on POSIX).
 * SPDX-License-Identifier: MIT */
#include "fdsend_posix.h"
#include "fdsend_internal.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/uio.h>

int64_t fdsend_recv_part(intptr_t sock, fdsend_recv_state *state, void *buf, size_t len,
                         intptr_t *fds, int32_t maxfds, int32_t *nfds, uint32_t *rflags,
                         uint32_t flags)
{
    if (state == NULL || state->reserved[0] != 0 || state->reserved[1] != 0) {
        if (nfds != NULL)
            *nfds = 0;
        if (rflags != NULL)
            *rflags = 0;
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    }
    return fdsend_recv(sock, buf, len, fds, maxfds, nfds, rflags, flags);
}

/* The kernel refuses no message the way a Windows record is refused (win32/io.c). */
int32_t fdsend_recv_refused(int64_t status)
{
    (void)status;
    return 0;
}

int64_t fdsend_peek(intptr_t sock, void *buf, size_t len, uint32_t flags)
{
    struct iovec iov;
    struct msghdr msg;
    fdsend_deadline dl;
    int dontwait = (flags & FDSEND_DONTWAIT) != 0;
    int recvflags = MSG_PEEK;
    ssize_t n;

    if (!fdsend_valid_fd(sock))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    if ((buf == NULL && len > 0) || len > (size_t)SSIZE_MAX ||
        (flags & ~(uint32_t)(FDSEND_DONTWAIT | FDSEND_UNIX_SOCKET)) != 0)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
#if HAVE_MSG_DONTWAIT
    if (dontwait)
        recvflags |= MSG_DONTWAIT;
#else
    if (dontwait)
        return fdsend_fail(FDSEND_ENOTSUP, ENOTSUP);
#endif /* HAVE_MSG_DONTWAIT */
    iov.iov_base = buf;
    iov.iov_len = len;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    /* No control buffer: a peek must not install the message's descriptors (Linux would
     * install copies of them with MSG_PEEK and room for them). */
    fdsend_deadline_start(&dl, POLLIN, dontwait);
    n = fdsend_io(fdsend_recvmsg_op, (int)sock, &msg, recvflags, &dl);
    if (n < 0)
        return fdsend_fail_recv((int)sock, dontwait);
    fdsend_clear_error();
    return (int64_t)n;
}
