/* Tests of the message channel (fdsend_msg_send / fdsend_msg_recv) and its wire format
 * (docs/wire-format.md). One executable, one CTest test per case: `test_msg <case>`.
 * Every case checks what a user observes: payload bytes, the inode of every received
 * descriptor, close-on-exec, error codes, and the number of open descriptors in
 * /proc/self/fd before and after (nothing may leak on any path).
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1

#include "fdsend.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#define SKIP_CODE 77

/* macOS has neither SOCK_CLOEXEC, pipe2 nor MSG_CMSG_CLOEXEC (Linux, the BSDs and illumos
 * have them): there the test's descriptors get FD_CLOEXEC from fcntl right after they are
 * made. The forked peers of this program exec nothing, so the moment in between is harmless. */
#ifdef SOCK_CLOEXEC
#  define TEST_SOCK_CLOEXEC SOCK_CLOEXEC
#else
#  define TEST_SOCK_CLOEXEC 0
#endif
#ifndef MSG_CMSG_CLOEXEC
#  define MSG_CMSG_CLOEXEC 0
#endif

static const char *current_case = "?";

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "FAIL %s: %s:%d: %s (errno %d)\n", current_case, __FILE__,  \
                    __LINE__, #cond, errno);                                            \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

#define CHECK_EQ(a, b)                                                                  \
    do {                                                                                \
        long long va_ = (long long)(a), vb_ = (long long)(b);                           \
        if (va_ != vb_) {                                                               \
            fprintf(stderr, "FAIL %s: %s:%d: %s == %s: %lld != %lld (%s)\n",           \
                    current_case, __FILE__, __LINE__, #a, #b, va_, vb_,                 \
                    va_ < 0 ? fdsend_strerror((int32_t)va_) : "");                      \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

/* ---- helpers ---------------------------------------------------------------------- */

/* Open descriptors of this process, from /proc/self/fd (a scan of fcntl elsewhere). */
static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.')
                n++;
        }
        closedir(d);
        return n - 1; /* the directory's own descriptor */
    }
    for (int fd = 0; fd < 4096; fd++) {
        if (fcntl(fd, F_GETFD) != -1)
            n++;
    }
    return n;
}

static void set_cloexec(int fd)
{
    CHECK(fcntl(fd, F_SETFD, FD_CLOEXEC) == 0);
}

static int cloexec_socket(int domain, int type)
{
    int s = socket(domain, type | TEST_SOCK_CLOEXEC, 0);
    if (s >= 0 && TEST_SOCK_CLOEXEC == 0)
        set_cloexec(s);
    return s;
}

/* A close-on-exec socketpair; 0 (with a note) where the system has no Unix sockets of
 * this type (SOCK_SEQPACKET on macOS): a case looping over types goes on without it. */
static int try_pair(int type, int sv[2])
{
    if (socketpair(AF_UNIX, type | TEST_SOCK_CLOEXEC, 0, sv) != 0) {
        CHECK(errno == EPROTONOSUPPORT || errno == ESOCKTNOSUPPORT || errno == EPROTOTYPE ||
              errno == EOPNOTSUPP);
        printf("note: this system has no Unix sockets of type %d (%s); that part is skipped\n",
               type, strerror(errno));
        return 0;
    }
    if (TEST_SOCK_CLOEXEC == 0) {
        set_cloexec(sv[0]);
        set_cloexec(sv[1]);
    }
    return 1;
}

/* A socketpair of a type the whole case is about: skips the case where there is none. */
static void make_pair(int type, int sv[2])
{
    if (!try_pair(type, sv)) {
        printf("SKIPPED: this system has no Unix sockets of type %d\n", type);
        exit(SKIP_CODE);
    }
}

static void cloexec_pipe(int p[2])
{
#if defined(__APPLE__)
    CHECK(pipe(p) == 0);
    set_cloexec(p[0]);
    set_cloexec(p[1]);
#else
    CHECK(pipe2(p, O_CLOEXEC) == 0);
#endif
}

static void set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    CHECK(fl >= 0);
    CHECK(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) == 0);
}

static void inode_of(int fd, dev_t *dev, ino_t *ino)
{
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    *dev = st.st_dev;
    *ino = st.st_ino;
}

static int same_file(int a, int b)
{
    dev_t da, db;
    ino_t ia, ib;
    inode_of(a, &da, &ia);
    inode_of(b, &db, &ib);
    return da == db && ia == ib;
}

/* n descriptors with distinct inodes (read ends of pipes; the write ends are closed). */
static void make_fds(int *out, int n)
{
    for (int i = 0; i < n; i++) {
        int p[2];
        cloexec_pipe(p);
        close(p[1]);
        out[i] = p[0];
    }
}

static void close_all(const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

static void to_intptr(const int *in, intptr_t *out, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = in[i];
}

/* Check the received descriptors: same files as expected[], in order, close-on-exec;
 * then close them. */
static void check_and_close(const intptr_t *got, int32_t ngot, const int *expected, int n)
{
    CHECK_EQ(ngot, n);
    for (int i = 0; i < n; i++) {
        int fd = (int)got[i];
        CHECK(same_file(fd, expected[i]));
        CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
    }
}

static void fill_pattern(unsigned char *p, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (unsigned char)(x >> 16);
    }
}

static int check_pattern(const unsigned char *p, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        if (p[i] != (unsigned char)(x >> 16))
            return 0;
    }
    return 1;
}

static void put_header(unsigned char h[8], unsigned version, unsigned flags, unsigned nfds,
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

/* A raw peer: one sendmsg of data with fds attached (exactly one SCM_RIGHTS header). */
static ssize_t raw_send(int sock, const void *data, size_t len, const int *fds, int nfds)
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
    return sendmsg(sock, &msg, MSG_NOSIGNAL);
}

static void raw_send_all(int sock, const void *data, size_t len, const int *fds, int nfds)
{
    ssize_t n = raw_send(sock, data, len, fds, nfds);
    CHECK(n == (ssize_t)len);
}

/* Bytes queued for reading on sock. */
static int pending(int sock)
{
    int n = 0;
    CHECK(ioctl(sock, FIONREAD, &n) == 0);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- wire_bytes: the exact bytes on the wire, both ways (pins docs/wire-format.md) ----- */

static void case_wire_bytes(void)
{
    static const unsigned char expected[13] = {0x01, 0x00, 0x02, 0x00, 0x05, 0x00, 0x00,
                                               0x00, 'h',  'e',  'l',  'l',  'o'};
    int sv[2], files[2];
    intptr_t sendfds[2];
    make_pair(SOCK_STREAM, sv);
    make_fds(files, 2);
    to_intptr(files, sendfds, 2);
    int base = fd_count();

    /* fdsend_msg_send -> raw reader */
    CHECK_EQ(fdsend_msg_send(sv[0], "hello", 5, sendfds, 2, 0), FDSEND_OK);
    {
        unsigned char got[64];
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int) * 8)];
        } control;
        struct iovec iov = {got, 1}; /* read the first byte alone: the fds come with it */
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        CHECK_EQ(recvmsg(sv[1], &msg, MSG_CMSG_CLOEXEC), 1);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        CHECK(c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS);
        CHECK_EQ(c->cmsg_len, CMSG_LEN(2 * sizeof(int)));
        int rfds[2];
        memcpy(rfds, CMSG_DATA(c), sizeof rfds);
        CHECK(same_file(rfds[0], files[0]) && same_file(rfds[1], files[1]));
        close_all(rfds, 2);
        CHECK_EQ(recv(sv[1], got + 1, sizeof got - 1, MSG_DONTWAIT), 12);
        CHECK(memcmp(got, expected, sizeof expected) == 0);
    }
    /* An empty message is the 8-byte header alone. */
    CHECK_EQ(fdsend_msg_send(sv[0], NULL, 0, NULL, 0, 0), FDSEND_OK);
    {
        unsigned char got[16];
        static const unsigned char empty[8] = {1, 0, 0, 0, 0, 0, 0, 0};
        CHECK_EQ(recv(sv[1], got, sizeof got, MSG_DONTWAIT), 8);
        CHECK(memcmp(got, empty, 8) == 0);
    }
    /* raw writer of the documented bytes -> fdsend_msg_recv */
    raw_send_all(sv[0], expected, sizeof expected, files, 2);
    {
        char buf[16];
        intptr_t rfds[4];
        int32_t n = -1;
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, rfds, 4, &n, 0), 5);
        CHECK(memcmp(buf, "hello", 5) == 0);
        check_and_close(rfds, n, files, 2);
    }
    /* seqpacket: the same bytes, as one datagram */
    {
        int sp[2];
        unsigned char got[64];
        if (try_pair(SOCK_SEQPACKET, sp)) {
            CHECK_EQ(fdsend_msg_send(sp[0], "hello", 5, NULL, 0, 0), FDSEND_OK);
            CHECK_EQ(recv(sp[1], got, sizeof got, 0), 13);
            CHECK(memcmp(got + 4, expected + 4, 9) == 0 && got[0] == 1 && got[2] == 0);
            close(sp[0]);
            close(sp[1]);
        }
    }
    CHECK_EQ(fd_count(), base);
    close_all(files, 2);
    close(sv[0]);
    close(sv[1]);
}

/* ---- round trips -------------------------------------------------------------------- */

typedef struct rt_plan {
    int sock;
    const size_t *sizes;
    int nsizes;
    const int *counts;
    int ncounts;
    const int *pool; /* FDSEND_MAX_FDS descriptors */
} rt_plan;

static void *rt_sender(void *arg)
{
    const rt_plan *p = arg;
    intptr_t fds[FDSEND_MAX_FDS];
    unsigned seed = 0;
    for (int s = 0; s < p->nsizes; s++) {
        unsigned char *payload = malloc(p->sizes[s] + 1);
        CHECK(payload != NULL);
        for (int c = 0; c < p->ncounts; c++, seed++) {
            fill_pattern(payload, p->sizes[s], seed);
            for (int i = 0; i < p->counts[c]; i++) /* vary the order per message */
                fds[i] = p->pool[(i + (int)seed) % FDSEND_MAX_FDS];
            CHECK_EQ(fdsend_msg_send(p->sock, payload, p->sizes[s], fds, p->counts[c], 0),
                     FDSEND_OK);
        }
        free(payload);
    }
    return NULL;
}

static void round_trip(int type, const size_t *sizes, int nsizes)
{
    static const int counts[] = {0, 1, 3, FDSEND_MAX_FDS};
    const int ncounts = (int)(sizeof counts / sizeof counts[0]);
    int sv[2], pool[FDSEND_MAX_FDS];
    make_pair(type, sv);
    make_fds(pool, FDSEND_MAX_FDS);
    if (type != SOCK_STREAM) {
        int big = 4 << 20;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    }
    int base = fd_count();
    size_t maxsize = 0;
    for (int s = 0; s < nsizes; s++)
        maxsize = sizes[s] > maxsize ? sizes[s] : maxsize;

    rt_plan plan = {sv[0], sizes, nsizes, counts, ncounts, pool};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, rt_sender, &plan) == 0);
    unsigned char *buf = malloc(maxsize + 1);
    CHECK(buf != NULL);
    unsigned seed = 0;
    for (int s = 0; s < nsizes; s++) {
        for (int c = 0; c < ncounts; c++, seed++) {
            intptr_t got[FDSEND_MAX_FDS];
            int expected[FDSEND_MAX_FDS];
            int32_t n = -1;
            memset(buf, 0xee, maxsize + 1);
            int64_t r = fdsend_msg_recv(sv[1], buf, maxsize, got, FDSEND_MAX_FDS, &n, 0);
            CHECK_EQ(r, (int64_t)sizes[s]);
            CHECK(check_pattern(buf, sizes[s], seed));
            CHECK(buf[sizes[s]] == 0xee); /* nothing written past the payload */
            for (int i = 0; i < counts[c]; i++)
                expected[i] = pool[(i + (int)seed) % FDSEND_MAX_FDS];
            check_and_close(got, n, expected, counts[c]);
        }
    }
    CHECK(pthread_join(th, NULL) == 0);
    /* Nothing more on the socket: no byte of any frame was left behind. */
    {
        int32_t n = -1;
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, maxsize, NULL, 0, &n, FDSEND_DONTWAIT),
                 FDSEND_EAGAIN);
    }
    free(buf);
    CHECK_EQ(fd_count(), base);
    close_all(pool, FDSEND_MAX_FDS);
    close(sv[0]);
    close(sv[1]);
}

static void case_roundtrip_stream(void)
{
    static const size_t sizes[] = {0, 1, 7, 8, 9, 100, 4096, 65535, 65536, 200000, 1 << 20};
    round_trip(SOCK_STREAM, sizes, (int)(sizeof sizes / sizeof sizes[0]));
}

/* The largest datagram the sender's buffer allows (Linux: sk_sndbuf - 32), minus slack. */
static size_t max_datagram_payload(int type)
{
    int sv[2], big = 4 << 20, got = 0;
    socklen_t l = sizeof got;
    make_pair(type, sv);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &got, &l) == 0);
    close(sv[0]);
    close(sv[1]);
    return (size_t)got / 2 - 8; /* well inside the limit */
}

static void datagram_round_trip(int type)
{
    size_t sizes[] = {0, 1, 7, 8, 9, 100, 4096, 65536, 1 << 20};
    int n = (int)(sizeof sizes / sizeof sizes[0]);
    size_t limit = max_datagram_payload(type);
    int base = fd_count();
    if (limit < sizes[n - 1]) {
        /* 1 MiB does not fit this machine's send buffer: it must be refused whole, and
         * the largest payload that fits is tested instead. */
        int sv[2], files[2];
        intptr_t fds[2];
        make_pair(type, sv);
        make_fds(files, 2);
        to_intptr(files, fds, 2);
        unsigned char *big = calloc(1, sizes[n - 1]);
        CHECK(big != NULL);
        int before = fd_count();
        CHECK_EQ(fdsend_msg_send(sv[0], big, sizes[n - 1], fds, 2, 0), FDSEND_EMSGSIZE);
        CHECK_EQ(fd_count(), before);
        CHECK_EQ(pending(sv[1]), 0);
        free(big);
        close_all(files, 2);
        close(sv[0]);
        close(sv[1]);
        printf("note: 1 MiB datagram refused with FDSEND_EMSGSIZE (send buffer allows %zu)\n",
               limit);
        sizes[n - 1] = limit;
    }
    CHECK_EQ(fd_count(), base);
    round_trip(type, sizes, n);
}

static void case_roundtrip_seqpacket(void)
{
    datagram_round_trip(SOCK_SEQPACKET);
}

static void case_roundtrip_dgram(void)
{
    datagram_round_trip(SOCK_DGRAM);
}

/* ---- one_byte_at_a_time: a peer that fragments every frame -------------------------- */

typedef struct slow_writer {
    int sock;
    const int *fds;
    int nfds;
    int delay_us;
} slow_writer;

static void slow_frame(int sock, const char *payload, const int *fds, int nfds, int delay_us)
{
    unsigned char frame[64];
    size_t len = strlen(payload);
    put_header(frame, 1, 0, (unsigned)nfds, (uint32_t)len);
    memcpy(frame + 8, payload, len);
    /* the first byte with the descriptors, then every other byte in its own write */
    raw_send_all(sock, frame, 1, fds, nfds);
    for (size_t i = 1; i < 8 + len; i++) {
        if (delay_us > 0)
            usleep((useconds_t)delay_us);
        CHECK_EQ(write(sock, frame + i, 1), 1);
    }
}

static void *slow_writer_main(void *arg)
{
    const slow_writer *w = arg;
    slow_frame(w->sock, "first message", w->fds, w->nfds, w->delay_us);
    slow_frame(w->sock, "second", NULL, 0, w->delay_us);
    slow_frame(w->sock, "3rd", w->fds + 1, 1, w->delay_us);
    return NULL;
}

static int64_t recv_waiting(int sock, void *buf, size_t cap, intptr_t *fds, int32_t maxfds,
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

static void one_byte_run(int nonblocking, int delay_us)
{
    int sv[2], files[3];
    make_pair(SOCK_STREAM, sv);
    make_fds(files, 3);
    set_nonblock(sv[1], nonblocking);
    int base = fd_count();
    slow_writer w = {sv[0], files, 3, delay_us};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, slow_writer_main, &w) == 0);
    char buf[64];
    intptr_t got[8];
    int32_t n = -1;
    CHECK_EQ(recv_waiting(sv[1], buf, sizeof buf, got, 8, &n), 13);
    CHECK(memcmp(buf, "first message", 13) == 0);
    check_and_close(got, n, files, 3);
    CHECK_EQ(recv_waiting(sv[1], buf, sizeof buf, got, 8, &n), 6);
    CHECK(memcmp(buf, "second", 6) == 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(recv_waiting(sv[1], buf, sizeof buf, got, 8, &n), 3);
    CHECK(memcmp(buf, "3rd", 3) == 0);
    check_and_close(got, n, files + 1, 1);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(fd_count(), base);
    close_all(files, 3);
    close(sv[0]);
    close(sv[1]);
}

static void case_one_byte_at_a_time(void)
{
    one_byte_run(0, 0);    /* all fragments queued: the receiver reads across them */
    one_byte_run(0, 300);  /* blocking receiver that waits inside a frame */
    one_byte_run(1, 300);  /* non-blocking receiver: polls inside a frame */
}

/* ---- back_to_back: several frames in one write; frames queued before any read ------- */

static void case_back_to_back(void)
{
    int sv[2], files[2];
    make_pair(SOCK_STREAM, sv);
    make_fds(files, 2);
    int base = fd_count();
    unsigned char w[64];
    /* frame 1 ("ab", 2 fds) and frame 2 ("cde", none) in ONE write, fds on its first byte */
    put_header(w, 1, 0, 2, 2);
    memcpy(w + 8, "ab", 2);
    put_header(w + 10, 1, 0, 0, 3);
    memcpy(w + 18, "cde", 3);
    raw_send_all(sv[0], w, 21, files, 2);
    /* then frame 3 (no fds) and frame 4 (1 fd) as separate writes, all queued before any
     * read: a receiver that read more than a header would get frame 4's fd with frame 3 */
    CHECK_EQ(fdsend_msg_send(sv[0], "f3", 2, NULL, 0, 0), FDSEND_OK);
    {
        intptr_t one = files[1];
        CHECK_EQ(fdsend_msg_send(sv[0], "frame4", 6, &one, 1, 0), FDSEND_OK);
    }
    char buf[32];
    intptr_t got[4];
    int32_t n = -1;
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 2);
    CHECK(memcmp(buf, "ab", 2) == 0);
    check_and_close(got, n, files, 2);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 3);
    CHECK(memcmp(buf, "cde", 3) == 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 2);
    CHECK(memcmp(buf, "f3", 2) == 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 6);
    CHECK(memcmp(buf, "frame4", 6) == 0);
    check_and_close(got, n, files + 1, 1);
    CHECK_EQ(pending(sv[1]), 0);
    CHECK_EQ(fd_count(), base);
    close_all(files, 2);
    close(sv[0]);
    close(sv[1]);
}

/* ---- malformed frames on a stream socket --------------------------------------------- */

/* Run one bad-peer scenario on a fresh stream pair: write() sends what the peer sends
 * (it may close its end), then the receiver must get `expect`, every descriptor the peer
 * sent closed. If `then_ok`, a good frame follows and must arrive intact (in sync). */
typedef void (*bad_writer)(int sock, const int *fds);

static void stream_bad(const char *what, bad_writer write_fn, int64_t expect, int then_ok,
                       size_t cap, int32_t maxfds)
{
    int sv[2], files[4];
    make_pair(SOCK_STREAM, sv);
    make_fds(files, 4);
    int base = fd_count();
    write_fn(sv[0], files);
    if (then_ok)
        CHECK_EQ(fdsend_msg_send(sv[0], "ok", 2, NULL, 0, 0), FDSEND_OK);
    close_all(files, 4); /* only in-flight copies remain: the receiver must close them */
    base -= 4;
    unsigned char *buf = malloc(cap + 1);
    CHECK(buf != NULL);
    intptr_t got[8];
    int32_t n = 77;
    int64_t r = fdsend_msg_recv(sv[1], buf, cap, got, maxfds, &n, 0);
    if (r != expect) {
        fprintf(stderr, "case %s\n", what);
        CHECK_EQ(r, expect);
    }
    CHECK_EQ(n, 0);
    CHECK_EQ(fd_count(), base);
    if (then_ok) {
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, cap, got, maxfds, &n, 0), 2);
        CHECK(memcmp(buf, "ok", 2) == 0);
        CHECK_EQ(n, 0);
    }
    free(buf);
    close(sv[0]);
    close(sv[1]);
    CHECK_EQ(fd_count(), base - 2);
}

static void w_bad_version(int s, const int *fds)
{
    unsigned char h[12];
    put_header(h, 2, 0, 2, 4);
    memcpy(h + 8, "abcd", 4);
    raw_send_all(s, h, 12, fds, 2);
}

static void w_fdpass_byte(int s, const int *fds)
{
    /* what IO::FDPass / plain fdsend_send put on the wire: one zero byte with the fd */
    unsigned char z = 0;
    raw_send_all(s, &z, 1, fds, 1);
    shutdown(s, SHUT_WR);
}

static void w_fdpass_byte_open(int s, const int *fds)
{
    /* the same byte, and the peer stays connected: the receiver must not wait for the 7
     * header bytes that will never come (judge the version byte at once) */
    unsigned char z = 0;
    raw_send_all(s, &z, 1, fds, 1);
}

static void w_bad_flags(int s, const int *fds)
{
    unsigned char h[8];
    put_header(h, 1, 0x80, 1, 0);
    raw_send_all(s, h, 8, fds, 1);
}

static void w_more_fds_than_header(int s, const int *fds)
{
    unsigned char h[9];
    put_header(h, 1, 0, 2, 1);
    h[8] = 'x';
    raw_send_all(s, h, 9, fds, 3);
}

static void w_fewer_fds_than_header(int s, const int *fds)
{
    unsigned char h[9];
    put_header(h, 1, 0, 2, 1);
    h[8] = 'x';
    raw_send_all(s, h, 9, fds, 1);
}

static void w_fds_but_header_says_none(int s, const int *fds)
{
    unsigned char h[9];
    put_header(h, 1, 0, 0, 1);
    h[8] = 'x';
    raw_send_all(s, h, 9, fds, 1);
}

static void w_count_over_max(int s, const int *fds)
{
    unsigned char h[8];
    (void)fds;
    put_header(h, 1, 0, FDSEND_MAX_FDS + 1, 0);
    raw_send_all(s, h, 8, NULL, 0);
}

static void w_fds_on_payload_byte(int s, const int *fds)
{
    unsigned char h[8];
    put_header(h, 1, 0, 0, 4);
    raw_send_all(s, h, 8, NULL, 0);
    raw_send_all(s, "ab", 2, NULL, 0);
    raw_send_all(s, "cd", 2, fds, 2); /* the fds ride on payload byte 2 */
}

static void w_over_cap(int s, const int *fds)
{
    static unsigned char payload[100000];
    intptr_t f[3];
    to_intptr(fds, f, 3);
    fill_pattern(payload, sizeof payload, 5);
    /* larger than the socket buffer: sent from a child while the receiver discards it */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int rc = fdsend_msg_send(s, payload, sizeof payload, f, 3, 0);
        rc = rc == FDSEND_OK ? fdsend_msg_send(s, "next", 4, NULL, 0, 0) : rc;
        _exit(rc == FDSEND_OK ? 0 : 1);
    }
    /* the parent's stream_bad sends "next" too: make the child's the only one */
}

static void w_too_many_fds(int s, const int *fds)
{
    intptr_t f[4];
    to_intptr(fds, f, 4);
    CHECK_EQ(fdsend_msg_send(s, "four", 4, f, 4, 0), FDSEND_OK);
}

static void w_eof_in_header(int s, const int *fds)
{
    unsigned char h[8];
    put_header(h, 1, 0, 1, 10);
    raw_send_all(s, h, 5, fds, 1);
    shutdown(s, SHUT_WR);
}

static void w_eof_before_payload(int s, const int *fds)
{
    unsigned char h[8];
    put_header(h, 1, 0, 2, 10);
    raw_send_all(s, h, 8, fds, 2);
    shutdown(s, SHUT_WR);
}

static void w_eof_in_payload(int s, const int *fds)
{
    unsigned char h[12];
    put_header(h, 1, 0, 2, 10);
    memcpy(h + 8, "abcd", 4);
    raw_send_all(s, h, 12, fds, 2);
    shutdown(s, SHUT_WR);
}

static void w_eof_at_boundary(int s, const int *fds)
{
    (void)fds;
    shutdown(s, SHUT_WR);
}

static void case_malformed_stream(void)
{
    stream_bad("bad version", w_bad_version, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("IO::FDPass byte", w_fdpass_byte, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("IO::FDPass byte, peer still connected", w_fdpass_byte_open, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("bad flags", w_bad_flags, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("more fds than header", w_more_fds_than_header, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("fewer fds than header", w_fewer_fds_than_header, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("fds, header says 0", w_fds_but_header_says_none, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("fd count > 253", w_count_over_max, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("fds on a payload byte", w_fds_on_payload_byte, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("too many fds for maxfds", w_too_many_fds, FDSEND_ETOOMANYFDS, 1, 64, 3);
    stream_bad("too many fds, maxfds 0", w_too_many_fds, FDSEND_ETOOMANYFDS, 1, 64, 0);
    stream_bad("over cap (small cap)", w_too_many_fds, FDSEND_EMSGSIZE, 1, 3, 8);
    stream_bad("EOF inside the header", w_eof_in_header, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("EOF before the payload", w_eof_before_payload, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("EOF inside the payload", w_eof_in_payload, FDSEND_EPROTO, 0, 64, 8);
    stream_bad("EOF at a boundary", w_eof_at_boundary, FDSEND_EOF, 0, 64, 8);

    /* A payload larger than cap and than the socket buffer: discarded as it arrives, its
     * fds closed, and the next frame is intact. */
    {
        int sv[2], files[3];
        make_pair(SOCK_STREAM, sv);
        make_fds(files, 3);
        int base = fd_count();
        w_over_cap(sv[0], files);
        for (int cap = 0; cap <= 1; cap++) {
            /* cap 16 discards through a small buffer; the second round checks "next" */
            unsigned char buf[16];
            intptr_t got[4];
            int32_t n = 5;
            if (cap == 0) {
                CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0),
                         FDSEND_EMSGSIZE);
            } else {
                CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 4);
                CHECK(memcmp(buf, "next", 4) == 0);
            }
            CHECK_EQ(n, 0);
        }
        int status = -1;
        CHECK(wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK_EQ(fd_count(), base);
        close_all(files, 3);
        close(sv[0]);
        close(sv[1]);
    }
    /* The same with a large cap too small for the payload (discarding through buf). */
    {
        int sv[2], files[3];
        make_pair(SOCK_STREAM, sv);
        make_fds(files, 3);
        int base = fd_count();
        w_over_cap(sv[0], files);
        unsigned char *buf = malloc(65536);
        intptr_t got[4];
        int32_t n = 5;
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, 65536, got, 4, &n, 0), FDSEND_EMSGSIZE);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, 65536, got, 4, &n, 0), 4);
        CHECK(memcmp(buf, "next", 4) == 0);
        free(buf);
        int status = -1;
        CHECK(wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK_EQ(fd_count(), base);
        close_all(files, 3);
        close(sv[0]);
        close(sv[1]);
    }
    /* EOF at a boundary after good frames, reported again on every later call. */
    {
        int sv[2];
        char buf[8];
        int32_t n;
        make_pair(SOCK_STREAM, sv);
        CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, NULL, 0, 0), FDSEND_OK);
        close(sv[0]);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 0, &n, 0), 1);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 0, &n, 0), FDSEND_EOF);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 0, &n, 0), FDSEND_EOF);
        close(sv[1]);
    }
}

/* Descriptors that arrive with a later header byte than the first: the receiver has read
 * header bytes 0-2 and is waiting for the rest when bytes 3-7 come with descriptors.
 * Whether the header counts them (1) or not (0), they break the format. */
typedef struct late_fds {
    int sock, peer;
    const int *fds;
    unsigned declared;
} late_fds;

static void *late_fds_writer(void *arg)
{
    const late_fds *l = arg;
    unsigned char h[8];
    put_header(h, 1, 0, l->declared, 0);
    raw_send_all(l->sock, h, 3, NULL, 0);
    while (pending(l->peer) > 0) /* wait until the receiver has consumed them */
        sleep_ms(1);
    sleep_ms(5); /* and is back in recvmsg for the rest */
    raw_send_all(l->sock, h + 3, 5, l->fds, 1);
    return NULL;
}

static void late_fds_run(unsigned declared)
{
    int sv[2], files[1];
    make_pair(SOCK_STREAM, sv);
    make_fds(files, 1);
    int base = fd_count();
    late_fds l = {sv[0], sv[1], files, declared};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, late_fds_writer, &l) == 0);
    char buf[8];
    intptr_t got[2];
    int32_t n = 3;
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 2, &n, 0), FDSEND_EPROTO);
    CHECK_EQ(n, 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(fd_count(), base);
    close_all(files, 1);
    close(sv[0]);
    close(sv[1]);
}

static void case_late_fds(void)
{
    late_fds_run(0);
    late_fds_run(1);
}

/* ---- malformed frames on seqpacket and datagram sockets (each datagram stands alone) -- */

static void datagram_bad(int type, const char *what, const void *data, size_t len,
                         int nfds, int64_t expect, size_t cap, int32_t maxfds)
{
    int sv[2], files[4];
    make_pair(type, sv);
    make_fds(files, 4);
    ssize_t sent = raw_send(sv[0], data, len, files, nfds);
    CHECK_EQ(sent, (ssize_t)len);
    CHECK_EQ(fdsend_msg_send(sv[0], "next", 4, NULL, 0, 0), FDSEND_OK);
    close_all(files, 4);
    int base = fd_count();
    unsigned char buf[256];
    intptr_t got[8];
    int32_t n = 9;
    int64_t r = fdsend_msg_recv(sv[1], buf, cap, got, maxfds, &n, 0);
    if (r != expect) {
        fprintf(stderr, "case %s (%s)\n", what, type == SOCK_DGRAM ? "dgram" : "seqpacket");
        CHECK_EQ(r, expect);
    }
    CHECK_EQ(n, 0);
    CHECK_EQ(fd_count(), base);
    /* the next datagram is a good frame, unaffected */
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 8, &n, 0), 4);
    CHECK(memcmp(buf, "next", 4) == 0);
    close(sv[0]);
    close(sv[1]);
}

static void malformed_datagram(int type)
{
    unsigned char f[32];
    memset(f, 'z', sizeof f);
    datagram_bad(type, "5-byte datagram", "\x01\x00\x00\x00\x00", 5, 1, FDSEND_EPROTO, 64, 8);
    put_header(f, 2, 0, 1, 2);
    memcpy(f + 8, "ab", 2);
    datagram_bad(type, "bad version", f, 10, 1, FDSEND_EPROTO, 64, 8);
    put_header(f, 1, 1, 1, 2);
    datagram_bad(type, "bad flags", f, 10, 1, FDSEND_EPROTO, 64, 8);
    put_header(f, 1, 0, 1, 5);
    datagram_bad(type, "shorter than its header says", f, 10, 1, FDSEND_EPROTO, 64, 8);
    put_header(f, 1, 0, 1, 1);
    datagram_bad(type, "longer than its header says", f, 10, 1, FDSEND_EPROTO, 64, 8);
    put_header(f, 1, 0, 1, 1);
    datagram_bad(type, "longer than header and cap", f, 12, 1, FDSEND_EPROTO, 1, 8);
    put_header(f, 1, 0, 3, 2);
    datagram_bad(type, "fd count mismatch", f, 10, 2, FDSEND_EPROTO, 64, 8);
    put_header(f, 1, 0, 0, 2);
    datagram_bad(type, "fds, header says 0", f, 10, 2, FDSEND_EPROTO, 64, 8);
    put_header(f, 1, 0, 2, 10);
    datagram_bad(type, "over cap", f, 18, 2, FDSEND_EMSGSIZE, 4, 8);
    put_header(f, 1, 0, 2, 10);
    datagram_bad(type, "over cap 0", f, 18, 2, FDSEND_EMSGSIZE, 0, 8);
    put_header(f, 1, 0, 3, 2);
    datagram_bad(type, "too many fds", f, 10, 3, FDSEND_ETOOMANYFDS, 64, 2);
    if (type == SOCK_DGRAM)
        datagram_bad(type, "empty datagram", "", 0, 0, FDSEND_EPROTO, 64, 8);
    else
        datagram_bad(type, "empty message with fds", "", 0, 2, FDSEND_EPROTO, 64, 8);
}

static void case_malformed_seqpacket(void)
{
    malformed_datagram(SOCK_SEQPACKET);
    /* end of connection */
    int sv[2];
    char buf[8];
    int32_t n;
    make_pair(SOCK_SEQPACKET, sv);
    close(sv[0]);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 0, &n, 0), FDSEND_EOF);
    close(sv[1]);
}

static void case_malformed_dgram(void)
{
    malformed_datagram(SOCK_DGRAM);
}

/* ---- ctrunc: the receiver is at RLIMIT_NOFILE, the kernel drops descriptors ---------- */

static void ctrunc_run(int type)
{
    int sv[2], files[10];
    intptr_t fds[10];
    if (!try_pair(type, sv))
        return;
    make_fds(files, 10);
    to_intptr(files, fds, 10);
    CHECK_EQ(fdsend_msg_send(sv[0], "ten", 3, fds, 10, 0), FDSEND_OK);
    CHECK_EQ(fdsend_msg_send(sv[0], "after", 5, fds, 1, 0), FDSEND_OK);
    close_all(files, 10);
    /* Leave room for 3 new descriptors only: fill every free slot below the highest open
     * descriptor, then set the limit 3 above it. */
    int highest = 0, fillers[1024], nfill = 0;
    for (int fd = 0; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) != -1)
            highest = fd;
    }
    for (int fd = 0; fd < highest; fd++) {
        if (fcntl(fd, F_GETFD) == -1) {
            CHECK(dup2(sv[0], fd) == fd);
            fillers[nfill++] = fd;
        }
    }
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    lim = old;
    lim.rlim_cur = (rlim_t)highest + 4;
    CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0);
    int base = fd_count();
    char buf[16];
    intptr_t got[16];
    int32_t n = 4;
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 16, &n, 0), FDSEND_EMFILE);
    CHECK_EQ(n, 0);
    CHECK_EQ(fd_count(), base);
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    /* the channel is still in sync */
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 16, &n, 0), 5);
    CHECK(memcmp(buf, "after", 5) == 0);
    CHECK_EQ(n, 1);
    close((int)got[0]);
    CHECK_EQ(fd_count(), base);
    close_all(fillers, nfill);
    close(sv[0]);
    close(sv[1]);
}

static void case_ctrunc(void)
{
    ctrunc_run(SOCK_STREAM);
    ctrunc_run(SOCK_SEQPACKET);
    ctrunc_run(SOCK_DGRAM);
}

/* ---- threads: concurrent senders and receivers on one stream socket ------------------- */

#define T_SENDERS 6
#define T_RECEIVERS 2
#define T_MESSAGES 250
#define T_MAXLEN 150000

typedef struct t_shared {
    int send_sock, recv_sock;
    int nonblocking;
    int fds[T_SENDERS][3];
    pthread_mutex_t mu;
    unsigned char seen[T_SENDERS][T_MESSAGES];
    int received;
} t_shared;

typedef struct t_sender {
    t_shared *sh;
    int id;
} t_sender;

static size_t t_len(int id, int seq)
{
    uint32_t x = (uint32_t)(id * 7919 + seq * 104729) * 2654435761u;
    size_t len = (x >> 8) % T_MAXLEN;
    return len < 8 ? 8 : len;
}

static void *t_send_main(void *arg)
{
    const t_sender *me = arg;
    t_shared *sh = me->sh;
    unsigned char *buf = malloc(T_MAXLEN);
    CHECK(buf != NULL);
    for (int seq = 0; seq < T_MESSAGES; seq++) {
        size_t len = t_len(me->id, seq);
        int nfds = seq % 4;
        intptr_t fds[3];
        fill_pattern(buf, len, (unsigned)(me->id * 100000 + seq));
        buf[0] = (unsigned char)me->id;
        buf[1] = (unsigned char)(seq & 0xff);
        buf[2] = (unsigned char)(seq >> 8);
        for (int i = 0; i < nfds; i++)
            fds[i] = sh->fds[me->id][i];
        for (;;) {
            int32_t rc = fdsend_msg_send(sh->send_sock, buf, len, fds, nfds, 0);
            if (rc == FDSEND_OK)
                break;
            CHECK(sh->nonblocking && rc == FDSEND_EAGAIN);
            struct pollfd p = {sh->send_sock, POLLOUT, 0};
            poll(&p, 1, 1);
            sched_yield(); /* writable, but another thread may be inside a frame */
        }
    }
    free(buf);
    return NULL;
}

static void *t_recv_main(void *arg)
{
    t_shared *sh = arg;
    unsigned char *buf = malloc(T_MAXLEN);
    CHECK(buf != NULL);
    for (;;) {
        intptr_t got[8];
        int32_t n = -1;
        int64_t r = fdsend_msg_recv(sh->recv_sock, buf, T_MAXLEN, got, 8, &n, 0);
        if (r == FDSEND_EOF)
            break;
        if (r == FDSEND_EAGAIN && sh->nonblocking) {
            struct pollfd p = {sh->recv_sock, POLLIN, 0};
            poll(&p, 1, 1);
            sched_yield();
            continue;
        }
        CHECK(r >= 8);
        int id = buf[0], seq = buf[1] | buf[2] << 8;
        CHECK(id < T_SENDERS && seq < T_MESSAGES);
        CHECK_EQ(r, (int64_t)t_len(id, seq));
        {
            unsigned char *want = malloc((size_t)r);
            CHECK(want != NULL);
            fill_pattern(want, (size_t)r, (unsigned)(id * 100000 + seq));
            CHECK(memcmp(want + 3, buf + 3, (size_t)r - 3) == 0);
            free(want);
        }
        check_and_close(got, n, sh->fds[id], seq % 4);
        pthread_mutex_lock(&sh->mu);
        CHECK(sh->seen[id][seq] == 0);
        sh->seen[id][seq] = 1;
        sh->received++;
        pthread_mutex_unlock(&sh->mu);
    }
    free(buf);
    return NULL;
}

static void threads_run(int nonblocking)
{
    static t_shared sh;
    int sv[2];
    memset(&sh, 0, sizeof sh);
    make_pair(SOCK_STREAM, sv);
    sh.send_sock = sv[0];
    sh.recv_sock = sv[1];
    sh.nonblocking = nonblocking;
    set_nonblock(sv[0], nonblocking);
    set_nonblock(sv[1], nonblocking);
    pthread_mutex_init(&sh.mu, NULL);
    for (int i = 0; i < T_SENDERS; i++)
        make_fds(sh.fds[i], 3);
    int base = fd_count();
    pthread_t s[T_SENDERS], r[T_RECEIVERS];
    t_sender args[T_SENDERS];
    for (int i = 0; i < T_RECEIVERS; i++)
        CHECK(pthread_create(&r[i], NULL, t_recv_main, &sh) == 0);
    for (int i = 0; i < T_SENDERS; i++) {
        args[i].sh = &sh;
        args[i].id = i;
        CHECK(pthread_create(&s[i], NULL, t_send_main, &args[i]) == 0);
    }
    for (int i = 0; i < T_SENDERS; i++)
        CHECK(pthread_join(s[i], NULL) == 0);
    shutdown(sv[0], SHUT_WR); /* receivers see FDSEND_EOF at the last boundary */
    for (int i = 0; i < T_RECEIVERS; i++)
        CHECK(pthread_join(r[i], NULL) == 0);
    CHECK_EQ(sh.received, T_SENDERS * T_MESSAGES);
    CHECK_EQ(fd_count(), base);
    for (int i = 0; i < T_SENDERS; i++)
        close_all(sh.fds[i], 3);
    close(sv[0]);
    close(sv[1]);
}

static void case_threads(void)
{
    threads_run(0);
}

static void case_threads_nonblocking(void)
{
    threads_run(1);
}

/* ---- eagain: non-blocking sockets and FDSEND_DONTWAIT ------------------------------- */

typedef struct big_sender {
    int sock;
    size_t len;
    int32_t rc;
} big_sender;

static void *big_send_main(void *arg)
{
    big_sender *b = arg;
    unsigned char *p = malloc(b->len);
    CHECK(p != NULL);
    fill_pattern(p, b->len, 99);
    b->rc = fdsend_msg_send(b->sock, p, b->len, NULL, 0, 0);
    free(p);
    return NULL;
}

typedef struct half_receiver {
    int sock;
    int64_t r;
    char buf[16];
} half_receiver;

static void *half_recv_main(void *arg)
{
    half_receiver *rx = arg;
    int32_t n = -1;
    rx->r = fdsend_msg_recv(rx->sock, rx->buf, sizeof rx->buf, NULL, 0, &n, 0);
    return NULL;
}

static void case_eagain(void)
{
    int sv[2], files[1];
    intptr_t one;
    make_pair(SOCK_STREAM, sv);
    make_fds(files, 1);
    one = files[0];
    int base = fd_count();
    char buf[16384];
    intptr_t got[4];
    int32_t n = 7;

    /* Nothing to read: EAGAIN from a non-blocking socket and from FDSEND_DONTWAIT. */
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    set_nonblock(sv[0], 1);
    set_nonblock(sv[1], 1);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), FDSEND_EAGAIN);
    CHECK_EQ(n, 0);

    /* Fill the socket with 10000-byte frames (each fits one kernel buffer, so each is
     * sent whole or not at all) until EAGAIN: that one sent nothing, not even its fd. */
    int sent = 0;
    unsigned char frame[10000];
    for (;;) {
        fill_pattern(frame, sizeof frame, (unsigned)sent);
        int32_t rc = fdsend_msg_send(sv[0], frame, sizeof frame, &one, 1, 0);
        if (rc == FDSEND_EAGAIN)
            break;
        CHECK_EQ(rc, FDSEND_OK);
        sent++;
        CHECK(sent < 100000);
    }
    CHECK(sent > 0);
    CHECK_EQ(fdsend_msg_send(sv[0], frame, sizeof frame, &one, 1, 0), FDSEND_EAGAIN);
    for (int i = 0; i < sent; i++) {
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 10000);
        CHECK(check_pattern((unsigned char *)buf, 10000, (unsigned)i));
        check_and_close(got, n, files, 1);
    }
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), FDSEND_EAGAIN);
    CHECK_EQ(pending(sv[1]), 0);
    CHECK_EQ(fd_count(), base);

    /* Another thread is inside a frame (a 1 MiB send nobody reads yet): a DONTWAIT send
     * on the same socket returns EAGAIN at once and sends nothing. */
    set_nonblock(sv[0], 0);
    big_sender b = {sv[0], 1 << 20, 1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, big_send_main, &b) == 0);
    while (pending(sv[1]) == 0)
        sleep_ms(1);
    sleep_ms(10);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, &one, 1, FDSEND_DONTWAIT), FDSEND_EAGAIN);
    {
        unsigned char *big = malloc(1 << 20);
        CHECK(big != NULL);
        CHECK_EQ(recv_waiting(sv[1], big, 1 << 20, got, 4, &n), 1 << 20);
        CHECK(check_pattern(big, 1 << 20, 99));
        CHECK_EQ(n, 0);
        free(big);
    }
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(b.rc, FDSEND_OK);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), FDSEND_EAGAIN);

    /* Another thread is inside a received frame (its peer stalls mid-payload): a
     * non-blocking receive on the same socket returns EAGAIN and consumes nothing. */
    {
        unsigned char h[12];
        put_header(h, 1, 0, 0, 8);
        memcpy(h + 8, "half", 4);
        raw_send_all(sv[0], h, 12, NULL, 0);
        set_nonblock(sv[1], 0);
        half_receiver rx = {sv[1], 0, {0}};
        pthread_t rt;
        CHECK(pthread_create(&rt, NULL, half_recv_main, &rx) == 0);
        while (pending(sv[1]) > 0) /* the thread has consumed the first 12 bytes */
            sleep_ms(1);
        sleep_ms(10);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, FDSEND_DONTWAIT),
                 FDSEND_EAGAIN);
        set_nonblock(sv[1], 1);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), FDSEND_EAGAIN);
        raw_send_all(sv[0], "more", 4, NULL, 0);
        CHECK(pthread_join(rt, NULL) == 0);
        CHECK_EQ(rx.r, 8);
        CHECK(memcmp(rx.buf, "halfmore", 8) == 0);
    }
    CHECK_EQ(fd_count(), base);
    close_all(files, 1);
    close(sv[0]);
    close(sv[1]);
}

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
    if (!try_pair(type, sv))
        return;
    int base = fd_count();
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
        CHECK(same_file((int)got[0], mine)); /* our own pipe came back */
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
    CHECK_EQ(fd_count(), base - 2);
}

static void case_fork(void)
{
    fork_run(SOCK_STREAM);
    fork_run(SOCK_SEQPACKET);
}

/* A thread of the parent is inside a frame when another thread forks: the child (whose
 * only thread holds no frame) must not inherit the "busy" mark: a socket it opens on the
 * same descriptor number must work at once. */
static void case_fork_while_busy(void)
{
    int sv[2];
    make_pair(SOCK_STREAM, sv);
    big_sender b = {sv[0], 1 << 20, 1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, big_send_main, &b) == 0);
    while (pending(sv[1]) == 0)
        sleep_ms(1);
    sleep_ms(10); /* the thread is now waiting, inside its frame, for the reader */
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

/* ---- python_peer: an independent implementation of docs/wire-format.md --------------- */

static int case_python_peer(const char *script)
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
    make_pair(SOCK_STREAM, sv);
    int base = fd_count();
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
    CHECK_EQ(fd_count(), base - 2);
    return 0;
}

/* ---- args: every bad argument is refused, nothing sent, nothing leaked --------------- */

static void case_args(void)
{
    int sv[2], files[1], p[2];
    make_pair(SOCK_STREAM, sv);
    make_fds(files, 1);
    CHECK(pipe(p) == 0);
    intptr_t one = files[0], bad = -1, many[FDSEND_MAX_FDS + 1];
    for (int i = 0; i <= FDSEND_MAX_FDS; i++)
        many[i] = files[0];
    char buf[8];
    intptr_t got[2];
    int32_t n = 5;
    int base = fd_count();

    CHECK_EQ(fdsend_msg_send(-1, "x", 1, NULL, 0, 0), FDSEND_EBADF);
    CHECK_EQ(fdsend_msg_send(sv[0], NULL, 1, NULL, 0, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, NULL, 1, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, &one, -1, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, NULL, 0, 0x100), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, many, FDSEND_MAX_FDS + 1, 0),
             FDSEND_ETOOMANYFDS);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, &bad, 1, 0), FDSEND_EBADF);
#if SIZE_MAX > 0xFFFFFFFFu
    CHECK_EQ(fdsend_msg_send(sv[0], "x", (size_t)FDSEND_MSG_MAX_PAYLOAD + 1, NULL, 0, 0),
             FDSEND_EMSGSIZE);
#endif
    CHECK_EQ(fdsend_msg_send(p[1], "x", 1, NULL, 0, 0), FDSEND_ENOTSOCK);
    CHECK_EQ(pending(sv[1]), 0);

    CHECK_EQ(fdsend_msg_recv(-1, buf, sizeof buf, got, 2, &n, 0), FDSEND_EBADF);
    CHECK_EQ(n, 0);
    CHECK_EQ(fdsend_msg_recv(sv[1], NULL, 1, got, 2, &n, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, NULL, 2, &n, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 2, NULL, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, -1, &n, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 2, &n, 0x100), FDSEND_EINVAL);
    CHECK_EQ(fdsend_msg_recv(p[0], buf, sizeof buf, got, 2, &n, 0), FDSEND_ENOTSOCK);

    /* NULL buffers with zero sizes are fine: an empty message with one descriptor */
    CHECK_EQ(fdsend_msg_send(sv[0], NULL, 0, &one, 1, 0), FDSEND_OK);
    CHECK_EQ(fdsend_msg_recv(sv[1], NULL, 0, got, 2, &n, 0), 0);
    check_and_close(got, n, files, 1);

    /* The peer closed: FDSEND_EPIPE, and no SIGPIPE (its default action would kill us). */
    signal(SIGPIPE, SIG_DFL);
    close(sv[1]);
    CHECK_EQ(fdsend_msg_send(sv[0], "x", 1, &one, 1, 0), FDSEND_EPIPE);

    /* Descriptors over TCP: FDSEND_ENOTUNIX. */
    {
        int l = cloexec_socket(AF_INET, SOCK_STREAM);
        struct sockaddr_in a;
        socklen_t al = sizeof a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (l >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0 &&
            getsockname(l, (struct sockaddr *)&a, &al) == 0) {
            int c = cloexec_socket(AF_INET, SOCK_STREAM);
            CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
            int acc = accept(l, NULL, NULL);
            CHECK(acc >= 0);
            CHECK_EQ(fdsend_msg_send(c, "x", 1, &one, 1, 0), FDSEND_ENOTUNIX);
            CHECK_EQ(pending(acc), 0); /* nothing was sent */
            /* without descriptors the framing works over any stream */
            CHECK_EQ(fdsend_msg_send(c, "tcp", 3, NULL, 0, 0), FDSEND_OK);
            CHECK_EQ(fdsend_msg_recv(acc, buf, sizeof buf, got, 2, &n, 0), 3);
            CHECK(memcmp(buf, "tcp", 3) == 0 && n == 0);
            close(acc);
            close(c);
        } else {
            printf("note: no IPv4 loopback here, FDSEND_ENOTUNIX not checked\n");
        }
        if (l >= 0)
            close(l);
    }
    CHECK(strstr(fdsend_strerror(FDSEND_EOF), "boundary") != NULL);
    CHECK_EQ(fd_count(), base - 1);
    close_all(files, 1);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
}

/* ---- passcred: credentials and pidfds the kernel adds to every read ------------------- */

/* A receiver with SO_PASSCRED (and SO_PASSPIDFD, Linux >= 6.5, which installs a pidfd of
 * the sender with EVERY read) still gets every message whole, and no pidfd leaks. */
static void case_passcred(void)
{
#ifndef SO_PASSCRED
    printf("SKIPPED: SO_PASSCRED is Linux's; this system adds no credentials to every read\n");
    exit(SKIP_CODE);
#else
    int types[3] = {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM};
    for (int t = 0; t < 3; t++) {
        int sv[2], files[2], one = 1;
        if (!try_pair(types[t], sv))
            continue;
        make_fds(files, 2);
        CHECK(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
#ifdef __linux__
        if (setsockopt(sv[1], SOL_SOCKET, 76 /* SO_PASSPIDFD */, &one, sizeof one) != 0 &&
            t == 0)
            printf("note: SO_PASSPIDFD not supported by this kernel\n");
#endif
        int base = fd_count();
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
        CHECK_EQ(fd_count(), base);
        close_all(files, 2);
        close(sv[0]);
        close(sv[1]);
    }
#endif /* SO_PASSCRED */
}

/* ---- timeouts: SO_RCVTIMEO / SO_SNDTIMEO bound every wait ------------------------------ */

static void set_timeout_ms(int fd, int opt, int ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    CHECK(setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv) == 0);
}

static double mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

static void case_timeouts(void)
{
    int files[1];
    intptr_t one, got[4];
    unsigned char buf[64];
    int32_t n = 7;
    make_fds(files, 1);
    one = files[0];
    int base = fd_count();

    /* Before a frame starts: FDSEND_ETIMEDOUT, nothing consumed, and the channel stays in
     * sync (stream, seqpacket, datagram). */
    int types[3] = {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM};
    for (int t = 0; t < 3; t++) {
        int sv[2];
        if (!try_pair(types[t], sv))
            continue;
        set_timeout_ms(sv[1], SO_RCVTIMEO, 100);
        double start = mono_ms();
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), FDSEND_ETIMEDOUT);
        CHECK(mono_ms() - start >= 90);
        CHECK_EQ(n, 0);
        CHECK_EQ(fdsend_msg_send(sv[0], "in sync", 7, &one, 1, 0), FDSEND_OK);
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), 7);
        CHECK(memcmp(buf, "in sync", 7) == 0);
        check_and_close(got, n, files, 1);
        close(sv[0]);
        close(sv[1]);
    }

    /* A peer that stops inside its frame (header and 4 of 10 payload bytes, its fds
     * attached) no longer holds the receiver forever: FDSEND_EPROTO after about the
     * timeout (blocking socket: the kernel's wait; non-blocking: the library's poll), the
     * frame's fds closed. */
    for (int nonblocking = 0; nonblocking <= 1; nonblocking++) {
        int sv[2];
        unsigned char h[12];
        make_pair(SOCK_STREAM, sv);
        set_nonblock(sv[1], nonblocking);
        set_timeout_ms(sv[1], SO_RCVTIMEO, 150);
        put_header(h, 1, 0, 1, 10);
        memcpy(h + 8, "abcd", 4);
        raw_send_all(sv[0], h, 12, files, 1);
        double start = mono_ms();
        CHECK_EQ(fdsend_msg_recv(sv[1], buf, sizeof buf, got, 4, &n, 0), FDSEND_EPROTO);
        CHECK(mono_ms() - start >= 140);
        CHECK_EQ(fdsend_last_os_error(), ETIMEDOUT);
        CHECK_EQ(n, 0);
        CHECK_EQ(fd_count(), base + 2); /* only the pair: the frame's fd was closed */
        close(sv[0]);
        close(sv[1]);
    }

    /* A sender whose peer stops reading inside a large frame: FDSEND_ETIMEDOUT after
     * SO_SNDTIMEO, on a blocking and on a non-blocking socket. */
    for (int nonblocking = 0; nonblocking <= 1; nonblocking++) {
        int sv[2];
        size_t big = 4u << 20;
        unsigned char *frame = calloc(big, 1);
        CHECK(frame != NULL);
        make_pair(SOCK_STREAM, sv);
        set_nonblock(sv[0], nonblocking);
        set_timeout_ms(sv[0], SO_SNDTIMEO, 150);
        double start = mono_ms();
        CHECK_EQ(fdsend_msg_send(sv[0], frame, big, &one, 1, 0), FDSEND_ETIMEDOUT);
        CHECK(mono_ms() - start >= 140);
        CHECK(pending(sv[1]) > 0); /* part of the frame went: the stream is to be closed */
        free(frame);
        close(sv[0]);
        close(sv[1]);
    }
    CHECK_EQ(fd_count(), base);
    close(files[0]);
}

/* ---- main ------------------------------------------------------------------------- */

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

static const test_case cases[] = {
    {"wire_bytes", case_wire_bytes},
    {"roundtrip_stream", case_roundtrip_stream},
    {"roundtrip_seqpacket", case_roundtrip_seqpacket},
    {"roundtrip_dgram", case_roundtrip_dgram},
    {"one_byte_at_a_time", case_one_byte_at_a_time},
    {"back_to_back", case_back_to_back},
    {"malformed_stream", case_malformed_stream},
    {"late_fds", case_late_fds},
    {"malformed_seqpacket", case_malformed_seqpacket},
    {"malformed_dgram", case_malformed_dgram},
    {"ctrunc", case_ctrunc},
    {"threads", case_threads},
    {"threads_nonblocking", case_threads_nonblocking},
    {"eagain", case_eagain},
    {"fork", case_fork},
    {"fork_while_busy", case_fork_while_busy},
    {"args", case_args},
    {"passcred", case_passcred},
    {"timeouts", case_timeouts},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <case> [args]\ncases:", argv[0]);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            fprintf(stderr, " %s", cases[i].name);
        fprintf(stderr, " python_peer\n");
        return 2;
    }
    current_case = argv[1];
    {
        /* Descriptors in flight count against RLIMIT_NOFILE (ETOOMANYREFS): use the hard
         * limit, as a server would. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    if (strcmp(argv[1], "python_peer") == 0)
        return case_python_peer(argc > 2 ? argv[2] : NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(argv[1], cases[i].name) == 0) {
            cases[i].fn();
            printf("PASS %s\n", argv[1]);
            return 0;
        }
    }
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}
