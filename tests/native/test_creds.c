/* fdsend_peer_credentials: who is at the other end.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Over a socketpair the peer is this very process (the kernel records the credentials
 * of whoever created the pair; uid/gid are the effective ids). NULL out-pointers are
 * allowed. */
TEST(socketpair_is_self)
{
    int types[3] = {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM}, t;
    for (t = 0; t < 3; t++) {
        int sv[2];
        int64_t pid = 0, uid = 0, gid = 0;
        if (!tu_try_socketpair(types[t], sv))
            continue;
        CHECK_RC(fdsend_peer_credentials(sv[0], &pid, &uid, &gid), FDSEND_OK);
        CHECK_EQ(pid, getpid());
        CHECK_EQ(uid, getuid());
        CHECK_EQ(gid, getgid());
        CHECK_EQ(uid, geteuid());
        CHECK_EQ(gid, getegid());
        CHECK_EQ(fdsend_last_os_error(), 0);
        CHECK_RC(fdsend_peer_credentials(sv[1], NULL, &uid, NULL), FDSEND_OK);
        CHECK_EQ(uid, geteuid());
        CHECK_RC(fdsend_peer_credentials(sv[1], NULL, NULL, NULL), FDSEND_OK);
        close(sv[0]);
        close(sv[1]);
    }
}

static void unix_address(const char *path, struct sockaddr_un *addr)
{
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    CHECK(strlen(path) < sizeof addr->sun_path);
    strcpy(addr->sun_path, path);
}

typedef struct connect_ctx {
    const char *path;
    pid_t parent;
} connect_ctx;

static void connect_child(void *arg)
{
    connect_ctx *c = arg;
    struct sockaddr_un addr;
    int64_t pid = 0, uid = 0, gid = 0;
    char byte;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(s);
    unix_address(c->path, &addr);
    CHECK_SYS(connect(s, (struct sockaddr *)&addr, sizeof addr));
    /* The client sees the listener: the parent. */
    CHECK_RC(fdsend_peer_credentials(s, &pid, &uid, &gid), FDSEND_OK);
    CHECK_EQ(pid, c->parent);
    CHECK_EQ(uid, geteuid());
    CHECK_EQ(gid, getegid());
    CHECK_EQ(write(s, "k", 1), 1);
    CHECK_EQ(read(s, &byte, 1), 1); /* stay connected until the parent has looked */
    close(s);
}

/* Through fork() and connect(): the accepting side sees the child's pid, the child sees
 * the parent's. */
TEST(connected_child_pid)
{
    struct sockaddr_un addr;
    connect_ctx c;
    int lsn, conn;
    int64_t pid = 0, uid = 0, gid = 0;
    char byte;
    pid_t child;

    c.path = tu_temppath("creds.sock");
    c.parent = getpid();
    lsn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(lsn);
    unix_address(c.path, &addr);
    CHECK_SYS(bind(lsn, (struct sockaddr *)&addr, sizeof addr));
    CHECK_SYS(listen(lsn, 1));
    child = tu_fork(connect_child, &c);
    conn = accept(lsn, NULL, NULL);
    CHECK_SYS(conn);
    CHECK_EQ(read(conn, &byte, 1), 1);
    CHECK_RC(fdsend_peer_credentials(conn, &pid, &uid, &gid), FDSEND_OK);
    CHECK_EQ(pid, child);
    CHECK(pid != getpid());
    CHECK_EQ(uid, geteuid());
    CHECK_EQ(gid, getegid());
    CHECK_EQ(write(conn, "k", 1), 1);
    tu_wait_ok(child);
    close(conn);
    close(lsn);
}

/* No peer: an unconnected Unix socket gives FDSEND_ENOTCONN (Linux answers SO_PEERCRED
 * there with pid 0 and uid/gid -1, which must not pass for credentials); a TCP socket
 * FDSEND_ENOTUNIX; a pipe FDSEND_ENOTSOCK; a bad number FDSEND_EBADF. The out-values are
 * set to -1 on every failure. */
TEST(no_peer)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), p[2];
    int64_t pid = 5, uid = 5, gid = 5;
    CHECK_SYS(s);
    CHECK_RC(fdsend_peer_credentials(s, &pid, &uid, &gid), FDSEND_ENOTCONN);
    CHECK_EQ(pid, -1);
    CHECK_EQ(uid, -1);
    CHECK_EQ(gid, -1);
    CHECK_EQ(fdsend_last_os_error(), ENOTCONN);
    close(s);

    /* A datagram socket connect()ed to a bound one: the kernel records no credentials. */
    {
        struct sockaddr_un addr;
        int rx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int tx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        CHECK_SYS(rx);
        CHECK_SYS(tx);
        unix_address(tu_temppath("dgram.sock"), &addr);
        CHECK_SYS(bind(rx, (struct sockaddr *)&addr, sizeof addr));
        CHECK_SYS(connect(tx, (struct sockaddr *)&addr, sizeof addr));
        pid = 5;
        CHECK_RC(fdsend_peer_credentials(tx, &pid, &uid, &gid), FDSEND_ENOTCONN);
        CHECK_EQ(pid, -1);
        close(tx);
        close(rx);
    }

    s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
        CHECK_RC(fdsend_peer_credentials(s, &pid, &uid, &gid), FDSEND_ENOTUNIX);
        close(s);
    }
    CHECK_SYS(pipe(p));
    CHECK_RC(fdsend_peer_credentials(p[0], &pid, &uid, &gid), FDSEND_ENOTSOCK);
    CHECK_RC(fdsend_peer_credentials(-1, &pid, &uid, &gid), FDSEND_EBADF);
    CHECK_RC(fdsend_peer_credentials((intptr_t)INT32_MAX + 1, &pid, &uid, &gid),
             FDSEND_EBADF);
    CHECK_EQ(pid, -1);
    close(p[0]);
    CHECK_RC(fdsend_peer_credentials(p[0], &pid, &uid, &gid), FDSEND_EBADF);
    close(p[1]);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(socketpair_is_self),
        CASE(connected_child_pid),
        CASE(no_peer),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
