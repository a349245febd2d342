/* The helpers the message-channel test programs share (declared in msg_test.h).
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

#include "fdsend.h"

#include <errno.h>
#if defined(__linux__)
#  include <sys/syscall.h>
#  include <unistd.h>
#endif

int msg_main(int argc, char **argv, const tu_case *cases, size_t ncases)
{
    /* Descriptors in flight count against RLIMIT_NOFILE (ETOOMANYREFS): use the hard
     * limit, as a server would. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    return tu_main(argc, argv, cases, ncases);
}

void set_cloexec(int fd)
{
    CHECK(fcntl(fd, F_SETFD, FD_CLOEXEC) == 0);
}

int cloexec_socket(int domain, int type)
{
    int s = socket(domain, type | TEST_SOCK_CLOEXEC, 0);
    if (s >= 0 && TEST_SOCK_CLOEXEC == 0)
        set_cloexec(s);
    return s;
}

void cloexec_pipe(int p[2])
{
#if defined(__APPLE__)
    CHECK(pipe(p) == 0);
    set_cloexec(p[0]);
    set_cloexec(p[1]);
#else
    CHECK(pipe2(p, O_CLOEXEC) == 0);
#endif
}

/* n descriptors with distinct inodes (read ends of pipes; the write ends are closed). */
void make_fds(int *out, int n)
{
    for (int i = 0; i < n; i++) {
        int p[2];
        cloexec_pipe(p);
        close(p[1]);
        out[i] = p[0];
    }
}

void close_all(const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

void to_intptr(const int *in, intptr_t *out, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = in[i];
}

/* Check the received descriptors: same files as expected[], in order, close-on-exec;
 * then close them. */
void check_and_close(const intptr_t *got, int32_t ngot, const int *expected, int n)
{
    CHECK_EQ(ngot, n);
    for (int i = 0; i < n; i++) {
        int fd = (int)got[i];
        CHECK(tu_same_file(fd, expected[i]));
        CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
    }
}

void fill_pattern(unsigned char *p, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (unsigned char)(x >> 16);
    }
}

int check_pattern(const unsigned char *p, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        if (p[i] != (unsigned char)(x >> 16))
            return 0;
    }
    return 1;
}

/* A raw peer: one sendmsg of data with fds attached (exactly one SCM_RIGHTS header). */
ssize_t raw_send(int sock, const void *data, size_t len, const int *fds, int nfds)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * 256)];
    } control;
    struct iovec iov = {(void *)data, len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
#if defined(__linux__) && defined(SYS_sendmsg)
    /* musl before 1.2.4 refuses more than 1024 bytes of control data (253 fds) with ENOMEM
     * before the system call, as libfdsend's USE_RAW_SENDMSG_FALLBACK knows: ask the kernel. */
    if (n < 0 && errno == ENOMEM && msg.msg_controllen > 1024)
        n = (ssize_t)syscall(SYS_sendmsg, sock, &msg, MSG_NOSIGNAL);
#endif
    return n;
}

void raw_send_all(int sock, const void *data, size_t len, const int *fds, int nfds)
{
    ssize_t n = raw_send(sock, data, len, fds, nfds);
    CHECK(n == (ssize_t)len);
}

int64_t recv_waiting(int sock, void *buf, size_t cap, intptr_t *fds, int32_t maxfds,
                     int32_t *n)
{
    for (;;) {
        int64_t r = fdsend_msg_recv(sock, buf, cap, fds, maxfds, n, 0);
        if (r != FDSEND_EAGAIN)
            return r;
        struct pollfd p = {sock, POLLIN, 0};
        poll(&p, 1, 1000);
    }
}

/* A raw peer writing one frame byte by byte: the first byte with the descriptors, then
 * every other byte in its own write, delay_us apart. */
void slow_frame(int sock, const char *payload, const int *fds, int nfds, int delay_us)
{
    unsigned char frame[64];
    size_t len = strlen(payload);
    tu_frame_header(frame, 1, 0, (unsigned)nfds, (uint32_t)len);
    memcpy(frame + 8, payload, len);
    /* the first byte with the descriptors, then every other byte in its own write */
    raw_send_all(sock, frame, 1, fds, nfds);
    for (size_t i = 1; i < 8 + len; i++) {
        if (delay_us > 0)
            usleep((useconds_t)delay_us);
        CHECK_EQ(write(sock, frame + i, 1), 1);
    }
}

void *big_send_main(void *arg)
{
    big_sender *b = arg;
    unsigned char *p = malloc(b->len);
    CHECK(p != NULL);
    fill_pattern(p, b->len, 99);
    b->rc = b->ch != NULL ? fdsend_channel_send(b->ch, p, b->len, NULL, 0, 0)
                          : fdsend_msg_send(b->sock, p, b->len, NULL, 0, 0);
    free(p);
    return NULL;
}
