/* libfdsend's message channel: the same workloads through fdsend_msg_send /
 * fdsend_msg_recv (an 8-byte frame header goes with every 16-byte payload).
 * Built by eng/bench.sh only when fdsend.h declares fdsend_msg_send.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1
#include <fdsend.h>
#include <errno.h>

typedef intptr_t bench_fd;
#define BENCH_NAME "libfdsend-msg"

static long bench_send(int sock, const void *buf, size_t len, const intptr_t *fds, int nfds)
{
    int32_t rc = fdsend_msg_send(sock, buf, len, fds, nfds, 0);
    return rc == FDSEND_OK ? (long)len : -1;
}

static long bench_recv(int sock, void *buf, size_t len, intptr_t *fds, int maxfds, int *nfds)
{
    int32_t got = 0;
    int64_t n = fdsend_msg_recv(sock, buf, len, fds, maxfds, &got, 0);
    *nfds = got;
    if (n == FDSEND_EOF)
        return 0; /* the peer closed at a frame boundary: the harness's end of stream */
    return n < 0 ? -1 : (long)n;
}

#include "harness.h"
