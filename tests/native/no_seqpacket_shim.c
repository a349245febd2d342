/* LD_PRELOAD shim for eng/native.sh: makes this Linux system look like macOS in one
 * respect, no Unix sockets of type SOCK_SEQPACKET (socket() and socketpair() fail with
 * EPROTONOSUPPORT, as macOS's do). The C suite must then skip the cases about that type
 * and go on with the other types in the cases that loop over them.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>

static int refused(int domain, int type)
{
    return domain == AF_UNIX && (type & 0xf) == SOCK_SEQPACKET;
}

int socket(int domain, int type, int protocol)
{
    static int (*real_socket)(int, int, int);
    if (refused(domain, type)) {
        errno = EPROTONOSUPPORT;
        return -1;
    }
    if (real_socket == NULL)
        real_socket = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
    return real_socket(domain, type, protocol);
}

int socketpair(int domain, int type, int protocol, int sv[2])
{
    static int (*real_socketpair)(int, int, int, int *);
    if (refused(domain, type)) {
        errno = EPROTONOSUPPORT;
        return -1;
    }
    if (real_socketpair == NULL)
        real_socketpair = (int (*)(int, int, int, int *))dlsym(RTLD_NEXT, "socketpair");
    return real_socketpair(domain, type, protocol, sv);
}
