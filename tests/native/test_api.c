/* The public API as a user links it (the shared libfdsend): every bad argument gets its
 * documented code and changes nothing; error strings, version, last OS error.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A call that must fail with code (and errno err), leaving the fd count unchanged. */
#define CHECK_BAD(expr, code, err)                                                        \
    do {                                                                                  \
        int tu_before_ = tu_count_fds();                                                  \
        errno = 0;                                                                        \
        CHECK_RC(expr, code);                                                             \
        CHECK_EQ(errno, err);                                                             \
        CHECK_EQ(fdsend_last_os_error(), err);                                            \
        CHECK_EQ(tu_count_fds(), tu_before_);                                             \
    } while (0)

/* A descriptor number that is not open (was open a moment ago; high enough that the
 * test's own opens do not reuse it). */
static int closed_fd(void)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), fd;
    CHECK_SYS(s);
    fd = fcntl(s, F_DUPFD_CLOEXEC, 700);
    CHECK_SYS(fd);
    close(s);
    close(fd);
    return fd;
}

/* Nothing is waiting on sock (the bad calls sent nothing). */
static void check_nothing_queued(int sock)
{
    char buf[8];
    CHECK_RC(fdsend_recv(sock, buf, sizeof buf, NULL, 0, NULL, NULL, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
}

/* A good round trip through the shared library, so that the bad-argument cases below are
 * known to fail for their argument, not because the library does not work at all. */
TEST(round_trip_shared_library)
{
    int sv[2];
    intptr_t file = tu_temp_file("shared"), got[1];
    int32_t n = -1;
    uint32_t rflags = 99;
    char buf[8];
    tu_socketpair(SOCK_STREAM, sv);
    CHECK_RC(fdsend_send(sv[0], "ok", 2, &file, 1, 0), 2);
    CHECK_EQ(fdsend_last_os_error(), 0);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 1, &n, &rflags, 0), 2);
    CHECK_EQ(n, 1);
    CHECK(tu_same_file((int)got[0], (int)file));
    close((int)got[0]);
    close((int)file);
    close(sv[0]);
    close(sv[1]);
}

/* fdsend_send / fdsend_send_to: bad socket numbers, buffers, counts, descriptors, flags. */
TEST(bad_send_arguments)
{
    int sv[2], gone = closed_fd();
    intptr_t file = tu_temp_file("bad"), fds[3];
    char data[4] = "abc";
    const char *path = tu_temppath("nowhere.sock");

    tu_socketpair(SOCK_STREAM, sv);
    /* The socket. */
    CHECK_BAD(fdsend_send(-1, data, 3, NULL, 0, 0), FDSEND_EBADF, EBADF);
    CHECK_BAD(fdsend_send(INTPTR_MIN, data, 3, NULL, 0, 0), FDSEND_EBADF, EBADF);
    CHECK_BAD(fdsend_send((intptr_t)INT_MAX + 1, data, 3, NULL, 0, 0), FDSEND_EBADF, EBADF);
    CHECK_BAD(fdsend_send(INTPTR_MAX, data, 3, &file, 1, 0), FDSEND_EBADF, EBADF);
    CHECK_BAD(fdsend_send(gone, data, 3, NULL, 0, 0), FDSEND_EBADF, EBADF);
    CHECK_BAD(fdsend_send(gone, data, 3, &file, 1, 0), FDSEND_EBADF, EBADF);
    CHECK_BAD(fdsend_send(gone, NULL, 0, &file, 1, 0), FDSEND_EBADF, EBADF);
    CHECK_BAD(fdsend_send_to(-1, path, data, 3, NULL, 0, 0), FDSEND_EBADF, EBADF);
    /* The data. */
    CHECK_BAD(fdsend_send(sv[0], NULL, 1, NULL, 0, 0), FDSEND_EINVAL, EINVAL);
    CHECK_BAD(fdsend_send(sv[0], NULL, 3, &file, 1, 0), FDSEND_EINVAL, EINVAL);
    CHECK_BAD(fdsend_send(sv[0], data, SIZE_MAX, NULL, 0, 0), FDSEND_EINVAL, EINVAL);
    CHECK_BAD(fdsend_send_to(sv[0], path, NULL, 3, NULL, 0, 0), FDSEND_EINVAL, EINVAL);
    /* The count and the array. */
    CHECK_BAD(fdsend_send(sv[0], data, 3, &file, -1, 0), FDSEND_EINVAL, EINVAL);
    CHECK_BAD(fdsend_send(sv[0], data, 3, &file, INT32_MIN, 0), FDSEND_EINVAL, EINVAL);
    CHECK_BAD(fdsend_send(sv[0], data, 3, NULL, 1, 0), FDSEND_EINVAL, EINVAL);
    CHECK_BAD(fdsend_send_to(sv[0], path, data, 3, NULL, 2, 0), FDSEND_EINVAL, EINVAL);
    CHECK_BAD(fdsend_send(sv[0], data, 3, &file, FDSEND_MAX_FDS + 1, 0), FDSEND_ETOOMANYFDS,
              EINVAL);
    /* The descriptors: negative, too large, closed (refused by the kernel: nothing sent). */
    fds[0] = file;
    fds[1] = -1;
    fds[2] = file;
    CHECK_BAD(fdsend_send(sv[0], data, 3, fds, 3, 0), FDSEND_EBADF, EBADF);
    fds[1] = (intptr_t)INT_MAX + 1;
    CHECK_BAD(fdsend_send(sv[0], data, 3, fds, 3, 0), FDSEND_EBADF, EBADF);
    fds[1] = INTPTR_MIN;
    CHECK_BAD(fdsend_send(sv[0], NULL, 0, fds, 3, 0), FDSEND_EBADF, EBADF);
    fds[1] = gone;
    CHECK_BAD(fdsend_send(sv[0], data, 3, fds, 3, 0), FDSEND_EBADF, EBADF);
    CHECK_BAD(fdsend_send(sv[0], NULL, 0, fds, 3, 0), FDSEND_EBADF, EBADF);
    /* The flags. */
    CHECK_BAD(fdsend_send(sv[0], data, 3, NULL, 0, 4), FDSEND_EINVAL, EINVAL);
    CHECK_BAD(fdsend_send(sv[0], data, 3, &file, 1, 0x80000000u), FDSEND_EINVAL, EINVAL);
    CHECK_BAD(fdsend_send_to(sv[0], path, data, 3, NULL, 0, 4), FDSEND_EINVAL, EINVAL);

    check_nothing_queued(sv[1]);
    close((int)file);
    close(sv[0]);
    close(sv[1]);
}

/* fdsend_recv: bad socket, buffer, maxfds, out-pointers, flags; nothing consumed. The
 * out-values are zeroed even on failure. */
TEST(bad_recv_arguments)
{
    int sv[2], gone = closed_fd();
    intptr_t file = tu_temp_file("bad"), got[2];
    int32_t n;
    uint32_t rflags;
    char buf[8];

    tu_socketpair(SOCK_STREAM, sv);
    CHECK_RC(fdsend_send(sv[0], "queued", 6, &file, 1, 0), 6);
    CHECK_BAD(fdsend_recv(-1, buf, sizeof buf, got, 2, &n, &rflags, 0), FDSEND_EBADF, EBADF);
    CHECK_BAD(fdsend_recv(INTPTR_MAX, buf, sizeof buf, got, 2, &n, &rflags, 0), FDSEND_EBADF,
              EBADF);
    CHECK_BAD(fdsend_recv(gone, buf, sizeof buf, got, 2, &n, &rflags, 0), FDSEND_EBADF, EBADF);
    CHECK_BAD(fdsend_recv(gone, NULL, 0, got, 2, &n, &rflags, 0), FDSEND_EBADF, EBADF);
    CHECK_BAD(fdsend_recv(sv[1], NULL, 4, got, 2, &n, &rflags, 0), FDSEND_EINVAL, EINVAL);
    CHECK_BAD(fdsend_recv(sv[1], buf, SIZE_MAX, got, 2, &n, &rflags, 0), FDSEND_EINVAL,
              EINVAL);
    CHECK_BAD(fdsend_recv(sv[1], buf, sizeof buf, got, -1, &n, &rflags, 0), FDSEND_EINVAL,
              EINVAL);
    CHECK_BAD(fdsend_recv(sv[1], buf, sizeof buf, NULL, 1, &n, &rflags, 0), FDSEND_EINVAL,
              EINVAL);
    CHECK_BAD(fdsend_recv(sv[1], buf, sizeof buf, got, 1, NULL, &rflags, 0), FDSEND_EINVAL,
              EINVAL);
    CHECK_BAD(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 4), FDSEND_EINVAL,
              EINVAL);
    n = 5;
    rflags = 5;
    CHECK_BAD(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0xffffffffu),
              FDSEND_EINVAL, EINVAL);
    CHECK_EQ(n, 0);
    CHECK_EQ(rflags, 0);
    /* The queued message is still there, whole, with its fd. */
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), 6);
    CHECK_MEM(buf, "queued", 6);
    CHECK_EQ(n, 1);
    CHECK(tu_same_file((int)got[0], (int)file));
    close((int)got[0]);
    close((int)file);
    close(sv[0]);
    close(sv[1]);
}

/* A descriptor that is not a socket (a pipe, a regular file): FDSEND_ENOTSOCK for every
 * call, and nothing written into the pipe. */
TEST(not_a_socket)
{
    int p[2];
    intptr_t file = tu_temp_file("plain file"), got[1];
    int32_t n;
    uint32_t rflags;
    char buf[8];

    CHECK_SYS(pipe(p));
    CHECK_BAD(fdsend_send(p[1], "x", 1, NULL, 0, 0), FDSEND_ENOTSOCK, ENOTSOCK);
    CHECK_BAD(fdsend_send(p[1], "x", 1, &file, 1, 0), FDSEND_ENOTSOCK, ENOTSOCK);
    CHECK_BAD(fdsend_send(p[1], NULL, 0, &file, 1, 0), FDSEND_ENOTSOCK, ENOTSOCK);
    CHECK_BAD(fdsend_send(file, "x", 1, &file, 1, 0), FDSEND_ENOTSOCK, ENOTSOCK);
    CHECK_BAD(fdsend_send_to(p[1], "x.sock", "x", 1, &file, 1, 0), FDSEND_ENOTSOCK,
              ENOTSOCK);
    CHECK_BAD(fdsend_recv(p[0], buf, sizeof buf, got, 1, &n, &rflags, 0), FDSEND_ENOTSOCK,
              ENOTSOCK);
    CHECK_BAD(fdsend_recv(p[0], NULL, 0, got, 1, &n, &rflags, 0), FDSEND_ENOTSOCK, ENOTSOCK);
    CHECK_BAD(fdsend_recv(file, buf, sizeof buf, got, 1, &n, &rflags, 0), FDSEND_ENOTSOCK,
              ENOTSOCK);
    CHECK_BAD(fdsend_peer_credentials(p[0], NULL, NULL, NULL), FDSEND_ENOTSOCK, ENOTSOCK);
    tu_set_nonblocking(p[0], 1);
    CHECK_EQ(read(p[0], buf, sizeof buf), -1);
    CHECK_EQ(errno, EAGAIN);
    close(p[0]);
    close(p[1]);
    close((int)file);
}

/* Descriptors over TCP: FDSEND_ENOTUNIX and nothing sent (Linux 6.x would accept the
 * message and silently drop the descriptors). Plain data over TCP still works. */
/* FDSEND_UNIX_SOCKET: the caller vouches for AF_UNIX; a round trip works with it (and
 * with it on the receive side, where it is ignored), by inode. */
TEST(unix_socket_flag)
{
    int sv[2];
    intptr_t file = tu_temp_file("flag"), got[2];
    int32_t n = 0;
    uint32_t rflags = 0;
    char buf[8];
    int before = tu_count_fds();

    CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    CHECK_RC(fdsend_send(sv[0], "ok", 2, &file, 1, FDSEND_UNIX_SOCKET), 2);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, FDSEND_UNIX_SOCKET), 2);
    CHECK(n == 1 && rflags == 0);
    CHECK(tu_same_file((int)got[0], (int)file));
    close((int)got[0]);
    close(sv[0]);
    close(sv[1]);
    close((int)file);
    CHECK(tu_count_fds() == before - 1);
}

TEST(tcp_socket_with_fds)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int lsn, cli, srv;
    intptr_t file = tu_temp_file("tcp");
    char buf[8];

    lsn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lsn < 0)
        tu_skip("no IPv4 sockets here (%s)", tu_errno_text());
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lsn, (struct sockaddr *)&addr, sizeof addr) != 0)
        tu_skip("cannot bind to 127.0.0.1 (%s)", tu_errno_text());
    CHECK_SYS(listen(lsn, 1));
    CHECK_SYS(getsockname(lsn, (struct sockaddr *)&addr, &len));
    cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(cli);
    CHECK_SYS(connect(cli, (struct sockaddr *)&addr, sizeof addr));
    srv = accept(lsn, NULL, NULL);
    CHECK_SYS(srv);

    CHECK_BAD(fdsend_send(cli, "x", 1, &file, 1, 0), FDSEND_ENOTUNIX, EAFNOSUPPORT);
    CHECK_BAD(fdsend_send(cli, NULL, 0, &file, 1, 0), FDSEND_ENOTUNIX, EAFNOSUPPORT);
    check_nothing_queued(srv);
    CHECK_RC(fdsend_send(cli, "plain", 5, NULL, 0, 0), 5);
    CHECK_RC(fdsend_recv(srv, buf, sizeof buf, NULL, 0, NULL, NULL, 0), 5);
    CHECK_MEM(buf, "plain", 5);
    /* An unconnected TCP socket: still FDSEND_ENOTUNIX, not a confusing FDSEND_EPIPE. */
    CHECK_BAD(fdsend_send(lsn, "x", 1, &file, 1, 0), FDSEND_ENOTUNIX, EAFNOSUPPORT);
    close(cli);
    close(srv);
    close(lsn);
    close((int)file);
}

/* fdsend_close_all: one call closes a received message's descriptors; -1 slots are
 * skipped; a descriptor that was not open is FDSEND_EBADF, and every other one is still
 * closed; bad arguments are FDSEND_EINVAL and close nothing. */
TEST(close_all)
{
    int sv[2], before, i;
    intptr_t files[3], got[8];
    int32_t n;
    uint32_t rflags;
    char buf[8];

    tu_socketpair(SOCK_STREAM, sv);
    before = tu_count_fds();
    for (i = 0; i < 3; i++)
        files[i] = tu_temp_file("close-all");
    CHECK_RC(fdsend_send(sv[0], "x", 1, files, 3, 0), 1);
    tu_close_all(files, 3);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 8, &n, &rflags, 0), 1);
    CHECK_EQ(n, 3);
    CHECK_EQ(tu_count_fds(), before + 3);
    /* Hand one on (-1 marks its slot): the other two close, that one stays open. */
    {
        intptr_t kept = got[1];
        got[1] = -1;
        CHECK_RC(fdsend_close_all(got, 3), FDSEND_OK);
        CHECK_EQ(fdsend_last_os_error(), 0);
        CHECK_EQ(tu_count_fds(), before + 1);
        CHECK(tu_fd_is_open((int)kept));
        got[1] = kept;
    }
    /* got[0] and got[2] are closed now: FDSEND_EBADF, and got[1] is closed all the same. */
    CHECK_RC(fdsend_close_all(got, 3), FDSEND_EBADF);
    CHECK_EQ(fdsend_last_os_error(), EBADF);
    CHECK_EQ(tu_count_fds(), before);
    /* Nothing to do, and bad arguments. */
    CHECK_RC(fdsend_close_all(NULL, 0), FDSEND_OK);
    CHECK_RC(fdsend_close_all(got, 0), FDSEND_OK);
    CHECK_RC(fdsend_close_all(NULL, 1), FDSEND_EINVAL);
    CHECK_RC(fdsend_close_all(got, -1), FDSEND_EINVAL);
    close(sv[0]);
    close(sv[1]);
}

/* Every code has its own message; unknown codes get a generic one; never NULL. */
TEST(strerror_every_code)
{
    static const int32_t codes[] = {
        FDSEND_OK,           FDSEND_EAGAIN,       FDSEND_EINVAL,       FDSEND_EBADF,
        FDSEND_ENOTSOCK,     FDSEND_EPIPE,        FDSEND_ECONNRESET,   FDSEND_ENOTCONN,
        FDSEND_EMSGSIZE,     FDSEND_ETOOMANYREFS, FDSEND_EMFILE,       FDSEND_ENOTSUP,
        FDSEND_ENOBUFS,      FDSEND_ETOOMANYFDS,  FDSEND_ECONNREFUSED, FDSEND_ENOENT,
        FDSEND_EACCES,       FDSEND_EDESTADDRREQ, FDSEND_EISCONN,      FDSEND_ENOTUNIX,
        FDSEND_ENAMETOOLONG, FDSEND_EPROTO,       FDSEND_ESRCH,        FDSEND_EOF,
        FDSEND_ETIMEDOUT,    FDSEND_EPROTOTYPE,   FDSEND_EPOLICY,      FDSEND_ENOTSEALED,
        FDSEND_EESCAPE,      FDSEND_ENOTREG,      FDSEND_EOTHER,
    };
    const size_t ncodes = sizeof codes / sizeof codes[0];
    const char *unknown = fdsend_strerror(-12345);
    size_t i, j;
    CHECK(unknown != NULL && unknown[0] != '\0');
    CHECK(fdsend_strerror(1) != NULL);
    CHECK(fdsend_strerror(INT32_MIN) != NULL);
    for (i = 0; i < ncodes; i++) {
        const char *s = fdsend_strerror(codes[i]);
        CHECK(s != NULL);
        CHECK(strlen(s) > 5);
        if (strcmp(s, unknown) == 0)
            tu_fail(__FILE__, __LINE__, "code %d has no message of its own", codes[i]);
        for (j = 0; j < i; j++) {
            if (strcmp(s, fdsend_strerror(codes[j])) == 0)
                tu_fail(__FILE__, __LINE__, "codes %d and %d share a message", codes[i],
                        codes[j]);
        }
    }
    /* The codes themselves are distinct and stable (the managed side relies on them). */
    CHECK_EQ(FDSEND_EAGAIN, -1);
    CHECK_EQ(FDSEND_ESRCH, -22);
    CHECK_EQ(FDSEND_EOF, -23);
    CHECK_EQ(FDSEND_ETIMEDOUT, -24);
    CHECK_EQ(FDSEND_EPROTOTYPE, -25);
    CHECK_EQ(FDSEND_EPOLICY, -26);
    CHECK_EQ(FDSEND_ENOTREG, -29);
    CHECK_EQ(FDSEND_EOTHER, -99);
    for (i = 1; i < ncodes - 1; i++)
        CHECK_EQ(codes[i], -(int32_t)i);
}

/* Each code's text names its cause, as the header's comment on the code does (words a
 * reader would search for); FDSEND_ETOOMANYFDS names both of its causes. */
TEST(strerror_names_the_cause)
{
    static const struct {
        int32_t code;
        const char *words[2];
    } want[] = {
        {FDSEND_EAGAIN, {"would block", NULL}},
        {FDSEND_EINVAL, {"invalid argument", NULL}},
        {FDSEND_EBADF, {"not an open", NULL}},
        {FDSEND_ENOTSOCK, {"not a socket", NULL}},
        {FDSEND_EPIPE, {"closed", NULL}},
        {FDSEND_ECONNRESET, {"reset", NULL}},
        {FDSEND_ENOTCONN, {"not connected", NULL}},
        {FDSEND_EMSGSIZE, {"too large", NULL}},
        {FDSEND_ETOOMANYREFS, {"in flight", NULL}},
        {FDSEND_EMFILE, {"descriptor table", NULL}},
        {FDSEND_ENOTSUP, {"not supported", NULL}},
        {FDSEND_ENOBUFS, {"buffer", NULL}},
        {FDSEND_ETOOMANYFDS, {"fdsend_max_fds", "receiver's maxfds"}},
        {FDSEND_ECONNREFUSED, {"refused", NULL}},
        {FDSEND_ENOENT, {"does not exist", NULL}},
        {FDSEND_EACCES, {"permission", NULL}},
        {FDSEND_EDESTADDRREQ, {"destination", NULL}},
        {FDSEND_EISCONN, {"already connected", NULL}},
        {FDSEND_ENOTUNIX, {"Unix domain", NULL}},
        {FDSEND_ENAMETOOLONG, {"too long", NULL}},
        {FDSEND_EPROTO, {"protocol", NULL}},
        {FDSEND_ESRCH, {"process", NULL}},
        {FDSEND_EOF, {"message boundary", NULL}},
        {FDSEND_ETIMEDOUT, {"timeout", NULL}},
        {FDSEND_EPROTOTYPE, {"another type", NULL}},
        {FDSEND_EPOLICY, {"policy", "closed"}},
        {FDSEND_ENOTSEALED, {"seals", NULL}},
        {FDSEND_EESCAPE, {"leaves the directory", "symbolic link"}},
        {FDSEND_ENOTREG, {"not a regular file", NULL}},
        {FDSEND_EOTHER, {"operating system", NULL}},
    };
    size_t i, k;
    for (i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *s = fdsend_strerror(want[i].code);
        for (k = 0; k < 2 && want[i].words[k] != NULL; k++) {
            if (strstr(s, want[i].words[k]) == NULL)
                tu_fail(__FILE__, __LINE__, "fdsend_strerror(%s) = \"%s\" does not say \"%s\"",
                        tu_describe(want[i].code), s, want[i].words[k]);
        }
    }
    /* ETOOMANYFDS is not ETOOMANYREFS: a count, not the kernel's in-flight limit. */
    CHECK(strstr(fdsend_strerror(FDSEND_ETOOMANYFDS), "in flight") == NULL);
}

/* fdsend_version() is FDSEND_VERSION_STRING, built from the MAJOR/MINOR/PATCH macros, and
 * agrees with the CMake project version. */
TEST(version)
{
    char v[32];
    CHECK(strcmp(fdsend_version(), FDSEND_VERSION_STRING) == 0);
    snprintf(v, sizeof v, "%d.%d.%d", FDSEND_VERSION_MAJOR, FDSEND_VERSION_MINOR,
             FDSEND_VERSION_PATCH);
    CHECK(strcmp(fdsend_version(), v) == 0);
    CHECK(strcmp(fdsend_version(), FDSEND_PROJECT_VERSION) == 0);
    CHECK_EQ(fdsend_max_fds(), FDSEND_MAX_FDS);
}

static void *other_thread(void *arg)
{
    /* A new thread has its own last error: 0, whatever the main thread did. */
    *(int32_t *)arg = fdsend_last_os_error();
    return NULL;
}

/* fdsend_last_os_error(): the errno of the last failing call on this thread (also the
 * raw errno behind FDSEND_EOTHER), 0 after a success, per thread. */
TEST(last_os_error)
{
    int sv[2];
    int32_t seen = -1;
    pthread_t th;
    char buf[4];

    tu_socketpair(SOCK_STREAM, sv);
    CHECK_RC(fdsend_send(sv[0], "x", 1, NULL, 0, 0), 1);
    CHECK_EQ(fdsend_last_os_error(), 0);
    CHECK_RC(fdsend_send(-5, "x", 1, NULL, 0, 0), FDSEND_EBADF);
    CHECK_EQ(fdsend_last_os_error(), EBADF);
    CHECK_EQ(pthread_create(&th, NULL, other_thread, &seen), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(seen, 0);
    CHECK_EQ(fdsend_last_os_error(), EBADF); /* still this thread's */
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, NULL, 0, NULL, NULL, 0), 1);
    CHECK_EQ(fdsend_last_os_error(), 0);
    close(sv[1]);
    CHECK_RC(fdsend_send(sv[0], "x", 1, NULL, 0, 0), FDSEND_EPIPE);
    CHECK_EQ(fdsend_last_os_error(), EPIPE);
    close(sv[0]);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(round_trip_shared_library),
        CASE(bad_send_arguments),
        CASE(bad_recv_arguments),
        CASE(not_a_socket),
        CASE(unix_socket_flag),
        CASE(tcp_socket_with_fds),
        CASE(close_all),
        CASE(strerror_every_code),
        CASE(strerror_names_the_cause),
        CASE(version),
        CASE(last_os_error),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
