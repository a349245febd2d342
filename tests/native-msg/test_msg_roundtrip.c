/* Tests of the message channel (fdsend_msg_send / fdsend_msg_recv), part of
 * tests/native-msg (see msg_test.h). Round trips on every socket type: payloads from 0 bytes to 1 MiB with descriptors,
 * stream (framed), seqpacket and datagram (one datagram per message).
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

#include "fdsend.h"

/* ---- round trips -------------------------------------------------------------------- */

typedef struct rt_plan {
    int sock;
    const size_t *sizes;
    int nsizes;
    const int *counts;
    int ncounts;
    const int *pool; /* FDSEND_MAX_FDS descriptors */
} rt_plan;

static void *rt_sender(void *arg)
{
    const rt_plan *p = arg;
    intptr_t fds[FDSEND_MAX_FDS];
    unsigned seed = 0;
    for (int s = 0; s < p->nsizes; s++) {
        unsigned char *payload = malloc(p->sizes[s] + 1);
        CHECK(payload != NULL);
        for (int c = 0; c < p->ncounts; c++, seed++) {
            fill_pattern(payload, p->sizes[s], seed);
            for (int i = 0; i < p->counts[c]; i++) /* vary the order per message */
                fds[i] = p->pool[(i + (int)seed) % FDSEND_MAX_FDS];
            CHECK_EQ(fdsend_msg_send(p->sock, payload, p->sizes[s], fds, p->counts[c], 0),
                     FDSEND_OK);
        }
        free(payload);
    }
    return NULL;
}

static void round_trip(int type, const size_t *sizes, int nsizes)
{
    static const int counts[] = {0, 1, 3, FDSEND_MAX_FDS};
    const int ncounts = (int)(sizeof counts / sizeof counts[0]);
    int sv[2], pool[FDSEND_MAX_FDS];
    tu_socketpair(type, sv);
    make_fds(pool, FDSEND_MAX_FDS);
    if (type != SOCK_STREAM) {
        int big = 4 << 20;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    }
    int base = tu_count_fds();
    size_t maxsize = 0;
    for (int s = 0; s < nsizes; s++)
        maxsize = sizes[s] > maxsize ? sizes[s] : maxsize;

    rt_plan plan = {sv[0], sizes, nsizes, counts, ncounts, pool};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, rt_sender, &plan) == 0);
    unsigned char *buf = malloc(maxsize + 1);
    CHECK(buf != NULL);
    unsigned seed = 0;
    for (int s = 0; s < nsizes; s++) {
        for (int c = 0; c < ncounts; c++, seed++) {
            intptr_t got[FDSEND_MAX_FDS];
            int expected[FDSEND_MAX_FDS];
            int32_t n = -1;
            memset(buf, 0xee, maxsize + 1);
            int64_t r = fdsend_msg_recv(sv[1], buf, maxsize, got, FDSEND_MAX_FDS, &n, 0);
            CHECK_EQ(r, (int64_t)sizes[s]);
            CHECK(check_pattern(buf, sizes[s], seed));
            CHECK(buf[sizes[s]] == 0xee); /* nothing written past the payload */
            for (int i = 0; i < counts[c]; i++)
                expected[i] = pool[(i + (int)seed) % FDSEND_MAX_FDS];
            check_and_close(got, n, expected, counts[c]);
        }
    }
    CHECK(pthread_join(th, NULL) == 0);
    /* Nothing more on the socket: no byte of any frame was left behind. */
    {
        int32_t n = -1;
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, maxsize, NULL, 0, &n, FDSEND_DONTWAIT),
                 FDSEND_EAGAIN);
    }
    free(buf);
    CHECK_EQ(tu_count_fds(), base);
    close_all(pool, FDSEND_MAX_FDS);
    close(sv[0]);
    close(sv[1]);
}

TEST(roundtrip_stream)
{
    static const size_t sizes[] = {0, 1, 7, 8, 9, 100, 4096, 65535, 65536, 200000, 1 << 20};
    round_trip(SOCK_STREAM, sizes, (int)(sizeof sizes / sizeof sizes[0]));
}

/* The largest datagram the sender's buffer allows (Linux: sk_sndbuf - 32), minus slack. */
static size_t max_datagram_payload(int type)
{
    int sv[2], big = 4 << 20, got = 0;
    socklen_t l = sizeof got;
    tu_socketpair(type, sv);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &got, &l) == 0);
    close(sv[0]);
    close(sv[1]);
    return (size_t)got / 2 - 8; /* well inside the limit */
}

static void datagram_round_trip(int type)
{
    size_t sizes[] = {0, 1, 7, 8, 9, 100, 4096, 65536, 1 << 20};
    int n = (int)(sizeof sizes / sizeof sizes[0]);
    size_t limit = max_datagram_payload(type);
    int base = tu_count_fds();
    if (limit < sizes[n - 1]) {
        /* 1 MiB does not fit this machine's send buffer: it must be refused whole, and
         * the largest payload that fits is tested instead. */
        int sv[2], files[2];
        intptr_t fds[2];
        tu_socketpair(type, sv);
        make_fds(files, 2);
        to_intptr(files, fds, 2);
        unsigned char *big = calloc(1, sizes[n - 1]);
        CHECK(big != NULL);
        int before = tu_count_fds();
        CHECK_EQ(fdsend_msg_send(sv[0], big, sizes[n - 1], fds, 2, 0), FDSEND_EMSGSIZE);
        CHECK_EQ(tu_count_fds(), before);
        CHECK_EQ(tu_pending(sv[1]), 0);
        free(big);
        close_all(files, 2);
        close(sv[0]);
        close(sv[1]);
        printf("note: 1 MiB datagram refused with FDSEND_EMSGSIZE (send buffer allows %zu)\n",
               limit);
        sizes[n - 1] = limit;
    }
    CHECK_EQ(tu_count_fds(), base);
    round_trip(type, sizes, n);
}

TEST(roundtrip_seqpacket)
{
    datagram_round_trip(SOCK_SEQPACKET);
}

TEST(roundtrip_dgram)
{
    datagram_round_trip(SOCK_DGRAM);
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
    CASE(roundtrip_stream),
    CASE(roundtrip_seqpacket),
    CASE(roundtrip_dgram),
    };
    return msg_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
