/* Tests of the message channel (fdsend_msg_send / fdsend_msg_recv), part of
 * tests/native-msg (see msg_test.h). Timeouts: SO_RCVTIMEO / SO_SNDTIMEO bound every wait of fdsend_msg_send and
 * fdsend_msg_recv.
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

#include "fdsend.h"

/* ---- timeouts: SO_RCVTIMEO / SO_SNDTIMEO bound every wait ------------------------------ */

TEST(timeouts)
{
    int files[1];
    intptr_t one, got[4];
    unsigned char buf[64];
    int32_t n = 7;
    make_fds(files, 1);
    one = files[0];
    int base = tu_count_fds();

    /* Before a frame starts: FDSEND_ETIMEDOUT, nothing consumed, and the channel stays in
     * sync (stream, seqpacket, datagram). */
    int types[3] = {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM};
    for (int t = 0; t < 3; t++) {
        int sv[2];
        if (!tu_try_socketpair(types[t], sv))
            continue;
        tu_set_timeout_ms(sv[1], SO_RCVTIMEO, 100);
        double start = tu_now_ms();
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), FDSEND_ETIMEDOUT);
        CHECK(tu_now_ms() - start >= 90);
        CHECK_EQ(n, 0);
        CHECK_EQ(fdsend_msg_send(sv[0], "in sync", 7, &one, 1, 0), FDSEND_OK);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 7);
        CHECK(memcmp(buf, "in sync", 7) == 0);
        check_and_close(got, n, files, 1);
        close(sv[0]);
        close(sv[1]);
    }

    /* A peer that stops inside its frame (header and 4 of 10 payload bytes, its fds
     * attached) no longer holds the receiver forever: FDSEND_EPROTO after about the
     * timeout (blocking socket: the kernel's wait; non-blocking: the library's poll), the
     * frame's fds closed. */
    for (int nonblocking = 0; nonblocking <= 1; nonblocking++) {
        int sv[2];
        unsigned char h[12];
        tu_socketpair(SOCK_STREAM, sv);
        tu_set_nonblocking(sv[1], nonblocking);
        tu_set_timeout_ms(sv[1], SO_RCVTIMEO, 150);
        tu_frame_header(h, 1, 0, 1, 10);
        memcpy(h + 8, "abcd", 4);
        raw_send_all(sv[0], h, 12, files, 1);
        double start = tu_now_ms();
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), FDSEND_EPROTO);
        CHECK(tu_now_ms() - start >= 140);
        CHECK_EQ(fdsend_last_os_error(), ETIMEDOUT);
        CHECK_EQ(n, 0);
        CHECK_EQ(tu_count_fds(), base + 2); /* only the pair: the frame's fd was closed */
        close(sv[0]);
        close(sv[1]);
    }

    /* A sender whose peer stops reading inside a large frame: FDSEND_ETIMEDOUT after
     * SO_SNDTIMEO, on a blocking and on a non-blocking socket. */
    for (int nonblocking = 0; nonblocking <= 1; nonblocking++) {
        int sv[2];
        size_t big = 4u << 20;
        unsigned char *frame = calloc(big, 1);
        CHECK(frame != NULL);
        tu_socketpair(SOCK_STREAM, sv);
        tu_set_nonblocking(sv[0], nonblocking);
        tu_set_timeout_ms(sv[0], SO_SNDTIMEO, 150);
        double start = tu_now_ms();
        CHECK_EQ(fdsend_msg_send(sv[0], frame, big, &one, 1, 0), FDSEND_ETIMEDOUT);
        CHECK(tu_now_ms() - start >= 140);
        CHECK(tu_pending(sv[1]) > 0); /* part of the frame went: the stream is to be closed */
        free(frame);
        close(sv[0]);
        close(sv[1]);
    }
    CHECK_EQ(tu_count_fds(), base);
    close(files[0]);
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
    CASE(timeouts),
    };
    return msg_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
