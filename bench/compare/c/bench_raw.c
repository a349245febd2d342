/* The floor: sendmsg/recvmsg called directly, written the way a careful C programmer
 * would (aligned control-buffer union sized with CMSG_SPACE, cmsg_len from CMSG_LEN,
 * MSG_NOSIGNAL, MSG_CMSG_CLOEXEC, every header walked, extra fds closed, EINTR retried).
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

typedef int bench_fd;
#define BENCH_NAME "raw-c"
#define RAW_MAX_FDS 253

typedef union raw_control {
    struct cmsghdr align;
    unsigned char buf[CMSG_SPACE(RAW_MAX_FDS * sizeof(int))];
} raw_control;

static long bench_send(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
    raw_control control;
    struct iovec iov;
    struct msghdr msg;
    ssize_t n;

    iov.iov_base = (void *)buf;
    iov.iov_len = len;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        struct cmsghdr *cmsg;
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(cmsg), fds, (size_t)nfds * sizeof(int));
    }
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return (long)n;
}

static long bench_recv(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds)
{
    raw_control control;
    struct iovec iov;
    struct msghdr msg;
    struct cmsghdr *cmsg;
    ssize_t n;

    *nfds = 0;
    iov.iov_base = buf;
    iov.iov_len = len;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE((size_t)maxfds * sizeof(int));
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    for (cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
            size_t k = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int), i;
            for (i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
                if (*nfds < maxfds)
                    fds[(*nfds)++] = fd;
                else
                    close(fd); /* CMSG_SPACE(1 int) has room for 2 on LP64 */
            }
        }
    }
    return (long)n;
}

#include "harness.h"
