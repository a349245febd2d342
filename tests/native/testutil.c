/* The test-support library shared by libfdsend's C test programs (see testutil.h); the
 * portable part. Linux-only helpers are in testutil_linux.c.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int in_child;          /* set in fork()ed children: fail with _exit, not exit */
static char tempdir[64];      /* relative path of this case's mkdtemp directory */
static char pathbuf[512];

/* ---- Reporting -------------------------------------------------------------------- */

void tu_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: %s", file, line, in_child ? "[child] " : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    if (in_child)
        _exit(1);
    exit(1);
}

void tu_skip(const char *fmt, ...)
{
    va_list ap;
    printf("SKIPPED: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    exit(77);
}

const char *tu_errno_text(void)
{
    return strerror(errno);
}

const char *tu_describe(int64_t rc)
{
    switch (rc) {
    case FDSEND_EAGAIN: return "FDSEND_EAGAIN";
    case FDSEND_EINVAL: return "FDSEND_EINVAL";
    case FDSEND_EBADF: return "FDSEND_EBADF";
    case FDSEND_ENOTSOCK: return "FDSEND_ENOTSOCK";
    case FDSEND_EPIPE: return "FDSEND_EPIPE";
    case FDSEND_ECONNRESET: return "FDSEND_ECONNRESET";
    case FDSEND_ENOTCONN: return "FDSEND_ENOTCONN";
    case FDSEND_EMSGSIZE: return "FDSEND_EMSGSIZE";
    case FDSEND_ETOOMANYREFS: return "FDSEND_ETOOMANYREFS";
    case FDSEND_EMFILE: return "FDSEND_EMFILE";
    case FDSEND_ENOTSUP: return "FDSEND_ENOTSUP";
    case FDSEND_ENOBUFS: return "FDSEND_ENOBUFS";
    case FDSEND_ETOOMANYFDS: return "FDSEND_ETOOMANYFDS";
    case FDSEND_ECONNREFUSED: return "FDSEND_ECONNREFUSED";
    case FDSEND_ENOENT: return "FDSEND_ENOENT";
    case FDSEND_EACCES: return "FDSEND_EACCES";
    case FDSEND_EDESTADDRREQ: return "FDSEND_EDESTADDRREQ";
    case FDSEND_EISCONN: return "FDSEND_EISCONN";
    case FDSEND_ENOTUNIX: return "FDSEND_ENOTUNIX";
    case FDSEND_ENAMETOOLONG: return "FDSEND_ENAMETOOLONG";
    case FDSEND_EPROTO: return "FDSEND_EPROTO";
    case FDSEND_ESRCH: return "FDSEND_ESRCH";
    case FDSEND_EOF: return "FDSEND_EOF";
    case FDSEND_ETIMEDOUT: return "FDSEND_ETIMEDOUT";
    case FDSEND_EPROTOTYPE: return "FDSEND_EPROTOTYPE";
    case FDSEND_EPOLICY: return "FDSEND_EPOLICY";
    case FDSEND_ENOTSEALED: return "FDSEND_ENOTSEALED";
    case FDSEND_EESCAPE: return "FDSEND_EESCAPE";
    case FDSEND_ENOTREG: return "FDSEND_ENOTREG";
    case FDSEND_EOTHER: return "FDSEND_EOTHER";
    default: return rc >= 0 ? "a count" : "an unknown code";
    }
}

/* ---- Cases ------------------------------------------------------------------------ */

static void remove_tempdir(void)
{
    DIR *d;
    struct dirent *e;
    if (tempdir[0] == '\0' || in_child)
        return;
    d = opendir(tempdir);
    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
    }
    rmdir(tempdir);
}

static void watchdog_stop(void);

int tu_main(int argc, char **argv, const tu_case *cases, size_t ncases)
{
    size_t i;
    int ran = 0;

    /* A test must see SIGPIPE's default action: that is what a C caller gets. */
    signal(SIGPIPE, SIG_DFL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    atexit(remove_tempdir);
    for (i = 0; i < ncases; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
            continue;
        printf("--- %s\n", cases[i].name);
        cases[i].fn();
        watchdog_stop();
        printf("ok  %s\n", cases[i].name);
        ran++;
        if (argc <= 1)
            remove_tempdir(), tempdir[0] = '\0';
    }
    if (ran == 0) {
        fprintf(stderr, "no test case named '%s'\n", argc > 1 ? argv[1] : "");
        return 1;
    }
    return 0;
}

/* ---- Descriptors ------------------------------------------------------------------ */

/* The directory listing this process's descriptors: /proc/self/fd (Linux, illumos), else
 * /dev/fd (the BSDs, macOS). NULL if neither can be opened. */
static DIR *open_fd_dir(const char **name)
{
    static const char *const dirs[] = {"/proc/self/fd", "/dev/fd"};
    size_t i;
    for (i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        DIR *d = opendir(dirs[i]);
        if (d != NULL) {
            *name = dirs[i];
            return d;
        }
    }
    return NULL;
}

int tu_count_fds(void)
{
    const char *name;
    DIR *d = open_fd_dir(&name);
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        tu_fail(__FILE__, __LINE__, "neither /proc/self/fd nor /dev/fd can be listed");
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1; /* minus the descriptor opendir() itself used */
}

void tu_fd_dump(FILE *out, const char *who)
{
    const char *name;
    DIR *d = open_fd_dir(&name);
    struct dirent *e;
    if (d == NULL)
        return;
    fprintf(out, "%s: open descriptors:\n", who);
    while ((e = readdir(d)) != NULL) {
        char path[300], target[256];
        ssize_t n;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", name, e->d_name);
        n = readlink(path, target, sizeof target - 1); /* /dev/fd entries are no links */
        target[n < 0 ? 0 : n] = '\0';
        fprintf(out, "  %s -> %s\n", e->d_name, n < 0 ? "?" : target);
    }
    closedir(d);
}

int tu_fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

int tu_same_file(int a, int b)
{
    struct stat sa, sb;
    if (fstat(a, &sa) != 0 || fstat(b, &sb) != 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int tu_cloexec(int fd)
{
    int f = fcntl(fd, F_GETFD);
    CHECK_SYS(f);
    return (f & FD_CLOEXEC) != 0;
}

void tu_close_all(const intptr_t *fds, int n)
{
    int i;
    for (i = 0; i < n; i++)
        close((int)fds[i]);
}

static const char *type_name(int type)
{
    return type == SOCK_STREAM ? "SOCK_STREAM" : type == SOCK_DGRAM ? "SOCK_DGRAM" :
           type == SOCK_SEQPACKET ? "SOCK_SEQPACKET" : "this type of";
}

int tu_try_socketpair(int type, int sv[2])
{
    if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) {
        int err = errno;
        if (err == EPROTONOSUPPORT || err == ESOCKTNOSUPPORT || err == EPROTOTYPE ||
            err == EOPNOTSUPP) {
            printf("note: this system has no %s Unix sockets (%s); that part is skipped\n",
                   type_name(type), strerror(err));
            return 0;
        }
        tu_fail(__FILE__, __LINE__, "socketpair(AF_UNIX, %s): %s", type_name(type), strerror(err));
    }
#ifdef TU_NO_SOCK_CLOEXEC
    CHECK_SYS(fcntl(sv[0], F_SETFD, FD_CLOEXEC));
    CHECK_SYS(fcntl(sv[1], F_SETFD, FD_CLOEXEC));
#endif
    return 1;
}

void tu_socketpair(int type, int sv[2])
{
    if (!tu_try_socketpair(type, sv))
        tu_skip("this system has no %s Unix sockets", type_name(type));
}

int tu_have_socket_type(int type)
{
    int sv[2];
    if (!tu_try_socketpair(type, sv))
        return 0;
    close(sv[0]);
    close(sv[1]);
    return 1;
}

void tu_set_nonblocking(int fd, int on)
{
    int f = fcntl(fd, F_GETFL);
    CHECK_SYS(f);
    CHECK_SYS(fcntl(fd, F_SETFL, on ? (f | O_NONBLOCK) : (f & ~O_NONBLOCK)));
}

const char *tu_tempdir(void)
{
    if (tempdir[0] == '\0') {
        strcpy(tempdir, "fdsend-test-XXXXXX");
        if (mkdtemp(tempdir) == NULL) {
            tempdir[0] = '\0';
            tu_fail(__FILE__, __LINE__, "mkdtemp in the working directory: %s",
                    strerror(errno));
        }
    }
    return tempdir;
}

const char *tu_temppath(const char *name)
{
    int n = snprintf(pathbuf, sizeof pathbuf, "%s/%s", tu_tempdir(), name);
    CHECK(n > 0 && (size_t)n < sizeof pathbuf);
    return pathbuf;
}

int tu_temp_file(const char *content)
{
    char path[128];
    int fd;
    size_t len = strlen(content);
    int n = snprintf(path, sizeof path, "%s/file-XXXXXX", tu_tempdir());
    CHECK(n > 0 && (size_t)n < sizeof path);
    fd = mkstemp(path);
    CHECK_SYS(fd);
    CHECK_SYS(unlink(path));
    CHECK_SYS(fcntl(fd, F_SETFD, FD_CLOEXEC));
    CHECK_EQ(write(fd, content, len), (int64_t)len);
    return fd;
}

void tu_read_file(int fd, char *buf, size_t size)
{
    ssize_t n = pread(fd, buf, size - 1, 0);
    CHECK_SYS(n);
    buf[n] = '\0';
}

/* ---- Processes -------------------------------------------------------------------- */

pid_t tu_fork(void (*fn)(void *), void *arg)
{
    pid_t pid;
    tu_tempdir(); /* made by the parent, so that the parent also removes it */
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    CHECK_SYS(pid);
    if (pid == 0) {
        in_child = 1;
        fn(arg);
        fflush(stdout);
        _exit(0);
    }
    return pid;
}

void tu_wait_ok(pid_t pid)
{
    int status;
    pid_t r;
    do {
        r = waitpid(pid, &status, 0);
    } while (r == -1 && errno == EINTR);
    CHECK_SYS(r);
    if (WIFSIGNALED(status))
        tu_fail(__FILE__, __LINE__, "child %d was killed by signal %d (%s)", (int)pid,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        tu_fail(__FILE__, __LINE__, "child %d exited with status %d", (int)pid,
                WEXITSTATUS(status));
}

void tu_sleep_ms(int ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int tu_under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p != NULL && strstr(p, "vgpreload") != NULL;
}

/* ---- Time and waiting -------------------------------------------------------------- */

double tu_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

void tu_set_timeout_ms(int fd, int opt, int ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv));
}

int tu_pending(int sock)
{
    int n = -1;
    CHECK_SYS(ioctl(sock, FIONREAD, &n));
    return n;
}

typedef struct watchdog_arg {
    int seconds;
    const char *what;
} watchdog_arg;

static void *watchdog_main(void *p)
{
    const watchdog_arg *w = p;
    tu_sleep_ms(w->seconds * 1000);
    fprintf(stderr, "watchdog: %s still running after %d s (a timeout did not fire)\n",
            w->what, w->seconds);
    fflush(stderr);
    _exit(1);
}

/* The running watchdog, stopped (cancelled and joined) by tu_main when the case returns, so
 * that valgrind sees no thread left behind (a detached one's TLS counts as possibly lost). */
static pthread_t watchdog_thread;
static int watchdog_running;

static void watchdog_stop(void)
{
    if (!watchdog_running)
        return;
    watchdog_running = 0;
    pthread_cancel(watchdog_thread); /* it sleeps: a cancellation point */
    pthread_join(watchdog_thread, NULL);
}

void tu_watchdog(int seconds, const char *what)
{
    static watchdog_arg w;
    pthread_t t;
    sigset_t all, old;
    watchdog_stop();
    w.seconds = seconds;
    w.what = what;
    sigfillset(&all);
    CHECK(pthread_sigmask(SIG_SETMASK, &all, &old) == 0); /* the thread inherits it */
    CHECK(pthread_create(&t, NULL, watchdog_main, &w) == 0);
    CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
    watchdog_thread = t;
    watchdog_running = 1;
}

/* ---- Reliability programs ----------------------------------------------------------- */

double tu_now_s(void)
{
    return tu_now_ms() / 1000.0;
}

void tu_frame_header(unsigned char h[8], unsigned version, unsigned flags, uint32_t nfds,
                     uint32_t len)
{
    h[0] = (unsigned char)version;
    h[1] = (unsigned char)flags;
    h[2] = (unsigned char)(nfds & 0xff);
    h[3] = (unsigned char)(nfds >> 8);
    h[4] = (unsigned char)(len & 0xff);
    h[5] = (unsigned char)(len >> 8);
    h[6] = (unsigned char)(len >> 16);
    h[7] = (unsigned char)(len >> 24);
}

/* A Unix socket of this type, close-on-exec (afterwards where there is no SOCK_CLOEXEC). */
static int unix_socket(int type)
{
    int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
#ifdef TU_NO_SOCK_CLOEXEC
    if (s >= 0)
        (void)fcntl(s, F_SETFD, FD_CLOEXEC);
#endif
    return s;
}

static int unix_address(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a->sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(a->sun_path, path);
    return 0;
}

int tu_listen_unix(const char *path, int type)
{
    struct sockaddr_un a;
    int s;
    if (unix_address(&a, path) != 0)
        return -1;
    s = unix_socket(type);
    if (s < 0)
        return -1;
    unlink(path);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0) {
        int e = errno;
        close(s);
        errno = e;
        return -1;
    }
    return s;
}

int tu_connect_unix(const char *path, int type, double timeout_s)
{
    struct sockaddr_un a;
    double end = tu_now_s() + timeout_s;
    if (unix_address(&a, path) != 0)
        return -1;
    for (;;) {
        int s = unix_socket(type);
        if (s < 0)
            return -1;
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
            return s;
        close(s);
        if ((errno != ENOENT && errno != ECONNREFUSED) || tu_now_s() > end)
            return -1;
        tu_sleep_ms(20);
    }
}
