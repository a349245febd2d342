/* fdsend_send / fdsend_recv / fdsend_peer_credentials on Windows.
 *
 * Windows has no SCM_RIGHTS. As in Perl's IO::FDPass, a HANDLE travels as its value in
 * the sender's process plus the sender's process id; the receiver duplicates it out of
 * the sender with OpenProcess(PROCESS_DUP_HANDLE) + DuplicateHandle(DUPLICATE_CLOSE_SOURCE).
 * Every fdsend_send is one record on the connected stream socket: a 32-byte header, the
 * handle table, then the data. docs/windows-protocol.md describes the bytes, the trust
 * model and what happens when either side dies; the comments here say why each step is
 * there.
 *
 * SPDX-License-Identifier: MIT */
#ifndef WIN32_LEAN_AND_MEAN
#  define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <iphlpapi.h>
#include <afunix.h>

#include "fdsend_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- The record ------------------------------------------------------------------------
 *  0  4  magic "FDSH"
 *  4  1  version (1)
 *  5  1  reserved, 0
 *  6  2  handle count n (0 .. FDSEND_MAX_FDS), little-endian
 *  8  4  data length d (0 .. RECORD_MAX_DATA), little-endian; n + d > 0
 * 12  4  sender process id
 * 16  8  sender process creation time (FILETIME, 100 ns since 1601)
 * 24  8  the sender's SOCKET value (proves, over TCP, that the pid really is the peer)
 * 32  8n handle values, each valid in the sender's process and owned by the record
 * ..  d  data
 * Version 2 (only when at least one entry is a socket shared with WSADuplicateSocketW;
 * records without one stay version 1, byte for byte):
 * 32      8n  entry values: a handle value (kind 0) or 0 (kind 1)
 * 32+8n   n   entry kinds: 0 handle, 1 socket (a WSAPROTOCOL_INFOW follows)
 * 32+9n   628k the k sockets' WSAPROTOCOL_INFOW structures, in entry order
 * ..      d   data
 */
#define RECORD_MAGIC0 'F'
#define RECORD_MAGIC1 'D'
#define RECORD_MAGIC2 'S'
#define RECORD_MAGIC3 'H'
#define RECORD_VERSION 1
#define RECORD_VERSION_SOCKETS 2
#define RECORD_HEADER 32
#define RECORD_TABLE_MAX (RECORD_HEADER + 8 * FDSEND_MAX_FDS)
#define ENTRY_HANDLE 0
#define ENTRY_SOCKET 1
/* WSAPROTOCOL_INFOW: the same 628 bytes in 32- and 64-bit processes (no pointers). */
#define SOCKET_INFO_SIZE 628
typedef char socket_info_size_check[sizeof(WSAPROTOCOL_INFOW) == SOCKET_INFO_SIZE ? 1 : -1];
/* The largest version 2 table: every entry a socket. */
#define RECORD_TABLE2_MAX (RECORD_HEADER + (8 + 1 + SOCKET_INFO_SIZE) * FDSEND_MAX_FDS)
/* One record carries at most 1 GiB of data; a longer fdsend_send is a partial send. */
#define RECORD_MAX_DATA ((uint32_t)1 << 30)

typedef struct record_header {
    uint32_t version;
    uint32_t nhandles;
    uint32_t datalen;
    uint32_t pid;
    uint64_t ctime;
    uint64_t sock;
} record_header;

static void put_u16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    put_u16(p, v);
    put_u16(p + 2, v >> 16);
}

static void put_u64(unsigned char *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u16(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t get_u32(const unsigned char *p)
{
    return get_u16(p) | get_u16(p + 2) << 16;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* ---- Errors ---------------------------------------------------------------------------- */

static int32_t status_from_win32(DWORD err)
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

/* Record err as this thread's OS error (GetLastError too) and return code. */
static int32_t fail(int32_t code, DWORD err)
{
    SetLastError(err);
    return fdsend_fail(code, (int)err);
}

static int32_t fail_wsa(void)
{
    DWORD err = (DWORD)WSAGetLastError();
    return fail(status_from_win32(err), err);
}

/* ---- Winsock set-up and socket checks ---------------------------------------------------- */

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

/* Check sock: a connected SOCK_STREAM socket; -1 / non-socket / other types fail. */
static int32_t check_stream_socket(intptr_t sock)
{
    int type = 0;
    int l = (int)sizeof type;
    if (sock <= 0 || (SOCKET)sock == INVALID_SOCKET)
        return fail(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    InitOnceExecuteOnce(&wsa_once, wsa_start, NULL, NULL);
    if (getsockopt((SOCKET)sock, SOL_SOCKET, SO_TYPE, (char *)&type, &l) != 0)
        return fail_wsa();
    if (type != SOCK_STREAM)
        return fail(FDSEND_ENOTSUP, WSAESOCKTNOSUPPORT); /* only stream sockets here */
    return FDSEND_OK;
}

/* 1 if sock is ready for reading (writing), 0 if not, negative status on error. */
static int32_t ready_now(SOCKET s, int for_write)
{
    fd_set set;
    struct timeval zero = {0, 0};
    int r;
    FD_ZERO(&set);
    FD_SET(s, &set);
    r = select(0, for_write ? NULL : &set, for_write ? &set : NULL, NULL, &zero);
    if (r == SOCKET_ERROR)
        return fail_wsa();
    return r > 0;
}

/* Wait until sock is writable (used only to finish a record already partly sent). */
static int32_t wait_writable(SOCKET s)
{
    fd_set set;
    FD_ZERO(&set);
    FD_SET(s, &set);
    if (select(0, NULL, &set, NULL, NULL) == SOCKET_ERROR)
        return fail_wsa();
    return FDSEND_OK;
}

static uint64_t self_creation_time(void)
{
    FILETIME c, e, k, u;
    if (!GetProcessTimes(GetCurrentProcess(), &c, &e, &k, &u))
        return 0;
    return (uint64_t)c.dwHighDateTime << 32 | c.dwLowDateTime;
}

/* ---- Receive continuation: what is left of a record whose data was read in part ----------
 * A stream socket lets a receiver read a message in pieces. The record header is gone
 * after the first piece, so the number of data bytes still due is kept here, per socket.
 * An entry also remembers the socket's two addresses: if the socket was closed and its
 * value reused for another connection, the addresses differ and the entry is dropped. */
typedef struct continuation {
    SOCKET sock;
    uint32_t remaining;
    int local_len, peer_len;
    struct sockaddr_storage local, peer;
} continuation;

#define CONTINUATION_MAX 65536

static SRWLOCK cont_lock = SRWLOCK_INIT;
static continuation *cont_table;
static size_t cont_count, cont_capacity;

static void socket_names(SOCKET s, struct sockaddr_storage *local, int *local_len,
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

static int same_names(const continuation *c, SOCKET s)
{
    struct sockaddr_storage local, peer;
    int ll, pl;
    socket_names(s, &local, &ll, &peer, &pl);
    return ll == c->local_len && pl == c->peer_len &&
           memcmp(&local, &c->local, (size_t)ll) == 0 &&
           memcmp(&peer, &c->peer, (size_t)pl) == 0;
}

/* Bytes of the current record still due on s (0: the next bytes are a record header). */
static uint32_t cont_get(SOCKET s)
{
    uint32_t remaining = 0;
    size_t i;
    int stale = 0;
    AcquireSRWLockShared(&cont_lock);
    for (i = 0; i < cont_count; i++) {
        if (cont_table[i].sock == s) {
            if (same_names(&cont_table[i], s))
                remaining = cont_table[i].remaining;
            else
                stale = 1;
            break;
        }
    }
    ReleaseSRWLockShared(&cont_lock);
    if (stale) {
        AcquireSRWLockExclusive(&cont_lock);
        for (i = 0; i < cont_count; i++) {
            if (cont_table[i].sock == s && !same_names(&cont_table[i], s)) {
                cont_table[i] = cont_table[--cont_count];
                break;
            }
        }
        ReleaseSRWLockExclusive(&cont_lock);
    }
    return remaining;
}

/* Set the bytes still due on s (0 removes the entry). FDSEND_OK or FDSEND_ENOBUFS. */
static int32_t cont_set(SOCKET s, uint32_t remaining)
{
    int32_t rc = FDSEND_OK;
    size_t i;
    AcquireSRWLockExclusive(&cont_lock);
    for (i = 0; i < cont_count; i++) {
        if (cont_table[i].sock == s)
            break;
    }
    if (remaining == 0) {
        if (i < cont_count)
            cont_table[i] = cont_table[--cont_count];
    } else {
        if (i == cont_count) {
            if (cont_count == cont_capacity) {
                size_t cap = cont_capacity ? cont_capacity * 2 : 16;
                continuation *t = cap <= CONTINUATION_MAX
                                      ? realloc(cont_table, cap * sizeof *t)
                                      : NULL;
                if (t == NULL) {
                    rc = FDSEND_ENOBUFS;
                    goto out;
                }
                cont_table = t;
                cont_capacity = cap;
            }
            cont_table[i].sock = s;
            socket_names(s, &cont_table[i].local, &cont_table[i].local_len,
                         &cont_table[i].peer, &cont_table[i].peer_len);
            cont_count++;
        }
        cont_table[i].remaining = remaining;
    }
out:
    ReleaseSRWLockExclusive(&cont_lock);
    return rc;
}

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

/* The process id at the other end of the connected socket s (AF_UNIX: the kernel says;
 * TCP: the system's TCP table), or 0 if it cannot be known. */
static DWORD peer_pid_of(SOCKET s)
{
    struct sockaddr_storage local, peer;
    int ll, pl;
    socket_names(s, &local, &ll, &peer, &pl);
    if (pl == 0 || ll == 0)
        return 0;
    if (local.ss_family == AF_UNIX) {
        ULONG p = 0;
        DWORD got = 0;
        if (WSAIoctl(s, SIO_AF_UNIX_GETPEERPID, NULL, 0, &p, sizeof p, &got, NULL, NULL) != 0)
            return 0;
        return p;
    }
    if (local.ss_family == AF_INET || local.ss_family == AF_INET6)
        return tcp_owner(&local, &peer);
    return 0;
}

/* 1 if h is a socket to this process's Winsock (SO_TYPE answers). */
static int is_socket(HANDLE h)
{
    int type = 0;
    int l = (int)sizeof type;
    return getsockopt((SOCKET)(uintptr_t)h, SOL_SOCKET, SO_TYPE, (char *)&type, &l) == 0;
}

/* Close a handle this library made or received: closesocket for a socket (Winsock's own
 * state goes with it), CloseHandle otherwise. */
static BOOL close_any(HANDLE h)
{
    if (is_socket(h))
        return closesocket((SOCKET)(uintptr_t)h) == 0;
    return CloseHandle(h);
}

/* ---- Sending ------------------------------------------------------------------------------ */

/* The record's own copies (kind ENTRY_HANDLE) are closed; a socket already shared with
 * WSADuplicateSocketW cannot be taken back (see docs/windows-protocol.md). */
static void close_copies(HANDLE *copies, const unsigned char *kinds, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; i++) {
        if (kinds[i] == ENTRY_HANDLE)
            CloseHandle(copies[i]);
    }
}

int64_t fdsend_send(intptr_t sock, const void *buf, size_t len, const intptr_t *fds,
                    int32_t nfds, uint32_t flags)
{
    unsigned char small[RECORD_TABLE_MAX];
    unsigned char *head = small;
    unsigned char kinds[FDSEND_MAX_FDS];
    HANDLE copies[FDSEND_MAX_FDS];
    WSAPROTOCOL_INFOW *infos = NULL;
    WSABUF bufs[2];
    DWORD nbufs = 0, receiver = 0;
    SOCKET s = (SOCKET)sock;
    uint32_t chunk;
    size_t headlen, total, sent_total = 0;
    int32_t i, rc, nsockets = 0;
    int pid_looked_up = 0;
    int64_t result;

    if (sock < 0)
        return fail(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    if ((buf == NULL && len > 0) || nfds < 0 || (fds == NULL && nfds > 0) ||
        (flags & ~(uint32_t)(FDSEND_DONTWAIT | FDSEND_UNIX_SOCKET)) != 0)
        return fail(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    if (nfds > FDSEND_MAX_FDS)
        return fail(FDSEND_ETOOMANYFDS, ERROR_INVALID_PARAMETER);
    for (i = 0; i < nfds; i++) {
        /* 0 is no handle; negative values are pseudo-handles (-1 is this process). */
        if (fds[i] <= 0)
            return fail(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    }
    rc = check_stream_socket(sock);
    if (rc != FDSEND_OK)
        return rc;
    if (len == 0 && nfds == 0) {
        fdsend_clear_error(); /* nothing to send: a stream carries no empty message */
        return 0;
    }
    if (flags & FDSEND_DONTWAIT) {
        rc = ready_now(s, 1);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return fail(FDSEND_EAGAIN, WSAEWOULDBLOCK);
    }

    /* The caller keeps its handles: the record carries fresh copies, which the receiver
     * takes out of this process with DUPLICATE_CLOSE_SOURCE. Duplicating also proves
     * each value is an open handle.
     * A socket is shared the way Winsock documents instead (a duplicated SOCKET handle is
     * not a socket to every Winsock: wine's answers WSAENOTSOCK): WSADuplicateSocketW for
     * the receiver's process id, which the record then carries as a WSAPROTOCOL_INFOW.
     * That needs the receiver's pid (AF_UNIX: the kernel; TCP: the system's TCP table);
     * when it cannot be known, or WSADuplicateSocketW refuses, the socket goes the handle
     * way like any other handle. */
    for (i = 0; i < nfds; i++) {
        kinds[i] = ENTRY_HANDLE;
        copies[i] = NULL;
        if (is_socket((HANDLE)fds[i])) {
            if (!pid_looked_up) {
                receiver = peer_pid_of(s);
                pid_looked_up = 1;
            }
            if (receiver != 0 && infos == NULL)
                infos = malloc(sizeof *infos * (size_t)nfds);
            if (receiver != 0 && infos != NULL &&
                WSADuplicateSocketW((SOCKET)fds[i], receiver, &infos[nsockets]) == 0) {
                kinds[i] = ENTRY_SOCKET;
                nsockets++;
                continue;
            }
        }
        if (!DuplicateHandle(GetCurrentProcess(), (HANDLE)fds[i], GetCurrentProcess(),
                             &copies[i], 0, FALSE, DUPLICATE_SAME_ACCESS)) {
            DWORD err = GetLastError();
            close_copies(copies, kinds, i);
            free(infos);
            return fail(err == ERROR_INVALID_HANDLE ? FDSEND_EBADF : status_from_win32(err),
                        err);
        }
    }

    chunk = len > RECORD_MAX_DATA ? RECORD_MAX_DATA : (uint32_t)len;
    headlen = RECORD_HEADER + 8 * (size_t)nfds;
    if (nsockets > 0) {
        headlen += (size_t)nfds + SOCKET_INFO_SIZE * (size_t)nsockets;
        head = malloc(headlen);
        if (head == NULL) {
            close_copies(copies, kinds, nfds);
            free(infos);
            return fail(FDSEND_ENOBUFS, ERROR_NOT_ENOUGH_MEMORY);
        }
    }
    head[0] = RECORD_MAGIC0;
    head[1] = RECORD_MAGIC1;
    head[2] = RECORD_MAGIC2;
    head[3] = RECORD_MAGIC3;
    head[4] = nsockets > 0 ? RECORD_VERSION_SOCKETS : RECORD_VERSION;
    head[5] = 0;
    put_u16(head + 6, (uint32_t)nfds);
    put_u32(head + 8, chunk);
    put_u32(head + 12, GetCurrentProcessId());
    put_u64(head + 16, self_creation_time());
    put_u64(head + 24, (uint64_t)s);
    for (i = 0; i < nfds; i++)
        put_u64(head + RECORD_HEADER + 8 * (size_t)i,
                kinds[i] == ENTRY_HANDLE ? (uint64_t)(uintptr_t)copies[i] : 0);
    if (nsockets > 0) {
        /* WSAPROTOCOL_INFOW as it lies in memory: Windows is little-endian everywhere. */
        memcpy(head + RECORD_HEADER + 8 * (size_t)nfds, kinds, (size_t)nfds);
        memcpy(head + RECORD_HEADER + 9 * (size_t)nfds, infos,
               SOCKET_INFO_SIZE * (size_t)nsockets);
    }
    free(infos);
    total = headlen + chunk;

    /* Send the whole record. A stream must never hold half a record, so once any byte is
     * out, the rest follows even on a non-blocking socket (waiting for writability). */
    result = (int64_t)chunk;
    while (sent_total < total) {
        DWORD sent = 0;
        nbufs = 0;
        if (sent_total < headlen) {
            bufs[nbufs].buf = (char *)head + sent_total;
            bufs[nbufs].len = (ULONG)(headlen - sent_total);
            nbufs++;
            if (chunk > 0) {
                bufs[nbufs].buf = (char *)buf;
                bufs[nbufs].len = chunk;
                nbufs++;
            }
        } else {
            bufs[nbufs].buf = (char *)buf + (sent_total - headlen);
            bufs[nbufs].len = (ULONG)(total - sent_total);
            nbufs++;
        }
        if (WSASend(s, bufs, nbufs, &sent, 0, NULL, NULL) == SOCKET_ERROR) {
            DWORD err = (DWORD)WSAGetLastError();
            if (err == WSAEINTR)
                continue;
            /* Nothing is out yet: EAGAIN, unless a socket was already shared with the
             * receiver (that cannot be undone, and a retry would share it again), in which
             * case the record is finished like a half-sent one. */
            if (err == WSAEWOULDBLOCK && sent_total == 0 && nsockets == 0) {
                close_copies(copies, kinds, nfds);
                result = fail(FDSEND_EAGAIN, err);
                break;
            }
            if (err == WSAEWOULDBLOCK) {
                rc = wait_writable(s);
                if (rc == FDSEND_OK)
                    continue;
                err = (DWORD)fdsend_last_os_error();
            }
            /* Broken connection. Until the whole handle table is out, no receiver can take
             * the copies, so they are ours to close; after that they may already be
             * another process's handles, and closing the value could hit a reused one. */
            if (sent_total < headlen)
                close_copies(copies, kinds, nfds);
            result = fail(status_from_win32(err), err);
            break;
        }
        sent_total += sent;
    }
    if (head != small)
        free(head);
    if (result >= 0)
        fdsend_clear_error();
    return result;
}

int64_t fdsend_send_to(intptr_t sock, const char *path, const void *buf, size_t len,
                       const intptr_t *fds, int32_t nfds, uint32_t flags)
{
    (void)sock;
    (void)path;
    (void)buf;
    (void)len;
    (void)fds;
    (void)nfds;
    (void)flags;
    /* Windows has no AF_UNIX datagram sockets. */
    return fail(FDSEND_ENOTSUP, ERROR_NOT_SUPPORTED);
}

/* ---- Receiving ---------------------------------------------------------------------------- */

/* Compare two socket addresses (family, address, port / path). */
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
static int32_t verify_peer(SOCKET s, HANDLE proc, const record_header *h)
{
    struct sockaddr_storage local, peer;
    int ll, pl;
    socket_names(s, &local, &ll, &peer, &pl);
    if (ll > 0 && local.ss_family == AF_UNIX) {
        /* AF_UNIX (Windows 10 1803+): the kernel knows the peer's process id. */
        ULONG peer_pid = 0;
        DWORD got = 0;
        if (WSAIoctl(s, SIO_AF_UNIX_GETPEERPID, NULL, 0, &peer_pid, sizeof peer_pid, &got,
                     NULL, NULL) != 0)
            return fail_wsa();
        if (peer_pid != h->pid)
            return fail(FDSEND_EPROTO, ERROR_INVALID_DATA);
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
            return fail(FDSEND_EPROTO, ERROR_INVALID_DATA);
        socket_names((SOCKET)dup, &their_local, &tl, &their_peer, &tp);
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
        return ok ? FDSEND_OK : fail(FDSEND_EPROTO, ERROR_INVALID_DATA);
    }
    return fail(FDSEND_ENOTSUP, ERROR_NOT_SUPPORTED);
}

/* Open the sender named by the header, checking it is alive, is the same process that
 * wrote the header (creation time: pids are reused) and is our peer. */
static int32_t open_sender(SOCKET s, const record_header *h, HANDLE *proc_out)
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
            return fail(FDSEND_ESRCH, err);
        return fail(status_from_win32(err), err);
    }
    if (WaitForSingleObject(proc, 0) == WAIT_OBJECT_0 ||
        !GetProcessTimes(proc, &c, &e, &k, &u) ||
        ((uint64_t)c.dwHighDateTime << 32 | c.dwLowDateTime) != h->ctime) {
        CloseHandle(proc);
        return fail(FDSEND_ESRCH, ERROR_INVALID_PARAMETER);
    }
    rc = verify_peer(s, proc, h);
    if (rc != FDSEND_OK) {
        CloseHandle(proc);
        return rc;
    }
    *proc_out = proc;
    return FDSEND_OK;
}

/* A socket shared with us by WSADuplicateSocketW (info: an unaligned WSAPROTOCOL_INFOW),
 * made non-inheritable like every received handle. INVALID_SOCKET if Winsock refuses. */
static SOCKET socket_from_info(const unsigned char *blob)
{
    WSAPROTOCOL_INFOW info;
    SOCKET so;
    memcpy(&info, blob, sizeof info);
    /* Overlapped, as socket() makes them (.NET's async I/O needs it). */
    so = WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &info, 0,
                    WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (so == INVALID_SOCKET && WSAGetLastError() == WSAEINVAL) {
        /* Before Windows 7 SP1 there is no WSA_FLAG_NO_HANDLE_INHERIT. */
        so = WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &info, 0,
                        WSA_FLAG_OVERLAPPED);
        if (so != INVALID_SOCKET)
            SetHandleInformation((HANDLE)so, HANDLE_FLAG_INHERIT, 0);
    }
    return so;
}

/* Take the record's entries: the first cap into got[] (is_sock[] says which are sockets
 * made by WSASocketW), the rest closed. A handle entry is duplicated out of the sender
 * (closing the record's copy there); a socket entry (version 2) is made from its
 * WSAPROTOCOL_INFOW. An entry that cannot be taken (our handle table is full, or the
 * sender named a value that is no handle) is lost and reported as truncation, as the
 * kernel does on POSIX. Returns FDSEND_OK or a status (then nothing was taken). */
static int32_t take_handles(SOCKET s, const record_header *h, const unsigned char *table,
                            int32_t cap, HANDLE *got, unsigned char *is_sock, int32_t *taken,
                            int *truncated)
{
    HANDLE proc;
    uint32_t i, nsock = 0;
    const unsigned char *kinds = h->version == RECORD_VERSION_SOCKETS
                                     ? table + 8 * (size_t)h->nhandles : NULL;
    const unsigned char *infos = table + 9 * (size_t)h->nhandles;
    int32_t rc = open_sender(s, h, &proc);
    *taken = 0;
    if (rc != FDSEND_OK)
        return rc;
    for (i = 0; i < h->nhandles; i++) {
        if (kinds != NULL && kinds[i] == ENTRY_SOCKET) {
            /* Made even when not asked for: until then Winsock holds the shared socket
             * for us, so closing it is the only way to let it go. */
            SOCKET so = socket_from_info(infos + SOCKET_INFO_SIZE * (size_t)nsock++);
            if (so == INVALID_SOCKET) {
                *truncated = 1;
            } else if ((int32_t)i < cap) {
                is_sock[*taken] = 1;
                got[(*taken)++] = (HANDLE)so;
            } else {
                closesocket(so);
                *truncated = 1;
            }
            continue;
        }
        {
            HANDLE src = (HANDLE)(uintptr_t)get_u64(table + 8 * (size_t)i);
            if ((int32_t)i < cap) {
                HANDLE mine = NULL;
                /* The source is closed whether or not the duplication succeeds. */
                if (DuplicateHandle(proc, src, GetCurrentProcess(), &mine, 0, FALSE,
                                    DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE)) {
                    is_sock[*taken] = 0;
                    got[(*taken)++] = mine;
                } else {
                    *truncated = 1;
                }
            } else {
                /* Not asked for: close it in the sender rather than let it leak there.
                 * Taken here and closed, rather than DuplicateHandle with no target
                 * process: wine 8 leaves the source open then (FdSend.WinTests'
                 * truncation case saw it). */
                HANDLE dropped = NULL;
                if (DuplicateHandle(proc, src, GetCurrentProcess(), &dropped, 0, FALSE,
                                    DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE))
                    CloseHandle(dropped);
                *truncated = 1;
            }
        }
    }
    CloseHandle(proc);
    return FDSEND_OK;
}

/* recv() until n bytes arrived (they are known to be queued). Status or FDSEND_OK. */
static int32_t recv_exact(SOCKET s, unsigned char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        int r = recv(s, (char *)p + off, (int)(n - off), 0);
        if (r == SOCKET_ERROR) {
            if (WSAGetLastError() == WSAEINTR)
                continue;
            return fail_wsa();
        }
        if (r == 0)
            return fail(FDSEND_ECONNRESET, WSAECONNRESET);
        off += (size_t)r;
    }
    return FDSEND_OK;
}

/* Read data bytes of the current record: want bytes into dst (or 1 byte into a scratch
 * byte when dst is NULL). Returns bytes read (> 0) or a status. */
static int64_t recv_data(SOCKET s, void *dst, uint32_t want)
{
    unsigned char scratch;
    for (;;) {
        int r = recv(s, dst != NULL ? (char *)dst : (char *)&scratch,
                     dst != NULL ? (int)want : 1, 0);
        if (r == SOCKET_ERROR) {
            if (WSAGetLastError() == WSAEINTR)
                continue;
            return fail_wsa();
        }
        if (r == 0) /* the peer closed in the middle of a record */
            return fail(FDSEND_ECONNRESET, WSAECONNRESET);
        return r;
    }
}

/* Parse and validate a header. FDSEND_OK or FDSEND_EPROTO. */
static int32_t parse_header(const unsigned char *p, record_header *h)
{
    if (p[0] != RECORD_MAGIC0 || p[1] != RECORD_MAGIC1 || p[2] != RECORD_MAGIC2 ||
        p[3] != RECORD_MAGIC3 || (p[4] != RECORD_VERSION && p[4] != RECORD_VERSION_SOCKETS) ||
        p[5] != 0)
        return fail(FDSEND_EPROTO, ERROR_INVALID_DATA);
    h->version = p[4];
    h->nhandles = get_u16(p + 6);
    h->datalen = get_u32(p + 8);
    h->pid = get_u32(p + 12);
    h->ctime = get_u64(p + 16);
    h->sock = get_u64(p + 24);
    if (h->nhandles > FDSEND_MAX_FDS || h->datalen > RECORD_MAX_DATA ||
        (h->nhandles == 0 && h->datalen == 0))
        return fail(FDSEND_EPROTO, ERROR_INVALID_DATA);
    return FDSEND_OK;
}

/* fdsend_recv; *heap is set when a version 2 table did not fit the stack buffer (the
 * caller frees it). */
static int64_t recv_record(intptr_t sock, void *buf, size_t len, intptr_t *fds,
                           int32_t maxfds, int32_t *nfds, uint32_t *rflags, uint32_t flags,
                           unsigned char **heap)
{
    unsigned char small[RECORD_TABLE_MAX + 1];
    unsigned char *head = small;
    size_t headcap = sizeof small;
    HANDLE got[FDSEND_MAX_FDS];
    unsigned char is_sock[FDSEND_MAX_FDS];
    record_header h;
    SOCKET s = (SOCKET)sock;
    uint32_t remaining, want, out_flags = 0, k, e;
    int32_t rc, taken = 0, i, cap;
    int truncated = 0;
    int64_t n = 0;
    size_t need, tablelen = RECORD_HEADER;

    memset(&h, 0, sizeof h);
    if (nfds != NULL)
        *nfds = 0;
    if (rflags != NULL)
        *rflags = 0;
    if (sock < 0)
        return fail(FDSEND_EBADF, ERROR_INVALID_HANDLE);
    if ((buf == NULL && len > 0) || maxfds < 0 ||
        (maxfds > 0 && (fds == NULL || nfds == NULL)) ||
        (flags & ~(uint32_t)(FDSEND_DONTWAIT | FDSEND_UNIX_SOCKET)) != 0)
        return fail(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    rc = check_stream_socket(sock);
    if (rc != FDSEND_OK)
        return rc;
    if (flags & FDSEND_DONTWAIT) {
        rc = ready_now(s, 0);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return fail(FDSEND_EAGAIN, WSAEWOULDBLOCK);
    }

    /* The rest of a record already begun: plain data, no handles. */
    remaining = cont_get(s);
    if (remaining > 0) {
        want = len == 0 ? 1 : (len < remaining ? (uint32_t)len : remaining);
        n = recv_data(s, len == 0 ? NULL : buf, want);
        if (n < 0) {
            if (n != FDSEND_EAGAIN)
                cont_set(s, 0);
            return n;
        }
        cont_set(s, remaining - (uint32_t)n); /* shrinking an entry cannot fail */
        if (len == 0) {
            if (rflags != NULL)
                *rflags = FDSEND_RECV_DATA_TRUNCATED; /* a data byte was consumed */
            n = 0;
        }
        fdsend_clear_error();
        return n;
    }

    /* A new record: look at it before consuming anything, so that EAGAIN and EPROTO leave
     * the stream untouched. Header, table and (if there is data) one data byte must all be
     * there; then the reads below cannot block. */
    need = RECORD_HEADER;
    for (;;) {
        int r = recv(s, (char *)head, (int)headcap, MSG_PEEK);
        if (r == SOCKET_ERROR) {
            if (WSAGetLastError() == WSAEINTR)
                continue;
            return fail_wsa();
        }
        if (r == 0) {
            if (rflags != NULL)
                *rflags = FDSEND_RECV_END_OF_STREAM;
            fdsend_clear_error(); /* orderly end of stream */
            return 0;
        }
        if ((size_t)r < RECORD_HEADER) {
            /* Refuse a wrong beginning at once, rather than wait for a header never sent. */
            static const unsigned char lead[6] = {RECORD_MAGIC0, RECORD_MAGIC1, RECORD_MAGIC2,
                                                  RECORD_MAGIC3, RECORD_VERSION, 0};
            if (memcmp(head, lead, (size_t)r < sizeof lead ? (size_t)r : sizeof lead) != 0)
                return fail(FDSEND_EPROTO, ERROR_INVALID_DATA);
        } else {
            rc = parse_header(head, &h);
            if (rc != FDSEND_OK)
                return rc;
            tablelen = RECORD_HEADER + 8 * (size_t)h.nhandles;
            if (h.version == RECORD_VERSION_SOCKETS) {
                /* The kinds, then one WSAPROTOCOL_INFOW per socket entry. Until the kinds
                 * are here, tablelen is a lower bound that r does not reach. */
                tablelen += h.nhandles;
                if ((size_t)r >= tablelen) {
                    for (k = 0, e = 0; e < h.nhandles; e++) {
                        unsigned char kind = head[RECORD_HEADER + 8 * (size_t)h.nhandles + e];
                        if (kind == ENTRY_SOCKET)
                            k++;
                        else if (kind != ENTRY_HANDLE)
                            return fail(FDSEND_EPROTO, ERROR_INVALID_DATA);
                    }
                    tablelen += SOCKET_INFO_SIZE * (size_t)k;
                }
            }
            need = tablelen + (h.datalen > 0 ? 1 : 0);
            if (need > headcap) {
                /* A version 2 table is larger than the stack buffer: peek again into one
                 * large enough for the largest. */
                if (*heap == NULL && (*heap = malloc(RECORD_TABLE2_MAX + 1)) == NULL)
                    return fail(FDSEND_ENOBUFS, ERROR_NOT_ENOUGH_MEMORY);
                head = *heap;
                headcap = RECORD_TABLE2_MAX + 1;
                continue;
            }
        }
        if ((size_t)r >= need)
            break;
        /* The record is still arriving (it left the sender in one send, so the rest is on
         * its way). Windows cannot wait for "more than is queued"; poll briefly. */
        if (flags & FDSEND_DONTWAIT)
            return fail(FDSEND_EAGAIN, WSAEWOULDBLOCK);
        Sleep(1);
    }

    rc = recv_exact(s, head, tablelen);
    if (rc != FDSEND_OK)
        return rc;
    if (h.nhandles > 0) {
        cap = maxfds < FDSEND_MAX_FDS ? maxfds : FDSEND_MAX_FDS;
        rc = take_handles(s, &h, head + RECORD_HEADER, cap, got, is_sock, &taken, &truncated);
        if (rc != FDSEND_OK) {
            /* No handle for the caller; the record's data stays readable. */
            if (h.datalen > 0 && cont_set(s, h.datalen) != FDSEND_OK)
                rc = fail(FDSEND_ENOBUFS, ERROR_NOT_ENOUGH_MEMORY);
            return rc;
        }
    }
    if (h.datalen > 0) {
        want = len == 0 ? 1 : (len < h.datalen ? (uint32_t)len : h.datalen);
        n = recv_data(s, len == 0 ? NULL : buf, want);
        /* Whatever happened, the stream is now inside this record's data. */
        rc = cont_set(s, h.datalen - (uint32_t)(n < 0 ? 0 : n));
        if (n < 0 || rc != FDSEND_OK) {
            int32_t err = n < 0 ? (int32_t)n : fail(FDSEND_ENOBUFS, ERROR_NOT_ENOUGH_MEMORY);
            DWORD os = (DWORD)fdsend_last_os_error();
            for (i = 0; i < taken; i++) {
                if (is_sock[i])
                    closesocket((SOCKET)(uintptr_t)got[i]);
                else
                    CloseHandle(got[i]);
            }
            SetLastError(os);
            return err;
        }
        if (len == 0) {
            out_flags |= FDSEND_RECV_DATA_TRUNCATED;
            n = 0;
        }
    }
    if (truncated)
        out_flags |= FDSEND_RECV_FDS_TRUNCATED;
    for (i = 0; i < taken; i++)
        fds[i] = (intptr_t)got[i];
    if (nfds != NULL)
        *nfds = taken;
    if (rflags != NULL)
        *rflags = out_flags;
    fdsend_clear_error();
    return n;
}

int64_t fdsend_recv(intptr_t sock, void *buf, size_t len, intptr_t *fds, int32_t maxfds,
                    int32_t *nfds, uint32_t *rflags, uint32_t flags)
{
    unsigned char *heap = NULL;
    int64_t n = recv_record(sock, buf, len, fds, maxfds, nfds, rflags, flags, &heap);
    free(heap);
    return n;
}

/* ---- Peer credentials --------------------------------------------------------------------- */

int32_t fdsend_close_all(const intptr_t *fds, int32_t nfds)
{
    int32_t i, rc = FDSEND_OK;
    DWORD err = 0;
    if (nfds < 0 || (fds == NULL && nfds > 0))
        return fail(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    for (i = 0; i < nfds; i++) {
        if (fds[i] < 0)
            continue;
        if (!close_any((HANDLE)fds[i])) {
            rc = FDSEND_EBADF;
            err = GetLastError();
        }
    }
    if (rc != FDSEND_OK)
        return fail(rc, err);
    fdsend_clear_error();
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
    rc = check_stream_socket(sock);
    if (rc != FDSEND_OK)
        return rc;
    socket_names((SOCKET)sock, &local, &ll, &peer, &pl);
    if (pl == 0)
        return fail(FDSEND_ENOTCONN, WSAENOTCONN);
    if (ll > 0 && local.ss_family == AF_UNIX) {
        ULONG p = 0;
        DWORD got = 0;
        if (WSAIoctl((SOCKET)sock, SIO_AF_UNIX_GETPEERPID, NULL, 0, &p, sizeof p, &got, NULL,
                     NULL) != 0)
            return fail_wsa();
        peer_pid = p;
    } else if (ll > 0 && (local.ss_family == AF_INET || local.ss_family == AF_INET6)) {
        peer_pid = tcp_owner(&local, &peer);
    }
    /* pid 0 is the idle process, never a socket's owner: the system did not say. */
    if (peer_pid == 0)
        return fail(FDSEND_ENOTSUP, ERROR_NOT_SUPPORTED);
    if (pid != NULL)
        *pid = (int64_t)peer_pid;
    fdsend_clear_error();
    return FDSEND_OK;
}

/* Not built for Windows yet: its records already come whole from fdsend_recv. */
int64_t fdsend_recv_exact(intptr_t sock, void *buf, size_t len, intptr_t *fds,
                          int32_t maxfds, int32_t *nfds, uint32_t *rflags, uint32_t flags)
{
    (void)sock; (void)buf; (void)len; (void)fds; (void)maxfds; (void)flags;
    if (nfds != NULL)
        *nfds = 0;
    if (rflags != NULL)
        *rflags = 0;
    return fail(FDSEND_ENOTSUP, ERROR_NOT_SUPPORTED);
}
