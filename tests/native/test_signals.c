/* The peer goes away, a signal arrives: no SIGPIPE ever, EINTR retried inside.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Make sure SIGPIPE has its default action (kill the process) and is not blocked: that
 * is what a plain C caller has, and what the library must never trigger. */
static void default_sigpipe(void)
{
    sigset_t set;
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    CHECK_SYS(sigprocmask(SIG_UNBLOCK, &set, NULL));
}

static void epipe_child(void *arg)
{
    int type = *(int *)arg;
    int sv[2];
    intptr_t fd;

    default_sigpipe();
    tu_socketpair(type, sv);
    fd = tu_temp_file("epipe");
    close(sv[1]);
    errno = 0;
    CHECK_RC(fdsend_send(sv[0], "data", 4, NULL, 0, 0), FDSEND_EPIPE);
    CHECK_EQ(errno, EPIPE);
    CHECK_EQ(fdsend_last_os_error(), EPIPE);
    CHECK_RC(fdsend_send(sv[0], "data", 4, &fd, 1, 0), FDSEND_EPIPE);
    CHECK_RC(fdsend_send(sv[0], NULL, 0, &fd, 1, 0), FDSEND_EPIPE);
    CHECK_RC(fdsend_send(sv[0], NULL, 0, &fd, 1, FDSEND_DONTWAIT), FDSEND_EPIPE);
    close((int)fd);
    close(sv[0]);
}

/* Sending to a closed peer gives FDSEND_EPIPE and the process lives (SIGPIPE at its
 * default disposition), on stream and seqpacket sockets, with and without fds. */
TEST(epipe_without_sigpipe)
{
    int types[2] = {SOCK_STREAM, SOCK_SEQPACKET}, i;
    for (i = 0; i < 2; i++) {
        if (tu_have_socket_type(types[i]))
            tu_wait_ok(tu_fork(epipe_child, &types[i]));
    }
}

/* The peer closed with our data still unread in its queue: the kernel resets the
 * connection, reported as FDSEND_ECONNRESET; then end of stream. */
TEST(econnreset)
{
    int sv[2];
    char buf[8];
    int32_t n = -1;
    uint32_t rflags = 99;

    tu_socketpair(SOCK_STREAM, sv);
    CHECK_EQ(write(sv[0], "unread", 6), 6);
    close(sv[1]);
    CHECK_RC(fdsend_recv(sv[0], buf, sizeof buf, NULL, 0, &n, &rflags, 0),
             FDSEND_ECONNRESET);
    CHECK_EQ(n, 0);
    CHECK_EQ(rflags, 0);
    CHECK_RC(fdsend_recv(sv[0], buf, sizeof buf, NULL, 0, &n, &rflags, 0), 0);
    CHECK_EQ(rflags, FDSEND_RECV_END_OF_STREAM);
    close(sv[0]);
}

/* ---- EINTR ------------------------------------------------------------------------ */

static volatile sig_atomic_t signals_seen;

static void on_sigusr1(int sig)
{
    (void)sig;
    signals_seen++;
}

/* Whether process pid is asleep (state S in /proc/<pid>/stat); -1 without /proc. */
static int process_sleeping(pid_t pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    size_t len;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    p = strrchr(buf, ')'); /* the state follows the command name in parentheses */
    return p != NULL && p[1] == ' ' && p[2] == 'S';
}

typedef struct eintr_ctx {
    int sock;
    pid_t parent;
    intptr_t fd;
} eintr_ctx;

static void eintr_child(void *arg)
{
    eintr_ctx *c = arg;
    int i, asleep = 0;
    /* Wait until the parent has been asleep (blocked in recvmsg) for a while, then
     * interrupt it twice, and only then send. */
    for (i = 0; i < 1000 && asleep < 5; i++) {
        int s = process_sleeping(c->parent);
        if (s < 0) {
            tu_sleep_ms(300);
            break;
        }
        asleep = s ? asleep + 1 : 0;
        tu_sleep_ms(10);
    }
    CHECK_SYS(kill(c->parent, SIGUSR1));
    tu_sleep_ms(100);
    CHECK_SYS(kill(c->parent, SIGUSR1));
    tu_sleep_ms(100);
    CHECK_RC(fdsend_send(c->sock, "late", 4, &c->fd, 1, 0), 4);
}

/* A signal handled without SA_RESTART arrives while fdsend_recv is blocked: the library
 * retries, keeps waiting, and returns the message that comes later. */
TEST(eintr_during_blocking_recv)
{
    struct sigaction sa;
    eintr_ctx c;
    int sv[2];
    pid_t pid;
    intptr_t got[2];
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[8];

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sa.sa_flags = 0; /* no SA_RESTART: the kernel returns EINTR from recvmsg */
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
    tu_socketpair(SOCK_STREAM, sv);
    c.sock = sv[1];
    c.parent = getpid();
    c.fd = tu_temp_file("eintr");
    pid = tu_fork(eintr_child, &c);
    CHECK_RC(fdsend_recv(sv[0], buf, sizeof buf, got, 2, &n, &rflags, 0), 4);
    CHECK_MEM(buf, "late", 4);
    CHECK_EQ(n, 1);
    CHECK(tu_same_file((int)got[0], (int)c.fd));
    CHECK_EQ(signals_seen, 2);
    close((int)got[0]);
    tu_wait_ok(pid);
    close((int)c.fd);
    close(sv[0]);
    close(sv[1]);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(epipe_without_sigpipe),
        CASE(econnreset),
        CASE(eintr_during_blocking_recv),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
