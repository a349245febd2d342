/* fdsend_msg_send / fdsend_msg_recv: framed messages (payload + descriptors) over Unix
 * domain sockets. The wire format, and the rules implemented here, are specified in
 * docs/wire-format.md.
 * SPDX-License-Identifier: MIT */
#if defined(_WIN32)

#include "fdsend_internal.h"

#include <errno.h>

/* Windows passes HANDLEs inside the byte stream (native/src/win32/); the framing has not
 * been built on top of it yet. */
int32_t fdsend_msg_send(intptr_t sock, const void *payload, size_t len,
                        const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    (void)sock; (void)payload; (void)len; (void)fds; (void)nfds; (void)flags;
    return fdsend_fail(FDSEND_ENOTSUP, ENOSYS);
}

int64_t fdsend_msg_recv(intptr_t sock, void *buf, size_t cap, intptr_t *fds,
                        int32_t maxfds, int32_t *nfds, uint32_t flags)
{
    (void)sock; (void)buf; (void)cap; (void)fds; (void)maxfds; (void)flags;
    if (nfds != NULL)
        *nfds = 0;
    return fdsend_fail(FDSEND_ENOTSUP, ENOSYS);
}

#else /* !defined(_WIN32) */

#include "fdsend_posix.h"
#include "fdsend_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SSIZE_MAX
#  define SSIZE_MAX ((size_t)-1 / 2)
#endif

#define HDR_SIZE FDSEND_MSG_HEADER_SIZE


/* A decoded frame header. */
typedef struct frame_header {
    unsigned version;
    unsigned flags;
    uint32_t nfds;
    uint32_t len;
} frame_header;

static void encode_header(unsigned char h[HDR_SIZE], uint32_t len, uint32_t nfds)
{
    h[0] = FDSEND_MSG_VERSION;
    h[1] = 0; /* flags: none defined */
    h[2] = (unsigned char)(nfds & 0xffu);
    h[3] = (unsigned char)((nfds >> 8) & 0xffu);
    h[4] = (unsigned char)(len & 0xffu);
    h[5] = (unsigned char)((len >> 8) & 0xffu);
    h[6] = (unsigned char)((len >> 16) & 0xffu);
    h[7] = (unsigned char)((len >> 24) & 0xffu);
}

/* Decode and check a header; 0 if it is valid, FDSEND_EPROTO otherwise. */
static int32_t decode_header(const unsigned char h[HDR_SIZE], frame_header *out)
{
    out->version = h[0];
    out->flags = h[1];
    out->nfds = (uint32_t)h[2] | (uint32_t)h[3] << 8;
    out->len = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 |
               (uint32_t)h[7] << 24;
    if (out->version != FDSEND_MSG_VERSION || out->flags != 0 ||
        out->nfds > FDSEND_MAX_FDS)
        return FDSEND_EPROTO;
    return FDSEND_OK;
}

static int32_t protocol_error(void)
{
    return fdsend_fail(FDSEND_EPROTO, EPROTO);
}

/* Close fds[0 .. n) without disturbing errno (the caller's error is already recorded). */
static void close_fds(const int *fds, int32_t n)
{
    int saved = errno;
    int32_t i;
    for (i = 0; i < n; i++)
        close(fds[i]);
    errno = saved;
}

static int32_t socket_type(int sock, int *type)
{
    socklen_t l = sizeof *type;
    if (getsockopt(sock, SOL_SOCKET, SO_TYPE, type, &l) != 0)
        return fdsend_fail_errno();
    if (*type != SOCK_STREAM && *type != SOCK_SEQPACKET && *type != SOCK_DGRAM)
        return fdsend_fail(FDSEND_ENOTSUP, EPROTOTYPE);
    return FDSEND_OK;
}

/* ---- Per-socket serialisation of stream frames -------------------------------------------
 * One entry per (socket, direction) that has a frame in progress, kept in a list of
 * entries that live on the callers' stacks: no allocation, no limit, no hash collisions
 * (two sockets never wait for each other). fork() resets the list in the child, whose
 * only thread holds no entry. */
typedef struct busy_entry {
    int sock;
    int dir; /* 0 send, 1 receive */
    struct busy_entry *next;
} busy_entry;

static pthread_mutex_t busy_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t busy_cond = PTHREAD_COND_INITIALIZER;
static busy_entry *busy_head;
/* Guarded by busy_mutex. Not pthread_once: that binds to pthread_once@GLIBC_2.34 and
 * would raise the glibc the library needs from 2.14/2.17 to 2.34. */
static int busy_atfork_registered;

static void busy_prepare(void)
{
    pthread_mutex_lock(&busy_mutex);
}

static void busy_parent(void)
{
    pthread_mutex_unlock(&busy_mutex);
}

static void busy_child(void)
{
    static const pthread_cond_t fresh = PTHREAD_COND_INITIALIZER;
    busy_head = NULL;      /* their owners are threads of the parent */
    busy_cond = fresh;     /* its waiters, too */
    pthread_mutex_unlock(&busy_mutex);
}

static int busy_find(int sock, int dir)
{
    const busy_entry *e;
    for (e = busy_head; e != NULL; e = e->next) {
        if (e->sock == sock && e->dir == dir)
            return 1;
    }
    return 0;
}

/* Cleanup handler: a thread cancelled in pthread_cond_(timed)wait holds the mutex again. */
static void busy_unlock(void *arg)
{
    (void)arg;
    pthread_mutex_unlock(&busy_mutex);
}

/* One wait on busy_cond for at most ms milliseconds. pthread_cond_timedwait counts on
 * CLOCK_REALTIME (pthread_condattr_setclock is missing on macOS), which may jump: wait in
 * slices of at most a second and let the caller check its monotonic deadline between. */
static void busy_timedwait(int ms)
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
    (void)pthread_cond_timedwait(&busy_cond, &busy_mutex, &ts);
}

/* busy_acquire's work, with busy_mutex held: FDSEND_OK (me is in the list),
 * FDSEND_EAGAIN or FDSEND_ETIMEDOUT. */
static int32_t busy_take(busy_entry *me, int sock, int dir, uint32_t flags,
                         fdsend_deadline *d)
{
    int nowait = -1; /* not known yet: only looked up when there is contention */
    int32_t rc = FDSEND_OK;
    if (!busy_atfork_registered) {
        busy_atfork_registered = 1;
        (void)pthread_atfork(busy_prepare, busy_parent, busy_child);
    }
    while (busy_find(sock, dir)) {
        int ms;
        if (nowait < 0) {
            int fl = fcntl(sock, F_GETFL);
            nowait = (flags & FDSEND_DONTWAIT) != 0 || (fl >= 0 && (fl & O_NONBLOCK) != 0);
        }
        if (nowait) {
            rc = FDSEND_EAGAIN;
            break;
        }
        ms = fdsend_deadline_ms_left(d, sock);
        if (ms == 0) {
            rc = FDSEND_ETIMEDOUT;
            break;
        }
        d->strict = 1; /* it has waited: its own operations wait only for what is left */
        if (ms < 0)
            pthread_cond_wait(&busy_cond, &busy_mutex);
        else
            busy_timedwait(ms);
    }
    if (rc == FDSEND_OK) {
        me->sock = sock;
        me->dir = dir;
        me->next = busy_head;
        busy_head = me;
    }
    return rc;
}

/* Take (sock, dir) for one frame. If another thread has a frame in progress there: wait,
 * for at most what is left of the call's deadline d (then FDSEND_ETIMEDOUT), or return
 * FDSEND_EAGAIN when the caller asked not to wait (FDSEND_DONTWAIT or an O_NONBLOCK
 * socket). A thread cancelled while it waits leaves no entry and the mutex unlocked. */
static int32_t busy_acquire(busy_entry *me, int sock, int dir, uint32_t flags,
                            fdsend_deadline *d)
{
    int32_t rc;
    pthread_mutex_lock(&busy_mutex);
    pthread_cleanup_push(busy_unlock, NULL);
    rc = busy_take(me, sock, dir, flags, d);
    pthread_cleanup_pop(1); /* unlock */
    if (rc != FDSEND_OK)
        return fdsend_fail(rc, rc == FDSEND_EAGAIN ? EAGAIN : ETIMEDOUT);
    return FDSEND_OK;
}

static void busy_release(busy_entry *me)
{
    busy_entry **pp;
    int saved = errno;
    pthread_mutex_lock(&busy_mutex);
    for (pp = &busy_head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == me) {
            *pp = me->next;
            break;
        }
    }
    pthread_cond_broadcast(&busy_cond);
    pthread_mutex_unlock(&busy_mutex);
    errno = saved;
}

/* Cleanup handler: a thread cancelled inside its frame (recvmsg, sendmsg and poll are
 * cancellation points) releases the socket, or every later frame there would wait. */
static void busy_cleanup(void *arg)
{
    busy_release((busy_entry *)arg);
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

int32_t fdsend_msg_send(intptr_t sock, const void *payload, size_t len,
                        const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    unsigned char hdr[HDR_SIZE];
    struct iovec iov[2];
    fdsend_deadline dl;
    busy_entry me;
    int type = 0, s, cnt;
    int32_t rc;
    int64_t n;

    if (!fdsend_valid_fd(sock))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    if ((payload == NULL && len > 0) || nfds < 0 || (fds == NULL && nfds > 0) ||
        (flags & ~(uint32_t)FDSEND_DONTWAIT) != 0)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    if (len > FDSEND_MSG_MAX_PAYLOAD || len > (size_t)SSIZE_MAX - HDR_SIZE)
        return fdsend_fail(FDSEND_EMSGSIZE, EMSGSIZE);
    rc = fdsend_check_send_fds(fds, nfds, flags);
    if (rc != FDSEND_OK)
        return rc;
    s = (int)sock;
    rc = socket_type(s, &type);
    if (rc != FDSEND_OK)
        return rc;
    /* Some kernels (Linux 6.x TCP) accept SCM_RIGHTS on other families and drop the
     * descriptors silently: check the family before anything is sent. */
    if (nfds > 0) {
        rc = fdsend_check_unix_socket(s);
        if (rc != FDSEND_OK)
            return rc;
    }

    encode_header(hdr, (uint32_t)len, (uint32_t)nfds);
    fdsend_deadline_start(&dl, POLLOUT, (flags & FDSEND_DONTWAIT) != 0);
    if (type != SOCK_STREAM) {
        /* One frame, one datagram: all or nothing. */
        cnt = frame_iov(iov, hdr, payload, len, 0);
        n = fdsend_sendmsg_fds(s, NULL, 0, iov, cnt, fds, nfds, flags, &dl);
        if (n < 0)
            return (int32_t)n;
        if ((size_t)n != HDR_SIZE + len)
            return fdsend_fail(FDSEND_EOTHER, EIO); /* no kernel cuts a datagram short */
        fdsend_clear_error();
        return FDSEND_OK;
    }

    rc = busy_acquire(&me, s, 0, flags, &dl);
    if (rc != FDSEND_OK)
        return rc;
    pthread_cleanup_push(busy_cleanup, &me);
    rc = send_stream_frame(s, hdr, payload, len, fds, nfds, flags, &dl);
    pthread_cleanup_pop(1); /* busy_release */
    if (rc == FDSEND_OK)
        fdsend_clear_error();
    return rc;
}

/* ---- Receiving ----------------------------------------------------------------------- */

/* What one recvmsg brought besides data. */
typedef struct piece {
    int32_t taken;   /* descriptors stored in out[] */
    int32_t dropped; /* descriptors that did not fit in out[] (closed) */
    int ctrunc;      /* the kernel dropped descriptors (MSG_CTRUNC) */
    int dtrunc;      /* the datagram was longer than the buffers (MSG_TRUNC) */
} piece;

/* One recvmsg into iov[0 .. iovcnt). Descriptors go to out[0 .. maxout) (close-on-exec);
 * the others are closed. Returns the bytes received (0: end of stream) or a negative code,
 * in which case no descriptor arrived. */
static int64_t recv_piece(int sock, struct iovec *iov, int iovcnt, int dontwait, int *out,
                          int32_t maxout, piece *pc, fdsend_deadline *d)
{
    recv_control control;
    struct msghdr msg;
    fdsend_parse_result pr;
    int recvflags = 0;
    ssize_t n;

    memset(pc, 0, sizeof *pc);
#if HAVE_MSG_DONTWAIT
    if (dontwait)
        recvflags |= MSG_DONTWAIT;
#else
    (void)dontwait;
#endif /* HAVE_MSG_DONTWAIT */
#if HAVE_MSG_CMSG_CLOEXEC
    recvflags |= MSG_CMSG_CLOEXEC;
#endif /* HAVE_MSG_CMSG_CLOEXEC */
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = iovcnt;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;

    n = fdsend_io(fdsend_recvmsg_op, sock, &msg, recvflags, d);
    if (n < 0)
        return fdsend_fail_recv(sock, dontwait);

    pr = fdsend_parse_rights(control.buf, (size_t)msg.msg_controllen, out, maxout,
                             fdsend_close_excess, NULL);
#if !HAVE_MSG_CMSG_CLOEXEC
    {
        int32_t rc = fdsend_cloexec_or_close(out, pr.taken);
        if (rc != FDSEND_OK)
            return rc;
    }
#endif /* !HAVE_MSG_CMSG_CLOEXEC */
    pc->taken = pr.taken;
    pc->dropped = pr.excess;
    /* macOS reports a truncated header as malformed (untruncated cmsg_len), too. */
    pc->ctrunc = (msg.msg_flags & MSG_CTRUNC) != 0 || pr.malformed;
    pc->dtrunc = (msg.msg_flags & MSG_TRUNC) != 0;
    return (int64_t)n;
}

/* Read exactly len more bytes of a frame that has started (into dst, or discarded through
 * scratch when dst is NULL), waiting for them whatever the socket mode. Descriptors here
 * are a protocol error (they belong with the header's first byte), and so is the end of
 * the stream. */
static int32_t recv_rest(int sock, unsigned char *dst, size_t len, unsigned char *scratch,
                         size_t scratchlen, fdsend_deadline *d)
{
    while (len > 0) {
        struct iovec iov;
        piece pc;
        int64_t n;
        iov.iov_base = dst != NULL ? dst : scratch;
        iov.iov_len = dst != NULL ? len : (len < scratchlen ? len : scratchlen);
        n = recv_piece(sock, &iov, 1, 0, NULL, 0, &pc, d);
        if (n == FDSEND_EAGAIN) { /* a non-blocking socket */
            n = fdsend_wait_ready(sock, POLLIN, d);
            if (n == FDSEND_OK)
                continue;
        }
        if (n == FDSEND_ETIMEDOUT) /* the peer stopped inside its frame for SO_RCVTIMEO */
            return fdsend_fail(FDSEND_EPROTO, ETIMEDOUT);
        if (n < 0)
            return (int32_t)n;
        if (pc.dropped > 0 || pc.ctrunc || n == 0)
            return protocol_error();
        len -= (size_t)n;
        if (dst != NULL)
            dst += (size_t)n;
        fdsend_deadline_renew(d); /* bytes moved: the next wait counts from now */
    }
    return FDSEND_OK;
}

/* The checks every frame passes once it has been consumed whole (in this order). */
static int64_t finish_frame(const frame_header *h, const int *got, int32_t ngot, int ctrunc,
                            size_t cap, intptr_t *fds, int32_t maxfds, int32_t *nfds)
{
    int32_t i;
    if (ctrunc) {
        close_fds(got, ngot);
        return fdsend_fail(FDSEND_EMFILE, EMFILE);
    }
    if (h->len > cap) {
        close_fds(got, ngot);
        return fdsend_fail(FDSEND_EMSGSIZE, EMSGSIZE);
    }
    if ((int64_t)h->nfds > (int64_t)maxfds) {
        close_fds(got, ngot);
        return fdsend_fail(FDSEND_ETOOMANYFDS, EMSGSIZE);
    }
    for (i = 0; i < ngot; i++)
        fds[i] = (intptr_t)got[i];
    if (nfds != NULL)
        *nfds = ngot;
    fdsend_clear_error();
    return (int64_t)h->len;
}

/* The descriptors of a stream frame being received: closed by the cleanup handler if the
 * thread is cancelled inside the frame. */
typedef struct frame_fds {
    int got[FDSEND_MAX_FDS];
    int32_t n;
} frame_fds;

static void frame_fds_cleanup(void *arg)
{
    frame_fds *f = arg;
    int32_t k = f->n;
    f->n = 0;
    close_fds(f->got, k);
}

/* An error inside a frame: close its descriptors, return rc. */
static int64_t drop_frame(frame_fds *f, int64_t rc)
{
    frame_fds_cleanup(f);
    return rc;
}

static int64_t recv_stream(int sock, unsigned char *buf, size_t cap, intptr_t *fds,
                           int32_t maxfds, int32_t *nfds, uint32_t flags, frame_fds *f,
                           fdsend_deadline *d)
{
    unsigned char hdr[HDR_SIZE];
    unsigned char scratch[4096];
    frame_header h;
    struct iovec iov;
    piece pc;
    int64_t n;
    int32_t rc, taken;

    /* The first read: exactly the header, and with it the frame's descriptors. */
    iov.iov_base = hdr;
    iov.iov_len = HDR_SIZE;
    n = recv_piece(sock, &iov, 1, (flags & FDSEND_DONTWAIT) != 0, f->got, FDSEND_MAX_FDS,
                   &pc, d);
    if (n < 0)
        return n; /* FDSEND_EAGAIN, FDSEND_ETIMEDOUT: nothing consumed */
    f->n = pc.taken;
    if (n == 0) {
        if (pc.taken > 0 || pc.ctrunc)
            return drop_frame(f, protocol_error());
        fdsend_clear_error();
        return FDSEND_EOF;
    }
    if (pc.dropped > 0) /* more than FDSEND_MAX_FDS descriptors */
        return drop_frame(f, protocol_error());
    /* Judge the version and flags bytes as soon as they are here: a peer that does not speak
     * the format (IO::FDPass sends one zero byte) must get FDSEND_EPROTO, not a wait for
     * header bytes that never come. */
    if (hdr[0] != FDSEND_MSG_VERSION || (n >= 2 && hdr[1] != 0))
        return drop_frame(f, protocol_error());
    fdsend_deadline_renew(d); /* the frame has started: waits count from its last byte */
    if ((size_t)n < HDR_SIZE) {
        rc = recv_rest(sock, hdr + n, HDR_SIZE - (size_t)n, NULL, 0, d);
        if (rc != FDSEND_OK)
            return drop_frame(f, rc);
    }
    if (decode_header(hdr, &h) != FDSEND_OK ||
        (!pc.ctrunc && (uint32_t)pc.taken != h.nfds))
        return drop_frame(f, protocol_error());
    /* The payload: exactly h.len bytes, into buf if it fits, else read and discarded. */
    if (h.len <= cap)
        rc = recv_rest(sock, buf, h.len, NULL, 0, d);
    else if (cap >= sizeof scratch)
        rc = recv_rest(sock, NULL, h.len, buf, cap, d);
    else
        rc = recv_rest(sock, NULL, h.len, scratch, sizeof scratch, d);
    if (rc != FDSEND_OK)
        return drop_frame(f, rc);
    taken = f->n;
    f->n = 0; /* finish_frame hands them out or closes them */
    return finish_frame(&h, f->got, taken, pc.ctrunc, cap, fds, maxfds, nfds);
}

static int64_t recv_datagram(int sock, int type, unsigned char *buf, size_t cap,
                             intptr_t *fds, int32_t maxfds, int32_t *nfds, uint32_t flags)
{
    unsigned char hdr[HDR_SIZE];
    int got[FDSEND_MAX_FDS];
    fdsend_deadline dl;
    frame_header h;
    struct iovec iov[2];
    int cnt = 1;
    piece pc;
    int64_t n;

    iov[0].iov_base = hdr;
    iov[0].iov_len = HDR_SIZE;
    if (cap > 0) {
        iov[1].iov_base = buf;
        iov[1].iov_len = cap;
        cnt = 2;
    }
    fdsend_deadline_start(&dl, POLLIN, (flags & FDSEND_DONTWAIT) != 0);
    n = recv_piece(sock, iov, cnt, (flags & FDSEND_DONTWAIT) != 0, got, FDSEND_MAX_FDS, &pc,
                   &dl);
    if (n < 0)
        return n;
    if (n == 0 && type == SOCK_SEQPACKET && pc.taken == 0 && !pc.ctrunc && !pc.dtrunc) {
        fdsend_clear_error(); /* no frame is empty: this is the end of the connection */
        return FDSEND_EOF;
    }
    if (pc.dropped > 0 || (size_t)n < HDR_SIZE || decode_header(hdr, &h) != FDSEND_OK ||
        (!pc.dtrunc && (size_t)n - HDR_SIZE != h.len) || /* shorter or longer than said */
        (pc.dtrunc && h.len <= cap) ||                   /* longer than said */
        (!pc.ctrunc && (uint32_t)pc.taken != h.nfds)) {
        close_fds(got, pc.taken);
        return protocol_error();
    }
    return finish_frame(&h, got, pc.taken, pc.ctrunc, cap, fds, maxfds, nfds);
}

/* recv_stream for a thread that holds (sock, receive): released at the end, and by the
 * cleanup handlers, with the frame's descriptors closed, if the thread is cancelled. */
static int64_t recv_stream_busy(int sock, unsigned char *buf, size_t cap, intptr_t *fds,
                                int32_t maxfds, int32_t *nfds, uint32_t flags,
                                busy_entry *me, fdsend_deadline *d)
{
    frame_fds frame;
    int64_t n;
    frame.n = 0;
    pthread_cleanup_push(busy_cleanup, me);
    pthread_cleanup_push(frame_fds_cleanup, &frame);
    n = recv_stream(sock, buf, cap, fds, maxfds, nfds, flags, &frame, d);
    pthread_cleanup_pop(0); /* recv_stream has handed them out or closed them */
    pthread_cleanup_pop(1); /* busy_release */
    return n;
}

int64_t fdsend_msg_recv(intptr_t sock, void *buf, size_t cap, intptr_t *fds,
                        int32_t maxfds, int32_t *nfds, uint32_t flags)
{
    fdsend_deadline dl;
    busy_entry me;
    int type = 0, s;
    int32_t rc;

    if (nfds != NULL)
        *nfds = 0;
    if (!fdsend_valid_fd(sock))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    if ((buf == NULL && cap > 0) || maxfds < 0 ||
        (maxfds > 0 && (fds == NULL || nfds == NULL)) ||
        (flags & ~(uint32_t)FDSEND_DONTWAIT) != 0)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
#if !HAVE_MSG_DONTWAIT
    if (flags & FDSEND_DONTWAIT)
        return fdsend_fail(FDSEND_ENOTSUP, ENOTSUP);
#endif /* !HAVE_MSG_DONTWAIT */
    /* No frame is longer than the format allows, so a larger cap is never needed. */
    if (cap > FDSEND_MSG_MAX_PAYLOAD)
        cap = FDSEND_MSG_MAX_PAYLOAD;
    if (cap > (size_t)SSIZE_MAX - HDR_SIZE)
        cap = (size_t)SSIZE_MAX - HDR_SIZE;
    s = (int)sock;
    rc = socket_type(s, &type);
    if (rc != FDSEND_OK)
        return rc;

    if (type != SOCK_STREAM)
        return recv_datagram(s, type, (unsigned char *)buf, cap, fds, maxfds, nfds, flags);

    fdsend_deadline_start(&dl, POLLIN, (flags & FDSEND_DONTWAIT) != 0);
    rc = busy_acquire(&me, s, 1, flags, &dl);
    if (rc != FDSEND_OK)
        return rc;
    return recv_stream_busy(s, (unsigned char *)buf, cap, fds, maxfds, nfds, flags, &me,
                            &dl);
}

#endif /* !defined(_WIN32) */
