/* Handles and sockets into a record (the sender's copies, or sockets shared with
 * WSADuplicateSocketW) and out of one (DuplicateHandle out of the sender, WSASocketW from
 * a WSAPROTOCOL_INFOW), and fdsend_close_all.
 * SPDX-License-Identifier: MIT */
#include "fdsend_win32.h"

#include <stdlib.h>
#include <string.h>

typedef char socket_info_size_check[sizeof(WSAPROTOCOL_INFOW) == FDSEND_REC_SOCKET_INFO ? 1 : -1];

/* Close a handle this library made or received: closesocket for a socket (Winsock's own
 * state goes with it), CloseHandle otherwise. */
static BOOL close_any(HANDLE h)
{
    if (fdsend_win_is_socket(h))
        return closesocket((SOCKET)(uintptr_t)h) == 0;
    return CloseHandle(h);
}

void fdsend_win_entries_close(fdsend_win_entries *e)
{
    int32_t i;
    for (i = 0; i < e->n; i++) {
        if (e->kinds[i] == FDSEND_REC_ENTRY_HANDLE && e->copies[i] != NULL)
            CloseHandle(e->copies[i]);
        e->copies[i] = NULL;
    }
}

void fdsend_win_entries_free(fdsend_win_entries *e)
{
    free(e->infos);
    e->infos = NULL;
}

int32_t fdsend_win_entries_make(fdsend_win_entries *e, SOCKET s, const intptr_t *fds,
                                int32_t n)
{
    DWORD receiver = 0;
    int pid_looked_up = 0;
    int32_t i;
    e->n = 0;
    e->nsockets = 0;
    e->infos = NULL;
    /* The caller keeps its handles: the record carries fresh copies, which the receiver
     * takes out of this process with DUPLICATE_CLOSE_SOURCE. Duplicating also proves
     * each value is an open handle.
     * A socket is shared the way Winsock documents instead (a duplicated SOCKET handle is
     * not a socket to every Winsock: wine's answers WSAENOTSOCK): WSADuplicateSocketW for
     * the receiver's process id, which the record then carries as a WSAPROTOCOL_INFOW.
     * That needs the receiver's pid (AF_UNIX: the kernel; TCP: the system's TCP table);
     * when it cannot be known, or WSADuplicateSocketW refuses, the socket goes the handle
     * way like any other handle. */
    for (i = 0; i < n; i++) {
        e->kinds[i] = FDSEND_REC_ENTRY_HANDLE;
        e->copies[i] = NULL;
        e->n = i + 1;
        if (fdsend_win_is_socket((HANDLE)fds[i])) {
            if (!pid_looked_up) {
                receiver = fdsend_win_peer_pid(s);
                pid_looked_up = 1;
            }
            if (receiver != 0 && e->infos == NULL)
                e->infos = malloc(sizeof *e->infos * (size_t)n);
            if (receiver != 0 && e->infos != NULL &&
                WSADuplicateSocketW((SOCKET)fds[i], receiver, &e->infos[e->nsockets]) == 0) {
                e->kinds[i] = FDSEND_REC_ENTRY_SOCKET;
                e->nsockets++;
                continue;
            }
        }
        if (!DuplicateHandle(GetCurrentProcess(), (HANDLE)fds[i], GetCurrentProcess(),
                             &e->copies[i], 0, FALSE, DUPLICATE_SAME_ACCESS)) {
            DWORD err = GetLastError();
            e->copies[i] = NULL;
            fdsend_win_entries_close(e);
            fdsend_win_entries_free(e);
            return fdsend_fail_win32(err == ERROR_INVALID_HANDLE ? FDSEND_EBADF
                                                                 : fdsend_status_from_win32(err),
                                     err);
        }
    }
    return FDSEND_OK;
}

/* A socket shared with us by WSADuplicateSocketW (blob: an unaligned WSAPROTOCOL_INFOW),
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

/* Take one handle entry out of the sender proc; *mine NULL when it cannot be taken (then
 * the source is closed anyway) or when keep is 0 (not asked for: closed in the sender
 * rather than leaked there; taken here and closed, rather than DuplicateHandle with no
 * target process: wine 8 leaves the source open then, as FdSend.WinTests' truncation
 * case saw). */
static void take_handle(HANDLE proc, HANDLE src, int keep, HANDLE *mine)
{
    HANDLE got = NULL;
    *mine = NULL;
    /* The source is closed whether or not the duplication succeeds. */
    if (!DuplicateHandle(proc, src, GetCurrentProcess(), &got, 0, FALSE,
                         DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE))
        return;
    if (keep)
        *mine = got;
    else
        CloseHandle(got);
}

int32_t fdsend_win_entries_take(SOCKET s, const fdsend_rec_header *h,
                                const unsigned char *table, int32_t cap, HANDLE *got,
                                unsigned char *is_sock, int32_t *taken, int *truncated)
{
    HANDLE proc;
    uint32_t i, nsock = 0;
    const unsigned char *kinds = h->version == FDSEND_REC_VERSION_SOCKETS
                                     ? table + 8 * (size_t)h->nhandles : NULL;
    const unsigned char *infos = table + 9 * (size_t)h->nhandles;
    int32_t rc = fdsend_win_open_sender(s, h, &proc);
    *taken = 0;
    if (rc != FDSEND_OK)
        return rc;
    /* An entry that cannot be taken (our handle table is full, or the sender named a
     * value that is no handle) is lost and reported as truncation, as the kernel does on
     * POSIX. */
    for (i = 0; i < h->nhandles; i++) {
        int keep = (int32_t)i < cap;
        if (kinds != NULL && kinds[i] == FDSEND_REC_ENTRY_SOCKET) {
            /* Made even when not asked for: until then Winsock holds the shared socket
             * for us, so closing it is the only way to let it go. */
            SOCKET so = socket_from_info(infos + FDSEND_REC_SOCKET_INFO * (size_t)nsock++);
            if (so != INVALID_SOCKET && keep) {
                is_sock[*taken] = 1;
                got[(*taken)++] = (HANDLE)so;
                continue;
            }
            if (so != INVALID_SOCKET)
                closesocket(so);
            *truncated = 1;
            continue;
        }
        {
            HANDLE mine;
            take_handle(proc, (HANDLE)(uintptr_t)fdsend_rec_entry(table, i), keep, &mine);
            if (mine != NULL) {
                is_sock[*taken] = 0;
                got[(*taken)++] = mine;
            } else {
                *truncated = 1;
            }
        }
    }
    CloseHandle(proc);
    return FDSEND_OK;
}

void fdsend_win_close_taken(const HANDLE *got, const unsigned char *is_sock, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; i++) {
        if (is_sock[i])
            closesocket((SOCKET)(uintptr_t)got[i]);
        else
            CloseHandle(got[i]);
    }
}

int32_t fdsend_close_all(const intptr_t *fds, int32_t nfds)
{
    int32_t i, rc = FDSEND_OK;
    DWORD err = 0;
    if (nfds < 0 || (fds == NULL && nfds > 0))
        return fdsend_fail_win32(FDSEND_EINVAL, ERROR_INVALID_PARAMETER);
    for (i = 0; i < nfds; i++) {
        if (fds[i] < 0)
            continue;
        if (!close_any((HANDLE)fds[i])) {
            rc = FDSEND_EBADF;
            err = GetLastError();
        }
    }
    if (rc != FDSEND_OK)
        return fdsend_fail_win32(rc, err);
    fdsend_clear_error();
    return FDSEND_OK;
}
