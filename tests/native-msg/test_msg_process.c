/* Tests of the message channel (fdsend_msg_send / fdsend_msg_recv), part of
 * tests/native-msg (see msg_test.h). Processes: two processes passing descriptors both ways (also while another thread is
 * inside a call), SO_PASSCRED / SO_PASSPIDFD receivers, and an independent Python
 * implementation of docs/wire-format.md (python_peer, run as `test_msg_process python_peer
 * <msg_peer.py>`).
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

#include "fdsend.h"

/* ---- fork: two processes, descriptors both ways ---------------------------------------- */

#define FORK_MESSAGES 300

/* A pipe whose read end holds `text`; returns the read end. */
static int pipe_with(const char *text)
{
    int p[2];
    cloexec_pipe(p);
    CHECK_EQ(write(p[1], text, strlen(text)), (ssize_t)strlen(text));
    close(p[1]);
    return p[0];
}

static int read_all_fd(int fd, char *buf, size_t cap)
{
    size_t have = 0;
    for (;;) {
        ssize_t r = read(fd, buf + have, cap - have);
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    return (int)have;
}

static int fork_child(int s)
{
    char buf[256], text[256];
    intptr_t got[4];
    int32_t n;
    int count = 0;
    for (;;) {
        int64_t r = fdsend_msg_recv(s, buf, sizeof buf - 1, got, 4, &n, 0);
        if (r == FDSEND_EOF)
            return count == FORK_MESSAGES ? 0 : 2;
        if (r < 0 || n != 1)
            return 3;
        buf[r] = 0;
        /* the descriptor is a pipe holding the same text as the payload */
        int len = read_all_fd((int)got[0], text, sizeof text - 1);
        text[len] = 0;
        if (strcmp(text, buf) != 0)
            return 4;
        /* reply: the parent's descriptor back, and a pipe of our own */
        char reply[300];
        snprintf(reply, sizeof reply, "child %d got %s", (int)getpid(), buf);
        intptr_t back[2] = {got[0], pipe_with(reply)};
        if (fdsend_msg_send(s, reply, strlen(reply), back, 2, 0) != FDSEND_OK)
            return 5;
        close((int)back[0]);
        close((int)back[1]);
        count++;
    }
}

static void fork_run(int type)
{
    int sv[2];
    if (!tu_try_socketpair(type, sv))
        return;
    int base = tu_count_fds();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        _exit(fork_child(sv[1]));
    }
    close(sv[1]);
    for (int i = 0; i < FORK_MESSAGES; i++) {
        char text[64], buf[300], want[300], content[300];
        snprintf(text, sizeof text, "message %d from %d", i, (int)getpid());
        int mine = pipe_with(text);
        intptr_t one = mine;
        CHECK_EQ(fdsend_msg_send(sv[0], text, strlen(text), &one, 1, 0), FDSEND_OK);
        intptr_t got[4];
        int32_t n = -1;
        int64_t r = fdsend_msg_recv(sv[0], buf, sizeof buf - 1, got, 4, &n, 0);
        CHECK(r > 0);
        buf[r] = 0;
        snprintf(want, sizeof want, "child %d got %s", (int)pid, text);
        CHECK(strcmp(buf, want) == 0);
        CHECK_EQ(n, 2);
        CHECK(tu_same_file((int)got[0], mine)); /* our own pipe came back */
        int len = read_all_fd((int)got[1], content, sizeof content - 1);
        content[len] = 0;
        CHECK(strcmp(content, want) == 0); /* the child's pipe */
        close((int)got[0]);
        close((int)got[1]);
        close(mine);
    }
    shutdown(sv[0], SHUT_WR); /* the child sees FDSEND_EOF and exits 0 */
    if (type == SOCK_SEQPACKET)
        close(sv[0]);
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    if (type != SOCK_SEQPACKET)
        close(sv[0]);
    CHECK_EQ(tu_count_fds(), base - 2);
}

TEST(fork)
{
    fork_run(SOCK_STREAM);
    fork_run(SOCK_SEQPACKET);
}

/* A thread of the parent is inside a frame when another thread forks: the child (whose
 * only thread holds no frame) must not inherit the "busy" mark: a socket it opens on the
 * same descriptor number must work at once. */
TEST(fork_while_busy)
{
    int sv[2];
    tu_socketpair(SOCK_STREAM, sv);
    big_sender b = {sv[0], 1 << 20, 1, NULL};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, big_send_main, &b) == 0);
    while (tu_pending(sv[1]) == 0)
        tu_sleep_ms(1);
    tu_sleep_ms(10); /* the thread is now waiting, inside its frame, for the reader */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int np[2];
        alarm(5); /* a hang here is the bug: fail instead */
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, np) != 0 || dup2(np[0], sv[0]) < 0)
            _exit(10);
        char buf[8];
        int32_t n;
        if (fdsend_msg_send(sv[0], "child", 5, NULL, 0, 0) != FDSEND_OK)
            _exit(11);
        if (fdsend_msg_recv(np[1], buf, sizeof buf, NULL, 0, &n, 0) != 5)
            _exit(12);
        _exit(memcmp(buf, "child", 5) == 0 ? 0 : 13);
    }
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    /* the parent's frame is intact */
    unsigned char *big = malloc(1 << 20);
    intptr_t got[2];
    int32_t n;
    CHECK(big != NULL);
    CHECK_EQ(fdsend_msg_recv(sv[1], big, 1 << 20, got, 2, &n, 0), 1 << 20);
    CHECK(check_pattern(big, 1 << 20, 99));
    free(big);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(b.rc, FDSEND_OK);
    close(sv[0]);
    close(sv[1]);
}


/* ---- passcred: credentials and pidfds the kernel adds to every read ------------------- */

/* A receiver with SO_PASSCRED (and SO_PASSPIDFD, Linux >= 6.5, which installs a pidfd of
 * the sender with EVERY read) still gets every message whole, and no pidfd leaks. */
TEST(passcred)
{
#ifndef SO_PASSCRED
    printf("SKIPPED: SO_PASSCRED is Linux's; this system adds no credentials to every read\n");
    exit(SKIP_CODE);
#else
    int types[3] = {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM};
    for (int t = 0; t < 3; t++) {
        int sv[2], files[2], one = 1;
        if (!tu_try_socketpair(types[t], sv))
            continue;
        make_fds(files, 2);
        CHECK(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
#ifdef __linux__
        if (setsockopt(sv[1], SOL_SOCKET, 76 /* SO_PASSPIDFD */, &one, sizeof one) != 0 &&
            t == 0)
            printf("note: SO_PASSPIDFD not supported by this kernel\n");
#endif
        int base = tu_count_fds();
        intptr_t fds[2];
        to_intptr(files, fds, 2);
        unsigned char payload[3000];
        fill_pattern(payload, sizeof payload, 7);
        for (int i = 0; i < 20; i++)
            CHECK_EQ(fdsend_msg_send(sv[0], payload, sizeof payload, fds, i % 3, 0),
                     FDSEND_OK);
        if (types[t] == SOCK_STREAM) /* and a fragmented frame: one read per byte */
            slow_frame(sv[0], "slow", files, 2, 0);
        for (int i = 0; i < 20; i++) {
            unsigned char buf[4000];
            intptr_t got[4];
            int32_t n = -1;
            CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0),
                     (int64_t)sizeof payload);
            CHECK(memcmp(buf, payload, sizeof payload) == 0);
            check_and_close(got, n, files, i % 3);
        }
        if (types[t] == SOCK_STREAM) {
            char buf[8];
            intptr_t got[4];
            int32_t n = -1;
            CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 4);
            CHECK(memcmp(buf, "slow", 4) == 0);
            check_and_close(got, n, files, 2);
        }
        CHECK_EQ(tu_count_fds(), base);
        close_all(files, 2);
        close(sv[0]);
        close(sv[1]);
    }
#endif /* SO_PASSCRED */
}


/* ---- python_peer: an independent implementation of docs/wire-format.md --------------- */

static int python_peer(const char *script)
{
    if (script == NULL) {
        printf("SKIPPED: no peer script given\n");
        return SKIP_CODE;
    }
    if (system("python3 -c 'import socket; socket.CMSG_SPACE' >/dev/null 2>&1") != 0) {
        printf("SKIPPED: python3 with socket.CMSG_SPACE is not installed\n");
        return SKIP_CODE;
    }
    int sv[2];
    tu_socketpair(SOCK_STREAM, sv);
    int base = tu_count_fds();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char fdarg[16];
        close(sv[0]);
        int fl = fcntl(sv[1], F_GETFD);
        fcntl(sv[1], F_SETFD, fl & ~FD_CLOEXEC);
        snprintf(fdarg, sizeof fdarg, "%d", sv[1]);
        execlp("python3", "python3", script, fdarg, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    /* Each message goes to the Python peer, which answers with the payload reversed and
     * the descriptors in reverse order (its first answer fragmented byte by byte). */
    static const size_t sizes[] = {5, 0, 70000, 1};
    static const int counts[] = {2, 0, 1, FDSEND_MAX_FDS};
    int files[FDSEND_MAX_FDS];
    make_fds(files, FDSEND_MAX_FDS);
    unsigned char *out = malloc(70000), *in = malloc(70001);
    CHECK(out != NULL && in != NULL);
    for (int m = 0; m < 4; m++) {
        intptr_t fds[FDSEND_MAX_FDS], got[FDSEND_MAX_FDS];
        int expected[FDSEND_MAX_FDS];
        int32_t n = -1;
        fill_pattern(out, sizes[m], (unsigned)m);
        to_intptr(files, fds, counts[m]);
        CHECK_EQ(fdsend_msg_send(sv[0], out, sizes[m], fds, counts[m], 0), FDSEND_OK);
        CHECK_EQ(fdsend_msg_recv(sv[0], in, 70001, got, FDSEND_MAX_FDS, &n, 0),
                 (int64_t)sizes[m]);
        for (size_t i = 0; i < sizes[m]; i++)
            CHECK(in[i] == out[sizes[m] - 1 - i]);
        for (int i = 0; i < counts[m]; i++)
            expected[i] = files[counts[m] - 1 - i];
        check_and_close(got, n, expected, counts[m]);
    }
    /* A malformed frame from the peer: it sends bad flags when asked by payload "bad". */
    {
        intptr_t got[4];
        int32_t n = -1;
        CHECK_EQ(fdsend_msg_send(sv[0], "bad", 3, NULL, 0, 0), FDSEND_OK);
        CHECK_EQ(fdsend_msg_recv(sv[0], in, 64, got, 4, &n, 0), FDSEND_EPROTO);
        CHECK_EQ(n, 0);
    }
    shutdown(sv[0], SHUT_WR);
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    if (WEXITSTATUS(status) == 127) {
        printf("SKIPPED: python3 could not be started\n");
        return SKIP_CODE;
    }
    CHECK_EQ(WEXITSTATUS(status), 0);
    free(out);
    free(in);
    close_all(files, FDSEND_MAX_FDS);
    close(sv[0]);
    CHECK_EQ(tu_count_fds(), base - 2);
    return 0;
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
    CASE(fork),
    CASE(fork_while_busy),
    CASE(passcred),
    };
    if (argc > 1 && strcmp(argv[1], "python_peer") == 0) {
        int rc = python_peer(argc > 2 ? argv[2] : NULL);
        if (rc == 0)
            printf("ok  python_peer\n");
        return rc;
    }
    return msg_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
