/* The message channel: fdsend_channel_* (a channel object the caller owns, with a lock per
 * direction) and the single-caller fdsend_msg_* calls, framed messages (payload +
 * descriptors) over Unix domain sockets. The framing rules are the codec's (codec.c); this
 * file does the I/O, the waits (wait.c) and the locking. docs/wire-format.md specifies it.
 * POSIX only: Windows has its own, over libfdsend's records (win32/channel_win32.c).
 * SPDX-License-Identifier: MIT */

#include "fdsend_posix.h"
#include "fdsend_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>


#define HDR_SIZE FDSEND_MSG_HEADER_SIZE


/* Close fds[0 .. n) without disturbing errno (the caller's error is already recorded). */
static void close_fds(const int *fds, int32_t n)
{
    int saved = errno;
    int32_t i;
    for (i = 0; i < n; i++)
        close(fds[i]);
    errno = saved;
}

/* The receiving side of a stream channel between frames: the codec's reader, the bytes read
 * ahead that no frame has taken yet, and the descriptors of the last read that carried any
 * until a frame takes them. A channel object keeps one (read-ahead where the kernel allows
 * it); fdsend_msg_recv makes one per call, without a buffer (exact reads: it keeps nothing). */
typedef struct stream_rx {
    fdsend_frame_reader r;
    int ready;           /* r is set up */
    int broken;          /* a thread was cancelled inside a frame: the position is lost */
    unsigned char *buf;  /* the read-ahead buffer (NULL: read exactly what the codec asks) */
    size_t size;         /* its size */
    size_t pos, end;     /* the bytes in it that are not fed to the codec yet */
    int fds[FDSEND_MAX_FDS];
    int32_t nfds;        /* descriptors in fds[] that are no caller's yet */
} stream_rx;

/* One direction of a channel: frames of that direction are serialised (stream sockets). */
typedef struct dir_lock {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int busy; /* a thread has a frame in progress; guarded by mutex */
} dir_lock;

struct fdsend_channel {
    int sock;
    int type;    /* SOCK_STREAM, SOCK_SEQPACKET or SOCK_DGRAM */
    int is_unix; /* AF_UNIX: 1; another family: 0 (descriptors refused) */
    int locked;  /* 1: a channel object (the locks below); 0: fdsend_msg_*, no lock */
    dir_lock lock[2]; /* [0] send, [1] receive */
    stream_rx rx;     /* stream receiving, guarded by lock[1] */
};

/* Bytes a channel object reads ahead at a frame boundary: the codec's rule
 * (fdsend_frame_ahead_size, FDSEND_FRAME_AHEAD_SIZE in fdsend_internal.h). */
#define AHEAD_SIZE FDSEND_FRAME_AHEAD_SIZE

/* What a channel needs to know about its socket, looked up once: its type (stream,
 * seqpacket or datagram, else FDSEND_ENOTSUP) and, if check_family, whether it is AF_UNIX
 * (else is_unix stays 1: the caller sends no descriptors). */
static int32_t channel_init(fdsend_channel *ch, int sock, int check_family)
{
    socklen_t l = sizeof ch->type;
    int32_t rc;
    ch->sock = sock;
    ch->locked = 0;
    ch->is_unix = 1;
    memset(&ch->rx, 0, sizeof ch->rx); /* no buffer: exact reads, unless open adds one */
    if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &ch->type, &l) != 0)
        return fdsend_fail_errno();
    if (ch->type != SOCK_STREAM && ch->type != SOCK_SEQPACKET && ch->type != SOCK_DGRAM)
        return fdsend_fail(FDSEND_ENOTSUP, EPROTOTYPE);
    if (check_family) {
        /* Some kernels (Linux 6.x TCP) accept SCM_RIGHTS on other families and drop the
         * descriptors silently: sending them is refused before anything is sent. */
        rc = fdsend_check_unix_socket(sock);
        if (rc == FDSEND_ENOTUNIX)
            ch->is_unix = 0;
        else if (rc != FDSEND_OK)
            return rc;
    }
    return FDSEND_OK;
}

/* Cleanup handler: a thread cancelled in pthread_cond_(timed)wait holds the mutex again. */
static void lock_unlock(void *arg)
{
    pthread_mutex_unlock(&((dir_lock *)arg)->mutex);
}

/* One wait on l->cond for at most ms milliseconds. pthread_cond_timedwait counts on
 * CLOCK_REALTIME (pthread_condattr_setclock is missing on macOS), which may jump: wait in
 * slices of at most a second and let the caller check its monotonic deadline between. */
static void lock_timedwait(dir_lock *l, int ms)
{
    struct timespec ts;
    struct timeval tv;
    if (ms > 1000)
        ms = 1000;
    gettimeofday(&tv, NULL);
    ts.tv_sec = tv.tv_sec + ms / 1000;
    ts.tv_nsec = (long)tv.tv_usec * 1000 + (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    (void)pthread_cond_timedwait(&l->cond, &l->mutex, &ts);
}

/* lock_acquire's work, with l->mutex held: FDSEND_OK (l is ours), FDSEND_EAGAIN or
 * FDSEND_ETIMEDOUT. */
static int32_t lock_take(dir_lock *l, int sock, uint32_t flags, fdsend_deadline *d)
{
    int nowait = -1; /* not known yet: only looked up when there is contention */
    while (l->busy) {
        int ms;
        if (nowait < 0)
            nowait = (flags & FDSEND_DONTWAIT) != 0 || fdsend_is_nonblocking(sock);
        if (nowait)
            return FDSEND_EAGAIN;
        ms = fdsend_deadline_ms_left(d, sock);
        if (ms == 0)
            return FDSEND_ETIMEDOUT;
        d->strict = 1; /* it has waited: its own operations wait only for what is left */
        if (ms < 0)
            pthread_cond_wait(&l->cond, &l->mutex);
        else
            lock_timedwait(l, ms);
    }
    l->busy = 1;
    return FDSEND_OK;
}

/* Take one direction of a channel for one frame. If another thread has a frame in progress
 * there: wait, for at most what is left of the call's deadline d (then FDSEND_ETIMEDOUT),
 * or return FDSEND_EAGAIN when the caller asked not to wait (FDSEND_DONTWAIT or an
 * O_NONBLOCK socket). A thread cancelled while it waits leaves the lock as it was. */
static int32_t lock_acquire(dir_lock *l, int sock, uint32_t flags, fdsend_deadline *d)
{
    int32_t rc;
    pthread_mutex_lock(&l->mutex);
    pthread_cleanup_push(lock_unlock, l);
    rc = lock_take(l, sock, flags, d);
    pthread_cleanup_pop(1); /* unlock */
    if (rc != FDSEND_OK)
        return fdsend_fail(rc, rc == FDSEND_EAGAIN ? EAGAIN : ETIMEDOUT);
    return FDSEND_OK;
}

/* Also the cleanup handler of a thread cancelled inside its frame (recvmsg, sendmsg and
 * poll are cancellation points): every later frame there would wait otherwise. */
static void lock_release(void *arg)
{
    dir_lock *l = arg;
    int saved = errno;
    pthread_mutex_lock(&l->mutex);
    l->busy = 0;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mutex);
    errno = saved;
}

/* ---- Sending ------------------------------------------------------------------------- */

/* Point iov at the bytes of the frame (header + payload) from offset `from` on. */
static int frame_iov(struct iovec iov[2], unsigned char *hdr, const void *payload,
                     size_t len, size_t from)
{
    int cnt = 0;
    if (from < HDR_SIZE) {
        iov[cnt].iov_base = hdr + from;
        iov[cnt].iov_len = HDR_SIZE - from;
        cnt++;
        from = HDR_SIZE;
    }
    if (len > from - HDR_SIZE) {
        iov[cnt].iov_base = (unsigned char *)payload + (from - HDR_SIZE);
        iov[cnt].iov_len = len - (from - HDR_SIZE);
        cnt++;
    }
    return cnt;
}

/* Send one stream frame (header hdr + payload), the descriptors with its first byte, and
 * finish it once started whatever the socket mode. FDSEND_OK or a code. */
static int32_t send_stream_frame(int s, unsigned char *hdr, const void *payload, size_t len,
                                 const intptr_t *fds, int32_t nfds, uint32_t flags,
                                 fdsend_deadline *d)
{
    struct iovec iov[2];
    size_t total = HDR_SIZE + len, sent;
    int cnt = frame_iov(iov, hdr, payload, len, 0);
    int64_t n = fdsend_sendmsg_fds(s, NULL, 0, iov, cnt, fds, nfds, flags, d);
    if (n < 0)
        return (int32_t)n; /* FDSEND_EAGAIN, FDSEND_ETIMEDOUT: nothing at all was sent */
    sent = (size_t)n;
    /* The frame has started: finish it, without descriptors, whatever the socket mode. */
    while (sent < total) {
        fdsend_deadline_renew(d); /* bytes moved: the next wait counts from now */
        cnt = frame_iov(iov, hdr, payload, len, sent);
        n = fdsend_sendmsg_fds(s, NULL, 0, iov, cnt, NULL, 0, 0, d);
        while (n == FDSEND_EAGAIN) { /* a non-blocking socket */
            int32_t rc = fdsend_wait_ready(s, POLLOUT, d);
            if (rc != FDSEND_OK)
                return rc;
            n = fdsend_sendmsg_fds(s, NULL, 0, iov, cnt, NULL, 0, 0, d);
        }
        if (n < 0)
            return (int32_t)n; /* the stream is broken mid-frame */
        sent += (size_t)n;
    }
    return FDSEND_OK;
}

/* The checks of a send's arguments other than the socket: FDSEND_OK or a recorded code. */
static int32_t send_args(const void *payload, size_t len, const intptr_t *fds, int32_t nfds,
                         uint32_t flags)
{
    int32_t rc = fdsend_channel_send_args(payload, len, fds, nfds, flags);
    if (rc != FDSEND_OK)
        return fdsend_fail(rc, rc == FDSEND_EINVAL ? EINVAL : EMSGSIZE);
    return fdsend_check_send_fds(fds, nfds, flags);
}

/* Send one frame on ch, whose arguments send_args has passed. */
static int32_t send_frame(fdsend_channel *ch, const void *payload, size_t len,
                          const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    unsigned char hdr[HDR_SIZE];
    struct iovec iov[2];
    fdsend_deadline dl;
    int cnt;
    int32_t rc;
    int64_t n;

    if (nfds > 0 && !ch->is_unix)
        return fdsend_fail(FDSEND_ENOTUNIX, EAFNOSUPPORT);
    (void)fdsend_frame_encode(hdr, len, nfds); /* send_args has checked len and nfds */
    fdsend_deadline_start_send(&dl, (flags & FDSEND_DONTWAIT) != 0);
    if (ch->type != SOCK_STREAM) {
        /* One frame, one datagram: all or nothing. */
        cnt = frame_iov(iov, hdr, payload, len, 0);
        n = fdsend_sendmsg_fds(ch->sock, NULL, 0, iov, cnt, fds, nfds, flags, &dl);
        if (n < 0)
            return (int32_t)n;
        if ((size_t)n != HDR_SIZE + len)
            return fdsend_fail(FDSEND_EOTHER, EIO); /* no kernel cuts a datagram short */
        fdsend_clear_error();
        return FDSEND_OK;
    }
    if (!ch->locked) {
        rc = send_stream_frame(ch->sock, hdr, payload, len, fds, nfds, flags, &dl);
    } else {
        rc = lock_acquire(&ch->lock[0], ch->sock, flags, &dl);
        if (rc != FDSEND_OK)
            return rc;
        pthread_cleanup_push(lock_release, &ch->lock[0]);
        rc = send_stream_frame(ch->sock, hdr, payload, len, fds, nfds, flags, &dl);
        pthread_cleanup_pop(1); /* lock_release */
    }
    if (rc == FDSEND_OK)
        fdsend_clear_error();
    return rc;
}

int32_t fdsend_msg_send(intptr_t sock, const void *payload, size_t len,
                        const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    fdsend_channel ch;
    int32_t rc;
    if (!fdsend_valid_fd(sock))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    rc = send_args(payload, len, fds, nfds, flags);
    if (rc == FDSEND_OK)
        rc = channel_init(&ch, (int)sock, nfds > 0);
    if (rc != FDSEND_OK)
        return rc;
    return send_frame(&ch, payload, len, fds, nfds, flags);
}

int32_t fdsend_channel_send(fdsend_channel *ch, const void *payload, size_t len,
                            const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    int32_t rc;
    if (ch == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    rc = send_args(payload, len, fds, nfds, flags);
    if (rc != FDSEND_OK)
        return rc;
    return send_frame(ch, payload, len, fds, nfds, flags);
}

/* ---- Receiving ----------------------------------------------------------------------- */

/* A frame's outcome from the codec (rc): hand the descriptors got[0 .. ngot) to the
 * caller (FDSEND_OK: return len) or close them (an error code, recorded). */
static int64_t finish_frame(int32_t rc, uint32_t len, const int *got, int32_t ngot,
                            intptr_t *fds, int32_t *nfds)
{
    int32_t i;
    if (rc != FDSEND_OK) {
        close_fds(got, ngot);
        if (rc == FDSEND_EOF) {
            fdsend_clear_error();
            return FDSEND_EOF;
        }
        return fdsend_fail(rc, rc == FDSEND_EPROTO ? EPROTO
                               : rc == FDSEND_EMFILE ? EMFILE : EMSGSIZE);
    }
    for (i = 0; i < ngot; i++)
        fds[i] = (intptr_t)got[i];
    if (nfds != NULL)
        *nfds = ngot;
    fdsend_clear_error();
    return (int64_t)len;
}

static void rx_drop_fds(stream_rx *rx)
{
    int32_t k = rx->nfds;
    rx->nfds = 0;
    close_fds(rx->fds, k);
}

/* Cleanup handler of a thread cancelled inside a receive (recvmsg and poll are
 * cancellation points): it closes the descriptors held, and a channel whose frame was
 * under way, or that held bytes of later frames, has lost its position. */
static void rx_cancelled(void *arg)
{
    stream_rx *rx = arg;
    uint64_t off = 0, most = 0;
    if (rx->nfds > 0 || rx->pos < rx->end ||
        fdsend_frame_reader_want(&rx->r, &off, &most) != FDSEND_FRAME_HEADER || off != 0)
        rx->broken = 1;
    rx_drop_fds(rx);
}

/* An error inside a frame: close every descriptor held, return rc. */
static int64_t drop_frame(stream_rx *rx, int64_t rc)
{
    rx_drop_fds(rx);
    rx->pos = rx->end = 0;
    return rc;
}

/* FDSEND_FRAME_IN_CTRUNC if descriptors were lost: the kernel's MSG_CTRUNC, or a control
 * header the parser could not trust (macOS reports a truncated one that way, too). */
static uint32_t ctrunc_flag(const fdsend_piece *pc)
{
    return pc->ctrunc || pc->malformed ? (uint32_t)FDSEND_FRAME_IN_CTRUNC : 0u;
}

/* The codec's input flags for one read of a stream. */
static uint32_t piece_flags(const fdsend_piece *pc, int64_t n)
{
    return ctrunc_flag(pc) |
           (n == 0 ? (uint32_t)FDSEND_FRAME_IN_EOF : 0u);
}

/* A frame's outcome rc from the codec: hand its descriptors (all those held, if the frame
 * took them) to the caller, or close them; after a protocol error close every one held. */
static int64_t rx_outcome(stream_rx *rx, int32_t rc, uint32_t len, intptr_t *fds,
                          int32_t *nfds)
{
    int32_t taken = 0;
    if (rc == FDSEND_EPROTO) {
        rx->pos = rx->end = 0; /* the stream's position is lost */
        taken = rx->nfds;
    } else if (rc == FDSEND_EOF) {
        rx->ready = 0; /* a later call asks the socket again (which reports the end again) */
    } else if (fdsend_frame_reader_frame_fds(&rx->r) > 0) {
        taken = rx->nfds;
    }
    rx->nfds -= taken;
    return finish_frame(rc, len, rx->fds, taken, fds, nfds);
}

/* One read of the stream into iov: at a frame boundary (first) it takes the descriptors
 * into rx->fds and may return FDSEND_EAGAIN / FDSEND_ETIMEDOUT (nothing consumed); inside a
 * frame it waits for the socket (a non-blocking one too) within d, and a peer that stops
 * for the socket's timeout is a protocol error. */
static int64_t rx_read(stream_rx *rx, int sock, struct iovec *iov, int first, uint32_t flags,
                       fdsend_piece *pc, fdsend_deadline *d)
{
    for (;;) {
        int64_t n = fdsend_recv_piece(sock, iov, 1, first && (flags & FDSEND_DONTWAIT) != 0,
                                      first ? rx->fds : NULL, first ? FDSEND_MAX_FDS : 0, pc,
                                      d);
        int32_t rc;
        if (first) {
            if (n >= 0)
                rx->nfds = pc->taken;
            return n;
        }
        if (n >= 0)
            return n;
        rc = fdsend_wait_inside(sock, (int32_t)n, d); /* inside the frame: wait for the rest */
        if (rc != FDSEND_OK)
            return rc;
    }
}

/* Receive one stream frame, the reads chosen and judged by the codec's reader: from the
 * bytes read ahead first, then from the socket. Only a read at a frame boundary with
 * nothing held may return FDSEND_EAGAIN / FDSEND_ETIMEDOUT (nothing consumed); once a frame
 * has begun (its bytes read by this call or held from an earlier one) it is finished
 * whatever the socket mode. */
static int64_t recv_stream(stream_rx *rx, int sock, unsigned char *buf, size_t cap,
                           intptr_t *fds, int32_t maxfds, int32_t *nfds, uint32_t flags,
                           fdsend_deadline *d)
{
    unsigned char hdr[HDR_SIZE];
    unsigned char scratch[4096];
    uint32_t len = 0;
    int32_t rc;

    if (rx->broken)
        return fdsend_fail(FDSEND_EPROTO, EPROTO);
    if (!rx->ready) {
        (void)fdsend_frame_reader_init(&rx->r, cap, maxfds);
        rx->ready = 1;
    } else {
        (void)fdsend_frame_reader_limits(&rx->r, cap, maxfds); /* between frames: always */
    }
    for (;;) {
        uint64_t off = 0, most = 0;
        int32_t part = fdsend_frame_reader_want(&rx->r, &off, &most);
        struct iovec iov;
        fdsend_piece pc;
        int64_t n;
        if (part < 0) /* a reader broken earlier: the stream's position is lost */
            return drop_frame(rx, fdsend_fail(FDSEND_EPROTO, EPROTO));
        if (rx->pos < rx->end) { /* bytes read ahead: the codec splits them into frames */
            size_t k = rx->end - rx->pos;
            if (k > most)
                k = (size_t)most;
            if (part == FDSEND_FRAME_PAYLOAD)
                memcpy(buf + off, rx->buf + rx->pos, k);
            rc = fdsend_frame_reader_feed(&rx->r, rx->buf + rx->pos, k, 0,
                                          FDSEND_FRAME_IN_AHEAD, &len);
            rx->pos += k;
            if (rc != FDSEND_FRAME_MORE)
                break;
            if (rx->pos == rx->end) /* the frame goes on from the socket: waits are inside it */
                fdsend_deadline_renew(d);
            continue;
        }
        if (part == FDSEND_FRAME_HEADER && off == 0 && rx->buf != NULL) {
            /* At a frame boundary with nothing held: read as much as the buffer takes. */
            iov.iov_base = rx->buf;
            iov.iov_len = rx->size;
            n = rx_read(rx, sock, &iov, 1, flags, &pc, d);
            if (n < 0)
                return n; /* FDSEND_EAGAIN, FDSEND_ETIMEDOUT, an OS error: nothing consumed */
            rc = fdsend_frame_reader_begin_ahead(&rx->r, (uint64_t)n, pc.taken + pc.excess,
                                                 piece_flags(&pc, n));
            if (rc != FDSEND_FRAME_MORE)
                break;
            rx->pos = 0;
            rx->end = (size_t)n;
            continue;
        }
        if (part == FDSEND_FRAME_HEADER) {
            iov.iov_base = hdr + off;
        } else if (part == FDSEND_FRAME_PAYLOAD) {
            iov.iov_base = buf + off;
        } else { /* discard, through the caller's buffer when it is the larger */
            iov.iov_base = cap > sizeof scratch ? buf : scratch;
            if (most > (cap > sizeof scratch ? cap : sizeof scratch))
                most = cap > sizeof scratch ? cap : sizeof scratch;
        }
        iov.iov_len = (size_t)most;
        n = rx_read(rx, sock, &iov, part == FDSEND_FRAME_HEADER && off == 0, flags, &pc, d);
        if (n < 0 && part == FDSEND_FRAME_HEADER && off == 0)
            return n; /* FDSEND_EAGAIN, FDSEND_ETIMEDOUT, an OS error: nothing consumed */
        if (n < 0)
            return drop_frame(rx, n);
        rc = fdsend_frame_reader_feed(&rx->r, (const uint8_t *)iov.iov_base, (uint64_t)n,
                                      pc.taken + pc.excess, piece_flags(&pc, n), &len);
        if (rc != FDSEND_FRAME_MORE)
            break;
        fdsend_deadline_renew(d); /* bytes moved: the next wait counts from now */
    }
    return rx_outcome(rx, rc, len, fds, nfds);
}

static int64_t recv_datagram(int sock, int type, unsigned char *buf, size_t cap,
                             intptr_t *fds, int32_t maxfds, int32_t *nfds, uint32_t flags)
{
    unsigned char hdr[HDR_SIZE];
    int got[FDSEND_MAX_FDS];
    fdsend_deadline dl;
    struct iovec iov[2];
    int cnt = 1;
    fdsend_piece pc;
    int64_t n;

    iov[0].iov_base = hdr;
    iov[0].iov_len = HDR_SIZE;
    if (cap > 0) {
        iov[1].iov_base = buf;
        iov[1].iov_len = cap;
        cnt = 2;
    }
    fdsend_deadline_start(&dl, POLLIN, (flags & FDSEND_DONTWAIT) != 0);
    n = fdsend_recv_piece(sock, iov, cnt, (flags & FDSEND_DONTWAIT) != 0, got, FDSEND_MAX_FDS,
                          &pc, &dl);
    if (n < 0)
        return n;
    n = fdsend_frame_check_record(hdr, (uint64_t)n, pc.taken + pc.excess,
                                  ctrunc_flag(&pc) |
                                  (pc.dtrunc ? (uint32_t)FDSEND_FRAME_IN_TRUNC : 0u) |
                                  (type == SOCK_SEQPACKET ? (uint32_t)FDSEND_FRAME_IN_SEQPACKET
                                                          : 0u),
                                  cap, maxfds);
    return finish_frame(n < 0 ? (int32_t)n : FDSEND_OK, n < 0 ? 0 : (uint32_t)n, got,
                        pc.taken, fds, nfds);
}

/* The checks of a receive's arguments other than the socket (the caller has cleared
 * *nfds): FDSEND_OK or a recorded code. */
static int32_t recv_args(void *buf, size_t cap, intptr_t *fds, int32_t maxfds, int32_t *nfds,
                         uint32_t flags)
{
    return fdsend_check_recv_args(buf, cap, fds, maxfds, nfds, flags, FDSEND_DONTWAIT);
}

/* recv_stream, with the channel's receive lock held if it has one: released at the end,
 * and by the cleanup handlers, with the frame's descriptors closed, if the thread is
 * cancelled. */
static int64_t recv_stream_locked(fdsend_channel *ch, unsigned char *buf, size_t cap,
                                  intptr_t *fds, int32_t maxfds, int32_t *nfds,
                                  uint32_t flags)
{
    fdsend_deadline dl;
    int64_t n;
    int32_t rc;
    fdsend_deadline_start(&dl, POLLIN, (flags & FDSEND_DONTWAIT) != 0);
    if (!ch->locked) {
        pthread_cleanup_push(rx_cancelled, &ch->rx);
        n = recv_stream(&ch->rx, ch->sock, buf, cap, fds, maxfds, nfds, flags, &dl);
        pthread_cleanup_pop(0); /* recv_stream has handed them out or closed them */
        return n;
    }
    rc = lock_acquire(&ch->lock[1], ch->sock, flags, &dl);
    if (rc != FDSEND_OK)
        return rc;
    pthread_cleanup_push(lock_release, &ch->lock[1]);
    pthread_cleanup_push(rx_cancelled, &ch->rx);
    n = recv_stream(&ch->rx, ch->sock, buf, cap, fds, maxfds, nfds, flags, &dl);
    pthread_cleanup_pop(0); /* recv_stream has handed them out or closed them */
    pthread_cleanup_pop(1); /* lock_release */
    return n;
}

/* Receive one frame on ch, whose arguments recv_args has passed. */
static int64_t recv_frame(fdsend_channel *ch, void *buf, size_t cap, intptr_t *fds,
                          int32_t maxfds, int32_t *nfds, uint32_t flags)
{
    /* No frame is longer than the format allows, so a larger cap is never needed. */
    if (cap > FDSEND_MSG_MAX_PAYLOAD)
        cap = FDSEND_MSG_MAX_PAYLOAD;
    if (cap > (size_t)SSIZE_MAX - HDR_SIZE)
        cap = (size_t)SSIZE_MAX - HDR_SIZE;
    if (ch->type != SOCK_STREAM)
        return recv_datagram(ch->sock, ch->type, (unsigned char *)buf, cap, fds, maxfds,
                             nfds, flags);
    return recv_stream_locked(ch, (unsigned char *)buf, cap, fds, maxfds, nfds, flags);
}

int64_t fdsend_msg_recv(intptr_t sock, void *buf, size_t cap, intptr_t *fds,
                        int32_t maxfds, int32_t *nfds, uint32_t flags)
{
    fdsend_channel ch;
    int32_t rc;
    if (nfds != NULL)
        *nfds = 0;
    if (!fdsend_valid_fd(sock))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    rc = recv_args(buf, cap, fds, maxfds, nfds, flags);
    if (rc == FDSEND_OK)
        rc = channel_init(&ch, (int)sock, 0);
    if (rc != FDSEND_OK)
        return rc;
    return recv_frame(&ch, buf, cap, fds, maxfds, nfds, flags);
}

int64_t fdsend_channel_recv(fdsend_channel *ch, void *buf, size_t cap, intptr_t *fds,
                            int32_t maxfds, int32_t *nfds, uint32_t flags)
{
    int32_t rc;
    if (nfds != NULL)
        *nfds = 0;
    if (ch == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    rc = recv_args(buf, cap, fds, maxfds, nfds, flags);
    if (rc != FDSEND_OK)
        return rc;
    return recv_frame(ch, buf, cap, fds, maxfds, nfds, flags);
}

/* ---- The channel object --------------------------------------------------------------- */

static int32_t dir_lock_init(dir_lock *l)
{
    l->busy = 0;
    if (pthread_mutex_init(&l->mutex, NULL) != 0)
        return FDSEND_ENOBUFS;
    if (pthread_cond_init(&l->cond, NULL) != 0) {
        pthread_mutex_destroy(&l->mutex);
        return FDSEND_ENOBUFS;
    }
    return FDSEND_OK;
}

static void dir_lock_destroy(dir_lock *l)
{
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->mutex);
}

int32_t fdsend_channel_open(intptr_t sock, uint32_t flags, fdsend_channel **out)
{
    fdsend_channel *ch;
    int32_t rc;
    if (out == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    *out = NULL;
    if (!fdsend_valid_fd(sock))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    if (flags != 0)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    ch = (fdsend_channel *)malloc(sizeof *ch + AHEAD_SIZE);
    if (ch == NULL)
        return fdsend_fail(FDSEND_ENOBUFS, ENOMEM);
    rc = channel_init(ch, (int)sock, 1);
    if (rc == FDSEND_OK) {
        rc = dir_lock_init(&ch->lock[0]);
        if (rc == FDSEND_OK) {
            rc = dir_lock_init(&ch->lock[1]);
            if (rc != FDSEND_OK)
                dir_lock_destroy(&ch->lock[0]);
        }
        if (rc != FDSEND_OK)
            rc = fdsend_fail(rc, ENOMEM);
    }
    if (rc != FDSEND_OK) {
        free(ch);
        return rc;
    }
    ch->locked = 1;
    if (AHEAD_SIZE > 0) {
        ch->rx.buf = (unsigned char *)(ch + 1);
        ch->rx.size = AHEAD_SIZE;
    }
    *out = ch;
    fdsend_clear_error();
    return FDSEND_OK;
}

void fdsend_channel_close(fdsend_channel *ch)
{
    if (ch == NULL)
        return;
    rx_drop_fds(&ch->rx); /* descriptors read ahead for a frame no call has taken */
    dir_lock_destroy(&ch->lock[0]);
    dir_lock_destroy(&ch->lock[1]);
    free(ch);
}
