/* libfdsend: the same workloads through fdsend_send / fdsend_recv (linked dynamically,
 * as a user's program would). Built twice by eng/bench.sh: with the default send flags
 * (0: the library checks that the socket is a Unix socket, one getsockname per send) and,
 * as bench_lib_unix, with -DBENCH_SEND_FLAGS=FDSEND_UNIX_SOCKET (the caller vouches).
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1
#include <fdsend.h>
#include <errno.h>

typedef intptr_t bench_fd;
#define BENCH_NAME "libfdsend"
#ifndef BENCH_SEND_FLAGS
#  define BENCH_SEND_FLAGS 0
#endif

static long bench_send(int sock, const void *buf, size_t len, const intptr_t *fds, int nfds)
{
    int64_t n = fdsend_send(sock, buf, len, fds, nfds, BENCH_SEND_FLAGS);
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
