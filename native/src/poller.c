/* The readiness engine (fdsend_poller_*): epoll on Linux and Android, kqueue on the BSDs
 * and macOS, one API (fdsend.h). FdSend's async calls wait on it: one thread per process
 * runs fdsend_poller_wait, so no thread is blocked per pending operation. A blocking call
 * on one socket waits in the kernel or in fdsend_wait_ready (wait.c), never here.
 *
 * A poller is a small struct: the epoll/kqueue descriptor and a wake-up pipe (both
 * close-on-exec), whose read end is registered with the token WAKE_TOKEN and drained
 * inside fdsend_poller_wait, never reported.
 * SPDX-License-Identifier: MIT */
#include "fdsend_posix.h"
#include "fdsend_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The kernel's readiness interface, as CMake's probes found it (fdsend_config.h). */
#if HAVE_EPOLL
#  define FDSEND_POLLER_EPOLL 1
#  include <sys/epoll.h>
#elif HAVE_KQUEUE
#  define FDSEND_POLLER_KQUEUE 1
#  include <sys/types.h>
#  include <sys/event.h>
#  include <sys/time.h>
#endif

#define WAKE_TOKEN UINT64_MAX
#define VALID_BITS (FDSEND_POLL_IN | FDSEND_POLL_OUT | FDSEND_POLL_EDGE | FDSEND_POLL_ONESHOT)

typedef struct poller {
    int fd;       /* epoll or kqueue */
    int wake[2];  /* pipe: [0] registered for reading, [1] written by fdsend_poller_wake */
    int wake_pending;
} poller;

static poller *as_poller(intptr_t h)
{
    return (poller *)h;
}

static int set_cloexec_nonblock(int fd, int nonblock)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) != 0)
        return -1;
    if (nonblock) {
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
            return -1;
    }
    return 0;
}

static int32_t check_args(poller *p, intptr_t fd, uint32_t events)
{
    if (p == NULL || (events & ~(uint32_t)VALID_BITS) != 0 ||
        (events & (FDSEND_POLL_EDGE | FDSEND_POLL_ONESHOT)) == (FDSEND_POLL_EDGE | FDSEND_POLL_ONESHOT))
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    if (fd < 0 || fd > INT_MAX)
        return fdsend_fail(FDSEND_EBADF, EBADF);
    return FDSEND_OK;
}

#if FDSEND_POLLER_EPOLL

static int32_t ctl(poller *p, int op, intptr_t fd, uint32_t events, uint64_t token)
{
    struct epoll_event ev;
    int32_t rc = check_args(p, fd, events);
    if (rc != FDSEND_OK)
        return rc;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLRDHUP;
    if (events & FDSEND_POLL_IN)
        ev.events |= EPOLLIN;
    if (events & FDSEND_POLL_OUT)
        ev.events |= EPOLLOUT;
    if (events & FDSEND_POLL_EDGE)
        ev.events |= EPOLLET;
    if (events & FDSEND_POLL_ONESHOT)
        ev.events |= EPOLLONESHOT;
    ev.data.u64 = token;
    if (epoll_ctl(p->fd, op, (int)fd, op == EPOLL_CTL_DEL ? NULL : &ev) == 0)
        return FDSEND_OK;
    if (errno == EEXIST)
        return fdsend_fail(FDSEND_EINVAL, EEXIST);
    if (errno == ENOENT)
        return fdsend_fail(FDSEND_ENOENT, ENOENT);
    if (errno == EPERM) /* a regular file or directory: never "not ready" */
        return fdsend_fail(FDSEND_ENOTSUP, EPERM);
    if (errno == ENOMEM || errno == ENOSPC)
        return fdsend_fail(FDSEND_ENOBUFS, errno);
    return fdsend_fail_errno();
}

static int create_backend(void)
{
#  ifdef EPOLL_CLOEXEC
    return epoll_create1(EPOLL_CLOEXEC);
#  else
    int fd = epoll_create(64);
    if (fd >= 0 && set_cloexec_nonblock(fd, 0) != 0) {
        close(fd);
        return -1;
    }
    return fd;
#  endif
}

static int32_t register_wake(poller *p)
{
    return ctl(p, EPOLL_CTL_ADD, p->wake[0], FDSEND_POLL_IN, WAKE_TOKEN);
}

int32_t fdsend_poller_add(intptr_t h, intptr_t fd, uint32_t events, uint64_t token)
{
    return ctl(as_poller(h), EPOLL_CTL_ADD, fd, events, token);
}

int32_t fdsend_poller_modify(intptr_t h, intptr_t fd, uint32_t events, uint64_t token)
{
    return ctl(as_poller(h), EPOLL_CTL_MOD, fd, events, token);
}

int32_t fdsend_poller_remove(intptr_t h, intptr_t fd)
{
    return ctl(as_poller(h), EPOLL_CTL_DEL, fd, 0, 0);
}

#  define WAIT_BATCH 256

int32_t fdsend_poller_wait(intptr_t h, fdsend_poll_event *events, int32_t max, int32_t timeout_ms)
{
    poller *p = as_poller(h);
    struct epoll_event evs[WAIT_BATCH];
    int n, i;
    int32_t out = 0;
    if (p == NULL || max <= 0 || events == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    n = epoll_wait(p->fd, evs, max < WAIT_BATCH ? max : WAIT_BATCH, timeout_ms < 0 ? -1 : timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : fdsend_fail_errno();
    for (i = 0; i < n; i++) {
        uint32_t e = 0;
        if (evs[i].data.u64 == WAKE_TOKEN) {
            char buf[64];
            __atomic_store_n(&p->wake_pending, 0, __ATOMIC_SEQ_CST);
            while (read(p->wake[0], buf, sizeof buf) > 0) {
            }
            continue;
        }
        if (evs[i].events & (EPOLLIN | EPOLLRDHUP))
            e |= FDSEND_POLL_IN;
        if (evs[i].events & EPOLLOUT)
            e |= FDSEND_POLL_OUT;
        if (evs[i].events & (EPOLLERR | EPOLLHUP))
            e |= FDSEND_POLL_ERR | FDSEND_POLL_IN | FDSEND_POLL_OUT;
        events[out].token = evs[i].data.u64;
        events[out].events = e;
        events[out].reserved = 0;
        out++;
    }
    return out;
}

#elif FDSEND_POLLER_KQUEUE

static int create_backend(void)
{
    int fd = kqueue();
    if (fd >= 0 && set_cloexec_nonblock(fd, 0) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int32_t kq_fail(void)
{
    if (errno == ENOENT)
        return fdsend_fail(FDSEND_ENOENT, ENOENT);
    if (errno == ENOMEM)
        return fdsend_fail(FDSEND_ENOBUFS, ENOMEM);
    return fdsend_fail_errno();
}

/* add: EV_ADD for the wanted filters; modify: the same plus EV_DELETE of the filter no longer
 * wanted (ignoring "not there"). The token rides in udata. */
static int32_t kq_ctl(poller *p, intptr_t fd, uint32_t events, uint64_t token, int modify)
{
    struct kevent ch[2];
    int n = 0, i;
    unsigned short flags = EV_ADD | EV_ENABLE;
    int32_t rc = check_args(p, fd, events);
    if (rc != FDSEND_OK)
        return rc;
    if (events & FDSEND_POLL_EDGE)
        flags |= EV_CLEAR;
    if (events & FDSEND_POLL_ONESHOT)
        flags |= EV_DISPATCH;
    if (events & FDSEND_POLL_IN)
        EV_SET(&ch[n++], (uintptr_t)fd, EVFILT_READ, flags, 0, 0, (void *)(uintptr_t)token);
    if (events & FDSEND_POLL_OUT)
        EV_SET(&ch[n++], (uintptr_t)fd, EVFILT_WRITE, flags, 0, 0, (void *)(uintptr_t)token);
    if (n > 0 && kevent(p->fd, ch, n, NULL, 0, NULL) != 0)
        return kq_fail();
    if (modify) {
        for (i = 0; i < 2; i++) {
            struct kevent del;
            int filter = i == 0 ? EVFILT_READ : EVFILT_WRITE;
            if (events & (i == 0 ? FDSEND_POLL_IN : FDSEND_POLL_OUT))
                continue;
            EV_SET(&del, (uintptr_t)fd, filter, EV_DELETE, 0, 0, NULL);
            (void)kevent(p->fd, &del, 1, NULL, 0, NULL);
        }
    }
    return FDSEND_OK;
}

static int32_t register_wake(poller *p)
{
    return kq_ctl(p, p->wake[0], FDSEND_POLL_IN, WAKE_TOKEN, 0);
}

int32_t fdsend_poller_add(intptr_t h, intptr_t fd, uint32_t events, uint64_t token)
{
    return kq_ctl(as_poller(h), fd, events, token, 0);
}

int32_t fdsend_poller_modify(intptr_t h, intptr_t fd, uint32_t events, uint64_t token)
{
    return kq_ctl(as_poller(h), fd, events, token, 1);
}

int32_t fdsend_poller_remove(intptr_t h, intptr_t fd)
{
    poller *p = as_poller(h);
    struct kevent del;
    int i, found = 0;
    int32_t rc = check_args(p, fd, 0);
    if (rc != FDSEND_OK)
        return rc;
    for (i = 0; i < 2; i++) {
        EV_SET(&del, (uintptr_t)fd, i == 0 ? EVFILT_READ : EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
        if (kevent(p->fd, &del, 1, NULL, 0, NULL) == 0)
            found = 1;
        else if (errno == EBADF)
            return fdsend_fail(FDSEND_EBADF, EBADF);
    }
    return found ? FDSEND_OK : fdsend_fail(FDSEND_ENOENT, ENOENT);
}

#  define WAIT_BATCH 256

int32_t fdsend_poller_wait(intptr_t h, fdsend_poll_event *events, int32_t max, int32_t timeout_ms)
{
    poller *p = as_poller(h);
    struct kevent evs[WAIT_BATCH];
    struct timespec ts, *tp = NULL;
    int n, i;
    int32_t out = 0;
    if (p == NULL || max <= 0 || events == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tp = &ts;
    }
    n = kevent(p->fd, NULL, 0, evs, max < WAIT_BATCH ? max : WAIT_BATCH, tp);
    if (n < 0)
        return errno == EINTR ? 0 : fdsend_fail_errno();
    for (i = 0; i < n; i++) {
        uint64_t token = (uint64_t)(uintptr_t)evs[i].udata;
        uint32_t e;
        if (token == (uint64_t)(uintptr_t)WAKE_TOKEN && (int)evs[i].ident == p->wake[0]) {
            char buf[64];
            __atomic_store_n(&p->wake_pending, 0, __ATOMIC_SEQ_CST);
            while (read(p->wake[0], buf, sizeof buf) > 0) {
            }
            continue;
        }
        e = evs[i].filter == EVFILT_WRITE ? FDSEND_POLL_OUT : FDSEND_POLL_IN;
        if (evs[i].flags & (EV_ERROR | EV_EOF))
            e |= FDSEND_POLL_ERR | FDSEND_POLL_IN | FDSEND_POLL_OUT;
        /* kqueue reports read and write separately: merge them for one token */
        if (out > 0 && events[out - 1].token == token) {
            events[out - 1].events |= e;
            continue;
        }
        events[out].token = token;
        events[out].events = e;
        events[out].reserved = 0;
        out++;
    }
    return out;
}

#endif

#if FDSEND_POLLER_EPOLL || FDSEND_POLLER_KQUEUE

int32_t fdsend_poller_create(intptr_t *out)
{
    poller *p;
    int32_t rc;
    if (out == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    *out = 0;
    p = (poller *)calloc(1, sizeof *p);
    if (p == NULL)
        return fdsend_fail(FDSEND_ENOBUFS, ENOMEM);
    p->wake[0] = p->wake[1] = -1;
    p->fd = create_backend();
    if (p->fd < 0)
        goto fail;
    if (pipe(p->wake) != 0) {
        p->wake[0] = p->wake[1] = -1;
        goto fail;
    }
    if (set_cloexec_nonblock(p->wake[0], 1) != 0 || set_cloexec_nonblock(p->wake[1], 1) != 0)
        goto fail;
    rc = register_wake(p);
    if (rc != FDSEND_OK) {
        int err = errno;
        fdsend_poller_destroy((intptr_t)p);
        errno = err;
        return rc;
    }
    *out = (intptr_t)p;
    return FDSEND_OK;
fail:
    rc = fdsend_fail_errno();
    {
        int err = errno;
        fdsend_poller_destroy((intptr_t)p);
        errno = err;
    }
    return rc;
}

int32_t fdsend_poller_destroy(intptr_t h)
{
    poller *p = as_poller(h);
    if (p == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    if (p->fd >= 0)
        close(p->fd);
    if (p->wake[0] >= 0)
        close(p->wake[0]);
    if (p->wake[1] >= 0)
        close(p->wake[1]);
    free(p);
    return FDSEND_OK;
}

int32_t fdsend_poller_wake(intptr_t h)
{
    poller *p = as_poller(h);
    int saved = errno;
    if (p == NULL)
        return FDSEND_EINVAL; /* async-signal-safe: no fdsend_fail (thread-local state) */
    if (__atomic_exchange_n(&p->wake_pending, 1, __ATOMIC_SEQ_CST) == 0) {
        char b = 1;
        ssize_t r = write(p->wake[1], &b, 1); /* EAGAIN: a byte is already there */
        (void)r;
    }
    errno = saved;
    return FDSEND_OK;
}

#else /* no epoll, no kqueue */

int32_t fdsend_poller_create(intptr_t *out)
{
    if (out != NULL)
        *out = 0;
    return fdsend_fail(FDSEND_ENOTSUP, ENOSYS);
}

int32_t fdsend_poller_destroy(intptr_t h)
{
    (void)h;
    return fdsend_fail(FDSEND_EINVAL, EINVAL);
}

int32_t fdsend_poller_add(intptr_t h, intptr_t fd, uint32_t events, uint64_t token)
{
    (void)h; (void)fd; (void)events; (void)token;
    return fdsend_fail(FDSEND_EINVAL, EINVAL);
}

int32_t fdsend_poller_modify(intptr_t h, intptr_t fd, uint32_t events, uint64_t token)
{
    (void)h; (void)fd; (void)events; (void)token;
    return fdsend_fail(FDSEND_EINVAL, EINVAL);
}

int32_t fdsend_poller_remove(intptr_t h, intptr_t fd)
{
    (void)h; (void)fd;
    return fdsend_fail(FDSEND_EINVAL, EINVAL);
}

int32_t fdsend_poller_wait(intptr_t h, fdsend_poll_event *events, int32_t max, int32_t timeout_ms)
{
    (void)h; (void)events; (void)max; (void)timeout_ms;
    return fdsend_fail(FDSEND_EINVAL, EINVAL);
}

int32_t fdsend_poller_wake(intptr_t h)
{
    (void)h;
    return FDSEND_EINVAL;
}

#endif
