/* libfdsend's message channel: the same workloads through a channel object per socket
 * (fdsend_channel_send / fdsend_channel_recv; an 8-byte frame header goes with every
 * 16-byte payload). Built by eng/bench.sh only when fdsend.h declares fdsend_channel_send.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1
#include <fdsend.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef intptr_t bench_fd;
#define BENCH_NAME "libfdsend-msg"

/* The channel object of each socket this process uses, opened on first use (after the
 * harness's fork, so each process opens its own). */
static fdsend_channel *bench_channels[256];

static fdsend_channel *bench_channel(int sock)
{
    if (sock < 0 || sock >= 256) {
        fprintf(stderr, "bench_msg: socket %d out of range\n", sock);
        exit(1);
    }
    if (bench_channels[sock] == NULL && fdsend_channel_open(sock, 0, &bench_channels[sock]) != FDSEND_OK) {
        fprintf(stderr, "bench_msg: fdsend_channel_open failed\n");
        exit(1);
    }
    return bench_channels[sock];
}

static long bench_send(int sock, const void *buf, size_t len, const intptr_t *fds, int nfds)
{
    int32_t rc = fdsend_channel_send(bench_channel(sock), buf, len, fds, nfds, 0);
    return rc == FDSEND_OK ? (long)len : -1;
}

static long bench_recv(int sock, void *buf, size_t len, intptr_t *fds, int maxfds, int *nfds)
{
    int32_t got = 0;
    int64_t n = fdsend_channel_recv(bench_channel(sock), buf, len, fds, maxfds, &got, 0);
    *nfds = got;
    if (n == FDSEND_EOF)
        return 0; /* the peer closed at a frame boundary: the harness's end of stream */
    return n < 0 ? -1 : (long)n;
}

#include "harness.h"
