/* The small harness of the Windows C tests (test_win.c, test_win_record.c): TEST/CASE
 * and CHECK macros that print where a check failed and exit the process with 1.
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_WIN_HARNESS_H
#define FDSEND_WIN_HARNESS_H

#ifndef WIN32_LEAN_AND_MEAN
#  define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <windows.h>

#include "fdsend.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TEST(name) static void test_##name(void)
#define CASE(name) { #name, test_##name }

static void fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (GetLastError %lu, WSAGetLastError %d, fdsend_last_os_error %d)\n",
            GetLastError(), WSAGetLastError(), fdsend_last_os_error());
    fflush(stderr);
    ExitProcess(1);
}

#define CHECK(c)                                                                          \
    do {                                                                                  \
        if (!(c))                                                                         \
            fail_at(__FILE__, __LINE__, "CHECK(%s) failed", #c);                          \
    } while (0)
#define CHECK_EQ(a, b)                                                                    \
    do {                                                                                  \
        long long a_ = (long long)(a), b_ = (long long)(b);                               \
        if (a_ != b_)                                                                     \
            fail_at(__FILE__, __LINE__, "CHECK_EQ(%s, %s): %lld != %lld", #a, #b, a_, b_); \
    } while (0)
#define CHECK_RC(expr, want)                                                              \
    do {                                                                                  \
        long long r_ = (long long)(expr), w_ = (long long)(want);                         \
        if (r_ != w_)                                                                     \
            fail_at(__FILE__, __LINE__, "%s returned %lld (%s), expected %lld (%s)",     \
                    #expr, r_, fdsend_strerror((int32_t)r_), w_,                          \
                    fdsend_strerror((int32_t)w_));                                        \
    } while (0)

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

/* Run the case named only (every case when only is NULL); 0 when one ran and passed (a
 * failed check has already ended the process), 2 when none has that name. */
static inline int run_cases(const test_case *cases, size_t n, const char *only)
{
    size_t i;
    int ran = 0;
    for (i = 0; i < n; i++) {
        if (only != NULL && strcmp(only, cases[i].name) != 0)
            continue;
        printf("case %s\n", cases[i].name);
        fflush(stdout);
        cases[i].fn();
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no case named %s\n", only != NULL ? only : "(none)");
        return 2;
    }
    printf("%d passed, 0 failed\n", ran);
    return 0;
}

#endif /* FDSEND_WIN_HARNESS_H */
