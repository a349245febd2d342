/* Receive policies: fdsend_recv_checked, fdsend_check_fds, fdsend_check_peer. Whatever breaks
 * the policy is closed (the fd count is back where it was), reported with its index, what it
 * was and what was required, and the stream stays usable at the next message.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static fdsend_policy make_policy(const fdsend_fd_rule *rules, int32_t nrules, int32_t max_fds)
{
    fdsend_policy p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.max_fds = max_fds;
    p.rules = rules;
    p.nrules = nrules;
    return p;
}

static fdsend_fd_rule any_rule(void)
{
    fdsend_fd_rule r;
    memset(&r, 0, sizeof r);
    r.max_size = -1;
    return r;
}

/* A TCP socket listening on 127.0.0.1 (an ephemeral port), close-on-exec. */
static int inet_listener(void)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(fd);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_SYS(bind(fd, (struct sockaddr *)&a, sizeof a));
    CHECK_SYS(listen(fd, 1));
    return fd;
}

static void send_fds(int sock, const int *fds, int n)
{
    intptr_t v[8];
    int i;
    for (i = 0; i < n; i++)
        v[i] = fds[i];
    CHECK_RC(fdsend_send(sock, "m", 1, v, n, 0), 1);
}

/* Sends fds[0..n) on a stream pair, receives under p, expects FDSEND_EPOLICY with
 * reason/index and the text `words`; checks nothing leaked and the next message arrives. */
static void expect_refused(const fdsend_policy *p, const int *fds, int n, int32_t reason,
                           int32_t index, const char *words)
{
    int sv[2], before;
    intptr_t got[8];
    int32_t nfds = 7;
    uint32_t rf = 9;
    char b[4];
    fdsend_violation v;
    tu_socketpair(SOCK_STREAM, sv);
    send_fds(sv[0], fds, n);
    CHECK_RC(fdsend_send(sv[0], "next", 4, NULL, 0, 0), 4);
    before = tu_count_fds();
    CHECK_RC(fdsend_recv_checked(sv[1], b, 1, got, 8, &nfds, &rf, 0, p, &v), FDSEND_EPOLICY);
    CHECK_EQ(nfds, 0);
    CHECK_EQ(rf, 0);
    CHECK_EQ(v.reason, reason);
    CHECK_EQ(v.index, index);
    CHECK_EQ(v.nfds, n);
    CHECK_EQ(v.bytes, 1);
    if (strstr(v.message, words) == NULL)
        tu_fail(__FILE__, __LINE__, "violation message \"%s\" does not say \"%s\"", v.message, words);
    CHECK_EQ(tu_count_fds(), before); /* every descriptor of the message was closed */
    /* The stream is still in step: the next message is whole. */
    CHECK_RC(fdsend_recv(sv[1], b, 4, NULL, 0, NULL, NULL, 0), 4);
    CHECK_MEM(b, "next", 4);
    close(sv[0]);
    close(sv[1]);
}

TEST(accepts_what_the_policy_allows)
{
    fdsend_fd_rule rules[2];
    fdsend_policy p;
    int sv[2], file = tu_temp_file("hello");
    int ro = open(tu_temppath("ro"), O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
    intptr_t mem = -1, got[4];
    int32_t n = 0;
    uint32_t rf = 0;
    char b;
    fdsend_violation v;
    int fds[2];
    CHECK_SYS(ro);
    CHECK_RC(fdsend_shm_create("t", "data", 4, FDSEND_SEAL_SHRINK | FDSEND_SEAL_GROW | FDSEND_SEAL_WRITE, &mem), FDSEND_OK);
    rules[0] = any_rule();
    rules[0].kinds = FDSEND_BIT(FDSEND_KIND_FILE);
    rules[0].access = FDSEND_BIT(FDSEND_ACCESS_READ);
    rules[1] = any_rule();
    rules[1].required_seals = FDSEND_SEAL_SHRINK | FDSEND_SEAL_WRITE;
    rules[1].max_size = 4;
    p = make_policy(rules, 2, 2);
    p.min_fds = 2;
    fds[0] = ro;
    fds[1] = (int)mem;
    tu_socketpair(SOCK_STREAM, sv);
    send_fds(sv[0], fds, 2);
    CHECK_RC(fdsend_recv_checked(sv[1], &b, 1, got, 4, &n, &rf, 0, &p, &v), 1);
    CHECK_EQ(n, 2);
    CHECK_EQ(v.reason, FDSEND_VIOLATION_NONE);
    CHECK_EQ(v.index, -1);
    CHECK(tu_same_file((int)got[0], ro));
    CHECK(tu_same_file((int)got[1], (int)mem));
    tu_close_all(got, 2);
    close(file);
    close(ro);
    close((int)mem);
    close(sv[0]);
    close(sv[1]);
}

TEST(refuses_a_directory_where_a_file_was_expected)
{
    fdsend_fd_rule r = any_rule();
    fdsend_policy p;
    int fds[2];
    r.kinds = FDSEND_BIT(FDSEND_KIND_FILE) | FDSEND_BIT(FDSEND_KIND_MEMFD);
    p = make_policy(&r, 1, 4);
    fds[0] = tu_temp_file("ok");
    fds[1] = open(tu_tempdir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK_SYS(fds[1]);
    /* The second one is the culprit: both are closed, index 1 reported. */
    expect_refused(&p, fds, 2, FDSEND_VIOLATION_KIND, 1,
                   "descriptor 1 is a directory; the policy accepts: regular file, memfd");
    close(fds[0]);
    close(fds[1]);
}

TEST(refuses_a_fifo_and_a_device)
{
    fdsend_fd_rule r = any_rule();
    fdsend_policy p;
    int pipefd[2], dev;
    r.kinds = FDSEND_BIT(FDSEND_KIND_FILE);
    p = make_policy(&r, 1, 1);
    CHECK_SYS(pipe(pipefd));
    expect_refused(&p, &pipefd[0], 1, FDSEND_VIOLATION_KIND, 0, "is a pipe or FIFO");
    dev = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK_SYS(dev);
    expect_refused(&p, &dev, 1, FDSEND_VIOLATION_KIND, 0, "is a character device");
    close(pipefd[0]);
    close(pipefd[1]);
    close(dev);
}

TEST(requires_read_only)
{
    fdsend_fd_rule r = any_rule();
    fdsend_policy p;
    int rw = open(tu_temppath("rw"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    CHECK_SYS(rw);
    r.access = FDSEND_BIT(FDSEND_ACCESS_READ);
    p = make_policy(&r, 1, 1);
    expect_refused(&p, &rw, 1, FDSEND_VIOLATION_ACCESS, 0,
                   "descriptor 0 (a regular file) is open read-write; the policy accepts: read-only");
    close(rw);
}

TEST(counts)
{
    fdsend_policy p = make_policy(NULL, 0, 1);
    int f[3];
    f[0] = tu_temp_file("a");
    f[1] = tu_temp_file("b");
    f[2] = tu_temp_file("c");
    expect_refused(&p, f, 3, FDSEND_VIOLATION_TOO_MANY_FDS, -1,
                   "carried 3 descriptors; the policy accepts at most 1");
    p.min_fds = 1;
    expect_refused(&p, f, 0, FDSEND_VIOLATION_TOO_FEW_FDS, -1, "requires at least 1");
    tu_close_all((intptr_t[]){f[0], f[1], f[2]}, 3);
}

TEST(socket_family_type_and_listening)
{
    fdsend_fd_rule r = any_rule();
    fdsend_policy p;
    int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int dg[2], lst;
    CHECK_SYS(tcp);
    r.kinds = FDSEND_BIT(FDSEND_KIND_SOCKET);
    r.families = FDSEND_BIT(FDSEND_FAMILY_INET) | FDSEND_BIT(FDSEND_FAMILY_INET6);
    r.socket_types = FDSEND_BIT(FDSEND_SOCK_STREAM);
    r.options = FDSEND_RULE_NO_LISTENING;
    p = make_policy(&r, 1, 1);
    /* "No descriptors that carry descriptors": refuse Unix sockets by family. */
    tu_socketpair(SOCK_STREAM, dg);
    expect_refused(&p, &dg[0], 1, FDSEND_VIOLATION_FAMILY, 0,
                   "is a unix socket; the policy accepts the families: inet, inet6");
    close(dg[0]);
    close(dg[1]);
    r.families = 0;
    tu_socketpair(SOCK_DGRAM, dg);
    expect_refused(&p, &dg[0], 1, FDSEND_VIOLATION_SOCKET_TYPE, 0,
                   "is a datagram socket; the policy accepts the types: stream");
    close(dg[0]);
    close(dg[1]);
    lst = inet_listener();
    expect_refused(&p, &lst, 1, FDSEND_VIOLATION_LISTENING, 0, "is a listening socket");
    close(lst);
    close(tcp);
}

TEST(memfd_seals_and_size)
{
#if defined(__linux__)
    fdsend_fd_rule r = any_rule();
    fdsend_policy p;
    intptr_t unsealed = -1, sealed = -1;
    int fd, file = tu_temp_file("x");
    r.required_seals = FDSEND_SEAL_SHRINK | FDSEND_SEAL_WRITE;
    r.min_size = 8;
    r.max_size = 64;
    p = make_policy(&r, 1, 1);
    CHECK_RC(fdsend_shm_create("u", "0123456789", 10, 0, &unsealed), FDSEND_OK);
    fd = (int)unsealed;
    expect_refused(&p, &fd, 1, FDSEND_VIOLATION_SEALS, 0,
                   "is a memfd sealed with none; the policy requires the seals shrink|write");
    CHECK_RC(fdsend_shm_create("s", "0123", 4, FDSEND_SEAL_SHRINK | FDSEND_SEAL_WRITE, &sealed), FDSEND_OK);
    fd = (int)sealed;
    expect_refused(&p, &fd, 1, FDSEND_VIOLATION_SIZE, 0,
                   "is a memfd of 4 bytes; the policy accepts 8 .. 64 bytes");
    /* A rule with seals accepts only memfds: a plain file is the wrong kind. */
    expect_refused(&p, &file, 1, FDSEND_VIOLATION_KIND, 0, "is a regular file; the policy accepts: memfd");
    close((int)unsealed);
    close((int)sealed);
    close(file);
#else
    tu_skip("memfds are Linux-only");
#endif /* defined(__linux__) */
}

TEST(peer_credentials_before_any_descriptor)
{
    fdsend_policy p = make_policy(NULL, 0, 1);
    fdsend_violation v;
    int sv[2], file = tu_temp_file("f"), before;
    intptr_t got[1];
    int32_t n = 0;
    char b;
    tu_socketpair(SOCK_STREAM, sv);
    send_fds(sv[0], &file, 1);
    p.options = FDSEND_POLICY_CHECK_UID;
    p.uid = (int64_t)getuid() + 1;
    before = tu_count_fds();
    CHECK_RC(fdsend_recv_checked(sv[1], &b, 1, got, 1, &n, NULL, 0, &p, &v), FDSEND_EPOLICY);
    CHECK_EQ(v.reason, FDSEND_VIOLATION_PEER);
    CHECK(strstr(v.message, "the policy requires uid") != NULL);
    CHECK_EQ(tu_count_fds(), before); /* nothing received: nothing installed */
    CHECK_EQ(tu_pending(sv[1]), 1);   /* nothing consumed */
    p.uid = (int64_t)getuid();
    p.options = FDSEND_POLICY_CHECK_UID | FDSEND_POLICY_CHECK_GID | FDSEND_POLICY_CHECK_PID;
    p.gid = (int64_t)getgid();
    p.pid = (int64_t)getpid() + 100000;
    CHECK_RC(fdsend_check_peer(sv[1], &p, &v), FDSEND_EPOLICY);
    CHECK(strstr(v.message, "the policy requires pid") != NULL);
    p.pid = (int64_t)getpid(); /* a socketpair's peer is this process */
    CHECK_RC(fdsend_recv_checked(sv[1], &b, 1, got, 1, &n, NULL, 0, &p, &v), 1);
    CHECK_EQ(n, 1);
    CHECK(tu_same_file((int)got[0], file));
    close((int)got[0]);
    close(file);
    close(sv[0]);
    close(sv[1]);
}

/* fdsend_check_fds after the message channel: refused descriptors are closed and set to -1. */
TEST(check_fds_after_msg_recv)
{
    fdsend_fd_rule r = any_rule();
    fdsend_policy p;
    fdsend_violation v;
    int sv[2], before;
    intptr_t out[2], got[4];
    int32_t n = 0;
    char b[8];
    r.kinds = FDSEND_BIT(FDSEND_KIND_FILE);
    p = make_policy(&r, 1, 4);
    out[0] = tu_temp_file("a");
    out[1] = open(tu_tempdir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    tu_socketpair(SOCK_SEQPACKET, sv);
    CHECK_RC(fdsend_msg_send(sv[0], "hi", 2, out, 2, 0), FDSEND_OK);
    before = tu_count_fds();
    CHECK_RC(fdsend_msg_recv(sv[1], b, sizeof b, got, 4, &n, 0), 2);
    CHECK_EQ(n, 2);
    CHECK_RC(fdsend_check_fds(&p, got, n, &v), FDSEND_EPOLICY);
    CHECK_EQ(v.index, 1);
    CHECK_EQ(v.info.kind, FDSEND_KIND_DIRECTORY);
    CHECK_EQ(got[0], -1);
    CHECK_EQ(got[1], -1);
    CHECK_EQ(tu_count_fds(), before);
    tu_close_all(out, 2);
    close(sv[0]);
    close(sv[1]);
}

/* FDSEND_RULE_CLOEXEC refuses a descriptor without close-on-exec (one opened here: received
 * ones always have it where MSG_CMSG_CLOEXEC exists); both descriptors are closed. */
TEST(requires_close_on_exec)
{
    fdsend_fd_rule r = any_rule();
    fdsend_policy p;
    fdsend_violation v;
    intptr_t fds[2];
    int before = tu_count_fds();
    r.options = FDSEND_RULE_CLOEXEC;
    p = make_policy(&r, 1, 2);
    fds[0] = tu_temp_file("a");
    fds[1] = open(tu_temppath("inheritable"), O_RDONLY | O_CREAT, 0600);
    CHECK_SYS((int)fds[1]);
    CHECK(tu_cloexec((int)fds[0]));
    CHECK(!tu_cloexec((int)fds[1]));
    CHECK_RC(fdsend_check_fds(&p, fds, 2, &v), FDSEND_EPOLICY);
    CHECK_EQ(v.reason, FDSEND_VIOLATION_CLOEXEC);
    CHECK_EQ(v.index, 1);
    CHECK(strstr(v.message, "descriptor 1 (a regular file) is not close-on-exec; the policy requires it") != NULL);
    CHECK_EQ(fds[0], -1);
    CHECK_EQ(fds[1], -1);
    CHECK_EQ(tu_count_fds(), before);
}

/* A descriptor fdsend_fd_info cannot describe (a closed number) is a violation, not an
 * error: the other descriptors are closed. fdsend_check_fd on it closes nothing. */
TEST(undescribable_descriptor)
{
    fdsend_fd_rule r = any_rule();
    fdsend_policy p;
    fdsend_violation v;
    intptr_t fds[2];
    int before = tu_count_fds();
    r.kinds = FDSEND_BIT(FDSEND_KIND_FILE);
    p = make_policy(&r, 1, 2);
    fds[0] = tu_temp_file("a");
    fds[1] = INT32_MAX; /* never open: a closed number (never one that another thread may reuse) */
    CHECK_RC(fdsend_check_fds(&p, fds, 2, &v), FDSEND_EPOLICY);
    CHECK_EQ(v.reason, FDSEND_VIOLATION_UNDESCRIBABLE);
    CHECK_EQ(v.index, 1);
    CHECK_EQ(v.nfds, 2);
    CHECK_EQ(v.info.kind, 0);
    CHECK(strstr(v.message, "descriptor 1 could not be described") != NULL);
    CHECK_EQ(fds[0], -1);
    CHECK_EQ(tu_count_fds(), before);
    CHECK_RC(fdsend_check_fd(&r, INT32_MAX, 3, &v), FDSEND_EPOLICY);
    CHECK_EQ(v.reason, FDSEND_VIOLATION_UNDESCRIBABLE);
    CHECK_EQ(v.index, 3);
}

/* fdsend_check_fd: the rules and messages of fdsend_check_fds, nothing closed; a -1 entry
 * of fdsend_check_fds (already handed on) is counted but not checked. */
TEST(check_fd_closes_nothing_and_minus_one_is_skipped)
{
    fdsend_fd_rule r = any_rule();
    fdsend_policy p;
    fdsend_violation v;
    intptr_t fds[3];
    int dir = open(tu_tempdir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), before;
    CHECK_SYS(dir);
    r.kinds = FDSEND_BIT(FDSEND_KIND_FILE);
    before = tu_count_fds();
    CHECK_RC(fdsend_check_fd(&r, dir, 2, &v), FDSEND_EPOLICY);
    CHECK_EQ(v.reason, FDSEND_VIOLATION_KIND);
    CHECK_EQ(v.index, 2);
    CHECK_EQ(v.nfds, 0);
    CHECK_EQ(v.info.kind, FDSEND_KIND_DIRECTORY);
    CHECK(strcmp(v.message, "descriptor 2 is a directory; the policy accepts: regular file") == 0);
    CHECK(tu_fd_is_open(dir));
    CHECK_EQ(tu_count_fds(), before);
    CHECK_RC(fdsend_check_fd(NULL, dir, 0, &v), FDSEND_EINVAL);
    CHECK_RC(fdsend_check_fd(&r, dir, -1, &v), FDSEND_EINVAL);
    p = make_policy(&r, 1, 3);
    p.min_fds = 3;
    fds[0] = tu_temp_file("a");
    fds[1] = -1;
    fds[2] = tu_temp_file("b");
    CHECK_RC(fdsend_check_fds(&p, fds, 3, &v), FDSEND_OK);
    CHECK_EQ(v.nfds, 3);
    tu_close_all(fds, 3);
    close(dir);
}

/* fdsend_check_received: a message whose descriptors the kernel dropped (or that had no room
 * for them) is too many, whatever the rules, as in fdsend_recv_checked; every one is closed.
 * Without FDSEND_RECV_FDS_TRUNCATED it is fdsend_check_fds. */
TEST(check_received_truncated)
{
    fdsend_policy p = make_policy(NULL, 0, 4);
    fdsend_violation v;
    intptr_t fds[2];
    int before = tu_count_fds();
    fds[0] = tu_temp_file("a");
    fds[1] = tu_temp_file("b");
    CHECK_RC(fdsend_check_received(&p, fds, 2, FDSEND_RECV_DATA_TRUNCATED, &v), FDSEND_OK);
    CHECK_RC(fdsend_check_received(&p, fds, 2, FDSEND_RECV_FDS_TRUNCATED, &v), FDSEND_EPOLICY);
    CHECK_EQ(v.reason, FDSEND_VIOLATION_TOO_MANY_FDS);
    CHECK_EQ(v.index, -1);
    CHECK_EQ(v.nfds, 2);
    CHECK(strcmp(v.message, "the message carried more than 2 descriptors (some were dropped); the policy accepts at most 4") == 0);
    CHECK_EQ(fds[0], -1);
    CHECK_EQ(fds[1], -1);
    CHECK_EQ(tu_count_fds(), before);
    CHECK_RC(fdsend_check_received(NULL, fds, 0, 0, &v), FDSEND_EINVAL);
}

/* ---- The cases shared with the .NET tests (tests/conformance/policy-cases.txt) ---- */

#ifndef FDSEND_POLICY_CASES_FILE
#  error "FDSEND_POLICY_CASES_FILE: the path of tests/conformance/policy-cases.txt"
#endif

/* The value of name in a table of {name, value} pairs ending with a NULL name; -1 if absent. */
typedef struct named { const char *name; int32_t value; } named;

static int32_t lookup(const named *table, const char *name)
{
    for (; table->name != NULL; table++)
        if (strcmp(table->name, name) == 0)
            return table->value;
    return -1;
}

static const named kinds[] = {
    {"other", FDSEND_KIND_OTHER}, {"file", FDSEND_KIND_FILE}, {"directory", FDSEND_KIND_DIRECTORY},
    {"pipe", FDSEND_KIND_PIPE}, {"socket", FDSEND_KIND_SOCKET}, {"memfd", FDSEND_KIND_MEMFD},
    {"chardev", FDSEND_KIND_CHAR_DEVICE}, {"blockdev", FDSEND_KIND_BLOCK_DEVICE},
    {"eventfd", FDSEND_KIND_EVENTFD}, {"pidfd", FDSEND_KIND_PIDFD}, {NULL, 0}};
static const named accesses[] = {
    {"none", FDSEND_ACCESS_NONE}, {"read", FDSEND_ACCESS_READ}, {"write", FDSEND_ACCESS_WRITE},
    {"readwrite", FDSEND_ACCESS_READ_WRITE}, {NULL, 0}};
static const named families[] = {
    {"unix", FDSEND_FAMILY_UNIX}, {"inet", FDSEND_FAMILY_INET}, {"inet6", FDSEND_FAMILY_INET6},
    {"other", FDSEND_FAMILY_OTHER}, {NULL, 0}};
static const named types[] = {
    {"stream", FDSEND_SOCK_STREAM}, {"dgram", FDSEND_SOCK_DGRAM},
    {"seqpacket", FDSEND_SOCK_SEQPACKET}, {"other", 0}, {NULL, 0}};
static const named seal_bits[] = {
    {"seal", FDSEND_SEAL_SEAL}, {"shrink", FDSEND_SEAL_SHRINK}, {"grow", FDSEND_SEAL_GROW},
    {"write", FDSEND_SEAL_WRITE}, {"future-write", FDSEND_SEAL_FUTURE_WRITE}, {NULL, 0}};
static const named outcomes[] = {
    {"ok", FDSEND_VIOLATION_NONE}, {"kind", FDSEND_VIOLATION_KIND},
    {"access", FDSEND_VIOLATION_ACCESS}, {"family", FDSEND_VIOLATION_FAMILY},
    {"socket_type", FDSEND_VIOLATION_SOCKET_TYPE}, {"listening", FDSEND_VIOLATION_LISTENING},
    {"seals", FDSEND_VIOLATION_SEALS}, {"size", FDSEND_VIOLATION_SIZE},
    {"cloexec", FDSEND_VIOLATION_CLOEXEC}, {NULL, 0}};

/* The mask of the comma-separated names in list: FDSEND_BIT(value), or the value itself
 * (bits) for seals. */
static uint32_t names_mask(const named *table, char *list, int bits, int line)
{
    uint32_t mask = 0;
    char *save = NULL, *t;
    for (t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        int32_t v = lookup(table, t);
        if (v < 0)
            tu_fail(__FILE__, __LINE__, "policy-cases.txt:%d: unknown name '%s'", line, t);
        mask |= bits ? (uint32_t)v : FDSEND_BIT(v);
    }
    return mask;
}

static void parse_rule_token(fdsend_fd_rule *r, char *tok, int line)
{
    char *eq = strchr(tok, '=');
    char *value = eq != NULL ? eq + 1 : NULL;
    if (eq != NULL)
        *eq = '\0';
    if (strcmp(tok, "kinds") == 0 && value) r->kinds = names_mask(kinds, value, 0, line);
    else if (strcmp(tok, "access") == 0 && value) r->access = names_mask(accesses, value, 0, line);
    else if (strcmp(tok, "families") == 0 && value) r->families = names_mask(families, value, 0, line);
    else if (strcmp(tok, "types") == 0 && value) r->socket_types = names_mask(types, value, 0, line);
    else if (strcmp(tok, "seals") == 0 && value) r->required_seals = names_mask(seal_bits, value, 1, line);
    else if (strcmp(tok, "min") == 0 && value) r->min_size = strtoll(value, NULL, 10);
    else if (strcmp(tok, "max") == 0 && value) r->max_size = strtoll(value, NULL, 10);
    else if (strcmp(tok, "nolisten") == 0 && !value) r->options |= FDSEND_RULE_NO_LISTENING;
    else if (strcmp(tok, "cloexec") == 0 && !value) r->options |= FDSEND_RULE_CLOEXEC;
    else tu_fail(__FILE__, __LINE__, "policy-cases.txt:%d: unknown rule token '%s'", line, tok);
}

/* A fresh descriptor of the case file's kind `name` (the caller owns it); -1 if this system
 * cannot make one (memfds off Linux). *other: a second descriptor to close afterwards (the
 * other end of a pipe or socketpair), or -1. */
static int make_fixture(const char *name, int *other, int line)
{
    int fd = -1, sv[2];
    *other = -1;
    if (strcmp(name, "file-ro") == 0 || strcmp(name, "file-rw") == 0 ||
        strcmp(name, "file-inheritable") == 0) {
        int w = open(tu_temppath("ten"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        CHECK_SYS(w);
        CHECK_EQ(write(w, "0123456789", 10), 10);
        close(w);
        fd = open(tu_temppath("ten"), (strcmp(name, "file-rw") == 0 ? O_RDWR : O_RDONLY) |
                                          (strcmp(name, "file-inheritable") == 0 ? 0 : O_CLOEXEC));
    } else if (strcmp(name, "dir") == 0) {
        fd = open(tu_tempdir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } else if (strcmp(name, "pipe") == 0) {
        CHECK_SYS(pipe(sv));
        fd = sv[0];
        *other = sv[1];
    } else if (strcmp(name, "devnull") == 0) {
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    } else if (strcmp(name, "unix-stream") == 0) {
        tu_socketpair(SOCK_STREAM, sv);
        fd = sv[0];
        *other = sv[1];
    } else if (strcmp(name, "udp") == 0) {
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    } else if (strcmp(name, "tcp-listener") == 0) {
        fd = inet_listener();
    } else if (strcmp(name, "memfd-unsealed") == 0 || strcmp(name, "memfd-sealed") == 0) {
        intptr_t m = -1;
        int32_t rc = fdsend_shm_create("case", "0123456789", 10,
                                       strcmp(name, "memfd-sealed") == 0
                                           ? FDSEND_SEAL_SHRINK | FDSEND_SEAL_GROW | FDSEND_SEAL_WRITE : 0,
                                       &m);
        if (rc == FDSEND_ENOTSUP)
            return -1;
        CHECK_RC(rc, FDSEND_OK);
        return (int)m;
    } else {
        tu_fail(__FILE__, __LINE__, "policy-cases.txt:%d: unknown descriptor '%s'", line, name);
    }
    CHECK_SYS(fd);
    return fd;
}

/* Runs one line of the file (modified in place); returns 1 if it ran, 0 if skipped. */
static int run_case(char *text, int line)
{
    char *arrow = strstr(text, " -> "), *bar, *save = NULL, *name, *fixture, *tok, *outcome;
    const char *message = NULL;
    fdsend_fd_rule r = any_rule();
    fdsend_policy p;
    fdsend_violation v;
    intptr_t fd;
    int other, before, expected;
    CHECK(arrow != NULL);
    *arrow = '\0';
    bar = strstr(arrow + 4, " | ");
    if (bar != NULL) {
        *bar = '\0';
        message = bar + 3;
    }
    outcome = strtok_r(arrow + 4, " ", &save);
    CHECK(outcome != NULL);
    expected = lookup(outcomes, outcome);
    if (expected < 0)
        tu_fail(__FILE__, __LINE__, "policy-cases.txt:%d: unknown outcome '%s'", line, outcome);
    save = NULL;
    name = strtok_r(text, " ", &save);
    fixture = strtok_r(NULL, " ", &save);
    CHECK(name != NULL && fixture != NULL);
    while ((tok = strtok_r(NULL, " ", &save)) != NULL)
        parse_rule_token(&r, tok, line);
    before = tu_count_fds();
    fd = make_fixture(fixture, &other, line);
    if (fd < 0)
        return 0;
    p = make_policy(&r, 1, 1);
    if (expected == FDSEND_VIOLATION_NONE) {
        if (fdsend_check_fds(&p, &fd, 1, &v) != FDSEND_OK)
            tu_fail(__FILE__, __LINE__, "policy-cases.txt:%d (%s): refused: %s", line, name, v.message);
        close((int)fd);
    } else {
        CHECK_RC(fdsend_check_fds(&p, &fd, 1, &v), FDSEND_EPOLICY);
        if (v.reason != expected || strcmp(v.message, message != NULL ? message : "") != 0)
            tu_fail(__FILE__, __LINE__, "policy-cases.txt:%d (%s): reason %d \"%s\", expected %d \"%s\"",
                    line, name, (int)v.reason, v.message, expected, message != NULL ? message : "");
        CHECK_EQ(v.index, 0);
        CHECK_EQ(fd, -1);
    }
    if (other >= 0)
        close(other);
    CHECK_EQ(tu_count_fds(), before); /* refused: closed by the check; accepted: by us */
    return 1;
}

TEST(shared_cases)
{
    FILE *f = fopen(FDSEND_POLICY_CASES_FILE, "r");
    char text[512];
    int line = 0, ran = 0;
    if (f == NULL)
        tu_fail(__FILE__, __LINE__, "%s: %s", FDSEND_POLICY_CASES_FILE, strerror(errno));
    while (fgets(text, sizeof text, f) != NULL) {
        size_t n = strlen(text);
        line++;
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
            text[--n] = '\0';
        if (n == 0 || text[0] == '#')
            continue;
        ran += run_case(text, line);
    }
    fclose(f);
    CHECK(ran >= 10);
}

/* More than FDSEND_MAX_FDS never reaches the check; more than the policy's max is refused
 * even when fds[] has room only for max_fds. Bad arguments close nothing. */
TEST(arguments)
{
    fdsend_policy p = make_policy(NULL, 0, 2);
    fdsend_violation v;
    intptr_t got[2], bad = 5;
    int32_t n = 0;
    char b;
    CHECK_RC(fdsend_check_fds(NULL, got, 0, &v), FDSEND_EINVAL);
    CHECK_RC(fdsend_check_fds(&p, NULL, 1, &v), FDSEND_EINVAL);
    CHECK_RC(fdsend_check_fds(&p, got, -1, &v), FDSEND_EINVAL);
    p.struct_size = 4;
    CHECK_RC(fdsend_check_fds(&p, got, 0, &v), FDSEND_EINVAL);
    p.struct_size = sizeof p;
    p.nrules = 1; /* rules NULL */
    CHECK_RC(fdsend_check_fds(&p, &bad, 1, &v), FDSEND_EINVAL);
    p.nrules = 0;
    /* fds[] smaller than the policy allows: refused before anything is received. */
    CHECK_RC(fdsend_recv_checked(0, &b, 1, got, 1, &n, NULL, 0, &p, &v), FDSEND_EINVAL);
}

/* End of stream is not a violation, even when the policy wants descriptors. */
TEST(end_of_stream)
{
    fdsend_policy p = make_policy(NULL, 0, 1);
    int sv[2];
    intptr_t got[1];
    int32_t n = 0;
    uint32_t rf = 0;
    char b;
    p.min_fds = 1;
    tu_socketpair(SOCK_STREAM, sv);
    close(sv[0]);
    CHECK_RC(fdsend_recv_checked(sv[1], &b, 1, got, 1, &n, &rf, 0, &p, NULL), 0);
    CHECK(rf & FDSEND_RECV_END_OF_STREAM);
    close(sv[1]);
}

static const tu_case cases[] = {
    CASE(accepts_what_the_policy_allows),
    CASE(refuses_a_directory_where_a_file_was_expected),
    CASE(refuses_a_fifo_and_a_device),
    CASE(requires_read_only),
    CASE(counts),
    CASE(socket_family_type_and_listening),
    CASE(memfd_seals_and_size),
    CASE(peer_credentials_before_any_descriptor),
    CASE(check_fds_after_msg_recv),
    CASE(requires_close_on_exec),
    CASE(undescribable_descriptor),
    CASE(check_fd_closes_nothing_and_minus_one_is_skipped),
    CASE(check_received_truncated),
    CASE(shared_cases),
    CASE(arguments),
    CASE(end_of_stream),
};

int main(int argc, char **argv)
{
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
