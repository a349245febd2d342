/* A tiny test harness for the fault-injection and hostile-peer programs: every case runs
 * in its own forked process (so that rlimits, uids, signal handlers and threads of one
 * case cannot touch another), must leave that process's descriptor table as it found it,
 * and ends with ok / not ok / SKIPPED. The program prints "N passed, N failed, N skipped"
 * and exits 1 if any case failed. Built on the C test-support library (testutil.h); like
 * the programs that use it, Linux-only (mkostemp, /proc).
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_TESTCASE_H
#define FDSEND_TESTCASE_H

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

#include <signal.h>
#include <sys/wait.h>

#define TC_SKIP 77

typedef struct tc_case {
    const char *name;
    int (*fn)(void);
} tc_case;

static const char *tc_current = "?";

/* Fail the current case (in its own process). */
#define TC_FAIL(...)                                                                      \
    do {                                                                                  \
        printf("    %s:%d: ", __FILE__, __LINE__);                                        \
        printf(__VA_ARGS__);                                                              \
        printf("\n");                                                                     \
        fflush(stdout);                                                                   \
        _exit(1);                                                                         \
    } while (0)

/* Print the optional detail of a failed check (a format and its arguments, or nothing). */
static inline void tc_detail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

#define TC_CHECK(cond, ...)                                                               \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            printf("    %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);           \
            tc_detail("" __VA_ARGS__);                                                    \
            printf("\n");                                                                 \
            fflush(stdout);                                                               \
            _exit(1);                                                                     \
        }                                                                                 \
    } while (0)

#define TC_SKIPPED(...)                                                                   \
    do {                                                                                  \
        printf("SKIPPED: %s: ", tc_current);                                              \
        printf(__VA_ARGS__);                                                              \
        printf("\n");                                                                     \
        fflush(stdout);                                                                   \
        _exit(TC_SKIP);                                                                   \
    } while (0)

static inline void tc_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("    ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

/* Identity of a descriptor: st_dev and st_ino. */
typedef struct tc_id {
    uint64_t dev, ino;
} tc_id;

static inline tc_id tc_identity(int fd)
{
    struct stat st;
    tc_id id = {0, 0};
    if (fstat(fd, &st) == 0) {
        id.dev = (uint64_t)st.st_dev;
        id.ino = (uint64_t)st.st_ino;
    }
    return id;
}

static inline int tc_same(tc_id a, tc_id b) { return a.dev == b.dev && a.ino == b.ino; }

/* A fresh unlinked temporary file. */
static inline int tc_tempfile(void)
{
    char tmpl[] = "/tmp/fdsend-rel-XXXXXX";
    int fd = mkostemp(tmpl, O_CLOEXEC);
    if (fd < 0)
        TC_FAIL("mkostemp: %s", strerror(errno));
    unlink(tmpl);
    return fd;
}

/* Run the cases named on the command line (all if none), each in a child process. */
static inline int tc_main(const char *prog, const tc_case *cases, int ncases, int argc,
                          char **argv)
{
    int i, passed = 0, failed = 0, skipped = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (i = 0; i < ncases; i++) {
        int j, wanted = argc <= 1, st;
        pid_t pid;
        double t0 = tu_now_s();
        for (j = 1; j < argc; j++)
            wanted |= strcmp(argv[j], cases[i].name) == 0;
        if (!wanted)
            continue;
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            int before, after, rc;
            tc_current = cases[i].name;
            alarm(60); /* a hung case fails instead of hanging the suite */
            before = tu_count_fds();
            rc = cases[i].fn();
            after = tu_count_fds();
            if (rc == 0 && before != after) {
                tu_fd_dump(stdout, cases[i].name);
                printf("    descriptor leak: %d open before the case, %d after\n", before, after);
                rc = 1;
            }
            fflush(stdout);
            _exit(rc);
        }
        if (pid < 0 || waitpid(pid, &st, 0) != pid) {
            printf("not ok - %s (fork/wait: %s)\n", cases[i].name, strerror(errno));
            failed++;
        } else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("ok - %s (%.2f s)\n", cases[i].name, tu_now_s() - t0);
            passed++;
        } else if (WIFEXITED(st) && WEXITSTATUS(st) == TC_SKIP) {
            skipped++;
        } else {
            if (WIFSIGNALED(st))
                printf("not ok - %s (killed by signal %d: %s)\n", cases[i].name, WTERMSIG(st),
                       strsignal(WTERMSIG(st)));
            else
                printf("not ok - %s (exit %d)\n", cases[i].name, WEXITSTATUS(st));
            failed++;
        }
    }
    printf("%s: %d passed, %d failed, %d skipped\n", prog, passed, failed, skipped);
    return failed ? 1 : 0;
}

#endif /* FDSEND_TESTCASE_H */
