/* Winsock start-up and the checks every Windows entry point makes on its socket.
 * SPDX-License-Identifier: MIT */
#include "fdsend_win32.h"

#include <string.h>

static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK wsa_start(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    WSADATA data;
    (void)once;
    (void)param;
    (void)ctx;
    /* The caller made the socket, so Winsock is usually up already; this reference makes
     * calls on a bad handle fail with WSAENOTSOCK rather than WSANOTINITIALISED. It is
     * never released: the library may be called until the process ends. */
    return WSAStartup(MAKEWORD(2, 2), &data) == 0;
}

void fdsend_win_startup(void)
{
    InitOnceExecuteOnce(&wsa_once, wsa_start, NULL, NULL);
}

int32_t fdsend_win_check_stream(intptr_t sock)
{
    int type = 0;
    int l = (int)sizeof type;
    if (sock <= 0 || (SOCKET)sock == INVALID_SOCKET)
        return fdsend_fail_win32(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    fdsend_win_startup();
    if (getsockopt((SOCKET)sock, SOL_SOCKET, SO_TYPE, (char *)&type, &l) != 0)
        return fdsend_fail_wsa();
    if (type != SOCK_STREAM)
        return fdsend_fail_win32(FDSEND_ENOTSUP, WSAESOCKTNOSUPPORT); /* stream sockets only */
    return FDSEND_OK;
}

int fdsend_win_is_socket(HANDLE h)
{
    int type = 0;
    int l = (int)sizeof type;
    return getsockopt((SOCKET)(uintptr_t)h, SOL_SOCKET, SO_TYPE, (char *)&type, &l) == 0;
}

void fdsend_win_socket_names(SOCKET s, struct sockaddr_storage *local, int *local_len,
                             struct sockaddr_storage *peer, int *peer_len)
{
    memset(local, 0, sizeof *local);
    memset(peer, 0, sizeof *peer);
    *local_len = (int)sizeof *local;
    *peer_len = (int)sizeof *peer;
    if (getsockname(s, (struct sockaddr *)local, local_len) != 0)
        *local_len = 0;
    if (getpeername(s, (struct sockaddr *)peer, peer_len) != 0)
        *peer_len = 0;
}
