/* fdsend_fd_info, fdsend_socketpair, fdsend_set_inheritable: each kind of descriptor is
 * described as what it is, before and after it crosses a socket, and the pair a parent
 * hands its child is close-on-exec until asked otherwise.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__)
#  include <sys/eventfd.h>
#  include <sys/mman.h>
#  include <sys/syscall.h>
#endif

static fdsend_fd_info_t describe(int fd)
{
    fdsend_fd_info_t info;
    memset(&info, 0xab, sizeof info); /* every field must be written */
    info.struct_size = sizeof info;
    CHECK_RC(fdsend_fd_info(fd, &info), FDSEND_OK);
    CHECK_EQ(info.struct_size, sizeof info);
    CHECK_EQ(info.reserved, 0);
    return info;
}

/* The description of fd as the peer of a socketpair receives it: the same kind. */
static fdsend_fd_info_t describe_received(int fd)
{
    int sv[2];
    intptr_t out[1];
    intptr_t in = fd;
    int32_t n = 0;
    uint32_t rf = 0;
    char b = 0;
    fdsend_fd_info_t info;
    tu_socketpair(SOCK_STREAM, sv);
    CHECK_RC(fdsend_send(sv[0], "x", 1, &in, 1, 0), 1);
    CHECK_RC(fdsend_recv(sv[1], &b, 1, out, 1, &n, &rf, 0), 1);
    CHECK_EQ(n, 1);
    info = describe((int)out[0]);
    CHECK(info.flags & FDSEND_FD_CLOEXEC); /* received descriptors are close-on-exec */
    close((int)out[0]);
    close(sv[0]);
    close(sv[1]);
    return info;
}

TEST(regular_file)
{
    int fd = tu_temp_file("hello");
    fdsend_fd_info_t i = describe(fd);
    CHECK_EQ(i.kind, FDSEND_KIND_FILE);
    CHECK_EQ(i.size, 5);
    CHECK_EQ(i.family, FDSEND_FAMILY_NONE);
    CHECK_EQ(i.socket_type, 0);
    CHECK_EQ(i.seals, 0);
    i = describe_received(fd);
    CHECK_EQ(i.kind, FDSEND_KIND_FILE);
    CHECK_EQ(i.size, 5);
    close(fd);
}

TEST(access_modes)
{
    int rd = open(tu_temppath("a"), O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
    int wr = open(tu_temppath("a"), O_WRONLY | O_APPEND | O_CLOEXEC);
    int rw = open(tu_temppath("a"), O_RDWR | O_CLOEXEC);
    CHECK_SYS(rd);
    CHECK_SYS(wr);
    CHECK_SYS(rw);
    CHECK_EQ(describe(rd).access, FDSEND_ACCESS_READ);
    CHECK_EQ(describe(wr).access, FDSEND_ACCESS_WRITE);
    CHECK(describe(wr).flags & FDSEND_FD_APPEND);
    CHECK_EQ(describe(rw).access, FDSEND_ACCESS_READ_WRITE);
    CHECK_EQ(describe(rw).flags & FDSEND_FD_APPEND, 0);
    CHECK_EQ(describe_received(rd).access, FDSEND_ACCESS_READ);
#if defined(O_PATH)
    {
        int p = open(tu_tempdir(), O_PATH | O_CLOEXEC);
        CHECK_SYS(p);
        CHECK_EQ(describe(p).access, FDSEND_ACCESS_NONE);
        close(p);
    }
#endif
    close(rd);
    close(wr);
    close(rw);
}

TEST(directory_pipe_device)
{
    int d = open(tu_tempdir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int p[2];
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    CHECK_SYS(d);
    CHECK_SYS(pipe(p));
    CHECK_SYS(null);
    CHECK_EQ(describe(d).kind, FDSEND_KIND_DIRECTORY);
    CHECK_EQ(describe(d).size, -1);
    CHECK_EQ(describe_received(d).kind, FDSEND_KIND_DIRECTORY);
    CHECK_EQ(describe(p[0]).kind, FDSEND_KIND_PIPE);
    CHECK_EQ(describe(p[0]).access, FDSEND_ACCESS_READ);
    CHECK_EQ(describe(p[1]).access, FDSEND_ACCESS_WRITE);
    CHECK_EQ(describe_received(p[1]).kind, FDSEND_KIND_PIPE);
    CHECK_EQ(describe(null).kind, FDSEND_KIND_CHAR_DEVICE);
    close(d);
    close(p[0]);
    close(p[1]);
    close(null);
}

TEST(flags_cloexec_nonblock)
{
    int p[2];
    fdsend_fd_info_t i;
    CHECK_SYS(pipe(p));
    i = describe(p[0]);
    CHECK_EQ(i.flags & (FDSEND_FD_CLOEXEC | FDSEND_FD_NONBLOCK), 0);
    CHECK_SYS(fcntl(p[0], F_SETFD, FD_CLOEXEC));
    tu_set_nonblocking(p[0], 1);
    i = describe(p[0]);
    CHECK(i.flags & FDSEND_FD_CLOEXEC);
    CHECK(i.flags & FDSEND_FD_NONBLOCK);
    /* O_NONBLOCK belongs to the open file description: a receiver sees the sender's mode. */
    CHECK(describe_received(p[0]).flags & FDSEND_FD_NONBLOCK);
    close(p[0]);
    close(p[1]);
}

TEST(sockets)
{
    int sv[2], tcp, udp, udp6, lst;
    struct sockaddr_in a;
    fdsend_fd_info_t i;
    tu_socketpair(SOCK_STREAM, sv);
    i = describe(sv[0]);
    CHECK_EQ(i.kind, FDSEND_KIND_SOCKET);
    CHECK_EQ(i.family, FDSEND_FAMILY_UNIX);
    CHECK_EQ(i.socket_type, FDSEND_SOCK_STREAM);
    CHECK_EQ(i.flags & FDSEND_FD_LISTENING, 0);
    CHECK_EQ(i.access, FDSEND_ACCESS_READ_WRITE);

    tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(tcp);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_SYS(bind(tcp, (struct sockaddr *)&a, sizeof a));
    i = describe(tcp);
    CHECK_EQ(i.family, FDSEND_FAMILY_INET);
    CHECK_EQ(i.socket_type, FDSEND_SOCK_STREAM);
    CHECK_EQ(i.flags & FDSEND_FD_LISTENING, 0); /* bound, not listening yet */
    CHECK_SYS(listen(tcp, 4));
    i = describe(tcp);
    CHECK(i.flags & FDSEND_FD_LISTENING);
    i = describe_received(tcp); /* what a successor checks before serving */
    CHECK_EQ(i.kind, FDSEND_KIND_SOCKET);
    CHECK_EQ(i.family, FDSEND_FAMILY_INET);
    CHECK(i.flags & FDSEND_FD_LISTENING);

    udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(udp);
    CHECK_EQ(describe(udp).socket_type, FDSEND_SOCK_DGRAM);
    udp6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (udp6 >= 0) {
        CHECK_EQ(describe(udp6).family, FDSEND_FAMILY_INET6);
        close(udp6);
    }
    lst = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (lst >= 0) {
        struct sockaddr_un u;
        memset(&u, 0, sizeof u);
        u.sun_family = AF_UNIX;
        snprintf(u.sun_path, sizeof u.sun_path, "%s", tu_temppath("l.sock"));
        CHECK_SYS(bind(lst, (struct sockaddr *)&u, sizeof u));
        CHECK_SYS(listen(lst, 1));
        i = describe(lst);
        CHECK_EQ(i.family, FDSEND_FAMILY_UNIX);
        CHECK_EQ(i.socket_type, FDSEND_SOCK_SEQPACKET);
        CHECK(i.flags & FDSEND_FD_LISTENING);
        close(lst);
    }
    close(sv[0]);
    close(sv[1]);
    close(tcp);
    close(udp);
}

TEST(linux_special_files)
{
#if defined(__linux__) && defined(MFD_CLOEXEC) && defined(F_ADD_SEALS)
    int m = (int)syscall(SYS_memfd_create, "fdsend-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    int e = eventfd(0, EFD_CLOEXEC);
    fdsend_fd_info_t i;
    if (m < 0)
        tu_skip("memfd_create: %s", tu_errno_text());
    CHECK_SYS(ftruncate(m, 4096));
    i = describe(m);
    CHECK_EQ(i.kind, FDSEND_KIND_MEMFD);
    CHECK_EQ(i.size, 4096);
    CHECK_EQ(i.seals, 0);
    CHECK_SYS(fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE));
    i = describe_received(m); /* seals belong to the file: the receiver sees them */
    CHECK_EQ(i.kind, FDSEND_KIND_MEMFD);
    CHECK_EQ(i.seals, FDSEND_SEAL_SHRINK | FDSEND_SEAL_GROW | FDSEND_SEAL_WRITE);
    CHECK_SYS(e);
    CHECK_EQ(describe(e).kind, FDSEND_KIND_EVENTFD);
    CHECK_EQ(describe_received(e).kind, FDSEND_KIND_EVENTFD);
#  if defined(SYS_pidfd_open)
    {
        int p = (int)syscall(SYS_pidfd_open, getpid(), 0);
        if (p >= 0) {
            CHECK_EQ(describe(p).kind, FDSEND_KIND_PIDFD);
            close(p);
        }
    }
#  endif
    close(m);
    close(e);
#else
    tu_skip("memfd, eventfd and pidfd are Linux's");
#endif
}

TEST(bad_arguments)
{
    fdsend_fd_info_t info;
    int before = tu_count_fds();
    int fd = tu_temp_file("x");
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK_RC(fdsend_fd_info(fd, NULL), FDSEND_EINVAL);
    info.struct_size = 4;
    CHECK_RC(fdsend_fd_info(fd, &info), FDSEND_EINVAL);
    info.struct_size = sizeof info;
    CHECK_RC(fdsend_fd_info(-1, &info), FDSEND_EBADF);
    CHECK_EQ(info.size, -1);
    close(fd);
    CHECK_RC(fdsend_fd_info(fd, &info), FDSEND_EBADF);
    CHECK_EQ(fdsend_last_os_error(), EBADF);
    CHECK_RC(fdsend_fd_info((intptr_t)1 << 40, &info), FDSEND_EBADF);
    /* A larger struct from a newer caller: the library writes what it knows. */
    {
        struct { fdsend_fd_info_t base; char more[16]; } big;
        memset(&big, 0, sizeof big);
        big.base.struct_size = sizeof big;
        fd = tu_temp_file("abc");
        CHECK_RC(fdsend_fd_info(fd, &big.base), FDSEND_OK);
        CHECK_EQ(big.base.struct_size, sizeof(fdsend_fd_info_t));
        CHECK_EQ(big.base.size, 3);
        close(fd);
    }
    CHECK_EQ(tu_count_fds(), before);
}

TEST(socketpair_types)
{
    static const int32_t types[] = { FDSEND_SOCK_STREAM, FDSEND_SOCK_DGRAM, FDSEND_SOCK_SEQPACKET };
    size_t t;
    for (t = 0; t < sizeof types / sizeof types[0]; t++) {
        intptr_t sv[2] = { 99, 99 };
        intptr_t fd;
        intptr_t got[1];
        int32_t n = 0;
        uint32_t rf = 0;
        char b = 0;
        int32_t rc = fdsend_socketpair(types[t], sv);
        if (rc == FDSEND_ENOTSUP && types[t] == FDSEND_SOCK_SEQPACKET)
            continue; /* macOS */
        CHECK_RC(rc, FDSEND_OK);
        CHECK(tu_cloexec((int)sv[0]));
        CHECK(tu_cloexec((int)sv[1]));
        CHECK_EQ(describe((int)sv[0]).socket_type, types[t]);
        CHECK_EQ(describe((int)sv[1]).family, FDSEND_FAMILY_UNIX);
        /* connected: a descriptor goes across */
        fd = tu_temp_file("pair");
        CHECK_RC(fdsend_send(sv[0], "p", 1, &fd, 1, 0), 1);
        CHECK_RC(fdsend_recv(sv[1], &b, 1, got, 1, &n, &rf, 0), 1);
        CHECK_EQ(n, 1);
        CHECK(tu_same_file((int)fd, (int)got[0]));
        close((int)got[0]);
        close((int)fd);
        close((int)sv[0]);
        close((int)sv[1]);
    }
}

TEST(socketpair_bad_arguments)
{
    intptr_t sv[2] = { 5, 5 };
    int before = tu_count_fds();
    CHECK_RC(fdsend_socketpair(0, sv), FDSEND_EINVAL);
    CHECK_EQ(sv[0], -1);
    CHECK_EQ(sv[1], -1);
    CHECK_RC(fdsend_socketpair(7, sv), FDSEND_EINVAL);
    CHECK_RC(fdsend_socketpair(FDSEND_SOCK_STREAM, NULL), FDSEND_EINVAL);
    CHECK_EQ(tu_count_fds(), before);
}

/* The child of an exec: the inherited end must be there, the other must not. */
TEST(inheritable_end_survives_exec)
{
    intptr_t sv[2];
    pid_t pid;
    int status = 0;
    char cmd[128];
    CHECK_RC(fdsend_socketpair(FDSEND_SOCK_STREAM, sv), FDSEND_OK);
    CHECK_RC(fdsend_set_inheritable(sv[1], 1), FDSEND_OK);
    CHECK(!tu_cloexec((int)sv[1]));
    CHECK_EQ(describe((int)sv[1]).flags & FDSEND_FD_CLOEXEC, 0);
    /* the shell checks that fd sv[1] is open and fd sv[0] is not */
    snprintf(cmd, sizeof cmd, "test -e /dev/fd/%d && ! test -e /dev/fd/%d", (int)sv[1], (int)sv[0]);
    pid = fork();
    CHECK_SYS(pid);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    CHECK_SYS(waitpid(pid, &status, 0));
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    CHECK_RC(fdsend_set_inheritable(sv[1], 0), FDSEND_OK);
    CHECK(tu_cloexec((int)sv[1]));
    CHECK_RC(fdsend_set_inheritable(-1, 1), FDSEND_EBADF);
    close((int)sv[0]);
    close((int)sv[1]);
    CHECK_RC(fdsend_set_inheritable(sv[1], 1), FDSEND_EBADF);
}

TEST(dup_is_an_independent_close_on_exec_owner)
{
    int fd = tu_temp_file("dup");
    intptr_t d = 99;
    int before = tu_count_fds();
    CHECK_RC(fdsend_dup(fd, &d), FDSEND_OK);
    CHECK(d >= 0 && d != fd);
    CHECK(tu_same_file(fd, (int)d));
    CHECK(tu_cloexec((int)d));
    CHECK_EQ(tu_count_fds(), before + 1);
    close(fd); /* the duplicate stays open */
    CHECK(tu_fd_is_open((int)d));
    close((int)d);
    CHECK_RC(fdsend_dup(fd, &d), FDSEND_EBADF);
    CHECK_EQ(d, -1);
    CHECK_RC(fdsend_dup(0, NULL), FDSEND_EINVAL);
    CHECK_EQ(tu_count_fds(), before - 1);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(regular_file),
        CASE(access_modes),
        CASE(directory_pipe_device),
        CASE(flags_cloexec_nonblock),
        CASE(sockets),
        CASE(linux_special_files),
        CASE(bad_arguments),
        CASE(socketpair_types),
        CASE(socketpair_bad_arguments),
        CASE(inheritable_end_survives_exec),
        CASE(dup_is_an_independent_close_on_exec_owner),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
