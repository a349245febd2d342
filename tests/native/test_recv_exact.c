/* fdsend_recv_exact (a count, then batches of descriptors: HAProxy's _getsocks shape), the
 * step it loops over (fdsend_recv_exact_step), and
 * the int-descriptor wrappers fdsend_sendfds / fdsend_recvfds.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TOTAL 306
#define BATCH1 252
#define BATCH2 54

typedef struct peer {
    int sock;
    int file;
    int close_after_batch1; /* the peer dies mid-way */
    int delay_ms;
} peer;

/* Send what HAProxy's _getsocks sends: a 4-byte count, then the descriptors in batches of
 * 252 and 54, each batch on one byte. */
static void *haproxy_peer(void *p)
{
    peer *c = p;
    intptr_t fds[BATCH1];
    uint32_t count = TOTAL;
    int i;
    for (i = 0; i < BATCH1; i++)
        fds[i] = c->file;
    CHECK_RC(fdsend_send(c->sock, &count, sizeof count, NULL, 0, 0), 4);
    tu_sleep_ms(c->delay_ms);
    CHECK_RC(fdsend_send(c->sock, "a", 1, fds, BATCH1, 0), 1);
    if (c->close_after_batch1) {
        close(c->sock);
        return NULL;
    }
    tu_sleep_ms(c->delay_ms);
    CHECK_RC(fdsend_send(c->sock, "b", 1, fds, BATCH2, 0), 1);
    return NULL;
}

static void haproxy_run(int maxfds, int delay_ms)
{
    int sv[2], base, file = tu_temp_file("listener");
    static intptr_t got[400];
    unsigned char buf[6];
    int32_t n = -1, i;
    uint32_t rflags = 99, count;
    peer c;
    pthread_t t;

    tu_socketpair(SOCK_STREAM, sv);
    base = tu_count_fds();
    c.sock = sv[0];
    c.file = file;
    c.close_after_batch1 = 0;
    c.delay_ms = delay_ms;
    CHECK(pthread_create(&t, NULL, haproxy_peer, &c) == 0);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, sizeof buf, got, maxfds, &n, &rflags, 0), 6);
    CHECK(pthread_join(t, NULL) == 0);
    memcpy(&count, buf, 4);
    CHECK_EQ(count, TOTAL);
    CHECK_MEM(buf + 4, "ab", 2);
    CHECK_EQ(n, maxfds < TOTAL ? maxfds : TOTAL);
    CHECK_EQ(rflags, maxfds < TOTAL ? FDSEND_RECV_FDS_TRUNCATED : 0);
    CHECK_EQ(tu_count_fds(), base + n); /* the ones beyond maxfds were closed */
    for (i = 0; i < n; i++) {
        CHECK(tu_same_file((int)got[i], file));
        CHECK(tu_cloexec((int)got[i]));
    }
    tu_close_all(got, n);
    close(sv[0]);
    close(sv[1]);
    close(file);
}

/* 4 bytes of count, then 252 + 54 descriptors, all in one call, in order. */
TEST(haproxy_getsocks_shape)
{
    tu_watchdog(30, "fdsend_recv_exact");
    haproxy_run(400, 0);
    haproxy_run(400, 50); /* the batches come later: the call waits for them */
}

/* maxfds smaller than what arrives: the first maxfds kept, the others closed, flagged. */
TEST(maxfds_smaller_than_arrives)
{
    tu_watchdog(30, "fdsend_recv_exact");
    haproxy_run(100, 0);
    haproxy_run(0, 0);
}

/* The peer closes after the first batch: FDSEND_EPROTO, and every descriptor that had
 * arrived (252) is closed. */
TEST(peer_closes_mid_way)
{
    int sv[2], base, file = tu_temp_file("listener");
    intptr_t got[400];
    unsigned char buf[6];
    int32_t n = -1;
    uint32_t rflags = 99;
    peer c;
    pthread_t t;

    tu_watchdog(30, "fdsend_recv_exact");
    tu_socketpair(SOCK_STREAM, sv);
    base = tu_count_fds();
    c.sock = sv[0];
    c.file = file;
    c.close_after_batch1 = 1;
    c.delay_ms = 20;
    CHECK(pthread_create(&t, NULL, haproxy_peer, &c) == 0);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, sizeof buf, got, 400, &n, &rflags, 0),
             FDSEND_EPROTO);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(rflags, 0);
    CHECK_EQ(tu_count_fds(), base - 1); /* sv[0] closed by the peer; no received fd left */
    close(sv[1]);
    close(file);
}

/* Before the first byte: FDSEND_EAGAIN with FDSEND_DONTWAIT or on an O_NONBLOCK socket
 * (nothing consumed), 0 + FDSEND_RECV_END_OF_STREAM when the peer has closed. */
TEST(before_the_first_byte)
{
    int sv[2];
    intptr_t got[2];
    unsigned char buf[4];
    int32_t n = -1;
    uint32_t rflags = 99;

    tu_socketpair(SOCK_STREAM, sv);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, 4, got, 2, &n, &rflags, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    tu_set_nonblocking(sv[1], 1);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, 4, got, 2, &n, &rflags, 0), FDSEND_EAGAIN);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, 0, got, 2, &n, &rflags, 0), 0);
    /* Started on a non-blocking socket: it waits for the rest. */
    CHECK_EQ(write(sv[0], "wxyz", 4), 4);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, 4, got, 2, &n, &rflags, FDSEND_DONTWAIT), 4);
    CHECK_MEM(buf, "wxyz", 4);
    CHECK_EQ(n, 0);
    CHECK_EQ(rflags, 0);
    close(sv[0]);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, 4, got, 2, &n, &rflags, 0), 0);
    CHECK_EQ(rflags, FDSEND_RECV_END_OF_STREAM);
    close(sv[1]);
}

/* A peer that stops inside the expected bytes for SO_RCVTIMEO: FDSEND_EPROTO (errno
 * ETIMEDOUT), the descriptor that came with the first bytes closed. Blocking and
 * non-blocking sockets. */
TEST(timeout_inside_the_bytes)
{
    int nonblocking;
    tu_watchdog(30, "fdsend_recv_exact with SO_RCVTIMEO");
    for (nonblocking = 0; nonblocking <= 1; nonblocking++) {
        int sv[2], base, file = tu_temp_file("x");
        intptr_t one = file, got[2];
        unsigned char buf[6];
        int32_t n = -1;
        uint32_t rflags = 99;
        double start, took;

        tu_socketpair(SOCK_STREAM, sv);
        tu_set_nonblocking(sv[1], nonblocking);
        tu_set_timeout_ms(sv[1], SO_RCVTIMEO, 200);
        base = tu_count_fds();
        CHECK_RC(fdsend_send(sv[0], "ab", 2, &one, 1, 0), 2);
        start = tu_now_ms();
        CHECK_RC(fdsend_recv_exact(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0),
                 FDSEND_EPROTO);
        took = tu_now_ms() - start;
        CHECK_EQ(fdsend_last_os_error(), ETIMEDOUT);
        CHECK(took >= 150 && took < 3000);
        CHECK_EQ(n, 0);
        CHECK_EQ(tu_count_fds(), base);
        close(sv[0]);
        close(sv[1]);
        close(file);
    }
}

/* Bad uses: another socket type (FDSEND_ENOTSUP), not connected (FDSEND_ENOTCONN), bad
 * arguments (FDSEND_EINVAL), not a descriptor (FDSEND_EBADF), not a socket. */
TEST(exact_bad_uses)
{
    int sv[2], s, types[2] = {SOCK_SEQPACKET, SOCK_DGRAM}, i, file = tu_temp_file("x");
    intptr_t got[2];
    unsigned char buf[4];
    int32_t n = -1;
    uint32_t rflags = 99;

    for (i = 0; i < 2; i++) {
        if (!tu_try_socketpair(types[i], sv))
            continue;
        CHECK_RC(fdsend_send(sv[0], "abcd", 4, NULL, 0, 0), 4);
        CHECK_RC(fdsend_recv_exact(sv[1], buf, 4, got, 2, &n, &rflags, 0), FDSEND_ENOTSUP);
        CHECK_RC(fdsend_recv(sv[1], buf, 4, got, 2, &n, &rflags, 0), 4); /* not consumed */
        close(sv[0]);
        close(sv[1]);
    }
    s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(s);
    CHECK_RC(fdsend_recv_exact(s, buf, 4, got, 2, &n, &rflags, 0), FDSEND_ENOTCONN);
    close(s);
    tu_socketpair(SOCK_STREAM, sv);
    CHECK_RC(fdsend_recv_exact(sv[1], NULL, 4, got, 2, &n, &rflags, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, 4, NULL, 2, &n, &rflags, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, 4, got, 2, NULL, &rflags, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, 4, got, -1, &n, &rflags, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, 4, got, 2, &n, &rflags, 64), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact(-1, buf, 4, got, 2, &n, &rflags, 0), FDSEND_EBADF);
    CHECK_RC(fdsend_recv_exact(file, buf, 4, got, 2, &n, &rflags, 0), FDSEND_ENOTSOCK);
    close(sv[0]);
    close(sv[1]);
    close(file);
}

/* A peer that writes one byte at a time, every 40 ms, until the receiver goes away. */
static void *trickle_peer(void *p)
{
    int s = *(int *)p, i;
    for (i = 0; i < 1000; i++) {
        if (fdsend_send(s, "t", 1, NULL, 0, 0) != 1)
            break; /* FDSEND_EPIPE: the receiver closed */
        tu_sleep_ms(40);
    }
    return NULL;
}

/* SO_RCVTIMEO bounds the whole call, as ReceiveFdsExactly's ReceiveTimeout does: a peer
 * trickling a byte every 40 ms (each well inside a 300 ms timeout) cannot stretch the call
 * past it. With a timeout counted from the last byte, the 100 bytes would all arrive. */
TEST(timeout_bounds_the_whole_call)
{
    int sv[2];
    intptr_t got[2];
    unsigned char buf[100];
    int32_t n = -1;
    uint32_t rflags = 99;
    pthread_t t;

    tu_watchdog(30, "fdsend_recv_exact with a trickling peer");
    tu_socketpair(SOCK_STREAM, sv);
    tu_set_timeout_ms(sv[1], SO_RCVTIMEO, 300);
    CHECK(pthread_create(&t, NULL, trickle_peer, &sv[0]) == 0);
    CHECK_RC(fdsend_recv_exact(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), FDSEND_EPROTO);
    CHECK_EQ(fdsend_last_os_error(), ETIMEDOUT);
    CHECK_EQ(n, 0);
    close(sv[1]);
    CHECK(pthread_join(t, NULL) == 0);
    close(sv[0]);
}

typedef struct exact_call_args {
    int sock;
    intptr_t got[4];
    int32_t n;
    uint32_t rflags;
} exact_call_args;

static void *recv_exact_main(void *p)
{
    exact_call_args *a = p;
    (void)fdsend_recv_exact(a->sock, (unsigned char[8]){0}, 8, a->got, 4, &a->n, &a->rflags, 0);
    return NULL;
}

/* A thread cancelled while fdsend_recv_exact waits inside the bytes (poll is a cancellation
 * point): the cleanup handler closes the descriptors the call had received. */
TEST(cancelled_inside_the_bytes)
{
    int sv[2], base, file = tu_temp_file("cancel");
    intptr_t two[2] = {file, file};
    exact_call_args a;
    pthread_t t;
    void *res;

    tu_watchdog(30, "fdsend_recv_exact cancelled");
    tu_socketpair(SOCK_STREAM, sv);
    base = tu_count_fds();
    memset(&a, 0, sizeof a);
    a.sock = sv[1];
    CHECK_RC(fdsend_send(sv[0], "abc", 3, two, 2, 0), 3);
    CHECK(pthread_create(&t, NULL, recv_exact_main, &a) == 0);
    while (tu_pending(sv[1]) > 0)
        tu_sleep_ms(10);
    tu_sleep_ms(50);
    CHECK_EQ(tu_count_fds(), base + 2); /* the call holds both */
    CHECK(pthread_cancel(t) == 0);
    CHECK(pthread_join(t, &res) == 0);
    CHECK(res == PTHREAD_CANCELED);
    CHECK_EQ(tu_count_fds(), base); /* closed by the cleanup handler */
    close(sv[0]);
    close(sv[1]);
    close(file);
}

/* Step until the receive is done, waiting with fdsend_wait whenever nothing is queued. */
static int32_t step_until_done(int s, fdsend_exact_state *st, void *buf, size_t len,
                               intptr_t *fds, int32_t maxfds)
{
    for (;;) {
        int32_t rc = fdsend_recv_exact_step(s, st, buf, len, fds, maxfds, 0);
        if (rc == FDSEND_EAGAIN)
            rc = fdsend_wait(s, FDSEND_POLL_IN, 10000);
        if (rc != FDSEND_OK)
            return rc;
    }
}

/* The step: nothing queued is FDSEND_EAGAIN with the state untouched; pieces merge in order
 * (bytes at the right offset, descriptors appended up to maxfds, the rest closed and
 * flagged); maxfds may grow between steps; a finished receive stays finished. */
TEST(step_merges_pieces)
{
    int sv[2], base, i, file = tu_temp_file("step");
    intptr_t three[3] = {file, file, file}, got[8];
    unsigned char buf[6];
    uint32_t count = 5;
    fdsend_exact_state st = FDSEND_EXACT_STATE_INIT;

    tu_socketpair(SOCK_STREAM, sv);
    base = tu_count_fds();
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, buf, sizeof buf, got, 2, 0), FDSEND_EAGAIN);
    CHECK_EQ(st.received, 0);
    CHECK_EQ(st.nfds, 0);
    CHECK_EQ(st.rflags, 0);
    CHECK_RC(fdsend_send(sv[0], &count, sizeof count, NULL, 0, 0), 4);
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, buf, sizeof buf, got, 2, 0), FDSEND_OK);
    CHECK_EQ(st.received, 4);
    CHECK_EQ(st.nfds, 0);
    /* maxfds grows to 4 before the piece with 3: all 3 are kept. */
    CHECK_RC(fdsend_send(sv[0], "a", 1, three, 3, 0), 1);
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, buf, sizeof buf, got, 4, 0), FDSEND_OK);
    CHECK_EQ(st.received, 5);
    CHECK_EQ(st.nfds, 3);
    CHECK_EQ(st.rflags, 0);
    CHECK_RC(fdsend_send(sv[0], "b", 1, three, 2, 0), 1);
    CHECK_RC(step_until_done(sv[1], &st, buf, sizeof buf, got, 4), FDSEND_EXACT_DONE);
    CHECK_EQ(st.received, 6);
    CHECK_EQ(st.nfds, 4);
    CHECK_EQ(st.rflags, FDSEND_RECV_FDS_TRUNCATED);
    CHECK_MEM(buf + 4, "ab", 2);
    CHECK_EQ(tu_count_fds(), base + 4); /* the fifth was closed */
    for (i = 0; i < 4; i++) {
        CHECK(tu_same_file((int)got[i], file));
        CHECK(tu_cloexec((int)got[i]));
    }
    /* Done stays done: nothing more is read. */
    CHECK_RC(fdsend_send(sv[0], "c", 1, NULL, 0, 0), 1);
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, buf, sizeof buf, got, 4, 0), FDSEND_EXACT_DONE);
    CHECK_EQ(st.received, 6);
    tu_close_all(got, 4);
    CHECK_RC(fdsend_recv(sv[1], buf, 1, NULL, 0, NULL, NULL, 0), 1);
    CHECK_EQ(buf[0], 'c');
    CHECK_EQ(tu_count_fds(), base);
    close(sv[0]);
    close(sv[1]);
    close(file);
}

/* The end of the stream: before the first byte a finished receive with
 * FDSEND_RECV_END_OF_STREAM; after it FDSEND_EPROTO, every descriptor closed (slots -1,
 * st.nfds still says how many), and the receive is over. */
TEST(step_end_of_stream)
{
    int sv[2], base, file = tu_temp_file("eos");
    intptr_t two[2] = {file, file}, got[4];
    unsigned char buf[8];
    fdsend_exact_state st = FDSEND_EXACT_STATE_INIT;

    tu_socketpair(SOCK_STREAM, sv);
    close(sv[0]);
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, buf, sizeof buf, got, 4, 0), FDSEND_EXACT_DONE);
    CHECK_EQ(st.received, 0);
    CHECK_EQ(st.rflags, FDSEND_RECV_END_OF_STREAM);
    close(sv[1]);

    tu_socketpair(SOCK_STREAM, sv);
    base = tu_count_fds();
    memset(&st, 0, sizeof st);
    CHECK_RC(fdsend_send(sv[0], "abc", 3, two, 2, 0), 3);
    close(sv[0]);
    CHECK_RC(step_until_done(sv[1], &st, buf, sizeof buf, got, 4), FDSEND_EPROTO);
    CHECK_EQ(st.rflags, FDSEND_RECV_END_OF_STREAM);
    CHECK_EQ(st.received, 3);
    CHECK_EQ(st.nfds, 2);
    CHECK_EQ(got[0], -1);
    CHECK_EQ(got[1], -1);
    CHECK_EQ(tu_count_fds(), base - 1); /* sv[0] closed; both descriptors closed */
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, buf, sizeof buf, got, 4, 0), FDSEND_EINVAL);
    close(sv[1]);
    close(file);
}

/* Bad uses change nothing and close nothing: no state, a flag, another socket (or none) in
 * the middle of a receive, a state the library did not leave so; another socket type (FDSEND_ENOTSUP,
 * nothing consumed), not a descriptor; len 0 is done at once. */
TEST(step_bad_uses)
{
    int sv[2], other[2], base, i, file = tu_temp_file("bad"), types[2] = {SOCK_SEQPACKET, SOCK_DGRAM};
    intptr_t one = file, got[2];
    unsigned char buf[4];
    fdsend_exact_state st = FDSEND_EXACT_STATE_INIT, bad;

    tu_socketpair(SOCK_STREAM, sv);
    tu_socketpair(SOCK_STREAM, other);
    CHECK_RC(fdsend_recv_exact_step(sv[1], NULL, buf, 4, got, 2, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, buf, 4, got, 2, FDSEND_DONTWAIT), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, NULL, 4, got, 2, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, buf, 4, NULL, 2, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, buf, 4, got, -1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact_step(-1, &st, buf, 4, got, 2, 0), FDSEND_EBADF);
    CHECK_RC(fdsend_recv_exact_step(file, &st, buf, 4, got, 2, 0), FDSEND_ENOTSOCK);
    bad = st;
    bad.received = 5;
    CHECK_RC(fdsend_recv_exact_step(sv[1], &bad, buf, 4, got, 2, 0), FDSEND_EINVAL);
    bad = st;
    bad.nfds = 3;
    CHECK_RC(fdsend_recv_exact_step(sv[1], &bad, buf, 4, got, 2, 0), FDSEND_EINVAL);
    bad = st;
    bad.reserved[1] = 7;
    CHECK_RC(fdsend_recv_exact_step(sv[1], &bad, buf, 4, got, 2, 0), FDSEND_EINVAL);

    base = tu_count_fds();
    CHECK_RC(fdsend_send(sv[0], "ab", 2, &one, 1, 0), 2);
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, buf, 4, got, 2, 0), FDSEND_OK);
    CHECK_EQ(st.nfds, 1);
    /* Another socket, or a maxfds below what is held: refused, nothing closed. */
    CHECK_RC(fdsend_recv_exact_step(other[1], &st, buf, 4, got, 2, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, buf, 4, got, 0, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_exact_step(-1, &st, buf, 4, got, 2, 0), FDSEND_EBADF);
    CHECK_EQ(tu_count_fds(), base + 1);
    CHECK(tu_same_file((int)got[0], file));
    /* The receive goes on after them. */
    CHECK_RC(fdsend_send(sv[0], "cd", 2, NULL, 0, 0), 2);
    CHECK_RC(step_until_done(sv[1], &st, buf, 4, got, 2), FDSEND_EXACT_DONE);
    CHECK_MEM(buf, "abcd", 4);
    tu_close_all(got, st.nfds);
    CHECK_EQ(tu_count_fds(), base);

    memset(&st, 0, sizeof st);
    CHECK_RC(fdsend_recv_exact_step(sv[1], &st, NULL, 0, NULL, 0, 0), FDSEND_EXACT_DONE);
    CHECK_EQ(st.received, 0);
    CHECK_EQ(st.rflags, 0);
    for (i = 0; i < 2; i++) {
        int dg[2];
        if (!tu_try_socketpair(types[i], dg))
            continue;
        memset(&st, 0, sizeof st);
        CHECK_RC(fdsend_send(dg[0], "abcd", 4, NULL, 0, 0), 4);
        CHECK_RC(fdsend_recv_exact_step(dg[1], &st, buf, 4, got, 2, 0), FDSEND_ENOTSUP);
        CHECK_RC(fdsend_recv(dg[1], buf, 4, NULL, 0, NULL, NULL, 0), 4); /* not consumed */
        close(dg[0]);
        close(dg[1]);
    }
    close(sv[0]);
    close(sv[1]);
    close(other[0]);
    close(other[1]);
    close(file);
}

/* fdsend_sendfds / fdsend_recvfds: the same rules with int descriptors. */
TEST(int_descriptor_wrappers)
{
    int sv[2], base, file = tu_temp_file("ints"), fds[FDSEND_MAX_FDS + 1], got[4], i, n = -1;
    unsigned rflags = 99;
    char buf[8];

    for (i = 0; i <= FDSEND_MAX_FDS; i++)
        fds[i] = file;
    tu_socketpair(SOCK_STREAM, sv);
    base = tu_count_fds();
    CHECK_RC(fdsend_sendfds(sv[0], "ints", 4, fds, 3, 0), 4);
    CHECK_RC(fdsend_recvfds(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), 4);
    CHECK_MEM(buf, "ints", 4);
    CHECK_EQ(n, 2);
    CHECK_EQ(rflags, FDSEND_RECV_FDS_TRUNCATED);
    CHECK(tu_same_file(got[0], file) && tu_same_file(got[1], file));
    CHECK(tu_cloexec(got[0]));
    close(got[0]);
    close(got[1]);
    CHECK_EQ(tu_count_fds(), base);
    /* len 0: the carrier byte; a maxfds above FDSEND_MAX_FDS is fine. */
    CHECK_RC(fdsend_sendfds(sv[0], NULL, 0, fds, 1, 0), 0);
    {
        static int many[FDSEND_MAX_FDS + 10];
        CHECK_RC(fdsend_recvfds(sv[1], NULL, 0, many, FDSEND_MAX_FDS + 10, &n, &rflags, 0), 0);
        CHECK_EQ(n, 1);
        CHECK_EQ(rflags, 0);
        close(many[0]);
    }
    CHECK_RC(fdsend_sendfds(sv[0], "x", 1, fds, FDSEND_MAX_FDS + 1, 0), FDSEND_ETOOMANYFDS);
    CHECK_RC(fdsend_sendfds(sv[0], "x", 1, NULL, 1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_sendfds(sv[0], "x", 1, fds, -1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_sendfds(-1, "x", 1, fds, 1, 0), FDSEND_EBADF);
    fds[0] = -5;
    CHECK_RC(fdsend_sendfds(sv[0], "x", 1, fds, 1, 0), FDSEND_EBADF);
    CHECK_RC(fdsend_recvfds(sv[1], buf, sizeof buf, NULL, 1, &n, &rflags, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recvfds(sv[1], buf, sizeof buf, got, -1, &n, &rflags, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recvfds(sv[1], buf, sizeof buf, got, 2, &n, &rflags, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    close(sv[0]);
    CHECK_RC(fdsend_recvfds(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), 0);
    CHECK_EQ(rflags, FDSEND_RECV_END_OF_STREAM);
    CHECK_EQ(tu_count_fds(), base - 1);
    close(sv[1]);
    close(file);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(haproxy_getsocks_shape), CASE(maxfds_smaller_than_arrives),
        CASE(peer_closes_mid_way),    CASE(before_the_first_byte),
        CASE(timeout_inside_the_bytes), CASE(exact_bad_uses),
        CASE(int_descriptor_wrappers), CASE(timeout_bounds_the_whole_call),
        CASE(step_merges_pieces),       CASE(step_end_of_stream),
        CASE(step_bad_uses),            CASE(cancelled_inside_the_bytes),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
