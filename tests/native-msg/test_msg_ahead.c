/* Read-ahead on stream channels (docs/wire-format.md 4.1): the kernel behaviour it stands
 * on, and a channel object reading several frames per system call. Part of
 * tests/native-msg (see msg_test.h).
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

/* One raw recvmsg with room for 4096 bytes and 253 descriptors (closed at once): the
 * number of bytes, and of descriptors in *nfds. */
static ssize_t raw_read(int sock, int *nfds)
{
    unsigned char data[4096];
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * 253)];
    } control;
    struct iovec iov = {data, sizeof data};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    *nfds = 0;
    for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; c != NULL;
         c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int fds[253];
            memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)k);
            close_all(fds, k);
            *nfds += k;
        }
    }
    return n;
}

/* What read-ahead stands on, checked on this kernel: a read never returns the descriptors of
 * two writes, and the descriptors it returns came with a write whose first byte it returned
 * (Linux stops a read right after a write that carries descriptors). If a kernel changes
 * this, this case fails and AHEAD_SIZE in channel.c must be 0 there. */
TEST(kernel_reads_stop_at_descriptors)
{
#if !defined(__linux__)
    tu_skip("read-ahead is only enabled (and its kernel behaviour only checked) on Linux");
#else
    int sv[2], f = tu_temp_file("ahead"), base, k;
    unsigned char w[24];
    memset(w, 'w', sizeof w);
    tu_socketpair(SOCK_STREAM, sv);
    base = tu_count_fds();
    /* no descriptors, descriptors, descriptors: the first read takes two writes, stopping
     * after the one with descriptors; the second takes the third */
    raw_send_all(sv[0], w, 24, NULL, 0);
    raw_send_all(sv[0], w, 24, &f, 1);
    raw_send_all(sv[0], w, 24, &f, 1);
    CHECK_EQ(raw_read(sv[1], &k), 48);
    CHECK_EQ(k, 1);
    CHECK_EQ(raw_read(sv[1], &k), 24);
    CHECK_EQ(k, 1);
    /* descriptors first: the read stops after that write */
    raw_send_all(sv[0], w, 24, &f, 1);
    raw_send_all(sv[0], w, 24, NULL, 0);
    raw_send_all(sv[0], w, 24, NULL, 0);
    CHECK_EQ(raw_read(sv[1], &k), 24);
    CHECK_EQ(k, 1);
    CHECK_EQ(raw_read(sv[1], &k), 48);
    CHECK_EQ(k, 0);
    CHECK_EQ(tu_count_fds(), base);
    close(sv[0]);
    close(sv[1]);
    close(f);
#endif
}

/* Frames of every shape queued before the receiver looks, read back through a channel
 * object: payloads, descriptors (which file, in which frame), nothing leaked. */
TEST(channel_reads_ahead_across_frames)
{
    enum { FRAMES = 40 };
    static const size_t sizes[] = {0, 1, 16, 100, 4000, 4088, 4089, 9000};
    int sv[2], files[3], base;
    fdsend_channel *tx, *rx;
    unsigned char *buf = malloc(16384);
    CHECK(buf != NULL);
    tu_socketpair(SOCK_STREAM, sv);
    for (int i = 0; i < 3; i++)
        files[i] = tu_temp_file("ahead");
    CHECK_EQ(fdsend_channel_open(sv[0], 0, &tx), FDSEND_OK);
    CHECK_EQ(fdsend_channel_open(sv[1], 0, &rx), FDSEND_OK);
    base = tu_count_fds();
    for (int i = 0; i < FRAMES; i++) {
        size_t len = sizes[i % 8];
        intptr_t fds[3];
        int nfds = i % 3 == 0 ? 0 : i % 3; /* 0, 1, 2 descriptors in turn */
        for (int j = 0; j < nfds; j++)
            fds[j] = files[(i + j) % 3];
        fill_pattern(buf, len, (unsigned)i);
        CHECK_EQ(fdsend_channel_send(tx, buf, len, fds, nfds, 0), FDSEND_OK);
    }
    for (int i = 0; i < FRAMES; i++) {
        intptr_t got[4];
        int32_t n = -1;
        int expected[3];
        int nfds = i % 3 == 0 ? 0 : i % 3;
        int64_t r = fdsend_channel_recv(rx, buf, 16384, got, 4, &n, FDSEND_DONTWAIT);
        CHECK_EQ(r, (int64_t)sizes[i % 8]);
        CHECK(check_pattern(buf, (size_t)r, (unsigned)i));
        for (int j = 0; j < nfds; j++)
            expected[j] = files[(i + j) % 3];
        check_and_close(got, n, expected, nfds);
    }
    {
        int32_t n = -1;
        CHECK_EQ(fdsend_channel_recv(rx, buf, 16384, NULL, 0, &n, FDSEND_DONTWAIT),
                 FDSEND_EAGAIN);
    }
    CHECK_EQ(tu_count_fds(), base);
    fdsend_channel_close(tx);
    fdsend_channel_close(rx);
    for (int i = 0; i < 3; i++)
        close(files[i]);
    close(sv[0]);
    close(sv[1]);
    free(buf);
}

/* On Linux the channel object really reads ahead: three frames without descriptors queued,
 * the first receive leaves nothing in the socket (the other two are held by the object). */
TEST(channel_one_read_for_several_frames)
{
#if !defined(__linux__)
    tu_skip("read-ahead is Linux-only");
#else
    int sv[2];
    fdsend_channel *rx;
    unsigned char buf[64];
    int32_t n;
    tu_socketpair(SOCK_STREAM, sv);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(fdsend_msg_send(sv[0], "abc", 3, NULL, 0, 0), FDSEND_OK);
    CHECK_EQ(fdsend_channel_open(sv[1], 0, &rx), FDSEND_OK);
    CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, NULL, 0, &n, 0), 3);
    CHECK_EQ(tu_pending(sv[1]), 0);
    CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, NULL, 0, &n, FDSEND_DONTWAIT), 3);
    CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, NULL, 0, &n, FDSEND_DONTWAIT), 3);
    CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, NULL, 0, &n, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    fdsend_channel_close(rx);
    close(sv[0]);
    close(sv[1]);
#endif
}

/* Descriptors read ahead for a frame no call has taken yet are closed with the object. */
TEST(channel_close_with_descriptors_read_ahead)
{
    int sv[2], f = tu_temp_file("ahead"), base;
    fdsend_channel *rx;
    unsigned char frames[2 * 11], buf[16];
    intptr_t got[2];
    int32_t n = -1;
    tu_socketpair(SOCK_STREAM, sv);
    base = tu_count_fds();
    CHECK_EQ(fdsend_frame_encode(frames, 3, 0), FDSEND_OK);
    memcpy(frames + 8, "one", 3);
    CHECK_EQ(fdsend_frame_encode(frames + 11, 3, 1), FDSEND_OK);
    memcpy(frames + 19, "two", 3);
    raw_send_all(sv[0], frames, 11, NULL, 0);
    raw_send_all(sv[0], frames + 11, 11, &f, 1);
    CHECK_EQ(fdsend_channel_open(sv[1], 0, &rx), FDSEND_OK);
    CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, got, 2, &n, 0), 3);
    CHECK_EQ(n, 0);
    fdsend_channel_close(rx); /* it held "two" and its descriptor (Linux: read ahead) */
    CHECK_EQ(tu_count_fds(), base);
    close(sv[0]);
    close(sv[1]);
    close(f);
}

/* A frame the read ahead left half-read: the next receive finishes it (waiting, even with
 * FDSEND_DONTWAIT: the frame has begun); a peer that never sends the rest is a protocol
 * error after SO_RCVTIMEO, and the channel stays broken. */
TEST(channel_half_frame_read_ahead)
{
    int sv[2], f = tu_temp_file("ahead"), base;
    fdsend_channel *rx;
    unsigned char frames[2 * 11], buf[16];
    intptr_t got[2];
    int32_t n = -1;
    struct timeval tv = {0, 200000};
    tu_socketpair(SOCK_STREAM, sv);
    base = tu_count_fds();
    CHECK_EQ(fdsend_frame_encode(frames, 3, 0), FDSEND_OK);
    memcpy(frames + 8, "one", 3);
    CHECK_EQ(fdsend_frame_encode(frames + 11, 3, 1), FDSEND_OK);
    memcpy(frames + 19, "two", 3);
    raw_send_all(sv[0], frames, 11, NULL, 0);
    raw_send_all(sv[0], frames + 11, 5, &f, 1); /* the second frame's first 5 bytes */
    CHECK_SYS(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    CHECK_EQ(fdsend_channel_open(sv[1], 0, &rx), FDSEND_OK);
    CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, got, 2, &n, FDSEND_DONTWAIT), 3);
    raw_send_all(sv[0], frames + 16, 6, NULL, 0); /* the rest */
    CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, got, 2, &n, FDSEND_DONTWAIT), 3);
    CHECK(memcmp(buf, "two", 3) == 0);
    check_and_close(got, n, &f, 1);
    /* again, and the rest never comes */
    raw_send_all(sv[0], frames, 11, NULL, 0);
    raw_send_all(sv[0], frames + 11, 5, &f, 1);
    CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, got, 2, &n, 0), 3);
    CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, got, 2, &n, 0), FDSEND_EPROTO);
    CHECK_EQ(n, 0);
    CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, got, 2, &n, 0), FDSEND_EPROTO);
    CHECK_EQ(tu_count_fds(), base);
    fdsend_channel_close(rx);
    close(sv[0]);
    close(sv[1]);
    close(f);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
    CASE(kernel_reads_stop_at_descriptors),
    CASE(channel_reads_ahead_across_frames),
    CASE(channel_one_read_for_several_frames),
    CASE(channel_close_with_descriptors_read_ahead),
    CASE(channel_half_frame_read_ahead),
    };
    return msg_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
