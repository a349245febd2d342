/* SO_RCVTIMEO / SO_SNDTIMEO are deadlines: a periodic signal does not keep them from
 * firing, and the channel's wait behind another thread's frame is bounded by them too;
 * a thread cancelled inside a frame does not hold the socket for ever.
 * Every blocking call here runs under a watchdog: without the fix it never returns.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Generous bounds: the timeouts are 300-500 ms; a loaded machine may be slow, but a
 * timeout that restarts on every signal (or never fires) takes for ever. */
#define BOUND_MS 3000.0

static volatile sig_atomic_t ticks;

static void on_alarm(int sig)
{
    (void)sig;
    ticks++;
}

/* SIGALRM every 50 ms, with or without SA_RESTART. */
static void start_ticker(int restart)
{
    struct sigaction sa;
    struct itimerval it;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(SIGALRM, &sa, NULL));
    memset(&it, 0, sizeof it);
    it.it_interval.tv_usec = 50000;
    it.it_value.tv_usec = 50000;
    ticks = 0;
    CHECK_SYS(setitimer(ITIMER_REAL, &it, NULL));
}

static void stop_ticker(void)
{
    struct itimerval it;
    memset(&it, 0, sizeof it);
    CHECK_SYS(setitimer(ITIMER_REAL, &it, NULL));
}

/* Fill sock's send buffer (the peer does not read). */
static void fill_send_buffer(int sock)
{
    static char block[4096];
    tu_set_nonblocking(sock, 1);
    while (send(sock, block, sizeof block, MSG_DONTWAIT) > 0) {
    }
    while (send(sock, block, 1, MSG_DONTWAIT) > 0) {
    }
    tu_set_nonblocking(sock, 0);
}

static void report(const char *what, double ms)
{
    printf("%s: %.0f ms, %d signals\n", what, ms, (int)ticks);
}

/* fdsend_recv, SO_RCVTIMEO 300 ms, a signal every 50 ms: FDSEND_ETIMEDOUT, nothing
 * consumed (the next message arrives whole). */
static void recv_under_signals(int restart)
{
    int sv[2];
    char buf[8];
    int32_t n = -1;
    uint32_t rflags = 99;
    double start, took;

    tu_socketpair(SOCK_STREAM, sv);
    tu_set_timeout_ms(sv[1], SO_RCVTIMEO, 300);
    start_ticker(restart);
    start = tu_now_ms();
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, &n, &rflags, 0), FDSEND_ETIMEDOUT);
    took = tu_now_ms() - start;
    stop_ticker();
    report(restart ? "fdsend_recv, SA_RESTART" : "fdsend_recv", took);
    CHECK(took >= 250 && took < BOUND_MS);
    CHECK(ticks >= 3); /* the signals did interrupt it */
    CHECK_EQ(n, 0);
    CHECK_RC(fdsend_send(sv[0], "next", 4, NULL, 0, 0), 4);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, &n, &rflags, 0), 4);
    CHECK_MEM(buf, "next", 4);
    close(sv[0]);
    close(sv[1]);
}

TEST(recv_timeout_under_signals)
{
    tu_watchdog(20, "fdsend_recv under a 50 ms timer");
    recv_under_signals(0);
    recv_under_signals(1);
}

/* fdsend_send (and fdsend_msg_send) on a full send buffer, SO_SNDTIMEO 300 ms, a signal
 * every 50 ms: FDSEND_ETIMEDOUT, nothing sent. */
static void send_under_signals(int restart)
{
    int sv[2], queued, file = tu_temp_file("x");
    intptr_t fd = file;
    double start, took;

    tu_socketpair(SOCK_STREAM, sv);
    fill_send_buffer(sv[0]);
    queued = tu_pending(sv[1]);
    tu_set_timeout_ms(sv[0], SO_SNDTIMEO, 300);
    start_ticker(restart);
    start = tu_now_ms();
    CHECK_RC(fdsend_send(sv[0], "more", 4, &fd, 1, 0), FDSEND_ETIMEDOUT);
    took = tu_now_ms() - start;
    report(restart ? "fdsend_send, SA_RESTART" : "fdsend_send", took);
    CHECK(took >= 250 && took < BOUND_MS);
    CHECK(ticks >= 3);
    ticks = 0;
    start = tu_now_ms();
    CHECK_RC(fdsend_msg_send(sv[0], "more", 4, &fd, 1, 0), FDSEND_ETIMEDOUT);
    took = tu_now_ms() - start;
    stop_ticker();
    report(restart ? "fdsend_msg_send, SA_RESTART" : "fdsend_msg_send", took);
    CHECK(took >= 250 && took < BOUND_MS);
    CHECK(ticks >= 3);
    CHECK_EQ(tu_pending(sv[1]), queued); /* nothing was sent */
    close(sv[0]);
    close(sv[1]);
    close(file);
}

TEST(send_timeout_under_signals)
{
    tu_watchdog(20, "fdsend_send under a 50 ms timer");
    send_under_signals(0);
    send_under_signals(1);
}

/* Put a frame header (version 1, flags 0, nfds, len) into h. */
static void put_header(unsigned char h[8], unsigned nfds, unsigned len)
{
    h[0] = 1;
    h[1] = 0;
    h[2] = (unsigned char)(nfds & 0xff);
    h[3] = (unsigned char)(nfds >> 8);
    h[4] = (unsigned char)(len & 0xff);
    h[5] = (unsigned char)((len >> 8) & 0xff);
    h[6] = (unsigned char)((len >> 16) & 0xff);
    h[7] = (unsigned char)(len >> 24);
}

/* A frame's first 12 bytes (header + "abcd" of a 10-byte payload), with one descriptor. */
static void send_partial_frame(int sock, int fd)
{
    unsigned char h[12];
    intptr_t one = fd;
    put_header(h, 1, 10);
    memcpy(h + 8, "abcd", 4);
    CHECK_RC(fdsend_send(sock, h, sizeof h, &one, 1, FDSEND_UNIX_SOCKET), 12);
}

/* fdsend_msg_recv under a 50 ms timer with SO_RCVTIMEO 300 ms: before a frame,
 * FDSEND_ETIMEDOUT with nothing consumed; stopped inside a frame, FDSEND_EPROTO (the
 * channel's "no progress for SO_RCVTIMEO", errno ETIMEDOUT) with the frame's fd closed. */
static void msg_recv_under_signals(int restart)
{
    int sv[2], base, file = tu_temp_file("x");
    unsigned char buf[16];
    intptr_t got[2];
    int32_t n = -1;
    double start, took;

    tu_socketpair(SOCK_STREAM, sv);
    tu_set_timeout_ms(sv[1], SO_RCVTIMEO, 300);
    base = tu_count_fds();
    start_ticker(restart);
    start = tu_now_ms();
    CHECK_RC(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 2, &n, 0), FDSEND_ETIMEDOUT);
    took = tu_now_ms() - start;
    report(restart ? "fdsend_msg_recv before a frame, SA_RESTART" : "fdsend_msg_recv before a frame", took);
    CHECK(took >= 250 && took < BOUND_MS);
    CHECK(ticks >= 3);
    CHECK_EQ(tu_pending(sv[1]), 0);

    send_partial_frame(sv[0], file);
    ticks = 0;
    start = tu_now_ms();
    CHECK_RC(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 2, &n, 0), FDSEND_EPROTO);
    took = tu_now_ms() - start;
    stop_ticker();
    report(restart ? "fdsend_msg_recv mid-frame, SA_RESTART" : "fdsend_msg_recv mid-frame", took);
    CHECK_EQ(fdsend_last_os_error(), ETIMEDOUT);
    CHECK(took >= 250 && took < BOUND_MS);
    CHECK(ticks >= 3);
    CHECK_EQ(n, 0);
    CHECK_EQ(tu_count_fds(), base); /* the frame's descriptor was closed */
    close(sv[0]);
    close(sv[1]);
    close(file);
}

TEST(msg_recv_timeout_under_signals)
{
    tu_watchdog(20, "fdsend_msg_recv under a 50 ms timer");
    msg_recv_under_signals(0);
    msg_recv_under_signals(1);
}

/* ---- The channel's wait behind another thread's frame ------------------------------ */

typedef struct peer_call {
    int sock;
    const void *data;
    size_t len;
    int64_t result;
    unsigned char buf[16];
} peer_call;

static void *msg_send_main(void *p)
{
    peer_call *c = p;
    c->result = fdsend_msg_send(c->sock, c->data, c->len, NULL, 0, 0);
    return NULL;
}

static void *msg_recv_main(void *p)
{
    peer_call *c = p;
    c->result = fdsend_msg_recv(c->sock, c->buf, sizeof c->buf, NULL, 0, NULL, 0);
    return NULL;
}

/* Start thread A sending a 1 MiB frame on sv[0] (SO_SNDBUF 4 KiB, the peer sv[1] does not
 * read) and return once it is stuck inside the frame: bytes queued, no more coming. */
static int start_stuck_sender(int sv[2], peer_call *a, pthread_t *ta)
{
    int sndbuf = 4096, queued;
    size_t big = 1u << 20;
    char *frame = calloc(big, 1);
    CHECK(frame != NULL);
    CHECK_SYS(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf));
    a->sock = sv[0];
    a->data = frame;
    a->len = big;
    CHECK(pthread_create(ta, NULL, msg_send_main, a) == 0);
    do {
        queued = tu_pending(sv[1]);
        tu_sleep_ms(100);
    } while (queued == 0 || queued != tu_pending(sv[1]));
    return queued;
}

/* Thread A's frame is half-sent (the peer does not read); thread B, with SO_SNDTIMEO
 * 500 ms, calls fdsend_msg_send on the same socket: FDSEND_ETIMEDOUT after about that,
 * nothing of B's frame sent. */
TEST(msg_send_waits_behind_frame_bounded)
{
    int sv[2], queued;
    peer_call a;
    pthread_t ta;
    double start, took;

    tu_watchdog(20, "fdsend_msg_send behind another thread's frame");
    tu_socketpair(SOCK_STREAM, sv);
    queued = start_stuck_sender(sv, &a, &ta);
    tu_set_timeout_ms(sv[0], SO_SNDTIMEO, 500); /* A sleeps in the kernel already */
    start = tu_now_ms();
    CHECK_RC(fdsend_msg_send(sv[0], "B", 1, NULL, 0, 0), FDSEND_ETIMEDOUT);
    took = tu_now_ms() - start;
    printf("fdsend_msg_send behind a half-sent frame: %.0f ms\n", took);
    CHECK(took >= 450 && took < BOUND_MS);
    CHECK_EQ(tu_pending(sv[1]), queued); /* nothing of B's frame */
    close(sv[1]); /* A: the peer is gone */
    CHECK(pthread_join(ta, NULL) == 0);
    /* FDSEND_EPIPE, or FDSEND_ECONNRESET when A's sendmsg was asleep with nothing of its own
     * sent yet: Linux then reports that the peer closed with data unread (its first attempt
     * filled the buffer without waiting, and the rest waits in a call of its own). */
    CHECK(a.result == FDSEND_EPIPE || a.result == FDSEND_ECONNRESET);
    close(sv[0]);
    free((void *)a.data);
}

/* Thread A is inside a frame's payload (the peer stopped sending); thread B, with
 * SO_RCVTIMEO 500 ms, calls fdsend_msg_recv: FDSEND_ETIMEDOUT, nothing consumed; then the
 * rest of A's frame arrives and A gets it whole. */
TEST(msg_recv_waits_behind_frame_bounded)
{
    int sv[2], file = tu_temp_file("x");
    unsigned char h[12];
    peer_call a;
    pthread_t ta;
    double start, took;

    tu_watchdog(20, "fdsend_msg_recv behind another thread's frame");
    tu_socketpair(SOCK_STREAM, sv);
    put_header(h, 0, 10);
    memcpy(h + 8, "abcd", 4);
    CHECK_EQ(write(sv[0], h, sizeof h), 12);
    a.sock = sv[1];
    CHECK(pthread_create(&ta, NULL, msg_recv_main, &a) == 0);
    while (tu_pending(sv[1]) > 0) /* A has taken the 12 bytes... */
        tu_sleep_ms(10);
    tu_sleep_ms(100); /* ...and sleeps in the kernel for the rest */
    tu_set_timeout_ms(sv[1], SO_RCVTIMEO, 500);
    start = tu_now_ms();
    {
        unsigned char buf[16];
        int32_t n = -1;
        CHECK_RC(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 0, &n, 0), FDSEND_ETIMEDOUT);
    }
    took = tu_now_ms() - start;
    printf("fdsend_msg_recv behind a half-received frame: %.0f ms\n", took);
    CHECK(took >= 450 && took < BOUND_MS);
    CHECK_EQ(write(sv[0], "efghij", 6), 6);
    CHECK(pthread_join(ta, NULL) == 0);
    CHECK_RC(a.result, 10);
    CHECK_MEM(a.buf, "abcdefghij", 10);
    close(sv[0]);
    close(sv[1]);
    close(file);
}

static void *msg_recv_fds_main(void *p)
{
    peer_call *c = p;
    intptr_t got[2];
    int32_t n = 0;
    c->result = fdsend_msg_recv(c->sock, c->buf, sizeof c->buf, got, 2, &n, 0);
    return NULL;
}

/* A thread cancelled inside fdsend_msg_recv mid-frame releases the socket (and closes
 * the frame's descriptor): another thread's fdsend_msg_recv then returns at once (the
 * rest of the broken frame is not a header: FDSEND_EPROTO) instead of waiting for ever. */
TEST(msg_recv_cancelled_mid_frame)
{
    int sv[2], base, file = tu_temp_file("x");
    peer_call a;
    pthread_t ta;
    void *res;
    unsigned char buf[16];
    int32_t n = -1;
    double start, took;

    tu_watchdog(20, "fdsend_msg_recv after a cancelled receiver");
    tu_socketpair(SOCK_STREAM, sv);
    base = tu_count_fds();
    send_partial_frame(sv[0], file);
    a.sock = sv[1];
    CHECK(pthread_create(&ta, NULL, msg_recv_fds_main, &a) == 0);
    while (tu_pending(sv[1]) > 0)
        tu_sleep_ms(10);
    tu_sleep_ms(100);
    CHECK_EQ(tu_count_fds(), base + 1); /* A holds the frame's descriptor */
    CHECK(pthread_cancel(ta) == 0);
    CHECK(pthread_join(ta, &res) == 0);
    CHECK(res == PTHREAD_CANCELED);
    CHECK_EQ(tu_count_fds(), base); /* closed by the cleanup handler */
    CHECK_EQ(write(sv[0], "efghij", 6), 6);
    start = tu_now_ms();
    CHECK_RC(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 0, &n, 0), FDSEND_EPROTO);
    took = tu_now_ms() - start;
    printf("fdsend_msg_recv after a cancelled receiver: %.0f ms\n", took);
    CHECK(took < BOUND_MS);
    close(sv[0]);
    close(sv[1]);
    close(file);
}

/* The same for a sender cancelled inside its frame: the next fdsend_msg_send on the
 * socket is not held (it fails fast on the closed peer instead of waiting for ever). */
TEST(msg_send_cancelled_mid_frame)
{
    int sv[2];
    peer_call a;
    pthread_t ta;
    void *res;

    tu_watchdog(20, "fdsend_msg_send after a cancelled sender");
    tu_socketpair(SOCK_STREAM, sv);
    (void)start_stuck_sender(sv, &a, &ta);
    CHECK(pthread_cancel(ta) == 0);
    CHECK(pthread_join(ta, &res) == 0);
    CHECK(res == PTHREAD_CANCELED);
    close(sv[1]);
    CHECK_RC(fdsend_msg_send(sv[0], "B", 1, NULL, 0, 0), FDSEND_EPIPE);
    close(sv[0]);
    free((void *)a.data);
}

/* fdsend_wait, the library's wait for callers: readable and writable, nothing consumed, a
 * hang-up counts as ready, a timeout under a signal every 50 ms never ends early, and bad
 * arguments. */
TEST(wait_ready_and_timeout)
{
    int sv[2], closed;
    char buf[4];
    double start, took;

    tu_watchdog(20, "fdsend_wait");
    tu_socketpair(SOCK_STREAM, sv);
    CHECK_RC(fdsend_wait(sv[1], FDSEND_POLL_IN, 0), FDSEND_ETIMEDOUT);
    CHECK_RC(fdsend_wait(sv[1], FDSEND_POLL_OUT, 0), FDSEND_OK);
    CHECK_RC(fdsend_wait(sv[1], FDSEND_POLL_OUT, -1), FDSEND_OK);
    CHECK_SYS(send(sv[0], "abc", 3, 0));
    CHECK_RC(fdsend_wait(sv[1], FDSEND_POLL_IN, 0), FDSEND_OK);
    CHECK_RC(fdsend_wait(sv[1], FDSEND_POLL_IN, -1), FDSEND_OK);
    CHECK_EQ(tu_pending(sv[1]), 3); /* nothing consumed */
    CHECK_EQ((int)recv(sv[1], buf, sizeof buf, 0), 3);

    start_ticker(0);
    start = tu_now_ms();
    CHECK_RC(fdsend_wait(sv[1], FDSEND_POLL_IN, 300), FDSEND_ETIMEDOUT);
    took = tu_now_ms() - start;
    stop_ticker();
    report("fdsend_wait 300 ms", took);
    CHECK(took >= 300 && took < BOUND_MS);
    CHECK(ticks >= 3); /* the signals did interrupt it */

    close(sv[0]); /* the peer's close: readable (end of stream) */
    CHECK_RC(fdsend_wait(sv[1], FDSEND_POLL_IN, 5000), FDSEND_OK);

    CHECK_RC(fdsend_wait(sv[1], 0, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_wait(sv[1], FDSEND_POLL_IN | FDSEND_POLL_OUT, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_wait(sv[1], FDSEND_POLL_ERR, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_wait(sv[1], FDSEND_POLL_IN, -2), FDSEND_EINVAL);
    CHECK_RC(fdsend_wait(-1, FDSEND_POLL_IN, 0), FDSEND_EBADF);
    closed = sv[1];
    close(sv[1]);
    CHECK_RC(fdsend_wait(closed, FDSEND_POLL_IN, 0), FDSEND_EBADF);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(recv_timeout_under_signals),
        CASE(send_timeout_under_signals),
        CASE(msg_recv_timeout_under_signals),
        CASE(msg_send_waits_behind_frame_bounded),
        CASE(msg_recv_waits_behind_frame_bounded),
        CASE(msg_recv_cancelled_mid_frame),
        CASE(msg_send_cancelled_mid_frame),
        CASE(wait_ready_and_timeout),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
