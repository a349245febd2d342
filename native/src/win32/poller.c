/* The readiness engine (fdsend_poller_*, fdsend.h) on Windows, on WSAPoll. A poller is a
 * table of registrations (socket, interest, token, armed) under a lock, and a connected
 * loopback TCP pair: its reading end is always in the WSAPoll set, and
 * fdsend_poller_wake writes one byte to the other end. fdsend_poller_wait builds the
 * WSAPoll set from the table, waits, and reports what became ready; a registration
 * changed from another thread while a wait is in WSAPoll wakes it, and the next wait uses
 * the new table.
 *
 * WSAPoll is level-triggered: level and one-shot registrations behave as on POSIX;
 * FDSEND_POLL_EDGE cannot be emulated without a thread spinning on a socket that stays
 * ready, so it is refused (FDSEND_ENOTSUP). Only sockets can be registered. A socket
 * closed without being removed is dropped when WSAPoll reports it invalid (POLLNVAL); one
 * whose one-shot registration fired is not in the WSAPoll set, so its value may be added
 * again (it may belong to a new socket now).
 * SPDX-License-Identifier: MIT */
#include "fdsend_win32.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define VALID_BITS (FDSEND_POLL_IN | FDSEND_POLL_OUT | FDSEND_POLL_EDGE | FDSEND_POLL_ONESHOT)
#define STACK_SLOTS 64

typedef struct registration {
    SOCKET sock;
    uint32_t events; /* FDSEND_POLL_IN / OUT / ONESHOT */
    uint64_t token;
    int armed;       /* 0: a one-shot registration that has fired, until modified */
} registration;

typedef struct poller {
    CRITICAL_SECTION lock;
    registration *regs;
    size_t count, capacity;
    SOCKET wake_r, wake_w;
    volatile LONG wake_pending;
    int waiting; /* threads inside WSAPoll with a set built from the table (lock) */
} poller;

static poller *as_poller(intptr_t h)
{
    return (poller *)h;
}

/* A non-inheritable TCP socket (every handle this library makes is). */
static SOCKET new_socket(void)
{
    SOCKET s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET && WSAGetLastError() == WSAEINVAL) {
        /* Before Windows 7 SP1 there is no WSA_FLAG_NO_HANDLE_INHERIT. */
        s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
        if (s != INVALID_SOCKET)
            SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
    }
    return s;
}

/* The wake-up pair: a loopback connection, both ends non-blocking. FDSEND_OK or a status
 * (nothing left open). */
static int32_t wake_pair(SOCKET *r, SOCKET *w)
{
    struct sockaddr_in a;
    int alen = (int)sizeof a;
    u_long on = 1;
    int32_t rc = FDSEND_OK;
    SOCKET l = new_socket();
    *r = *w = INVALID_SOCKET;
    if (l == INVALID_SOCKET)
        return fdsend_fail_wsa();
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0 ||
        (*w = new_socket()) == INVALID_SOCKET ||
        connect(*w, (struct sockaddr *)&a, sizeof a) != 0 ||
        (*r = accept(l, NULL, NULL)) == INVALID_SOCKET ||
        ioctlsocket(*r, FIONBIO, &on) != 0 || ioctlsocket(*w, FIONBIO, &on) != 0) {
        rc = fdsend_fail_wsa();
        if (*r != INVALID_SOCKET)
            closesocket(*r);
        if (*w != INVALID_SOCKET)
            closesocket(*w);
        *r = *w = INVALID_SOCKET;
    } else {
        SetHandleInformation((HANDLE)*r, HANDLE_FLAG_INHERIT, 0);
    }
    closesocket(l);
    return rc;
}

int32_t fdsend_poller_create(intptr_t *out)
{
    poller *p;
    int32_t rc;
    if (out == NULL)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    *out = 0;
    fdsend_win_startup();
    p = (poller *)calloc(1, sizeof *p);
    if (p == NULL)
        return fdsend_fail_win32(FDSEND_ENOBUFS, ERROR_NOT_ENOUGH_MEMORY);
    rc = wake_pair(&p->wake_r, &p->wake_w);
    if (rc != FDSEND_OK) {
        free(p);
        return rc;
    }
    InitializeCriticalSection(&p->lock);
    *out = (intptr_t)p;
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_poller_destroy(intptr_t h)
{
    poller *p = as_poller(h);
    if (p == NULL)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    closesocket(p->wake_r);
    closesocket(p->wake_w);
    DeleteCriticalSection(&p->lock);
    free(p->regs);
    free(p);
    return FDSEND_OK;
}

int32_t fdsend_poller_wake(intptr_t h)
{
    poller *p = as_poller(h);
    if (p == NULL)
        return FDSEND_EINVAL;
    if (InterlockedExchange(&p->wake_pending, 1) == 0) {
        char b = 1;
        send(p->wake_w, &b, 1, 0); /* WSAEWOULDBLOCK: bytes are already there */
    }
    return FDSEND_OK;
}

/* Check a registration's arguments: FDSEND_OK or a status. */
static int32_t check_args(poller *p, intptr_t fd, uint32_t events)
{
    int type = 0;
    int l = (int)sizeof type;
    if (p == NULL || (events & ~(uint32_t)VALID_BITS) != 0 ||
        (events & (FDSEND_POLL_EDGE | FDSEND_POLL_ONESHOT)) ==
            (FDSEND_POLL_EDGE | FDSEND_POLL_ONESHOT))
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    if (events & FDSEND_POLL_EDGE)
        return fdsend_fail_win32(FDSEND_ENOTSUP, ERROR_NOT_SUPPORTED);
    if (fd <= 0 || (SOCKET)fd == INVALID_SOCKET)
        return fdsend_fail_win32(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    fdsend_win_startup();
    if (getsockopt((SOCKET)fd, SOL_SOCKET, SO_TYPE, (char *)&type, &l) != 0) {
        DWORD err = (DWORD)WSAGetLastError();
        return fdsend_fail_win32(err == WSAENOTSOCK ? FDSEND_EBADF : fdsend_status_from_win32(err),
                                 err);
    }
    return FDSEND_OK;
}

/* The index of s's registration, or p->count. Under the lock. */
static size_t find(const poller *p, SOCKET s)
{
    size_t i;
    for (i = 0; i < p->count; i++) {
        if (p->regs[i].sock == s)
            break;
    }
    return i;
}

/* After a change to the table: waits inside WSAPoll must rebuild their sets. Under the lock.
 * (Several threads may wait at once: each reports only what is still registered and armed
 * when its WSAPoll returns, so a one-shot registration is reported by one of them.) */
static void changed(poller *p)
{
    if (p->waiting)
        fdsend_poller_wake((intptr_t)p);
}

/* The slot for a new registration of the socket found at i (p->count: none): FDSEND_OK and
 * *slot, or a status. Under the lock. */
static int32_t slot_for_add(poller *p, size_t i, registration **slot)
{
    if (i < p->count && p->regs[i].armed)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_ALREADY_EXISTS);
    if (i < p->count) {
        /* A one-shot registration that fired and was never re-armed: its socket may have
         * been closed and the value given to a new socket (WSAPoll cannot tell, as the
         * value is not in the set), so the new registration takes its place. */
        *slot = &p->regs[i];
        return FDSEND_OK;
    }
    if (p->count == p->capacity) {
        size_t cap = p->capacity ? p->capacity * 2 : 16;
        registration *t = cap < (size_t)INT_MAX / 2 ? realloc(p->regs, cap * sizeof *t) : NULL;
        if (t == NULL)
            return fdsend_fail_win32(FDSEND_ENOBUFS, ERROR_NOT_ENOUGH_MEMORY);
        p->regs = t;
        p->capacity = cap;
    }
    *slot = &p->regs[p->count++];
    return FDSEND_OK;
}

/* fdsend_poller_add (adding) or fdsend_poller_modify: the registration armed with events
 * and token. */
static int32_t put(intptr_t h, intptr_t fd, uint32_t events, uint64_t token, int adding)
{
    poller *p = as_poller(h);
    registration *r = NULL;
    size_t i;
    int32_t rc = check_args(p, fd, events);
    if (rc != FDSEND_OK)
        return rc;
    EnterCriticalSection(&p->lock);
    i = find(p, (SOCKET)fd);
    if (adding)
        rc = slot_for_add(p, i, &r);
    else if (i == p->count)
        rc = fdsend_fail_win32(FDSEND_ENOENT, ERROR_NOT_FOUND);
    else
        r = &p->regs[i];
    if (rc == FDSEND_OK) {
        r->sock = (SOCKET)fd;
        r->events = events;
        r->token = token;
        r->armed = 1;
        changed(p);
    }
    LeaveCriticalSection(&p->lock);
    if (rc == FDSEND_OK)
        fdsend_clear_error();
    return rc;
}

int32_t fdsend_poller_add(intptr_t h, intptr_t fd, uint32_t events, uint64_t token)
{
    return put(h, fd, events, token, 1);
}

int32_t fdsend_poller_modify(intptr_t h, intptr_t fd, uint32_t events, uint64_t token)
{
    return put(h, fd, events, token, 0);
}

int32_t fdsend_poller_remove(intptr_t h, intptr_t fd)
{
    poller *p = as_poller(h);
    size_t i;
    int32_t rc;
    if (p == NULL)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    if (fd <= 0 || (SOCKET)fd == INVALID_SOCKET)
        return fdsend_fail_win32(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    EnterCriticalSection(&p->lock);
    i = find(p, (SOCKET)fd);
    if (i == p->count) {
        rc = fdsend_fail_win32(FDSEND_ENOENT, ERROR_NOT_FOUND);
    } else {
        p->regs[i] = p->regs[--p->count];
        changed(p);
        rc = FDSEND_OK;
    }
    LeaveCriticalSection(&p->lock);
    if (rc == FDSEND_OK)
        fdsend_clear_error();
    return rc;
}

/* WSAPoll bits for a registration's interest. */
static SHORT poll_bits(uint32_t events)
{
    SHORT b = 0;
    if (events & FDSEND_POLL_IN)
        b |= POLLRDNORM;
    if (events & FDSEND_POLL_OUT)
        b |= POLLWRNORM;
    return b;
}

/* FDSEND_POLL_* bits for what WSAPoll reported. */
static uint32_t ready_bits(SHORT revents)
{
    uint32_t e = 0;
    if (revents & (POLLRDNORM | POLLRDBAND))
        e |= FDSEND_POLL_IN;
    if (revents & POLLWRNORM)
        e |= FDSEND_POLL_OUT;
    if (revents & (POLLERR | POLLHUP))
        e |= FDSEND_POLL_ERR | FDSEND_POLL_IN | FDSEND_POLL_OUT;
    return e;
}

static void drain_wake(poller *p)
{
    char buf[64];
    InterlockedExchange(&p->wake_pending, 0);
    while (recv(p->wake_r, buf, sizeof buf, 0) > 0) {
    }
}

/* Build the WSAPoll set: the wake socket, then every armed registration. Under the lock.
 * *set may be swapped for a heap array (*heap, which the caller frees). Returns the count,
 * or -1 (out of memory). */
static int build_set(poller *p, WSAPOLLFD **set, WSAPOLLFD **heap)
{
    size_t i;
    int n = 1;
    if (p->count + 1 > STACK_SLOTS) {
        if (p->count + 1 > (size_t)INT_MAX / sizeof **set)
            return -1;
        *heap = malloc((p->count + 1) * sizeof **set);
        if (*heap == NULL)
            return -1;
        *set = *heap;
    }
    (*set)[0].fd = p->wake_r;
    (*set)[0].events = POLLRDNORM;
    (*set)[0].revents = 0;
    for (i = 0; i < p->count; i++) {
        const registration *r = &p->regs[i];
        SHORT bits = poll_bits(r->events);
        if (!r->armed || bits == 0)
            continue;
        (*set)[n].fd = r->sock;
        (*set)[n].events = bits;
        (*set)[n].revents = 0;
        n++;
    }
    return n;
}

int32_t fdsend_poller_wait(intptr_t h, fdsend_poll_event *events, int32_t max, int32_t timeout_ms)
{
    poller *p = as_poller(h);
    WSAPOLLFD stack[STACK_SLOTS];
    WSAPOLLFD *set = stack, *heap = NULL;
    int n, i, r;
    int32_t out = 0;
    if (p == NULL || max <= 0 || events == NULL)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    EnterCriticalSection(&p->lock);
    n = build_set(p, &set, &heap);
    if (n > 0)
        p->waiting++;
    LeaveCriticalSection(&p->lock);
    if (n < 0)
        return fdsend_fail_win32(FDSEND_ENOBUFS, ERROR_NOT_ENOUGH_MEMORY);

    r = WSAPoll(set, (ULONG)n, timeout_ms < 0 ? -1 : timeout_ms);

    EnterCriticalSection(&p->lock);
    p->waiting--;
    if (r == SOCKET_ERROR) {
        DWORD err = (DWORD)WSAGetLastError();
        LeaveCriticalSection(&p->lock);
        free(heap);
        return err == WSAEINTR ? 0 : fdsend_fail_win32(fdsend_status_from_win32(err), err);
    }
    if (set[0].revents != 0)
        drain_wake(p);
    for (i = 1; i < n && r > 0 && out < max; i++) {
        size_t k;
        registration *reg;
        uint32_t e;
        if (set[i].revents == 0)
            continue;
        /* The table may have changed during WSAPoll: report only for a registration that
         * is still there and armed, and only the bits it still wants. */
        k = find(p, set[i].fd);
        if (k == p->count || !p->regs[k].armed)
            continue;
        reg = &p->regs[k];
        if (set[i].revents & POLLNVAL) {
            /* Closed without being removed: dropped silently, as on POSIX. */
            p->regs[k] = p->regs[--p->count];
            continue;
        }
        e = ready_bits(set[i].revents);
        if ((e & FDSEND_POLL_ERR) == 0)
            e &= reg->events & (FDSEND_POLL_IN | FDSEND_POLL_OUT);
        if (e == 0)
            continue;
        events[out].token = reg->token;
        events[out].events = e;
        events[out].reserved = 0;
        out++;
        if (reg->events & FDSEND_POLL_ONESHOT)
            reg->armed = 0;
    }
    LeaveCriticalSection(&p->lock);
    free(heap);
    fdsend_clear_error();
    return out;
}
