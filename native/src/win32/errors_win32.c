/* Windows errors: Win32 and Winsock error codes -> FDSEND_E* in one switch. The common
 * part (last OS error, descriptions) is ../errors.c; the POSIX mapping ../errors_posix.c.
 * SPDX-License-Identifier: MIT */
#include "fdsend_win32.h"

int32_t fdsend_status_from_win32(DWORD err)
{
    switch (err) {
    case WSAEWOULDBLOCK:
        return FDSEND_EAGAIN;
    case WSAEINVAL:
    case WSAEFAULT:
    case ERROR_INVALID_PARAMETER:
        return FDSEND_EINVAL;
    case WSAEBADF:
    case ERROR_INVALID_HANDLE:
        return FDSEND_EBADF;
    case WSAENOTSOCK:
    case WSANOTINITIALISED:
        return FDSEND_ENOTSOCK;
    case WSAESHUTDOWN:
        return FDSEND_EPIPE;
    case WSAECONNRESET:
    case WSAECONNABORTED:
    case WSAENETRESET:
        return FDSEND_ECONNRESET;
    case WSAENOTCONN:
        return FDSEND_ENOTCONN;
    case WSAEMSGSIZE:
        return FDSEND_EMSGSIZE;
    case WSAEMFILE:
    case ERROR_TOO_MANY_OPEN_FILES:
        return FDSEND_EMFILE;
    case WSAEOPNOTSUPP:
    case WSAEPROTONOSUPPORT:
    case WSAESOCKTNOSUPPORT:
    case WSAENOPROTOOPT:
    case ERROR_NOT_SUPPORTED:
        return FDSEND_ENOTSUP;
    case WSAENOBUFS:
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_NO_SYSTEM_RESOURCES:
        return FDSEND_ENOBUFS;
    case WSAECONNREFUSED:
        return FDSEND_ECONNREFUSED;
    case WSAEACCES:
    case ERROR_ACCESS_DENIED:
        return FDSEND_EACCES;
    case WSAEAFNOSUPPORT:
        return FDSEND_ENOTUNIX;
    case WSAEPROTOTYPE:
        return FDSEND_EPROTOTYPE;
    case WSAETIMEDOUT:
        return FDSEND_ETIMEDOUT; /* SO_RCVTIMEO / SO_SNDTIMEO expired */
    default:
        return FDSEND_EOTHER;
    }
}

int32_t fdsend_status_from_os_error(int err)
{
    return fdsend_status_from_win32((DWORD)err);
}

int32_t fdsend_fail_win32(int32_t code, DWORD err)
{
    SetLastError(err);
    return fdsend_fail(code, (int)err);
}

int32_t fdsend_fail_wsa(void)
{
    DWORD err = (DWORD)WSAGetLastError();
    return fdsend_fail_win32(fdsend_status_from_win32(err), err);
}
