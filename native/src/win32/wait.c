/* The one place libfdsend waits on Windows, as ../wait.c is on POSIX: one deadline per
 * call (the socket's SO_RCVTIMEO / SO_SNDTIMEO, read once, on QueryPerformanceCounter) and WSAPoll
 * for what is left of it. A call that waits several times (a record still arriving, the
 * rest of a record after a full send buffer) waits against the same deadline, and its
 * expiry is FDSEND_ETIMEDOUT. fdsend_wait offers the same wait to callers.
 * SPDX-License-Identifier: MIT */
#include "fdsend_win32.h"

#include <limits.h>

/* Microseconds on QueryPerformanceCounter. Not GetTickCount64: its 10-16 ms tick lets an
 * elapsed time read from it run up to one tick ahead, so a deadline could pass early. */
static ULONGLONG now_us(void)
{
    LARGE_INTEGER c, f;
    QueryPerformanceCounter(&c);
    QueryPerformanceFrequency(&f);
    return (ULONGLONG)(c.QuadPart / f.QuadPart) * 1000000u +
           (ULONGLONG)(c.QuadPart % f.QuadPart) * 1000000u / (ULONGLONG)f.QuadPart;
}

void fdsend_win_deadline_start(fdsend_win_deadline *d, int for_write, int dontwait)
{
    d->start = now_us();
    d->timeout_ms = -1;
    d->for_write = for_write;
    d->dontwait = dontwait;
}

void fdsend_win_deadline_renew(fdsend_win_deadline *d)
{
    d->start = now_us();
}

int fdsend_win_deadline_left(fdsend_win_deadline *d, SOCKET s)
{
    ULONGLONG elapsed;
    int64_t left;
    if (d->timeout_ms < 0) {
        DWORD tv = 0;
        int l = (int)sizeof tv;
        if (getsockopt(s, SOL_SOCKET, d->for_write ? SO_SNDTIMEO : SO_RCVTIMEO, (char *)&tv,
                       &l) != 0)
            tv = 0; /* not readable: no limit, as the blocking call would have */
        d->timeout_ms = (int64_t)tv;
    }
    if (d->timeout_ms == 0)
        return -1;
    elapsed = now_us() - d->start;
    if ((int64_t)elapsed >= d->timeout_ms * 1000)
        return 0;
    left = (d->timeout_ms * 1000 - (int64_t)elapsed + 999) / 1000; /* rounded up: never early */
    return left > INT_MAX ? INT_MAX : (int)left;
}

static int32_t timed_out(void)
{
    return fdsend_fail_win32(FDSEND_ETIMEDOUT, WSAETIMEDOUT);
}

static int32_t would_block(void)
{
    return fdsend_fail_win32(FDSEND_EAGAIN, WSAEWOULDBLOCK);
}

/* One WSAPoll of s for ms: > 0 ready (revents in *revents), 0 not, or a status. */
static int32_t poll_once(SOCKET s, short events, int ms, short *revents)
{
    for (;;) {
        WSAPOLLFD p;
        int r;
        p.fd = s;
        p.events = events;
        p.revents = 0;
        r = WSAPoll(&p, 1, ms);
        if (r == SOCKET_ERROR) {
            if (WSAGetLastError() == WSAEINTR)
                continue;
            return fdsend_fail_wsa();
        }
        *revents = p.revents;
        if (r > 0 && (p.revents & POLLNVAL))
            return fdsend_fail_win32(FDSEND_EBADF, WSAENOTSOCK);
        return r > 0;
    }
}

int32_t fdsend_win_wait(SOCKET s, fdsend_win_deadline *d)
{
    short events = d->for_write ? POLLWRNORM : POLLRDNORM;
    for (;;) {
        short revents = 0;
        int32_t r;
        int ms = d->dontwait ? 0 : fdsend_win_deadline_left(d, s);
        if (!d->dontwait && ms == 0)
            return timed_out();
        r = poll_once(s, events, ms, &revents);
        if (r < 0)
            return r;
        if (r > 0)
            return FDSEND_OK; /* ready, or an error / hang-up the next call will report */
        if (d->dontwait)
            return would_block();
        /* nothing yet: the deadline is checked at the top */
    }
}

int32_t fdsend_win_wait_more(SOCKET s, size_t have, fdsend_win_deadline *d)
{
    DWORD nap = 1;
    if (d->dontwait)
        return would_block();
    /* Winsock cannot wait for "more than is queued": look, then nap a little longer each
     * time (up to 16 ms), never past the deadline. */
    for (;;) {
        u_long queued = 0;
        short revents = 0;
        int32_t r;
        int ms = fdsend_win_deadline_left(d, s);
        if (ms == 0)
            return timed_out();
        if (ioctlsocket(s, FIONREAD, &queued) != 0)
            return fdsend_fail_wsa();
        if ((size_t)queued > have)
            return FDSEND_OK;
        r = poll_once(s, POLLRDNORM, 0, &revents);
        if (r < 0)
            return r;
        if (revents & (POLLHUP | POLLERR)) /* the peer closed in the middle of a record */
            return fdsend_fail_win32(FDSEND_ECONNRESET, WSAECONNRESET);
        Sleep(ms > 0 && (DWORD)ms < nap ? (DWORD)ms : nap);
        if (nap < 16)
            nap *= 2;
    }
}

int32_t fdsend_win_wait_inside(SOCKET s, int32_t rc, fdsend_win_deadline *d)
{
    if (rc == FDSEND_EAGAIN) {
        d->dontwait = 0;
        rc = fdsend_win_wait(s, d);
    }
    if (rc == FDSEND_ETIMEDOUT) /* the peer stopped inside for SO_RCVTIMEO */
        return fdsend_fail_win32(FDSEND_EPROTO, WSAETIMEDOUT);
    return rc;
}

int32_t fdsend_wait(intptr_t sock, uint32_t events, int32_t timeout_ms)
{
    fdsend_win_deadline d;
    int32_t rc;
    if ((events != FDSEND_POLL_IN && events != FDSEND_POLL_OUT) || timeout_ms < -1)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    if (sock < 0)
        return fdsend_fail_win32(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    fdsend_win_startup();
    fdsend_win_deadline_start(&d, events == FDSEND_POLL_OUT, timeout_ms == 0);
    d.timeout_ms = timeout_ms < 0 ? 0 : timeout_ms; /* 0: none (0 ms is dontwait above) */
    rc = fdsend_win_wait((SOCKET)sock, &d);
    if (rc == FDSEND_EAGAIN) /* looked once, not ready */
        return timed_out();
    if (rc != FDSEND_OK)
        return rc;
    fdsend_clear_error();
    return FDSEND_OK;
}
