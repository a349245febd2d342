/* The readiness engine (fdsend_poller_*), black-box through the shared library: tokens
 * come back with the right direction, edge-triggered and one-shot registrations report
 * once, wake-ups, removal, close-on-exec, errors, and many registrations at once.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"
#include "fdsend.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static intptr_t make_poller(void)
{
    intptr_t p = 0;
    CHECK_RC(fdsend_poller_create(&p), FDSEND_OK);
    CHECK(p != 0);
    return p;
}

static void pair(int sv[2])
{
    CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
}

/* Ask for up to 16 events; returns the count. */
static int wait_events(intptr_t p, fdsend_poll_event *ev, int timeout_ms)
{
    int32_t n = fdsend_poller_wait(p, ev, 16, timeout_ms);
    CHECK(n >= 0);
    return (int)n;
}

TEST(readable_reports_token)
{
    intptr_t p = make_poller();
    fdsend_poll_event ev[16];
    int sv[2];
    pair(sv);
    CHECK_RC(fdsend_poller_add(p, sv[1], FDSEND_POLL_IN | FDSEND_POLL_EDGE, 42), FDSEND_OK);
    CHECK_EQ(wait_events(p, ev, 0), 0);
    CHECK_EQ(write(sv[0], "x", 1), 1);
    CHECK_EQ(wait_events(p, ev, 5000), 1);
    CHECK_EQ(ev[0].token, 42);
    CHECK(ev[0].events & FDSEND_POLL_IN);
    CHECK(!(ev[0].events & FDSEND_POLL_ERR));
    /* edge-triggered: no new data, no new report */
    CHECK_EQ(wait_events(p, ev, 0), 0);
    CHECK_EQ(write(sv[0], "y", 1), 1);
    CHECK_EQ(wait_events(p, ev, 5000), 1);
    CHECK_RC(fdsend_poller_remove(p, sv[1]), FDSEND_OK);
    CHECK_RC(fdsend_poller_remove(p, sv[1]), FDSEND_ENOENT);
    close(sv[0]);
    close(sv[1]);
    CHECK_RC(fdsend_poller_destroy(p), FDSEND_OK);
}

TEST(oneshot_rearms_with_modify)
{
    intptr_t p = make_poller();
    fdsend_poll_event ev[16];
    int sv[2];
    pair(sv);
    CHECK_RC(fdsend_poller_add(p, sv[1], FDSEND_POLL_IN | FDSEND_POLL_ONESHOT, 7), FDSEND_OK);
    CHECK_EQ(write(sv[0], "x", 1), 1);
    CHECK_EQ(wait_events(p, ev, 5000), 1);
    CHECK_EQ(ev[0].token, 7);
    /* still readable, but disarmed */
    CHECK_EQ(wait_events(p, ev, 0), 0);
    CHECK_RC(fdsend_poller_modify(p, sv[1], FDSEND_POLL_IN | FDSEND_POLL_ONESHOT, 8), FDSEND_OK);
    CHECK_EQ(wait_events(p, ev, 5000), 1);
    CHECK_EQ(ev[0].token, 8);
    close(sv[0]);
    close(sv[1]);
    CHECK_RC(fdsend_poller_destroy(p), FDSEND_OK);
}

TEST(writable_and_hangup)
{
    intptr_t p = make_poller();
    fdsend_poll_event ev[16];
    int sv[2];
    pair(sv);
    CHECK_RC(fdsend_poller_add(p, sv[0], FDSEND_POLL_OUT | FDSEND_POLL_EDGE, 1), FDSEND_OK);
    CHECK_EQ(wait_events(p, ev, 5000), 1);
    CHECK(ev[0].events & FDSEND_POLL_OUT);
    CHECK_RC(fdsend_poller_modify(p, sv[0], FDSEND_POLL_IN | FDSEND_POLL_OUT | FDSEND_POLL_EDGE, 2), FDSEND_OK);
    while (wait_events(p, ev, 0) > 0) {
    }
    close(sv[1]); /* the peer goes: readable (end of stream) with an error/hang-up bit */
    CHECK_EQ(wait_events(p, ev, 5000), 1);
    CHECK_EQ(ev[0].token, 2);
    CHECK(ev[0].events & FDSEND_POLL_IN);
    close(sv[0]);
    CHECK_RC(fdsend_poller_destroy(p), FDSEND_OK);
}

TEST(shutdown_wakes_a_reader)
{
    intptr_t p = make_poller();
    fdsend_poll_event ev[16];
    int sv[2];
    pair(sv);
    CHECK_RC(fdsend_poller_add(p, sv[1], FDSEND_POLL_IN | FDSEND_POLL_EDGE, 5), FDSEND_OK);
    CHECK_SYS(shutdown(sv[1], SHUT_RDWR));
    CHECK_EQ(wait_events(p, ev, 5000), 1);
    CHECK_EQ(ev[0].token, 5);
    close(sv[0]);
    close(sv[1]);
    CHECK_RC(fdsend_poller_destroy(p), FDSEND_OK);
}

static void *waker(void *arg)
{
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    fdsend_poller_wake((intptr_t)arg);
    return NULL;
}

TEST(wake_interrupts_a_wait)
{
    intptr_t p = make_poller();
    fdsend_poll_event ev[16];
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, waker, (void *)p), 0);
    CHECK_EQ(wait_events(p, ev, 30000), 0); /* returns early, reports nothing */
    CHECK_EQ(pthread_join(t, NULL), 0);
    /* a wake before the wait: the next wait returns at once; several coalesce */
    CHECK_RC(fdsend_poller_wake(p), FDSEND_OK);
    CHECK_RC(fdsend_poller_wake(p), FDSEND_OK);
    CHECK_EQ(wait_events(p, ev, 30000), 0);
    CHECK_EQ(wait_events(p, ev, 0), 0);
    CHECK_RC(fdsend_poller_destroy(p), FDSEND_OK);
}

TEST(small_max_keeps_the_rest)
{
    intptr_t p = make_poller();
    fdsend_poll_event ev[1];
    int a[2], b[2], seen = 0, i;
    pair(a);
    pair(b);
    CHECK_RC(fdsend_poller_add(p, a[1], FDSEND_POLL_IN | FDSEND_POLL_EDGE, 1), FDSEND_OK);
    CHECK_RC(fdsend_poller_add(p, b[1], FDSEND_POLL_IN | FDSEND_POLL_EDGE, 2), FDSEND_OK);
    CHECK_EQ(write(a[0], "x", 1), 1);
    CHECK_EQ(write(b[0], "x", 1), 1);
    for (i = 0; i < 2; i++) {
        CHECK_EQ(fdsend_poller_wait(p, ev, 1, 5000), 1);
        seen |= 1 << (int)ev[0].token;
    }
    CHECK_EQ(seen, 6);
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
    CHECK_RC(fdsend_poller_destroy(p), FDSEND_OK);
}

TEST(many_registrations)
{
    enum { N = 500 };
    static int sv[N][2];
    intptr_t p = make_poller();
    fdsend_poll_event ev[16];
    int i, total = 0;
    for (i = 0; i < N; i++) {
        pair(sv[i]);
        CHECK_RC(fdsend_poller_add(p, sv[i][1], FDSEND_POLL_IN | FDSEND_POLL_EDGE, (uint64_t)i), FDSEND_OK);
    }
    for (i = 0; i < N; i += 2)
        CHECK_EQ(write(sv[i][0], "x", 1), 1);
    for (;;) {
        int n = wait_events(p, ev, 1000), k;
        if (n == 0)
            break;
        for (k = 0; k < n; k++)
            CHECK_EQ(ev[k].token % 2, 0);
        total += n;
    }
    CHECK_EQ(total, N / 2);
    for (i = 0; i < N; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    CHECK_RC(fdsend_poller_destroy(p), FDSEND_OK);
}

TEST(close_on_exec_and_no_leak)
{
    static char was_open[1024];
    int before = tu_count_fds(), fd, opened = 0;
    intptr_t p;
    for (fd = 0; fd < 1024; fd++)
        was_open[fd] = fcntl(fd, F_GETFD) >= 0;
    p = make_poller();
    /* every descriptor the poller opened is close-on-exec */
    for (fd = 0; fd < 1024; fd++) {
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0 && !was_open[fd]) {
            CHECK((fl & FD_CLOEXEC) != 0);
            opened++;
        }
    }
    CHECK(opened > 0);
    CHECK_RC(fdsend_poller_destroy(p), FDSEND_OK);
    CHECK_EQ(tu_count_fds(), before);
}

TEST(bad_arguments)
{
    intptr_t p = make_poller();
    fdsend_poll_event ev[1];
    int sv[2];
    pair(sv);
    CHECK_RC(fdsend_poller_create(NULL), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_add(p, -1, FDSEND_POLL_IN, 0), FDSEND_EBADF);
    CHECK_RC(fdsend_poller_add(p, sv[0], 0x80000, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_add(p, sv[0], FDSEND_POLL_IN | FDSEND_POLL_EDGE | FDSEND_POLL_ONESHOT, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_add(p, sv[0], FDSEND_POLL_IN, 0), FDSEND_OK);
    CHECK_RC(fdsend_poller_add(p, sv[0], FDSEND_POLL_IN, 0), FDSEND_EINVAL); /* already there */
    CHECK_RC(fdsend_poller_modify(p, sv[1], FDSEND_POLL_IN, 0), FDSEND_ENOENT);
    CHECK_RC(fdsend_poller_wait(p, NULL, 1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_wait(p, ev, 0, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_wait(0, ev, 1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_destroy(0), FDSEND_EINVAL);
    close(sv[0]);
    close(sv[1]);
    CHECK_RC(fdsend_poller_destroy(p), FDSEND_OK);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(readable_reports_token),
        CASE(oneshot_rearms_with_modify),
        CASE(writable_and_hangup),
        CASE(shutdown_wakes_a_reader),
        CASE(wake_interrupts_a_wait),
        CASE(small_max_keeps_the_rest),
        CASE(many_registrations),
        CASE(close_on_exec_and_no_leak),
        CASE(bad_arguments),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
