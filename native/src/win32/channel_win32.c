/* The message channel on Windows: fdsend_channel_* and fdsend_msg_* (fdsend.h) over
 * libfdsend's records (docs/wire-format.md 2a, docs/windows-protocol.md "The message
 * channel"), with the contract of the POSIX channel (../channel.c). A frame is sent as
 * records (fdsend_send), laid out as the .NET FdChannel lays it out: the header and a payload
 * of up to 64 KiB as one record with the handles; a larger payload as a header record with
 * the handles, then records of payload. A frame is received by driving the codec's stream
 * reader (../codec.c: every framing rule) with fdsend_recv_part reads, the position inside a
 * record kept in a fdsend_recv_state. Every wait goes through wait.c.
 * SPDX-License-Identifier: MIT */
#include "fdsend_win32.h"

#include <stdlib.h>
#include <string.h>

#define HDR FDSEND_MSG_HEADER_SIZE
/* Payloads up to this size travel in one record with their header (FrameWriter's
 * CopyThreshold on the .NET side: both senders look alike on the wire). */
#define ONE_RECORD_PAYLOAD (64 * 1024)
/* A first record up to this size is laid out on the stack. */
#define STACK_RECORD 1024

/* One direction of a channel object: its frames are serialised. */
typedef struct dir_lock {
    SRWLOCK lock;
    CONDITION_VARIABLE cond;
    int busy; /* a thread has a frame in progress; guarded by lock */
} dir_lock;

/* The receiving side between frames: the codec's reader, where the stream is inside a
 * record, and the handles of the frame being read until the caller gets them. */
typedef struct stream_rx {
    fdsend_frame_reader r;
    fdsend_recv_state st;
    int ready;  /* r is set up */
    int broken; /* a record was refused: nothing can be read past it */
    intptr_t fds[FDSEND_MAX_FDS];
    int32_t nfds; /* handles in fds[] that are no caller's yet */
} stream_rx;

struct fdsend_channel {
    SOCKET sock;
    int locked;       /* 1: a channel object (the locks below); 0: fdsend_msg_*, no lock */
    dir_lock lock[2]; /* [0] send, [1] receive */
    stream_rx rx;     /* guarded by lock[1] */
};

/* ---- Locks ----------------------------------------------------------------------------- */

static void dir_lock_init(dir_lock *l)
{
    InitializeSRWLock(&l->lock);
    InitializeConditionVariable(&l->cond);
    l->busy = 0;
}

/* Take one direction of a channel object for one frame. If another thread has a frame in
 * progress there: FDSEND_EAGAIN with FDSEND_DONTWAIT, else wait for at most what is left of
 * the call's deadline d (FDSEND_ETIMEDOUT), setting *waited. Windows cannot tell whether a
 * socket is non-blocking, so only the flag refuses to wait. */
static int32_t lock_acquire(dir_lock *l, SOCKET s, uint32_t flags, fdsend_win_deadline *d,
                            int *waited)
{
    int32_t rc = FDSEND_OK;
    AcquireSRWLockExclusive(&l->lock);
    while (l->busy) {
        int ms;
        if (flags & FDSEND_DONTWAIT) {
            rc = FDSEND_EAGAIN;
            break;
        }
        ms = fdsend_win_deadline_left(d, s);
        if (ms == 0) {
            rc = FDSEND_ETIMEDOUT;
            break;
        }
        *waited = 1;
        (void)SleepConditionVariableSRW(&l->cond, &l->lock, ms < 0 ? INFINITE : (DWORD)ms, 0);
    }
    if (rc == FDSEND_OK)
        l->busy = 1;
    ReleaseSRWLockExclusive(&l->lock);
    if (rc == FDSEND_EAGAIN)
        return fdsend_fail_win32(rc, WSAEWOULDBLOCK);
    if (rc == FDSEND_ETIMEDOUT)
        return fdsend_fail_win32(rc, WSAETIMEDOUT);
    return FDSEND_OK;
}

static void lock_release(dir_lock *l)
{
    AcquireSRWLockExclusive(&l->lock);
    l->busy = 0;
    ReleaseSRWLockExclusive(&l->lock);
    WakeAllConditionVariable(&l->cond);
}

/* After a wait behind another thread's frame, the call's first I/O: a finite deadline is
 * waited out here (readable / writable) so that Winsock's own timeout does not start again
 * on top of it. FDSEND_OK, FDSEND_ETIMEDOUT (nothing sent or consumed) or a status. */
static int32_t wait_after_lock(SOCKET s, fdsend_win_deadline *d)
{
    int ms = fdsend_win_deadline_left(d, s);
    if (ms == 0)
        return fdsend_fail_win32(FDSEND_ETIMEDOUT, WSAETIMEDOUT);
    return ms > 0 ? fdsend_win_wait(s, d) : FDSEND_OK;
}

/* ---- Sending --------------------------------------------------------------------------- */

/* The checks of a send's arguments other than the socket (the handles' count and values
 * are fdsend_send's, checked before the frame's first record goes): FDSEND_OK or a
 * recorded code. */
static int32_t send_args(const void *payload, size_t len, const intptr_t *fds, int32_t nfds,
                         uint32_t flags)
{
    int32_t rc = fdsend_channel_send_args(payload, len, fds, nfds, flags);
    if (rc != FDSEND_OK)
        return fdsend_fail_win32(rc, rc == FDSEND_EINVAL ? ERROR_INVALID_PARAMETER : WSAEMSGSIZE);
    return FDSEND_OK;
}

/* Send one frame as records: the first (header, and the payload if it is small) with the
 * handles, as the caller's flags and the socket mode say (FDSEND_EAGAIN, FDSEND_ETIMEDOUT:
 * nothing sent); then the rest of the payload, whatever the socket mode, each wait for room
 * within the deadline d renewed when a record went. FDSEND_OK or a status. */
static int32_t send_frame(SOCKET s, const void *payload, size_t len, const intptr_t *fds,
                          int32_t nfds, uint32_t flags, fdsend_win_deadline *d)
{
    unsigned char small[STACK_RECORD];
    unsigned char *first = small;
    size_t inline_len = len <= ONE_RECORD_PAYLOAD ? len : 0, off;
    int32_t rc = fdsend_frame_encode(small, len, nfds); /* FDSEND_ETOOMANYFDS over 253 */
    int64_t n;

    if (rc != FDSEND_OK)
        return fdsend_fail_win32(rc, ERROR_INVALID_PARAMETER);
    if (HDR + inline_len > sizeof small) {
        if ((first = malloc(HDR + inline_len)) == NULL)
            return fdsend_fail_win32(FDSEND_ENOBUFS, ERROR_NOT_ENOUGH_MEMORY);
        memcpy(first, small, HDR);
    }
    if (inline_len > 0)
        memcpy(first + HDR, payload, inline_len);
    n = fdsend_send((intptr_t)s, first, HDR + inline_len, fds, nfds, flags);
    if (first != small)
        free(first);
    if (n < 0)
        return (int32_t)n;
    /* The frame has started: the payload follows in records without handles. */
    for (off = inline_len; off < len; off += (size_t)n) {
        fdsend_win_deadline_renew(d); /* a record went: the next wait counts from now */
        while ((n = fdsend_send((intptr_t)s, (const unsigned char *)payload + off, len - off,
                                NULL, 0, 0)) == FDSEND_EAGAIN) {
            rc = fdsend_win_wait(s, d); /* a non-blocking socket: wait for room */
            if (rc != FDSEND_OK)
                return rc;
        }
        if (n < 0)
            return (int32_t)n; /* the stream is broken inside the frame */
    }
    return FDSEND_OK;
}

/* Send one frame on ch, whose arguments send_args has passed. */
static int32_t send_locked(fdsend_channel *ch, const void *payload, size_t len,
                           const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    fdsend_win_deadline d;
    int waited = 0;
    int32_t rc = FDSEND_OK;
    fdsend_win_deadline_start(&d, 1, 0);
    if (ch->locked)
        rc = lock_acquire(&ch->lock[0], ch->sock, flags, &d, &waited);
    if (rc != FDSEND_OK)
        return rc;
    if (waited)
        rc = wait_after_lock(ch->sock, &d);
    if (rc == FDSEND_OK)
        rc = send_frame(ch->sock, payload, len, fds, nfds, flags, &d);
    if (ch->locked)
        lock_release(&ch->lock[0]);
    if (rc == FDSEND_OK)
        fdsend_clear_error();
    return rc;
}

int32_t fdsend_msg_send(intptr_t sock, const void *payload, size_t len,
                        const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    fdsend_channel ch;
    int32_t rc;
    if (sock < 0)
        return fdsend_fail_win32(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    rc = send_args(payload, len, fds, nfds, flags);
    if (rc == FDSEND_OK)
        rc = fdsend_win_check_stream(sock);
    if (rc != FDSEND_OK)
        return rc;
    ch.sock = (SOCKET)sock;
    ch.locked = 0;
    return send_locked(&ch, payload, len, fds, nfds, flags);
}

int32_t fdsend_channel_send(fdsend_channel *ch, const void *payload, size_t len,
                            const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    int32_t rc;
    if (ch == NULL)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    rc = send_args(payload, len, fds, nfds, flags);
    if (rc != FDSEND_OK)
        return rc;
    return send_locked(ch, payload, len, fds, nfds, flags);
}

/* ---- Receiving ------------------------------------------------------------------------- */

/* Close the handles held, keeping this thread's recorded error; returns code (recorded as
 * os). */
static int64_t drop_fds(stream_rx *rx, int64_t code, DWORD os)
{
    int32_t k = rx->nfds;
    rx->nfds = 0;
    if (k > 0)
        (void)fdsend_close_all(rx->fds, k);
    return fdsend_fail_win32((int32_t)code, os);
}

/* An error inside a frame (recorded): close the handles held, return rc. */
static int64_t drop_frame(stream_rx *rx, int64_t rc)
{
    return drop_fds(rx, rc, (DWORD)fdsend_last_os_error());
}

/* A frame's outcome rc from the codec: hand its handles (all those held, if the frame took
 * them) to the caller, or close them; after a protocol error close every one held. */
static int64_t rx_outcome(stream_rx *rx, int32_t rc, uint32_t len, intptr_t *fds,
                          int32_t *nfds)
{
    int32_t i;
    if (rc == FDSEND_EOF) {
        rx->ready = 0; /* a later call asks the socket again (which reports the end again) */
        fdsend_clear_error();
        return FDSEND_EOF;
    }
    if (rc != FDSEND_OK)
        return drop_fds(rx, rc, rc == FDSEND_EPROTO ? ERROR_INVALID_DATA
                                : rc == FDSEND_EMFILE ? ERROR_TOO_MANY_OPEN_FILES
                                                      : WSAEMSGSIZE);
    for (i = 0; i < rx->nfds; i++)
        fds[i] = rx->fds[i];
    if (nfds != NULL)
        *nfds = rx->nfds;
    rx->nfds = 0;
    fdsend_clear_error();
    return (int64_t)len;
}

/* A read inside a frame: the next bytes of the stream without handles (a record that
 * brings some has them closed and reads as FDSEND_RECV_FDS_TRUNCATED), waited for within d
 * whatever the socket mode. Bytes queued that no read can take yet are part of a record
 * still arriving: then it waits for more than that. Bytes read (>= 0) or a status. */
static int64_t read_more(stream_rx *rx, SOCKET s, void *dst, size_t most, uint32_t *rf,
                         fdsend_win_deadline *d)
{
    int32_t none = 0;
    for (;;) {
        u_long queued = 0;
        int32_t rc;
        int64_t n = fdsend_recv_part((intptr_t)s, &rx->st, dst, most, NULL, 0, &none, rf,
                                     FDSEND_DONTWAIT);
        if (n != FDSEND_EAGAIN)
            return n;
        if (ioctlsocket(s, FIONREAD, &queued) != 0)
            return fdsend_fail_wsa();
        if (queued == 0) {
            rc = fdsend_win_wait(s, d);
        } else {
            /* Try once more now that the count is known (it may be a whole record by now),
             * then wait for more bytes than that. */
            n = fdsend_recv_part((intptr_t)s, &rx->st, dst, most, NULL, 0, &none, rf,
                                 FDSEND_DONTWAIT);
            if (n != FDSEND_EAGAIN)
                return n;
            rc = fdsend_win_wait_more(s, (size_t)queued, d);
        }
        if (rc != FDSEND_OK)
            return rc;
    }
}

/* The codec's input flags for one read. */
static uint32_t read_flags(int64_t n, uint32_t rf)
{
    return ((rf & FDSEND_RECV_FDS_TRUNCATED) ? (uint32_t)FDSEND_FRAME_IN_CTRUNC : 0u) |
           (n == 0 ? (uint32_t)FDSEND_FRAME_IN_EOF : 0u);
}

/* The first read of a frame failed (n: a status, nothing of a frame consumed). A record
 * libfdsend refuses (fdsend_recv_refused, the rule the .NET FdChannel asks too) cannot be
 * read past: the channel is broken from then on. */
static int64_t first_read_failed(stream_rx *rx, int64_t n)
{
    if (fdsend_recv_refused(n))
        rx->broken = 1;
    return n;
}

/* Receive one frame, the reads chosen and judged by the codec's reader. The frame's first
 * read goes as the caller's flags and the socket mode say (FDSEND_EAGAIN, FDSEND_ETIMEDOUT:
 * nothing consumed); once it has begun the frame is finished whatever the socket mode,
 * each wait within the deadline d renewed when bytes came. With records_only (a caller
 * that keeps no state: fdsend_msg_recv), a frame must end where a record ends. */
static int64_t recv_stream(stream_rx *rx, SOCKET s, unsigned char *buf, size_t cap,
                           intptr_t *fds, int32_t maxfds, int32_t *nfds, uint32_t flags,
                           fdsend_win_deadline *d, int records_only)
{
    unsigned char hdr[HDR];
    unsigned char scratch[4096];
    size_t room = cap > sizeof scratch ? cap : sizeof scratch;
    uint32_t len = 0;
    int32_t rc;

    if (rx->broken)
        return fdsend_fail_win32(FDSEND_EPROTO, ERROR_INVALID_DATA);
    if (!rx->ready) {
        (void)fdsend_frame_reader_init(&rx->r, cap, maxfds);
        rx->ready = 1;
    } else {
        (void)fdsend_frame_reader_limits(&rx->r, cap, maxfds); /* between frames: always */
    }
    for (;;) {
        uint64_t off = 0, most = 0;
        int32_t part = fdsend_frame_reader_want(&rx->r, &off, &most);
        int first = part == FDSEND_FRAME_HEADER && off == 0;
        unsigned char *dst;
        uint32_t rf = 0;
        int64_t n;
        if (part < 0) /* a reader broken earlier: the stream's position is lost */
            return drop_frame(rx, fdsend_fail_win32(FDSEND_EPROTO, ERROR_INVALID_DATA));
        if (part == FDSEND_FRAME_HEADER) {
            dst = hdr + off;
        } else if (part == FDSEND_FRAME_PAYLOAD) {
            dst = buf + off;
        } else { /* discard, through the caller's buffer when it is the larger */
            dst = cap > sizeof scratch ? buf : scratch;
            if (most > room)
                most = room;
        }
        if (first) {
            n = fdsend_recv_part((intptr_t)s, &rx->st, dst, (size_t)most, rx->fds,
                                 FDSEND_MAX_FDS, &rx->nfds, &rf, flags);
            if (n < 0)
                return first_read_failed(rx, n);
        } else {
            n = read_more(rx, s, dst, (size_t)most, &rf, d);
            if (n == FDSEND_ETIMEDOUT) /* the peer stopped inside the frame */
                n = fdsend_fail_win32(FDSEND_EPROTO, WSAETIMEDOUT);
            if (n < 0)
                return drop_frame(rx, n);
        }
        if (n == 0 && !(rf & FDSEND_RECV_END_OF_STREAM)) {
            /* A record without data (handles only, or nothing): never part of a frame. */
            rx->broken = 1;
            return drop_frame(rx, fdsend_fail_win32(FDSEND_EPROTO, ERROR_INVALID_DATA));
        }
        rc = fdsend_frame_reader_feed(&rx->r, dst, (uint64_t)n, first ? rx->nfds : 0,
                                      read_flags(n, rf), &len);
        if (rc != FDSEND_FRAME_MORE)
            break;
        fdsend_win_deadline_renew(d); /* bytes came: the next wait counts from now */
    }
    /* The rest of the record would be read as a record by the next stateless call. */
    if (records_only && rc != FDSEND_EPROTO && rc != FDSEND_EOF &&
        fdsend_win_state_in_record(&rx->st))
        rc = FDSEND_EPROTO;
    return rx_outcome(rx, rc, len, fds, nfds);
}

/* The checks of a receive's arguments other than the socket (the caller has cleared
 * *nfds): FDSEND_OK or a recorded code. */
static int32_t recv_args(void *buf, size_t cap, intptr_t *fds, int32_t maxfds, int32_t *nfds,
                         uint32_t flags)
{
    if (fdsend_recv_args_code(buf, cap, fds, maxfds, nfds, flags, FDSEND_DONTWAIT) != FDSEND_OK)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    return FDSEND_OK;
}

/* Receive one frame on ch, whose arguments recv_args has passed, under its receive lock if
 * it has one. */
static int64_t recv_locked(fdsend_channel *ch, void *buf, size_t cap, intptr_t *fds,
                           int32_t maxfds, int32_t *nfds, uint32_t flags)
{
    fdsend_win_deadline d;
    int waited = 0;
    int64_t n = FDSEND_OK;
    if (cap > FDSEND_MSG_MAX_PAYLOAD) /* no frame is longer than the format allows */
        cap = FDSEND_MSG_MAX_PAYLOAD;
    fdsend_win_deadline_start(&d, 0, 0);
    if (ch->locked)
        n = lock_acquire(&ch->lock[1], ch->sock, flags, &d, &waited);
    if (n != FDSEND_OK)
        return n;
    if (waited)
        n = wait_after_lock(ch->sock, &d);
    if (n == FDSEND_OK)
        n = recv_stream(&ch->rx, ch->sock, (unsigned char *)buf, cap, fds, maxfds, nfds,
                        flags, &d, !ch->locked);
    if (ch->locked)
        lock_release(&ch->lock[1]);
    return n;
}

int64_t fdsend_msg_recv(intptr_t sock, void *buf, size_t cap, intptr_t *fds,
                        int32_t maxfds, int32_t *nfds, uint32_t flags)
{
    fdsend_channel ch;
    int32_t rc;
    if (nfds != NULL)
        *nfds = 0;
    if (sock < 0)
        return fdsend_fail_win32(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    rc = recv_args(buf, cap, fds, maxfds, nfds, flags);
    if (rc == FDSEND_OK)
        rc = fdsend_win_check_stream(sock);
    if (rc != FDSEND_OK)
        return rc;
    memset(&ch.rx, 0, sizeof ch.rx); /* a fresh state: at a record boundary */
    ch.sock = (SOCKET)sock;
    ch.locked = 0;
    return recv_locked(&ch, buf, cap, fds, maxfds, nfds, flags);
}

int64_t fdsend_channel_recv(fdsend_channel *ch, void *buf, size_t cap, intptr_t *fds,
                            int32_t maxfds, int32_t *nfds, uint32_t flags)
{
    int32_t rc;
    if (nfds != NULL)
        *nfds = 0;
    if (ch == NULL)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    rc = recv_args(buf, cap, fds, maxfds, nfds, flags);
    if (rc != FDSEND_OK)
        return rc;
    return recv_locked(ch, buf, cap, fds, maxfds, nfds, flags);
}

/* ---- The channel object ------------------------------------------------------------------ */

int32_t fdsend_channel_open(intptr_t sock, uint32_t flags, fdsend_channel **out)
{
    fdsend_channel *ch;
    int32_t rc;
    if (out == NULL)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    *out = NULL;
    if (sock < 0)
        return fdsend_fail_win32(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    if (flags != 0)
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    rc = fdsend_win_check_stream(sock); /* Windows carries handles on stream sockets only */
    if (rc != FDSEND_OK)
        return rc;
    ch = (fdsend_channel *)calloc(1, sizeof *ch);
    if (ch == NULL)
        return fdsend_fail_win32(FDSEND_ENOBUFS, ERROR_NOT_ENOUGH_MEMORY);
    ch->sock = (SOCKET)sock;
    ch->locked = 1;
    dir_lock_init(&ch->lock[0]);
    dir_lock_init(&ch->lock[1]);
    *out = ch;
    fdsend_clear_error();
    return FDSEND_OK;
}

void fdsend_channel_close(fdsend_channel *ch)
{
    if (ch == NULL)
        return;
    if (ch->rx.nfds > 0) /* none are held between calls; closed if one ever were */
        (void)fdsend_close_all(ch->rx.fds, ch->rx.nfds);
    free(ch);
}
