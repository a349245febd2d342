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
#include <sys/resource.h>
#include <sys/socket.h>
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

/* ---- The protocol's codec (fdsend_broker_check_request / _reply_encode / _reply_decode) ---- */

TEST(check_request)
{
    char big[FDSEND_BROKER_MAX_PATH + 1];
    memset(big, 'a', sizeof big);
    CHECK_RC(fdsend_broker_check_request("ok.txt", 6, 0), FDSEND_OK);
    CHECK_RC(fdsend_broker_check_request("\xff\xfe/x", 4, 0), FDSEND_OK); /* bytes, not UTF-8 */
    CHECK_RC(fdsend_broker_check_request(big, FDSEND_BROKER_MAX_PATH, 0), FDSEND_OK);
    CHECK_RC(fdsend_broker_check_request(big, FDSEND_BROKER_MAX_PATH + 1, 0), FDSEND_EINVAL);
    /* Too long is judged by the length alone (the payload need not have been kept), and
     * before the descriptors. */
    CHECK_RC(fdsend_broker_check_request(NULL, FDSEND_BROKER_MAX_PATH + 1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_check_request(NULL, UINT64_MAX, 5), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_check_request("ok.txt", 6, 1), FDSEND_EPOLICY);
    CHECK_RC(fdsend_broker_check_request("ok.txt", 6, FDSEND_MAX_FDS + 10), FDSEND_EPOLICY);
    CHECK_RC(fdsend_broker_check_request(NULL, 0, 1), FDSEND_EPOLICY);
    CHECK_RC(fdsend_broker_check_request("", 0, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_check_request("ok.txt\0x", 8, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_check_request("\0", 1, 0), FDSEND_EINVAL);
    /* Bad arguments. */
    CHECK_RC(fdsend_broker_check_request("ok.txt", 6, -1), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_check_request(NULL, 6, 0), FDSEND_EINVAL);
}

TEST(reply_encode)
{
    unsigned char b[8];
    int32_t n = 7;
    memset(b, 0xAA, sizeof b);
    CHECK_RC(fdsend_broker_reply_encode(FDSEND_OK, b, FDSEND_BROKER_REPLY_SIZE, &n), FDSEND_OK);
    CHECK(b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0 && b[4] == 0xAA);
    CHECK_EQ(n, 1);
    CHECK_RC(fdsend_broker_reply_encode(FDSEND_EESCAPE, b, sizeof b, &n), FDSEND_OK);
    CHECK(b[0] == 0xE4 && b[1] == 0xFF && b[2] == 0xFF && b[3] == 0xFF); /* -28, little-endian */
    CHECK_EQ(n, 0);
    CHECK_RC(fdsend_broker_reply_encode(FDSEND_EOTHER, b, sizeof b, &n), FDSEND_OK);
    CHECK(b[0] == 0x9D && b[3] == 0xFF);
    CHECK_EQ(n, 0);
    /* A code no reply carries (the client's own connection failures, FDSEND_EPROTO, a code
     * unknown here): sent as FDSEND_EOTHER. */
    CHECK_RC(fdsend_broker_reply_encode(FDSEND_ETIMEDOUT, b, sizeof b, &n), FDSEND_OK);
    CHECK(b[0] == 0x9D && b[1] == 0xFF && b[2] == 0xFF && b[3] == 0xFF); /* -99 */
    CHECK_EQ(n, 0);
    memset(b, 0, sizeof b);
    CHECK_RC(fdsend_broker_reply_encode(INT32_MIN, b, sizeof b, &n), FDSEND_OK);
    CHECK(b[0] == 0x9D && b[3] == 0xFF);
    /* Positive statuses, and bad arguments: nothing written, *nfds 0. */
    memset(b, 0xAA, sizeof b);
    n = 7;
    CHECK_RC(fdsend_broker_reply_encode(1, b, sizeof b, &n), FDSEND_EINVAL);
    CHECK_EQ(n, 0);
    CHECK_RC(fdsend_broker_reply_encode(INT32_MAX, b, sizeof b, &n), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_reply_encode(FDSEND_OK, b, FDSEND_BROKER_REPLY_SIZE - 1, &n), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_reply_encode(FDSEND_OK, NULL, 4, &n), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_reply_encode(FDSEND_OK, b, sizeof b, NULL), FDSEND_EINVAL);
    CHECK(b[0] == 0xAA && b[3] == 0xAA);
    CHECK_EQ(n, 0);
}

/* The statuses a reply may carry are exactly FDSEND_OK and the refusals fdsend.h lists at
 * fdsend_broker_reply_encode: none of them is a failure the client's own connection reports
 * (FDSEND_EOF, FDSEND_EAGAIN, FDSEND_ETIMEDOUT...), nor FDSEND_EPROTO (the client's verdict on
 * a reply). Every other negative code is encoded as FDSEND_EOTHER and refused by the decoder;
 * a positive one is refused by both. A code added to enum fdsend_status is not a refusal
 * until it is listed here and there. */
static int listed_refusal(int32_t code)
{
    static const int32_t refusals[] = {FDSEND_EINVAL,       FDSEND_ENOENT, FDSEND_EACCES,
                                       FDSEND_ENAMETOOLONG, FDSEND_EMFILE, FDSEND_EPOLICY,
                                       FDSEND_EESCAPE,      FDSEND_ENOTREG, FDSEND_EOTHER};
    size_t i;
    for (i = 0; i < sizeof refusals / sizeof refusals[0]; i++)
        if (refusals[i] == code)
            return 1;
    return 0;
}

TEST(reply_status_range)
{
    int32_t code;
    for (code = -300; code <= 300; code++) {
        unsigned char b[FDSEND_BROKER_REPLY_SIZE];
        int32_t n = 0, st = 1, sent;
        intptr_t file = 5;
        int refusal = listed_refusal(code);
        int32_t rc = fdsend_broker_reply_encode(code, b, sizeof b, &n);
        if (rc != (code <= 0 ? FDSEND_OK : FDSEND_EINVAL))
            tu_fail(__FILE__, __LINE__, "encode(%d): %s", (int)code, tu_describe(rc));
        if (rc == FDSEND_OK) {
            sent = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                             (uint32_t)b[3] << 24);
            if (sent != (code == FDSEND_OK || refusal ? code : FDSEND_EOTHER))
                tu_fail(__FILE__, __LINE__, "encode(%d) sent %d", (int)code, (int)sent);
        }
        b[0] = (unsigned char)code;
        b[1] = (unsigned char)((uint32_t)code >> 8);
        b[2] = (unsigned char)((uint32_t)code >> 16);
        b[3] = (unsigned char)((uint32_t)code >> 24);
        CHECK_RC(fdsend_broker_reply_decode(b, sizeof b, NULL, 0, &st, &file, NULL), FDSEND_OK);
        CHECK_EQ(file, -1);
        if (code == FDSEND_OK)
            CHECK_RC(st, FDSEND_EPROTO); /* FDSEND_OK without its file */
        else if (st != (refusal ? code : FDSEND_EPROTO))
            tu_fail(__FILE__, __LINE__, "decode(%d): %s", (int)code, tu_describe(st));
    }
    /* Every listed refusal is a code fdsend_strerror knows. */
    for (code = -300; code < 0; code++)
        if (listed_refusal(code))
            CHECK(strcmp(fdsend_strerror(code), fdsend_strerror(-12345)) != 0);
}

/* Descriptors of every kind a hostile broker could send (O_CLOEXEC), made once per case. */
enum { RO_FILE, WO_FILE, RW_FILE, DIRECTORY, SOCKET, PIPE };

static intptr_t make_fd(int kind)
{
    int fd = -1, sv[2];
    const char *file = tu_temppath("reply.txt");
    switch (kind) {
    case RO_FILE: fd = open(file, O_RDONLY | O_CREAT | O_CLOEXEC, 0600); break;
    case WO_FILE: fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600); break;
    case RW_FILE: fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600); break;
    case DIRECTORY: fd = open(tu_tempdir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); break;
    case SOCKET:
        tu_socketpair(SOCK_STREAM, sv);
        close(sv[1]);
        fd = sv[0];
        break;
    case PIPE:
        CHECK_SYS(pipe(sv));
        close(sv[1]);
        fd = sv[0];
        break;
    }
    CHECK_SYS(fd);
    return fd;
}

static void put_status(unsigned char b[4], int32_t st)
{
    int32_t n;
    CHECK_RC(fdsend_broker_reply_encode(st, b, 4, &n), FDSEND_OK);
}

/* decode(reply of status st, the descriptors of kinds[0 .. nk)): every descriptor closed and
 * set to -1, FDSEND_EPROTO, and the violation's reason is want_reason. */
static void check_refused(int32_t st, const int *kinds, int nk, int32_t want_reason)
{
    unsigned char b[4];
    intptr_t fds[4];
    int32_t status = 0;
    intptr_t file = 9;
    fdsend_violation v;
    int i, before = tu_count_fds();
    for (i = 0; i < nk; i++)
        fds[i] = make_fd(kinds[i]);
    put_status(b, st);
    CHECK_RC(fdsend_broker_reply_decode(b, 4, fds, nk, &status, &file, &v), FDSEND_OK);
    CHECK_RC(status, FDSEND_EPROTO);
    CHECK_EQ(file, -1);
    CHECK_EQ(v.reason, want_reason);
    CHECK(v.message[0] != '\0');
    for (i = 0; i < nk; i++)
        CHECK_EQ(fds[i], -1);
    CHECK_EQ(tu_count_fds(), before);
}

TEST(reply_decode_checks_the_descriptors)
{
    static const int ro[] = {RO_FILE}, wo[] = {WO_FILE}, rw[] = {RW_FILE}, dir[] = {DIRECTORY},
                     sock[] = {SOCKET}, pip[] = {PIPE}, two[] = {RO_FILE, RO_FILE};
    unsigned char b[4];
    intptr_t fds[2];
    int32_t status = 0;
    intptr_t file = 9;
    int before = tu_count_fds();
    /* FDSEND_OK with one read-only regular file: accepted, handed over. */
    fds[0] = make_fd(RO_FILE);
    put_status(b, FDSEND_OK);
    CHECK_RC(fdsend_broker_reply_decode(b, 4, fds, 1, &status, &file, NULL), FDSEND_OK);
    CHECK_RC(status, FDSEND_OK);
    CHECK(file >= 0 && tu_fd_is_open((int)file));
    CHECK_EQ(fds[0], -1);
    close((int)file);
    /* A refusal without descriptors: the broker's status. */
    put_status(b, FDSEND_EESCAPE);
    CHECK_RC(fdsend_broker_reply_decode(b, 4, NULL, 0, &status, &file, NULL), FDSEND_OK);
    CHECK_RC(status, FDSEND_EESCAPE);
    CHECK_EQ(file, -1);
    CHECK_EQ(tu_count_fds(), before);
    /* A writable file, a directory, a socket, a pipe: refused whatever the status says. */
    check_refused(FDSEND_OK, wo, 1, FDSEND_VIOLATION_ACCESS);
    check_refused(FDSEND_OK, rw, 1, FDSEND_VIOLATION_ACCESS);
    check_refused(FDSEND_OK, dir, 1, FDSEND_VIOLATION_KIND);
    check_refused(FDSEND_OK, sock, 1, FDSEND_VIOLATION_KIND);
    check_refused(FDSEND_OK, pip, 1, FDSEND_VIOLATION_KIND);
    /* A count that does not match the status. */
    check_refused(FDSEND_OK, ro, 0, FDSEND_VIOLATION_TOO_FEW_FDS);
    check_refused(FDSEND_OK, two, 2, FDSEND_VIOLATION_TOO_MANY_FDS);
    check_refused(FDSEND_ENOENT, ro, 1, FDSEND_VIOLATION_TOO_MANY_FDS);
    check_refused(FDSEND_ENOENT, dir, 1, FDSEND_VIOLATION_TOO_MANY_FDS);
    /* Entries already closed by a receive (-1) are counted, never used. */
    fds[0] = -1;
    put_status(b, FDSEND_OK);
    CHECK_RC(fdsend_broker_reply_decode(b, 4, fds, 1, &status, &file, NULL), FDSEND_OK);
    CHECK_RC(status, FDSEND_EPROTO);
    CHECK_EQ(file, -1);
    fds[0] = fds[1] = -1;
    put_status(b, FDSEND_EACCES);
    CHECK_RC(fdsend_broker_reply_decode(b, 4, fds, 2, &status, &file, NULL), FDSEND_OK);
    CHECK_RC(status, FDSEND_EPROTO);
    CHECK_EQ(tu_count_fds(), before);
}

TEST(reply_decode_checks_the_payload)
{
    static const uint64_t sizes[] = {0, 1, 3, 5, 8, 65, UINT64_MAX};
    /* The client's own connection failures too: a reply imitating one is refused. */
    static const int32_t bad_status[] = {1,           0x7FFFFFFF,    FDSEND_EPROTO,
                                         FDSEND_ENOTREG - 1, -98,    INT32_MIN,
                                         FDSEND_EOF,  FDSEND_EAGAIN, FDSEND_ETIMEDOUT,
                                         FDSEND_EPIPE};
    unsigned char b[8] = {0};
    int before = tu_count_fds();
    size_t k;
    for (k = 0; k < sizeof sizes / sizeof sizes[0] + sizeof bad_status / sizeof bad_status[0]; k++) {
        int in_sizes = k < sizeof sizes / sizeof sizes[0];
        uint64_t len = in_sizes ? sizes[k] : 4;
        intptr_t fds[1];
        int32_t status = 0;
        intptr_t file = 9;
        fdsend_violation v;
        fds[0] = make_fd(RO_FILE);
        if (!in_sizes) {
            int32_t st = bad_status[k - sizeof sizes / sizeof sizes[0]];
            b[0] = (unsigned char)st;
            b[1] = (unsigned char)((uint32_t)st >> 8);
            b[2] = (unsigned char)((uint32_t)st >> 16);
            b[3] = (unsigned char)((uint32_t)st >> 24);
        }
        /* The payload is read only when it has the reply's size: NULL is fine otherwise. */
        CHECK_RC(fdsend_broker_reply_decode(len == 4 ? b : NULL, len, fds, 1, &status, &file, &v),
                 FDSEND_OK);
        CHECK_RC(status, FDSEND_EPROTO);
        CHECK_EQ(file, -1);
        CHECK_EQ(fds[0], -1);
        CHECK_EQ(v.reason, FDSEND_VIOLATION_NONE);
        CHECK_EQ(v.index, -1);
        CHECK(strstr(v.message, "reply") != NULL);
    }
    CHECK_EQ(tu_count_fds(), before);
}

TEST(reply_decode_bad_arguments)
{
    unsigned char b[4];
    intptr_t fd = make_fd(RO_FILE), fds[1];
    int32_t status;
    intptr_t file;
    put_status(b, FDSEND_OK);
    fds[0] = fd;
    CHECK_RC(fdsend_broker_reply_decode(b, 4, fds, 1, NULL, &file, NULL), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_reply_decode(b, 4, fds, 1, &status, NULL, NULL), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_reply_decode(b, 4, fds, -1, &status, &file, NULL), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_reply_decode(b, 4, NULL, 1, &status, &file, NULL), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_reply_decode(NULL, 4, fds, 1, &status, &file, NULL), FDSEND_EINVAL);
    CHECK_EQ(file, -1);
    /* Nothing was closed. */
    CHECK_EQ(fds[0], fd);
    CHECK(tu_fd_is_open((int)fd));
    close((int)fd);
}

/* fdsend_broker_open against a hostile broker: each reply is queued on a seqpacket pair
 * before the call (which sends its request, then reads it). Refused with FDSEND_EPROTO,
 * *fd -1, nothing left open in the worker. */
static void hostile_reply(int worker, int broker, const void *payload, size_t len, int kind,
                          int nfds, int32_t want)
{
    intptr_t fds[3] = {-1, -1, -1}, fd = 7;
    char req[64];
    int i, before;
    for (i = 0; i < nfds; i++)
        fds[i] = make_fd(kind);
    CHECK_RC(fdsend_msg_send(broker, payload, len, fds, nfds, 0), FDSEND_OK);
    tu_close_all(fds, nfds);
    before = tu_count_fds();
    CHECK_RC(fdsend_broker_open(worker, "ok.txt", &fd), want);
    CHECK_EQ(fd, -1);
    CHECK_EQ(tu_count_fds(), before);
    CHECK_RC(fdsend_msg_recv(broker, req, sizeof req, NULL, 0, NULL, 0), 6);
}

TEST(broker_open_refuses_hostile_replies)
{
    int sv[2];
    unsigned char ok[4], refused[4], big[8] = {0}, positive[4] = {1, 0, 0, 0},
                                          unknown[4] = {0x80, 0xFF, 0xFF, 0xFF};
    static const int32_t imitations[] = {FDSEND_EOF, FDSEND_EAGAIN, FDSEND_ETIMEDOUT,
                                         FDSEND_EPIPE, FDSEND_ECONNRESET};
    int i;
    tu_socketpair(SOCK_SEQPACKET, sv);
    put_status(ok, FDSEND_OK);
    put_status(refused, FDSEND_ENOENT);
    hostile_reply(sv[0], sv[1], ok, 4, WO_FILE, 1, FDSEND_EPROTO);
    hostile_reply(sv[0], sv[1], ok, 4, RW_FILE, 1, FDSEND_EPROTO);
    hostile_reply(sv[0], sv[1], ok, 4, DIRECTORY, 1, FDSEND_EPROTO);
    hostile_reply(sv[0], sv[1], ok, 4, SOCKET, 1, FDSEND_EPROTO);
    hostile_reply(sv[0], sv[1], ok, 4, RO_FILE, 0, FDSEND_EPROTO);
    hostile_reply(sv[0], sv[1], ok, 4, RO_FILE, 2, FDSEND_EPROTO);
    hostile_reply(sv[0], sv[1], ok, 4, RO_FILE, 3, FDSEND_EPROTO); /* refused by the receive */
    hostile_reply(sv[0], sv[1], refused, 4, RO_FILE, 1, FDSEND_EPROTO);
    hostile_reply(sv[0], sv[1], refused, 4, RO_FILE, 0, FDSEND_ENOENT); /* a real refusal */
    hostile_reply(sv[0], sv[1], big, 8, RO_FILE, 1, FDSEND_EPROTO);
    hostile_reply(sv[0], sv[1], big, 3, RO_FILE, 0, FDSEND_EPROTO);
    hostile_reply(sv[0], sv[1], positive, 4, RO_FILE, 0, FDSEND_EPROTO);
    hostile_reply(sv[0], sv[1], unknown, 4, RO_FILE, 0, FDSEND_EPROTO);
    /* A status imitating a failure of the worker's own connection: were it returned as it
     * is, the worker could not tell it from its connection's own end, timeout or
     * would-block (put_status would send these as FDSEND_EOTHER: the bytes are written). */
    for (i = 0; i < (int)(sizeof imitations / sizeof imitations[0]); i++) {
        unsigned char b[4];
        uint32_t u = (uint32_t)imitations[i];
        b[0] = (unsigned char)u;
        b[1] = (unsigned char)(u >> 8);
        b[2] = (unsigned char)(u >> 16);
        b[3] = (unsigned char)(u >> 24);
        hostile_reply(sv[0], sv[1], b, 4, RO_FILE, 0, FDSEND_EPROTO);
    }
    close(sv[0]);
    close(sv[1]);
}

/* A request whose descriptor the broker cannot install (its RLIMIT_NOFILE reached) is still
 * answered, FDSEND_EPOLICY, and the broker keeps serving: in a child, whose table is the
 * one filled. */
typedef struct limit_args {
    int sock, dir, worker_end;
} limit_args;

static void limited_broker_main(void *arg)
{
    limit_args *a = arg;
    struct rlimit rl;
    int32_t rc, st = 0;
    int top;
    close(a->worker_end);
    /* No descriptor number is free: the lowest free one is at or above the soft limit. */
    top = fcntl(0, F_DUPFD, 0);
    if (top < 0)
        _exit(2);
    close(top);
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        _exit(2);
    rl.rlim_cur = (rlim_t)top;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        _exit(2);
    rc = fdsend_broker_serve_one(a->sock, a->dir, 0, &st);
    if (rc != FDSEND_OK || st != FDSEND_EPOLICY)
        _exit(3);
    _exit(0);
}

TEST(broker_answers_a_request_whose_descriptors_it_cannot_take)
{
    int sv[2], dir = make_root();
    limit_args a;
    intptr_t extra;
    unsigned char reply[4];
    intptr_t got[1] = {-1};
    int32_t n = 5;
    pid_t pid;
    tu_socketpair(SOCK_SEQPACKET, sv);
    a.sock = sv[1];
    a.dir = dir;
    a.worker_end = sv[0];
    extra = make_fd(RO_FILE);
    CHECK_RC(fdsend_msg_send(sv[0], "ok.txt", 6, &extra, 1, 0), FDSEND_OK);
    close((int)extra);
    pid = tu_fork(limited_broker_main, &a);
    close(sv[1]);
    close(dir);
    tu_set_timeout_ms(sv[0], SO_RCVTIMEO, 20000);
    CHECK_RC(fdsend_msg_recv(sv[0], reply, sizeof reply, got, 1, &n, 0), 4);
    CHECK_EQ(n, 0);
    CHECK(reply[0] == 0xE6 && reply[1] == 0xFF); /* -26: FDSEND_EPOLICY */
    close(sv[0]);
    tu_wait_ok(pid);
}

static const tu_case cases[] = {
    CASE(open_beneath_openat2),
    CASE(open_beneath_portable_walk),
    CASE(devices_are_refused),
    CASE(broker_protocol),
    CASE(broker_across_processes),
    CASE(check_request),
    CASE(reply_encode),
    CASE(reply_status_range),
    CASE(reply_decode_checks_the_descriptors),
    CASE(reply_decode_checks_the_payload),
    CASE(reply_decode_bad_arguments),
    CASE(broker_open_refuses_hostile_replies),
    CASE(broker_answers_a_request_whose_descriptors_it_cannot_take),
};

int main(int argc, char **argv)
{
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
