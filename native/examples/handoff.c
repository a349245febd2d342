/* handoff: zero-downtime listener handoff (docs/handoff-protocol.md), both sides, in C.
 *
 *   handoff serve --control PATH --listen NAME=HOST:PORT [--listen ...] [--unix NAME=PATH]
 *                 [--ready-timeout MS] [--exit-after-handoff] [--log FILE]
 *
 * If an incumbent answers at PATH, take its listeners by name (each one checked, else bound
 * afresh); if nobody does, bind them. Answer every HTTP request with "served-by=<pid>", tell
 * the incumbent "ready", wait for "released", then offer the listeners at PATH in turn and
 * exit once a successor has taken them and the requests in flight are answered.
 * One thread, one poll() loop, one context passed around; the only global is the flag the
 * signal handler sets. Exit status: 0 stopped cleanly, 1 failed, 2 bad usage or directory.
 * SPDX-License-Identifier: MIT */
#define _POSIX_C_SOURCE 200809L
#include <fdsend.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#  define MSG_NOSIGNAL 0 /* macOS: SO_NOSIGPIPE is set on each client instead */
#endif

#define MAX_LISTENERS 1024
#define MAX_RECEIVED 4096     /* the most descriptors an inventory may announce */
#define MAX_FIELDS (FDSEND_MAX_FDS + 16)
#define MAX_CLIENTS 256
#define MAX_CTRL 4            /* control connections at once (one handoff, others refused) */
#define NAME_LEN 200          /* names: 1..200 bytes of [!-~] */
#define MSG_CAP (16u << 20)   /* the largest message accepted (a state blob) */
#define CTRL_MSG_CAP 65536u   /* ... from a successor */
#define IO_TIMEOUT_MS 1000    /* a control peer that stops inside a frame */
#define CLIENT_TIMEOUT_MS 5000
#define DRAIN_TIMEOUT_MS 10000
#define TICK_MS 100           /* poll() at least this often: deadlines, SIGTERM */
#define BACKLOG 512

struct listener {
    char name[NAME_LEN + 1];
    const char *spec;                 /* HOST:PORT or PATH, for logs */
    struct sockaddr_storage addr;     /* where it must be bound */
    socklen_t addrlen;
    int fd;
};

struct client {                       /* one HTTP connection */
    int fd, writing;
    size_t len, sent;
    int64_t deadline;
    char buf[1024];
};

enum { CTRL_HELLO = 1, CTRL_READY };  /* what a control connection waits for */

struct ctrl {                         /* incumbent: a successor's control connection */
    int fd, state, authorized;        /* authorized: SO_PEERCRED says our euid */
    long pid;
    int64_t deadline;
};

struct msg {                          /* a received text message, split in place */
    const char *type;
    int n;
    const char *key[MAX_FIELDS], *val[MAX_FIELDS];
};

struct received { char role[16], name[NAME_LEN + 1]; int fd; };

struct ctx {
    const char *control_path;
    int ready_timeout_ms;
    FILE *log;
    long pid, incumbent_pid;
    struct listener ls[MAX_LISTENERS];
    int nls;
    struct client clients[MAX_CLIENTS];
    struct ctrl ctrls[MAX_CTRL];
    int control_fd;                   /* our control socket, and its file's identity */
    dev_t control_dev;
    ino_t control_ino;
    int upstream_fd;                  /* successor: the incumbent, until "released" */
    int64_t upstream_deadline;
    int stopping, handed_over;
    int64_t drain_deadline, accept_pause_until;
    char response[192];
    size_t response_len;
    char buf[MSG_CAP];                /* the last control message received */
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig) { (void)sig; got_signal = 1; }

static void say(struct ctx *c, const char *fmt, ...)
{
    char line[640];
    va_list ap;
    int n = snprintf(line, sizeof line, "handoff: %ld: ", c->pid);
    va_start(ap, fmt);
    (void)vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    (void)fprintf(c->log, "%s\n", line); /* one line, one write: processes share a log */
}

static int64_t now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        abort(); /* cannot fail for CLOCK_MONOTONIC */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
    if (*fd >= 0 && close(*fd) != 0 && errno != EINTR)
        perror("handoff: close"); /* EBADF would be a bug here */
    *fd = -1;
}

/* Close-on-exec, O_NONBLOCK on or off, and (ms > 0) SO_RCVTIMEO/SO_SNDTIMEO. */
static int set_mode(int fd, int nonblock, int ms)
{
    struct timeval tv;
    int fl = fcntl(fd, F_GETFL);
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    if (fl < 0 || fcntl(fd, F_SETFL, nonblock ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) != 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
        return -1;
    if (ms > 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
                   setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0))
        return -1;
    return 0;
}

/* ---- Messages: "<type>\n" then "<key>=<value>\n" lines (protocol, "Messages") -------- */

static int valid_name(const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if (s[i] < '!' || s[i] > '~')
            return 0;
    return len >= 1 && len <= NAME_LEN;
}

/* Split a text message in place; -1 if it is not one: a NUL byte, a line without its '\n'
 * (the last one included) or without key=, a key other than fd given twice. */
static int parse(char *p, int64_t len, struct msg *m)
{
    char *nl, *eq;
    int i;
    m->n = 0;
    if (memchr(p, '\0', (size_t)len) != NULL || len == 0 || *p == '\n')
        return -1;
    m->type = p;
    for (; *p != '\0'; p = nl + 1) {
        if ((nl = strchr(p, '\n')) == NULL)
            return -1;
        *nl = '\0';
        if (p == m->type)
            continue;
        eq = strchr(p, '=');
        if (eq == NULL || eq == p || strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
                                         (size_t)(eq - p) || m->n == MAX_FIELDS)
            return -1;
        *eq = '\0';
        for (i = 0; i < m->n; i++)
            if (strcmp(m->key[i], p) == 0 && strcmp(p, "fd") != 0)
                return -1;
        m->key[m->n] = p;
        m->val[m->n++] = eq + 1;
    }
    return 0;
}

static const char *field(const struct msg *m, const char *key)
{
    int i;
    for (i = 0; i < m->n; i++)
        if (strcmp(m->key[i], key) == 0)
            return m->val[i];
    return NULL;
}

/* A decimal count 0..max, digits only; -1 otherwise (or if s is NULL). */
static long count_of(const char *s, long max)
{
    long v = 0;
    if (s == NULL || *s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || v > (max - (*s - '0')) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static int send_text(struct ctx *c, int fd, const char *text, const intptr_t *fds, int n)
{
    int32_t rc = fdsend_msg_send(fd, text, strlen(text), fds, n, 0);
    if (rc != FDSEND_OK)
        say(c, "sending %.*s: %s", (int)strcspn(text, "\n"), text, fdsend_strerror(rc));
    return rc == FDSEND_OK ? 0 : -1;
}

/* One message into c->buf, parsed into m when it is text ("state" is not): its length,
 * or a negative FDSEND_E* code (FDSEND_EPROTO: not a text message). */
static int64_t recv_msg(struct ctx *c, int fd, size_t cap, struct msg *m, intptr_t *fds,
                        int32_t *nfds, uint32_t flags)
{
    int64_t n = fdsend_msg_recv(fd, c->buf, cap - 1, fds, fds != NULL ? FDSEND_MAX_FDS : 0,
                                nfds, flags);
    if (n < 0)
        return n;
    c->buf[n] = '\0';
    if (strncmp(c->buf, "state\n", 6) == 0) {
        m->type = "state";
        m->n = 0;
    } else if (parse(c->buf, n, m) != 0) {
        if (nfds != NULL)
            (void)fdsend_close_all(fds, *nfds);
        return FDSEND_EPROTO;
    }
    return n;
}

/* ---- Listeners ---------------------------------------------------------------------- */

static int parse_address(struct listener *l, const char *spec, int is_unix)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&l->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&l->addr;
    struct sockaddr_un *un = (struct sockaddr_un *)&l->addr;
    const char *colon = strrchr(spec, ':');
    char host[64];
    long port = colon != NULL ? count_of(colon + 1, 65535) : -1;
    memset(&l->addr, 0, sizeof l->addr);
    if (is_unix) {
        if (spec[0] == '\0' || strlen(spec) >= sizeof un->sun_path)
            return -1;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, spec);
        l->addrlen = sizeof *un;
        return 0;
    }
    if (port < 1 || colon - spec < 1 || (size_t)(colon - spec) >= sizeof host)
        return -1;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        l->addrlen = sizeof *v4;
        return 0;
    }
    if (host[0] != '[' || host[colon - spec - 1] != ']')
        return -1;
    host[colon - spec - 1] = '\0';
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    l->addrlen = sizeof *v6;
    return inet_pton(AF_INET6, host + 1, &v6->sin6_addr) == 1 ? 0 : -1;
}

static int same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;
    const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return a4->sin_port == b4->sin_port && a4->sin_addr.s_addr == b4->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return a6->sin6_port == b6->sin6_port &&
               memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof a6->sin6_addr) == 0;
    return strncmp(((const struct sockaddr_un *)a)->sun_path,
                   ((const struct sockaddr_un *)b)->sun_path,
                   sizeof ((const struct sockaddr_un *)a)->sun_path) == 0;
}

/* Why a received descriptor cannot serve as l; NULL if it can. */
static const char *unusable(const struct listener *l, int fd)
{
    fdsend_fd_info_t info;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int family = l->addr.ss_family == AF_INET ? FDSEND_FAMILY_INET
               : l->addr.ss_family == AF_INET6 ? FDSEND_FAMILY_INET6 : FDSEND_FAMILY_UNIX;
    memset(&info, 0, sizeof info);
    memset(&ss, 0, sizeof ss);
    info.struct_size = sizeof info;
    if (fdsend_fd_info(fd, &info) != FDSEND_OK)
        return "fdsend_fd_info failed";
    if (info.kind != FDSEND_KIND_SOCKET || info.family != family ||
        info.socket_type != FDSEND_SOCK_STREAM)
        return "not a stream socket of the expected family";
    if ((info.flags & FDSEND_FD_LISTENING) == 0)
        return "not listening";
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 || !same_address(&l->addr, &ss))
        return "bound to another address";
    return NULL;
}

/* Nobody accepts on the Unix socket file at addr (connect: ECONNREFUSED): a leftover. */
static int stale_unix(const struct sockaddr_storage *addr, socklen_t len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0), stale;
    if (fd < 0)
        return 0;
    stale = connect(fd, (const struct sockaddr *)addr, len) != 0 && errno == ECONNREFUSED;
    close_fd(&fd);
    return stale;
}

static int bind_listener(struct ctx *c, struct listener *l)
{
    const struct sockaddr *sa = (const struct sockaddr *)&l->addr;
    int one = 1, err = 0, fd = socket(l->addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0 || set_mode(fd, 1, 0) != 0 || (l->addr.ss_family != AF_UNIX &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0))
        err = errno;
    else if (bind(fd, sa, l->addrlen) != 0) {
        err = errno;
        if (err == EADDRINUSE && sa->sa_family == AF_UNIX && stale_unix(&l->addr, l->addrlen))
            err = unlink(((const struct sockaddr_un *)sa)->sun_path) == 0 &&
                  bind(fd, sa, l->addrlen) == 0 ? 0 : errno;
    }
    if (err == 0 && listen(fd, BACKLOG) != 0)
        err = errno;
    if (err != 0) {
        say(c, "cannot listen on %s=%s: %s", l->name, l->spec, strerror(err));
        close_fd(&fd);
        return -1;
    }
    l->fd = fd;
    say(c, "listening on %s=%s (bound fresh)", l->name, l->spec);
    return 0;
}

static void close_listeners(struct ctx *c)
{
    int i;
    for (i = 0; i < c->nls; i++)
        close_fd(&c->ls[i].fd); /* never shutdown(): a successor shares the socket */
}

/* ---- The control socket ------------------------------------------------------------- */

/* The control path's directory must be ours and writable by nobody else. */
static int check_control_dir(struct ctx *c)
{
    char dir[sizeof ((struct sockaddr_un *)0)->sun_path] = ".";
    const char *slash = strrchr(c->control_path, '/');
    struct stat st;
    if (slash != NULL) {
        size_t n = slash == c->control_path ? 1 : (size_t)(slash - c->control_path);
        memcpy(dir, c->control_path, n);
        dir[n] = '\0';
    }
    if (stat(dir, &st) != 0) {
        say(c, "control directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
        say(c, "refusing control directory %s: it must be a directory of uid %ld that group "
               "and others cannot write", dir, (long)geteuid());
        return -1;
    }
    return 0;
}

/* Bind a temporary name beside the control path, chmod 0600, rename it over the path. */
static int bind_control(struct ctx *c)
{
    struct sockaddr_un sa;
    struct stat st;
    mode_t old;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0), rc = -1;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    (void)snprintf(sa.sun_path, sizeof sa.sun_path, "%s.%ld.tmp", c->control_path, c->pid);
    if (fd >= 0 && set_mode(fd, 1, 0) == 0 && (unlink(sa.sun_path) == 0 || errno == ENOENT)) {
        old = umask(0177);
        rc = bind(fd, (const struct sockaddr *)&sa, sizeof sa);
        (void)umask(old);
    }
    if (rc != 0 || chmod(sa.sun_path, 0600) != 0 || listen(fd, 16) != 0 ||
        stat(sa.sun_path, &st) != 0 || rename(sa.sun_path, c->control_path) != 0) {
        say(c, "cannot offer a control socket at %s: %s", c->control_path, strerror(errno));
        if (rc == 0)
            (void)unlink(sa.sun_path);
        close_fd(&fd);
        return -1;
    }
    c->control_fd = fd;
    c->control_dev = st.st_dev;
    c->control_ino = st.st_ino;
    say(c, "control socket ready at %s", c->control_path);
    return 0;
}

/* Has a successor put its own socket at the control path? */
static int control_replaced(const struct ctx *c)
{
    struct stat st;
    return stat(c->control_path, &st) != 0 || st.st_dev != c->control_dev ||
           st.st_ino != c->control_ino;
}

/* ---- Successor: take the listeners over --------------------------------------------- */

struct inventory { struct received *r; long total, got, state_len; int state_seen; };

static void inv_free(struct inventory *inv)
{
    long i;
    for (i = 0; i < inv->got; i++)
        close_fd(&inv->r[i].fd);
    free(inv->r);
    memset(inv, 0, sizeof *inv);
}

static int protocol_error(struct ctx *c, int fd, const char *why)
{
    char text[256];
    say(c, "protocol error from the incumbent: %s; aborting", why);
    (void)snprintf(text, sizeof text, "abort\nreason=protocol\nmessage=%s\n", why);
    (void)send_text(c, fd, text, NULL, 0);
    return -1;
}

/* The next message from the incumbent, before the deadline; logs and gives a negative code
 * on failure (-1 after a protocol error, else libfdsend's). */
static int64_t recv_until(struct ctx *c, int fd, struct msg *m, intptr_t *fds, int32_t *nfds,
                          int64_t deadline)
{
    int64_t left = deadline - now_ms(), n = FDSEND_ETIMEDOUT;
    if (left > 0 && set_mode(fd, 0, (int)left) == 0)
        n = recv_msg(c, fd, MSG_CAP, m, fds, nfds, 0);
    if (n == FDSEND_EPROTO)
        return protocol_error(c, fd, "a malformed message");
    if (n < 0)
        say(c, "receiving from the incumbent: %s", n == FDSEND_ETIMEDOUT
            ? "no complete inventory before the deadline" : fdsend_strerror((int32_t)n));
    return n;
}

/* An "fds" message: one "fd=<role> <name>" line per descriptor, in order. Every descriptor
 * is stored in inv first (inv_free closes it), whatever is wrong with the message. */
static const char *add_fds(struct inventory *inv, const struct msg *m, const intptr_t *fds,
                           int32_t n)
{
    long base = inv->got, i, j, k = 0;
    if (inv->got + n > inv->total) {
        (void)fdsend_close_all(fds, n);
        return "more descriptors than announced";
    }
    for (i = 0; i < n; i++)
        inv->r[inv->got++].fd = (int)fds[i];
    for (i = 0; i < m->n; i++) {
        struct received *r = &inv->r[base + k];
        const char *sp = strchr(m->val[i], ' ');
        if (strcmp(m->key[i], "fd") != 0)
            continue;
        if (k++ == n || sp == NULL || (size_t)(sp - m->val[i]) >= sizeof r->role ||
            !valid_name(sp + 1, strlen(sp + 1)))
            return "fd= lines do not match the descriptors";
        memcpy(r->role, m->val[i], (size_t)(sp - m->val[i]));
        strcpy(r->name, sp + 1);
        for (j = 0; j < base + k - 1; j++)
            if (strcmp(inv->r[j].name, r->name) == 0)
                return "a name appears twice";
    }
    return k == n ? NULL : "fd= lines do not match the descriptors";
}

/* hello, then the inventory. 0: complete; 1: ask again (refused with shutting-down, or the
 * connection ended before an answer); -1: failed. */
static int exchange(struct ctx *c, int fd, struct inventory *inv, int64_t deadline)
{
    char hello[64];
    const char *why, *reason;
    intptr_t fds[FDSEND_MAX_FDS];
    int32_t nfds = 0;
    struct msg m;
    int64_t n;
    (void)snprintf(hello, sizeof hello, "hello\nversions=1\npid=%ld\n", c->pid);
    /* If the hello cannot be sent, an incumbent that refused at once may still have said
     * why: read on either way. */
    (void)send_text(c, fd, hello, NULL, 0);
    n = recv_until(c, fd, &m, NULL, NULL, deadline);
    if (n == FDSEND_EOF || n == FDSEND_ECONNRESET) {
        /* Gone before it answered: an incumbent that exited once its path was replaced (we
         * connected just before the rename) or stopped. It changed nothing: ask again. */
        say(c, "the incumbent closed the connection before answering; connecting again");
        return 1;
    }
    if (n < 0)
        return -1;
    if (strcmp(m.type, "refused") == 0) {
        reason = field(&m, "reason") != NULL ? field(&m, "reason") : "?";
        say(c, "refused reason=%s by the incumbent: %s", reason,
            field(&m, "message") != NULL ? field(&m, "message") : "");
        return strcmp(reason, "shutting-down") == 0 ? 1 : -1;
    }
    if (strcmp(m.type, "inventory") != 0 || field(&m, "version") == NULL)
        return protocol_error(c, fd, "expected an inventory");
    if (strcmp(field(&m, "version"), "1") != 0)
        return protocol_error(c, fd, "a version we did not offer");
    inv->total = count_of(field(&m, "fds"), MAX_RECEIVED);
    inv->state_len = count_of(field(&m, "state-length"), (long)MSG_CAP - 7);
    c->incumbent_pid = count_of(field(&m, "pid"), 1L << 30);
    if (inv->total < 0 || inv->state_len < 0)
        return protocol_error(c, fd, "bad fds= or state-length= (or too large for us)");
    if ((inv->r = calloc((size_t)inv->total + 1, sizeof *inv->r)) == NULL)
        return protocol_error(c, fd, "out of memory");
    for (;;) {
        if ((n = recv_until(c, fd, &m, fds, &nfds, deadline)) < 0)
            return -1;
        if (strcmp(m.type, "fds") == 0) {
            if ((why = add_fds(inv, &m, fds, nfds)) != NULL)
                return protocol_error(c, fd, why);
            continue;
        }
        if (nfds > 0) {
            (void)fdsend_close_all(fds, nfds);
            return protocol_error(c, fd, "descriptors on a message other than fds");
        }
        if (strcmp(m.type, "state") == 0 && !inv->state_seen && n - 6 == inv->state_len)
            inv->state_seen = 1; /* opaque to this program: nothing to restore */
        else if (strcmp(m.type, "end") != 0)
            return protocol_error(c, fd, "unexpected message in the inventory");
        else if (inv->got != inv->total || inv->state_seen != (inv->state_len > 0))
            return protocol_error(c, fd, "end before the announced descriptors or state");
        else
            return 0;
    }
}

/* Each listener from the inventory if it passes the checks, else bound fresh. */
static int adopt(struct ctx *c, struct inventory *inv)
{
    const char *why;
    long k;
    int i;
    for (i = 0; i < c->nls; i++) {
        struct listener *l = &c->ls[i];
        for (k = 0; k < inv->got && strcmp(inv->r[k].name, l->name) != 0; k++)
            ;
        if (k < inv->got) {
            why = strcmp(inv->r[k].role, "listener") != 0 ? "not a listener"
                : unusable(l, inv->r[k].fd);
            if (why == NULL && set_mode(inv->r[k].fd, 1, 0) != 0)
                why = strerror(errno);
            if (why == NULL) {
                l->fd = inv->r[k].fd;
                inv->r[k].fd = -1;
                say(c, "took %s=%s", l->name, l->spec);
                continue;
            }
            say(c, "received %s is unusable (%s): closing it, binding fresh", l->name, why);
            close_fd(&inv->r[k].fd);
        }
        if (bind_listener(c, l) != 0)
            return -1;
    }
    for (k = 0; k < inv->got; k++)
        if (inv->r[k].fd >= 0)
            say(c, "closing unused %s %s", inv->r[k].role, inv->r[k].name);
    return 0;
}

/* A connection to the control path; -2 if nobody answers there, -1 on another error. */
static int connect_control(struct ctx *c)
{
    struct sockaddr_un sa;
    int err, fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, c->control_path); /* its length was checked */
    if (fd >= 0 && set_mode(fd, 0, IO_TIMEOUT_MS) == 0 &&
        connect(fd, (const struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    err = errno;
    close_fd(&fd);
    say(c, "no incumbent at %s (%s)", c->control_path, strerror(err));
    return err == ENOENT || err == ECONNREFUSED ? -2 : -1;
}

/* 1: listeners taken (c->upstream_fd set); 0: no incumbent; -1: failed, nothing held. */
static int take_over(struct ctx *c)
{
    const char *abort_text = "abort\nreason=unusable\nmessage=cannot listen where asked\n";
    int64_t deadline = now_ms() + c->ready_timeout_ms;
    struct timespec pause = {0, 100 * 1000000L};
    struct inventory inv;
    int fd, rc;
    memset(&inv, 0, sizeof inv);
    for (;;) {
        if ((fd = connect_control(c)) < 0)
            return fd == -2 ? 0 : -1;
        if ((rc = exchange(c, fd, &inv, deadline)) == 0)
            break;
        inv_free(&inv);
        close_fd(&fd);
        if (rc < 0 || got_signal || now_ms() + 100 >= deadline ||
            (nanosleep(&pause, NULL) != 0 && errno != EINTR))
            return -1; /* retried: an incumbent that is shutting down, its successor next */
    }
    say(c, "received %ld descriptors from pid=%ld", inv.got, c->incumbent_pid);
    rc = adopt(c, &inv);
    inv_free(&inv);
    if (rc == 0 && got_signal) { /* stopped before ready: the incumbent keeps serving */
        say(c, "signal received before ready: aborting the handoff");
        abort_text = "abort\nreason=shutting-down\nmessage=stopped before ready\n";
        rc = -1;
    }
    if (rc != 0 || set_mode(fd, 0, IO_TIMEOUT_MS) != 0) {
        (void)send_text(c, fd, abort_text, NULL, 0);
        close_fd(&fd);
        close_listeners(c);
        return -1;
    }
    c->upstream_fd = fd;
    return 1;
}

/* The successor's side ends: "released" (or not), then our own control socket. */
static void upstream_done(struct ctx *c, const char *how)
{
    say(c, "%s", how);
    close_fd(&c->upstream_fd);
    (void)bind_control(c);
}

static void on_upstream(struct ctx *c)
{
    struct msg m;
    int64_t n = recv_msg(c, c->upstream_fd, CTRL_MSG_CAP, &m, NULL, NULL, FDSEND_DONTWAIT);
    if (n == FDSEND_EAGAIN)
        return;
    upstream_done(c, n >= 0 && strcmp(m.type, "released") == 0
                  ? "the incumbent released its listeners: we own the service"
                  : "the incumbent closed without \"released\": we own the service anyway");
}

/* ---- Incumbent: control connections ------------------------------------------------- */

static void ctrl_close(struct ctx *c, struct ctrl *k, const char *why)
{
    if (why != NULL && k->state == CTRL_READY)
        say(c, "handoff to pid=%ld failed: %s; still serving", k->pid, why);
    else if (why != NULL)
        say(c, "control connection of pid=%ld closed: %s", k->pid, why);
    close_fd(&k->fd);
    k->state = 0;
}

static void refuse(struct ctx *c, struct ctrl *k, const char *reason, const char *message)
{
    char text[256];
    say(c, "refused pid=%ld reason=%s", k->pid, reason);
    (void)snprintf(text, sizeof text, "refused\nreason=%s\nmessage=%s\n", reason, message);
    (void)send_text(c, k->fd, text, NULL, 0);
    ctrl_close(c, k, NULL);
}

/* inventory, the listeners in "fds" batches of at most FDSEND_MAX_FDS, end. */
static int send_inventory(struct ctx *c, int fd)
{
    char head[128], batch[8 + FDSEND_MAX_FDS * (NAME_LEN + 14)];
    intptr_t fds[FDSEND_MAX_FDS];
    size_t len;
    int i, j;
    (void)snprintf(head, sizeof head, "inventory\nversion=1\npid=%ld\nfds=%d\nstate-length=0\n",
                   c->pid, c->nls);
    if (send_text(c, fd, head, NULL, 0) != 0)
        return -1;
    for (i = 0; i < c->nls; i += FDSEND_MAX_FDS) {
        len = (size_t)snprintf(batch, sizeof batch, "fds\n");
        for (j = 0; j < FDSEND_MAX_FDS && i + j < c->nls; j++) {
            len += (size_t)snprintf(batch + len, sizeof batch - len, "fd=listener %s\n",
                                    c->ls[i + j].name);
            fds[j] = c->ls[i + j].fd;
        }
        if (send_text(c, fd, batch, fds, j) != 0)
            return -1;
    }
    return send_text(c, fd, "end\n", NULL, 0);
}

static int offers_version_1(const char *list) /* "1" among comma-separated versions */
{
    size_t len;
    for (;; list += len + 1) {
        len = strcspn(list, ",");
        if (len == 1 && list[0] == '1')
            return 1;
        if (list[len] == '\0')
            return 0;
    }
}

static int handoff_in_progress(const struct ctx *c)
{
    int i;
    for (i = 0; i < MAX_CTRL; i++)
        if (c->ctrls[i].state == CTRL_READY)
            return 1;
    return 0;
}

static void start_stopping(struct ctx *c, const char *why)
{
    int i;
    say(c, "%s: closing our listeners, finishing the requests in flight", why);
    close_listeners(c);
    for (i = 0; i < MAX_CTRL; i++) /* a hello still to come is refused: shutting-down */
        if (c->ctrls[i].state == CTRL_READY)
            ctrl_close(c, &c->ctrls[i], "stopping");
    close_fd(&c->upstream_fd);
    c->stopping = 1;
    c->drain_deadline = now_ms() + DRAIN_TIMEOUT_MS;
}

static void on_hello(struct ctx *c, struct ctrl *k, const struct msg *m)
{
    const char *versions = field(m, "versions");
    if (strcmp(m->type, "hello") != 0 || versions == NULL)
        refuse(c, k, "protocol", "expected hello with versions=");
    else if (!k->authorized)
        refuse(c, k, "unauthorized", "only a process of the same uid may take over");
    else if (c->stopping)
        refuse(c, k, "shutting-down", "this process is stopping; its successor follows");
    else if (handoff_in_progress(c))
        refuse(c, k, "busy", "another handoff is in progress");
    else if (!offers_version_1(versions))
        refuse(c, k, "unsupported-version", "this incumbent speaks version 1");
    else if (send_inventory(c, k->fd) != 0)
        ctrl_close(c, k, "could not send the inventory");
    else {
        k->state = CTRL_READY;
        k->deadline = now_ms() + c->ready_timeout_ms;
        say(c, "sent %d listeners to pid=%ld; waiting for ready", c->nls, k->pid);
    }
}

static void on_ctrl(struct ctx *c, struct ctrl *k)
{
    struct msg m;
    int64_t n = recv_msg(c, k->fd, CTRL_MSG_CAP, &m, NULL, NULL, FDSEND_DONTWAIT);
    if (n == FDSEND_EAGAIN)
        return;
    if (n < 0)
        ctrl_close(c, k, n == FDSEND_EOF ? "the successor closed the connection"
                                          : fdsend_strerror((int32_t)n));
    else if (k->state == CTRL_HELLO)
        on_hello(c, k, &m);
    else if (strcmp(m.type, "abort") == 0) {
        say(c, "pid=%ld aborts: reason=%s", k->pid, field(&m, "reason") != NULL
            ? field(&m, "reason") : "?");
        ctrl_close(c, k, "aborted by the successor");
    } else if (strcmp(m.type, "ready") != 0)
        ctrl_close(c, k, "a message other than ready or abort");
    else {
        say(c, "pid=%ld is ready", k->pid);
        close_listeners(c);
        if (send_text(c, k->fd, "released\n", NULL, 0) == 0)
            say(c, "released the listeners to pid=%ld", k->pid);
        k->state = 0;
        close_fd(&k->fd);
        c->handed_over = 1;
        start_stopping(c, "handed over");
    }
}

static void accept_control(struct ctx *c)
{
    int64_t pid = -1, uid = -1;
    int i, fd = accept(c->control_fd, NULL, NULL);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
            say(c, "control accept: %s", strerror(errno));
        return;
    }
    for (i = 0; i < MAX_CTRL && c->ctrls[i].fd >= 0; i++)
        ;
    if (i == MAX_CTRL || set_mode(fd, 0, IO_TIMEOUT_MS) != 0) {
        say(c, "control connection dropped: %s", i == MAX_CTRL ? "too many" : strerror(errno));
        close_fd(&fd);
        return;
    }
    if (fdsend_peer_credentials(fd, &pid, &uid, NULL) != FDSEND_OK)
        uid = -1;
    c->ctrls[i].fd = fd;
    c->ctrls[i].state = CTRL_HELLO;
    c->ctrls[i].deadline = now_ms() + c->ready_timeout_ms;
    c->ctrls[i].pid = (long)pid;
    c->ctrls[i].authorized = uid >= 0 && uid == (int64_t)geteuid();
    say(c, "control connection from pid=%ld uid=%ld", (long)pid, (long)uid);
}

/* ---- HTTP clients ------------------------------------------------------------------- */

static struct client *free_client(struct ctx *c)
{
    int i;
    for (i = 0; i < MAX_CLIENTS; i++)
        if (c->clients[i].fd < 0)
            return &c->clients[i];
    return NULL;
}

static void accept_clients(struct ctx *c, struct listener *l)
{
    struct client *cl;
    int n, fd;
    for (n = 0; n < 16 && (cl = free_client(c)) != NULL; n++) {
        if ((fd = accept(l->fd, NULL, NULL)) < 0) {
            if (errno == ECONNABORTED || errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) { /* EMFILE...: pause a little */
                say(c, "accept on %s: %s", l->name, strerror(errno));
                c->accept_pause_until = now_ms() + 100;
            }
            return; /* EAGAIN: none left, or another process took it */
        }
#ifdef SO_NOSIGPIPE
        { int one = 1; (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one); }
#endif
        if (set_mode(fd, 1, 0) != 0) {
            close_fd(&fd);
            continue;
        }
        memset(cl, 0, sizeof *cl);
        cl->fd = fd;
        cl->deadline = now_ms() + CLIENT_TIMEOUT_MS;
    }
}

/* Read the request head (to its blank line), send the one response, close. */
static void on_client(struct ctx *c, struct client *cl)
{
    ssize_t n;
    if (!cl->writing) {
        n = recv(cl->fd, cl->buf + cl->len, sizeof cl->buf - 1 - cl->len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            close_fd(&cl->fd);
            return;
        }
        cl->len += (size_t)n;
        cl->buf[cl->len] = '\0';
        cl->writing = strstr(cl->buf, "\r\n\r\n") != NULL || strstr(cl->buf, "\n\n") != NULL ||
                      cl->len == sizeof cl->buf - 1;
        if (!cl->writing)
            return;
    }
    n = send(cl->fd, c->response + cl->sent, c->response_len - cl->sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n > 0)
        cl->sent += (size_t)n;
    if (n < 0 || cl->sent == c->response_len)
        close_fd(&cl->fd);
}

/* ---- The event loop ----------------------------------------------------------------- */

enum { P_LISTENER, P_CONTROL, P_CTRL, P_UPSTREAM, P_CLIENT };
struct pslot { int kind, index, fd; };

static void check_deadlines(struct ctx *c, int64_t now)
{
    int i;
    for (i = 0; i < MAX_CTRL; i++)
        if (c->ctrls[i].fd >= 0 && now >= c->ctrls[i].deadline)
            ctrl_close(c, &c->ctrls[i], c->ctrls[i].state == CTRL_READY
                       ? "no ready before the deadline" : "no hello before the deadline");
    for (i = 0; i < MAX_CLIENTS; i++)
        if (c->clients[i].fd >= 0 && now >= c->clients[i].deadline)
            close_fd(&c->clients[i].fd);
    if (c->upstream_fd >= 0 && now >= c->upstream_deadline)
        upstream_done(c, "no \"released\" before the deadline: we own the service anyway");
}

/* Stopping and done: no request in flight and, after a handoff, our control socket
 * replaced at its path (until then we answer "shutting-down"); or the drain deadline. */
static int finished(const struct ctx *c, int64_t now)
{
    int i;
    if (!c->stopping || now >= c->drain_deadline)
        return c->stopping;
    for (i = 0; i < MAX_CLIENTS; i++)
        if (c->clients[i].fd >= 0)
            return 0;
    return !c->handed_over || c->control_fd < 0 || control_replaced(c);
}

static int add(struct pollfd *p, struct pslot *s, int n, int kind, int index, int fd, short ev)
{
    p[n].fd = fd;
    p[n].events = ev;
    p[n].revents = 0;
    s[n].kind = kind;
    s[n].index = index;
    s[n].fd = fd;
    return n + 1;
}

/* Act on one ready descriptor, if it is still the one that was polled. */
static void dispatch(struct ctx *c, const struct pslot *s)
{
    if (s->kind == P_LISTENER && c->ls[s->index].fd == s->fd)
        accept_clients(c, &c->ls[s->index]);
    else if (s->kind == P_CONTROL && c->control_fd == s->fd)
        accept_control(c);
    else if (s->kind == P_CTRL && c->ctrls[s->index].fd == s->fd)
        on_ctrl(c, &c->ctrls[s->index]);
    else if (s->kind == P_UPSTREAM && c->upstream_fd == s->fd)
        on_upstream(c);
    else if (s->kind == P_CLIENT && c->clients[s->index].fd == s->fd)
        on_client(c, &c->clients[s->index]);
}

static int serve(struct ctx *c, struct pollfd *p, struct pslot *s)
{
    int64_t now;
    int i, n, r;
    if (c->upstream_fd < 0)
        (void)bind_control(c); /* without one we serve on; no handoff is possible */
    else if (send_text(c, c->upstream_fd, "ready\n", NULL, 0) != 0)
        upstream_done(c, "the incumbent is gone before ready: we own the service");
    else {
        c->upstream_deadline = now_ms() + c->ready_timeout_ms;
        say(c, "serving; sent ready to pid=%ld", c->incumbent_pid);
    }
    for (;;) {
        now = now_ms();
        if (got_signal && !c->stopping)
            start_stopping(c, "signal received");
        check_deadlines(c, now);
        if (finished(c, now))
            break;
        n = 0;
        if (!c->stopping && now >= c->accept_pause_until && free_client(c) != NULL)
            for (i = 0; i < c->nls; i++)
                n = add(p, s, n, P_LISTENER, i, c->ls[i].fd, POLLIN);
        if (c->control_fd >= 0)
            n = add(p, s, n, P_CONTROL, 0, c->control_fd, POLLIN);
        for (i = 0; i < MAX_CTRL; i++)
            if (c->ctrls[i].fd >= 0)
                n = add(p, s, n, P_CTRL, i, c->ctrls[i].fd, POLLIN);
        if (c->upstream_fd >= 0)
            n = add(p, s, n, P_UPSTREAM, 0, c->upstream_fd, POLLIN);
        for (i = 0; i < MAX_CLIENTS; i++)
            if (c->clients[i].fd >= 0)
                n = add(p, s, n, P_CLIENT, i, c->clients[i].fd,
                        c->clients[i].writing ? POLLOUT : POLLIN);
        r = poll(p, (nfds_t)n, TICK_MS);
        if (r < 0 && errno != EINTR) {
            say(c, "poll: %s", strerror(errno));
            return 1;
        }
        for (i = 0; i < n && r > 0; i++)
            if (p[i].revents != 0)
                dispatch(c, &s[i]);
    }
    say(c, "stopped");
    return 0;
}

/* ---- main --------------------------------------------------------------------------- */

static int add_listener(struct ctx *c, const char *arg, int is_unix)
{
    const char *eq = strchr(arg, '=');
    struct listener *l = &c->ls[c->nls];
    int i;
    if (eq == NULL || c->nls == MAX_LISTENERS || !valid_name(arg, (size_t)(eq - arg)))
        return -1;
    memcpy(l->name, arg, (size_t)(eq - arg));
    l->name[eq - arg] = '\0';
    for (i = 0; i < c->nls; i++)
        if (strcmp(c->ls[i].name, l->name) == 0)
            return -1;
    l->spec = eq + 1;
    l->fd = -1;
    if (parse_address(l, eq + 1, is_unix) != 0)
        return -1;
    c->nls++;
    return 0;
}

static int parse_args(struct ctx *c, int argc, char **argv, const char **logpath)
{
    const char *opt, *val;
    int i;
    if (argc < 2 || strcmp(argv[1], "serve") != 0)
        return -1;
    for (i = 2; i < argc; i++) {
        opt = argv[i];
        if (strcmp(opt, "--exit-after-handoff") == 0)
            continue; /* the default: a process that handed over has nothing left to serve */
        if (++i == argc)
            return -1;
        val = argv[i];
        if (strcmp(opt, "--control") == 0)
            c->control_path = val;
        else if (strcmp(opt, "--log") == 0)
            *logpath = val;
        else if (strcmp(opt, "--ready-timeout") == 0)
            c->ready_timeout_ms = (int)count_of(val, 3600000);
        else if ((strcmp(opt, "--listen") != 0 && strcmp(opt, "--unix") != 0) ||
                 add_listener(c, val, opt[2] == 'u') != 0) {
            (void)fprintf(stderr, "handoff: bad option %s %s\n", opt, val);
            return -1;
        }
    }
    /* The control path leaves room for the temporary name beside it. */
    return c->control_path == NULL || c->nls == 0 || c->ready_timeout_ms <= 0 ||
           strlen(c->control_path) + 24 >= sizeof ((struct sockaddr_un *)0)->sun_path ? -1 : 0;
}

int main(int argc, char **argv)
{
    struct ctx *c = calloc(1, sizeof *c);
    struct pollfd *p = calloc(MAX_LISTENERS + MAX_CTRL + MAX_CLIENTS + 2, sizeof *p);
    struct pslot *s = calloc(MAX_LISTENERS + MAX_CTRL + MAX_CLIENTS + 2, sizeof *s);
    const char *logpath = NULL;
    struct sigaction sa;
    int i, rc = 2;
    if (c == NULL || p == NULL || s == NULL)
        goto out;
    c->log = stderr;
    c->pid = (long)getpid();
    c->ready_timeout_ms = 30000;
    c->control_fd = c->upstream_fd = -1;
    for (i = 0; i < MAX_CLIENTS; i++)
        c->clients[i].fd = -1;
    for (i = 0; i < MAX_CTRL; i++)
        c->ctrls[i].fd = -1;
    if (parse_args(c, argc, argv, &logpath) != 0) {
        (void)fprintf(stderr, "usage: handoff serve --control PATH --listen NAME=HOST:PORT "
                      "[--listen ...] [--unix NAME=PATH] [--ready-timeout MS] "
                      "[--exit-after-handoff] [--log FILE]\n");
        goto out;
    }
    if (logpath != NULL && (c->log = fopen(logpath, "a")) == NULL) {
        perror(logpath);
        c->log = stderr;
        goto out;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns at once */
    if (setvbuf(c->log, NULL, _IOLBF, 0) != 0 || sigemptyset(&sa.sa_mask) != 0 ||
        sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
        check_control_dir(c) != 0)
        goto out;
    c->response_len = (size_t)snprintf(c->response, sizeof c->response,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
        "Connection: close\r\n\r\nserved-by=%ld\n",
        snprintf(NULL, 0, "served-by=%ld\n", c->pid), c->pid);
    say(c, "starting: %d listeners, control socket %s", c->nls, c->control_path);
    rc = take_over(c);
    for (i = 0; rc == 0 && i < c->nls; i++)
        rc = bind_listener(c, &c->ls[i]);
    rc = rc < 0 ? 1 : serve(c, p, s);
out:
    if (c != NULL) {
        close_listeners(c);
        for (i = 0; i < MAX_CLIENTS; i++)
            close_fd(&c->clients[i].fd);
        for (i = 0; i < MAX_CTRL; i++)
            close_fd(&c->ctrls[i].fd);
        close_fd(&c->upstream_fd);
        close_fd(&c->control_fd); /* the path stays: it may be a successor's by now */
        if (c->log != stderr && fclose(c->log) != 0)
            rc = 1;
    }
    free(p);
    free(s);
    free(c);
    return rc;
}
