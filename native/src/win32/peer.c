/* Who is at the other end of a Windows stream socket: the process that owns a TCP
 * connection (the system's TCP table), an AF_UNIX peer's pid, the proof that a record's
 * sender really is the peer, and fdsend_peer_credentials.
 * SPDX-License-Identifier: MIT */
#include "fdsend_win32.h"

#include <iphlpapi.h>
#include <afunix.h>

#include <stdlib.h>
#include <string.h>

/* The process that owns the TCP connection whose local end is peer and remote end is
 * local (our socket's ends, crossed), from the system's TCP table; 0 if unknown. */
static DWORD tcp_owner(const struct sockaddr_storage *local, const struct sockaddr_storage *peer)
{
    DWORD size = 0, pid = 0, i;
    void *table = NULL;
    ULONG af = local->ss_family;
    int tries;
    for (tries = 0; tries < 4; tries++) {
        DWORD r = GetExtendedTcpTable(table, &size, FALSE, af,
                                      TCP_TABLE_OWNER_PID_CONNECTIONS, 0);
        if (r == NO_ERROR)
            break;
        free(table);
        table = NULL;
        if (r != ERROR_INSUFFICIENT_BUFFER || (table = malloc(size + 4096)) == NULL)
            return 0;
        size += 4096;
    }
    if (table == NULL)
        return 0;
    if (af == AF_INET) {
        const MIB_TCPTABLE_OWNER_PID *t = table;
        const struct sockaddr_in *l = (const struct sockaddr_in *)local;
        const struct sockaddr_in *p = (const struct sockaddr_in *)peer;
        for (i = 0; i < t->dwNumEntries; i++) {
            const MIB_TCPROW_OWNER_PID *row = &t->table[i];
            if (row->dwLocalAddr == p->sin_addr.s_addr &&
                (u_short)row->dwLocalPort == p->sin_port &&
                row->dwRemoteAddr == l->sin_addr.s_addr &&
                (u_short)row->dwRemotePort == l->sin_port) {
                pid = row->dwOwningPid;
                break;
            }
        }
    } else {
        const MIB_TCP6TABLE_OWNER_PID *t = table;
        const struct sockaddr_in6 *l = (const struct sockaddr_in6 *)local;
        const struct sockaddr_in6 *p = (const struct sockaddr_in6 *)peer;
        for (i = 0; i < t->dwNumEntries; i++) {
            const MIB_TCP6ROW_OWNER_PID *row = &t->table[i];
            if (memcmp(row->ucLocalAddr, &p->sin6_addr, 16) == 0 &&
                (u_short)row->dwLocalPort == p->sin6_port &&
                memcmp(row->ucRemoteAddr, &l->sin6_addr, 16) == 0 &&
                (u_short)row->dwRemotePort == l->sin6_port) {
                pid = row->dwOwningPid;
                break;
            }
        }
    }
    free(table);
    return pid;
}

/* The AF_UNIX peer's pid into *pid: FDSEND_OK or a status. */
static int32_t unix_peer_pid(SOCKET s, DWORD *pid)
{
    ULONG p = 0;
    DWORD got = 0;
    if (WSAIoctl(s, SIO_AF_UNIX_GETPEERPID, NULL, 0, &p, sizeof p, &got, NULL, NULL) != 0)
        return fdsend_fail_wsa();
    *pid = p;
    return FDSEND_OK;
}

/* The peer's pid (0: unknown) of a socket whose names are known. FDSEND_OK, or a status
 * when the AF_UNIX query itself failed. */
static int32_t peer_pid_named(SOCKET s, const struct sockaddr_storage *local, int ll,
                              const struct sockaddr_storage *peer, int pl, DWORD *pid)
{
    *pid = 0;
    if (ll > 0 && local->ss_family == AF_UNIX)
        return unix_peer_pid(s, pid);
    if (ll > 0 && pl > 0 && (local->ss_family == AF_INET || local->ss_family == AF_INET6))
        *pid = tcp_owner(local, peer);
    return FDSEND_OK;
}

DWORD fdsend_win_peer_pid(SOCKET s)
{
    struct sockaddr_storage local, peer;
    int ll, pl;
    DWORD pid = 0;
    fdsend_win_socket_names(s, &local, &ll, &peer, &pl);
    if (pl == 0 || ll == 0 || peer_pid_named(s, &local, ll, &peer, pl, &pid) != FDSEND_OK)
        return 0;
    return pid;
}

uint64_t fdsend_win_self_creation_time(void)
{
    FILETIME c, e, k, u;
    if (!GetProcessTimes(GetCurrentProcess(), &c, &e, &k, &u))
        return 0;
    return (uint64_t)c.dwHighDateTime << 32 | c.dwLowDateTime;
}

/* Compare two socket addresses (family, address, port). */
static int same_address(const struct sockaddr_storage *a, int alen,
                        const struct sockaddr_storage *b, int blen)
{
    if (alen <= 0 || blen <= 0 || a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}

/* Prove that the process proc (which claims to be the sender) holds the socket at the
 * other end of s: FDSEND_OK, or FDSEND_EPROTO when it does not (a peer naming a process
 * that is not itself must not make us take that process's handles). */
static int32_t verify_peer(SOCKET s, HANDLE proc, const fdsend_rec_header *h)
{
    struct sockaddr_storage local, peer;
    int ll, pl;
    fdsend_win_socket_names(s, &local, &ll, &peer, &pl);
    if (ll > 0 && local.ss_family == AF_UNIX) {
        /* AF_UNIX (Windows 10 1803+): the kernel knows the peer's process id. */
        DWORD peer_pid = 0;
        int32_t rc = unix_peer_pid(s, &peer_pid);
        if (rc != FDSEND_OK)
            return rc;
        if (peer_pid != h->pid)
            return fdsend_fail_win32(FDSEND_EPROTO, ERROR_INVALID_DATA);
        return FDSEND_OK;
    }
    if (ll > 0 && (local.ss_family == AF_INET || local.ss_family == AF_INET6)) {
        /* TCP: copy the socket the header names out of the claimed process and check that
         * its two ends are ours, crossed. Only the real peer holds such a socket. */
        struct sockaddr_storage their_local, their_peer;
        int tl, tp;
        HANDLE dup = NULL;
        int ok;
        if (h->sock == 0 || h->sock == (uint64_t)(uintptr_t)INVALID_SOCKET ||
            !DuplicateHandle(proc, (HANDLE)(uintptr_t)h->sock, GetCurrentProcess(), &dup, 0,
                             FALSE, DUPLICATE_SAME_ACCESS))
            return fdsend_fail_win32(FDSEND_EPROTO, ERROR_INVALID_DATA);
        fdsend_win_socket_names((SOCKET)dup, &their_local, &tl, &their_peer, &tp);
        /* wine (8.0) answers getpeername on a socket copied in by DuplicateHandle with
         * WSAENOTSOCK while getsockname works; only then is the local end alone checked.
         * Windows answers both; a listening socket (WSAENOTCONN) never passes. */
        if (tp == 0 && WSAGetLastError() == WSAENOTSOCK && tl > 0)
            ok = same_address(&their_local, tl, &peer, pl);
        else
            ok = same_address(&their_local, tl, &peer, pl) &&
                 same_address(&their_peer, tp, &local, ll);
        /* wine's closesocket does not know a socket it did not create (WSAENOTSOCK). */
        if (closesocket((SOCKET)dup) != 0)
            CloseHandle(dup);
        return ok ? FDSEND_OK : fdsend_fail_win32(FDSEND_EPROTO, ERROR_INVALID_DATA);
    }
    return fdsend_fail_win32(FDSEND_ENOTSUP, ERROR_NOT_SUPPORTED);
}

/* A sender check that failed for a reason of the OS's (OpenProcess refused for another
 * reason than "no such process", the peer's pid unknown, a socket family the check does not
 * know) is a refusal too: the record cannot be taken, and its data stays unread, so the
 * result is one of the codes fdsend_recv_refused names. FDSEND_EACCES: the sender cannot be
 * proven to be the peer; the OS's error stays recorded. */
static int32_t sender_unproven(int32_t rc)
{
    if (rc == FDSEND_ESRCH || rc == FDSEND_EACCES || rc == FDSEND_EPROTO)
        return rc;
    return fdsend_fail_win32(FDSEND_EACCES, (DWORD)fdsend_last_os_error());
}

int32_t fdsend_win_open_sender(SOCKET s, const fdsend_rec_header *h, HANDLE *proc_out)
{
    HANDLE proc;
    FILETIME c, e, k, u;
    int32_t rc;
    *proc_out = NULL;
    proc = OpenProcess(PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE,
                       FALSE, h->pid);
    if (proc == NULL) {
        DWORD err = GetLastError();
        /* No such process: the sender is gone, and its handles went with it. */
        if (err == ERROR_INVALID_PARAMETER)
            return fdsend_fail_win32(FDSEND_ESRCH, err);
        return sender_unproven(fdsend_fail_win32(fdsend_status_from_win32(err), err));
    }
    /* Alive, and the same process that wrote the header (pids are reused). */
    if (WaitForSingleObject(proc, 0) == WAIT_OBJECT_0 ||
        !GetProcessTimes(proc, &c, &e, &k, &u) ||
        ((uint64_t)c.dwHighDateTime << 32 | c.dwLowDateTime) != h->ctime) {
        CloseHandle(proc);
        return fdsend_fail_win32(FDSEND_ESRCH, ERROR_INVALID_PARAMETER);
    }
    rc = verify_peer(s, proc, h);
    if (rc != FDSEND_OK) {
        rc = sender_unproven(rc);
        CloseHandle(proc);
        return rc;
    }
    *proc_out = proc;
    return FDSEND_OK;
}

int32_t fdsend_peer_credentials(intptr_t sock, int64_t *pid, int64_t *uid, int64_t *gid)
{
    struct sockaddr_storage local, peer;
    int ll, pl;
    int32_t rc;
    DWORD peer_pid = 0;
    if (pid != NULL)
        *pid = -1;
    if (uid != NULL)
        *uid = -1; /* Windows identifies users by SID, which has no uid/gid form */
    if (gid != NULL)
        *gid = -1;
    rc = fdsend_win_check_stream(sock);
    if (rc != FDSEND_OK)
        return rc;
    fdsend_win_socket_names((SOCKET)sock, &local, &ll, &peer, &pl);
    if (pl == 0)
        return fdsend_fail_win32(FDSEND_ENOTCONN, WSAENOTCONN);
    rc = peer_pid_named((SOCKET)sock, &local, ll, &peer, pl, &peer_pid);
    if (rc != FDSEND_OK)
        return rc;
    /* pid 0 is the idle process, never a socket's owner: the system did not say. */
    if (peer_pid == 0)
        return fdsend_fail_win32(FDSEND_ENOTSUP, ERROR_NOT_SUPPORTED);
    if (pid != NULL)
        *pid = (int64_t)peer_pid;
    fdsend_clear_error();
    return FDSEND_OK;
}
