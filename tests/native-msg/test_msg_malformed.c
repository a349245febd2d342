/* Tests of the message channel (fdsend_msg_send / fdsend_msg_recv), part of
 * tests/native-msg (see msg_test.h). Malformed frames from a raw peer: bad headers, lying lengths and fd counts, cut frames,
 * descriptors that come late (stream), the same per datagram (seqpacket, datagram), and a
 * receiver at RLIMIT_NOFILE (MSG_CTRUNC).
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

#include "fdsend.h"

/* ---- malformed frames on a stream socket --------------------------------------------- */

/* Run one bad-peer scenario on a fresh stream pair: write() sends what the peer sends
 * (it may close its end), then the receiver must get `expect`, every descriptor the peer
 * sent closed. If `then_ok`, a good frame follows and must arrive intact (in sync). */
typedef void (*bad_writer)(int sock, const int *fds);

static void stream_bad(const char *what, bad_writer write_fn, int64_t expect, int then_ok,
                       size_t cap, int32_t maxfds)
{
    int sv[2], files[4];
    tu_socketpair(SOCK_STREAM, sv);
    make_fds(files, 4);
    int base = tu_count_fds();
    write_fn(sv[0], files);
    if (then_ok)
        CHECK_EQ(fdsend_msg_send(sv[0], "ok", 2, NULL, 0, 0), FDSEND_OK);
    close_all(files, 4); /* only in-flight copies remain: the receiver must close them */
    base -= 4;
    unsigned char *buf = malloc(cap + 1);
    CHECK(buf != NULL);
    intptr_t got[8];
    int32_t n = 77;
    int64_t r = fdsend_msg_recv(sv[1], buf, cap, got, maxfds, &n, 0);
    if (r != expect) {
        fprintf(stderr, "case %s\n", what);
        CHECK_EQ(r, expect);
    }
    CHECK_EQ(n, 0);
    CHECK_EQ(tu_count_fds(), base);
    if (then_ok) {
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, cap, got, maxfds, &n, 0), 2);
        CHECK(memcmp(buf, "ok", 2) == 0);
        CHECK_EQ(n, 0);
    }
    free(buf);
    close(sv[0]);
    close(sv[1]);
    CHECK_EQ(tu_count_fds(), base - 2);
}

static void w_bad_version(int s, const int *fds)
{
    unsigned char h[12];
    tu_frame_header(h, 2, 0, 2, 4);
    memcpy(h + 8, "abcd", 4);
    raw_send_all(s, h, 12, fds, 2);
}

static void w_fdpass_byte(int s, const int *fds)
{
    /* what IO::FDPass / plain fdsend_send put on the wire: one zero byte with the fd */
    unsigned char z = 0;
    raw_send_all(s, &z, 1, fds, 1);
    shutdown(s, SHUT_WR);
}

static void w_fdpass_byte_open(int s, const int *fds)
{
    /* the same byte, and the peer stays connected: the receiver must not wait for the 7
     * header bytes that will never come (judge the version byte at once) */
    unsigned char z = 0;
    raw_send_all(s, &z, 1, fds, 1);
}

static void w_bad_flags(int s, const int *fds)
{
    unsigned char h[8];
    tu_frame_header(h, 1, 0x80, 1, 0);
    raw_send_all(s, h, 8, fds, 1);
}

static void w_more_fds_than_header(int s, const int *fds)
{
    unsigned char h[9];
    tu_frame_header(h, 1, 0, 2, 1);
    h[8] = 'x';
    raw_send_all(s, h, 9, fds, 3);
}

static void w_fewer_fds_than_header(int s, const int *fds)
{
    unsigned char h[9];
    tu_frame_header(h, 1, 0, 2, 1);
    h[8] = 'x';
    raw_send_all(s, h, 9, fds, 1);
}

static void w_fds_but_header_says_none(int s, const int *fds)
{
    unsigned char h[9];
    tu_frame_header(h, 1, 0, 0, 1);
    h[8] = 'x';
    raw_send_all(s, h, 9, fds, 1);
}

static void w_count_over_max(int s, const int *fds)
{
    unsigned char h[8];
    (void)fds;
    tu_frame_header(h, 1, 0, FDSEND_MAX_FDS + 1, 0);
    raw_send_all(s, h, 8, NULL, 0);
}

static void w_fds_on_payload_byte(int s, const int *fds)
{
    unsigned char h[8];
    tu_frame_header(h, 1, 0, 0, 4);
    raw_send_all(s, h, 8, NULL, 0);
    raw_send_all(s, "ab", 2, NULL, 0);
    raw_send_all(s, "cd", 2, fds, 2); /* the fds ride on payload byte 2 */
}

static void w_over_cap(int s, const int *fds)
{
    static unsigned char payload[100000];
    intptr_t f[3];
    to_intptr(fds, f, 3);
    fill_pattern(payload, sizeof payload, 5);
    /* larger than the socket buffer: sent from a child while the receiver discards it */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int rc = fdsend_msg_send(s, payload, sizeof payload, f, 3, 0);
        rc = rc == FDSEND_OK ? fdsend_msg_send(s, "next", 4, NULL, 0, 0) : rc;
        _exit(rc == FDSEND_OK ? 0 : 1);
    }
    /* the parent's stream_bad sends "next" too: make the child's the only one */
}

static void w_too_many_fds(int s, const int *fds)
{
    intptr_t f[4];
    to_intptr(fds, f, 4);
    CHECK_EQ(fdsend_msg_send(s, "four", 4, f, 4, 0), FDSEND_OK);
}

static void w_eof_in_header(int s, const int *fds)
{
    unsigned char h[8];
    tu_frame_header(h, 1, 0, 1, 10);
    raw_send_all(s, h, 5, fds, 1);
    shutdown(s, SHUT_WR);
}

static void w_eof_before_payload(int s, const int *fds)
{
    unsigned char h[8];
    tu_frame_header(h, 1, 0, 2, 10);
    raw_send_all(s, h, 8, fds, 2);
    shutdown(s, SHUT_WR);
}

static void w_eof_in_payload(int s, const int *fds)
{
    unsigned char h[12];
    tu_frame_header(h, 1, 0, 2, 10);
    memcpy(h + 8, "abcd", 4);
    raw_send_all(s, h, 12, fds, 2);
    shutdown(s, SHUT_WR);
}

static void w_eof_at_boundary(int s, const int *fds)
{
    (void)fds;
    shutdown(s, SHUT_WR);
}

TEST(malformed_stream)
{
    stream_bad("bad version", w_bad_version, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("IO::FDPass byte", w_fdpass_byte, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("IO::FDPass byte, peer still connected", w_fdpass_byte_open, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("bad flags", w_bad_flags, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("more fds than header", w_more_fds_than_header, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("fewer fds than header", w_fewer_fds_than_header, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("fds, header says 0", w_fds_but_header_says_none, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("fd count > 253", w_count_over_max, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("fds on a payload byte", w_fds_on_payload_byte, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("too many fds for maxfds", w_too_many_fds, FDSEND_ETOOMANYFDS, 1, 64, 3);
    stream_bad("too many fds, maxfds 0", w_too_many_fds, FDSEND_ETOOMANYFDS, 1, 64, 0);
    stream_bad("over cap (small cap)", w_too_many_fds, FDSEND_EMSGSIZE, 1, 3, 8);
    stream_bad("EOF inside the header", w_eof_in_header, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("EOF before the payload", w_eof_before_payload, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("EOF inside the payload", w_eof_in_payload, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("EOF at a boundary", w_eof_at_boundary, FDSEND_EOF, 0, 64, 8);

    /* A payload larger than cap and than the socket buffer: discarded as it arrives, its
     * fds closed, and the next frame is intact. */
    {
        int sv[2], files[3];
        tu_socketpair(SOCK_STREAM, sv);
        make_fds(files, 3);
        int base = tu_count_fds();
        w_over_cap(sv[0], files);
        for (int cap = 0; cap <= 1; cap++) {
            /* cap 16 discards through a small buffer; the second round checks "next" */
            unsigned char buf[16];
            intptr_t got[4];
            int32_t n = 5;
            if (cap == 0) {
                CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0),
                         FDSEND_EMSGSIZE);
            } else {
                CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 4);
                CHECK(memcmp(buf, "next", 4) == 0);
            }
            CHECK_EQ(n, 0);
        }
        int status = -1;
        CHECK(wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK_EQ(tu_count_fds(), base);
        close_all(files, 3);
        close(sv[0]);
        close(sv[1]);
    }
    /* The same with a large cap too small for the payload (discarding through buf). */
    {
        int sv[2], files[3];
        tu_socketpair(SOCK_STREAM, sv);
        make_fds(files, 3);
        int base = tu_count_fds();
        w_over_cap(sv[0], files);
        unsigned char *buf = malloc(65536);
        intptr_t got[4];
        int32_t n = 5;
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, 65536, got, 4, &n, 0), FDSEND_EMSGSIZE);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, 65536, got, 4, &n, 0), 4);
        CHECK(memcmp(buf, "next", 4) == 0);
        free(buf);
        int status = -1;
        CHECK(wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK_EQ(tu_count_fds(), base);
        close_all(files, 3);
        close(sv[0]);
        close(sv[1]);
    }
    /* EOF at a boundary after good frames, reported again on every later call. */
    {
        int sv[2];
        char buf[8];
        int32_t n;
        tu_socketpair(SOCK_STREAM, sv);
        CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, NULL, 0, 0), FDSEND_OK);
        close(sv[0]);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 0, &n, 0), 1);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 0, &n, 0), FDSEND_EOF);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 0, &n, 0), FDSEND_EOF);
        close(sv[1]);
    }
}

/* Descriptors that arrive with a later header byte than the first: the receiver has read
 * header bytes 0-2 and is waiting for the rest when bytes 3-7 come with descriptors.
 * Whether the header counts them (1) or not (0), they break the format. */
typedef struct late_fds {
    int sock, peer;
    const int *fds;
    unsigned declared;
} late_fds;

static void *late_fds_writer(void *arg)
{
    const late_fds *l = arg;
    unsigned char h[8];
    tu_frame_header(h, 1, 0, l->declared, 0);
    raw_send_all(l->sock, h, 3, NULL, 0);
    while (tu_pending(l->peer) > 0) /* wait until the receiver has consumed them */
        tu_sleep_ms(1);
    tu_sleep_ms(5); /* and is back in recvmsg for the rest */
    raw_send_all(l->sock, h + 3, 5, l->fds, 1);
    return NULL;
}

static void late_fds_run(unsigned declared)
{
    int sv[2], files[1];
    tu_socketpair(SOCK_STREAM, sv);
    make_fds(files, 1);
    int base = tu_count_fds();
    late_fds l = {sv[0], sv[1], files, declared};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, late_fds_writer, &l) == 0);
    char buf[8];
    intptr_t got[2];
    int32_t n = 3;
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 2, &n, 0), FDSEND_EPROTO);
    CHECK_EQ(n, 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(tu_count_fds(), base);
    close_all(files, 1);
    close(sv[0]);
    close(sv[1]);
}

TEST(late_fds)
{
    late_fds_run(0);
    late_fds_run(1);
}


/* ---- malformed frames on seqpacket and datagram sockets (each datagram stands alone) -- */

static void datagram_bad(int type, const char *what, const void *data, size_t len,
                         int nfds, int64_t expect, size_t cap, int32_t maxfds)
{
    int sv[2], files[4];
    tu_socketpair(type, sv);
    make_fds(files, 4);
    ssize_t sent = raw_send(sv[0], data, len, files, nfds);
    CHECK_EQ(sent, (ssize_t)len);
    CHECK_EQ(fdsend_msg_send(sv[0], "next", 4, NULL, 0, 0), FDSEND_OK);
    close_all(files, 4);
    int base = tu_count_fds();
    unsigned char buf[256];
    intptr_t got[8];
    int32_t n = 9;
    int64_t r = fdsend_msg_recv(sv[1], buf, cap, got, maxfds, &n, 0);
    if (r != expect) {
        fprintf(stderr, "case %s (%s)\n", what, type == SOCK_DGRAM ? "dgram" : "seqpacket");
        CHECK_EQ(r, expect);
    }
    CHECK_EQ(n, 0);
    CHECK_EQ(tu_count_fds(), base);
    /* the next datagram is a good frame, unaffected */
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 8, &n, 0), 4);
    CHECK(memcmp(buf, "next", 4) == 0);
    close(sv[0]);
    close(sv[1]);
}

static void malformed_datagram(int type)
{
    unsigned char f[32];
    memset(f, 'z', sizeof f);
    datagram_bad(type, "5-byte datagram", "\x01\x00\x00\x00\x00", 5, 1, FDSEND_EPROTO, 64, 8);
    tu_frame_header(f, 2, 0, 1, 2);
    memcpy(f + 8, "ab", 2);
    datagram_bad(type, "bad version", f, 10, 1, FDSEND_EPROTO, 64, 8);
    tu_frame_header(f, 1, 1, 1, 2);
    datagram_bad(type, "bad flags", f, 10, 1, FDSEND_EPROTO, 64, 8);
    tu_frame_header(f, 1, 0, 1, 5);
    datagram_bad(type, "shorter than its header says", f, 10, 1, FDSEND_EPROTO, 64, 8);
    tu_frame_header(f, 1, 0, 1, 1);
    datagram_bad(type, "longer than its header says", f, 10, 1, FDSEND_EPROTO, 64, 8);
    tu_frame_header(f, 1, 0, 1, 1);
    datagram_bad(type, "longer than header and cap", f, 12, 1, FDSEND_EPROTO, 1, 8);
    tu_frame_header(f, 1, 0, 3, 2);
    datagram_bad(type, "fd count mismatch", f, 10, 2, FDSEND_EPROTO, 64, 8);
    tu_frame_header(f, 1, 0, 0, 2);
    datagram_bad(type, "fds, header says 0", f, 10, 2, FDSEND_EPROTO, 64, 8);
    tu_frame_header(f, 1, 0, 2, 10);
    datagram_bad(type, "over cap", f, 18, 2, FDSEND_EMSGSIZE, 4, 8);
    tu_frame_header(f, 1, 0, 2, 10);
    datagram_bad(type, "over cap 0", f, 18, 2, FDSEND_EMSGSIZE, 0, 8);
    tu_frame_header(f, 1, 0, 3, 2);
    datagram_bad(type, "too many fds", f, 10, 3, FDSEND_ETOOMANYFDS, 64, 2);
    if (type == SOCK_DGRAM)
        datagram_bad(type, "empty datagram", "", 0, 0, FDSEND_EPROTO, 64, 8);
    else
        datagram_bad(type, "empty message with fds", "", 0, 2, FDSEND_EPROTO, 64, 8);
}

TEST(malformed_seqpacket)
{
    malformed_datagram(SOCK_SEQPACKET);
    /* end of connection */
    int sv[2];
    char buf[8];
    int32_t n;
    tu_socketpair(SOCK_SEQPACKET, sv);
    close(sv[0]);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 0, &n, 0), FDSEND_EOF);
    close(sv[1]);
}

TEST(malformed_dgram)
{
    malformed_datagram(SOCK_DGRAM);
}


/* ---- ctrunc: the receiver is at RLIMIT_NOFILE, the kernel drops descriptors ---------- */

static void ctrunc_run(int type)
{
    int sv[2], files[10];
    intptr_t fds[10];
    if (!tu_try_socketpair(type, sv))
        return;
    make_fds(files, 10);
    to_intptr(files, fds, 10);
    CHECK_EQ(fdsend_msg_send(sv[0], "ten", 3, fds, 10, 0), FDSEND_OK);
    CHECK_EQ(fdsend_msg_send(sv[0], "after", 5, fds, 1, 0), FDSEND_OK);
    close_all(files, 10);
    /* Leave room for 3 new descriptors only: fill every free slot below the highest open
     * descriptor, then set the limit 3 above it. */
    int highest = 0, fillers[1024], nfill = 0;
    for (int fd = 0; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) != -1)
            highest = fd;
    }
    for (int fd = 0; fd < highest; fd++) {
        if (fcntl(fd, F_GETFD) == -1) {
            CHECK(dup2(sv[0], fd) == fd);
            fillers[nfill++] = fd;
        }
    }
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    lim = old;
    lim.rlim_cur = (rlim_t)highest + 4;
    CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0);
    int base = tu_count_fds();
    char buf[16];
    intptr_t got[16];
    int32_t n = 4;
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 16, &n, 0), FDSEND_EMFILE);
    CHECK_EQ(n, 0);
    CHECK_EQ(tu_count_fds(), base);
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    /* the channel is still in sync */
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 16, &n, 0), 5);
    CHECK(memcmp(buf, "after", 5) == 0);
    CHECK_EQ(n, 1);
    close((int)got[0]);
    CHECK_EQ(tu_count_fds(), base);
    close_all(fillers, nfill);
    close(sv[0]);
    close(sv[1]);
}

TEST(ctrunc)
{
    ctrunc_run(SOCK_STREAM);
    ctrunc_run(SOCK_SEQPACKET);
    ctrunc_run(SOCK_DGRAM);
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
    CASE(malformed_stream),
    CASE(late_fds),
    CASE(malformed_seqpacket),
    CASE(malformed_dgram),
    CASE(ctrunc),
    };
    return msg_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
