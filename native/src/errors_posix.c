/* POSIX errors: errno -> FDSEND_E* in one switch (fdsend_status_from_errno), and
 * fdsend_status_from_os_error, the platform-neutral name for the same mapping. The Windows
 * counterpart is win32/errors_win32.c.
 * SPDX-License-Identifier: MIT */
#include "fdsend_internal.h"

#include <errno.h>

int32_t fdsend_status_from_errno(int err)
{
    switch (err) {
    case EAGAIN:
#if defined(EWOULDBLOCK) && EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif /* defined(EWOULDBLOCK) && EWOULDBLOCK != EAGAIN */
        return FDSEND_EAGAIN;
    case EINVAL:
    case EFAULT:
        return FDSEND_EINVAL;
    case EBADF:
        return FDSEND_EBADF;
    case ENOTSOCK:
        return FDSEND_ENOTSOCK;
    case EPIPE:
        return FDSEND_EPIPE;
    case ECONNRESET:
        return FDSEND_ECONNRESET;
    case ENOTCONN:
        return FDSEND_ENOTCONN;
    case EMSGSIZE:
        return FDSEND_EMSGSIZE;
    case ETOOMANYREFS:
        return FDSEND_ETOOMANYREFS;
    case EMFILE:
    case ENFILE:
        return FDSEND_EMFILE;
    case ENOTSUP:
#if defined(EOPNOTSUPP) && EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif /* defined(EOPNOTSUPP) && EOPNOTSUPP != ENOTSUP */
    case ENOPROTOOPT:
    case EPROTONOSUPPORT: /* socketpair of a type the OS lacks (macOS: SOCK_SEQPACKET) */
#if defined(ESOCKTNOSUPPORT)
    case ESOCKTNOSUPPORT:
#endif /* defined(ESOCKTNOSUPPORT) */
        return FDSEND_ENOTSUP;
    case ENOBUFS:
    case ENOMEM:
        return FDSEND_ENOBUFS;
    case ECONNREFUSED:
        return FDSEND_ECONNREFUSED;
    case ENOENT:
        return FDSEND_ENOENT;
    case EACCES:
    case EPERM:
        return FDSEND_EACCES;
    case EDESTADDRREQ:
        return FDSEND_EDESTADDRREQ;
    case EISCONN:
        return FDSEND_EISCONN;
    case EAFNOSUPPORT:
        return FDSEND_ENOTUNIX;
    case EPROTOTYPE:
        return FDSEND_EPROTOTYPE;
    case ENAMETOOLONG:
        return FDSEND_ENAMETOOLONG;
    case EPROTO:
        return FDSEND_EPROTO;
    case ESRCH:
        return FDSEND_ESRCH;
    case ETIMEDOUT:
        return FDSEND_ETIMEDOUT;
    default:
        return FDSEND_EOTHER;
    }
}

int32_t fdsend_fail_errno(void)
{
    int err = errno;
    return fdsend_fail(fdsend_status_from_errno(err), err);
}

int32_t fdsend_status_from_os_error(int err)
{
    return fdsend_status_from_errno(err);
}
