/* Fault injection against libfdsend: what the kernel and the peer do to a program that
 * passes descriptors, and what the library must report (and never leak) when they do it.
 *
 *   faults [case...]      (all cases when none is named)
 *
 * Every case runs in its own process and must leave its descriptor table as it found it.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1
#include "fdsend.h"
#include "testcase.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/resource.h>

/* n temporary files and their identities. */
static void make_files(int *fds, tc_id *ids, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        fds[i] = tc_tempfile();
        ids[i] = tc_identity(fds[i]);
    }
}

static void close_all(const int *fds, int n)
{
    int i;
    for (i = 0; i < n; i++)
        close(fds[i]);
}

static void to_intptr(const int *in, intptr_t *out, int n)
{
    int i;
    for (i = 0; i < n; i++)
        out[i] = in[i];
}

/* Check received descriptors against the identities sent, then close them. */
static void check_and_close(const intptr_t *got, int n, const tc_id *want, const char *what)
{
    int i;
    for (i = 0; i < n; i++) {
        tc_id id = tc_identity((int)got[i]);
        int fl = fcntl((int)got[i], F_GETFD);
        if (fl < 0 || !(fl & FD_CLOEXEC))
            TC_FAIL("%s: descriptor %d is not open or not close-on-exec", what, i);
        if (!tc_same(id, want[i]))
            TC_FAIL("%s: descriptor %d is inode %" PRIu64 ", %" PRIu64 " was sent (wrong descriptor)",
                    what, i, id.ino, want[i].ino);
        close((int)got[i]);
    }
}

/* ---- receiver at RLIMIT_NOFILE: the kernel drops what does not fit ------------------- */

static int rlimit_nofile(void)
{
    int sv[2], files[10], base, room, nfill;
    static int filler[4096];
    tc_id ids[10];
    intptr_t send[10], got[FDSEND_MAX_FDS];
    int32_t nf = -1;
    uint32_t rf = 0;
    char buf[64];
    struct rlimit old, lim;
    int64_t n;

    TC_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    make_files(files, ids, 10);
    to_intptr(files, send, 10);
    TC_CHECK(fdsend_send(sv[0], "hello", 5, send, 10, 0) == 5);
    /* a second message, for the channel: it must stay in sync after EMFILE */
    TC_CHECK(fdsend_msg_send(sv[0], "frame", 5, send, 10, 0) == FDSEND_OK);
    TC_CHECK(fdsend_msg_send(sv[0], "after", 5, send, 2, 0) == FDSEND_OK);
    close_all(files, 10);

    /* Room for exactly three more descriptors: a soft limit a little above the number open
     * now, every free slot below it filled until EMFILE, then three fillers closed.
     * Descriptors numbered above a limit stay open (only new ones must be below it), so an
     * inherited descriptor with a high number changes nothing. */
    getrlimit(RLIMIT_NOFILE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)tu_count_fds() + 3 + 16;
    TC_CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0, "%s", strerror(errno));
    nfill = 0;
    for (;;) {
        int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (f < 0) {
            TC_CHECK(errno == EMFILE, "filling the table: %s", strerror(errno));
            break;
        }
        TC_CHECK(nfill < 4096);
        filler[nfill++] = f;
    }
    TC_CHECK(nfill >= 3, "only %d free slots below the lowered limit", nfill);
    for (room = 0; room < 3; room++)
        close(filler[--nfill]);
    base = tu_count_fds();
    n = fdsend_recv(sv[1], buf, sizeof buf, got, FDSEND_MAX_FDS, &nf, &rf, 0);
    TC_CHECK(n == 5 && memcmp(buf, "hello", 5) == 0, "recv returned %" PRId64, n);
    tc_note("10 fds sent to a receiver with room for %d: %d installed, flags %u", room, nf, rf);
    TC_CHECK(nf == room, "%d descriptors installed, room for %d", nf, room);
    TC_CHECK(rf & FDSEND_RECV_FDS_TRUNCATED, "the kernel's drop must be reported as truncation");
    check_and_close(got, nf, ids, "at the limit");

    /* The channel: a frame whose descriptors do not all fit is EMFILE, consumed whole. */
    {
        int32_t mn = -1;
        n = fdsend_msg_recv(sv[1], buf, sizeof buf, got, FDSEND_MAX_FDS, &mn, 0);
        tc_note("channel frame with 10 fds at the limit: %s", n < 0 ? fdsend_strerror((int32_t)n) : "ok");
        TC_CHECK(n == FDSEND_EMFILE && mn == 0, "fdsend_msg_recv returned %" PRId64 ", %d fds", n, mn);
        TC_CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
        TC_CHECK(tu_count_fds() == base, "descriptors leaked after EMFILE");
        n = fdsend_msg_recv(sv[1], buf, sizeof buf, got, FDSEND_MAX_FDS, &mn, 0);
        TC_CHECK(n == 5 && memcmp(buf, "after", 5) == 0 && mn == 2,
                 "the next frame: %" PRId64 ", %d fds (channel out of sync)", n, mn);
        check_and_close(got, mn, ids, "after EMFILE");
    }
    TC_CHECK(tu_count_fds() == base, "%d open, %d before", tu_count_fds(), base);
    close(sv[0]);
    close(sv[1]);
    close_all(filler, nfill);
    return 0;
}

/* ---- the peer closes: in the middle of a message, or right after sending fds ---------- */

static int peer_close_mid_message(void)
{
    int sv[2], files[3];
    tc_id ids[3];
    intptr_t send[3], got[8];
    int32_t nf = 0;
    uint32_t rf = 0;
    char buf[2000];
    pid_t pid;
    int64_t n;
    unsigned char hdr[8];
    uint32_t claimed = 1000;

    make_files(files, ids, 3);
    TC_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    pid = fork();
    if (pid == 0) {
        /* Send fds, then exit at once: they are in flight with no sender left. */
        close(sv[1]);
        to_intptr(files, send, 3);
        if (fdsend_send(sv[0], "x", 1, send, 3, 0) != 1)
            _exit(1);
        /* A channel frame announcing 1000 bytes, with fds, of which 300 are sent. */
        hdr[0] = FDSEND_MSG_VERSION;
        hdr[1] = 0;
        hdr[2] = 3;
        hdr[3] = 0;
        memcpy(hdr + 4, &claimed, 4); /* little-endian on this machine */
        memset(buf, 'z', 300);
        if (fdsend_send(sv[0], hdr, 8, send, 3, 0) != 8 || fdsend_send(sv[0], buf, 300, NULL, 0, 0) != 300)
            _exit(1);
        _exit(0);
    }
    close_all(files, 3);
    close(sv[0]);
    TC_CHECK(waitpid(pid, NULL, 0) == pid);
    n = fdsend_recv(sv[1], buf, 1, got, 8, &nf, &rf, 0);
    TC_CHECK(n == 1 && nf == 3 && rf == 0, "%" PRId64 " bytes, %d fds, flags %u", n, nf, rf);
    check_and_close(got, nf, ids, "fds of a sender that exited");
    n = fdsend_msg_recv(sv[1], buf, sizeof buf, got, 8, &nf, 0);
    tc_note("channel frame cut at 300 of 1000 bytes by the peer's exit: %s",
            n < 0 ? fdsend_strerror((int32_t)n) : "accepted?!");
    TC_CHECK(n == FDSEND_EPROTO && nf == 0, "fdsend_msg_recv returned %" PRId64, n);
    close(sv[1]);
    return 0;
}

/* ---- the sender is SIGKILLed while blocked inside a send ------------------------------- */

static int peer_sigkill_mid_send(void)
{
    int type;
    for (type = 0; type < 2; type++) {
        int sv[2], files[4];
        tc_id ids[4];
        intptr_t send[4], got[8];
        size_t big = type == 0 ? 4u << 20 : 60000, total = 0;
        unsigned char *buf = malloc(big);
        int32_t nf = 0;
        uint32_t rf = 0;
        int64_t n;
        pid_t pid;
        size_t i;
        struct pollfd pfd;
        int msgs = 0, fdsgot = 0;

        for (i = 0; i < big; i++)
            buf[i] = (unsigned char)(i * 7 + 3);
        make_files(files, ids, 4);
        TC_CHECK(socketpair(AF_UNIX, (type == 0 ? SOCK_STREAM : SOCK_SEQPACKET) | SOCK_CLOEXEC, 0,
                            sv) == 0);
        pid = fork();
        if (pid == 0) {
            close(sv[1]);
            to_intptr(files, send, 4);
            for (;;) /* blocks when the buffer is full; killed there */
                if (fdsend_send(sv[0], buf, big, send, 4, 0) < 0)
                    _exit(1);
        }
        close(sv[0]);
        pfd.fd = sv[1];
        pfd.events = POLLIN;
        TC_CHECK(poll(&pfd, 1, 5000) == 1);
        usleep(100000); /* the sender is now blocked in sendmsg */
        kill(pid, SIGKILL);
        TC_CHECK(waitpid(pid, NULL, 0) == pid);
        close_all(files, 4);
        /* Drain: every byte is the pattern, fds come only with a message start. */
        for (;;) {
            n = fdsend_recv(sv[1], buf, big, got, 8, &nf, &rf, 0);
            TC_CHECK(n >= 0, "%s", fdsend_strerror((int32_t)n));
            if (n == 0 && nf == 0)
                break;
            TC_CHECK(rf == 0, "flags %u", rf);
            if (nf > 0) {
                TC_CHECK(nf == 4 && (type == 1 || total % big == 0), "%d fds at byte %zu", nf, total);
                check_and_close(got, nf, ids, "from a killed sender");
                fdsgot += nf;
                msgs++;
            }
            for (i = 0; i < (size_t)n; i++) {
                size_t off = type == 0 ? (total + i) % big : i;
                if (buf[i] != (unsigned char)(off * 7 + 3))
                    TC_FAIL("byte %zu differs", total + i);
            }
            if (type == 1)
                TC_CHECK((size_t)n == big && nf == 4, "seqpacket message of %" PRId64 " bytes, %d fds", n, nf);
            total += (size_t)n;
        }
        tc_note("%s sender killed in sendmsg: %d messages started, %zu bytes, %d fds drained, all intact",
                type == 0 ? "stream" : "seqpacket", msgs, total, fdsgot);
        TC_CHECK(msgs >= 1);
        close(sv[1]);
        free(buf);
    }
    return 0;
}

/* ---- the peer is gone: EPIPE, never SIGPIPE (whose default action kills) ------------ */

static int peer_gone_no_sigpipe(void)
{
    int type;
    signal(SIGPIPE, SIG_DFL);
    for (type = 0; type < 2; type++) {
        int sv[2], f = tc_tempfile();
        intptr_t fd = f;
        int64_t n;
        int32_t r;
        TC_CHECK(socketpair(AF_UNIX, (type ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC, 0, sv) == 0);
        close(sv[1]);
        n = fdsend_send(sv[0], "x", 1, &fd, 1, 0);
        TC_CHECK(n == FDSEND_EPIPE, "fdsend_send to a closed peer: %" PRId64, n);
        n = fdsend_send(sv[0], NULL, 0, &fd, 1, 0);
        TC_CHECK(n == FDSEND_EPIPE, "fdsend_send(len 0) to a closed peer: %" PRId64, n);
        n = fdsend_send(sv[0], "plain", 5, NULL, 0, 0);
        TC_CHECK(n == FDSEND_EPIPE, "plain fdsend_send to a closed peer: %" PRId64, n);
        r = fdsend_msg_send(sv[0], "frame", 5, &fd, 1, 0);
        TC_CHECK(r == FDSEND_EPIPE, "fdsend_msg_send to a closed peer: %d", r);
        tc_note("%s: every send to a closed peer returned FDSEND_EPIPE; no SIGPIPE",
                type ? "seqpacket" : "stream");
        close(sv[0]);
        close(f);
    }
    return 0;
}

/* ---- ETOOMANYREFS: the per-user limit on descriptors in flight -------------------------- */

static int etoomanyrefs(void)
{
    int sv[2], xy[2], i, sent = 0, base;
    intptr_t send[8];
    int64_t n = 0;
    int queued = 0;
    struct rlimit lim = {64, 64};

    if (geteuid() == 0) {
        /* root is exempt (CAP_SYS_RESOURCE); become nobody, with a small limit. */
        TC_CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0);
        if (setgid(65534) != 0 || setuid(65534) != 0)
            TC_SKIPPED("running as root and cannot drop privileges (%s)", strerror(errno));
    } else {
        TC_CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0 || getrlimit(RLIMIT_NOFILE, &lim) == 0);
    }
    base = tu_count_fds();
    TC_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    TC_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, xy) == 0);
    for (i = 0; i < 8; i++)
        send[i] = xy[i % 2];
    for (i = 0; i < 10000; i++) {
        n = fdsend_send(sv[0], "m", 1, send, 8, FDSEND_DONTWAIT);
        if (n != 1)
            break;
        sent++;
    }
    TC_CHECK(ioctl(sv[1], FIONREAD, &queued) == 0);
    tc_note("uid %d, RLIMIT_NOFILE %d: %d messages of 8 socket fds in flight, then %s", (int)geteuid(),
            (int)lim.rlim_cur, sent, n < 0 ? fdsend_strerror((int32_t)n) : "no error");
    if (n == FDSEND_EAGAIN)
        TC_SKIPPED("the socket buffer filled before the in-flight limit (%d fds in flight)", sent * 8);
    TC_CHECK(n == FDSEND_ETOOMANYREFS, "expected FDSEND_ETOOMANYREFS, got %" PRId64, n);
    TC_CHECK(queued == sent, "%d bytes queued for %d messages: the failed send left data", queued, sent);
    /* Receiving one message (and closing its fds) frees room: sending works again. */
    {
        intptr_t got[16];
        int32_t nf = 0;
        char c;
        TC_CHECK(fdsend_recv(sv[1], &c, 1, got, 16, &nf, NULL, 0) == 1 && nf == 8);
        for (i = 0; i < nf; i++)
            close((int)got[i]);
        n = fdsend_send(sv[0], "m", 1, send, 8, FDSEND_DONTWAIT);
        TC_CHECK(n == 1, "after freeing room: %" PRId64, n);
    }
    close(sv[0]);
    close(sv[1]);
    close(xy[0]);
    close(xy[1]);
    TC_CHECK(tu_count_fds() == base);
    return 0;
}

/* ---- a full socket buffer on a non-blocking socket (and FDSEND_DONTWAIT) -------------- */

static int full_buffer_once(int type, int use_flag)
{
    int sv[2], files[2], i;
    tc_id ids[2];
    intptr_t send[2], got[8];
    size_t len = type == SOCK_STREAM ? 3000 : 20000;
    unsigned char *buf = malloc(len), *rbuf = malloc(len);
    int ok = 0, eagain = 0, partial = 0, msgs = 0, fdsgot = 0;
    int64_t n;
    uint32_t flags = use_flag ? FDSEND_DONTWAIT : 0;

    make_files(files, ids, 2);
    to_intptr(files, send, 2);
    TC_CHECK(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) == 0);
    if (!use_flag)
        TC_CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
    TC_CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
    /* Nothing to read yet: EAGAIN, nothing consumed, no fds. */
    {
        int32_t nf = 5;
        n = fdsend_recv(sv[1], rbuf, len, got, 8, &nf, NULL, 0);
        TC_CHECK(n == FDSEND_EAGAIN && nf == 0, "empty socket: %" PRId64, n);
    }
    for (i = 0; i < 100000 && eagain < 3; i++) {
        memset(buf, (unsigned char)ok, len);
        n = fdsend_send(sv[0], partial ? buf + partial : buf, len - (size_t)partial,
                        partial ? NULL : send, partial ? 0 : 2, flags);
        if (n == FDSEND_EAGAIN) {
            eagain++; /* nothing went: trying again still sends nothing */
            continue;
        }
        TC_CHECK(n > 0 && eagain == 0, "%" PRId64 " (%s) after %d EAGAIN", n,
                 n < 0 ? fdsend_strerror((int32_t)n) : "", eagain);
        if ((size_t)n + (size_t)partial < len) {
            /* partial: the fds went with these bytes; the rest must go without them */
            partial += (int)n;
            continue;
        }
        partial = 0;
        ok++;
    }
    TC_CHECK(eagain >= 1, "the buffer never filled");
    /* Drain: exactly ok messages, each with its 2 fds, none from the EAGAIN attempts. */
    for (;;) {
        size_t have = 0;
        int32_t nf = 0;
        uint32_t rf = 0;
        n = fdsend_recv(sv[1], rbuf, len, got, 8, &nf, &rf, 0);
        if (n == FDSEND_EAGAIN)
            break;
        TC_CHECK(n > 0 && rf == 0, "%" PRId64 " flags %u", n, rf);
        TC_CHECK(nf == 2, "message %d: %d fds", msgs, nf);
        check_and_close(got, nf, ids, "after EAGAIN");
        fdsgot += nf;
        have = (size_t)n;
        while (have < len) { /* stream: the rest of the message, without fds */
            n = fdsend_recv(sv[1], rbuf + have, len - have, got, 8, &nf, &rf, 0);
            if (n == FDSEND_EAGAIN && msgs == ok && partial > 0 && have == (size_t)partial)
                break; /* the message that was cut by the full buffer */
            TC_CHECK(n > 0 && nf == 0, "rest of message %d: %" PRId64 ", %d fds", msgs, n, nf);
            have += (size_t)n;
        }
        if (have < len) {
            msgs++;
            break;
        }
        for (i = 0; i < (int)len; i++)
            TC_CHECK(rbuf[i] == (unsigned char)msgs, "message %d byte %d", msgs, i);
        msgs++;
    }
    tc_note("%s%s: %d messages sent before the buffer was full, %d EAGAIN (nothing sent), "
            "%d partial; %d messages and %d fds received", type == SOCK_STREAM ? "stream" : "seqpacket",
            use_flag ? " with FDSEND_DONTWAIT" : " O_NONBLOCK", ok, eagain, partial, msgs, fdsgot);
    TC_CHECK(msgs == ok + (partial > 0) && fdsgot == 2 * msgs, "sent %d (+%d bytes of one more), "
             "received %d messages / %d fds", ok, partial, msgs, fdsgot);
    close_all(files, 2);
    close(sv[0]);
    close(sv[1]);
    free(buf);
    free(rbuf);
    return 0;
}

static int full_buffer_nonblocking(void)
{
    alarm(20); /* a DONTWAIT that blocks would hang here */
    full_buffer_once(SOCK_STREAM, 0);
    full_buffer_once(SOCK_SEQPACKET, 0);
    full_buffer_once(SOCK_STREAM, 1);
    full_buffer_once(SOCK_SEQPACKET, 1);
    /* The channel: EAGAIN on a full buffer means nothing of the frame went. */
    {
        int sv[2], f = tc_tempfile(), ok = 0, i;
        intptr_t fd = f, got[4];
        char buf[5000];
        int32_t nf;
        int32_t r = 0;
        memset(buf, 'c', sizeof buf);
        TC_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        TC_CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
        for (i = 0; i < 100000; i++) {
            r = fdsend_msg_send(sv[0], buf, sizeof buf, &fd, 1, 0);
            if (r == FDSEND_EAGAIN)
                break;
            TC_CHECK(r == FDSEND_OK, "%s", fdsend_strerror(r));
            ok++;
        }
        TC_CHECK(r == FDSEND_EAGAIN);
        TC_CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
        for (i = 0;; i++) {
            int64_t n = fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &nf, 0);
            if (n == FDSEND_EAGAIN)
                break;
            TC_CHECK(n == (int64_t)sizeof buf && nf == 1, "frame %d: %" PRId64, i, n);
            close((int)got[0]);
        }
        tc_note("channel: %d frames before EAGAIN, %d received", ok, i);
        TC_CHECK(i == ok);
        close(f);
        close(sv[0]);
        close(sv[1]);
    }
    return 0;
}

/* ---- signals during blocking calls: EINTR is retried inside the library --------------- */

static volatile sig_atomic_t signals_seen;
static void on_usr1(int sig)
{
    (void)sig;
    signals_seen++;
}

static void no_restart_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = 0; /* no SA_RESTART: blocked calls return EINTR */
    sigaction(SIGUSR1, &sa, NULL);
}

static int interrupted_calls(void)
{
    int sv[2], f = tc_tempfile(), i;
    tc_id id = tc_identity(f);
    intptr_t fd = f, got[4];
    int32_t nf = 0;
    uint32_t rf = 0;
    char buf[16];
    pid_t pid, parent = getpid();
    int64_t n;

    no_restart_handler();
    TC_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    /* 1. blocking fdsend_recv and fdsend_msg_recv, interrupted by 20 signals each */
    pid = fork();
    if (pid == 0) {
        for (i = 0; i < 20; i++) {
            usleep(5000);
            kill(parent, SIGUSR1);
        }
        usleep(20000);
        if (fdsend_send(sv[0], "sig", 3, &fd, 1, 0) != 3)
            _exit(1);
        for (i = 0; i < 20; i++) {
            usleep(5000);
            kill(parent, SIGUSR1);
        }
        usleep(20000);
        _exit(fdsend_msg_send(sv[0], "msg", 3, &fd, 1, 0) == FDSEND_OK ? 0 : 1);
    }
    n = fdsend_recv(sv[1], buf, sizeof buf, got, 4, &nf, &rf, 0);
    tc_note("fdsend_recv blocked through %d signals: returned %" PRId64, (int)signals_seen, n);
    TC_CHECK(signals_seen > 0, "no signal arrived during the call");
    TC_CHECK(n == 3 && nf == 1 && rf == 0, "%" PRId64 " (%s), %d fds", n,
             n < 0 ? fdsend_strerror((int32_t)n) : "", nf);
    check_and_close(got, 1, &id, "after EINTR");
    signals_seen = 0;
    n = fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &nf, 0);
    tc_note("fdsend_msg_recv blocked through %d signals: returned %" PRId64, (int)signals_seen, n);
    TC_CHECK(n == 3 && nf == 1, "%" PRId64 " (%s)", n, n < 0 ? fdsend_strerror((int32_t)n) : "");
    check_and_close(got, 1, &id, "channel after EINTR");
    TC_CHECK(waitpid(pid, NULL, 0) == pid);

    /* 2. blocking fdsend_send on a full buffer, interrupted; the reader drains later */
    {
        int p[2], total = 0;
        size_t big = 1 << 20;
        unsigned char *b = malloc(big);
        memset(b, 0x5a, big);
        TC_CHECK(pipe(p) == 0);
        signals_seen = 0;
        pid = fork();
        if (pid == 0) {
            /* reader: wait, signal the blocked sender, then drain and verify */
            int64_t r;
            size_t got_bytes = 0;
            int fdsn = 0;
            close(p[0]);
            for (i = 0; i < 30; i++) {
                usleep(5000);
                kill(parent, SIGUSR1);
            }
            for (;;) {
                r = fdsend_recv(sv[0], b, big, got, 4, &nf, &rf, 0);
                if (r <= 0)
                    break;
                for (i = 0; i < nf; i++) {
                    tc_id g = tc_identity((int)got[i]);
                    if (!tc_same(g, id))
                        _exit(3);
                    close((int)got[i]);
                }
                fdsn += nf;
                got_bytes += (size_t)r;
                if (got_bytes == big)
                    break;
            }
            (void)!write(p[1], &fdsn, sizeof fdsn);
            _exit(got_bytes == big ? 0 : 2);
        }
        close(p[1]);
        /* sv[1] -> sv[0]: the child reads from sv[0] */
        n = 0;
        while ((size_t)total < big) {
            n = fdsend_send(sv[1], b + total, big - (size_t)total, total == 0 ? &fd : NULL,
                            total == 0 ? 1 : 0, 0);
            if (n < 0)
                break;
            total += (int)n;
        }
        tc_note("fdsend_send of 1 MiB blocked through %d signals: %s", (int)signals_seen,
                n < 0 ? fdsend_strerror((int32_t)n) : "completed");
        TC_CHECK(n >= 0, "%s", fdsend_strerror((int32_t)n));
        TC_CHECK(signals_seen > 0);
        {
            int st, fdsn = -1;
            TC_CHECK(read(p[0], &fdsn, sizeof fdsn) == (ssize_t)sizeof fdsn);
            TC_CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                     "reader status %#x", st);
            TC_CHECK(fdsn == 1, "the reader got %d fds", fdsn);
        }
        close(p[0]);
        free(b);
    }
    close(f);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

/* ---- a descriptor closed by another thread while it is being sent ---------------------- */

typedef struct race {
    int x, master, stop;
    int sock;
    long sent, ebadf;
} race;

static void *closer(void *arg)
{
    race *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        close(r->x);
        dup2(r->master, r->x);
        sched_yield();
    }
    return NULL;
}

static void *sender(void *arg)
{
    race *r = arg;
    long i;
    for (i = 0; i < 20000; i++) {
        intptr_t fd = r->x;
        int64_t n = fdsend_send(r->sock, &i, sizeof i, &fd, 1, 0);
        if (n == FDSEND_EBADF)
            r->ebadf++;
        else if (n == (int64_t)sizeof i)
            r->sent++;
        else {
            printf("    send: %" PRId64 " (%s)\n", n, n < 0 ? fdsend_strerror((int32_t)n) : "");
            _exit(1);
        }
    }
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
    shutdown(r->sock, SHUT_WR);
    return NULL;
}

static int fd_closed_during_send(void)
{
    int sv[2], f = tc_tempfile();
    tc_id id = tc_identity(f);
    pthread_t t1, t2;
    race r;
    long received = 0, withfd = 0;
    memset(&r, 0, sizeof r);
    r.master = f;
    /* A high number that nothing else in this process takes while it is closed (new
     * descriptors, the received ones included, take the lowest free number). */
    r.x = dup2(f, 900);
    TC_CHECK(r.x == 900);
    TC_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    r.sock = sv[0];
    TC_CHECK(pthread_create(&t1, NULL, sender, &r) == 0);
    TC_CHECK(pthread_create(&t2, NULL, closer, &r) == 0);
    for (;;) {
        long seq;
        intptr_t got[4];
        int32_t nf = 0;
        uint32_t rf = 0;
        int64_t n = fdsend_recv(sv[1], &seq, sizeof seq, got, 4, &nf, &rf, 0);
        if (n == 0 && nf == 0)
            break;
        TC_CHECK(n == (int64_t)sizeof seq && rf == 0, "%" PRId64 " flags %u", n, rf);
        TC_CHECK(nf == 1, "message %ld with %d fds", seq, nf);
        if (!tc_same(tc_identity((int)got[0]), id))
            TC_FAIL("message %ld: a descriptor that was never sent arrived (fd %d: %s)", seq,
                    (int)got[0], fcntl((int)got[0], F_GETFD) < 0 ? "not open" : "another file");
        close((int)got[0]);
        received++;
        withfd++;
    }
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    tc_note("20000 sends racing close(): %ld delivered the right file, %ld EBADF, 0 wrong", r.sent,
            r.ebadf);
    TC_CHECK(received == r.sent && r.sent + r.ebadf == 20000);
    close(r.x);
    close(f);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

int main(int argc, char **argv)
{
    static const tc_case cases[] = {
        {"rlimit_nofile", rlimit_nofile},
        {"peer_close_mid_message", peer_close_mid_message},
        {"peer_sigkill_mid_send", peer_sigkill_mid_send},
        {"peer_gone_no_sigpipe", peer_gone_no_sigpipe},
        {"etoomanyrefs", etoomanyrefs},
        {"full_buffer_nonblocking", full_buffer_nonblocking},
        {"interrupted_calls", interrupted_calls},
        {"fd_closed_during_send", fd_closed_during_send},
    };
    signal(SIGPIPE, SIG_DFL); /* the library must never raise it */
    return tc_main("faults", cases, (int)(sizeof cases / sizeof cases[0]), argc, argv);
}
