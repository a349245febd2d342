/* fdsend_send_to: descriptors in a datagram to a socket named by a path (what
 * sd_notify's FDSTORE=1 does), filesystem and Linux abstract names, and its errors.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A datagram socket bound to path ('@' first: a Linux abstract name). */
static int bound_dgram(const char *path)
{
    struct sockaddr_un addr;
    socklen_t len;
    size_t plen = strlen(path);
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(s);
    CHECK(path[0] == '@' ? plen <= sizeof addr.sun_path : plen < sizeof addr.sun_path);
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, plen);
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
    if (path[0] == '@') {
        addr.sun_path[0] = '\0';
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    }
    CHECK_SYS(bind(s, (struct sockaddr *)&addr, len));
    return s;
}

static int unbound_dgram(void)
{
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(s);
    return s;
}

/* Send data + fd, and a zero-length datagram with an fd, to path; receive both. */
static void send_to_and_receive(const char *path)
{
    int rx = bound_dgram(path), tx = unbound_dgram(), before;
    intptr_t file = tu_temp_file("by path"), got[2];
    int32_t n;
    uint32_t rflags;
    char buf[32];

    before = tu_count_fds();
    CHECK_RC(fdsend_send_to(tx, path, "notify", 6, &file, 1, 0), 6);
    CHECK_RC(fdsend_send_to(tx, path, NULL, 0, &file, 1, 0), 0);
    CHECK_RC(fdsend_send_to(tx, path, "FDSTORE=1", 9, NULL, 0, 0), 9);
    CHECK_RC(fdsend_recv(rx, buf, sizeof buf, got, 2, &n, &rflags, 0), 6);
    CHECK_MEM(buf, "notify", 6);
    CHECK_EQ(n, 1);
    CHECK_EQ(rflags, 0);
    CHECK(tu_same_file((int)got[0], (int)file));
    close((int)got[0]);
    CHECK_RC(fdsend_recv(rx, buf, sizeof buf, got, 2, &n, &rflags, 0), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(rflags, 0);
    close((int)got[0]);
    CHECK_RC(fdsend_recv(rx, buf, sizeof buf, got, 2, &n, &rflags, 0), 9);
    CHECK_EQ(n, 0);
    CHECK_EQ(tu_count_fds(), before);
    close((int)file);
    close(tx);
    close(rx);
}

/* A socket bound in the filesystem receives a datagram sent to its path. */
TEST(send_to_filesystem_path)
{
    send_to_and_receive(tu_temppath("rx.sock"));
}

/* On Linux, "@name" is the abstract name "\0name" (as sd_notify reads NOTIFY_SOCKET). */
TEST(send_to_abstract_name)
{
#if defined(__linux__)
    char name[64];
    snprintf(name, sizeof name, "@fdsend-test-%d-abstract", (int)getpid());
    send_to_and_receive(name);
    /* No file of that name was created. */
    CHECK(access(name, F_OK) != 0);
#else
    tu_skip("abstract socket names are Linux-only");
#endif /* defined(__linux__) */
}

/* The longest abstract name: '@' + 107 bytes fills sun_path[108] (no terminating NUL),
 * so it is accepted and delivered; one byte more is FDSEND_ENAMETOOLONG. */
TEST(send_to_longest_abstract_name)
{
#if defined(__linux__)
    struct sockaddr_un addr;
    char name[sizeof addr.sun_path + 2];
    int tx = unbound_dgram();
    int len = snprintf(name, sizeof name, "@fdsend-test-%d-", (int)getpid());
    memset(name + len, 'z', sizeof name - (size_t)len);
    name[sizeof addr.sun_path] = '\0'; /* '@' + 107 bytes */
    send_to_and_receive(name);
    name[sizeof addr.sun_path] = 'z';
    name[sizeof addr.sun_path + 1] = '\0'; /* '@' + 108 bytes */
    CHECK_RC(fdsend_send_to(tx, name, "x", 1, NULL, 0, 0), FDSEND_ENAMETOOLONG);
    CHECK_EQ(errno, ENAMETOOLONG);
    close(tx);
#else
    tu_skip("abstract socket names are Linux-only");
#endif /* defined(__linux__) */
}

/* Nobody there: a path that does not exist is FDSEND_ENOENT; a socket file whose socket
 * was closed, or an abstract name nobody bound, is FDSEND_ECONNREFUSED. Nothing leaks. */
TEST(send_to_nobody)
{
    int tx = unbound_dgram(), rx, before;
    intptr_t file = tu_temp_file("x");
    const char *gone;

    before = tu_count_fds();
    CHECK_RC(fdsend_send_to(tx, tu_temppath("missing.sock"), "x", 1, &file, 1, 0),
             FDSEND_ENOENT);
    CHECK_EQ(errno, ENOENT);
    CHECK_EQ(fdsend_last_os_error(), ENOENT);
    gone = tu_temppath("closed.sock");
    rx = bound_dgram(gone);
    close(rx);
    CHECK_RC(fdsend_send_to(tx, tu_temppath("closed.sock"), "x", 1, &file, 1, 0),
             FDSEND_ECONNREFUSED);
    CHECK_RC(fdsend_send_to(tx, tu_temppath("closed.sock"), NULL, 0, NULL, 0, 0),
             FDSEND_ECONNREFUSED);
#if defined(__linux__)
    {
        char name[64];
        snprintf(name, sizeof name, "@fdsend-test-%d-nobody", (int)getpid());
        CHECK_RC(fdsend_send_to(tx, name, "x", 1, &file, 1, 0), FDSEND_ECONNREFUSED);
    }
#endif /* defined(__linux__) */
    CHECK_EQ(tu_count_fds(), before);
    close((int)file);
    close(tx);
}

/* A path bound by a stream or seqpacket socket: FDSEND_EPROTOTYPE (errno EPROTOTYPE), not
 * "not a Unix socket"; the caller's descriptor stays open and nothing leaks. */
TEST(send_to_other_socket_type)
{
    static const int types[] = {SOCK_STREAM, SOCK_SEQPACKET};
    int tx = unbound_dgram(), before;
    intptr_t file = tu_temp_file("x");
    size_t i;

    for (i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct sockaddr_un addr;
        const char *path;
        int lsn;
        if (!tu_have_socket_type(types[i]))
            continue;
        path = tu_temppath(types[i] == SOCK_STREAM ? "stream.sock" : "seqpacket.sock");
        lsn = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
        CHECK_SYS(lsn);
        memset(&addr, 0, sizeof addr);
        addr.sun_family = AF_UNIX;
        CHECK(strlen(path) < sizeof addr.sun_path);
        memcpy(addr.sun_path, path, strlen(path));
        CHECK_SYS(bind(lsn, (struct sockaddr *)&addr, sizeof addr));
        CHECK_SYS(listen(lsn, 1));
        before = tu_count_fds();
        CHECK_RC(fdsend_send_to(tx, path, "x", 1, &file, 1, 0), FDSEND_EPROTOTYPE);
        CHECK_EQ(errno, EPROTOTYPE);
        CHECK_EQ(fdsend_last_os_error(), EPROTOTYPE);
        CHECK_RC(fdsend_send_to(tx, path, "x", 1, NULL, 0, 0), FDSEND_EPROTOTYPE);
        CHECK_EQ(tu_count_fds(), before);
        CHECK(fcntl((int)file, F_GETFD) >= 0);
        close(lsn);
    }
    close((int)file);
    close(tx);
}

/* A path that does not fit in sun_path: FDSEND_ENAMETOOLONG, checked before any system
 * call (108 bytes: no room for the terminating NUL); the longest path that fits, 107
 * bytes, is accepted (and then not found). */
TEST(send_to_name_too_long)
{
    struct sockaddr_un addr;
    char path[512];
    size_t max = sizeof addr.sun_path - 1; /* room for the terminating NUL */
    int tx = unbound_dgram();

    memset(path, 'a', sizeof path);
    path[sizeof path - 1] = '\0';
    CHECK_RC(fdsend_send_to(tx, path, "x", 1, NULL, 0, 0), FDSEND_ENAMETOOLONG);
    CHECK_EQ(errno, ENAMETOOLONG);
    path[max + 1] = '\0';
    CHECK_RC(fdsend_send_to(tx, path, "x", 1, NULL, 0, 0), FDSEND_ENAMETOOLONG);
    path[max] = '\0';
    CHECK_RC(fdsend_send_to(tx, path, "x", 1, NULL, 0, 0), FDSEND_ENOENT);
    close(tx);
}

/* Bad destinations and sockets: NULL or empty path (FDSEND_EINVAL); fdsend_send on an
 * unconnected datagram socket (Linux: FDSEND_ENOTCONN); fdsend_send_to on a connected
 * stream socket (FDSEND_EISCONN). */
TEST(send_to_bad_use)
{
    int tx = unbound_dgram(), sv[2];
    CHECK_RC(fdsend_send_to(tx, NULL, "x", 1, NULL, 0, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_send_to(tx, "", "x", 1, NULL, 0, 0), FDSEND_EINVAL);
#if defined(__linux__)
    CHECK_RC(fdsend_send(tx, "x", 1, NULL, 0, 0), FDSEND_ENOTCONN);
#else
    {
        int64_t r = fdsend_send(tx, "x", 1, NULL, 0, 0);
        CHECK(r == FDSEND_ENOTCONN || r == FDSEND_EDESTADDRREQ);
    }
#endif /* defined(__linux__) */
    tu_socketpair(SOCK_STREAM, sv);
    CHECK_RC(fdsend_send_to(sv[0], tu_temppath("any.sock"), "x", 1, NULL, 0, 0),
             FDSEND_EISCONN);
    close(sv[0]);
    close(sv[1]);
    close(tx);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(send_to_filesystem_path), CASE(send_to_abstract_name),
        CASE(send_to_longest_abstract_name), CASE(send_to_nobody),
        CASE(send_to_name_too_long),   CASE(send_to_bad_use), CASE(send_to_other_socket_type),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
