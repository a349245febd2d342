/* What the receiver gets is safe: close-on-exec descriptors, nothing leaked from
 * credentials or pidfds a kernel or a hostile peer adds, nothing leaked at RLIMIT_NOFILE.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static const int socket_types[] = {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM};

/* Every received descriptor has FD_CLOEXEC (MSG_CMSG_CLOEXEC, or fcntl right after
 * recvmsg), on every socket type, with and without data, though the sender's were not. */
TEST(received_fds_are_cloexec)
{
    int t;
    for (t = 0; t < 3; t++) {
        int sv[2], len;
        intptr_t fds[3], got[3];
        int32_t n;
        uint32_t rflags;
        char buf[8];

        if (!tu_try_socketpair(socket_types[t], sv))
            continue;
        for (len = 0; len < 3; len++) {
            fds[len] = tu_temp_file("cloexec");
            CHECK_SYS(fcntl((int)fds[len], F_SETFD, 0)); /* the sender's are inheritable */
        }
        for (len = 0; len < 2; len++) {
            int i;
            CHECK_RC(fdsend_send(sv[0], "c", (size_t)len, fds, 3, 0), len);
            CHECK_RC(fdsend_recv(sv[1], len ? buf : NULL, (size_t)len, got, 3, &n, &rflags,
                                 0),
                     len);
            CHECK_EQ(n, 3);
            for (i = 0; i < 3; i++) {
                CHECK(tu_cloexec((int)got[i]));
                CHECK(!tu_cloexec((int)fds[i]));
            }
            tu_close_all(got, 3);
        }
        tu_close_all(fds, 3);
        close(sv[0]);
        close(sv[1]);
    }
}

#if defined(SCM_CREDENTIALS)
/* Send one message with an arbitrary list of control messages (what a hostile or
 * unusual peer can do with plain sendmsg). */
static void raw_send(int sock, const char *data, const struct cmsghdr *const *parts,
                     size_t nparts)
{
    union {
        struct cmsghdr align;
        unsigned char buf[512];
    } control;
    struct msghdr msg;
    struct iovec iov;
    size_t off = 0, i;

    memset(&control, 0, sizeof control);
    for (i = 0; i < nparts; i++) {
        size_t space = CMSG_SPACE(parts[i]->cmsg_len - CMSG_LEN(0));
        CHECK(off + space <= sizeof control.buf);
        memcpy(control.buf + off, parts[i], parts[i]->cmsg_len);
        off += space;
    }
    memset(&msg, 0, sizeof msg);
    iov.iov_base = (void *)data;
    iov.iov_len = strlen(data);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = off;
    CHECK_EQ(sendmsg(sock, &msg, MSG_NOSIGNAL), (int64_t)iov.iov_len);
}

/* A header built on the heap: level, type and data. */
static struct cmsghdr *make_cmsg(int level, int type, const void *data, size_t len)
{
    struct cmsghdr *h = calloc(1, CMSG_SPACE(len));
    CHECK(h != NULL);
    h->cmsg_level = level;
    h->cmsg_type = type;
    h->cmsg_len = CMSG_LEN(len);
    memcpy(CMSG_DATA(h), data, len);
    return h;
}
#endif /* defined(SCM_CREDENTIALS): the helpers of the case below */

/* A peer sends SCM_CREDENTIALS and SCM_RIGHTS to a receiver with SO_PASSCRED (which also
 * makes the kernel add credentials to every message): the credentials are ignored, the
 * descriptors are all counted and handed out (or closed and flagged when too many). */
TEST(hostile_credentials_and_rights)
{
#if defined(SCM_CREDENTIALS)
    int sv[2], one = 1, before, t;
    intptr_t files[2], got[4];
    int ints[2];
    int32_t n;
    uint32_t rflags;
    char buf[16];
    struct ucred cred;
    struct cmsghdr *creds_msg, *rights_msg;
    const struct cmsghdr *parts[2];

    for (t = 0; t < 2; t++) {
        tu_socketpair(t == 0 ? SOCK_STREAM : SOCK_DGRAM, sv);
        CHECK_SYS(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one));
        files[0] = tu_temp_file("one");
        files[1] = tu_temp_file("two");
        ints[0] = (int)files[0];
        ints[1] = (int)files[1];
        cred.pid = getpid();
        cred.uid = getuid();
        cred.gid = getgid();
        creds_msg = make_cmsg(SOL_SOCKET, SCM_CREDENTIALS, &cred, sizeof cred);
        rights_msg = make_cmsg(SOL_SOCKET, SCM_RIGHTS, ints, sizeof ints);
        before = tu_count_fds();

        /* Credentials first, then rights; and the other way round. */
        parts[0] = creds_msg;
        parts[1] = rights_msg;
        raw_send(sv[0], "creds", parts, 2);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 4, &n, &rflags, 0), 5);
        CHECK_EQ(n, 2);
        CHECK_EQ(rflags, 0);
        CHECK(tu_same_file((int)got[0], (int)files[0]));
        CHECK(tu_same_file((int)got[1], (int)files[1]));
        tu_close_all(got, 2);
        parts[0] = rights_msg;
        parts[1] = creds_msg;
        raw_send(sv[0], "rights", parts, 2);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 1, &n, &rflags, 0), 6);
        CHECK_EQ(n, 1);
        CHECK_EQ(rflags, FDSEND_RECV_FDS_TRUNCATED);
        CHECK(tu_same_file((int)got[0], (int)files[0]));
        close((int)got[0]);
        /* The library's own messages to a SO_PASSCRED receiver. */
        CHECK_RC(fdsend_send(sv[0], "lib", 3, files, 2, 0), 3);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 4, &n, &rflags, 0), 3);
        CHECK_EQ(n, 2);
        CHECK_EQ(rflags, 0);
        tu_close_all(got, 2);
        CHECK_EQ(tu_count_fds(), before);

        free(creds_msg);
        free(rights_msg);
        tu_close_all(files, 2);
        close(sv[0]);
        close(sv[1]);
    }
#else
    tu_skip("SCM_CREDENTIALS is Linux-only");
#endif /* defined(SCM_CREDENTIALS) */
}

/* A receiver that enabled SO_PASSPIDFD (Linux >= 6.5) gets a pidfd of the sender with
 * every message; fdsend_recv cannot hand it out, so it must close it, not leak it. */
TEST(passpidfd_not_leaked)
{
#if defined(__linux__)
    int sv[2], one = 1, before, i;
    intptr_t file, got[2];
    int32_t n;
    uint32_t rflags;
    char buf[8];

    tu_socketpair(SOCK_STREAM, sv);
    if (setsockopt(sv[1], SOL_SOCKET, 76 /* SO_PASSPIDFD */, &one, sizeof one) != 0)
        tu_skip("SO_PASSPIDFD not supported by this kernel (%s)", tu_errno_text());
    file = tu_temp_file("pidfd");
    before = tu_count_fds();
    for (i = 0; i < 3; i++) {
        CHECK_RC(fdsend_send(sv[0], "p", 1, &file, 1, 0), 1);
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), 1);
        CHECK_EQ(n, 1);
        CHECK_EQ(rflags, 0);
        CHECK(tu_same_file((int)got[0], (int)file));
        close((int)got[0]);
        CHECK_EQ(tu_count_fds(), before);
    }
    /* No fds at all, still a pidfd from the kernel. */
    CHECK_RC(fdsend_send(sv[0], "q", 1, NULL, 0, 0), 1);
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), 1);
    CHECK_EQ(n, 0);
    CHECK_EQ(rflags, 0);
    CHECK_EQ(tu_count_fds(), before);
    close((int)file);
    close(sv[0]);
    close(sv[1]);
#else
    tu_skip("SO_PASSPIDFD is Linux-only");
#endif /* defined(__linux__) */
}

/* ---- RLIMIT_NOFILE ------------------------------------------------------------------ */

/* The soft limit at which exactly `free` descriptor numbers below it are unused. */
static int limit_with_free_slots(int free)
{
    static char used[65536];
    const char *dirs[] = {"/proc/self/fd", "/dev/fd"};
    size_t i;
    int limit, unused = 0;
    memset(used, 0, sizeof used);
    for (i = 0; i < 2; i++) {
        DIR *d = opendir(dirs[i]);
        struct dirent *e;
        if (d == NULL)
            continue;
        while ((e = readdir(d)) != NULL) {
            int fd = atoi(e->d_name);
            if (e->d_name[0] != '.' && fd != dirfd(d) && fd >= 0 && fd < 65536)
                used[fd] = 1;
        }
        closedir(d);
        break;
    }
    for (limit = 0; limit < 65536; limit++) {
        if (!used[limit]) {
            if (unused == free)
                return limit;
            unused++;
        }
    }
    tu_fail(__FILE__, __LINE__, "no limit found");
}

static void rlimit_child(void *arg)
{
    int free_slots = *(int *)arg;
    int sv[2], before;
    intptr_t files[3], got[8];
    int32_t n;
    uint32_t rflags;
    char buf[8];
    struct rlimit rl, saved;

    tu_socketpair(SOCK_STREAM, sv);
    files[0] = tu_temp_file("a");
    files[1] = tu_temp_file("b");
    files[2] = tu_temp_file("c");
    CHECK_RC(fdsend_send(sv[0], "lim", 3, files, 3, 0), 3);
    before = tu_count_fds();
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &saved));
    rl = saved;
    rl.rlim_cur = (rlim_t)limit_with_free_slots(free_slots);
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &rl));
    CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 8, &n, &rflags, 0), 3);
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &saved)); /* room again to count the fds */
    CHECK_MEM(buf, "lim", 3);
    CHECK_EQ(n, free_slots);
    CHECK_EQ(rflags, FDSEND_RECV_FDS_TRUNCATED);
    if (n > 0)
        CHECK(tu_same_file((int)got[0], (int)files[0]));
    tu_close_all(got, n);
    CHECK_EQ(tu_count_fds(), before);
}

/* A receiver at its open-file limit: the kernel installs what fits and drops the rest
 * (MSG_CTRUNC): reported as FDSEND_RECV_FDS_TRUNCATED, the data still arrives, nothing
 * leaks. Run in a child so that the lowered limit stays there. */
TEST(rlimit_nofile_truncates)
{
    int free_slots;
    if (tu_under_valgrind())
        tu_skip("valgrind emulates RLIMIT_NOFILE without lowering the kernel's limit");
    for (free_slots = 0; free_slots < 3; free_slots++)
        tu_wait_ok(tu_fork(rlimit_child, &free_slots));
}

/* Receiving on a stream socket that is not connected, or that listens: FDSEND_ENOTCONN
 * (errno ENOTCONN), not the FDSEND_EINVAL that Linux's recvmsg suggests. */
TEST(recv_unconnected_stream)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int socks[2], i;
    unsigned char buf[8];
    intptr_t got[2];
    int32_t n = -1;
    uint32_t rflags = 99;

    CHECK_SYS(s);
    CHECK_SYS(l);
    {
        struct sockaddr_un addr;
        memset(&addr, 0, sizeof addr);
        addr.sun_family = AF_UNIX;
        snprintf(addr.sun_path, sizeof addr.sun_path, "%s", tu_temppath("listen.sock"));
        CHECK_SYS(bind(l, (struct sockaddr *)&addr, sizeof addr));
    }
    CHECK_SYS(listen(l, 1));
    socks[0] = s;
    socks[1] = l;
    for (i = 0; i < 2; i++) {
        errno = 0;
        CHECK_RC(fdsend_recv(socks[i], buf, sizeof buf, got, 2, &n, &rflags, 0),
                 FDSEND_ENOTCONN);
        CHECK_EQ(errno, ENOTCONN);
        CHECK_EQ(n, 0);
        CHECK_EQ(rflags, 0);
        CHECK_RC(fdsend_recv(socks[i], NULL, 0, got, 2, &n, &rflags, FDSEND_DONTWAIT),
                 FDSEND_ENOTCONN);
        CHECK_RC(fdsend_msg_recv(socks[i], buf, sizeof buf, got, 2, &n, 0), FDSEND_ENOTCONN);
        CHECK_EQ(fdsend_last_os_error(), ENOTCONN);
    }
    close(s);
    close(l);
}

/* fdsend_peek consumes nothing and installs no descriptor: on each socket type the message
 * (data and descriptors) arrives whole afterwards; the fd count does not move while
 * peeking; an empty queue is FDSEND_EAGAIN with FDSEND_DONTWAIT and FDSEND_ETIMEDOUT at a
 * blocking socket's SO_RCVTIMEO; bad arguments are refused. */
TEST(peek_consumes_nothing)
{
    int t;
    for (t = 0; t < 3; t++) {
        int sv[2], base, file = tu_temp_file("peeked");
        intptr_t fds[2], got[2];
        int32_t n = -1;
        uint32_t rflags = 99;
        char buf[16];

        if (!tu_try_socketpair(socket_types[t], sv)) {
            close(file);
            continue;
        }
        CHECK_RC(fdsend_peek(sv[1], buf, sizeof buf, FDSEND_DONTWAIT), FDSEND_EAGAIN);
        tu_set_timeout_ms(sv[1], SO_RCVTIMEO, 100);
        CHECK_RC(fdsend_peek(sv[1], buf, sizeof buf, 0), FDSEND_ETIMEDOUT);
        fds[0] = file;
        fds[1] = file;
        CHECK_RC(fdsend_send(sv[0], "hello, world", 12, fds, 2, 0), 12);
        base = tu_count_fds();
        memset(buf, 0, sizeof buf);
        CHECK_RC(fdsend_peek(sv[1], buf, 5, 0), 5);
        CHECK_MEM(buf, "hello", 5);
        CHECK_RC(fdsend_peek(sv[1], buf, sizeof buf, FDSEND_DONTWAIT), 12);
        CHECK_MEM(buf, "hello, world", 12);
        CHECK_EQ(tu_count_fds(), base); /* no descriptor installed by a peek */
        CHECK_RC(fdsend_recv(sv[1], buf, sizeof buf, got, 2, &n, &rflags, 0), 12);
        CHECK_MEM(buf, "hello, world", 12);
        CHECK_EQ(n, 2);
        CHECK_EQ(rflags, 0);
        CHECK(tu_same_file((int)got[0], file) && tu_same_file((int)got[1], file));
        close((int)got[0]);
        close((int)got[1]);

        CHECK_RC(fdsend_peek(sv[1], NULL, 1, 0), FDSEND_EINVAL);
        CHECK_RC(fdsend_peek(sv[1], buf, sizeof buf, 0x80), FDSEND_EINVAL);
        CHECK_RC(fdsend_peek(-1, buf, sizeof buf, 0), FDSEND_EBADF);
        if (socket_types[t] == SOCK_STREAM) {
            close(sv[0]); /* the end of the stream peeks as 0 bytes */
            CHECK_RC(fdsend_peek(sv[1], buf, sizeof buf, 0), 0);
        } else {
            close(sv[0]);
        }
        close(sv[1]);
        close(file);
    }
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(received_fds_are_cloexec),
        CASE(hostile_credentials_and_rights),
        CASE(passpidfd_not_leaked),
        CASE(rlimit_nofile_truncates),
        CASE(recv_unconnected_stream),
        CASE(peek_consumes_nothing),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
