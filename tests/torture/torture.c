/* FdSend torture: many messages between two processes, random everything, every byte and
 * every descriptor verified, descriptor tables back to their baseline after each phase.
 *
 *   torture [--messages N] [--seed S] [--max-seconds T] [--phase-size N] [-v]
 *   torture --peer send|recv --connect PATH --type stream|seqpacket [--channel] --seed S --count N
 *
 * A run is a sequence of phases until N messages were delivered and verified. Each phase
 * makes a fresh socketpair (stream or seqpacket) and forks a child; one side sends, the
 * other receives (the direction is random). The sender first announces its pool of
 * descriptors (temporary files, pipe ends, socketpair ends) by their identity (st_dev,
 * st_ino, access mode); then both sides replay the same schedule from the phase seed:
 * for every message its descriptor count (0..253, pool indices at random), its payload
 * length (0..64 KiB), whether it is a bare descriptor message (no data: the one-byte
 * carrier on a stream), and the receiver's capacities (data and descriptors) which force
 * truncation at random. The receiver checks every byte against the schedule, every
 * received descriptor's identity and close-on-exec flag, the truncation flags, and
 * closes everything. Some phases use a non-blocking sender that polls and handles
 * EAGAIN and partial sends; on a stream the receiver reads in random chunks, some
 * spanning several messages. Some phases kill the peer with SIGKILL in mid-stream: a
 * killed sender's messages that it saw succeed must still all arrive; a killed receiver
 * gives the sender FDSEND_EPIPE/ECONNRESET and never SIGPIPE (SIGPIPE keeps its default
 * action here, so it would kill the run).
 *
 * --peer runs one side of one phase over a socket path, so that another implementation
 * (the .NET library) can be the other side.
 *
 * Prints the counts and exits 0, or prints FAIL lines and exits 1 on any mismatch: a
 * wrong byte, a wrong or missing descriptor, a wrong flag, a leaked descriptor, a lost
 * byte.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1
#include "fdsend.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define POOL_FILES 24
#define POOL_PIPES 12
#define POOL_SOCKPAIRS 8
#define POOL_SIZE (POOL_FILES + 2 * POOL_PIPES + 2 * POOL_SOCKPAIRS)
#define HDR_LEN 16
#define MAX_BODY 65536
#define MAX_MSG (HDR_LEN + MAX_BODY)
#define MAGIC_POOL 0xFD5E0000u
#define MAGIC_MSG 0xFD5E0001u
#define IDENT_LEN 24 /* dev u64, ino u64, accmode u32, pad u32 */
#define RECV_FD_ROOM 300

typedef struct stats {
    uint64_t msgs_sent, msgs_recv, fds_sent, fds_recv, fds_dropped;
    uint64_t fd_truncations, data_truncations, bytes_sent, bytes_recv, bytes_discarded;
    uint64_t eagain, partial_sends, bare_msgs, greedy_reads, faults, leaks;
    int failed;
    char err[600];
} stats;

typedef struct ident {
    uint64_t dev, ino;
    uint32_t accmode;
} ident;

typedef struct sched {
    int bare;
    int nfds;
    uint8_t idx[FDSEND_MAX_FDS];
    uint32_t bodylen;
    int32_t fdcap;     /* receiver's maxfds for this message */
    uint32_t datacap;  /* seqpacket: receiver's len for this message */
    int recv_len0;     /* bare message: receive with len 0 */
} sched;

typedef struct phase {
    uint64_t seed;
    int type;           /* SOCK_STREAM or SOCK_SEQPACKET */
    uint32_t nmsgs;     /* messages after the pool announcement */
    int nonblocking;    /* sender polls on a non-blocking socket */
    int channel;        /* fdsend_msg_send / fdsend_msg_recv frames instead of raw messages */
    int64_t kill_at;    /* -1, or kill the peer after this many messages */
} phase;

static int verbose;
static stats *g_me; /* where fail() records, for the current process */

static void fail(const char *fmt, ...)
{
    va_list ap;
    char buf[600];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_me != NULL) {
        g_me->failed = 1;
        snprintf(g_me->err, sizeof g_me->err, "%s", buf);
    }
    printf("FAIL: [pid %d] %s\n", (int)getpid(), buf);
    fflush(stdout);
    _exit(1);
}

/* ---- the schedule both sides replay --------------------------------------------------- */

static uint64_t msg_seed(const phase *p, uint32_t seq, uint64_t salt)
{
    return p->seed * 0x100000001B3ull + seq * 0x9E3779B97F4A7C15ull + salt;
}

static void make_sched(const phase *p, uint32_t seq, sched *s)
{
    tu_rng r;
    uint32_t t, msglen;
    int i;
    tu_rng_seed(&r, msg_seed(p, seq, 1));
    memset(s, 0, offsetof(sched, idx));
    s->bare = tu_rng_below(&r, 100) < 6;
    t = tu_rng_below(&r, 100);
    if (s->bare)
        s->nfds = 1 + (int)tu_rng_below(&r, 8);
    else if (t < 35)
        s->nfds = 0;
    else if (t < 75)
        s->nfds = 1 + (int)tu_rng_below(&r, 4);
    else if (t < 93)
        s->nfds = 5 + (int)tu_rng_below(&r, 28);
    else if (t < 98)
        s->nfds = 33 + (int)tu_rng_below(&r, FDSEND_MAX_FDS - 33);
    else
        s->nfds = FDSEND_MAX_FDS;
    for (i = 0; i < s->nfds; i++)
        s->idx[i] = (uint8_t)tu_rng_below(&r, POOL_SIZE);
    t = tu_rng_below(&r, 100);
    if (s->bare)
        s->bodylen = 0;
    else if (t < 60)
        s->bodylen = tu_rng_below(&r, 65);
    else if (t < 85)
        s->bodylen = tu_rng_below(&r, 1025);
    else if (t < 97)
        s->bodylen = tu_rng_below(&r, 8193);
    else
        s->bodylen = tu_rng_below(&r, MAX_BODY + 1);
    /* Receiver's descriptor capacity: a quarter of the messages with fds are truncated. */
    t = tu_rng_below(&r, 100);
    if (s->nfds > 0 && t < 25)
        s->fdcap = (int32_t)tu_rng_below(&r, (uint32_t)s->nfds);
    else if (t < 60)
        s->fdcap = s->nfds;
    else
        s->fdcap = RECV_FD_ROOM;
    /* Seqpacket data capacity: a fifth of the messages are truncated. */
    msglen = s->bare ? 0 : HDR_LEN + s->bodylen;
    t = tu_rng_below(&r, 100);
    if (t < 20 && msglen > 0)
        s->datacap = tu_rng_below(&r, msglen);
    else
        s->datacap = msglen + tu_rng_below(&r, 64);
    s->recv_len0 = s->bare && tu_rng_below(&r, 2);
}

static uint32_t wire_len(const phase *p, const sched *s)
{
    if (s->bare) /* the carrier byte on a raw stream; an empty frame on a channel */
        return p->type == SOCK_STREAM && !p->channel ? 1 : 0;
    return HDR_LEN + s->bodylen;
}

static void put32(unsigned char *b, uint32_t v) { memcpy(b, &v, 4); }

/* The bytes of message seq, as the sender sends them and the receiver expects them. */
static void make_bytes(const phase *p, uint32_t seq, const sched *s, unsigned char *out)
{
    tu_rng r;
    uint32_t i;
    if (s->bare) {
        out[0] = 0;
        return;
    }
    put32(out, MAGIC_MSG);
    put32(out + 4, seq);
    put32(out + 8, s->bodylen);
    put32(out + 12, (uint32_t)s->nfds);
    tu_rng_seed(&r, msg_seed(p, seq, 2));
    for (i = 0; i < s->bodylen; i += 8) {
        uint64_t v = tu_rng_next(&r);
        uint32_t n = s->bodylen - i < 8 ? s->bodylen - i : 8;
        memcpy(out + HDR_LEN + i, &v, n);
    }
}

/* ---- descriptor pool -------------------------------------------------------------------- */

static void identify(int fd, ident *id)
{
    struct stat st;
    int fl = fcntl(fd, F_GETFL);
    if (fstat(fd, &st) != 0 || fl < 0)
        fail("identify fd %d: %s", fd, strerror(errno));
    id->dev = (uint64_t)st.st_dev;
    id->ino = (uint64_t)st.st_ino;
    id->accmode = (uint32_t)(fl & O_ACCMODE);
}

static void make_pool(int *pool)
{
    int i, n = 0;
    for (i = 0; i < POOL_FILES; i++) {
        char tmpl[] = "/tmp/fdsend-torture-XXXXXX";
        int fd = mkostemp(tmpl, O_CLOEXEC);
        if (fd < 0)
            fail("mkostemp: %s", strerror(errno));
        unlink(tmpl);
        pool[n++] = fd;
    }
    for (i = 0; i < POOL_PIPES; i++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0)
            fail("pipe2: %s", strerror(errno));
        pool[n++] = p[0];
        pool[n++] = p[1];
    }
    for (i = 0; i < POOL_SOCKPAIRS; i++) {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
            fail("socketpair: %s", strerror(errno));
        pool[n++] = sp[0];
        pool[n++] = sp[1];
    }
}

static void close_pool(int *pool)
{
    int i;
    for (i = 0; i < POOL_SIZE; i++)
        close(pool[i]);
}

/* ---- sender ----------------------------------------------------------------------------- */

static void wait_writable(int s)
{
    struct pollfd pfd = {s, POLLOUT, 0};
    while (poll(&pfd, 1, 10000) < 0 && errno == EINTR) {
    }
}

/* Send one message (all of it). Returns 0, or the negative FDSEND code when the peer is
 * gone (EPIPE / ECONNRESET) and peer_may_die is set. */
static int64_t send_msg(int s, const phase *p, const unsigned char *buf, size_t len,
                        const intptr_t *fds, int nfds, int peer_may_die, stats *st)
{
    size_t off = 0;
    int first = 1;
    while (p->channel) {
        /* One frame; FDSEND_EAGAIN means nothing of it went. */
        int32_t rc = fdsend_msg_send(s, buf, len, fds, nfds, 0);
        if (rc == FDSEND_EAGAIN && p->nonblocking) {
            st->eagain++;
            wait_writable(s);
            continue;
        }
        if ((rc == FDSEND_EPIPE || rc == FDSEND_ECONNRESET) && peer_may_die)
            return rc;
        if (rc != FDSEND_OK)
            fail("fdsend_msg_send(%zu bytes, %d fds): %s", len, nfds, fdsend_strerror(rc));
        st->bytes_sent += len;
        return 0;
    }
    /* Every other raw message says it is on a Unix socket (FDSEND_UNIX_SOCKET: the library
     * skips its getsockname check), so that both paths carry traffic. */
    static unsigned toggle;
    uint32_t sflags = (toggle++ & 1) ? FDSEND_UNIX_SOCKET : 0;
    for (;;) {
        int64_t n = fdsend_send(s, buf + off, len - off, first ? fds : NULL,
                                first ? nfds : 0, sflags);
        if (n == FDSEND_EAGAIN && p->nonblocking) {
            st->eagain++; /* nothing was sent: retry with the same descriptors */
            wait_writable(s);
            continue;
        }
        if ((n == FDSEND_EPIPE || n == FDSEND_ECONNRESET) && peer_may_die)
            return n;
        if (n < 0)
            fail("fdsend_send(%zu bytes, %d fds): %s", len - off, first ? nfds : 0,
                 fdsend_strerror((int32_t)n));
        if (len == 0) {
            if (n != 0)
                fail("fdsend_send(len 0, %d fds) returned %" PRId64 ", expected 0", nfds, n);
            st->bytes_sent += p->type == SOCK_STREAM; /* the one-byte carrier */
            return 0;
        }
        if (p->type != SOCK_STREAM && (size_t)n != len)
            fail("seqpacket fdsend_send sent %" PRId64 " of %zu bytes", n, len);
        if (n == 0)
            fail("fdsend_send returned 0 for %zu bytes", len - off);
        st->bytes_sent += (uint64_t)n;
        first = 0;
        off += (size_t)n;
        if (off == len)
            return 0;
        st->partial_sends++; /* the rest goes without descriptors */
        if (p->nonblocking)
            wait_writable(s);
    }
}

/* Sends the pool announcement and the schedule. Returns the number of messages sent. If
 * kill_child > 0, kills that process after kill_at messages and then expects the send
 * to fail with EPIPE/ECONNRESET. */
static void run_sender(int s, const phase *p, stats *st, pid_t kill_child)
{
    int pool[POOL_SIZE];
    unsigned char *buf = malloc(MAX_MSG);
    intptr_t fds[FDSEND_MAX_FDS];
    sched sc;
    uint32_t seq;
    int i, dead = 0;

    if (buf == NULL)
        fail("out of memory");
    if (p->nonblocking && fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK) != 0)
        fail("O_NONBLOCK: %s", strerror(errno));
    make_pool(pool);
    /* seq 0: the pool's identities */
    put32(buf, MAGIC_POOL);
    put32(buf + 4, 0);
    put32(buf + 8, POOL_SIZE * IDENT_LEN);
    put32(buf + 12, 0);
    for (i = 0; i < POOL_SIZE; i++) {
        ident id;
        unsigned char *r = buf + HDR_LEN + i * IDENT_LEN;
        identify(pool[i], &id);
        memset(r, 0, IDENT_LEN);
        memcpy(r, &id.dev, 8);
        memcpy(r + 8, &id.ino, 8);
        memcpy(r + 16, &id.accmode, 4);
    }
    if (send_msg(s, p, buf, HDR_LEN + POOL_SIZE * IDENT_LEN, NULL, 0, 0, st) != 0)
        fail("pool announcement not sent");

    for (seq = 1; seq <= p->nmsgs; seq++) {
        int64_t r;
        if (kill_child > 0 && (int64_t)(seq - 1) == p->kill_at) {
            int wst;
            kill(kill_child, SIGKILL);
            waitpid(kill_child, &wst, 0);
            st->faults++;
            dead = 1;
        }
        make_sched(p, seq, &sc);
        make_bytes(p, seq, &sc, buf);
        for (i = 0; i < sc.nfds; i++)
            fds[i] = pool[sc.idx[i]];
        r = send_msg(s, p, buf, sc.bare ? 0 : wire_len(p, &sc), fds, sc.nfds, dead, st);
        if (r != 0)
            break; /* the killed receiver's socket is closed: EPIPE, no SIGPIPE */
        st->msgs_sent++;
        st->fds_sent += (uint64_t)sc.nfds;
        if (sc.bare)
            st->bare_msgs++;
        if (dead && seq == p->nmsgs)
            fail("the peer was killed but every send after it succeeded");
    }
    close_pool(pool);
    free(buf);
}

/* ---- receiver --------------------------------------------------------------------------- */

typedef struct rstate {
    const phase *p;
    stats *st;
    ident pool[POOL_SIZE];
    uint32_t seq;       /* message being received */
    uint32_t off;       /* bytes of it received so far */
    sched sc;           /* schedule of seq */
    unsigned char *exp; /* its expected bytes */
    uint32_t explen;
} rstate;

/* Whether one fdsend_recv result is the end of the input: 0 bytes, no descriptors, and the
 * END_OF_STREAM bit on a stream socket (a seqpacket socket's end reads as an empty message:
 * no flags at all). */
static int end_of_stream(int type, int64_t n, int32_t nf, uint32_t rf)
{
    return n == 0 && nf == 0 &&
           rf == (type == SOCK_STREAM ? (uint32_t)FDSEND_RECV_END_OF_STREAM : 0u);
}

static void verify_fds(rstate *rs, const sched *sc, uint32_t seq, const intptr_t *fds,
                       int32_t nf, uint32_t rflags, int32_t cap)
{
    int32_t want = sc->nfds < cap ? sc->nfds : cap;
    int32_t i;
    int trunc_expected = cap < sc->nfds;
    if (nf != want)
        fail("message %u: %d descriptors received, expected %d (sent %d, capacity %d)", seq, nf,
             want, sc->nfds, cap);
    if (!!(rflags & FDSEND_RECV_FDS_TRUNCATED) != trunc_expected)
        fail("message %u: FDS_TRUNCATED is %s, sent %d fds with capacity %d", seq,
             (rflags & FDSEND_RECV_FDS_TRUNCATED) ? "set" : "clear", sc->nfds, cap);
    for (i = 0; i < nf; i++) {
        ident got;
        const ident *w = &rs->pool[sc->idx[i]];
        int fl = fcntl((int)fds[i], F_GETFD);
        if (fl < 0 || !(fl & FD_CLOEXEC))
            fail("message %u fd %d: not open or not close-on-exec", seq, i);
        identify((int)fds[i], &got);
        if (got.dev != w->dev || got.ino != w->ino || got.accmode != w->accmode)
            fail("message %u fd %d: identity %" PRIu64 ":%" PRIu64 "/%u, sent pool[%d] = %" PRIu64
                 ":%" PRIu64 "/%u (wrong descriptor)", seq, i, got.dev, got.ino, got.accmode,
                 sc->idx[i], w->dev, w->ino, w->accmode);
    }
    for (i = 0; i < nf; i++)
        close((int)fds[i]);
    rs->st->fds_recv += (uint64_t)nf;
    rs->st->fds_dropped += (uint64_t)(sc->nfds - nf);
    if (trunc_expected)
        rs->st->fd_truncations++;
}

static void load_msg(rstate *rs)
{
    make_sched(rs->p, rs->seq, &rs->sc);
    rs->explen = wire_len(rs->p, &rs->sc);
    make_bytes(rs->p, rs->seq, &rs->sc, rs->exp);
    rs->off = 0;
}

static void recv_pool(int s, rstate *rs)
{
    uint32_t len = HDR_LEN + POOL_SIZE * IDENT_LEN, off = 0;
    unsigned char *b = rs->exp;
    int i;
    if (rs->p->channel) {
        int32_t nf = 0;
        int64_t n = fdsend_msg_recv(s, b, len, NULL, 0, &nf, 0);
        if (n != (int64_t)len)
            fail("pool announcement frame: %" PRId64 " (%s)", n, n < 0 ? fdsend_strerror((int32_t)n) : "bytes");
        off = len;
    }
    while (off < len) {
        int32_t nf = 0;
        uint32_t rf = 0;
        int64_t n = fdsend_recv(s, b + off, (rs->p->type == SOCK_STREAM ? len - off : len + 8),
                                NULL, 0, &nf, &rf, 0);
        if (n <= 0)
            fail("pool announcement: fdsend_recv returned %" PRId64 " (%s)", n,
                 n < 0 ? fdsend_strerror((int32_t)n) : "end of stream");
        if (rf != 0)
            fail("pool announcement: flags %u", rf);
        off += (uint32_t)n;
        if (rs->p->type != SOCK_STREAM && off != len)
            fail("pool announcement: %u bytes", off);
    }
    if (*(uint32_t *)b != MAGIC_POOL)
        fail("pool announcement: bad magic");
    for (i = 0; i < POOL_SIZE; i++) {
        const unsigned char *r = b + HDR_LEN + i * IDENT_LEN;
        memcpy(&rs->pool[i].dev, r, 8);
        memcpy(&rs->pool[i].ino, r + 8, 8);
        memcpy(&rs->pool[i].accmode, r + 16, 4);
    }
    rs->st->bytes_recv += len;
}

static void finish_msg(rstate *rs)
{
    rs->st->msgs_recv++;
    rs->seq++;
    if (rs->seq <= rs->p->nmsgs)
        load_msg(rs);
}

/* Once the receiver has taken the phase's kill_at messages, SIGKILLs the sending process
 * (it dies, maybe inside sendmsg; counted as a fault) and from then on lets the stream end
 * early. Nothing to do when there is no process to kill. */
static void kill_sender_when_due(rstate *rs, pid_t *kill_child, int *peer_may_die)
{
    int wst;
    if (*kill_child <= 0 || (int64_t)rs->st->msgs_recv < rs->p->kill_at)
        return;
    kill(*kill_child, SIGKILL);
    waitpid(*kill_child, &wst, 0);
    rs->st->faults++;
    *peer_may_die = 1;
    *kill_child = 0;
}

/* Stream receiver: random chunk sizes, some spanning several messages. Returns at the end
 * of the stream; *complete says whether every scheduled message arrived. */
static void recv_stream(int s, rstate *rs, tu_rng *rr, int peer_may_die, pid_t kill_child)
{
    unsigned char *chunk = malloc(4 * MAX_MSG);
    intptr_t fds[RECV_FD_ROOM];
    sched fsc;
    if (chunk == NULL)
        fail("out of memory");
    for (;;) {
        uint32_t remaining = rs->explen - rs->off, t, cap, pos, fdseq = 0;
        int32_t nf = 0, fdcap = RECV_FD_ROOM, fdmsgs = 0;
        uint32_t rf = 0, start_seq;
        int64_t n;
        int len0 = 0, last_start_has_fds = 0;

        kill_sender_when_due(rs, &kill_child, &peer_may_die);
        if (rs->seq <= rs->p->nmsgs && rs->off == 0 && rs->sc.nfds > 0)
            fdcap = rs->sc.fdcap;
        t = tu_rng_below(rr, 100);
        if (rs->seq > rs->p->nmsgs)
            cap = 1 + tu_rng_below(rr, 16); /* expect the end of the stream */
        else if (rs->off == 0 && rs->sc.recv_len0)
            cap = 0, len0 = 1;
        else if (t < 50)
            cap = remaining;
        else if (t < 80)
            cap = 1 + tu_rng_below(rr, remaining);
        else {
            cap = 1 + tu_rng_below(rr, remaining + 2 * MAX_MSG);
            rs->st->greedy_reads++;
        }
        n = fdsend_recv(s, chunk, cap, fds, fdcap, &nf, &rf, 0);
        if (n < 0) {
            if (peer_may_die && n == FDSEND_ECONNRESET)
                break;
            fail("message %u: fdsend_recv: %s", rs->seq, fdsend_strerror((int32_t)n));
        }
        if (len0) {
            if (n != 0 || (rf & FDSEND_RECV_DATA_TRUNCATED))
                fail("message %u (bare): fdsend_recv(len 0) returned %" PRId64 ", flags %u", rs->seq,
                     n, rf);
            if (end_of_stream(rs->p->type, n, nf, rf)) {
                if (peer_may_die)
                    break;
                fail("message %u: end of stream (bare message lost)", rs->seq);
            }
            chunk[0] = 0;
            n = 1;
        } else if (n == 0) {
            if (!end_of_stream(rs->p->type, n, nf, rf))
                fail("message %u: 0 bytes with %d fds, flags %u", rs->seq, nf, rf);
            if (rs->seq > rs->p->nmsgs || peer_may_die)
                break;
            fail("end of stream at message %u offset %u of %u: data lost", rs->seq, rs->off,
                 rs->p->nmsgs);
        }
        if (rf & FDSEND_RECV_DATA_TRUNCATED)
            fail("message %u: DATA_TRUNCATED on a stream read of %u bytes", rs->seq, cap);
        if (rs->seq > rs->p->nmsgs)
            fail("%" PRId64 " bytes after the last message", n);
        /* Walk the chunk: compare bytes, note which message starts carry descriptors. */
        start_seq = rs->seq;
        pos = 0;
        while (pos < (uint32_t)n) {
            uint32_t take;
            if (rs->seq > rs->p->nmsgs)
                fail("%" PRId64 " bytes past the last message", (int64_t)n - pos);
            if (rs->off == 0) {
                last_start_has_fds = rs->sc.nfds > 0;
                if (rs->sc.nfds > 0) {
                    fdmsgs++;
                    fdseq = rs->seq;
                    fsc = rs->sc;
                }
            }
            take = rs->explen - rs->off;
            if (take > (uint32_t)n - pos)
                take = (uint32_t)n - pos;
            if (memcmp(chunk + pos, rs->exp + rs->off, take) != 0) {
                uint32_t j = 0;
                while (chunk[pos + j] == rs->exp[rs->off + j])
                    j++;
                fail("message %u: byte %u is %u, expected %u (chunk of %u from message %u)",
                     rs->seq, rs->off + j, chunk[pos + j], rs->exp[rs->off + j], cap, start_seq);
            }
            pos += take;
            rs->off += take;
            rs->st->bytes_recv += take;
            if (rs->off == rs->explen)
                finish_msg(rs);
        }
        if (fdmsgs > 1)
            fail("one read returned the starts of %d descriptor-carrying messages", fdmsgs);
        if (fdmsgs == 1) {
            if (!last_start_has_fds)
                fail("message %u's descriptors came with a read that went on into the next "
                     "message", fdseq);
            verify_fds(rs, &fsc, fdseq, fds, nf, rf, fdcap);
        } else if (nf != 0 || (rf & FDSEND_RECV_FDS_TRUNCATED)) {
            fail("%d descriptors (flags %u) in a read with no descriptor message start "
                 "(message %u)", nf, rf, start_seq);
        }
    }
    free(chunk);
}

/* Seqpacket receiver: one message per call, data capacity from the schedule. */
static void recv_seqpacket(int s, rstate *rs, int peer_may_die, pid_t kill_child)
{
    unsigned char *buf = malloc(MAX_MSG + 128);
    intptr_t fds[RECV_FD_ROOM];
    if (buf == NULL)
        fail("out of memory");
    for (;;) {
        int32_t nf = 0;
        uint32_t rf = 0, want, cap;
        int64_t n;
        int trunc;
        kill_sender_when_due(rs, &kill_child, &peer_may_die);
        if (rs->seq > rs->p->nmsgs) {
            n = fdsend_recv(s, buf, 16, fds, RECV_FD_ROOM, &nf, &rf, 0);
            if (!end_of_stream(rs->p->type, n, nf, rf))
                fail("after the last message: %" PRId64 " bytes, %d fds, flags %u", n, nf, rf);
            break;
        }
        cap = rs->sc.recv_len0 ? 0 : rs->sc.datacap;
        n = fdsend_recv(s, buf, cap, fds, rs->sc.fdcap, &nf, &rf, 0);
        if (n < 0) {
            if (peer_may_die && n == FDSEND_ECONNRESET)
                break;
            fail("message %u: fdsend_recv: %s", rs->seq, fdsend_strerror((int32_t)n));
        }
        if (end_of_stream(rs->p->type, n, nf, rf)) {
            if (peer_may_die)
                break;
            fail("end of stream at message %u of %u: messages lost", rs->seq, rs->p->nmsgs);
        }
        want = cap < rs->explen ? cap : rs->explen;
        trunc = cap < rs->explen;
        if ((uint32_t)n != want)
            fail("message %u: %" PRId64 " bytes, expected %u (length %u, capacity %u)", rs->seq, n,
                 want, rs->explen, cap);
        if (!!(rf & FDSEND_RECV_DATA_TRUNCATED) != trunc)
            fail("message %u: DATA_TRUNCATED is %s (length %u, capacity %u)", rs->seq,
                 trunc ? "clear" : "set", rs->explen, cap);
        if (memcmp(buf, rs->exp, want) != 0)
            fail("message %u: payload differs", rs->seq);
        rs->st->bytes_recv += want;
        rs->st->bytes_discarded += rs->explen - want;
        if (trunc)
            rs->st->data_truncations++;
        verify_fds(rs, &rs->sc, rs->seq, fds, nf, rf, rs->sc.fdcap);
        finish_msg(rs);
    }
    free(buf);
}

/* Channel receiver: one frame per call, through a channel object (which reads ahead on
 * Linux: several frames per recvmsg, descriptors assigned by the headers); a capacity below
 * the frame's payload or fd count must give EMSGSIZE / ETOOMANYFDS with the frame consumed
 * whole and the channel in sync. */
static void recv_channel(int s, rstate *rs, int peer_may_die, pid_t kill_child)
{
    unsigned char *buf = malloc(MAX_MSG + 128);
    intptr_t fds[RECV_FD_ROOM];
    fdsend_channel *ch = NULL;
    if (buf == NULL)
        fail("out of memory");
    {
        int32_t rc = fdsend_channel_open(s, 0, &ch);
        if (rc != FDSEND_OK)
            fail("fdsend_channel_open: %s", fdsend_strerror(rc));
    }
    for (;;) {
        int32_t nf = 0, fdcap;
        uint32_t cap;
        int64_t n;
        int dtrunc, ftrunc;
        kill_sender_when_due(rs, &kill_child, &peer_may_die);
        if (rs->seq > rs->p->nmsgs) {
            n = fdsend_channel_recv(ch, buf, 16, fds, RECV_FD_ROOM, &nf, 0);
            if (n != FDSEND_EOF)
                fail("after the last frame: %" PRId64 " (%s)", n, n < 0 ? fdsend_strerror((int32_t)n) : "data");
            break;
        }
        cap = rs->sc.datacap;
        fdcap = rs->sc.fdcap;
        n = fdsend_channel_recv(ch, buf, cap, fds, fdcap, &nf, 0);
        if (peer_may_die && (n == FDSEND_EOF || n == FDSEND_EPROTO || n == FDSEND_ECONNRESET))
            break; /* the killed sender's last frame may be cut short */
        dtrunc = cap < rs->explen;
        ftrunc = fdcap < rs->sc.nfds;
        if (dtrunc || ftrunc) {
            if (!((dtrunc && n == FDSEND_EMSGSIZE) || (ftrunc && n == FDSEND_ETOOMANYFDS)) || nf != 0)
                fail("frame %u (%u bytes, %d fds; capacity %u bytes, %d fds): %" PRId64 " (%s), %d fds",
                     rs->seq, rs->explen, rs->sc.nfds, cap, fdcap, n,
                     n < 0 ? fdsend_strerror((int32_t)n) : "accepted", nf);
            rs->st->bytes_discarded += rs->explen;
            rs->st->fds_dropped += (uint64_t)rs->sc.nfds;
            if (dtrunc)
                rs->st->data_truncations++;
            if (ftrunc)
                rs->st->fd_truncations++;
        } else {
            if (n != (int64_t)rs->explen)
                fail("frame %u: %" PRId64 " (%s), expected %u bytes", rs->seq, n,
                     n < 0 ? fdsend_strerror((int32_t)n) : "bytes", rs->explen);
            if (memcmp(buf, rs->exp, rs->explen) != 0)
                fail("frame %u: payload differs", rs->seq);
            rs->st->bytes_recv += rs->explen;
            verify_fds(rs, &rs->sc, rs->seq, fds, nf, 0, fdcap);
        }
        finish_msg(rs);
    }
    fdsend_channel_close(ch); /* closes any descriptors it read ahead (a killed sender) */
    free(buf);
}

static void run_receiver(int s, const phase *p, stats *st, pid_t kill_child)
{
    rstate rs;
    tu_rng rr;
    memset(&rs, 0, sizeof rs);
    rs.p = p;
    rs.st = st;
    rs.exp = malloc(MAX_MSG);
    if (rs.exp == NULL)
        fail("out of memory");
    recv_pool(s, &rs);
    rs.seq = 1;
    if (p->nmsgs > 0)
        load_msg(&rs);
    tu_rng_seed(&rr, msg_seed(p, 0, 3));
    if (p->channel)
        recv_channel(s, &rs, 0, kill_child);
    else if (p->type == SOCK_STREAM)
        recv_stream(s, &rs, &rr, 0, kill_child);
    else
        recv_seqpacket(s, &rs, 0, kill_child);
    free(rs.exp);
}

/* ---- phases ----------------------------------------------------------------------------- */

typedef struct totals {
    uint64_t phases, msgs, fds, fd_truncations, data_truncations, faults, leaks, bytes_lost;
    uint64_t bytes, bytes_discarded, eagain, partial_sends, bare, greedy, stream_phases,
        nonblocking_phases, channel_phases;
} totals;

static int check_fds(const char *who, int baseline, stats *st)
{
    int now = tu_count_fds();
    if (now != baseline) {
        tu_fd_dump(stdout, who);
        st->leaks += (uint64_t)(now > baseline ? now - baseline : baseline - now);
        return 0;
    }
    return 1;
}

/* One phase: fork, one side sends, the other receives. Returns 0 or 1 (failure). */
static int run_phase(const phase *p, int child_sends, stats *sh, totals *tot)
{
    int sv[2], wst, ok = 1;
    int base = tu_count_fds();
    stats *cs = &sh[0], *ps = &sh[1], *snd, *rcv;
    pid_t pid;
    int killing = p->kill_at >= 0, killed;

    memset(sh, 0, 2 * sizeof *sh);
    if (socketpair(AF_UNIX, p->type | SOCK_CLOEXEC, 0, sv) != 0)
        fail("socketpair: %s", strerror(errno));
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        fail("fork: %s", strerror(errno));
    if (pid == 0) {
        int cbase;
        g_me = cs;
        close(sv[0]);
        cbase = tu_count_fds();
        if (child_sends)
            run_sender(sv[1], p, cs, 0);
        else
            run_receiver(sv[1], p, cs, 0);
        close(sv[1]);
        if (!check_fds("child", cbase - 1, cs)) {
            cs->failed = 1;
            snprintf(cs->err, sizeof cs->err, "child leaked descriptors");
            _exit(1);
        }
        _exit(0);
    }
    g_me = ps;
    close(sv[1]);
    if (child_sends)
        run_receiver(sv[0], p, ps, killing ? pid : 0);
    else
        run_sender(sv[0], p, ps, killing ? pid : 0);
    close(sv[0]);
    g_me = NULL;
    killed = ps->faults > 0; /* the parent killed the child (it reaped it too) */
    if (!killed) {
        if (waitpid(pid, &wst, 0) != pid)
            fail("waitpid: %s", strerror(errno));
        if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
            printf("FAIL: child %s (status %#x): %s\n", child_sends ? "sender" : "receiver", wst,
                   cs->err[0] ? cs->err : "(no message)");
            ok = 0;
        }
    }
    if (cs->failed)
        ok = 0;
    if (!check_fds("parent", base, ps)) {
        printf("FAIL: parent: %d descriptors open after the phase, %d before\n", tu_count_fds(),
               base);
        ok = 0;
    }
    snd = child_sends ? cs : ps;
    rcv = child_sends ? ps : cs;
    /* Accounting: nothing the sender saw succeed may be missing at the receiver. */
    if (!killed) {
        uint64_t got = rcv->bytes_recv + rcv->bytes_discarded;
        if (got != snd->bytes_sent) {
            printf("FAIL: %" PRIu64 " bytes sent, %" PRIu64 " received or discarded by truncation\n",
                   snd->bytes_sent, got);
            tot->bytes_lost += snd->bytes_sent > got ? snd->bytes_sent - got : 0;
            ok = 0;
        }
        if (snd->msgs_sent != rcv->msgs_recv || snd->fds_sent != rcv->fds_recv + rcv->fds_dropped) {
            printf("FAIL: %" PRIu64 " messages / %" PRIu64 " fds sent, %" PRIu64 " / %" PRIu64
                   "+%" PRIu64 " received\n", snd->msgs_sent, snd->fds_sent, rcv->msgs_recv,
                   rcv->fds_recv, rcv->fds_dropped);
            ok = 0;
        }
    } else if (child_sends) {
        /* The sender was killed: every message it finished sending must have arrived. */
        uint64_t got = rcv->bytes_recv + rcv->bytes_discarded;
        if (rcv->msgs_recv < snd->msgs_sent || got < snd->bytes_sent) {
            printf("FAIL: killed sender had sent %" PRIu64 " messages (%" PRIu64
                   " bytes); only %" PRIu64 " (%" PRIu64 " bytes) arrived\n", snd->msgs_sent,
                   snd->bytes_sent, rcv->msgs_recv, got);
            tot->bytes_lost += snd->bytes_sent > got ? snd->bytes_sent - got : 0;
            ok = 0;
        }
    }
    tot->phases++;
    tot->msgs += rcv->msgs_recv;
    tot->fds += rcv->fds_recv;
    tot->fd_truncations += rcv->fd_truncations;
    tot->data_truncations += rcv->data_truncations;
    tot->faults += ps->faults + cs->faults;
    tot->leaks += ps->leaks + cs->leaks;
    tot->bytes += rcv->bytes_recv;
    tot->bytes_discarded += rcv->bytes_discarded;
    tot->eagain += snd->eagain;
    tot->partial_sends += snd->partial_sends;
    tot->bare += snd->bare_msgs;
    tot->greedy += rcv->greedy_reads;
    tot->stream_phases += p->type == SOCK_STREAM;
    tot->nonblocking_phases += p->nonblocking;
    tot->channel_phases += p->channel;
    if (verbose || !ok)
        printf("phase %" PRIu64 ": %s%s %s%s%s, %u msgs scheduled, %" PRIu64 " delivered, %" PRIu64
               " fds, kill %s\n", tot->phases, p->channel ? "channel " : "",
               p->type == SOCK_STREAM ? "stream" : "seqpacket",
               child_sends ? "child->parent" : "parent->child",
               p->nonblocking ? " non-blocking" : "", ok ? "" : " FAILED", p->nmsgs,
               rcv->msgs_recv, rcv->fds_recv,
               killing ? (ps->faults ? "done" : "not reached") : "no");
    return ok ? 0 : 1;
}

/* ---- --peer mode: one side of one phase over a socket path ------------------------------- */

static int run_peer(const char *role, const char *path, int type, int channel, uint64_t seed,
                    uint32_t count)
{
    phase p;
    stats st;
    int base = tu_count_fds(), s;
    memset(&p, 0, sizeof p);
    memset(&st, 0, sizeof st);
    p.seed = seed;
    p.type = type;
    p.nmsgs = count;
    p.channel = channel;
    p.kill_at = -1;
    g_me = &st;
    s = tu_connect_unix(path, type, 30.0);
    if (s < 0)
        fail("connect %s: %s", path, strerror(errno));
    if (strcmp(role, "send") == 0) {
        run_sender(s, &p, &st, 0);
    } else {
        run_receiver(s, &p, &st, 0);
        if (st.msgs_recv != count)
            fail("%" PRIu64 " of %u messages received", st.msgs_recv, count);
    }
    close(s);
    if (!check_fds("peer", base, &st))
        fail("descriptor count %d after, %d before: leak", tu_count_fds(), base);
    printf("PASS torture peer %s %s%s: messages=%" PRIu64 " fds=%" PRIu64 " dropped=%" PRIu64
           " fd-truncations=%" PRIu64 " data-truncations=%" PRIu64 " bytes=%" PRIu64 " leaks=0\n",
           role, channel ? "channel " : "", type == SOCK_STREAM ? "stream" : "seqpacket",
           strcmp(role, "send") == 0 ? st.msgs_sent : st.msgs_recv,
           strcmp(role, "send") == 0 ? st.fds_sent : st.fds_recv, st.fds_dropped,
           st.fd_truncations, st.data_truncations,
           strcmp(role, "send") == 0 ? st.bytes_sent : st.bytes_recv);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t target = 1000000, seed = (uint64_t)time(NULL);
    uint32_t phase_size = 6000, count = 1000;
    double max_seconds = 540, t0;
    const char *peer = NULL, *path = NULL;
    int type = SOCK_STREAM, channel = 0, i, failures = 0;
    stats *sh;
    totals tot;
    tu_rng master;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-v") == 0) {
            verbose = 1;
            continue;
        }
        if (strcmp(a, "--channel") == 0) {
            channel = 1;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "%s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--messages") == 0)
            target = strtoull(v, NULL, 10);
        else if (strcmp(a, "--seed") == 0)
            seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--max-seconds") == 0)
            max_seconds = atof(v);
        else if (strcmp(a, "--phase-size") == 0)
            phase_size = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--peer") == 0)
            peer = v;
        else if (strcmp(a, "--connect") == 0)
            path = v;
        else if (strcmp(a, "--count") == 0)
            count = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--type") == 0)
            type = strcmp(v, "seqpacket") == 0 ? SOCK_SEQPACKET : SOCK_STREAM;
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE from the library would end the run: it must not */
    if (peer != NULL) {
        if (path == NULL) {
            fprintf(stderr, "--peer needs --connect PATH\n");
            return 2;
        }
        return run_peer(peer, path, type, channel, seed, count);
    }

    sh = mmap(NULL, 2 * sizeof(stats), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        fail("mmap: %s", strerror(errno));
    memset(&tot, 0, sizeof tot);
    tu_rng_seed(&master, seed);
    printf("torture: seed %" PRIu64 ", target %" PRIu64 " messages, at most %.0f s\n", seed, target,
           max_seconds);
    t0 = tu_now_s();
    while (tot.msgs < target && tu_now_s() - t0 < max_seconds) {
        phase p;
        int child_sends = (int)tu_rng_below(&master, 2);
        p.seed = tu_rng_next(&master);
        p.type = tu_rng_below(&master, 2) ? SOCK_STREAM : SOCK_SEQPACKET;
        p.nmsgs = phase_size / 2 + tu_rng_below(&master, phase_size);
        if (p.nmsgs > target - tot.msgs + 1 && target - tot.msgs < phase_size)
            p.nmsgs = (uint32_t)(target - tot.msgs) + 1;
        p.nonblocking = tu_rng_below(&master, 100) < 30;
        p.channel = tu_rng_below(&master, 100) < 25;
        p.kill_at = tu_rng_below(&master, 100) < 20 ? (int64_t)tu_rng_below(&master, p.nmsgs) : -1;
        if (run_phase(&p, child_sends, sh, &tot) != 0) {
            printf("FAIL: phase %" PRIu64 " (replay with --seed %" PRIu64 ")\n", tot.phases, seed);
            failures++;
            break;
        }
    }
    printf("torture: %.1f s, %" PRIu64 " phases (%" PRIu64 " stream, %" PRIu64
           " seqpacket; %" PRIu64 " channel (fdsend_msg_send, fdsend_channel_recv); %" PRIu64 " with a non-blocking sender)\n",
           tu_now_s() - t0, tot.phases, tot.stream_phases, tot.phases - tot.stream_phases,
           tot.channel_phases, tot.nonblocking_phases);
    printf("  messages          %" PRIu64 " (bare fd messages %" PRIu64 ")\n", tot.msgs, tot.bare);
    printf("  fds passed        %" PRIu64 "\n", tot.fds);
    printf("  truncations       %" PRIu64 " (fds %" PRIu64 ", data %" PRIu64 ")\n",
           tot.fd_truncations + tot.data_truncations, tot.fd_truncations, tot.data_truncations);
    printf("  bytes             %" PRIu64 " verified, %" PRIu64 " discarded by truncation\n",
           tot.bytes, tot.bytes_discarded);
    printf("  stream reads spanning messages %" PRIu64 ", partial sends %" PRIu64 ", EAGAIN %" PRIu64 "\n",
           tot.greedy, tot.partial_sends, tot.eagain);
    printf("  faults injected   %" PRIu64 " (peers killed with SIGKILL)\n", tot.faults);
    printf("  fds leaked        %" PRIu64 "\n", tot.leaks);
    printf("  bytes lost        %" PRIu64 "\n", tot.bytes_lost);
    /* The time cap bounds the run on a slow or loaded machine; speed is the benchmarks'
     * business. Fewer messages than a tenth of the target means the run hardly progressed
     * (a stall, not a slow machine): that fails. */
    if (failures == 0 && tot.msgs < target) {
        printf("%s: %" PRIu64 " of %" PRIu64 " messages before the %.0f s limit\n",
               tot.msgs < target / 10 ? "FAIL" : "note", tot.msgs, target, max_seconds);
        if (tot.msgs < target / 10)
            failures++;
    }
    if (failures == 0 && (tot.leaks != 0 || tot.bytes_lost != 0))
        failures++;
    printf("torture: %s\n", failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
