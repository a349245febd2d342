/* The system headers the POSIX sources need, with the defines each OS wants first.
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_POSIX_H
#define FDSEND_POSIX_H

#if defined(__linux__) && !defined(_GNU_SOURCE)
#  define _GNU_SOURCE 1 /* struct ucred, MSG_CMSG_CLOEXEC */
#endif
#if defined(__sun)
   /* Solaris/illumos: msg_control exists only in the X/Open (XPG4v2) socket API. */
#  ifndef _XOPEN_SOURCE
#    define _XOPEN_SOURCE 600
#  endif
#  ifndef __EXTENSIONS__
#    define __EXTENSIONS__ 1
#  endif
#endif
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#  define _DARWIN_C_SOURCE 1
#endif

#include "fdsend_config.h"

#include <limits.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/uio.h>
#include "fdsend.h"

/* Control buffer for sending: exactly one SCM_RIGHTS header, room for the most fds. */
#define SEND_CONTROL_SPACE CMSG_SPACE(FDSEND_MAX_FDS * sizeof(int))
/* Control buffer for receiving: a whole message's fds plus room for other headers
 * (credentials a peer may add), so that every fd that arrives is seen and can be closed. */
#define RECV_CONTROL_SPACE (CMSG_SPACE(FDSEND_MAX_FDS * sizeof(int)) + CMSG_SPACE(256))

typedef union send_control {
    struct cmsghdr align; /* the union gives the buffer cmsghdr alignment */
    unsigned char buf[SEND_CONTROL_SPACE];
} send_control;

typedef union recv_control {
    struct cmsghdr align;
    unsigned char buf[RECV_CONTROL_SPACE];
} recv_control;

/* Shared by fdsend_posix.c and msg.c (defined in fdsend_posix.c). */

/* Whether fd (a socket or a descriptor to send) is a number a POSIX descriptor can have. */
static inline int fdsend_valid_fd(intptr_t fd)
{
    return fd >= 0 && fd <= INT_MAX;
}

/* The checks every send makes of its descriptor list once its other arguments passed, in
 * this order: FDSEND_ETOOMANYFDS for more than FDSEND_MAX_FDS, FDSEND_EBADF for a number no
 * descriptor can have, FDSEND_ENOTSUP for FDSEND_DONTWAIT where the OS has no MSG_DONTWAIT.
 * FDSEND_OK when they pass. */
int32_t fdsend_check_send_fds(const intptr_t *fds, int32_t nfds, uint32_t flags);

/* FDSEND_OK if sock is an AF_UNIX socket, FDSEND_ENOTUNIX if it is another kind of socket,
 * or the error getsockname gave. */
int32_t fdsend_check_unix_socket(int sock);

/* One sendmsg of iov[0 .. iovcnt), to dest if not NULL, with nfds descriptors in exactly
 * one SCM_RIGHTS header (a NULL control buffer when nfds == 0). No SIGPIPE, EINTR retried,
 * musl's control-data limit worked around; flags: FDSEND_DONTWAIT. Returns the bytes sent
 * or a negative FDSEND_E* code (nothing sent). The caller has validated the arguments. */
int64_t fdsend_sendmsg_fds(int sock, const struct sockaddr *dest, socklen_t destlen,
                           struct iovec *iov, int iovcnt, const intptr_t *fds,
                           int32_t nfds, uint32_t flags);

/* The excess callback of fdsend_parse_rights for receivers: closes the descriptor. */
void fdsend_close_excess(int fd, void *ctx);

/* The failure of a sendmsg/recvmsg on sock that set errno, as a FDSEND_E* code (and
 * fdsend_fail). EAGAIN becomes FDSEND_EAGAIN when dontwait is set or the socket is
 * non-blocking, and FDSEND_ETIMEDOUT when a blocking call ran out its SO_RCVTIMEO /
 * SO_SNDTIMEO (one fcntl, on that path only). */
int32_t fdsend_fail_io(int sock, int dontwait);

#endif /* FDSEND_POSIX_H */
