/* Tests of the channel object (fdsend_channel_*), part of tests/native-msg (see
 * msg_test.h): opening and its bad arguments, every socket type, the socket left open by
 * close, descriptors refused on a non-Unix socket, and the wait behind another thread's
 * frame bounded by the socket's timeouts. (Many threads on one channel: test_msg_threads.c.)
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

#include "fdsend.h"

TEST(channel_open_args)
{
    int sv[2], p[2];
    fdsend_channel *ch = (fdsend_channel *)&ch;
    tu_socketpair(SOCK_STREAM, sv);
    cloexec_pipe(p);
    int base = tu_count_fds();
    CHECK_EQ(fdsend_channel_open(sv[0], 0, NULL), FDSEND_EINVAL);
    CHECK_EQ(fdsend_channel_open(sv[0], 1, &ch), FDSEND_EINVAL);
    CHECK(ch == NULL);
    ch = (fdsend_channel *)&ch;
    CHECK_EQ(fdsend_channel_open(-1, 0, &ch), FDSEND_EBADF);
    CHECK(ch == NULL);
    CHECK_EQ(fdsend_channel_open(INT32_MAX, 0, &ch), FDSEND_EBADF);
    CHECK_EQ(fdsend_channel_open(p[0], 0, &ch), FDSEND_ENOTSOCK);
    CHECK(ch == NULL);
    /* NULL channel on every call */
    {
        char buf[8];
        int32_t n = 5;
        CHECK_EQ(fdsend_channel_send(NULL, "x", 1, NULL, 0, 0), FDSEND_EINVAL);
        CHECK_EQ(fdsend_channel_recv(NULL, buf, sizeof buf, NULL, 0, &n, 0), FDSEND_EINVAL);
        CHECK_EQ(n, 0);
        fdsend_channel_close(NULL);
    }
    /* bad arguments on a good channel: refused, nothing sent */
    CHECK_EQ(fdsend_channel_open(sv[0], 0, &ch), FDSEND_OK);
    CHECK_EQ(fdsend_channel_send(ch, NULL, 1, NULL, 0, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_channel_send(ch, "x", 1, NULL, 1, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_channel_send(ch, "x", 1, NULL, 0, 8), FDSEND_EINVAL);
    {
        intptr_t many[FDSEND_MAX_FDS + 1];
        for (int i = 0; i <= FDSEND_MAX_FDS; i++)
            many[i] = p[0];
        CHECK_EQ(fdsend_channel_send(ch, "x", 1, many, FDSEND_MAX_FDS + 1, 0),
                 FDSEND_ETOOMANYFDS);
    }
    CHECK_EQ(tu_pending(sv[1]), 0);
    fdsend_channel_close(ch);
    CHECK_EQ(tu_count_fds(), base);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
}

static void roundtrip(int type)
{
    int sv[2], files[3];
    intptr_t send[3], got[4];
    fdsend_channel *a, *b;
    char buf[64];
    int32_t n = -1;
    tu_socketpair(type, sv);
    make_fds(files, 3);
    to_intptr(files, send, 3);
    int base = tu_count_fds();
    CHECK_EQ(fdsend_channel_open(sv[0], 0, &a), FDSEND_OK);
    CHECK_EQ(fdsend_channel_open(sv[1], 0, &b), FDSEND_OK);
    CHECK_EQ(fdsend_channel_send(a, "three", 5, send, 3, 0), FDSEND_OK);
    CHECK_EQ(fdsend_channel_send(a, "", 0, NULL, 0, 0), FDSEND_OK);
    CHECK_EQ(fdsend_channel_recv(b, buf, sizeof buf, got, 4, &n, 0), 5);
    CHECK(memcmp(buf, "three", 5) == 0);
    check_and_close(got, n, files, 3);
    CHECK_EQ(fdsend_channel_recv(b, buf, sizeof buf, got, 4, &n, 0), 0);
    CHECK_EQ(n, 0);
    /* rejected frames keep the channel in sync */
    CHECK_EQ(fdsend_channel_send(a, "toolong", 7, send, 1, 0), FDSEND_OK);
    CHECK_EQ(fdsend_channel_send(a, "ok", 2, send, 2, 0), FDSEND_OK);
    CHECK_EQ(fdsend_channel_send(a, "ok", 2, send, 2, 0), FDSEND_OK);
    CHECK_EQ(fdsend_channel_recv(b, buf, 4, got, 4, &n, 0), FDSEND_EMSGSIZE);
    CHECK_EQ(fdsend_channel_recv(b, buf, 4, got, 1, &n, 0), FDSEND_ETOOMANYFDS);
    CHECK_EQ(fdsend_channel_recv(b, buf, 4, got, 4, &n, 0), 2);
    check_and_close(got, n, files, 2);
    CHECK_EQ(fdsend_channel_recv(b, buf, sizeof buf, got, 4, &n, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    /* close leaves the sockets open and usable */
    fdsend_channel_close(a);
    fdsend_channel_close(b);
    CHECK_EQ(tu_count_fds(), base);
    CHECK_EQ(fdsend_msg_send(sv[0], "after", 5, NULL, 0, 0), FDSEND_OK);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 0, NULL, 0), 5);
    /* the end of the connection */
    CHECK_EQ(fdsend_channel_open(sv[1], 0, &b), FDSEND_OK);
    close(sv[0]);
    CHECK_EQ(fdsend_channel_recv(b, buf, sizeof buf, got, 4, &n, 0), FDSEND_EOF);
    fdsend_channel_close(b);
    close(sv[1]);
    close_all(files, 3);
}

TEST(channel_stream)
{
    roundtrip(SOCK_STREAM);
}

TEST(channel_seqpacket)
{
    if (!tu_have_socket_type(SOCK_SEQPACKET))
        tu_skip("no SOCK_SEQPACKET here");
    roundtrip(SOCK_SEQPACKET);
}

TEST(channel_not_unix)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c = -1, acc = -1, files[1];
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    fdsend_channel *tx, *rx;
    intptr_t one;
    char buf[16];
    if (l < 0)
        tu_skip("no IPv4 here");
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(0x7f000001);
    if (bind(l, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&sa, &sl) != 0) {
        close(l);
        tu_skip("no IPv4 loopback here");
    }
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(c >= 0 && connect(c, (struct sockaddr *)&sa, sizeof sa) == 0);
    acc = accept(l, NULL, NULL);
    CHECK(acc >= 0);
    make_fds(files, 1);
    one = files[0];
    CHECK_EQ(fdsend_channel_open(c, 0, &tx), FDSEND_OK);
    CHECK_EQ(fdsend_channel_open(acc, 0, &rx), FDSEND_OK);
    /* descriptors refused before anything is sent; a message without them goes */
    CHECK_EQ(fdsend_channel_send(tx, "fd", 2, &one, 1, 0), FDSEND_ENOTUNIX);
    CHECK_EQ(fdsend_channel_send(tx, "tcp", 3, NULL, 0, 0), FDSEND_OK);
    CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, NULL, 0, NULL, 0), 3);
    CHECK(memcmp(buf, "tcp", 3) == 0);
    fdsend_channel_close(tx);
    fdsend_channel_close(rx);
    close_all(files, 1);
    close(acc);
    close(c);
    close(l);
}

/* A thread inside a large frame that nobody reads: another sender on the same channel
 * waits behind it for at most SO_SNDTIMEO, then FDSEND_ETIMEDOUT with nothing sent. */
TEST(channel_wait_timeout)
{
    int sv[2];
    fdsend_channel *tx;
    tu_socketpair(SOCK_STREAM, sv);
    CHECK_EQ(fdsend_channel_open(sv[0], 0, &tx), FDSEND_OK);
    tu_set_timeout_ms(sv[0], SO_SNDTIMEO, 5000); /* for the big sender's own waits */
    big_sender b = {sv[0], 4 << 20, 1, tx};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, big_send_main, &b) == 0);
    while (tu_pending(sv[1]) == 0)
        tu_sleep_ms(1);
    tu_sleep_ms(10);
    /* The socket's timeout, lowered while the big sender is blocked in the kernel (which
     * keeps the timeout its call started with): the second sender waits behind the frame
     * for 200 ms, then gives up with nothing sent. */
    {
        struct timeval tv = {0, 200000};
        CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0);
        CHECK_EQ(fdsend_channel_send(tx, "late", 4, NULL, 0, 0), FDSEND_ETIMEDOUT);
        tv.tv_sec = 30;
        tv.tv_usec = 0;
        CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0);
    }
    {
        size_t total = (4 << 20) + 8;
        unsigned char *big = malloc(total);
        CHECK(big != NULL);
        CHECK_EQ(recv(sv[1], big, total, MSG_WAITALL), (ssize_t)total);
        CHECK(check_pattern(big + 8, 4 << 20, 99));
        free(big);
    }
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(b.rc, FDSEND_OK);
    CHECK_EQ(tu_pending(sv[1]), 0); /* the timed-out send sent nothing */
    fdsend_channel_close(tx);
    close(sv[0]);
    close(sv[1]);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
    CASE(channel_open_args),
    CASE(channel_stream),
    CASE(channel_seqpacket),
    CASE(channel_not_unix),
    CASE(channel_wait_timeout),
    };
    return msg_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
