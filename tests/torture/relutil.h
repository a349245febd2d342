/* Small helpers shared by FdSend's reliability programs (tests/interop, tests/torture).
 * Header-only; every function is static. SPDX-License-Identifier: MIT */
#ifndef FDSEND_RELUTIL_H
#define FDSEND_RELUTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Number of open descriptors of this process, as /proc/self/fd lists them (the
 * directory's own descriptor is not counted). -1 if /proc is not there. */
static inline int rel_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1;
}

/* Print the list of open descriptors with their targets (for a leak report). */
static inline void rel_fd_dump(FILE *out, const char *who)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    if (d == NULL)
        return;
    fprintf(out, "%s: open descriptors:\n", who);
    while ((e = readdir(d)) != NULL) {
        char path[300], target[256];
        ssize_t n;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        n = readlink(path, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = '\0';
        fprintf(out, "  %s -> %s\n", e->d_name, target);
    }
    closedir(d);
}

static inline double rel_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: a fast deterministic generator both ends of a test can replay. */
typedef struct rel_rng {
    uint64_t s;
} rel_rng;

static inline void rel_rng_seed(rel_rng *r, uint64_t seed)
{
    /* splitmix64 of the seed, never zero */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    r->s = z ? z : 0x1234567ull;
}

static inline uint64_t rel_rng_next(rel_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, n) (n > 0). */
static inline uint32_t rel_rng_below(rel_rng *r, uint32_t n)
{
    return (uint32_t)((rel_rng_next(r) >> 32) * (uint64_t)n >> 32);
}

/* Bind and listen on a Unix stream socket at path (removing a stale one). */
static inline int rel_listen_unix(const char *path, int type)
{
    struct sockaddr_un a;
    int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path) {
        close(s);
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(a.sun_path, path);
    unlink(path);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0) {
        int e = errno;
        close(s);
        errno = e;
        return -1;
    }
    return s;
}

/* Connect to a Unix socket at path, retrying for up to timeout_s seconds while nobody
 * listens there yet. */
static inline int rel_connect_unix(const char *path, int type, double timeout_s)
{
    struct sockaddr_un a;
    double end = rel_now() + timeout_s;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(a.sun_path, path);
    for (;;) {
        int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        if (s < 0)
            return -1;
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
            return s;
        close(s);
        if ((errno != ENOENT && errno != ECONNREFUSED) || rel_now() > end)
            return -1;
        usleep(20000);
    }
}

#endif /* FDSEND_RELUTIL_H */
