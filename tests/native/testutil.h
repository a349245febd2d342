/* The test-support library shared by libfdsend's C test programs: tests/native,
 * tests/native-msg, the reliability programs of tests/torture and tests/interop/c_peer.c.
 * testutil.c is portable (Linux, the BSDs, macOS, illumos); what only Linux has is in
 * testutil_linux.c and declared at the end of this header, under __linux__.
 *
 * Each test program defines its cases with TEST(name) and lists them in a table; CMake
 * reads the TEST(...) lines and registers one CTest test per case, run as
 * "<program> <case>". A failing check prints file:line and the values involved, then
 * ends the process (or the fork()ed child, which the parent sees as a failure).
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_TESTUTIL_H
#define FDSEND_TESTUTIL_H

#if defined(__linux__) && !defined(_GNU_SOURCE)
#  define _GNU_SOURCE 1
#endif

#include "fdsend.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/socket.h>

/* macOS has no SOCK_CLOEXEC (Linux, the BSDs and illumos do). There the tests' own sockets
 * are not close-on-exec, except tu_socketpair's, which sets FD_CLOEXEC afterwards; no C
 * test exec()s while it holds one. */
#ifndef SOCK_CLOEXEC
#  define SOCK_CLOEXEC 0
#  define TU_NO_SOCK_CLOEXEC 1
#endif

/* ---- Test cases ------------------------------------------------------------------- */

/* Defines a case: a function test_<name>(void). CMake greps for lines starting "TEST(". */
#define TEST(name) static void test_##name(void)
/* An entry of the case table passed to tu_main. */
#define CASE(name) { #name, test_##name }

typedef struct tu_case {
    const char *name;
    void (*fn)(void);
} tu_case;

/* Runs the case named argv[1] (or every case when there is no argument) and returns the
 * process exit status. The exit status 77 means "skipped" (CTest SKIP_RETURN_CODE). */
int tu_main(int argc, char **argv, const tu_case *cases, size_t ncases);

/* Print "SKIPPED: <why>" and end the case with exit status 77. */
void tu_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- Checks ----------------------------------------------------------------------- */

void tu_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond))                                                                      \
            tu_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);                      \
    } while (0)

/* Compare two integers (any integer type, compared as int64_t) and print both. */
#define CHECK_EQ(a, b)                                                                    \
    do {                                                                                  \
        int64_t tu_a_ = (int64_t)(a), tu_b_ = (int64_t)(b);                               \
        if (tu_a_ != tu_b_)                                                               \
            tu_fail(__FILE__, __LINE__, "CHECK_EQ(%s, %s) failed: %lld != %lld", #a, #b,  \
                    (long long)tu_a_, (long long)tu_b_);                                  \
    } while (0)

/* An fdsend call's result equals an expected value or FDSEND_E* code (printed by name). */
#define CHECK_RC(expr, expected)                                                          \
    do {                                                                                  \
        int64_t tu_r_ = (int64_t)(expr), tu_e_ = (int64_t)(expected);                     \
        if (tu_r_ != tu_e_)                                                               \
            tu_fail(__FILE__, __LINE__, "%s returned %lld (%s), expected %lld (%s)",      \
                    #expr, (long long)tu_r_, tu_describe(tu_r_), (long long)tu_e_,       \
                    tu_describe(tu_e_));                                                  \
    } while (0)

/* A POSIX call succeeded (returned something other than -1); prints errno otherwise. */
#define CHECK_SYS(expr)                                                                   \
    do {                                                                                  \
        if ((expr) == -1)                                                                 \
            tu_fail(__FILE__, __LINE__, "%s failed: %s", #expr, tu_errno_text());         \
    } while (0)

#define CHECK_MEM(a, b, n)                                                                \
    do {                                                                                  \
        if (memcmp((a), (b), (n)) != 0)                                                   \
            tu_fail(__FILE__, __LINE__, "CHECK_MEM(%s, %s, %s) failed", #a, #b, #n);      \
    } while (0)

const char *tu_describe(int64_t rc); /* "ok/bytes" or the FDSEND_E* name */
const char *tu_errno_text(void);

/* ---- Descriptors ------------------------------------------------------------------ */

/* Number of open descriptors of this process (/proc/self/fd, else /dev/fd). */
int tu_count_fds(void);
/* Whether fd is open. */
int tu_fd_is_open(int fd);
/* Whether a and b refer to the same open file (same st_dev and st_ino). */
int tu_same_file(int a, int b);
/* Whether FD_CLOEXEC is set on fd. */
int tu_cloexec(int fd);
/* Close n descriptors (intptr_t, as fdsend hands them out). */
void tu_close_all(const intptr_t *fds, int n);

/* socketpair(AF_UNIX, type) with both ends close-on-exec; fails the test on error, and
 * skips it where the system has no such Unix socket type (SOCK_SEQPACKET on macOS). */
void tu_socketpair(int type, int sv[2]);
/* The same, for a case that loops over socket types: returns 0, with a note, where the
 * system has no such Unix socket type (the caller goes on with the next type). */
int tu_try_socketpair(int type, int sv[2]);
/* Whether this system has Unix sockets of this type (a note says so when it has not). */
int tu_have_socket_type(int type);
/* Set or clear O_NONBLOCK. */
void tu_set_nonblocking(int fd, int on);

/* A private directory for this case's files (mkdtemp, relative to the working
 * directory, which CTest sets inside the build tree); removed with its files at exit. */
const char *tu_tempdir(void);
/* A path inside tu_tempdir() (static buffer, valid until the next call). */
const char *tu_temppath(const char *name);
/* A new, already unlinked regular file holding content; returns its descriptor. */
int tu_temp_file(const char *content);
/* Read a whole small file from offset 0 (pread) into buf (NUL-terminated). */
void tu_read_file(int fd, char *buf, size_t size);

/* ---- Processes -------------------------------------------------------------------- */

/* fork(); in the child, run fn(arg) and _exit(0) (a failing check _exits non-zero). */
pid_t tu_fork(void (*fn)(void *), void *arg);
/* Wait for pid and fail the test unless it exited normally with status 0. */
void tu_wait_ok(pid_t pid);
/* Sleep for ms milliseconds. */
void tu_sleep_ms(int ms);
/* True when running under valgrind (it virtualises some limits). */
int tu_under_valgrind(void);

/* ---- Time and waiting -------------------------------------------------------------- */

/* CLOCK_MONOTONIC in milliseconds. */
double tu_now_ms(void);
/* Set SO_RCVTIMEO or SO_SNDTIMEO (opt) of fd to ms milliseconds. */
void tu_set_timeout_ms(int fd, int opt, int ms);
/* Bytes queued for reading on sock (FIONREAD). */
int tu_pending(int sock);
/* Fail the test (from a thread of its own, every signal blocked there) if the case is
 * still running after `seconds`: a call that should have timed out hangs instead. */
void tu_watchdog(int seconds, const char *what);

/* ---- Reliability programs (tests/torture, tests/interop) ------------------------------
 * These do not end the process on failure (except tu_count_fds, which fails the test
 * when the descriptor table cannot be listed): they return -1 with errno set. */

/* CLOCK_MONOTONIC in seconds. */
double tu_now_s(void);
/* Print the open descriptors of this process (with their targets where /proc/self/fd
 * names them), for a leak report. */
void tu_fd_dump(FILE *out, const char *who);
/* Bind and listen on a Unix socket of this type at path (removing a stale one). */
int tu_listen_unix(const char *path, int type);
/* Connect to a Unix socket at path, retrying for up to timeout_s seconds while nobody
 * listens there yet. */
int tu_connect_unix(const char *path, int type, double timeout_s);

/* The 8-byte frame header of the message channel (docs/wire-format.md): version, flags,
 * u16 descriptor count, u32 payload length, little-endian; for raw peers that write
 * frames by hand. */
void tu_frame_header(unsigned char h[8], unsigned version, unsigned flags, uint32_t nfds,
                     uint32_t len);

/* xorshift64* seeded through splitmix64: a fast deterministic generator both ends of a
 * test can replay (tests/FdSend.Reliability/TortureProtocol.cs is its C# port). Inline:
 * the torture schedule draws several numbers per message. */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;

static inline void tu_rng_seed(tu_rng *r, uint64_t seed)
{
    uint64_t z = seed + 0x9E3779B97F4A7C15ull; /* splitmix64 of the seed, never zero */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    r->s = z ? z : 0x1234567ull;
}

static inline uint64_t tu_rng_next(tu_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, n) (n > 0). */
static inline uint32_t tu_rng_below(tu_rng *r, uint32_t n)
{
    return (uint32_t)((tu_rng_next(r) >> 32) * (uint64_t)n >> 32);
}

/* ---- Linux only (testutil_linux.c) ------------------------------------------------ */
#if defined(__linux__)
/* Resident set size of this process in KiB (/proc/self/statm), -1 if unreadable. */
long tu_rss_kib(void);
#endif

#endif /* FDSEND_TESTUTIL_H */
