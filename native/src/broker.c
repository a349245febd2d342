/* A privilege-separated file opener: fdsend_open_beneath (a regular file beneath a directory,
 * read-only, no symbolic links, no ".."), and the file broker: its protocol's one codec
 * (fdsend_broker_check_request, fdsend_broker_reply_encode, fdsend_broker_reply_decode:
 * pure, every OS; the .NET FileBroker/FileBrokerClient call them too) and its request/reply
 * over the message channel (fdsend_broker_serve_one, fdsend_broker_open: POSIX).
 * SPDX-License-Identifier: MIT */
#if !defined(_WIN32)
#  include "fdsend_posix.h" /* first: its feature-test macros */
#endif /* !defined(_WIN32) */
#include "fdsend_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- The protocol's codec ---------------------------------------------------------------- */

static void put_le32(unsigned char *b, int32_t v)
{
    uint32_t u = (uint32_t)v;
    b[0] = (unsigned char)u;
    b[1] = (unsigned char)(u >> 8);
    b[2] = (unsigned char)(u >> 16);
    b[3] = (unsigned char)(u >> 24);
}

static int32_t get_le32(const unsigned char *b)
{
    return (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24);
}

/* The refusals a reply may carry: the codes that say why the broker would not open the file,
 * none of which the client's own channel returns for a broken connection (FDSEND_EOF,
 * FDSEND_EAGAIN, FDSEND_ETIMEDOUT, FDSEND_EPIPE...), so that a caller of fdsend_broker_open
 * can tell "refused, the connection is fine" from "the connection failed". FDSEND_EPROTO is
 * the client's verdict on a reply that broke the protocol. The encoder sends any other
 * negative code as FDSEND_EOTHER (fdsend_open_beneath passes on what open(2) said, and a FUSE
 * file system may say anything); the decoder refuses any other value. The list is fdsend.h's
 * (fdsend_broker_reply_encode); test_broker's reply_status_range checks both against it. */
static int reply_refusal(int32_t status)
{
    switch (status) {
    case FDSEND_EINVAL:
    case FDSEND_ENOENT:
    case FDSEND_EACCES:
    case FDSEND_ENAMETOOLONG:
    case FDSEND_EMFILE:
    case FDSEND_EPOLICY:
    case FDSEND_EESCAPE:
    case FDSEND_ENOTREG:
    case FDSEND_EOTHER:
        return 1;
    default:
        return 0;
    }
}

int32_t fdsend_broker_check_request(const void *path, uint64_t len, int32_t nfds)
{
    if (nfds < 0 || len > FDSEND_BROKER_MAX_PATH)
        return FDSEND_EINVAL;
    if (nfds > 0)
        return FDSEND_EPOLICY;
    if (len == 0 || path == NULL || memchr(path, '\0', (size_t)len) != NULL)
        return FDSEND_EINVAL;
    return FDSEND_OK;
}

int32_t fdsend_broker_reply_encode(int32_t status, void *reply, size_t cap, int32_t *nfds)
{
    if (nfds != NULL)
        *nfds = 0;
    if (reply == NULL || cap < FDSEND_BROKER_REPLY_SIZE || nfds == NULL || status > FDSEND_OK)
        return FDSEND_EINVAL;
    if (status != FDSEND_OK && !reply_refusal(status))
        status = FDSEND_EOTHER;
    put_le32(reply, status);
    *nfds = status == FDSEND_OK ? 1 : 0;
    return FDSEND_OK;
}

/* Close every descriptor of fds and mark it -1: a reply refused as a whole. */
static void close_and_clear(intptr_t *fds, int32_t nfds)
{
    int32_t i;
    (void)fdsend_close_all(fds, nfds);
    for (i = 0; i < nfds; i++)
        fds[i] = -1;
}

/* A reply whose payload broke the protocol: everything closed, the reason in violation. */
static void refuse_payload(intptr_t *fds, int32_t nfds, int32_t *status,
                           fdsend_violation *violation, const char *what, long long value)
{
    close_and_clear(fds, nfds);
    *status = FDSEND_EPROTO;
    if (violation != NULL)
        (void)snprintf(violation->message, sizeof violation->message, what, value);
}

int32_t fdsend_broker_reply_decode(const void *reply, uint64_t len, intptr_t *fds, int32_t nfds,
                                   int32_t *status, intptr_t *file, fdsend_violation *violation)
{
    fdsend_fd_rule rule;
    fdsend_policy policy;
    int32_t st;
    if (file != NULL)
        *file = -1;
    if (status == NULL || file == NULL || nfds < 0 || (fds == NULL && nfds > 0) ||
        (reply == NULL && len == FDSEND_BROKER_REPLY_SIZE))
        return FDSEND_EINVAL;
    *status = FDSEND_EPROTO;
    if (violation != NULL) {
        memset(violation, 0, sizeof *violation);
        violation->index = -1;
        violation->nfds = nfds;
    }
    if (len != FDSEND_BROKER_REPLY_SIZE) {
        refuse_payload(fds, nfds, status, violation,
                       "the broker's reply has %lld bytes; a reply is a 4-byte status",
                       len > (uint64_t)INT64_MAX ? (long long)INT64_MAX : (long long)len);
        return FDSEND_OK;
    }
    st = get_le32(reply);
    if (st != FDSEND_OK && !reply_refusal(st)) {
        refuse_payload(fds, nfds, status, violation,
                       "the broker's reply status %lld is not FDSEND_OK or a refusal's FDSEND_E* code",
                       (long long)st);
        return FDSEND_OK;
    }
    /* The descriptors: exactly one read-only regular file with FDSEND_OK, none otherwise. The
     * rules are the receive policy's (policy.c), so the violation reads as any other. */
    memset(&rule, 0, sizeof rule);
    rule.kinds = FDSEND_BIT(FDSEND_KIND_FILE);
    rule.access = FDSEND_BIT(FDSEND_ACCESS_READ);
    rule.max_size = -1;
    memset(&policy, 0, sizeof policy);
    policy.struct_size = sizeof policy;
    policy.min_fds = policy.max_fds = st == FDSEND_OK ? 1 : 0;
    policy.rules = &rule;
    policy.nrules = 1;
    if (fdsend_check_fds(&policy, fds, nfds, violation) != FDSEND_OK) {
        close_and_clear(fds, nfds); /* fdsend_check_fds has; this is for its other failures */
        return FDSEND_OK;
    }
    if (st == FDSEND_OK) {
        if (fds[0] < 0) { /* counted but already closed: the file is not there */
            refuse_payload(fds, nfds, status, violation,
                           "descriptor %lld of the broker's reply was already closed: no file", 0);
            return FDSEND_OK;
        }
        *file = fds[0];
        fds[0] = -1;
    }
    *status = st;
    fdsend_clear_error();
    return FDSEND_OK;
}

/* ---- The broker's I/O -------------------------------------------------------------------- */

#if defined(_WIN32)

int32_t fdsend_open_beneath(intptr_t dirfd, const char *path, uint32_t flags, intptr_t *fd)
{
    (void)dirfd; (void)path; (void)flags;
    if (fd != NULL)
        *fd = -1;
    return fdsend_fail(FDSEND_ENOTSUP, ENOSYS);
}

int32_t fdsend_open_directory(const char *path, intptr_t *fd)
{
    (void)path;
    if (fd != NULL)
        *fd = -1;
    return fdsend_fail(FDSEND_ENOTSUP, ENOSYS);
}

int32_t fdsend_broker_serve_one(intptr_t sock, intptr_t dirfd, uint32_t flags, int32_t *status)
{
    (void)sock; (void)dirfd; (void)flags;
    if (status != NULL)
        *status = FDSEND_ENOTSUP;
    return fdsend_fail(FDSEND_ENOTSUP, ENOSYS);
}

int32_t fdsend_broker_open(intptr_t sock, const char *path, intptr_t *fd)
{
    (void)sock; (void)path;
    if (fd != NULL)
        *fd = -1;
    return fdsend_fail(FDSEND_ENOTSUP, ENOSYS);
}

#else /* !defined(_WIN32) */

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#if HAVE_SYS_OPENAT2
#  include <sys/syscall.h>
#endif /* HAVE_SYS_OPENAT2 */

#ifndef O_NOCTTY
#  define O_NOCTTY 0
#endif

/* The lexical rules, before anything is opened: relative, no ".." component, no NUL. */
static int32_t check_path(const char *path)
{
    const char *p = path;
    if (path[0] == '\0')
        return FDSEND_EINVAL;
    if (path[0] == '/')
        return FDSEND_EESCAPE;
    while (*p != '\0') {
        const char *end = strchr(p, '/');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return FDSEND_EESCAPE;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return FDSEND_OK;
}

#if HAVE_SYS_OPENAT2
/* struct open_how of <linux/openat2.h> (a stable kernel ABI), declared here so that older
 * kernel headers build too. */
struct fdsend_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};
#  define FDSEND_RESOLVE_NO_MAGICLINKS 0x02
#  define FDSEND_RESOLVE_NO_SYMLINKS 0x04
#  define FDSEND_RESOLVE_BENEATH 0x08

/* openat2 beneath dirfd; -1 with errno. ENOSYS (old kernel) or EPERM from a seccomp filter
 * that does not know it make the caller fall back to the walk. */
static int open_resolve_beneath(int dirfd, const char *path, int oflags)
{
    struct fdsend_open_how how;
    int r;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)oflags;
    how.resolve = FDSEND_RESOLVE_BENEATH | FDSEND_RESOLVE_NO_SYMLINKS | FDSEND_RESOLVE_NO_MAGICLINKS;
    do
        r = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    while (r < 0 && errno == EINTR);
    return r;
}
#endif /* HAVE_SYS_OPENAT2 */

/* Whether name in dir is a symbolic link (after an open with O_NOFOLLOW failed). */
static int is_symlink_at(int dir, const char *name)
{
    struct stat st;
    return fdsend_fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
}

/* The portable walk: each directory component opened with O_NOFOLLOW | O_DIRECTORY, the
 * last one with O_NOFOLLOW. -1 with errno; ELOOP for a symbolic link anywhere. */
static int open_walk(int dirfd, const char *path, int oflags)
{
    char *copy = strdup(path), *p, *slash;
    int cur = dirfd, next, err;
    if (copy == NULL)
        return -1;
    p = copy;
    for (;;) {
        while (*p == '/')
            p++;
        slash = strchr(p, '/');
        if (slash != NULL) {
            *slash = '\0';
            while (slash[1] == '/')
                slash++;
        }
        if (slash == NULL || slash[1] == '\0') { /* the last component ("a/" included) */
            const char *last = *p != '\0' ? p : ".";
            do
                next = openat(cur, last, oflags | O_NOFOLLOW);
            while (next < 0 && errno == EINTR);
            if (next < 0 && is_symlink_at(cur, last))
                errno = ELOOP;
            break;
        }
        do
            next = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        while (next < 0 && errno == EINTR);
        if (next < 0) {
            if (is_symlink_at(cur, p))
                errno = ELOOP;
            break;
        }
        if (cur != dirfd)
            close(cur);
        cur = next;
        p = slash + 1;
    }
    err = errno;
    if (cur != dirfd)
        close(cur);
    free(copy);
    errno = err;
    return next;
}

int32_t fdsend_open_beneath(intptr_t dirfd, const char *path, uint32_t flags, intptr_t *fd)
{
    const int oflags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    struct stat st;
    int32_t rc;
    int f = -1, fl;
    if (fd == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    *fd = -1;
    if (path == NULL || (flags & ~(uint32_t)FDSEND_OPEN_NO_OPENAT2) != 0)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    if (!fdsend_valid_fd(dirfd))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    rc = check_path(path);
    if (rc != FDSEND_OK)
        return fdsend_fail(rc, rc == FDSEND_EESCAPE ? EXDEV : EINVAL);
#if HAVE_SYS_OPENAT2
    if ((flags & FDSEND_OPEN_NO_OPENAT2) == 0) {
        f = open_resolve_beneath((int)dirfd, path, oflags);
        if (f < 0 && errno != ENOSYS && errno != EPERM)
            goto opened;
        if (f >= 0)
            goto opened;
    }
#endif /* HAVE_SYS_OPENAT2 */
    f = open_walk((int)dirfd, path, oflags);
#if HAVE_SYS_OPENAT2
opened:
#endif /* HAVE_SYS_OPENAT2 */
    if (f < 0) {
        int err = errno;
        switch (err) {
        case ELOOP: /* a symbolic link (RESOLVE_NO_SYMLINKS, O_NOFOLLOW) */
        case EXDEV: /* RESOLVE_BENEATH: the path would leave dirfd */
#ifdef EMLINK
        case EMLINK: /* FreeBSD's O_NOFOLLOW on a symbolic link */
#endif /* EMLINK */
            return fdsend_fail(FDSEND_EESCAPE, err);
        case ENOTDIR:
            return fdsend_fail(FDSEND_ENOENT, err);
        case ENXIO: /* a FIFO without a writer, a device without a driver: not a file */
            return fdsend_fail(FDSEND_ENOTREG, err);
        default:
            return fdsend_fail_errno();
        }
    }
    if (fdsend_fstat(f, &st) != 0) {
        int err = errno;
        close(f);
        return fdsend_fail(fdsend_status_from_errno(err), err);
    }
    if (!S_ISREG(st.st_mode)) {
        close(f);
        return fdsend_fail(FDSEND_ENOTREG, S_ISDIR(st.st_mode) ? EISDIR : EINVAL);
    }
    fl = fcntl(f, F_GETFL);
    if (fl < 0 || fcntl(f, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int err = errno;
        close(f);
        return fdsend_fail(fdsend_status_from_errno(err), err);
    }
    *fd = f;
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_open_directory(const char *path, intptr_t *fd)
{
    int d;
    if (fd == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    *fd = -1;
    if (path == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    do
        d = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY);
    while (d < 0 && errno == EINTR);
    if (d < 0)
        return errno == ENOTDIR ? fdsend_fail(FDSEND_ENOTREG, ENOTDIR) : fdsend_fail_errno();
    *fd = d;
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_broker_serve_one(intptr_t sock, intptr_t dirfd, uint32_t flags, int32_t *status)
{
    char path[FDSEND_BROKER_MAX_PATH + 1];
    intptr_t got[FDSEND_MAX_FDS];
    intptr_t file = -1;
    unsigned char reply[FDSEND_BROKER_REPLY_SIZE];
    int32_t n = 0, nreply = 0, st, rc;
    int64_t r;
    if (status != NULL)
        *status = FDSEND_OK;
    r = fdsend_msg_recv(sock, path, FDSEND_BROKER_MAX_PATH, got, FDSEND_MAX_FDS, &n, 0);
    if (r == FDSEND_EMSGSIZE) /* consumed: longer than any path */
        st = fdsend_broker_check_request(NULL, (uint64_t)FDSEND_BROKER_MAX_PATH + 1, 0);
    else if (r == FDSEND_EMFILE) /* consumed: it carried descriptors this process could not take */
        st = fdsend_broker_check_request(NULL, 0, 1);
    else if (r < 0)
        return (int32_t)r;
    else {
        (void)fdsend_close_all(got, n); /* a request hands no descriptor on */
        st = fdsend_broker_check_request(path, (uint64_t)r, n);
        if (st == FDSEND_OK) {
            path[r] = '\0';
            st = fdsend_open_beneath(dirfd, path, flags, &file);
        }
    }
    (void)fdsend_broker_reply_encode(st, reply, sizeof reply, &nreply);
    rc = fdsend_msg_send(sock, reply, sizeof reply, &file, nreply, 0);
    if (file >= 0) {
        int err = errno;
        close((int)file);
        errno = err;
    }
    if (status != NULL)
        *status = st;
    if (rc != FDSEND_OK)
        return rc;
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_broker_open(intptr_t sock, const char *path, intptr_t *fd)
{
    unsigned char reply[FDSEND_BROKER_REPLY_SIZE];
    intptr_t got[2] = {-1, -1};
    int32_t n = 0, st, rc;
    int64_t r;
    size_t len;
    if (fd == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    *fd = -1;
    if (path == NULL || fdsend_broker_check_request(path, len = strlen(path), 0) != FDSEND_OK)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    rc = fdsend_msg_send(sock, path, len, NULL, 0, 0);
    if (rc != FDSEND_OK)
        return rc;
    /* A longer payload, or more than two descriptors, is refused by the receive (its
     * descriptors closed); the codec checks the rest (room for two: a count mismatch). */
    r = fdsend_msg_recv(sock, reply, sizeof reply, got, 2, &n, 0);
    if (r == FDSEND_EMSGSIZE || r == FDSEND_ETOOMANYFDS)
        return fdsend_fail(FDSEND_EPROTO, EPROTO);
    if (r < 0)
        return (int32_t)r;
    (void)fdsend_broker_reply_decode(reply, (uint64_t)r, got, n, &st, fd, NULL);
    if (st != FDSEND_OK)
        return fdsend_fail(st, st == FDSEND_EPROTO ? EPROTO : 0);
    fdsend_clear_error();
    return FDSEND_OK;
}

#endif /* !defined(_WIN32) */
