/* The libfdsend side of the interop suite: sends to / receives from CPython's
 * socket.send_fds/recv_fds (mode "rights") and Perl's IO::FDPass (mode "fdpass") over a
 * Unix stream socket path, in a separate process. The protocol is in README.md beside
 * this file; peer.py and peer.pl implement the other end.
 *
 *   c_peer send|recv rights|fdpass PATH NMSGS
 *
 * The receiver listens at PATH, the sender connects. Prints one PASS line and exits 0,
 * or prints FAIL: ... and exits 1.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1
#include "fdsend.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <inttypes.h>

static const char *role = "?";
static const char *mode = "?";

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: c_peer %s %s: ", role, mode);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    exit(1);
}

/* The schedule both ends compute: fds and payload length of message i. */
static int msg_nfds(int i, int fdpass) { return fdpass ? 1 + i % 3 : 1 + i % 4; }
static size_t msg_len(int i) { return (size_t)(1 + (i * 7919) % 5000); }
static unsigned char msg_byte(int i, size_t j) { return (unsigned char)((i * 31 + (int)j * 17 + 5) & 0xff); }

/* A temporary file whose content names it: message, index, and its own dev/inode. */
static int make_tagged_file(int i, int k)
{
    char tmpl[] = "/tmp/fdsend-interop-XXXXXX";
    char tag[160];
    struct stat st;
    int fd = mkostemp(tmpl, O_CLOEXEC);
    int n;
    if (fd < 0)
        fail("mkostemp: %s", strerror(errno));
    unlink(tmpl);
    if (fstat(fd, &st) != 0)
        fail("fstat: %s", strerror(errno));
    n = snprintf(tag, sizeof tag, "FDSEND-INTEROP msg=%d fd=%d dev=%" PRIu64 " ino=%" PRIu64 "\n",
                 i, k, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
    if (write(fd, tag, (size_t)n) != n)
        fail("write tag: %s", strerror(errno));
    return fd;
}

/* Check that fd is close-on-exec and is the file the sender tagged for (i, k). */
static void verify_received(intptr_t fd, int i, int k)
{
    char want_prefix[64], buf[200];
    struct stat st;
    unsigned long long dev, ino;
    int mi, mk;
    ssize_t n;
    int fl = fcntl((int)fd, F_GETFD);
    if (fl < 0)
        fail("message %d fd %d: received descriptor %d is not open", i, k, (int)fd);
    if (!(fl & FD_CLOEXEC))
        fail("message %d fd %d: received descriptor is not close-on-exec", i, k);
    if (fstat((int)fd, &st) != 0)
        fail("fstat: %s", strerror(errno));
    n = pread((int)fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        fail("message %d fd %d: cannot read the tag (%zd)", i, k, n);
    buf[n] = '\0';
    if (sscanf(buf, "FDSEND-INTEROP msg=%d fd=%d dev=%llu ino=%llu", &mi, &mk, &dev, &ino) != 4)
        fail("message %d fd %d: bad tag '%s'", i, k, buf);
    snprintf(want_prefix, sizeof want_prefix, "msg=%d fd=%d", i, k);
    if (mi != i || mk != k)
        fail("message %d fd %d: got the file of message %d fd %d (wrong descriptor)", i, k, mi, mk);
    if ((uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino)
        fail("message %d fd %d: inode %llu:%llu, the sender announced %llu:%llu", i, k,
             (unsigned long long)st.st_dev, (unsigned long long)st.st_ino, dev, ino);
}

static void send_all_plain(int s, const unsigned char *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        int64_t n = fdsend_send(s, p + off, len - off, NULL, 0, 0);
        if (n < 0)
            fail("fdsend_send: %s", fdsend_strerror((int32_t)n));
        off += (size_t)n;
    }
}

static int run_send(const char *path, int nmsgs, int fdpass, int *nfds_total, size_t *bytes)
{
    unsigned char *payload = malloc(5001);
    int s = tu_connect_unix(path, SOCK_STREAM, 20.0);
    int i, k;
    if (s < 0)
        fail("connect %s: %s", path, strerror(errno));
    for (i = 0; i < nmsgs; i++) {
        int n = msg_nfds(i, fdpass);
        size_t len = msg_len(i), j;
        intptr_t fds[8];
        for (j = 0; j < len; j++)
            payload[j] = msg_byte(i, j);
        for (k = 0; k < n; k++)
            fds[k] = make_tagged_file(i, k);
        if (fdpass) {
            /* IO::FDPass: data as plain bytes, then each fd on its own one-byte carrier. */
            send_all_plain(s, payload, len);
            for (k = 0; k < n; k++) {
                int64_t r = fdsend_send(s, NULL, 0, &fds[k], 1, 0);
                if (r != 0)
                    fail("fdsend_send(len 0, 1 fd) returned %" PRId64 " (%s)", r,
                         r < 0 ? fdsend_strerror((int32_t)r) : "expected 0");
            }
        } else {
            int64_t r = fdsend_send(s, payload, len, fds, n, 0);
            if (r < 0)
                fail("fdsend_send: %s", fdsend_strerror((int32_t)r));
            if ((size_t)r < len)
                send_all_plain(s, payload + r, len - (size_t)r); /* the rest, without fds */
        }
        for (k = 0; k < n; k++)
            close((int)fds[k]);
        *nfds_total += n;
        *bytes += len;
    }
    /* Wait for the peer to close first: proves it read everything, then we close. */
    {
        unsigned char b;
        int64_t r;
        shutdown(s, SHUT_WR);
        r = fdsend_recv(s, &b, 1, NULL, 0, NULL, NULL, 0);
        if (r != 0)
            fail("expected end of stream from the receiver, got %" PRId64, r);
    }
    close(s);
    free(payload);
    return 0;
}

static void recv_payload(int s, int i, size_t len, int expect_fds, intptr_t *fds, int *got)
{
    unsigned char *buf = malloc(len);
    size_t off = 0, j;
    *got = 0;
    while (off < len) {
        int32_t nf = 0;
        uint32_t rf = 0;
        int64_t n = fdsend_recv(s, buf + off, len - off, fds, 8, &nf, &rf, 0);
        if (n < 0)
            fail("message %d: fdsend_recv: %s", i, fdsend_strerror((int32_t)n));
        if (n == 0 && nf == 0)
            fail("message %d: end of stream after %zu of %zu bytes", i, off, len);
        if (rf != 0)
            fail("message %d: unexpected receive flags %u", i, rf);
        if (nf > 0) {
            if (off != 0 || !expect_fds)
                fail("message %d: %d descriptors arrived at byte %zu (expected %s)", i, nf, off,
                     expect_fds ? "with the first byte" : "none");
            *got = nf;
        }
        off += (size_t)n;
    }
    for (j = 0; j < len; j++) {
        if (buf[j] != msg_byte(i, j))
            fail("message %d: payload byte %zu is %u, expected %u", i, j, buf[j], msg_byte(i, j));
    }
    free(buf);
}

static int run_recv(const char *path, int nmsgs, int fdpass, int *nfds_total, size_t *bytes)
{
    int l = tu_listen_unix(path, SOCK_STREAM);
    int s, i, k;
    if (l < 0)
        fail("listen %s: %s", path, strerror(errno));
    s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (s < 0)
        fail("accept: %s", strerror(errno));
    close(l);
    unlink(path);
    for (i = 0; i < nmsgs; i++) {
        int n = msg_nfds(i, fdpass), got = 0;
        size_t len = msg_len(i);
        intptr_t fds[8];
        if (fdpass) {
            recv_payload(s, i, len, 0, fds, &got);
            for (k = 0; k < n; k++) {
                int32_t nf = 0;
                uint32_t rf = 0;
                /* len 0 on a stream: consume exactly the one-byte carrier. */
                int64_t r = fdsend_recv(s, NULL, 0, &fds[k], 1, &nf, &rf, 0);
                if (r != 0 || nf != 1 || rf != 0)
                    fail("message %d fd %d: fdsend_recv(len 0) returned %" PRId64
                         " with %d fds, flags %u (expected 0, 1 fd, no flags)", i, k, r, nf, rf);
            }
            got = n;
        } else {
            recv_payload(s, i, len, 1, fds, &got);
            if (got != n)
                fail("message %d: %d descriptors arrived, %d were sent", i, got, n);
        }
        for (k = 0; k < n; k++) {
            verify_received(fds[k], i, k);
            close((int)fds[k]);
        }
        *nfds_total += n;
        *bytes += len;
    }
    {
        unsigned char b;
        int32_t nf = 0;
        uint32_t rf = 0;
        intptr_t extra[8];
        int64_t r = fdsend_recv(s, &b, 1, extra, 8, &nf, &rf, 0);
        if (r != 0 || nf != 0 || rf != FDSEND_RECV_END_OF_STREAM)
            fail("expected end of stream after %d messages, got %" PRId64 " bytes, %d fds", nmsgs, r, nf);
    }
    close(s);
    return 0;
}

int main(int argc, char **argv)
{
    int before, after, nmsgs, fdpass, nfds_total = 0;
    size_t bytes = 0;
    if (argc != 5 || (strcmp(argv[1], "send") != 0 && strcmp(argv[1], "recv") != 0) ||
        (strcmp(argv[2], "rights") != 0 && strcmp(argv[2], "fdpass") != 0)) {
        fprintf(stderr, "usage: c_peer send|recv rights|fdpass PATH NMSGS\n");
        return 2;
    }
    role = argv[1];
    mode = argv[2];
    fdpass = strcmp(mode, "fdpass") == 0;
    nmsgs = atoi(argv[4]);
    before = tu_count_fds();
    if (strcmp(role, "send") == 0)
        run_send(argv[3], nmsgs, fdpass, &nfds_total, &bytes);
    else
        run_recv(argv[3], nmsgs, fdpass, &nfds_total, &bytes);
    after = tu_count_fds();
    if (before != after) {
        tu_fd_dump(stdout, "c_peer");
        fail("descriptor count %d before, %d after: leak", before, after);
    }
    printf("PASS c_peer %s %s msgs=%d fds=%d bytes=%zu fdcount=%d->%d\n", role, mode, nmsgs,
           nfds_total, bytes, before, after);
    return 0;
}
