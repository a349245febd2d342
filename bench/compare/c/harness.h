/* The comparison workloads, shared by every C implementation (raw sendmsg/recvmsg,
 * libfdsend, the libfdsend message channel). A backend file defines the types and the
 * two functions below, then includes this file; the compiler inlines the backend into
 * the loops, so every C program runs exactly the same loop around a different call.
 *
 * Backend contract (static functions, defined before #include "harness.h"):
 *   typedef ... bench_fd;          element type of the backend's descriptor arrays
 *   #define BENCH_NAME "..."       name used in messages
 *   static long bench_send(int sock, const void *buf, size_t len,
 *                          const bench_fd *fds, int nfds);
 *       send len bytes + nfds descriptors as one message; bytes sent or -1 (errno set)
 *   static long bench_recv(int sock, void *buf, size_t len, bench_fd *fds, int maxfds,
 *                          int *nfds);
 *       receive one message; bytes received (0 = end of stream) or -1 (errno set);
 *       *nfds descriptors stored in fds[], owned by the caller
 *
 * Usage: prog WORKLOAD SECONDS [WARMUP_SECONDS]
 *   inproc1    one process, one socketpair: send 16 bytes + 1 fd, receive, close the fd
 *   inproc64   the same with 64 fds
 *   stream1    two processes: the parent sends 16 bytes + 1 fd per message as fast as it
 *              can, the child receives and closes; messages/s measured until the child
 *              has drained everything (it acknowledges end of stream)
 *   pingpong1  two processes: the parent sends 16 bytes + 1 fd, the child receives,
 *              sends 16 bytes + that fd back and closes it, the parent receives and
 *              closes; round trips/s
 * Prints one line: ops_per_sec=<float> ops=<int> seconds=<float> cpu_seconds=<float>:
 * cpu_seconds is the CPU time used over the timed loop by this process and, for the
 * two-process workloads, by the child too (from /proc/<pid>/task/<tid>/schedstat; left
 * out where that is not readable). A busy machine disturbs it less than the wall clock.
 * pingpong1 adds p50_us=<float> p99_us=<float>: round-trip latency percentiles over the
 * timed loop (one clock read per round trip).
 * SPDX-License-Identifier: MIT */
#ifndef BENCH_HARNESS_H
#define BENCH_HARNESS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PAYLOAD 16
#define BENCH_BATCH 64 /* operations between two clock reads */
#define BENCH_MAX_FDS 64

static const unsigned char bench_payload[BENCH_PAYLOAD] = "fdsend-benchmark";

static void bench_die(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", BENCH_NAME, what, errno ? strerror(errno) : "unexpected result");
    exit(1);
}

static double bench_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double bench_now(void)
{
    return bench_clock(CLOCK_MONOTONIC);
}

/* CPU seconds used so far by every thread of another process (Linux /proc), or -1. */
static double bench_task_cpu(pid_t pid)
{
    char dir[64], path[128];
    DIR *d;
    struct dirent *e;
    double total = 0;
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    d = opendir(dir);
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        unsigned long long ns;
        FILE *f;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%.32s/schedstat", dir, e->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fscanf(f, "%llu", &ns) == 1)
            total += (double)ns * 1e-9;
        fclose(f);
    }
    closedir(d);
    return total;
}

/* One in-process round trip: send 16 bytes + nfds fds on a, receive them on b, close. */
static inline void bench_inproc_op(int a, int b, const bench_fd *fds, int nfds)
{
    unsigned char buf[BENCH_PAYLOAD];
    bench_fd got[BENCH_MAX_FDS];
    int n = -1, i;
    errno = 0;
    if (bench_send(a, bench_payload, BENCH_PAYLOAD, fds, nfds) != BENCH_PAYLOAD)
        bench_die("send");
    if (bench_recv(b, buf, sizeof buf, got, nfds, &n) != BENCH_PAYLOAD || n != nfds)
        bench_die("receive");
    for (i = 0; i < n; i++)
        close((int)got[i]);
}

static inline void bench_send_op(int sock, const bench_fd *fd)
{
    errno = 0;
    if (bench_send(sock, bench_payload, BENCH_PAYLOAD, fd, 1) != BENCH_PAYLOAD)
        bench_die("send");
}

/* Receive one 16-byte + 1-fd message; 0 at end of stream. */
static inline int bench_recv_op(int sock, bench_fd *fd)
{
    unsigned char buf[BENCH_PAYLOAD];
    int n = -1;
    long r;
    errno = 0;
    r = bench_recv(sock, buf, sizeof buf, fd, 1, &n);
    if (r == 0 && n == 0)
        return 0;
    if (r != BENCH_PAYLOAD || n != 1)
        bench_die("receive");
    return 1;
}

/* Child of stream1: receive and close until end of stream, then acknowledge. */
static void bench_stream_child(int sock)
{
    bench_fd fd;
    while (bench_recv_op(sock, &fd))
        close((int)fd);
    if (write(sock, "A", 1) != 1)
        bench_die("acknowledge");
    _exit(0);
}

/* Child of pingpong1: echo every message with its fd, then close the fd. */
static void bench_pingpong_child(int sock)
{
    bench_fd fd;
    while (bench_recv_op(sock, &fd)) {
        bench_send_op(sock, &fd);
        close((int)fd);
    }
    _exit(0);
}

/* Round-trip latencies of the timed pingpong1 loop, in ns (NULL: not recording). */
static double *bench_lat;
static long bench_lat_n, bench_lat_cap;

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct bench_ctx {
    const char *workload;
    int sock;      /* inproc: sending end; two-process: the parent's end */
    int peer;      /* inproc: receiving end */
    int nfds;
    bench_fd fds[BENCH_MAX_FDS];
} bench_ctx;

/* Run the workload's operation in batches until `seconds` have passed. */
static long bench_loop(bench_ctx *c, double seconds)
{
    long ops = 0;
    double end = bench_now() + seconds;
    int k;
    bench_fd fd;
    do {
        if (c->peer >= 0) {
            for (k = 0; k < BENCH_BATCH; k++)
                bench_inproc_op(c->sock, c->peer, c->fds, c->nfds);
        } else if (strcmp(c->workload, "stream1") == 0) {
            for (k = 0; k < BENCH_BATCH; k++)
                bench_send_op(c->sock, c->fds);
        } else {
            for (k = 0; k < BENCH_BATCH; k++) {
                double t = bench_lat != NULL ? bench_now() : 0;
                bench_send_op(c->sock, c->fds);
                if (!bench_recv_op(c->sock, &fd))
                    bench_die("ping-pong peer closed");
                close((int)fd);
                if (bench_lat != NULL && bench_lat_n < bench_lat_cap)
                    bench_lat[bench_lat_n++] = (bench_now() - t) * 1e9;
            }
        }
        ops += BENCH_BATCH;
    } while (bench_now() < end);
    return ops;
}

int main(int argc, char **argv)
{
    bench_ctx c;
    int sv[2], i, inproc, status;
    pid_t child = -1;
    double seconds, warmup, t0, t1, c0, c1, k0 = 0, k1 = 0;
    long ops;
    char ack;

    if (argc < 3) {
        fprintf(stderr, "usage: %s inproc1|inproc64|stream1|pingpong1 SECONDS [WARMUP]\n", argv[0]);
        return 2;
    }
    memset(&c, 0, sizeof c);
    c.workload = argv[1];
    seconds = atof(argv[2]);
    warmup = argc > 3 ? atof(argv[3]) : 0.2;
    if (strcmp(c.workload, "inproc1") == 0) {
        c.nfds = 1;
    } else if (strcmp(c.workload, "inproc64") == 0) {
        c.nfds = 64;
    } else if (strcmp(c.workload, "stream1") == 0 || strcmp(c.workload, "pingpong1") == 0) {
        c.nfds = 1;
    } else {
        fprintf(stderr, "%s: unknown workload %s\n", BENCH_NAME, c.workload);
        return 2;
    }
    inproc = strncmp(c.workload, "inproc", 6) == 0;
    for (i = 0; i < c.nfds; i++) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            bench_die("open /dev/null");
        c.fds[i] = (bench_fd)fd;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        bench_die("socketpair");
    c.sock = sv[0];
    c.peer = -1;
    if (inproc) {
        c.peer = sv[1];
    } else {
        child = fork();
        if (child < 0)
            bench_die("fork");
        if (child == 0) {
            close(sv[0]);
            if (strcmp(c.workload, "stream1") == 0)
                bench_stream_child(sv[1]);
            bench_pingpong_child(sv[1]);
        }
        close(sv[1]);
    }

    if (warmup > 0)
        bench_loop(&c, warmup);
    if (strcmp(c.workload, "pingpong1") == 0) {
        bench_lat_cap = 1 << 21;
        bench_lat = malloc(sizeof(double) * (size_t)bench_lat_cap);
    }
    if (child > 0)
        k0 = bench_task_cpu(child);
    c0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
    t0 = bench_now();
    ops = bench_loop(&c, seconds);
    if (!inproc) {
        /* End of stream; the timed run ends when the child has consumed everything. */
        if (shutdown(c.sock, SHUT_WR) != 0)
            bench_die("shutdown");
        if (strcmp(c.workload, "stream1") == 0 && read(c.sock, &ack, 1) != 1)
            bench_die("read acknowledgement");
    }
    t1 = bench_now();
    c1 = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
    if (child > 0)
        k1 = bench_task_cpu(child);
    if (child > 0 && (waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
                      WEXITSTATUS(status) != 0)) {
        errno = 0;
        bench_die("child failed");
    }
    printf("ops_per_sec=%.1f ops=%ld seconds=%.4f", (double)ops / (t1 - t0), ops, t1 - t0);
    if (k0 >= 0 && k1 >= 0)
        printf(" cpu_seconds=%.4f", (c1 - c0) + (k1 - k0));
    if (bench_lat != NULL && bench_lat_n > 0) {
        qsort(bench_lat, (size_t)bench_lat_n, sizeof(double), bench_cmp_double);
        printf(" p50_us=%.2f p99_us=%.2f", bench_lat[(long)(0.50 * (double)(bench_lat_n - 1))] / 1e3,
               bench_lat[(long)(0.99 * (double)(bench_lat_n - 1))] / 1e3);
    }
    printf("\n");
    return 0;
}

#endif /* BENCH_HARNESS_H */
