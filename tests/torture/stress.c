/* Concurrency stress: many threads sending and many receiving on the same sockets, with
 * fdsend_send/fdsend_recv (seqpacket: the kernel keeps messages whole) and with one
 * channel object per end shared by its threads, fdsend_channel_send/fdsend_channel_recv
 * (stream and seqpacket: the channel keeps frames whole). Every message says which thread sent it, its sequence number and which of that
 * thread's files it carries; receivers check the identity of every descriptor, and at the
 * end every (thread, sequence) must have arrived exactly once: no loss, no duplicate, no
 * mismatched descriptor. Built and run under ThreadSanitizer by eng/reliability.sh.
 *
 *   stress [messages-per-sender]
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1
#include "fdsend.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <inttypes.h>
#include <pthread.h>

#define SENDERS 4
#define RECEIVERS 4
#define FILES_PER_SENDER 8
#define MAXK 6

typedef struct wire {
    uint32_t tid, seq, k;
    uint8_t idx[MAXK];
    uint8_t pad[64 - 12 - MAXK];
} wire;

typedef struct run {
    int sock_send, sock_recv;
    int channel;
    fdsend_channel *tx, *rx; /* channel runs: one object per end, shared by its threads */
    uint32_t per_sender;
    int files[SENDERS][FILES_PER_SENDER];
    struct stat ids[SENDERS][FILES_PER_SENDER];
    uint8_t *seen; /* SENDERS * per_sender counters */
    pthread_mutex_t lock;
    long received, fds;
    int failed;
    pthread_t th[SENDERS + RECEIVERS];
    int tids[SENDERS];
    struct run_arg {
        struct run *r;
        uint32_t tid;
    } args[SENDERS];
} run;

static void die(const char *what, int64_t rc)
{
    printf("FAIL: %s: %" PRId64 " (%s)\n", what, rc, rc < 0 ? fdsend_strerror((int32_t)rc) : "");
    fflush(stdout);
    _exit(1);
}

static void *sender(void *p)
{
    struct run_arg *a = p;
    run *r = a->r;
    tu_rng g;
    uint32_t seq, i;
    tu_rng_seed(&g, a->tid + 17);
    for (seq = 0; seq < r->per_sender; seq++) {
        wire w;
        intptr_t fds[MAXK];
        memset(&w, 0, sizeof w);
        w.tid = a->tid;
        w.seq = seq;
        w.k = tu_rng_below(&g, MAXK + 1);
        for (i = 0; i < w.k; i++) {
            w.idx[i] = (uint8_t)tu_rng_below(&g, FILES_PER_SENDER);
            fds[i] = r->files[a->tid][w.idx[i]];
        }
        if (r->channel) {
            int32_t rc = fdsend_channel_send(r->tx, &w, sizeof w, fds, (int32_t)w.k, 0);
            if (rc != FDSEND_OK)
                die("fdsend_channel_send", rc);
        } else {
            int64_t n = fdsend_send(r->sock_send, &w, sizeof w, fds, (int32_t)w.k, 0);
            if (n != (int64_t)sizeof w)
                die("fdsend_send", n);
        }
    }
    return NULL;
}

static void *receiver(void *p)
{
    run *r = p;
    for (;;) {
        wire w;
        intptr_t fds[FDSEND_MAX_FDS];
        int32_t nf = 0;
        uint32_t rf = 0, i;
        int64_t n;
        if (r->channel) {
            n = fdsend_channel_recv(r->rx, &w, sizeof w, fds, FDSEND_MAX_FDS, &nf, 0);
            if (n == FDSEND_EOF)
                return NULL;
        } else {
            n = fdsend_recv(r->sock_recv, &w, sizeof w, fds, FDSEND_MAX_FDS, &nf, &rf, 0);
            if (n == 0 && nf == 0 && rf == 0)
                return NULL;
        }
        if (n != (int64_t)sizeof w || rf != 0)
            die("receive", n);
        if (w.tid >= SENDERS || w.seq >= r->per_sender || w.k > MAXK || (uint32_t)nf != w.k)
            die("message header / fd count mismatch", nf);
        for (i = 0; i < w.k; i++) {
            struct stat st;
            const struct stat *want = &r->ids[w.tid][w.idx[i]];
            if (fstat((int)fds[i], &st) != 0 || st.st_ino != want->st_ino || st.st_dev != want->st_dev) {
                printf("FAIL: thread %u message %u fd %u: wrong descriptor\n", w.tid, w.seq, i);
                _exit(1);
            }
            close((int)fds[i]);
        }
        pthread_mutex_lock(&r->lock);
        r->seen[w.tid * r->per_sender + w.seq]++;
        r->received++;
        r->fds += nf;
        pthread_mutex_unlock(&r->lock);
    }
}

static int one_run(const char *name, int type, int channel, uint32_t per_sender)
{
    run *r = calloc(1, sizeof *r);
    int sv[2], i, j, base = tu_count_fds(), ok = 1;
    long dup = 0, lost = 0;
    double t0 = tu_now_s();
    if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0)
        die("socketpair", -1);
    r->sock_send = sv[0];
    r->sock_recv = sv[1];
    r->channel = channel;
    if (channel && (fdsend_channel_open(sv[0], 0, &r->tx) != FDSEND_OK ||
                    fdsend_channel_open(sv[1], 0, &r->rx) != FDSEND_OK))
        die("fdsend_channel_open", -1);
    r->per_sender = per_sender;
    r->seen = calloc((size_t)SENDERS * per_sender, 1);
    pthread_mutex_init(&r->lock, NULL);
    for (i = 0; i < SENDERS; i++) {
        for (j = 0; j < FILES_PER_SENDER; j++) {
            char tmpl[] = "/tmp/fdsend-stress-XXXXXX";
            r->files[i][j] = mkostemp(tmpl, O_CLOEXEC);
            unlink(tmpl);
            fstat(r->files[i][j], &r->ids[i][j]);
        }
    }
    for (i = 0; i < RECEIVERS; i++)
        pthread_create(&r->th[SENDERS + i], NULL, receiver, r);
    for (i = 0; i < SENDERS; i++) {
        r->args[i].r = r;
        r->args[i].tid = (uint32_t)i;
        pthread_create(&r->th[i], NULL, sender, &r->args[i]);
    }
    for (i = 0; i < SENDERS; i++)
        pthread_join(r->th[i], NULL);
    /* End of the conversation: on seqpacket each receiver needs its own end marker, which
     * shutdown gives to all of them. */
    shutdown(sv[0], SHUT_WR);
    for (i = 0; i < RECEIVERS; i++)
        pthread_join(r->th[SENDERS + i], NULL);
    for (i = 0; i < SENDERS * (int)per_sender; i++) {
        if (r->seen[i] == 0)
            lost++;
        else if (r->seen[i] > 1)
            dup += r->seen[i] - 1;
    }
    for (i = 0; i < SENDERS; i++)
        for (j = 0; j < FILES_PER_SENDER; j++)
            close(r->files[i][j]);
    fdsend_channel_close(r->tx); /* NULL when not a channel run */
    fdsend_channel_close(r->rx);
    close(sv[0]);
    close(sv[1]);
    if (lost || dup || tu_count_fds() != base)
        ok = 0;
    printf("%s %s: %d senders x %u messages, %d receivers: %ld received, %ld fds, lost %ld, "
           "duplicated %ld, fd table %d -> %d (%.1f s)\n", ok ? "ok  " : "FAIL", name, SENDERS,
           per_sender, RECEIVERS, r->received, r->fds, lost, dup, base, tu_count_fds(),
           tu_now_s() - t0);
    free(r->seen);
    free(r);
    return ok;
}

int main(int argc, char **argv)
{
    uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 5000;
    int passed = 0, total = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    total++, passed += one_run("fdsend_send/recv, seqpacket", SOCK_SEQPACKET, 0, n);
    total++, passed += one_run("channel, stream", SOCK_STREAM, 1, n);
    total++, passed += one_run("channel, seqpacket", SOCK_SEQPACKET, 1, n);
    printf("stress: %d passed, %d failed\n", passed, total - passed);
    return passed == total ? 0 : 1;
}
