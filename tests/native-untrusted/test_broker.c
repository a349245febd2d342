/* fdsend_open_beneath and the file broker: a path that leaves the directory ("..", absolute,
 * a symbolic link pointing inside or out), a FIFO, a device or a directory is refused with
 * its own code, through openat2 and through the portable O_NOFOLLOW walk alike; an allowed
 * file arrives as a read-only regular file that cannot be written.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* tu_tempdir()/root holds: ok.txt, sub/inner.txt, fifo, links in_link -> ok.txt,
 * out_link -> ../secret, abs_link -> /etc/hostname, sub_link -> sub; tu_tempdir()/secret is
 * outside the root. Returns an O_DIRECTORY descriptor of root. */
static int make_root(void)
{
    int fd, dir;
    char root[512];
    snprintf(root, sizeof root, "%s", tu_temppath("root"));
    CHECK_SYS(mkdir(root, 0700));
    CHECK_SYS(mkdir(tu_temppath("root/sub"), 0700));
    fd = open(tu_temppath("root/ok.txt"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    CHECK_SYS(fd);
    CHECK_RC(write(fd, "allowed\n", 8), 8);
    close(fd);
    fd = open(tu_temppath("root/sub/inner.txt"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    CHECK_SYS(fd);
    close(fd);
    fd = open(tu_temppath("secret"), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    CHECK_SYS(fd);
    close(fd);
    CHECK_SYS(mkfifo(tu_temppath("root/fifo"), 0600));
    CHECK_SYS(symlink("ok.txt", tu_temppath("root/in_link")));
    CHECK_SYS(symlink("../secret", tu_temppath("root/out_link")));
    CHECK_SYS(symlink("/etc/hostname", tu_temppath("root/abs_link")));
    CHECK_SYS(symlink("sub", tu_temppath("root/sub_link")));
    dir = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK_SYS(dir);
    return dir;
}

static const struct {
    const char *path;
    int32_t expected;
} cases_table[] = {
    {"ok.txt", FDSEND_OK},
    {"./sub//inner.txt", FDSEND_OK},
    {"../secret", FDSEND_EESCAPE},
    {"sub/../ok.txt", FDSEND_EESCAPE},
    {"..", FDSEND_EESCAPE},
    {"/etc/hostname", FDSEND_EESCAPE},
    {"in_link", FDSEND_EESCAPE},        /* a symbolic link, even one that stays inside */
    {"out_link", FDSEND_EESCAPE},
    {"abs_link", FDSEND_EESCAPE},
    {"sub_link/inner.txt", FDSEND_EESCAPE}, /* a link in the middle of the path */
    {"fifo", FDSEND_ENOTREG},           /* and the broker did not block on it */
    {"sub", FDSEND_ENOTREG},
    {".", FDSEND_ENOTREG},
    {"missing", FDSEND_ENOENT},
    {"ok.txt/x", FDSEND_ENOENT},
    {"", FDSEND_EINVAL},
};

static void check_allowed(intptr_t fd)
{
    fdsend_fd_info_t i;
    char buf[16] = "";
    memset(&i, 0, sizeof i);
    i.struct_size = sizeof i;
    CHECK_RC(fdsend_fd_info(fd, &i), FDSEND_OK);
    CHECK_EQ(i.kind, FDSEND_KIND_FILE);
    CHECK_EQ(i.access, FDSEND_ACCESS_READ);
    CHECK(i.flags & FDSEND_FD_CLOEXEC);
    CHECK(!(i.flags & FDSEND_FD_NONBLOCK));
    CHECK(write((int)fd, "x", 1) == -1 && errno == EBADF); /* writes fail */
    CHECK(pread((int)fd, buf, sizeof buf, 0) >= 0);
}

static void run_table(uint32_t flags)
{
    int dir = make_root(), before = tu_count_fds();
    size_t k;
    tu_watchdog(20, "opening a FIFO must not block");
    for (k = 0; k < sizeof cases_table / sizeof cases_table[0]; k++) {
        intptr_t fd = 99;
        int32_t rc = fdsend_open_beneath(dir, cases_table[k].path, flags, &fd);
        if (rc != cases_table[k].expected)
            tu_fail(__FILE__, __LINE__, "\"%s\": %s, expected %s", cases_table[k].path,
                    tu_describe(rc), tu_describe(cases_table[k].expected));
        if (rc == FDSEND_OK) {
            check_allowed(fd);
            close((int)fd);
        } else {
            CHECK_EQ(fd, -1);
        }
    }
    CHECK_EQ(tu_count_fds(), before);
    close(dir);
}

TEST(open_beneath_openat2)
{
    run_table(0);
}

TEST(open_beneath_portable_walk)
{
    run_table(FDSEND_OPEN_NO_OPENAT2);
}

TEST(devices_are_refused)
{
    int dev = open("/dev", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    intptr_t fd = 5;
    CHECK_SYS(dev);
    CHECK_RC(fdsend_open_beneath(dev, "null", 0, &fd), FDSEND_ENOTREG);
    CHECK_RC(fdsend_open_beneath(dev, "null", FDSEND_OPEN_NO_OPENAT2, &fd), FDSEND_ENOTREG);
    CHECK_EQ(fd, -1);
    CHECK_RC(fdsend_open_beneath(dev, "null", 0x80, &fd), FDSEND_EINVAL);
    CHECK_RC(fdsend_open_beneath(dev, NULL, 0, &fd), FDSEND_EINVAL);
    CHECK_RC(fdsend_open_beneath(dev, "null", 0, NULL), FDSEND_EINVAL);
    CHECK_RC(fdsend_open_beneath(-1, "null", 0, &fd), FDSEND_EBADF);
    close(dev);
    /* fdsend_open_directory: directories only. */
    CHECK_RC(fdsend_open_directory("/dev/null", &fd), FDSEND_ENOTREG);
    CHECK_RC(fdsend_open_directory(tu_temppath("nope"), &fd), FDSEND_ENOENT);
    CHECK_EQ(fd, -1);
    CHECK_RC(fdsend_open_directory("/dev", &fd), FDSEND_OK);
    CHECK(fd >= 0);
    close((int)fd);
}

/* The broker: requests served one at a time on a seqpacket pair, in this process. */
static int32_t ask(int worker, int broker, int dir, const char *path, intptr_t *fd)
{
    int32_t st = 12345;
    CHECK_RC(fdsend_msg_send(worker, path, strlen(path), NULL, 0, 0), FDSEND_OK);
    CHECK_RC(fdsend_broker_serve_one(broker, dir, 0, &st), FDSEND_OK);
    /* The client reads the reply the broker sent. */
    {
        unsigned char reply[4];
        intptr_t got[2] = {-1, -1};
        int32_t n = 0;
        CHECK_RC(fdsend_msg_recv(worker, reply, sizeof reply, got, 2, &n, 0), 4);
        CHECK_EQ((int32_t)((uint32_t)reply[0] | (uint32_t)reply[1] << 8 |
                           (uint32_t)reply[2] << 16 | (uint32_t)reply[3] << 24), st);
        CHECK_EQ(n, st == FDSEND_OK ? 1 : 0);
        *fd = got[0];
    }
    return st;
}

TEST(broker_protocol)
{
    int sv[2], dir = make_root(), before;
    size_t k;
    intptr_t fd, extra;
    int32_t st = 0;
    char longpath[FDSEND_BROKER_MAX_PATH + 2];
    tu_socketpair(SOCK_SEQPACKET, sv);
    before = tu_count_fds();
    for (k = 0; k < sizeof cases_table / sizeof cases_table[0]; k++) {
        if (cases_table[k].path[0] == '\0')
            continue; /* an empty request is tested below */
        CHECK_RC(ask(sv[0], sv[1], dir, cases_table[k].path, &fd), cases_table[k].expected);
        if (fd >= 0) {
            check_allowed(fd);
            close((int)fd);
        }
    }
    /* A request that carries descriptors: refused, and the broker closes them. */
    extra = tu_temp_file("x");
    CHECK_RC(fdsend_msg_send(sv[0], "ok.txt", 6, &extra, 1, 0), FDSEND_OK);
    CHECK_RC(fdsend_broker_serve_one(sv[1], dir, 0, &st), FDSEND_OK);
    CHECK_RC(st, FDSEND_EPOLICY);
    close((int)extra);
    CHECK_RC(fdsend_msg_recv(sv[0], &k, sizeof k, NULL, 0, NULL, 0), 4);
    /* Empty, NUL-containing and too long paths. */
    CHECK_RC(fdsend_msg_send(sv[0], "", 0, NULL, 0, 0), FDSEND_OK);
    CHECK_RC(fdsend_broker_serve_one(sv[1], dir, 0, &st), FDSEND_OK);
    CHECK_RC(st, FDSEND_EINVAL);
    CHECK_RC(fdsend_msg_recv(sv[0], &k, sizeof k, NULL, 0, NULL, 0), 4);
    CHECK_RC(fdsend_msg_send(sv[0], "ok.txt\0x", 8, NULL, 0, 0), FDSEND_OK);
    CHECK_RC(fdsend_broker_serve_one(sv[1], dir, 0, &st), FDSEND_OK);
    CHECK_RC(st, FDSEND_EINVAL);
    CHECK_RC(fdsend_msg_recv(sv[0], &k, sizeof k, NULL, 0, NULL, 0), 4);
    memset(longpath, 'a', sizeof longpath);
    CHECK_RC(fdsend_msg_send(sv[0], longpath, sizeof longpath, NULL, 0, 0), FDSEND_OK);
    CHECK_RC(fdsend_broker_serve_one(sv[1], dir, 0, &st), FDSEND_OK);
    CHECK_RC(st, FDSEND_EINVAL);
    CHECK_RC(fdsend_msg_recv(sv[0], &k, sizeof k, NULL, 0, NULL, 0), 4);
    CHECK_EQ(tu_count_fds(), before);
    /* The client ends the session: the broker sees FDSEND_EOF. */
    close(sv[0]);
    CHECK_RC(fdsend_broker_serve_one(sv[1], dir, 0, &st), FDSEND_EOF);
    close(sv[1]);
    close(dir);
}

/* The broker in its own process, the worker using fdsend_broker_open. */
typedef struct broker_args {
    int sock;
    int dir;
    int worker_end; /* closed in the broker, so that it sees the worker's end of stream */
} broker_args;

static void broker_main(void *arg)
{
    broker_args *a = arg;
    int32_t rc, st;
    close(a->worker_end);
    while ((rc = fdsend_broker_serve_one(a->sock, a->dir, 0, &st)) == FDSEND_OK) {
    }
    _exit(rc == FDSEND_EOF ? 0 : 1);
}

TEST(broker_across_processes)
{
    int sv[2], dir = make_root(), before;
    size_t k;
    broker_args a;
    pid_t pid;
    tu_socketpair(SOCK_STREAM, sv);
    a.sock = sv[1];
    a.dir = dir;
    a.worker_end = sv[0];
    pid = tu_fork(broker_main, &a);
    close(sv[1]);
    close(dir); /* the worker never holds the directory */
    before = tu_count_fds();
    for (k = 0; k < sizeof cases_table / sizeof cases_table[0]; k++) {
        intptr_t fd = 77;
        int32_t rc = fdsend_broker_open(sv[0], cases_table[k].path, &fd);
        int32_t want = cases_table[k].expected;
        if (rc != want)
            tu_fail(__FILE__, __LINE__, "\"%s\": %s, expected %s", cases_table[k].path,
                    tu_describe(rc), tu_describe(want));
        if (rc == FDSEND_OK) {
            char buf[16] = "";
            check_allowed(fd);
            if (strcmp(cases_table[k].path, "ok.txt") == 0) {
                CHECK_RC(pread((int)fd, buf, sizeof buf - 1, 0), 8);
                CHECK(strcmp(buf, "allowed\n") == 0);
            }
            close((int)fd);
        } else {
            CHECK_EQ(fd, -1);
        }
    }
    CHECK_EQ(tu_count_fds(), before);
    close(sv[0]);
    tu_wait_ok(pid);
}

static const tu_case cases[] = {
    CASE(open_beneath_openat2),
    CASE(open_beneath_portable_walk),
    CASE(devices_are_refused),
    CASE(broker_protocol),
    CASE(broker_across_processes),
};

int main(int argc, char **argv)
{
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
