/* Non-blocking sockets and FDSEND_DONTWAIT: FDSEND_EAGAIN with nothing sent, nothing
 * consumed, nothing lost.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { MAX_MESSAGES = 100000 };

/* Fill the socket with fd-carrying messages until FDSEND_EAGAIN; then the peer receives
 * exactly the messages that were accepted, each with its fd, and nothing else. On the
 * stream pair the socket is O_NONBLOCK; on the seqpacket pair it stays blocking and
 * FDSEND_DONTWAIT makes the one call non-blocking. */
static void fill_then_drain(int type, int use_dontwait)
{
    int sv[2], before, sndbuf = 4096;
    intptr_t files[2], got[4];
    int64_t sent = 0, r, i;
    uint32_t flags = use_dontwait ? FDSEND_DONTWAIT : 0;
    int32_t n;
    uint32_t rflags;
    char msg[16], buf[64];

    tu_socketpair(type, sv);
    CHECK_SYS(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf));
    if (!use_dontwait)
        tu_set_nonblocking(sv[0], 1);
    files[0] = tu_temp_file("even");
    files[1] = tu_temp_file("odd");
    before = tu_count_fds();
    for (;;) {
        CHECK(sent < MAX_MESSAGES);
        snprintf(msg, sizeof msg, "m%07lld", (long long)sent);
        r = fdsend_send(sv[0], msg, 8, &files[sent % 2], 1, flags);
        if (r == FDSEND_EAGAIN)
            break;
        CHECK_RC(r, 8);
        sent++;
    }
    CHECK(sent > 0);
    CHECK_EQ(errno, EAGAIN);
    /* Still full: a message without data (a carrier byte on the stream) is refused too. */
    CHECK_RC(fdsend_send(sv[0], NULL, 0, &files[0], 1, flags), FDSEND_EAGAIN);
    if (use_dontwait)
        CHECK_EQ(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0); /* the socket was not changed */
    printf("  %lld messages before FDSEND_EAGAIN\n", (long long)sent);

    for (i = 0; i < sent; i++) {
        snprintf(msg, sizeof msg, "m%07lld", (long long)i);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 4, &n, &rflags, FDSEND_DONTWAIT),
                 8);
        CHECK_MEM(buf, msg, 8);
        CHECK_EQ(n, 1);
        CHECK_EQ(rflags, 0);
        CHECK(tu_same_file((int)got[0], (int)files[i % 2]));
        close((int)got[0]);
    }
    /* Nothing more: the refused messages left no data, no carrier byte, no fds. */
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 4, &n, &rflags, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    CHECK_EQ(n, 0);
    CHECK_EQ(tu_count_fds(), before);
    tu_close_all(files, 2);
    close(sv[0]);
    close(sv[1]);
}

TEST(send_eagain_stream_nonblocking)
{
    fill_then_drain(SOCK_STREAM, 0);
}

TEST(send_eagain_seqpacket_dontwait)
{
    fill_then_drain(SOCK_SEQPACKET, 1);
}

TEST(send_eagain_stream_dontwait)
{
    fill_then_drain(SOCK_STREAM, 1);
}

/* Receiving with nothing queued: FDSEND_EAGAIN at once (O_NONBLOCK socket, or a blocking
 * one with FDSEND_DONTWAIT, which stays blocking); out-values zeroed; then the message
 * that arrives afterwards is received whole. */
TEST(recv_eagain_nothing_consumed)
{
    int t, types[3] = {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM};
    for (t = 0; t < 3; t++) {
        int sv[2], mode;
        intptr_t fd, got[2];
        int32_t n;
        uint32_t rflags;
        char buf[16];

        if (!tu_try_socketpair(types[t], sv))
            continue;
        fd = tu_temp_file("later");
        for (mode = 0; mode < 2; mode++) {
            uint32_t flags = mode == 0 ? 0 : FDSEND_DONTWAIT;
            tu_set_nonblocking(sv[1], mode == 0);
            n = 77;
            rflags = 77;
            CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, flags),
                     FDSEND_EAGAIN);
            CHECK_EQ(n, 0);
            CHECK_EQ(rflags, 0);
            CHECK_EQ(fdsend_last_os_error(), EAGAIN);
            CHECK_RC(fdsend_recv(sv[1], NULL, 0, got, 2, &n, &rflags, flags), FDSEND_EAGAIN);
            if (mode == 1)
                CHECK_EQ(fcntl(sv[1], F_GETFL) & O_NONBLOCK, 0);

            CHECK_RC(fdsend_send(sv[0], "later", 5, &fd, 1, 0), 5);
            CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, flags), 5);
            CHECK_MEM(buf, "later", 5);
            CHECK_EQ(n, 1);
            CHECK_EQ(rflags, 0);
            CHECK_EQ(fdsend_last_os_error(), 0);
            CHECK(tu_same_file((int)got[0], (int)fd));
            close((int)got[0]);
        }
        close((int)fd);
        close(sv[0]);
        close(sv[1]);
    }
}

static void set_timeout(int fd, int opt, int ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv));
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

/* A blocking socket whose SO_RCVTIMEO runs out: FDSEND_ETIMEDOUT (not FDSEND_EAGAIN,
 * which would tell the caller to wait for readiness), after about the timeout, nothing
 * consumed and out-values zeroed; the next message is received whole. Non-blocking and
 * FDSEND_DONTWAIT still give FDSEND_EAGAIN at once on the same socket. */
TEST(recv_timeout_is_etimedout)
{
    int t, types[3] = {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM};
    for (t = 0; t < 3; t++) {
        int sv[2];
        intptr_t fd, got[2];
        int32_t n = 77;
        uint32_t rflags = 77;
        char buf[16];
        double start, waited;

        if (!tu_try_socketpair(types[t], sv))
            continue;
        fd = tu_temp_file("after-timeout");
        set_timeout(sv[1], SO_RCVTIMEO, 100);
        start = now_ms();
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0),
                 FDSEND_ETIMEDOUT);
        waited = now_ms() - start;
        CHECK(waited >= 90);
        CHECK_EQ(n, 0);
        CHECK_EQ(rflags, 0);
        CHECK_EQ(fdsend_last_os_error(), EAGAIN); /* what the OS said */
        /* The carrier-byte path (len 0 on a stream) too. */
        CHECK_RC(fdsend_recv(sv[1], NULL, 0, got, 2, &n, &rflags, 0), FDSEND_ETIMEDOUT);
        /* Asked not to wait, or non-blocking: "would block", at once. */
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, FDSEND_DONTWAIT),
                 FDSEND_EAGAIN);
        tu_set_nonblocking(sv[1], 1);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), FDSEND_EAGAIN);
        tu_set_nonblocking(sv[1], 0);

        CHECK_RC(fdsend_send(sv[0], "after", 5, &fd, 1, 0), 5);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), 5);
        CHECK_MEM(buf, "after", 5);
        CHECK_EQ(n, 1);
        CHECK(tu_same_file((int)got[0], (int)fd));
        close((int)got[0]);
        close((int)fd);
        close(sv[0]);
        close(sv[1]);
    }
}

/* A blocking socket whose send buffer stays full for SO_SNDTIMEO: FDSEND_ETIMEDOUT, and
 * nothing of that message (data or descriptor) reaches the peer. */
TEST(send_timeout_is_etimedout)
{
    int t, types[2] = {SOCK_STREAM, SOCK_SEQPACKET};
    for (t = 0; t < 2; t++) {
        int sv[2], sndbuf = 4096, before;
        intptr_t fd, got[2];
        int64_t sent = 0, r, i;
        int32_t n;
        uint32_t rflags;
        char buf[64];

        if (!tu_try_socketpair(types[t], sv))
            continue;
        CHECK_SYS(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf));
        fd = tu_temp_file("full");
        before = tu_count_fds();
        /* Fill without waiting, then one blocking send that must time out. */
        while ((r = fdsend_send(sv[0], "12345678", 8, &fd, 1, FDSEND_DONTWAIT)) == 8) {
            CHECK(sent < MAX_MESSAGES);
            sent++;
        }
        CHECK_RC(r, FDSEND_EAGAIN);
        set_timeout(sv[0], SO_SNDTIMEO, 100);
        CHECK_RC(fdsend_send(sv[0], "timedout", 8, &fd, 1, 0), FDSEND_ETIMEDOUT);
        CHECK_EQ(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
        for (i = 0; i < sent; i++) {
            CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, FDSEND_DONTWAIT),
                     8);
            CHECK_MEM(buf, "12345678", 8);
            CHECK_EQ(n, 1);
            close((int)got[0]);
        }
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, FDSEND_DONTWAIT),
                 FDSEND_EAGAIN);
        CHECK_EQ(tu_count_fds(), before);
        close((int)fd);
        close(sv[0]);
        close(sv[1]);
    }
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(send_eagain_stream_nonblocking),
        CASE(send_eagain_seqpacket_dontwait),
        CASE(send_eagain_stream_dontwait),
        CASE(recv_eagain_nothing_consumed),
        CASE(recv_timeout_is_etimedout),
        CASE(send_timeout_is_etimedout),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
