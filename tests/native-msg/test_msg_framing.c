/* Tests of the message channel (fdsend_msg_send / fdsend_msg_recv), part of
 * tests/native-msg (see msg_test.h). The channel's framing on a stream socket: the exact bytes on the wire (pins
 * docs/wire-format.md), a peer that writes every frame one byte at a time, several frames
 * in one write, and every bad argument refused with nothing sent and nothing leaked.
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

#include "fdsend.h"

/* ---- wire_bytes: the exact bytes on the wire, both ways (pins docs/wire-format.md) ----- */

TEST(wire_bytes)
{
    static const unsigned char expected[13] = {0x01, 0x00, 0x02, 0x00, 0x05, 0x00, 0x00,
                                               0x00, 'h',  'e',  'l',  'l',  'o'};
    int sv[2], files[2];
    intptr_t sendfds[2];
    tu_socketpair(SOCK_STREAM, sv);
    make_fds(files, 2);
    to_intptr(files, sendfds, 2);
    int base = tu_count_fds();

    /* fdsend_msg_send -> raw reader */
    CHECK_EQ(fdsend_msg_send(sv[0], "hello", 5, sendfds, 2, 0), FDSEND_OK);
    {
        unsigned char got[64];
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int) * 8)];
        } control;
        struct iovec iov = {got, 1}; /* read the first byte alone: the fds come with it */
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        CHECK_EQ(recvmsg(sv[1], &msg, MSG_CMSG_CLOEXEC), 1);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        CHECK(c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS);
        CHECK_EQ(c->cmsg_len, CMSG_LEN(2 * sizeof(int)));
        int rfds[2];
        memcpy(rfds, CMSG_DATA(c), sizeof rfds);
        CHECK(tu_same_file(rfds[0], files[0]) && tu_same_file(rfds[1], files[1]));
        close_all(rfds, 2);
        CHECK_EQ(recv(sv[1], got + 1, sizeof got - 1, MSG_DONTWAIT), 12);
        CHECK(memcmp(got, expected, sizeof expected) == 0);
    }
    /* An empty message is the 8-byte header alone. */
    CHECK_EQ(fdsend_msg_send(sv[0], NULL, 0, NULL, 0, 0), FDSEND_OK);
    {
        unsigned char got[16];
        static const unsigned char empty[8] = {1, 0, 0, 0, 0, 0, 0, 0};
        CHECK_EQ(recv(sv[1], got, sizeof got, MSG_DONTWAIT), 8);
        CHECK(memcmp(got, empty, 8) == 0);
    }
    /* raw writer of the documented bytes -> fdsend_msg_recv */
    raw_send_all(sv[0], expected, sizeof expected, files, 2);
    {
        char buf[16];
        intptr_t rfds[4];
        int32_t n = -1;
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, rfds, 4, &n, 0), 5);
        CHECK(memcmp(buf, "hello", 5) == 0);
        check_and_close(rfds, n, files, 2);
    }
    /* seqpacket: the same bytes, as one datagram */
    {
        int sp[2];
        unsigned char got[64];
        if (tu_try_socketpair(SOCK_SEQPACKET, sp)) {
            CHECK_EQ(fdsend_msg_send(sp[0], "hello", 5, NULL, 0, 0), FDSEND_OK);
            CHECK_EQ(recv(sp[1], got, sizeof got, 0), 13);
            CHECK(memcmp(got + 4, expected + 4, 9) == 0 && got[0] == 1 && got[2] == 0);
            close(sp[0]);
            close(sp[1]);
        }
    }
    CHECK_EQ(tu_count_fds(), base);
    close_all(files, 2);
    close(sv[0]);
    close(sv[1]);
}


/* ---- one_byte_at_a_time: a peer that fragments every frame -------------------------- */

typedef struct slow_writer {
    int sock;
    const int *fds;
    int nfds;
    int delay_us;
} slow_writer;

static void *slow_writer_main(void *arg)
{
    const slow_writer *w = arg;
    slow_frame(w->sock, "first message", w->fds, w->nfds, w->delay_us);
    slow_frame(w->sock, "second", NULL, 0, w->delay_us);
    slow_frame(w->sock, "3rd", w->fds + 1, 1, w->delay_us);
    return NULL;
}

static void one_byte_run(int nonblocking, int delay_us)
{
    int sv[2], files[3];
    tu_socketpair(SOCK_STREAM, sv);
    make_fds(files, 3);
    tu_set_nonblocking(sv[1], nonblocking);
    int base = tu_count_fds();
    slow_writer w = {sv[0], files, 3, delay_us};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, slow_writer_main, &w) == 0);
    char buf[64];
    intptr_t got[8];
    int32_t n = -1;
    CHECK_EQ(recv_waiting(sv[1], buf, sizeof buf, got, 8, &n), 13);
    CHECK(memcmp(buf, "first message", 13) == 0);
    check_and_close(got, n, files, 3);
    CHECK_EQ(recv_waiting(sv[1], buf, sizeof buf, got, 8, &n), 6);
    CHECK(memcmp(buf, "second", 6) == 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(recv_waiting(sv[1], buf, sizeof buf, got, 8, &n), 3);
    CHECK(memcmp(buf, "3rd", 3) == 0);
    check_and_close(got, n, files + 1, 1);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(tu_count_fds(), base);
    close_all(files, 3);
    close(sv[0]);
    close(sv[1]);
}

TEST(one_byte_at_a_time)
{
    one_byte_run(0, 0);    /* all fragments queued: the receiver reads across them */
    one_byte_run(0, 300);  /* blocking receiver that waits inside a frame */
    one_byte_run(1, 300);  /* non-blocking receiver: polls inside a frame */
}


/* ---- back_to_back: several frames in one write; frames queued before any read ------- */

TEST(back_to_back)
{
    int sv[2], files[2];
    tu_socketpair(SOCK_STREAM, sv);
    make_fds(files, 2);
    int base = tu_count_fds();
    unsigned char w[64];
    /* frame 1 ("ab", 2 fds) and frame 2 ("cde", none) in ONE write, fds on its first byte */
    tu_frame_header(w, 1, 0, 2, 2);
    memcpy(w + 8, "ab", 2);
    tu_frame_header(w + 10, 1, 0, 0, 3);
    memcpy(w + 18, "cde", 3);
    raw_send_all(sv[0], w, 21, files, 2);
    /* then frame 3 (no fds) and frame 4 (1 fd) as separate writes, all queued before any
     * read: a receiver that read more than a header would get frame 4's fd with frame 3 */
    CHECK_EQ(fdsend_msg_send(sv[0], "f3", 2, NULL, 0, 0), FDSEND_OK);
    {
        intptr_t one = files[1];
        CHECK_EQ(fdsend_msg_send(sv[0], "frame4", 6, &one, 1, 0), FDSEND_OK);
    }
    char buf[32];
    intptr_t got[4];
    int32_t n = -1;
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 2);
    CHECK(memcmp(buf, "ab", 2) == 0);
    check_and_close(got, n, files, 2);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 3);
    CHECK(memcmp(buf, "cde", 3) == 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 2);
    CHECK(memcmp(buf, "f3", 2) == 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 6);
    CHECK(memcmp(buf, "frame4", 6) == 0);
    check_and_close(got, n, files + 1, 1);
    CHECK_EQ(tu_pending(sv[1]), 0);
    CHECK_EQ(tu_count_fds(), base);
    close_all(files, 2);
    close(sv[0]);
    close(sv[1]);
}


/* ---- args: every bad argument is refused, nothing sent, nothing leaked --------------- */

TEST(args)
{
    int sv[2], files[1], p[2];
    tu_socketpair(SOCK_STREAM, sv);
    make_fds(files, 1);
    CHECK(pipe(p) == 0);
    intptr_t one = files[0], bad = -1, many[FDSEND_MAX_FDS + 1];
    for (int i = 0; i <= FDSEND_MAX_FDS; i++)
        many[i] = files[0];
    char buf[8];
    intptr_t got[2];
    int32_t n = 5;
    int base = tu_count_fds();

    CHECK_EQ(fdsend_msg_send(-1, "x", 1, NULL, 0, 0), FDSEND_EBADF);
    CHECK_EQ(fdsend_msg_send(sv[0], NULL, 1, NULL, 0, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, NULL, 1, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, &one, -1, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, NULL, 0, 0x100), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, many, FDSEND_MAX_FDS + 1, 0),
             FDSEND_ETOOMANYFDS);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, &bad, 1, 0), FDSEND_EBADF);
#if SIZE_MAX > 0xFFFFFFFFu
    CHECK_EQ(fdsend_msg_send(sv[0], "x", (size_t)FDSEND_MSG_MAX_PAYLOAD + 1, NULL, 0, 0),
             FDSEND_EMSGSIZE);
#endif
    CHECK_EQ(fdsend_msg_send(p[1], "x", 1, NULL, 0, 0), FDSEND_ENOTSOCK);
    CHECK_EQ(tu_pending(sv[1]), 0);

    CHECK_EQ(fdsend_msg_recv(-1, buf, sizeof buf, got, 2, &n, 0), FDSEND_EBADF);
    CHECK_EQ(n, 0);
    CHECK_EQ(fdsend_msg_recv(sv[1], NULL, 1, got, 2, &n, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 2, &n, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 2, NULL, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, -1, &n, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 2, &n, 0x100), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_recv(p[0], buf, sizeof buf, got, 2, &n, 0), FDSEND_ENOTSOCK);

    /* NULL buffers with zero sizes are fine: an empty message with one descriptor */
    CHECK_EQ(fdsend_msg_send(sv[0], NULL, 0, &one, 1, 0), FDSEND_OK);
    CHECK_EQ(fdsend_msg_recv(sv[1], NULL, 0, got, 2, &n, 0), 0);
    check_and_close(got, n, files, 1);

    /* The peer closed: FDSEND_EPIPE, and no SIGPIPE (its default action would kill us). */
    signal(SIGPIPE, SIG_DFL);
    close(sv[1]);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, &one, 1, 0), FDSEND_EPIPE);

    /* Descriptors over TCP: FDSEND_ENOTUNIX. */
    {
        int l = cloexec_socket(AF_INET, SOCK_STREAM);
        struct sockaddr_in a;
        socklen_t al = sizeof a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (l >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0 &&
            getsockname(l, (struct sockaddr *)&a, &al) == 0) {
            int c = cloexec_socket(AF_INET, SOCK_STREAM);
            CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
            int acc = accept(l, NULL, NULL);
            CHECK(acc >= 0);
            CHECK_EQ(fdsend_msg_send(c, "x", 1, &one, 1, 0), FDSEND_ENOTUNIX);
            CHECK_EQ(tu_pending(acc), 0); /* nothing was sent */
            /* without descriptors the framing works over any stream */
            CHECK_EQ(fdsend_msg_send(c, "tcp", 3, NULL, 0, 0), FDSEND_OK);
            CHECK_EQ(fdsend_msg_recv(acc, buf, sizeof buf, got, 2, &n, 0), 3);
            CHECK(memcmp(buf, "tcp", 3) == 0 && n == 0);
            close(acc);
            close(c);
        } else {
            printf("note: no IPv4 loopback here, FDSEND_ENOTUNIX not checked\n");
        }
        if (l >= 0)
            close(l);
    }
    CHECK(strstr(fdsend_strerror(FDSEND_EOF), "boundary") != NULL);
    CHECK_EQ(tu_count_fds(), base - 1);
    close_all(files, 1);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
    CASE(wire_bytes),
    CASE(one_byte_at_a_time),
    CASE(back_to_back),
    CASE(args),
    };
    return msg_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
