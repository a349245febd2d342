/* libfdsend: the same workloads through fdsend_send / fdsend_recv (linked dynamically,
 * as a user's program would).
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1
#include <fdsend.h>
#include <errno.h>

typedef intptr_t bench_fd;
#define BENCH_NAME "libfdsend"

static long bench_send(int sock, const void *buf, size_t len, const intptr_t *fds, int nfds)
{
    int64_t n = fdsend_send(sock, buf, len, fds, nfds, 0);
    return n < 0 ? -1 : (long)n;
}

static long bench_recv(int sock, void *buf, size_t len, intptr_t *fds, int maxfds, int *nfds)
{
    int32_t got = 0;
    uint32_t rflags = 0;
    int64_t n = fdsend_recv(sock, buf, len, fds, maxfds, &got, &rflags, 0);
    *nfds = got;
    return n < 0 ? -1 : (long)n;
}

#include "harness.h"
