/* The one place libfdsend waits: a deadline per call (the socket's SO_RCVTIMEO /
 * SO_SNDTIMEO on a monotonic clock) and poll() for what is left of it. Used by
 * fdsend_posix.c (EINTR inside fdsend_send / fdsend_recv / fdsend_recv_exact), channel.c
 * (the channel's waits inside a frame and behind another thread's frame) and fdsend_wait
 * (the same wait for callers: the .NET binding's blocking calls on a non-blocking socket).
 * SPDX-License-Identifier: MIT */
#include "fdsend_posix.h"
#include "fdsend_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* The deadline clock's resolution in nanoseconds (what a reading may lag the time). */
static int64_t clock_resolution_ns(void)
{
    struct timespec r;
    if (clock_getres(FDSEND_DEADLINE_CLOCK, &r) != 0 || r.tv_sec < 0 || r.tv_nsec < 0)
        return 0;
    return r.tv_sec > 0 ? 1000000000 : (int64_t)r.tv_nsec;
}

/* The socket's SO_RCVTIMEO (POLLIN) or SO_SNDTIMEO (POLLOUT) in nanoseconds; 0 when none is
 * set or it cannot be read. */
static int64_t socket_timeout_ns(int sock, short events)
{
    struct timeval tv;
    socklen_t l = sizeof tv;
    int saved = errno;
    memset(&tv, 0, sizeof tv);
    if (getsockopt(sock, SOL_SOCKET, events == POLLIN ? SO_RCVTIMEO : SO_SNDTIMEO, &tv,
                   &l) != 0 || tv.tv_sec < 0 || tv.tv_usec < 0) {
        errno = saved;
        return 0;
    }
    if ((int64_t)tv.tv_sec > INT64_MAX / 1000000000 - 1)
        return INT64_MAX / 2; /* practically for ever */
    return (int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000;
}

int fdsend_deadline_ms_left(fdsend_deadline *d, int sock)
{
    struct timespec t;
    int64_t elapsed, left, ms;
    if (d->timeout_ns < 0)
        d->timeout_ns = socket_timeout_ns(sock, d->events);
    if (d->timeout_ns == 0)
        return -1;
    if (!d->started)
        fdsend_deadline_renew(d);
    fdsend_deadline_now(&t);
    elapsed = ((int64_t)t.tv_sec - (int64_t)d->start.tv_sec) * 1000000000 +
              ((int64_t)t.tv_nsec - (int64_t)d->start.tv_nsec);
    /* Two readings a tick apart may be almost no time apart: never end a wait early. */
    elapsed -= clock_resolution_ns();
    if (elapsed < 0)
        elapsed = 0;
    if (elapsed >= d->timeout_ns)
        return 0;
    left = d->timeout_ns - elapsed;
    ms = (left + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

#define POLL_READY 1
#define POLL_TIMEOUT 0
#define POLL_INTERRUPTED 2

/* One poll() of sock for events, for at most ms (-1: no limit): POLL_READY (an error or
 * hang-up counts), POLL_TIMEOUT, POLL_INTERRUPTED (a signal), or a recorded negative code. */
static int32_t poll_once(int sock, short events, int ms)
{
    struct pollfd p;
    int r;
    p.fd = sock;
    p.events = events;
    p.revents = 0;
    r = poll(&p, 1, ms);
    if (r > 0)
        return (p.revents & POLLNVAL) ? fdsend_fail(FDSEND_EBADF, EBADF) : POLL_READY;
    if (r == 0)
        return POLL_TIMEOUT;
    return errno == EINTR ? POLL_INTERRUPTED : fdsend_fail_errno();
}

int32_t fdsend_wait_ready(int sock, short events, fdsend_deadline *d)
{
    for (;;) {
        int32_t r;
        int ms = fdsend_deadline_ms_left(d, sock);
        if (ms == 0)
            return fdsend_fail(FDSEND_ETIMEDOUT, ETIMEDOUT);
        r = poll_once(sock, events, ms);
        if (r < 0)
            return r;
        if (r == POLL_READY)
            return FDSEND_OK;
        /* the deadline (checked at the top) or a signal: wait for what is left */
    }
}

int fdsend_is_nonblocking(int sock)
{
    int saved = errno;
    int fl = fcntl(sock, F_GETFL);
    errno = saved;
    return fl >= 0 && (fl & O_NONBLOCK) != 0;
}

int32_t fdsend_wait_inside(int sock, int32_t rc, fdsend_deadline *d)
{
    if (rc == FDSEND_EAGAIN)
        rc = fdsend_wait_ready(sock, POLLIN, d);
    if (rc == FDSEND_ETIMEDOUT)
        return fdsend_fail(FDSEND_EPROTO, ETIMEDOUT);
    return rc;
}

int32_t fdsend_wait(intptr_t sock, uint32_t events, int32_t timeout_ms)
{
    fdsend_deadline d;
    short ev;
    int32_t rc;
    if (events == FDSEND_POLL_IN)
        ev = POLLIN;
    else if (events == FDSEND_POLL_OUT)
        ev = POLLOUT;
    else
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    if (timeout_ms < -1)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    if (!fdsend_valid_fd(sock))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    if (timeout_ms == 0) {
        do
            rc = poll_once((int)sock, ev, 0);
        while (rc == POLL_INTERRUPTED);
        if (rc == POLL_TIMEOUT)
            return fdsend_fail(FDSEND_ETIMEDOUT, ETIMEDOUT);
    } else {
        fdsend_deadline_start(&d, ev, 0);
        d.timeout_ns = timeout_ms < 0 ? 0 : (int64_t)timeout_ms * 1000000; /* 0: none */
        rc = fdsend_wait_ready((int)sock, ev, &d);
    }
    if (rc < 0)
        return rc;
    fdsend_clear_error();
    return FDSEND_OK;
}

ssize_t fdsend_io_retry(fdsend_msg_op op, int sock, struct msghdr *msg, int flags,
                        fdsend_deadline *d)
{
    ssize_t n;
    int nonblocking = -1; /* O_NONBLOCK: looked up once, if it matters */
    d->strict = 1; /* interrupted (fdsend_io): from now on, wait only for what is left */
#if HAVE_MSG_DONTWAIT
    for (;;) {
        int32_t rc;
        n = op(sock, msg, flags | MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (flags & MSG_DONTWAIT)
            return -1; /* the caller asked not to wait */
        if (nonblocking < 0)
            nonblocking = fdsend_is_nonblocking(sock);
        if (nonblocking)
            return -1;
        /* Ready but still EAGAIN (another thread was first): wait again, same deadline. */
        rc = fdsend_wait_ready(sock, d->events, d);
        if (rc != FDSEND_OK)
            return -1; /* errno: ETIMEDOUT, EBADF, ... */
    }
#else
    /* No MSG_DONTWAIT: wait for what is left, then one blocking attempt. */
    (void)nonblocking;
    for (;;) {
        if (fdsend_wait_ready(sock, d->events, d) != FDSEND_OK)
            return -1;
        n = op(sock, msg, flags);
        if (n >= 0 || errno != EINTR)
            return n;
    }
#endif /* HAVE_MSG_DONTWAIT */
}
