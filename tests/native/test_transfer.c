/* Passing descriptors: across fork(), at the limit, truncated, with no data, mixed with
 * plain data, over each socket type.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const int socket_types[] = {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM};
static const char *const socket_type_names[] = {"stream", "seqpacket", "datagram"};

/* ---- Three descriptors across fork() -------------------------------------------- */

typedef struct fork_ctx {
    int sock;        /* the child's end */
    int files[3];    /* the parent's originals, inherited by the child for comparison */
} fork_ctx;

static void fork_child(void *arg)
{
    fork_ctx *c = arg;
    char buf[64], text[64];
    intptr_t fds[8];
    int32_t n = -1;
    uint32_t rflags = 99;
    int i, p[2], before;
    intptr_t pipe_read;

    before = tu_count_fds();
    CHECK_RC(fdsend_recv(c->sock, buf, sizeof buf, fds, 8, &n, &rflags, 0), 5);
    CHECK_MEM(buf, "three", 5);
    CHECK_EQ(n, 3);
    CHECK_EQ(rflags, 0);
    CHECK_EQ(tu_count_fds(), before + 3);
    for (i = 0; i < 3; i++) {
        char want[32];
        /* The same open files (inode), not merely equal numbers... */
        CHECK(tu_same_file((int)fds[i], c->files[i]));
        /* ...and readable here: the content the parent wrote. */
        snprintf(want, sizeof want, "content of file %d", i);
        tu_read_file((int)fds[i], text, sizeof text);
        CHECK(strcmp(text, want) == 0);
        /* Write through the received fd: the parent reads it from its own fd. */
        CHECK_EQ(pwrite((int)fds[i], "!", 1, 40), 1);
    }
    tu_close_all(fds, 3);
    CHECK_EQ(tu_count_fds(), before);

    /* The other way: a descriptor the parent never had (a new pipe). */
    CHECK_SYS(pipe(p));
    pipe_read = p[0];
    CHECK_RC(fdsend_send(c->sock, "pipe", 4, &pipe_read, 1, 0), 4);
    close(p[0]);
    CHECK_EQ(write(p[1], "through the pipe", 16), 16);
    close(p[1]);
}

/* Three files reach a fork()ed child as the same inodes with the same content, and a new
 * pipe comes back; the descriptors work in the other process. */
TEST(three_fds_across_fork)
{
    fork_ctx c;
    int sv[2], i;
    intptr_t send_fds[3], got[4];
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[64];
    pid_t pid;

    tu_socketpair(SOCK_STREAM, sv);
    for (i = 0; i < 3; i++) {
        char text[32];
        snprintf(text, sizeof text, "content of file %d", i);
        c.files[i] = tu_temp_file(text);
        send_fds[i] = c.files[i];
    }
    c.sock = sv[1];
    pid = tu_fork(fork_child, &c);
    close(sv[1]);

    CHECK_RC(fdsend_send(sv[0], "three", 5, send_fds, 3, 0), 5);
    CHECK_RC(fdsend_recv(sv[0], buf, sizeof buf, got, 4, &n, &rflags, 0), 4);
    CHECK_MEM(buf, "pipe", 4);
    CHECK_EQ(n, 1);
    CHECK_EQ(rflags, 0);
    tu_wait_ok(pid);
    CHECK_EQ(read((int)got[0], buf, sizeof buf), 16);
    CHECK_MEM(buf, "through the pipe", 16);
    close((int)got[0]);
    for (i = 0; i < 3; i++) {
        char c1;
        CHECK_EQ(pread(c.files[i], &c1, 1, 40), 1);
        CHECK_EQ(c1, '!');
        close(c.files[i]);
    }
    close(sv[0]);
}

/* ---- The limit ------------------------------------------------------------------ */

/* 253 descriptors (Linux's SCM_MAX_FD) go in one message, all arrive, in order. */
/* Fill the stack below the caller with ones, so that a send whose control buffer relies on
 * the stack being zero (padding left unwritten) fails here, not only by bad luck. */
static __attribute__((noinline)) void dirty_stack(void)
{
    volatile unsigned char junk[16384];
    size_t i;
    for (i = 0; i < sizeof junk; i++)
        junk[i] = 0xff;
}

/* Every byte of the control message the kernel reads is written by the library: musl's
 * 64-bit cmsghdr pads its 32-bit cmsg_len, and a padding byte left as stack garbage makes
 * Linux refuse the message (EINVAL). */
TEST(send_on_dirty_stack)
{
    static const int32_t counts[] = {1, 2, 3, 64, FDSEND_MAX_FDS};
    intptr_t fds[FDSEND_MAX_FDS], got[FDSEND_MAX_FDS];
    int sv[2], before;
    size_t k;
    int32_t i;

    tu_socketpair(SOCK_STREAM, sv);
    for (i = 0; i < FDSEND_MAX_FDS; i++)
        fds[i] = sv[0];
    before = tu_count_fds();
    for (k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        int32_t n = -1;
        uint32_t rflags = 99;
        char buf[4];
        dirty_stack();
        CHECK_RC(fdsend_send(sv[0], "d", 1, fds, counts[k], 0), 1);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, FDSEND_MAX_FDS, &n, &rflags, 0), 1);
        CHECK_EQ(n, counts[k]);
        CHECK_EQ(rflags, 0);
        CHECK_RC(fdsend_close_all(got, n), FDSEND_OK);
    }
    CHECK_EQ(tu_count_fds(), before);
    close(sv[0]);
    close(sv[1]);
}

TEST(max_fds_253_accepted)
{
    intptr_t fds[FDSEND_MAX_FDS], got[FDSEND_MAX_FDS + 8];
    int sv[2], i, before;
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[8];

    CHECK_EQ(FDSEND_MAX_FDS, 253);
    CHECK_EQ(fdsend_max_fds(), 253);
    tu_socketpair(SOCK_STREAM, sv);
    for (i = 0; i < FDSEND_MAX_FDS; i++) {
        char text[16];
        snprintf(text, sizeof text, "%d", i);
        fds[i] = tu_temp_file(text);
    }
    before = tu_count_fds();
    CHECK_RC(fdsend_send(sv[0], "max", 3, fds, FDSEND_MAX_FDS, 0), 3);
    /* Room for more than can come: the receiver is not what limits the count. */
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, FDSEND_MAX_FDS + 8, &n, &rflags, 0),
             3);
    CHECK_EQ(n, FDSEND_MAX_FDS);
    CHECK_EQ(rflags, 0);
    CHECK_EQ(tu_count_fds(), before + FDSEND_MAX_FDS);
    for (i = 0; i < FDSEND_MAX_FDS; i++) {
        char text[16], want[16];
        CHECK(tu_same_file((int)got[i], (int)fds[i]));
        tu_read_file((int)got[i], text, sizeof text);
        snprintf(want, sizeof want, "%d", i);
        CHECK(strcmp(text, want) == 0);
    }
    tu_close_all(got, n);
    tu_close_all(fds, FDSEND_MAX_FDS);
    close(sv[0]);
    close(sv[1]);
}

/* 254 descriptors: FDSEND_ETOOMANYFDS before anything reaches the kernel: the receiver
 * sees no data at all. A huge count never reads past the caller's array. */
TEST(too_many_fds_254_refused)
{
    intptr_t fds[FDSEND_MAX_FDS + 1];
    int sv[2], i, file, before;
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[8];

    tu_socketpair(SOCK_STREAM, sv);
    file = tu_temp_file("x");
    for (i = 0; i < FDSEND_MAX_FDS + 1; i++)
        fds[i] = file;
    before = tu_count_fds();
    CHECK_RC(fdsend_send(sv[0], "too many", 8, fds, FDSEND_MAX_FDS + 1, 0),
             FDSEND_ETOOMANYFDS);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(fdsend_last_os_error(), EINVAL);
    CHECK_RC(fdsend_send(sv[0], NULL, 0, fds, FDSEND_MAX_FDS + 1, 0), FDSEND_ETOOMANYFDS);
    CHECK_RC(fdsend_send(sv[0], "x", 1, fds, INT32_MAX, 0), FDSEND_ETOOMANYFDS);
    CHECK_EQ(tu_count_fds(), before);
    /* Nothing was sent: not the data, not a carrier byte. */
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, &n, &rflags, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    /* The same on seqpacket: not even an empty message. */
    close(sv[0]);
    close(sv[1]);
    if (tu_try_socketpair(SOCK_SEQPACKET, sv)) {
        CHECK_RC(fdsend_send(sv[0], NULL, 0, fds, FDSEND_MAX_FDS + 1, 0), FDSEND_ETOOMANYFDS);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, &n, &rflags, FDSEND_DONTWAIT),
                 FDSEND_EAGAIN);
        close(sv[0]);
        close(sv[1]);
    }
    close(file);
}

/* ---- Truncation: what the caller did not ask for is closed ------------------------ */

/* Send 5, ask for 1 (and for 0): one descriptor (the first) comes back, the flag says
 * some were dropped, and after closing it the process has exactly the fds it had. */
TEST(truncation_send5_ask1)
{
    intptr_t fds[5], got[1];
    int sv[2], i, t, before;
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[8];

    for (t = 0; t < 3; t++) {
        if (!tu_try_socketpair(socket_types[t], sv))
            continue;
        for (i = 0; i < 5; i++)
            fds[i] = tu_temp_file("five");
        before = tu_count_fds();
        CHECK_RC(fdsend_send(sv[0], "5", 1, fds, 5, 0), 1);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 1, &n, &rflags, 0), 1);
        CHECK_EQ(n, 1);
        CHECK_EQ(rflags, FDSEND_RECV_FDS_TRUNCATED);
        CHECK(tu_same_file((int)got[0], (int)fds[0]));
        CHECK(tu_cloexec((int)got[0]));
        close((int)got[0]);
        CHECK_EQ(tu_count_fds(), before);

        /* Ask for none: all five closed, still flagged, the data still delivered. */
        CHECK_RC(fdsend_send(sv[0], "6", 1, fds, 5, 0), 1);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, NULL, &rflags, 0), 1);
        CHECK_EQ(buf[0], '6');
        CHECK_EQ(rflags, FDSEND_RECV_FDS_TRUNCATED);
        CHECK_EQ(tu_count_fds(), before);
        printf("  %s ok\n", socket_type_names[t]);
        tu_close_all(fds, 5);
        close(sv[0]);
        close(sv[1]);
    }
}

/* CMSG_SPACE(sizeof(int)) has room for two ints on 64-bit systems: a receiver that
 * sizes its buffer for one can get two. Send 2, ask for 1: exactly one is handed out,
 * the other is closed, the truncation is reported. */
TEST(cmsg_space_two_for_one)
{
    intptr_t fds[2], got[2] = {-1, -1};
    int sv[2], before;
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[8];

    tu_socketpair(SOCK_STREAM, sv);
    fds[0] = tu_temp_file("first");
    fds[1] = tu_temp_file("second");
    before = tu_count_fds();
    CHECK_RC(fdsend_send(sv[0], "2", 1, fds, 2, 0), 1);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 1, &n, &rflags, 0), 1);
    CHECK_EQ(n, 1);
    CHECK_EQ(got[1], -1); /* nothing written past maxfds */
    CHECK_EQ(rflags, FDSEND_RECV_FDS_TRUNCATED);
    CHECK(tu_same_file((int)got[0], (int)fds[0]));
    close((int)got[0]);
    CHECK_EQ(tu_count_fds(), before);
    tu_close_all(fds, 2);
    close(sv[0]);
    close(sv[1]);
}

/* ---- Messages without data -------------------------------------------------------- */

/* Stream: fds with no data travel on one carrier byte; fdsend_recv with len 0 takes that
 * one byte and nothing more (the next write is intact), and reports no truncation. */
TEST(zero_data_stream)
{
    intptr_t fd, got[2];
    int sv[2], before;
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[16];

    tu_socketpair(SOCK_STREAM, sv);
    fd = tu_temp_file("zero");
    before = tu_count_fds();
    CHECK_RC(fdsend_send(sv[0], NULL, 0, &fd, 1, 0), 0);
    CHECK_EQ(write(sv[0], "next", 4), 4);
    CHECK_RC(fdsend_recv(sv[1], NULL, 0, got, 2, &n, &rflags, 0), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(rflags, 0);
    CHECK(tu_same_file((int)got[0], (int)fd));
    close((int)got[0]);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, NULL, &rflags, 0), 4);
    CHECK_MEM(buf, "next", 4);
    CHECK_EQ(rflags, 0);

    /* A receiver that passes a buffer sees the carrier as one data byte, 0x00. */
    CHECK_RC(fdsend_send(sv[0], "", 0, &fd, 1, 0), 0);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), 1);
    CHECK_EQ(buf[0], 0);
    CHECK_EQ(n, 1);
    close((int)got[0]);
    CHECK_EQ(tu_count_fds(), before);
    close((int)fd);
    close(sv[0]);
    close(sv[1]);
}

/* Stream, on the wire: exactly one 0x00 byte (what IO::FDPass and OpenSSH send and
 * expect), read here with a plain recv(); the kernel discards the fds it carried. */
TEST(zero_data_stream_wire_byte)
{
    intptr_t fd;
    int sv[2], before;
    unsigned char buf[16];

    tu_socketpair(SOCK_STREAM, sv);
    fd = tu_temp_file("wire");
    CHECK_RC(fdsend_send(sv[0], NULL, 0, &fd, 1, 0), 0);
    before = tu_count_fds();
    memset(buf, 0xee, sizeof buf);
    CHECK_EQ(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), 1);
    CHECK_EQ(buf[0], 0x00);
    CHECK_EQ(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), -1);
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    CHECK_EQ(tu_count_fds(), before);
    close((int)fd);
    close(sv[0]);
    close(sv[1]);
}

/* Seqpacket and datagram: a true zero-length message carries the fds (no carrier byte:
 * the kernel's real length, MSG_TRUNC, is 0), and nothing else is queued. */
TEST(zero_data_seqpacket_and_datagram)
{
    int t;
    for (t = 1; t < 3; t++) {
        intptr_t fd, got[2];
        int sv[2], before;
        int32_t n = -1;
        uint32_t rflags = 99;
        char buf[16];

        if (!tu_try_socketpair(socket_types[t], sv))
            continue;
        fd = tu_temp_file("zero");
        before = tu_count_fds();
        CHECK_RC(fdsend_send(sv[0], NULL, 0, &fd, 1, 0), 0);
        CHECK_EQ(recv(sv[1], buf, sizeof buf, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT), 0);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), 0);
        CHECK_EQ(n, 1);
        CHECK_EQ(rflags, 0);
        CHECK(tu_same_file((int)got[0], (int)fd));
        close((int)got[0]);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, NULL, NULL, FDSEND_DONTWAIT),
                 FDSEND_EAGAIN);

        /* len == 0 receives one whole message; data it had is reported as truncated. */
        CHECK_RC(fdsend_send(sv[0], NULL, 0, &fd, 1, 0), 0);
        CHECK_RC(fdsend_recv(sv[1], NULL, 0, got, 2, &n, &rflags, 0), 0);
        CHECK_EQ(n, 1);
        CHECK_EQ(rflags, 0);
        close((int)got[0]);
        CHECK_RC(fdsend_send(sv[0], "data", 4, &fd, 1, 0), 4);
        CHECK_RC(fdsend_recv(sv[1], NULL, 0, got, 2, &n, &rflags, 0), 0);
        CHECK_EQ(n, 1);
        CHECK_EQ(rflags, FDSEND_RECV_DATA_TRUNCATED);
        close((int)got[0]);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, NULL, NULL, FDSEND_DONTWAIT),
                 FDSEND_EAGAIN);
        CHECK_EQ(tu_count_fds(), before);
        printf("  %s ok\n", socket_type_names[t]);
        close((int)fd);
        close(sv[0]);
        close(sv[1]);
    }
}

/* Stream, len == 0 while plain data is queued: one byte is consumed, no fds, and the
 * byte is reported as data the caller did not get (FDSEND_RECV_DATA_TRUNCATED). */
TEST(zero_len_recv_on_plain_data)
{
    int sv[2];
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[8];

    tu_socketpair(SOCK_STREAM, sv);
    CHECK_EQ(write(sv[0], "abc", 3), 3);
    CHECK_RC(fdsend_recv(sv[1], NULL, 0, NULL, 0, &n, &rflags, 0), 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(rflags, FDSEND_RECV_DATA_TRUNCATED);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, NULL, &rflags, 0), 2);
    CHECK_MEM(buf, "bc", 2);
    /* End of stream: 0, no fds, FDSEND_RECV_END_OF_STREAM (with len 0 and len > 0). */
    close(sv[0]);
    CHECK_RC(fdsend_recv(sv[1], NULL, 0, NULL, 0, &n, &rflags, 0), 0);
    CHECK_EQ(rflags, FDSEND_RECV_END_OF_STREAM);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, &n, &rflags, 0), 0);
    CHECK_EQ(rflags, FDSEND_RECV_END_OF_STREAM);
    close(sv[1]);
}

/* FDSEND_RECV_END_OF_STREAM: set when a stream peer has closed (len > 0, len == 0,
 * FDSEND_DONTWAIT), never for an empty seqpacket or datagram message, nor for a seqpacket
 * socket whose peer closed (it reads like an empty message). */
TEST(end_of_stream_flag)
{
    int sv[2], types[2] = {SOCK_SEQPACKET, SOCK_DGRAM}, i;
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[8];

    tu_socketpair(SOCK_STREAM, sv);
    CHECK_RC(fdsend_send(sv[0], "x", 1, NULL, 0, 0), 1);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, &n, &rflags, 0), 1);
    CHECK_EQ(rflags, 0);
    close(sv[0]);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, &n, &rflags, 0), 0);
    CHECK_EQ(rflags, FDSEND_RECV_END_OF_STREAM);
    CHECK_RC(fdsend_recv(sv[1], NULL, 0, NULL, 0, &n, &rflags, 0), 0);
    CHECK_EQ(rflags, FDSEND_RECV_END_OF_STREAM);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, &n, &rflags, FDSEND_DONTWAIT), 0);
    CHECK_EQ(rflags, FDSEND_RECV_END_OF_STREAM);
    CHECK_EQ(n, 0);
    close(sv[1]);

    for (i = 0; i < 2; i++) {
        if (!tu_try_socketpair(types[i], sv))
            continue;
        CHECK_RC(fdsend_send(sv[0], NULL, 0, NULL, 0, 0), 0); /* an empty message */
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, &n, &rflags, 0), 0);
        CHECK_EQ(rflags, 0);
        if (types[i] == SOCK_SEQPACKET) {
            close(sv[0]);
            CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, &n, &rflags, 0), 0);
            CHECK_EQ(rflags, 0);
        } else {
            close(sv[0]);
        }
        close(sv[1]);
    }
}

/* ---- Boundaries ------------------------------------------------------------------- */

/* Stream: a plain write followed by a message with fds: one recv returns the earlier data
 * and the message's data together with its fds, and stops there; the kernel never joins
 * two fd-carrying messages. */
TEST(stream_data_then_fds)
{
    intptr_t a, b, got[4];
    int sv[2], before;
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[64];

    tu_socketpair(SOCK_STREAM, sv);
    a = tu_temp_file("a");
    b = tu_temp_file("b");
    before = tu_count_fds();
    CHECK_EQ(write(sv[0], "abc", 3), 3);
    CHECK_RC(fdsend_send(sv[0], "XY", 2, &a, 1, 0), 2);
    CHECK_EQ(write(sv[0], "def", 3), 3);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 4, &n, &rflags, 0), 5);
    CHECK_MEM(buf, "abcXY", 5);
    CHECK_EQ(n, 1);
    CHECK_EQ(rflags, 0);
    CHECK(tu_same_file((int)got[0], (int)a));
    close((int)got[0]);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 4, &n, &rflags, 0), 3);
    CHECK_MEM(buf, "def", 3);
    CHECK_EQ(n, 0);

    CHECK_RC(fdsend_send(sv[0], "1", 1, &a, 1, 0), 1);
    CHECK_RC(fdsend_send(sv[0], "2", 1, &b, 1, 0), 1);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 4, &n, &rflags, 0), 1);
    CHECK_EQ(buf[0], '1');
    CHECK_EQ(n, 1);
    CHECK(tu_same_file((int)got[0], (int)a));
    close((int)got[0]);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 4, &n, &rflags, 0), 1);
    CHECK_EQ(buf[0], '2');
    CHECK_EQ(n, 1);
    CHECK(tu_same_file((int)got[0], (int)b));
    close((int)got[0]);
    CHECK_EQ(tu_count_fds(), before);
    close((int)a);
    close((int)b);
    close(sv[0]);
    close(sv[1]);
}

/* Seqpacket and datagram keep message boundaries: two messages stay two; a buffer too
 * small for a message gets its start, the rest is discarded and reported, and the fds of
 * that message still arrive. */
TEST(message_boundaries)
{
    int t;
    for (t = 1; t < 3; t++) {
        intptr_t fd, got[2];
        int sv[2], before;
        int32_t n = -1;
        uint32_t rflags = 99;
        char buf[64];

        if (!tu_try_socketpair(socket_types[t], sv))
            continue;
        fd = tu_temp_file("b");
        before = tu_count_fds();
        CHECK_RC(fdsend_send(sv[0], "first", 5, NULL, 0, 0), 5);
        CHECK_RC(fdsend_send(sv[0], "second", 6, NULL, 0, 0), 6);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, NULL, &rflags, 0), 5);
        CHECK_MEM(buf, "first", 5);
        CHECK_EQ(rflags, 0);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, NULL, &rflags, 0), 6);
        CHECK_MEM(buf, "second", 6);

        CHECK_RC(fdsend_send(sv[0], "hello world", 11, &fd, 1, 0), 11);
        CHECK_RC(fdsend_send(sv[0], "x", 1, NULL, 0, 0), 1);
        CHECK_RC(fdsend_recv(sv[1], buf, 5, got, 2, &n, &rflags, 0), 5);
        CHECK_MEM(buf, "hello", 5);
        CHECK_EQ(rflags, FDSEND_RECV_DATA_TRUNCATED);
        CHECK_EQ(n, 1);
        CHECK(tu_same_file((int)got[0], (int)fd));
        close((int)got[0]);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), 1);
        CHECK_EQ(buf[0], 'x');
        CHECK_EQ(rflags, 0);
        CHECK_EQ(n, 0);
        CHECK_EQ(tu_count_fds(), before);
        printf("  %s ok\n", socket_type_names[t]);
        close((int)fd);
        close(sv[0]);
        close(sv[1]);
    }
}

/* A stream send larger than the socket buffer is partial on a non-blocking socket: the
 * count says how much went, the fds went with the first bytes, exactly once. */
TEST(partial_send_fds_once)
{
    enum { BIG = 1 << 20 };
    unsigned char *data = malloc(BIG), *in = malloc(BIG);
    intptr_t fd, got[4];
    int sv[2], i, before, nfds_total = 0, first_had_fd = 0, sndbuf = 65536;
    int32_t n;
    uint32_t rflags;
    int64_t sent, total = 0;

    CHECK(data != NULL && in != NULL);
    for (i = 0; i < BIG; i++)
        data[i] = (unsigned char)(i * 7);
    tu_socketpair(SOCK_STREAM, sv);
    /* A buffer far smaller than BIG, whatever the system's default. */
    CHECK_SYS(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf));
    fd = tu_temp_file("partial");
    before = tu_count_fds();
    tu_set_nonblocking(sv[0], 1);
    sent = fdsend_send(sv[0], data, BIG, &fd, 1, 0);
    CHECK(sent > 0);
    CHECK(sent < BIG);
    printf("  partial send: %lld of %d bytes\n", (long long)sent, BIG);
    for (;;) {
        int64_t r = fdsend_recv(sv[1], in + total, (size_t)(BIG - total), got, 4, &n,
                                &rflags, FDSEND_DONTWAIT);
        if (r == FDSEND_EAGAIN)
            break;
        CHECK(r > 0);
        CHECK_EQ(rflags, 0);
        if (total == 0)
            first_had_fd = n == 1;
        nfds_total += n;
        tu_close_all(got, n);
        total += r;
    }
    CHECK_EQ(total, sent);
    CHECK_MEM(in, data, (size_t)total);
    CHECK_EQ(nfds_total, 1);
    CHECK(first_had_fd);
    /* The rest goes without fds (the documented way to finish a partial send). */
    tu_set_nonblocking(sv[0], 0);
    CHECK_EQ(tu_count_fds(), before);
    close((int)fd);
    close(sv[0]);
    close(sv[1]);
    free(data);
    free(in);
}

/* The receiving end of blocking_send_sends_all, in a child: waits until the sender is
 * surely stuck on a full buffer, then reads everything, checking that the descriptor came
 * with the first bytes and only there. */
typedef struct drain_ctx {
    int sock;
    const unsigned char *want;
    size_t len;
} drain_ctx;

static void drain_child(void *arg)
{
    drain_ctx *c = arg;
    unsigned char *in = malloc(c->len);
    size_t total = 0;
    int nfds_total = 0;
    CHECK(in != NULL);
    tu_sleep_ms(200);
    while (total < c->len) {
        intptr_t got[4];
        int32_t n;
        uint32_t rflags;
        int64_t r = fdsend_recv(c->sock, in + total, c->len - total, got, 4, &n, &rflags, 0);
        CHECK(r > 0);
        CHECK_EQ(rflags, 0);
        if (n > 0) {
            CHECK_EQ(total, 0); /* with the first bytes */
            CHECK(fcntl((int)got[0], F_GETFD) >= 0);
        }
        nfds_total += n;
        tu_close_all(got, n);
        total += (size_t)r;
    }
    CHECK_MEM(in, c->want, c->len);
    CHECK_EQ(nfds_total, 1);
    free(in);
}

/* A blocking stream send larger than the socket buffer sends everything before it returns,
 * as the blocking sendmsg it is: the library's first attempt does not wait (no clock on the
 * fast path) and, finding room for only a part, sends the rest with the blocking call. The
 * descriptor goes once, with the first bytes. */
TEST(blocking_send_sends_all)
{
    enum { BIG = 1 << 20 };
    unsigned char *data = malloc(BIG);
    drain_ctx c;
    intptr_t fd;
    int sv[2], i, before, sndbuf = 65536;
    pid_t child;

    CHECK(data != NULL);
    for (i = 0; i < BIG; i++)
        data[i] = (unsigned char)(i * 13 + 1);
    tu_socketpair(SOCK_STREAM, sv);
    CHECK_SYS(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf));
    fd = tu_temp_file("all of it");
    before = tu_count_fds();
    c.sock = sv[1];
    c.want = data;
    c.len = BIG;
    child = tu_fork(drain_child, &c);
    CHECK_RC(fdsend_send(sv[0], data, BIG, &fd, 1, 0), BIG);
    tu_wait_ok(child);
    CHECK_EQ(tu_count_fds(), before);
    close((int)fd);
    close(sv[0]);
    close(sv[1]);
    free(data);
}

/* fdsend_recv_part (the cross-platform call for reading in pieces; on POSIX the kernel
 * keeps the position, so it is fdsend_recv with its state checked): a stream message read
 * in pieces, the fds with the first piece, the state left all zero; a NULL state or one
 * that is not as the library left it is FDSEND_EINVAL with nothing consumed. */
TEST(recv_part_pieces_and_state)
{
    intptr_t fd, got[2];
    int sv[2], before;
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[16];
    fdsend_recv_state st = FDSEND_RECV_STATE_INIT, bad;

    tu_socketpair(SOCK_STREAM, sv);
    fd = tu_temp_file("part");
    before = tu_count_fds();
    CHECK_RC(fdsend_send(sv[0], "0123456789", 10, &fd, 1, 0), 10);
    CHECK_RC(fdsend_recv_part(sv[1], NULL, buf, sizeof buf, got, 2, &n, &rflags, 0),
             FDSEND_EINVAL);
    CHECK_EQ(n, 0);
    CHECK_EQ(rflags, 0);
    memset(&bad, 0xff, sizeof bad);
    CHECK_RC(fdsend_recv_part(sv[1], &bad, buf, sizeof buf, got, 2, &n, &rflags, 0),
             FDSEND_EINVAL);
    CHECK_EQ(tu_pending(sv[1]), 10); /* nothing consumed */
    CHECK_RC(fdsend_recv_part(sv[1], &st, buf, 4, got, 2, &n, &rflags, 0), 4);
    CHECK_MEM(buf, "0123", 4);
    CHECK_EQ(n, 1);
    CHECK_EQ(rflags, 0);
    CHECK(tu_same_file((int)got[0], (int)fd));
    close((int)got[0]);
    CHECK_RC(fdsend_recv_part(sv[1], &st, buf, sizeof buf, got, 2, &n, &rflags, 0), 6);
    CHECK_MEM(buf, "456789", 6);
    CHECK_EQ(n, 0);
    CHECK(st.reserved[0] == 0 && st.reserved[1] == 0);
    CHECK_EQ(tu_count_fds(), before);
    close(sv[0]);
    CHECK_RC(fdsend_recv_part(sv[1], &st, buf, sizeof buf, got, 2, &n, &rflags, 0), 0);
    CHECK_EQ(rflags, FDSEND_RECV_END_OF_STREAM);
    close((int)fd);
    close(sv[1]);
}

/* fdsend_recv_refused on POSIX: the kernel refuses no message the way a Windows record is
 * refused, so no status means "cannot read past it" here (a channel's reads on a stream go
 * on as before; test_win.exe's channel_refused_record covers Windows). */
TEST(recv_refused_never_on_posix)
{
    int64_t status;
    for (status = 1; status >= FDSEND_EOTHER - 1; status--)
        CHECK_EQ(fdsend_recv_refused(status), 0);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(three_fds_across_fork),
        CASE(send_on_dirty_stack),
        CASE(max_fds_253_accepted),
        CASE(too_many_fds_254_refused),
        CASE(truncation_send5_ask1),
        CASE(cmsg_space_two_for_one),
        CASE(zero_data_stream),
        CASE(zero_data_stream_wire_byte),
        CASE(zero_data_seqpacket_and_datagram),
        CASE(zero_len_recv_on_plain_data),
        CASE(end_of_stream_flag),
        CASE(stream_data_then_fds),
        CASE(message_boundaries),
        CASE(partial_send_fds_once),
        CASE(blocking_send_sends_all),
        CASE(recv_part_pieces_and_state),
        CASE(recv_refused_never_on_posix),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
