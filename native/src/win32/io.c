/* fdsend_send / fdsend_recv on Windows: every fdsend_send is one record on the connected
 * stream socket (record.c's bytes, handles.c's entries); fdsend_recv takes one whole record,
 * fdsend_recv_part one record or the next piece of one, the count of bytes still due kept
 * in the caller's fdsend_recv_state. Every wait goes through wait.c.
 * docs/windows-protocol.md describes the bytes, the trust model and what happens when
 * either side dies.
 * SPDX-License-Identifier: MIT */
#include "fdsend_win32.h"
#include "recv_exact.h"

#include <stdlib.h>
#include <string.h>

/* ---- Sending ------------------------------------------------------------------------------ */

/* Check fdsend_send's arguments: FDSEND_OK or a status. */
static int32_t check_send_args(intptr_t sock, const void *buf, size_t len, const intptr_t *fds,
                               int32_t nfds, uint32_t flags)
{
    int32_t i;
    if (sock < 0)
        return fdsend_fail_win32(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    if ((buf == NULL && len > 0) || nfds < 0 || (fds == NULL && nfds > 0) ||
        (flags & ~(uint32_t)(FDSEND_DONTWAIT | FDSEND_UNIX_SOCKET)) != 0)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    if (nfds > FDSEND_MAX_FDS)
        return fdsend_fail_win32(FDSEND_ETOOMANYFDS, ERROR_INVALID_PARAMETER);
    for (i = 0; i < nfds; i++) {
        /* 0 is no handle; negative values are pseudo-handles (-1 is this process). */
        if (fds[i] <= 0)
            return fdsend_fail_win32(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    }
    return fdsend_win_check_stream(sock);
}

/* Encode the header and table of a record of e's entries and chunk data bytes into head
 * (fdsend_rec_table_len(n, nsockets) bytes). */
static void encode_record(unsigned char *head, const fdsend_win_entries *e, SOCKET s,
                          uint32_t chunk)
{
    fdsend_rec_header h;
    unsigned char *table = head + FDSEND_REC_HEADER;
    int32_t i;
    h.version = e->nsockets > 0 ? FDSEND_REC_VERSION_SOCKETS : FDSEND_REC_VERSION;
    h.nhandles = (uint32_t)e->n;
    h.datalen = chunk;
    h.pid = GetCurrentProcessId();
    h.ctime = fdsend_win_self_creation_time();
    h.sock = (uint64_t)s;
    fdsend_rec_put_header(head, &h);
    for (i = 0; i < e->n; i++)
        fdsend_rec_put_entry(table, (uint32_t)i, e->kinds[i] == FDSEND_REC_ENTRY_HANDLE
                                                     ? (uint64_t)(uintptr_t)e->copies[i] : 0);
    if (e->nsockets > 0) {
        /* WSAPROTOCOL_INFOW as it lies in memory: Windows is little-endian everywhere. */
        memcpy(table + 8 * (size_t)e->n, e->kinds, (size_t)e->n);
        memcpy(table + 9 * (size_t)e->n, e->infos,
               FDSEND_REC_SOCKET_INFO * (size_t)e->nsockets);
    }
}

/* Send head[0..headlen) then buf[0..chunk) as one record. A stream must never hold half a
 * record, so once any byte is out, the rest follows even on a non-blocking socket (waiting
 * for room within the call's SO_SNDTIMEO deadline). Returns chunk or a status. */
static int64_t send_record(SOCKET s, const unsigned char *head, size_t headlen,
                           const void *buf, uint32_t chunk, fdsend_win_entries *e,
                           fdsend_win_deadline *d)
{
    size_t total = headlen + chunk, sent_total = 0;
    while (sent_total < total) {
        WSABUF bufs[2];
        DWORD nbufs = 0, sent = 0, err;
        if (sent_total < headlen) {
            bufs[nbufs].buf = (char *)head + sent_total;
            bufs[nbufs].len = (ULONG)(headlen - sent_total);
            nbufs++;
            if (chunk > 0) {
                bufs[nbufs].buf = (char *)buf;
                bufs[nbufs].len = chunk;
                nbufs++;
            }
        } else {
            bufs[nbufs].buf = (char *)buf + (sent_total - headlen);
            bufs[nbufs].len = (ULONG)(total - sent_total);
            nbufs++;
        }
        if (WSASend(s, bufs, nbufs, &sent, 0, NULL, NULL) != SOCKET_ERROR) {
            sent_total += sent;
            continue;
        }
        err = (DWORD)WSAGetLastError();
        if (err == WSAEINTR)
            continue;
        /* Nothing is out yet: EAGAIN, unless a socket was already shared with the receiver
         * (that cannot be undone, and a retry would share it again), in which case the
         * record is finished like a half-sent one. */
        if (err == WSAEWOULDBLOCK && sent_total == 0 && e->nsockets == 0) {
            fdsend_win_entries_close(e);
            return fdsend_fail_win32(FDSEND_EAGAIN, err);
        }
        if (err == WSAEWOULDBLOCK) {
            int32_t rc;
            d->dontwait = 0; /* the record must be finished, FDSEND_DONTWAIT or not */
            rc = fdsend_win_wait(s, d);
            if (rc == FDSEND_OK)
                continue;
            err = (DWORD)fdsend_last_os_error();
            /* Timed out or failed with part of the record out: the stream is broken. */
            if (sent_total < headlen)
                fdsend_win_entries_close(e);
            return fdsend_fail_win32(rc, err);
        }
        /* Broken connection. Until the whole handle table is out, no receiver can take the
         * copies, so they are ours to close; after that they may already be another
         * process's handles, and closing the value could hit a reused one. */
        if (sent_total < headlen)
            fdsend_win_entries_close(e);
        return fdsend_fail_win32(fdsend_status_from_win32(err), err);
    }
    return (int64_t)chunk;
}

int64_t fdsend_send(intptr_t sock, const void *buf, size_t len, const intptr_t *fds,
                    int32_t nfds, uint32_t flags)
{
    unsigned char small[FDSEND_REC_TABLE_MAX];
    unsigned char *head = small;
    fdsend_win_entries e;
    fdsend_win_deadline d;
    SOCKET s = (SOCKET)sock;
    uint32_t chunk;
    size_t headlen;
    int32_t rc = check_send_args(sock, buf, len, fds, nfds, flags);
    int64_t result;

    if (rc != FDSEND_OK)
        return rc;
    if (len == 0 && nfds == 0) {
        fdsend_clear_error(); /* nothing to send: a stream carries no empty message */
        return 0;
    }
    fdsend_win_deadline_start(&d, 1, (flags & FDSEND_DONTWAIT) != 0);
    if (flags & FDSEND_DONTWAIT) {
        rc = fdsend_win_wait(s, &d); /* FDSEND_EAGAIN when there is no room */
        if (rc != FDSEND_OK)
            return rc;
    }
    rc = fdsend_win_entries_make(&e, s, fds, nfds);
    if (rc != FDSEND_OK)
        return rc;
    chunk = len > FDSEND_REC_MAX_DATA ? FDSEND_REC_MAX_DATA : (uint32_t)len;
    headlen = fdsend_rec_table_len((uint32_t)nfds, (uint32_t)e.nsockets);
    if (headlen > sizeof small && (head = malloc(headlen)) == NULL) {
        fdsend_win_entries_close(&e);
        fdsend_win_entries_free(&e);
        return fdsend_fail_win32(FDSEND_ENOBUFS, ERROR_NOT_ENOUGH_MEMORY);
    }
    encode_record(head, &e, s, chunk);
    fdsend_win_entries_free(&e);
    result = send_record(s, head, headlen, buf, chunk, &e, &d);
    if (head != small)
        free(head);
    if (result >= 0)
        fdsend_clear_error();
    return result;
}

int64_t fdsend_send_to(intptr_t sock, const char *path, const void *buf, size_t len,
                       const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    (void)sock;
    (void)path;
    (void)buf;
    (void)len;
    (void)fds;
    (void)nfds;
    (void)flags;
    /* Windows has no AF_UNIX datagram sockets. */
    return fdsend_fail_win32(FDSEND_ENOTSUP, ERROR_NOT_SUPPORTED);
}

/* ---- Receiving ---------------------------------------------------------------------------- */

/* One recv() of at most n bytes with flags, WSAEINTR retried: what recv returned
 * (SOCKET_ERROR: WSAGetLastError says why). Every read of this file goes through it. */
static int recv_retrying(SOCKET s, char *p, int n, int flags)
{
    int r;
    do
        r = recv(s, p, n, flags);
    while (r == SOCKET_ERROR && WSAGetLastError() == WSAEINTR);
    return r;
}

/* recv() until n bytes arrived (they are known to be queued). Status or FDSEND_OK. */
static int32_t recv_exact(SOCKET s, unsigned char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        int r = recv_retrying(s, (char *)p + off, (int)(n - off), 0);
        if (r == SOCKET_ERROR)
            return fdsend_fail_wsa();
        if (r == 0)
            return fdsend_fail_win32(FDSEND_ECONNRESET, WSAECONNRESET);
        off += (size_t)r;
    }
    return FDSEND_OK;
}

/* Read data bytes of the current record: want bytes into dst (or 1 byte into a scratch
 * byte when dst is NULL). Returns bytes read (> 0) or a status. */
static int64_t recv_data(SOCKET s, void *dst, uint32_t want)
{
    unsigned char scratch;
    int r = recv_retrying(s, dst != NULL ? (char *)dst : (char *)&scratch,
                          dst != NULL ? (int)want : 1, 0);
    if (r == SOCKET_ERROR)
        return fdsend_fail_wsa();
    if (r == 0) /* the peer closed in the middle of a record */
        return fdsend_fail_win32(FDSEND_ECONNRESET, WSAECONNRESET);
    return r;
}

/* Check fdsend_recv's arguments and clear its outputs: FDSEND_OK or a status. */
static int32_t check_recv_args(intptr_t sock, void *buf, size_t len, intptr_t *fds,
                               int32_t maxfds, int32_t *nfds, uint32_t *rflags, uint32_t flags)
{
    if (nfds != NULL)
        *nfds = 0;
    if (rflags != NULL)
        *rflags = 0;
    if (sock < 0)
        return fdsend_fail_win32(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    if (fdsend_recv_args_code(buf, len, fds, maxfds, nfds, flags,
                              FDSEND_DONTWAIT | FDSEND_UNIX_SOCKET) != FDSEND_OK)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    return fdsend_win_check_stream(sock);
}

/* Look at the next record without consuming anything, so that EAGAIN and EPROTO leave the
 * stream untouched: header, table and (if there is data) one data byte must all be queued,
 * then the reads that follow cannot block. *head may be swapped for *heap (a version 2
 * table larger than the stack buffer; the caller frees *heap). Returns 1 (a record is
 * there: *h, *tablelen), 0 (orderly end of stream) or a status. */
static int32_t peek_record(SOCKET s, unsigned char **head, size_t *headcap,
                           unsigned char **heap, fdsend_rec_header *h, size_t *tablelen,
                           fdsend_win_deadline *d)
{
    for (;;) {
        size_t need;
        int32_t rc;
        fdsend_rec_scan scan;
        int r = recv_retrying(s, (char *)*head, (int)*headcap, MSG_PEEK);
        if (r == SOCKET_ERROR)
            return fdsend_fail_wsa();
        if (r == 0)
            return 0;
        scan = fdsend_rec_scan_bytes(*head, (size_t)r, h, tablelen, &need);
        if (scan == FDSEND_REC_BAD)
            return fdsend_fail_win32(FDSEND_EPROTO, ERROR_INVALID_DATA);
        if (scan == FDSEND_REC_READY)
            need = *tablelen + (h->datalen > 0 ? 1 : 0);
        if (need > *headcap) {
            /* A version 2 table larger than the stack buffer: peek again into one large
             * enough for the largest. */
            if (*heap == NULL && (*heap = malloc(FDSEND_REC_TABLE2_MAX + 1)) == NULL)
                return fdsend_fail_win32(FDSEND_ENOBUFS, ERROR_NOT_ENOUGH_MEMORY);
            *head = *heap;
            *headcap = FDSEND_REC_TABLE2_MAX + 1;
            continue;
        }
        if ((size_t)r >= need && scan == FDSEND_REC_READY)
            return 1;
        /* The record is still arriving (it left the sender in one send, so the rest is on
         * its way): wait for more, within the call's SO_RCVTIMEO deadline. */
        rc = fdsend_win_wait_more(s, (size_t)r, d);
        if (rc != FDSEND_OK)
            return rc;
    }
}

/* ---- Where a reader is: fdsend_recv_part's state ---------------------------------------- */

/* state->reserved[0]: data bytes of the current record still due (0: the next bytes are a
 * record header); reserved[1]: the socket they are due on (0 when none are). The caller
 * owns the object (fdsend.h, fdsend_recv_state); fdsend_recv has none and reads whole
 * records. */
static uint32_t state_remaining(const fdsend_recv_state *st)
{
    return st != NULL ? (uint32_t)st->reserved[0] : 0;
}

static void state_set(fdsend_recv_state *st, SOCKET s, uint32_t remaining)
{
    st->reserved[0] = remaining;
    st->reserved[1] = remaining > 0 ? (uint64_t)s : 0;
}

int fdsend_win_state_in_record(const fdsend_recv_state *st)
{
    return state_remaining(st) > 0;
}

/* A state as the library leaves it, and not in the middle of a record on another socket:
 * FDSEND_OK or FDSEND_EINVAL. */
static int32_t check_state(const fdsend_recv_state *st, SOCKET s)
{
    uint64_t remaining = st->reserved[0], on = st->reserved[1];
    if (remaining > FDSEND_REC_MAX_DATA || (remaining == 0) != (on == 0) ||
        (remaining > 0 && on != (uint64_t)s))
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    return FDSEND_OK;
}

/* The next piece of a record already begun (remaining > 0 bytes): plain data, no handles. */
static int64_t recv_rest(SOCKET s, fdsend_recv_state *st, void *buf, size_t len,
                         uint32_t *rflags)
{
    uint32_t remaining = state_remaining(st);
    uint32_t want = len == 0 ? 1 : (len < remaining ? (uint32_t)len : remaining);
    int64_t n = recv_data(s, len == 0 ? NULL : buf, want);
    if (n < 0) {
        /* Nothing was consumed on EAGAIN and SO_RCVTIMEO: the rest is still due. Any other
         * error broke the connection. */
        if (n != FDSEND_EAGAIN && n != FDSEND_ETIMEDOUT)
            state_set(st, s, 0);
        return n;
    }
    state_set(st, s, remaining - (uint32_t)n);
    if (len == 0) {
        if (rflags != NULL)
            *rflags = FDSEND_RECV_DATA_TRUNCATED; /* a data byte was consumed */
        n = 0;
    }
    fdsend_clear_error();
    return n;
}

/* fdsend_recv: all n data bytes of the record whose header was consumed, into p. The
 * record must be finished (a stateless reader cannot stop inside it), so this waits for
 * bytes still arriving whatever the socket mode or FDSEND_DONTWAIT, within the call's
 * SO_RCVTIMEO deadline. FDSEND_OK or a status (the connection is then inside the record). */
static int32_t recv_all_data(SOCKET s, unsigned char *p, uint32_t n, fdsend_win_deadline *d)
{
    uint32_t off = 0;
    d->dontwait = 0;
    while (off < n) {
        int64_t r = recv_data(s, p + off, n - off);
        if (r == FDSEND_EAGAIN) {
            int32_t rc = fdsend_win_wait(s, d);
            if (rc != FDSEND_OK)
                return rc;
            continue;
        }
        if (r < 0)
            return (int32_t)r;
        off += (uint32_t)r;
    }
    return FDSEND_OK;
}

/* The first data bytes of a record whose header and handles were taken: fdsend_recv_part
 * takes up to len (one byte when len == 0) and keeps the count still due in its state;
 * fdsend_recv (no state) takes all of them (len >= the record's data, checked before
 * anything was consumed). Returns bytes read or a status. */
static int64_t recv_first_data(SOCKET s, fdsend_recv_state *st, void *buf, size_t len,
                               uint32_t datalen, fdsend_win_deadline *d)
{
    uint32_t want;
    int64_t n;
    if (st == NULL) {
        int32_t rc = recv_all_data(s, buf, datalen, d);
        return rc != FDSEND_OK ? rc : (int64_t)datalen;
    }
    want = len == 0 ? 1 : (len < datalen ? (uint32_t)len : datalen);
    n = recv_data(s, len == 0 ? NULL : buf, want);
    /* Whatever happened, the stream is now inside this record's data. */
    state_set(st, s, datalen - (uint32_t)(n < 0 ? 0 : n));
    return n;
}

/* The sender check refused a record whose header and table were consumed (why: a
 * status): no handle was taken. fdsend_recv_part leaves the data for the next reads with
 * its state; fdsend_recv, which cannot stop inside a record, reads the data (it fits in
 * buf) and drops it. Returns why, or the error that broke the connection meanwhile. */
static int64_t refuse_record(SOCKET s, fdsend_recv_state *st, void *buf, uint32_t datalen,
                             fdsend_win_deadline *d, int32_t why)
{
    DWORD os = (DWORD)fdsend_last_os_error();
    if (datalen > 0 && st != NULL)
        state_set(st, s, datalen);
    if (datalen > 0 && st == NULL) {
        int32_t rc = recv_all_data(s, buf, datalen, d);
        if (rc != FDSEND_OK)
            return rc;
    }
    return fdsend_fail_win32(why, os);
}

/* The statuses a read gives for a record it refuses: bytes that are no record (peek_record)
 * or a failed sender check (refuse_record, with peer.c's codes). */
int32_t fdsend_recv_refused(int64_t status)
{
    return status == FDSEND_EPROTO || status == FDSEND_ESRCH || status == FDSEND_EACCES;
}

/* The next record on s (st NULL: whole) or the next piece of one (st), arguments checked,
 * within deadline d: with d->dontwait, nothing queued (or a record still arriving) is
 * FDSEND_EAGAIN. *heap is set when a version 2 table did not fit the stack buffer (the
 * caller frees it). */
static int64_t take_record(SOCKET s, fdsend_recv_state *st, void *buf, size_t len,
                           intptr_t *fds, int32_t maxfds, int32_t *nfds, uint32_t *rflags,
                           unsigned char **heap, fdsend_win_deadline *d)
{
    unsigned char small[FDSEND_REC_TABLE_MAX + 1];
    unsigned char *head = small;
    size_t headcap = sizeof small, tablelen = 0;
    HANDLE got[FDSEND_MAX_FDS];
    unsigned char is_sock[FDSEND_MAX_FDS];
    fdsend_rec_header h;
    uint32_t out_flags = 0;
    int32_t rc, taken = 0, i;
    int truncated = 0;
    int64_t n = 0;

    memset(&h, 0, sizeof h);
    if (d->dontwait) {
        rc = fdsend_win_wait(s, d); /* FDSEND_EAGAIN when nothing is queued */
        if (rc != FDSEND_OK)
            return rc;
    }

    if (state_remaining(st) > 0)
        return recv_rest(s, st, buf, len, rflags);

    rc = peek_record(s, &head, &headcap, heap, &h, &tablelen, d);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        if (rflags != NULL)
            *rflags = FDSEND_RECV_END_OF_STREAM;
        fdsend_clear_error(); /* orderly end of stream */
        return 0;
    }
    /* A whole record must fit: decided from the peeked header, nothing consumed. */
    if (st == NULL && h.datalen > len)
        return fdsend_fail_win32(FDSEND_EMSGSIZE, WSAEMSGSIZE);
    rc = recv_exact(s, head, tablelen);
    if (rc != FDSEND_OK)
        return rc;
    if (h.nhandles > 0) {
        int32_t cap = maxfds < FDSEND_MAX_FDS ? maxfds : FDSEND_MAX_FDS;
        rc = fdsend_win_entries_take(s, &h, head + FDSEND_REC_HEADER, cap, got, is_sock,
                                     &taken, &truncated);
        if (rc != FDSEND_OK)
            return refuse_record(s, st, buf, h.datalen, d, rc);
    }
    if (h.datalen > 0) {
        n = recv_first_data(s, st, buf, len, h.datalen, d);
        if (n < 0) {
            DWORD os = (DWORD)fdsend_last_os_error();
            fdsend_win_close_taken(got, is_sock, taken);
            return fdsend_fail_win32((int32_t)n, os);
        }
        if (len == 0) { /* fdsend_recv_part only: one data byte was consumed */
            out_flags |= FDSEND_RECV_DATA_TRUNCATED;
            n = 0;
        }
    }
    if (truncated)
        out_flags |= FDSEND_RECV_FDS_TRUNCATED;
    for (i = 0; i < taken; i++)
        fds[i] = (intptr_t)got[i];
    if (nfds != NULL)
        *nfds = taken;
    if (rflags != NULL)
        *rflags = out_flags;
    fdsend_clear_error();
    return n;
}

/* fdsend_recv (st NULL: whole records) and fdsend_recv_part (st: pieces). */
static int64_t recv_record(intptr_t sock, fdsend_recv_state *st, void *buf, size_t len,
                           intptr_t *fds, int32_t maxfds, int32_t *nfds, uint32_t *rflags,
                           uint32_t flags, unsigned char **heap)
{
    fdsend_win_deadline d;
    int32_t rc = check_recv_args(sock, buf, len, fds, maxfds, nfds, rflags, flags);
    if (rc == FDSEND_OK && st != NULL)
        rc = check_state(st, (SOCKET)sock);
    if (rc != FDSEND_OK)
        return rc;
    fdsend_win_deadline_start(&d, 0, (flags & FDSEND_DONTWAIT) != 0);
    return take_record((SOCKET)sock, st, buf, len, fds, maxfds, nfds, rflags, heap, &d);
}

int64_t fdsend_recv(intptr_t sock, void *buf, size_t len, intptr_t *fds, int32_t maxfds,
                    int32_t *nfds, uint32_t *rflags, uint32_t flags)
{
    unsigned char *heap = NULL;
    int64_t n = recv_record(sock, NULL, buf, len, fds, maxfds, nfds, rflags, flags, &heap);
    free(heap);
    return n;
}

int64_t fdsend_recv_part(intptr_t sock, fdsend_recv_state *state, void *buf, size_t len,
                         intptr_t *fds, int32_t maxfds, int32_t *nfds, uint32_t *rflags,
                         uint32_t flags)
{
    unsigned char *heap = NULL;
    int64_t n;
    if (state == NULL) {
        if (nfds != NULL)
            *nfds = 0;
        if (rflags != NULL)
            *rflags = 0;
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    }
    n = recv_record(sock, state, buf, len, fds, maxfds, nfds, rflags, flags, &heap);
    free(heap);
    return n;
}

/* ---- fdsend_recv_exact_step and fdsend_recv_exact ---------------------------------------
 * The step, the loop (recv_exact.h) and the merge rules (recv_exact.c) are every
 * platform's; here is the
 * Windows receive of a piece, one whole record (fdsend_recv's: a record whose data is more
 * than the bytes still due is FDSEND_EMSGSIZE, nothing consumed), and the wait between
 * pieces (wait.c's). */

struct fdsend_exact_io {
    SOCKET s;
    int dontwait;           /* FDSEND_DONTWAIT: the first receive does not wait */
    fdsend_win_deadline d;  /* the call's, from its first receive */
};

static int32_t exact_io_piece(fdsend_exact_io *io, fdsend_exact_state *st, unsigned char *buf,
                              size_t len, intptr_t *fds, int32_t maxfds, int first)
{
    int32_t room = fdsend_exact_room(st, maxfds), ngot = 0, rc;
    unsigned char *heap = NULL;
    uint32_t rf = 0;
    int64_t n;

    if (first) {
        fdsend_win_deadline_start(&io->d, 0, io->dontwait);
    } else {
        /* Inside the bytes: no waiting for a record to begin (FDSEND_EAGAIN), but the rest
         * of one that has begun to arrive (it left the sender whole) is waited for, within
         * the call's deadline. */
        io->d.dontwait = 1;
        rc = fdsend_win_wait(io->s, &io->d);
        if (rc != FDSEND_OK)
            return rc;
        io->d.dontwait = 0;
    }
    /* Beyond the room, take_record closes the handles and flags them as lost. */
    n = take_record(io->s, NULL, buf + st->received, len - (size_t)st->received,
                    room > 0 ? fds + st->nfds : NULL, room, &ngot, &rf, &heap, &io->d);
    free(heap);
    if (n < 0)
        return (int32_t)n;
    rc = fdsend_exact_merge(st, len, (size_t)n, ngot, (rf & FDSEND_RECV_FDS_TRUNCATED) != 0,
                            (rf & FDSEND_RECV_END_OF_STREAM) != 0);
    if (rc < 0)
        return fdsend_fail_win32(rc, ERROR_HANDLE_EOF);
    return rc;
}

static int32_t exact_io_wait_inside(fdsend_exact_io *io, int32_t rc)
{
    return fdsend_win_wait_inside(io->s, rc, &io->d);
}

static const fdsend_exact_ops exact_ops = {exact_io_piece, exact_io_wait_inside};

int32_t fdsend_recv_exact_step(intptr_t sock, fdsend_exact_state *state, void *buf,
                               size_t len, intptr_t *fds, int32_t maxfds, uint32_t flags)
{
    fdsend_exact_io io;
    int32_t rc;

    if (sock <= 0 || (SOCKET)sock == INVALID_SOCKET)
        return fdsend_fail_win32(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    if (fdsend_exact_args(sock, state, buf, len, fds, maxfds, flags) != FDSEND_OK)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    if (!fdsend_exact_checked(state)) {
        rc = fdsend_win_check_stream(sock);
        if (rc != FDSEND_OK)
            return rc;
        fdsend_exact_begin(state, sock);
    }
    io.s = (SOCKET)sock;
    io.dontwait = 1;
    return fdsend_exact_step_io(&exact_ops, &io, state, (unsigned char *)buf, len, fds, maxfds);
}

int64_t fdsend_recv_exact(intptr_t sock, void *buf, size_t len, intptr_t *fds,
                          int32_t maxfds, int32_t *nfds, uint32_t *rflags, uint32_t flags)
{
    fdsend_exact_state st = FDSEND_EXACT_STATE_INIT;
    fdsend_exact_io io;
    int32_t rc = check_recv_args(sock, buf, len, fds, maxfds, nfds, rflags, flags);
    if (rc != FDSEND_OK) /* the arguments, and a stream socket */
        return rc;
    fdsend_exact_begin(&st, sock);
    io.s = (SOCKET)sock;
    io.dontwait = (flags & FDSEND_DONTWAIT) != 0;
    return fdsend_exact_run(&exact_ops, &io, &st, (unsigned char *)buf, len, fds, maxfds, nfds, rflags);
}

/* ---- Peeking ------------------------------------------------------------------------------ */

int64_t fdsend_peek(intptr_t sock, void *buf, size_t len, uint32_t flags)
{
    (void)sock; (void)buf; (void)len; (void)flags;
    /* A record's header and handle table come before its data: a peek at "the message's
     * first bytes" would show the header (fdsend.h). */
    return fdsend_fail_win32(FDSEND_ENOTSUP, ERROR_NOT_SUPPORTED);
}
