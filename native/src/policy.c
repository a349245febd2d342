/* Receive policies: fdsend_check_fds, fdsend_check_received, fdsend_check_fd,
 * fdsend_check_peer, fdsend_recv_checked. The one implementation of the rules and of their messages (the .NET
 * FdReceivePolicy marshals into fdsend_policy and calls these). What a
 * receiver accepts from an untrusted peer, checked with fdsend_fd_info and
 * fdsend_peer_credentials; whatever breaks it is closed and described.
 * SPDX-License-Identifier: MIT */
#include "fdsend_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *kind_name(int32_t kind)
{
    switch (kind) {
    case FDSEND_KIND_FILE: return "regular file";
    case FDSEND_KIND_DIRECTORY: return "directory";
    case FDSEND_KIND_PIPE: return "pipe or FIFO";
    case FDSEND_KIND_SOCKET: return "socket";
    case FDSEND_KIND_MEMFD: return "memfd";
    case FDSEND_KIND_CHAR_DEVICE: return "character device";
    case FDSEND_KIND_BLOCK_DEVICE: return "block device";
    case FDSEND_KIND_EVENTFD: return "eventfd";
    case FDSEND_KIND_PIDFD: return "pidfd";
    default: return "other descriptor";
    }
}

static const char *access_name(int32_t access)
{
    switch (access) {
    case FDSEND_ACCESS_READ: return "read-only";
    case FDSEND_ACCESS_WRITE: return "write-only";
    case FDSEND_ACCESS_READ_WRITE: return "read-write";
    default: return "no access (O_PATH)";
    }
}

static const char *family_name(int32_t family)
{
    switch (family) {
    case FDSEND_FAMILY_UNIX: return "unix";
    case FDSEND_FAMILY_INET: return "inet";
    case FDSEND_FAMILY_INET6: return "inet6";
    case FDSEND_FAMILY_OTHER: return "other";
    default: return "none";
    }
}

static const char *socket_type_name(int32_t type)
{
    switch (type) {
    case FDSEND_SOCK_STREAM: return "stream";
    case FDSEND_SOCK_DGRAM: return "datagram";
    case FDSEND_SOCK_SEQPACKET: return "seqpacket";
    default: return "other";
    }
}

/* Appends the names of the set bits of mask (values 0 .. 31, named by fn) to out. */
static void append_names(char *out, size_t size, uint32_t mask, const char *(*fn)(int32_t))
{
    int32_t v;
    int first = 1;
    for (v = 0; v < 32; v++) {
        size_t used = strlen(out);
        if ((mask & FDSEND_BIT(v)) == 0)
            continue;
        snprintf(out + used, size - used, "%s%s", first ? "" : ", ", fn(v));
        first = 0;
    }
}

static void append_seals(char *out, size_t size, uint32_t seals)
{
    static const struct { uint32_t bit; const char *name; } names[] = {
        {FDSEND_SEAL_SEAL, "seal"}, {FDSEND_SEAL_SHRINK, "shrink"}, {FDSEND_SEAL_GROW, "grow"},
        {FDSEND_SEAL_WRITE, "write"}, {FDSEND_SEAL_FUTURE_WRITE, "future-write"}};
    size_t i;
    int first = 1;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t used = strlen(out);
        if ((seals & names[i].bit) == 0)
            continue;
        snprintf(out + used, size - used, "%s%s", first ? "" : "|", names[i].name);
        first = 0;
    }
    if (first) {
        size_t used = strlen(out);
        snprintf(out + used, size - used, "none");
    }
}

/* Records a violation (v may be NULL) and returns FDSEND_EPOLICY. */
static int32_t violate(fdsend_violation *v, int32_t reason, int32_t index,
                       const fdsend_fd_info_t *info, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 5, 6)))
#endif /* defined(__GNUC__) || defined(__clang__) */
    ;

static int32_t violate(fdsend_violation *v, int32_t reason, int32_t index,
                       const fdsend_fd_info_t *info, const char *fmt, ...)
{
    if (v != NULL) {
        va_list ap;
        v->reason = reason;
        v->index = index;
        if (info != NULL)
            v->info = *info;
        else
            memset(&v->info, 0, sizeof v->info);
        va_start(ap, fmt);
        vsnprintf(v->message, sizeof v->message, fmt, ap);
        va_end(ap);
    }
    return fdsend_fail(FDSEND_EPOLICY, 0);
}

static void reset_violation(fdsend_violation *v, int32_t nfds)
{
    if (v == NULL)
        return;
    memset(v, 0, sizeof *v);
    v->index = -1;
    v->nfds = nfds;
}

static int policy_valid(const fdsend_policy *p)
{
    return p != NULL && p->struct_size >= sizeof *p && p->nrules >= 0 &&
           (p->rules != NULL || p->nrules == 0) && p->min_fds >= 0 && p->max_fds >= 0;
}

/* Checks one descriptor against one rule: FDSEND_OK or FDSEND_EPOLICY (nothing closed). */
static int32_t check_one(const fdsend_fd_rule *r, intptr_t fd, int32_t index,
                         fdsend_violation *v)
{
    fdsend_fd_info_t info;
    char want[160] = "";
    char have[64] = "";
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (fdsend_fd_info(fd, &info) != FDSEND_OK)
        return violate(v, FDSEND_VIOLATION_UNDESCRIBABLE, index, NULL,
                       "descriptor %d could not be described (%s)", (int)index,
                       fdsend_strerror(fdsend_status_from_os_error(fdsend_last_os_error())));
    if ((r->kinds != 0 && (r->kinds & FDSEND_BIT(info.kind)) == 0) ||
        (r->required_seals != 0 && info.kind != FDSEND_KIND_MEMFD)) {
        append_names(want, sizeof want,
                     r->required_seals != 0 ? FDSEND_BIT(FDSEND_KIND_MEMFD) : r->kinds, kind_name);
        return violate(v, FDSEND_VIOLATION_KIND, index, &info,
                       "descriptor %d is a %s; the policy accepts: %s", (int)index,
                       kind_name(info.kind), want);
    }
    if (r->access != 0 && (r->access & FDSEND_BIT(info.access)) == 0) {
        append_names(want, sizeof want, r->access, access_name);
        return violate(v, FDSEND_VIOLATION_ACCESS, index, &info,
                       "descriptor %d (a %s) is open %s; the policy accepts: %s", (int)index,
                       kind_name(info.kind), access_name(info.access), want);
    }
    if (info.kind == FDSEND_KIND_SOCKET) {
        if (r->families != 0 && (r->families & FDSEND_BIT(info.family)) == 0) {
            append_names(want, sizeof want, r->families, family_name);
            return violate(v, FDSEND_VIOLATION_FAMILY, index, &info,
                           "descriptor %d is a %s socket; the policy accepts the families: %s",
                           (int)index, family_name(info.family), want);
        }
        if (r->socket_types != 0 && (r->socket_types & FDSEND_BIT(info.socket_type)) == 0) {
            append_names(want, sizeof want, r->socket_types, socket_type_name);
            return violate(v, FDSEND_VIOLATION_SOCKET_TYPE, index, &info,
                           "descriptor %d is a %s socket; the policy accepts the types: %s",
                           (int)index, socket_type_name(info.socket_type), want);
        }
        if ((r->options & FDSEND_RULE_NO_LISTENING) && (info.flags & FDSEND_FD_LISTENING))
            return violate(v, FDSEND_VIOLATION_LISTENING, index, &info,
                           "descriptor %d is a listening socket; the policy refuses listening sockets",
                           (int)index);
    }
    if (r->required_seals != 0 && (info.seals & r->required_seals) != r->required_seals) {
        append_seals(have, sizeof have, info.seals);
        append_seals(want, sizeof want, r->required_seals);
        return violate(v, FDSEND_VIOLATION_SEALS, index, &info,
                       "descriptor %d is a memfd sealed with %s; the policy requires the seals %s",
                       (int)index, have, want);
    }
    if ((info.kind == FDSEND_KIND_FILE || info.kind == FDSEND_KIND_MEMFD) &&
        (info.size < r->min_size || (r->max_size >= 0 && info.size > r->max_size))) {
        if (r->max_size >= 0)
            snprintf(want, sizeof want, "%lld .. %lld bytes", (long long)r->min_size,
                     (long long)r->max_size);
        else
            snprintf(want, sizeof want, "at least %lld bytes", (long long)r->min_size);
        return violate(v, FDSEND_VIOLATION_SIZE, index, &info,
                       "descriptor %d is a %s of %lld bytes; the policy accepts %s", (int)index,
                       kind_name(info.kind), (long long)info.size, want);
    }
    if ((r->options & FDSEND_RULE_CLOEXEC) && !(info.flags & FDSEND_FD_CLOEXEC))
        return violate(v, FDSEND_VIOLATION_CLOEXEC, index, &info,
                       "descriptor %d (a %s) is not close-on-exec; the policy requires it",
                       (int)index, kind_name(info.kind));
    return FDSEND_OK;
}

/* The count and every descriptor; FDSEND_OK or FDSEND_EPOLICY (nothing closed). */
static int32_t check_all(const fdsend_policy *p, const intptr_t *fds, int32_t nfds,
                         fdsend_violation *v)
{
    int32_t i;
    if (nfds < p->min_fds)
        return violate(v, FDSEND_VIOLATION_TOO_FEW_FDS, -1, NULL,
                       "the message carried %d descriptors; the policy requires at least %d",
                       (int)nfds, (int)p->min_fds);
    if (nfds > p->max_fds)
        return violate(v, FDSEND_VIOLATION_TOO_MANY_FDS, -1, NULL,
                       "the message carried %d descriptors; the policy accepts at most %d",
                       (int)nfds, (int)p->max_fds);
    if (p->nrules == 0)
        return FDSEND_OK;
    for (i = 0; i < nfds; i++) {
        const fdsend_fd_rule *r = &p->rules[i < p->nrules ? i : p->nrules - 1];
        int32_t rc;
        if (fds[i] < 0)
            continue; /* already handed on */
        rc = check_one(r, fds[i], i, v);
        if (rc != FDSEND_OK)
            return rc;
    }
    return FDSEND_OK;
}

/* Close fds[0 .. n) and mark each slot -1. */
static void close_marked(intptr_t *fds, int32_t n)
{
    int32_t i;
    int err = errno;
    (void)fdsend_close_all(fds, n);
    for (i = 0; i < n; i++)
        fds[i] = -1;
    errno = err;
}

/* One received message (rflags: its FDSEND_RECV_* flags) against p: FDSEND_OK, or
 * FDSEND_EPOLICY with every descriptor closed and marked -1. */
static int32_t check_message(const fdsend_policy *p, intptr_t *fds, int32_t nfds, uint32_t rflags,
                             fdsend_violation *v)
{
    int32_t rc;
    if (rflags & FDSEND_RECV_FDS_TRUNCATED)
        rc = violate(v, FDSEND_VIOLATION_TOO_MANY_FDS, -1, NULL,
                     "the message carried more than %d descriptors (some were dropped); the policy accepts at most %d",
                     (int)nfds, (int)p->max_fds);
    else
        rc = check_all(p, fds, nfds, v);
    if (rc != FDSEND_OK)
        close_marked(fds, nfds);
    return rc;
}

int32_t fdsend_check_received(const fdsend_policy *policy, intptr_t *fds, int32_t nfds,
                              uint32_t rflags, fdsend_violation *violation)
{
    if (!policy_valid(policy) || nfds < 0 || (fds == NULL && nfds > 0))
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    reset_violation(violation, nfds);
    if (check_message(policy, fds, nfds, rflags, violation) != FDSEND_OK)
        return fdsend_fail(FDSEND_EPOLICY, 0);
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_check_fds(const fdsend_policy *policy, intptr_t *fds, int32_t nfds,
                         fdsend_violation *violation)
{
    return fdsend_check_received(policy, fds, nfds, 0, violation);
}

int32_t fdsend_check_fd(const fdsend_fd_rule *rule, intptr_t fd, int32_t index,
                        fdsend_violation *violation)
{
    int32_t rc;
    if (rule == NULL || index < 0)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    reset_violation(violation, 0);
    rc = check_one(rule, fd, index, violation);
    if (rc != FDSEND_OK)
        return rc;
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_check_peer(intptr_t sock, const fdsend_policy *policy, fdsend_violation *violation)
{
    int64_t pid = -1, uid = -1, gid = -1;
    int32_t rc;
    uint32_t o;
    if (!policy_valid(policy))
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    reset_violation(violation, 0);
    o = policy->options;
    if ((o & (FDSEND_POLICY_CHECK_UID | FDSEND_POLICY_CHECK_GID | FDSEND_POLICY_CHECK_PID)) == 0) {
        fdsend_clear_error();
        return FDSEND_OK;
    }
    rc = fdsend_peer_credentials(sock, &pid, &uid, &gid);
    if (rc != FDSEND_OK)
        return rc;
    if ((o & FDSEND_POLICY_CHECK_UID) && uid != policy->uid)
        return violate(violation, FDSEND_VIOLATION_PEER, -1, NULL,
                       "the peer runs as uid %lld; the policy requires uid %lld", (long long)uid,
                       (long long)policy->uid);
    if ((o & FDSEND_POLICY_CHECK_GID) && gid != policy->gid)
        return violate(violation, FDSEND_VIOLATION_PEER, -1, NULL,
                       "the peer runs as gid %lld; the policy requires gid %lld", (long long)gid,
                       (long long)policy->gid);
    if ((o & FDSEND_POLICY_CHECK_PID) && pid < 0)
        return violate(violation, FDSEND_VIOLATION_PEER, -1, NULL,
                       "the OS does not report the peer's pid; the policy requires pid %lld",
                       (long long)policy->pid);
    if ((o & FDSEND_POLICY_CHECK_PID) && pid != policy->pid)
        return violate(violation, FDSEND_VIOLATION_PEER, -1, NULL,
                       "the peer is pid %lld; the policy requires pid %lld", (long long)pid,
                       (long long)policy->pid);
    fdsend_clear_error();
    return FDSEND_OK;
}

int64_t fdsend_recv_checked(intptr_t sock, void *buf, size_t len, intptr_t *fds, int32_t maxfds,
                            int32_t *nfds, uint32_t *rflags, uint32_t flags,
                            const fdsend_policy *policy, fdsend_violation *violation)
{
    intptr_t got[FDSEND_MAX_FDS];
    int32_t n = 0, i;
    uint32_t rf = 0;
    int64_t r;
    int32_t rc;
    if (nfds != NULL)
        *nfds = 0;
    if (rflags != NULL)
        *rflags = 0;
    if (!policy_valid(policy) || maxfds < 0 || (maxfds > 0 && (fds == NULL || nfds == NULL)) ||
        maxfds < (policy->max_fds < FDSEND_MAX_FDS ? policy->max_fds : FDSEND_MAX_FDS))
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    rc = fdsend_check_peer(sock, policy, violation);
    if (rc != FDSEND_OK)
        return rc;
    r = fdsend_recv(sock, buf, len, got, FDSEND_MAX_FDS, &n, &rf, flags);
    if (r < 0)
        return r;
    if (violation != NULL)
        violation->nfds = n;
    if (rf & FDSEND_RECV_END_OF_STREAM) {
        if (rflags != NULL)
            *rflags = rf;
        return r;
    }
    rc = check_message(policy, got, n, rf, violation);
    if (rc != FDSEND_OK) {
        if (violation != NULL) {
            violation->bytes = r;
            violation->nfds = n;
        }
        return fdsend_fail(FDSEND_EPOLICY, 0);
    }
    for (i = 0; i < n; i++)
        fds[i] = got[i];
    if (nfds != NULL)
        *nfds = n;
    if (rflags != NULL)
        *rflags = rf;
    fdsend_clear_error();
    return r;
}
