/* Tests of the message channel, part of tests/native-msg (see msg_test.h). Threads:
 * concurrent senders and receivers sharing one channel object (fdsend_channel_*) on one
 * stream socket (blocking and non-blocking), and non-blocking sockets / FDSEND_DONTWAIT
 * (FDSEND_EAGAIN sends nothing), alone and behind another thread's frame.
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

#include "fdsend.h"

/* ---- threads: concurrent senders and receivers on one stream socket ------------------- */

#define T_SENDERS 6
#define T_RECEIVERS 2
#define T_MESSAGES 250
#define T_MAXLEN 150000

typedef struct t_shared {
    int send_sock, recv_sock;
    fdsend_channel *tx, *rx; /* one channel object per end, shared by its threads */
    int nonblocking;
    int fds[T_SENDERS][3];
    pthread_mutex_t mu;
    unsigned char seen[T_SENDERS][T_MESSAGES];
    int received;
} t_shared;

typedef struct t_sender {
    t_shared *sh;
    int id;
} t_sender;

static size_t t_len(int id, int seq)
{
    uint32_t x = (uint32_t)(id * 7919 + seq * 104729) * 2654435761u;
    size_t len = (x >> 8) % T_MAXLEN;
    return len < 8 ? 8 : len;
}

static void *t_send_main(void *arg)
{
    const t_sender *me = arg;
    t_shared *sh = me->sh;
    unsigned char *buf = malloc(T_MAXLEN);
    CHECK(buf != NULL);
    for (int seq = 0; seq < T_MESSAGES; seq++) {
        size_t len = t_len(me->id, seq);
        int nfds = seq % 4;
        intptr_t fds[3];
        fill_pattern(buf, len, (unsigned)(me->id * 100000 + seq));
        buf[0] = (unsigned char)me->id;
        buf[1] = (unsigned char)(seq & 0xff);
        buf[2] = (unsigned char)(seq >> 8);
        for (int i = 0; i < nfds; i++)
            fds[i] = sh->fds[me->id][i];
        for (;;) {
            int32_t rc = fdsend_channel_send(sh->tx, buf, len, fds, nfds, 0);
            if (rc == FDSEND_OK)
                break;
            CHECK(sh->nonblocking && rc == FDSEND_EAGAIN);
            struct pollfd p = {sh->send_sock, POLLOUT, 0};
            poll(&p, 1, 1);
            sched_yield(); /* writable, but another thread may be inside a frame */
        }
    }
    free(buf);
    return NULL;
}

static void *t_recv_main(void *arg)
{
    t_shared *sh = arg;
    unsigned char *buf = malloc(T_MAXLEN);
    CHECK(buf != NULL);
    for (;;) {
        intptr_t got[8];
        int32_t n = -1;
        int64_t r = fdsend_channel_recv(sh->rx, buf, T_MAXLEN, got, 8, &n, 0);
        if (r == FDSEND_EOF)
            break;
        if (r == FDSEND_EAGAIN && sh->nonblocking) {
            struct pollfd p = {sh->recv_sock, POLLIN, 0};
            poll(&p, 1, 1);
            sched_yield();
            continue;
        }
        CHECK(r >= 8);
        int id = buf[0], seq = buf[1] | buf[2] << 8;
        CHECK(id < T_SENDERS && seq < T_MESSAGES);
        CHECK_EQ(r, (int64_t)t_len(id, seq));
        {
            unsigned char *want = malloc((size_t)r);
            CHECK(want != NULL);
            fill_pattern(want, (size_t)r, (unsigned)(id * 100000 + seq));
            CHECK(memcmp(want + 3, buf + 3, (size_t)r - 3) == 0);
            free(want);
        }
        check_and_close(got, n, sh->fds[id], seq % 4);
        pthread_mutex_lock(&sh->mu);
        CHECK(sh->seen[id][seq] == 0);
        sh->seen[id][seq] = 1;
        sh->received++;
        pthread_mutex_unlock(&sh->mu);
    }
    free(buf);
    return NULL;
}

static void threads_run(int nonblocking)
{
    static t_shared sh;
    int sv[2];
    memset(&sh, 0, sizeof sh);
    tu_socketpair(SOCK_STREAM, sv);
    sh.send_sock = sv[0];
    sh.recv_sock = sv[1];
    sh.nonblocking = nonblocking;
    tu_set_nonblocking(sv[0], nonblocking);
    tu_set_nonblocking(sv[1], nonblocking);
    pthread_mutex_init(&sh.mu, NULL);
    for (int i = 0; i < T_SENDERS; i++)
        make_fds(sh.fds[i], 3);
    CHECK_EQ(fdsend_channel_open(sv[0], 0, &sh.tx), FDSEND_OK);
    CHECK_EQ(fdsend_channel_open(sv[1], 0, &sh.rx), FDSEND_OK);
    int base = tu_count_fds();
    pthread_t s[T_SENDERS], r[T_RECEIVERS];
    t_sender args[T_SENDERS];
    for (int i = 0; i < T_RECEIVERS; i++)
        CHECK(pthread_create(&r[i], NULL, t_recv_main, &sh) == 0);
    for (int i = 0; i < T_SENDERS; i++) {
        args[i].sh = &sh;
        args[i].id = i;
        CHECK(pthread_create(&s[i], NULL, t_send_main, &args[i]) == 0);
    }
    for (int i = 0; i < T_SENDERS; i++)
        CHECK(pthread_join(s[i], NULL) == 0);
    shutdown(sv[0], SHUT_WR); /* receivers see FDSEND_EOF at the last boundary */
    for (int i = 0; i < T_RECEIVERS; i++)
        CHECK(pthread_join(r[i], NULL) == 0);
    CHECK_EQ(sh.received, T_SENDERS * T_MESSAGES);
    CHECK_EQ(tu_count_fds(), base);
    fdsend_channel_close(sh.tx);
    fdsend_channel_close(sh.rx);
    CHECK_EQ(tu_count_fds(), base); /* a channel object holds no descriptor */
    for (int i = 0; i < T_SENDERS; i++)
        close_all(sh.fds[i], 3);
    close(sv[0]);
    close(sv[1]);
}

TEST(threads)
{
    threads_run(0);
}

TEST(threads_nonblocking)
{
    threads_run(1);
}


/* ---- eagain: non-blocking sockets and FDSEND_DONTWAIT ------------------------------- */

typedef struct half_receiver {
    fdsend_channel *ch;
    int64_t r;
    char buf[16];
} half_receiver;

static void *half_recv_main(void *arg)
{
    half_receiver *rx = arg;
    int32_t n = -1;
    rx->r = fdsend_channel_recv(rx->ch, rx->buf, sizeof rx->buf, NULL, 0, &n, 0);
    return NULL;
}

TEST(eagain)
{
    int sv[2], files[1];
    intptr_t one;
    tu_socketpair(SOCK_STREAM, sv);
    make_fds(files, 1);
    one = files[0];
    int base = tu_count_fds();
    char buf[16384];
    intptr_t got[4];
    int32_t n = 7;

    /* Nothing to read: EAGAIN from a non-blocking socket and from FDSEND_DONTWAIT. */
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    tu_set_nonblocking(sv[0], 1);
    tu_set_nonblocking(sv[1], 1);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), FDSEND_EAGAIN);
    CHECK_EQ(n, 0);

    /* Fill the socket with 10000-byte frames (each fits one kernel buffer, so each is
     * sent whole or not at all) until EAGAIN: that one sent nothing, not even its fd. */
    int sent = 0;
    unsigned char frame[10000];
    for (;;) {
        fill_pattern(frame, sizeof frame, (unsigned)sent);
        int32_t rc = fdsend_msg_send(sv[0], frame, sizeof frame, &one, 1, 0);
        if (rc == FDSEND_EAGAIN)
            break;
        CHECK_EQ(rc, FDSEND_OK);
        sent++;
        CHECK(sent < 100000);
    }
    CHECK(sent > 0);
    CHECK_EQ(fdsend_msg_send(sv[0], frame, sizeof frame, &one, 1, 0), FDSEND_EAGAIN);
    for (int i = 0; i < sent; i++) {
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 10000);
        CHECK(check_pattern((unsigned char *)buf, 10000, (unsigned)i));
        check_and_close(got, n, files, 1);
    }
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), FDSEND_EAGAIN);
    CHECK_EQ(tu_pending(sv[1]), 0);
    CHECK_EQ(tu_count_fds(), base);

    /* Another thread is inside a frame (a 1 MiB send nobody reads yet) on a channel
     * object: a DONTWAIT send on the same channel returns EAGAIN at once and sends
     * nothing, even once the socket has room. */
    fdsend_channel *tx, *rx;
    CHECK_EQ(fdsend_channel_open(sv[0], 0, &tx), FDSEND_OK);
    CHECK_EQ(fdsend_channel_open(sv[1], 0, &rx), FDSEND_OK);
    tu_set_nonblocking(sv[0], 0);
    big_sender b = {sv[0], 1 << 20, 1, tx};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, big_send_main, &b) == 0);
    while (tu_pending(sv[1]) == 0)
        tu_sleep_ms(1);
    tu_sleep_ms(10);
    CHECK_EQ(fdsend_channel_send(tx, "x", 1, &one, 1, FDSEND_DONTWAIT), FDSEND_EAGAIN);
    {
        size_t total = (1 << 20) + 8;
        unsigned char *big = malloc(total);
        CHECK(big != NULL);
        /* Read part of it raw: the socket has room again, the frame is still in progress. */
        tu_set_nonblocking(sv[1], 0);
        CHECK_EQ(recv(sv[1], big, 65536, MSG_WAITALL), 65536);
        CHECK_EQ(fdsend_channel_send(tx, "x", 1, &one, 1, FDSEND_DONTWAIT), FDSEND_EAGAIN);
        CHECK_EQ(recv(sv[1], big + 65536, total - 65536, MSG_WAITALL), (ssize_t)(total - 65536));
        CHECK(check_pattern(big + 8, 1 << 20, 99));
        free(big);
    }
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(b.rc, FDSEND_OK);
    CHECK_EQ(tu_pending(sv[1]), 0); /* the refused sends sent nothing */

    /* Another thread is inside a received frame (its peer stalls mid-payload): a
     * non-blocking receive on the same socket returns EAGAIN and consumes nothing. */
    {
        unsigned char h[12];
        tu_frame_header(h, 1, 0, 0, 8);
        memcpy(h + 8, "half", 4);
        raw_send_all(sv[0], h, 12, NULL, 0);
        tu_set_nonblocking(sv[1], 0);
        half_receiver hr = {rx, 0, {0}};
        pthread_t rt;
        CHECK(pthread_create(&rt, NULL, half_recv_main, &hr) == 0);
        while (tu_pending(sv[1]) > 0) /* the thread has consumed the first 12 bytes */
            tu_sleep_ms(1);
        tu_sleep_ms(10);
        CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, got, 4, &n, FDSEND_DONTWAIT),
                 FDSEND_EAGAIN);
        tu_set_nonblocking(sv[1], 1);
        CHECK_EQ(fdsend_channel_recv(rx, buf, sizeof buf, got, 4, &n, 0), FDSEND_EAGAIN);
        raw_send_all(sv[0], "more", 4, NULL, 0);
        CHECK(pthread_join(rt, NULL) == 0);
        CHECK_EQ(hr.r, 8);
        CHECK(memcmp(hr.buf, "halfmore", 8) == 0);
    }
    CHECK_EQ(tu_count_fds(), base);
    fdsend_channel_close(tx);
    fdsend_channel_close(rx);
    close_all(files, 1);
    close(sv[0]);
    close(sv[1]);
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
    CASE(threads),
    CASE(threads_nonblocking),
    CASE(eagain),
    };
    return msg_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
