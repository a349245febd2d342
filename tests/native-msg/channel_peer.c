/* channel_peer: the C end of the C <-> .NET message channel test
 * (tests/FdSend.Tests/Channel/ChannelInteropTests.cs). It speaks the channel only through
 * libfdsend's fdsend_msg_send / fdsend_msg_recv.
 *
 * usage: channel_peer <socket-path> stream|seqpacket
 *
 * Connects to the Unix socket at <socket-path>, then:
 *  1. sends a greeting: payload "hello from C" and one descriptor, a temporary file (already
 *     unlinked) that holds "written by C";
 *  2. answers every message it receives until the end of the connection (FDSEND_EOF):
 *     - payload "count-fds": answers with the number of descriptors open in this process,
 *       as decimal text, and no descriptors;
 *     - anything else: the payload reversed, and the message's descriptors in reverse order
 *       (after checking that each is open and close-on-exec).
 * Exits 0 at a clean end; on any error prints it on stderr and exits 1.
 *
 * SPDX-License-Identifier: MIT */
#include "fdsend.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CAP (16u * 1024u * 1024u)

static int fail(const char *what, int64_t code)
{
    fprintf(stderr, "channel_peer: %s: %s (%lld)\n", what, fdsend_strerror((int32_t)code),
            (long long)code);
    return 1;
}

static int send_greeting(int s)
{
    char name[] = "/tmp/fdsend-channel-peer-XXXXXX";
    static const char text[] = "written by C";
    static const char hello[] = "hello from C";
    intptr_t fd;
    int32_t rc;
    int f = mkstemp(name);
    if (f < 0) {
        perror("channel_peer: mkstemp");
        return 1;
    }
    unlink(name);
    if (write(f, text, sizeof text - 1) != (ssize_t)(sizeof text - 1)) {
        perror("channel_peer: write");
        close(f);
        return 1;
    }
    fd = f;
    rc = fdsend_msg_send(s, hello, sizeof hello - 1, &fd, 1, 0);
    close(f); /* the peer has its own duplicate */
    return rc == FDSEND_OK ? 0 : fail("fdsend_msg_send (greeting)", rc);
}

int main(int argc, char **argv)
{
    unsigned char *buf, *out;
    intptr_t fds[FDSEND_MAX_FDS], back[FDSEND_MAX_FDS];
    int s, type;

    if (argc != 3 || (strcmp(argv[2], "stream") != 0 && strcmp(argv[2], "seqpacket") != 0)) {
        fprintf(stderr, "usage: channel_peer <socket-path> stream|seqpacket\n");
        return 2;
    }
    type = strcmp(argv[2], "stream") == 0 ? SOCK_STREAM : SOCK_SEQPACKET;
    s = tu_connect_unix(argv[1], type, 0.0); /* no retry: the .NET side listens first */
    if (s < 0) {
        perror("channel_peer: connect");
        return 1;
    }
    buf = malloc(CAP);
    out = malloc(CAP);
    if (buf == NULL || out == NULL) {
        fprintf(stderr, "channel_peer: out of memory\n");
        return 1;
    }
    if (send_greeting(s) != 0)
        return 1;

    for (;;) {
        int32_t nfds = 0, i;
        int32_t rc;
        int64_t n = fdsend_msg_recv(s, buf, CAP, fds, FDSEND_MAX_FDS, &nfds, 0);
        if (n == FDSEND_EOF)
            break;
        if (n < 0)
            return fail("fdsend_msg_recv", n);
        if (n == 9 && nfds == 0 && memcmp(buf, "count-fds", 9) == 0) {
            int len = snprintf((char *)out, 32, "%d", tu_count_fds());
            rc = fdsend_msg_send(s, out, (size_t)len, NULL, 0, 0);
            if (rc != FDSEND_OK)
                return fail("fdsend_msg_send (count-fds)", rc);
            continue;
        }
        for (i = 0; i < nfds; i++) {
            int flags = fcntl((int)fds[i], F_GETFD);
            if (flags < 0 || !(flags & FD_CLOEXEC)) {
                fprintf(stderr, "channel_peer: received descriptor %ld is %s\n", (long)fds[i],
                        flags < 0 ? "not open" : "not close-on-exec");
                return 1;
            }
            back[i] = fds[nfds - 1 - i];
        }
        for (i = 0; i < (int32_t)n; i++)
            out[i] = buf[n - 1 - i];
        rc = fdsend_msg_send(s, out, (size_t)n, back, nfds, 0);
        for (i = 0; i < nfds; i++)
            close((int)fds[i]);
        if (rc != FDSEND_OK)
            return fail("fdsend_msg_send (echo)", rc);
    }
    free(buf);
    free(out);
    close(s);
    return 0;
}
