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

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include "fdsend.h"
#include "fdsend_internal.h"

#ifndef SSIZE_MAX
#  define SSIZE_MAX ((size_t)-1 / 2) /* where limits.h lacks it */
#endif

/* Alignment of control messages on this OS, derived from the macros themselves
 * (sizeof(long) on Linux, 4 bytes on macOS): CMSG_SPACE(1) rounds one byte up to it. */
#define FDSEND_CMSG_ALIGNTO ((size_t)(CMSG_SPACE(1) - CMSG_LEN(0)))

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

/* Inline on the per-message path whatever the compiler's size heuristics say: a function
 * with this mark is the body of one exported call (or of two), split out only to be read. */
#if defined(__GNUC__) || defined(__clang__)
#  define FDSEND_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#  define FDSEND_ALWAYS_INLINE inline
#endif

/* fdsend_parse_rights's common cases, inline in every receive (fdsend_parse_rights runs
 * this first, so each rule is written once): no control data at all, or one
 * SOL_SOCKET/SCM_RIGHTS header that fills the buffer up to its padding with every
 * descriptor fitting in out[0 .. maxout) (maxout < 0 or out == NULL count as 0). Returns 1
 * with *r set when one applies, 0 when the full walk (cmsg_parse.c) must decide. */
static inline int fdsend_parse_rights_common(const unsigned char *control, size_t controllen,
                                             int *out, int32_t maxout, fdsend_parse_result *r)
{
    const size_t data_off = (size_t)CMSG_LEN(0); /* header plus its padding */
    struct cmsghdr h;
    size_t n;

    r->taken = 0;
    r->excess = 0;
    r->other = 0;
    r->malformed = 0;
    if (control == NULL || controllen < sizeof h)
        return 1; /* not even one header: nothing to walk */
    memcpy(&h, control, sizeof h); /* control may be unaligned */
    if (h.cmsg_level != SOL_SOCKET || h.cmsg_type != SCM_RIGHTS ||
        (size_t)h.cmsg_len < data_off || (size_t)h.cmsg_len > controllen ||
        controllen - (size_t)h.cmsg_len >= FDSEND_CMSG_ALIGNTO)
        return 0;
    n = ((size_t)h.cmsg_len - data_off) / sizeof(int);
    if (n > (out == NULL || maxout < 0 ? (size_t)0 : (size_t)maxout))
        return 0;
    if (n == 1)
        memcpy(out, control + data_off, sizeof(int)); /* one descriptor: one load, no call */
    else if (n > 0)
        memcpy(out, control + data_off, n * sizeof(int));
    r->taken = (int32_t)n;
    return 1;
}

/* Shared by fdsend_posix.c and channel.c (defined in fdsend_posix.c). */

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

#if HAVE_F_GET_SEALS
#include <fcntl.h>
/* FDSEND_SEAL_* and the kernel's F_SEAL_* bits, the one table shm.c (creating sealed
 * memory) and fdinfo.c (describing a memfd) both use; F_SEAL_FUTURE_WRITE only where the
 * headers have it. */
static const struct fdsend_seal_bit {
    uint32_t seal; /* FDSEND_SEAL_* */
    int os;        /* F_SEAL_* */
} fdsend_seal_bits[] = {
    {FDSEND_SEAL_SEAL, F_SEAL_SEAL},
    {FDSEND_SEAL_SHRINK, F_SEAL_SHRINK},
    {FDSEND_SEAL_GROW, F_SEAL_GROW},
    {FDSEND_SEAL_WRITE, F_SEAL_WRITE},
#  ifdef F_SEAL_FUTURE_WRITE
    {FDSEND_SEAL_FUTURE_WRITE, F_SEAL_FUTURE_WRITE},
#  endif /* F_SEAL_FUTURE_WRITE */
};
#define FDSEND_SEAL_BITS (sizeof fdsend_seal_bits / sizeof fdsend_seal_bits[0])
#endif /* HAVE_F_GET_SEALS */

/* The checks of a receive's arguments other than the socket, in this order (the caller
 * has cleared its out-parameters): FDSEND_EINVAL for a NULL buffer with len > 0,
 * maxfds < 0, maxfds > 0 without fds or nfds, or flags outside known;
 * FDSEND_ENOTSUP for FDSEND_DONTWAIT where the OS has no MSG_DONTWAIT. FDSEND_OK when they
 * pass. Shared by fdsend_recv, fdsend_recv_exact and the channel's receives. */
static inline int32_t fdsend_check_recv_args(const void *buf, size_t len, const intptr_t *fds,
                                             int32_t maxfds, const int32_t *nfds,
                                             uint32_t flags, uint32_t known)
{
    if (fdsend_recv_args_code(buf, len, fds, maxfds, nfds, flags, known) != FDSEND_OK)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
#if !HAVE_MSG_DONTWAIT
    if (flags & FDSEND_DONTWAIT)
        return fdsend_fail(FDSEND_ENOTSUP, ENOTSUP);
#endif /* !HAVE_MSG_DONTWAIT */
    return FDSEND_OK;
}

/* 1 if sock is O_NONBLOCK (one fcntl; 0 if that fails), errno kept. (wait.c) */
int fdsend_is_nonblocking(int sock);

/* FDSEND_OK if sock is an AF_UNIX socket, FDSEND_ENOTUNIX if it is another kind of socket,
 * or the error getsockname gave. */
int32_t fdsend_check_unix_socket(int sock);



struct fdsend_deadline; /* wait.c, below */

/* One sendmsg of iov[0 .. iovcnt), to dest if not NULL, with nfds descriptors in exactly
 * one SCM_RIGHTS header (a NULL control buffer when nfds == 0). No SIGPIPE, musl's
 * control-data limit worked around, EINTR retried within deadline d (fdsend_io; NULL: a
 * deadline of its own from now); flags: FDSEND_DONTWAIT. Returns the bytes sent or a
 * negative FDSEND_E* code (nothing sent). The caller has validated the arguments. */
int64_t fdsend_sendmsg_fds(int sock, const struct sockaddr *dest, socklen_t destlen,
                           struct iovec *iov, int iovcnt, const intptr_t *fds,
                           int32_t nfds, uint32_t flags, struct fdsend_deadline *d);

/* Set FD_CLOEXEC on fds[0 .. n) (where recvmsg cannot: no MSG_CMSG_CLOEXEC); if one
 * fails, close all n and return its code (fdsend_fail). FDSEND_OK otherwise. */
int32_t fdsend_cloexec_or_close(int *fds, int32_t n);

/* fstat and fstatat without glibc's fstat@GLIBC_2.33 / fstatat@GLIBC_2.33, which would
 * raise the library's glibc baseline from 2.17 (CMakeLists.txt: USE_RAW_FSTAT): there the
 * kernel is asked directly (struct stat is the kernel's layout on glibc's x86-64 and arm64).
 * 0 or -1 with errno, as the libc calls. Defined in fdinfo.c. */
struct stat;
int fdsend_fstat(int fd, struct stat *st);
int fdsend_fstatat(int dirfd, const char *path, struct stat *st, int flags);

/* The excess callback of fdsend_parse_rights for receivers: closes the descriptor. */
void fdsend_close_excess(int fd, void *ctx);

/* The failure of a sendmsg/recvmsg on sock that set errno, as a FDSEND_E* code (and
 * fdsend_fail). EAGAIN becomes FDSEND_EAGAIN when dontwait is set or the socket is
 * non-blocking, and FDSEND_ETIMEDOUT when a blocking call ran out its SO_RCVTIMEO /
 * SO_SNDTIMEO (one fcntl, on that path only). */
int32_t fdsend_fail_io(int sock, int dontwait);

/* Receive-side wrapper of fdsend_fail_io: also reports a stream socket that is not
 * connected (or listens) as FDSEND_ENOTCONN where recvmsg says EINVAL (Linux). */
int32_t fdsend_fail_recv(int sock, int dontwait);

/* ---- Waiting (wait.c): the one place the library waits ----------------------------------
 * A call that may wait keeps ONE deadline: the socket's SO_RCVTIMEO (POLLIN) or
 * SO_SNDTIMEO (POLLOUT) counted from when the call started (a send: from its first attempt,
 * which does not wait, fdsend_deadline_start_send; inside a frame of the fdsend_msg_*
 * channel: from the last byte that moved). A signal never extends it. The timeout itself is
 * read (one getsockopt) only when the call first has to wait in the library, so a send or
 * receive that is not interrupted costs no extra system call. */
typedef struct fdsend_deadline {
    struct timespec start; /* the deadline clock (wait.c) at the start (valid when started) */
    int64_t timeout_ns;    /* the socket's timeout: -1 not read yet, 0 none, > 0 set */
    short events;          /* POLLIN (SO_RCVTIMEO) or POLLOUT (SO_SNDTIMEO) */
    int started;           /* start is set */
    int strict;            /* the call has waited already (EINTR, another thread's frame):
                              its next operations wait through fdsend_wait_ready only */
} fdsend_deadline;

/* The clock deadlines run on. Every call that may wait in the kernel reads it once before
 * that system call (a signal may interrupt it, and the rest of the wait must count from the
 * start), so it is on the fast path of every blocking fdsend_recv (the vDSO's CLOCK_MONOTONIC:
 * about 27 ns here). Not the coarse clock (CLOCK_MONOTONIC_COARSE, 7 ns): it is the time of
 * the last timekeeping update, which lagged CLOCK_MONOTONIC by up to 7 ms on this 4 ms-tick
 * VM, so a start read from it was early by more than its resolution and a deadline passed
 * up to 2 ms before SO_RCVTIMEO (native.timeouts.wait_ready_and_timeout caught it; bench/
 * PROFILE.md section 20). A deadline must never pass early. */
#define FDSEND_DEADLINE_CLOCK CLOCK_MONOTONIC

static inline void fdsend_deadline_now(struct timespec *t)
{
    if (clock_gettime(FDSEND_DEADLINE_CLOCK, t) != 0) { /* no failure is documented */
        t->tv_sec = 0;
        t->tv_nsec = 0;
    }
}

/* Start d for one call on a socket in direction events (POLLIN or POLLOUT). dontwait: the
 * call never waits, so the clock is not read. (Inline: every call starts one.) */
static inline void fdsend_deadline_start(fdsend_deadline *d, short events, int dontwait)
{
    d->timeout_ns = -1;
    d->events = events;
    d->strict = 0;
    d->started = !dontwait;
    if (!dontwait)
        fdsend_deadline_now(&d->start);
}

/* Start d for a send (sendmsg_fds in fdsend_posix.c): where the OS has MSG_DONTWAIT the
 * clock is read only when the send first has to wait, since its first attempt does not
 * (a deadline that has not started starts there); elsewhere as fdsend_deadline_start. */
static inline void fdsend_deadline_start_send(fdsend_deadline *d, int dontwait)
{
    fdsend_deadline_start(d, POLLOUT, HAVE_MSG_DONTWAIT || dontwait);
}

/* Inside a frame, bytes moved: the deadline counts from now on. */
static inline void fdsend_deadline_renew(fdsend_deadline *d)
{
    fdsend_deadline_now(&d->start);
    d->started = 1;
}

/* Milliseconds left until d passes (rounded up, at most INT_MAX), 0 once it has passed,
 * or -1 when the socket has no timeout (wait for ever). Reads the timeout of sock the
 * first time. */
int fdsend_deadline_ms_left(fdsend_deadline *d, int sock);

/* Wait until sock is ready for events (POLLIN/POLLOUT; errors and hang-ups count as
 * ready, so that the next operation reports them), for at most what is left of d.
 * EINTR waits again for what is left. FDSEND_OK, FDSEND_ETIMEDOUT once d has passed,
 * FDSEND_EBADF, or another code (fdsend_fail records errno). */
int32_t fdsend_wait_ready(int sock, short events, fdsend_deadline *d);

/* A read inside something already started (a channel frame, fdsend_recv_exact's bytes)
 * failed with the recorded code rc. Inside, the rest is waited for whatever the socket mode:
 * FDSEND_EAGAIN (a non-blocking socket) waits for it within d and returns FDSEND_OK (read
 * again); a timeout there (the peer stopped inside for SO_RCVTIMEO) becomes FDSEND_EPROTO;
 * any other code is returned as it is. */
int32_t fdsend_wait_inside(int sock, int32_t rc, fdsend_deadline *d);

/* One sendmsg or recvmsg (op) with the library's rule for signals: the first attempt is the
 * caller's own (blocking unless flags has MSG_DONTWAIT). After an EINTR the call does not
 * start over: the operation is retried with MSG_DONTWAIT and, while the socket is not
 * ready, fdsend_wait_ready waits for what is left of d (a non-blocking socket or
 * MSG_DONTWAIT get their EAGAIN instead). Returns op's result: >= 0, or -1 with errno set
 * (ETIMEDOUT once d has passed). */
typedef ssize_t (*fdsend_msg_op)(int sock, struct msghdr *msg, int flags);
static inline ssize_t fdsend_io(fdsend_msg_op op, int sock, struct msghdr *msg, int flags,
                                fdsend_deadline *d);

/* fdsend_io after its first attempt was interrupted, or when d is already strict. */
ssize_t fdsend_io_retry(fdsend_msg_op op, int sock, struct msghdr *msg, int flags,
                        fdsend_deadline *d);

/* Inline because it is the fast path of every call: with op known at the call site the
 * first attempt is a direct sendmsg/recvmsg, and everything else is out of line. */
static inline ssize_t fdsend_io(fdsend_msg_op op, int sock, struct msghdr *msg, int flags,
                                fdsend_deadline *d)
{
    if (!d->strict) {
        ssize_t n = op(sock, msg, flags);
        if (n >= 0 || errno != EINTR)
            return n;
    }
    return fdsend_io_retry(op, sock, msg, flags, d);
}

/* The fdsend_msg_op for recvmsg. */
static inline ssize_t fdsend_recvmsg_op(int sock, struct msghdr *msg, int flags)
{
    return recvmsg(sock, msg, flags);
}

/* What one recvmsg brought besides data (fdsend_recv_piece). */
typedef struct fdsend_piece {
    int32_t taken;  /* descriptors stored in out[] (close-on-exec) */
    int32_t excess; /* descriptors that arrived but did not fit in out[] (closed) */
    int ctrunc;     /* MSG_CTRUNC: the kernel dropped descriptors */
    int malformed;  /* a control header the parser could not trust (macOS reports a
                     * truncated one with its untruncated cmsg_len) */
    int dtrunc;     /* MSG_TRUNC: the datagram was longer than the buffers */
} fdsend_piece;

/* One recvmsg into iov[0 .. iovcnt) with room for a whole message's descriptors, whatever
 * maxout is (every descriptor that arrives is seen; the ones that do not fit in
 * out[0 .. maxout) are closed: macOS would otherwise install them and lose their numbers).
 * MSG_DONTWAIT if dontwait (where the platform has it), waits within d. Returns the bytes
 * received (0: end of stream or an empty record) and fills *pc, or a recorded negative code,
 * in which case no descriptor is left open. fdsend_recv and the channel both receive
 * through it. */
int64_t fdsend_recv_piece(int sock, struct iovec *iov, int iovcnt, int dontwait, int *out,
                          int32_t maxout, fdsend_piece *pc, fdsend_deadline *d);

#endif /* FDSEND_POSIX_H */
