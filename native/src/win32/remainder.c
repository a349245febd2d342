/* The bytes of a record still due on a socket whose reader took the record's data in
 * pieces.
 *
 * Why this is state at all: fdsend_recv(sock, buf, len, ...) lets a caller read a stream
 * in pieces (len smaller than what was sent), as recv() does on POSIX. On Windows the
 * record header that says how long the data is has been consumed with the first piece,
 * and Winsock has no way to put bytes back or to hang a value on a socket. The public
 * API names only the socket, so the count has to be found from the socket value. It is
 * kept here, and nowhere else:
 *  - only while a record is unfinished (an entry exists from a short read to the read
 *    that finishes that record);
 *  - each entry remembers the socket's two addresses, so a socket value closed and
 *    reused for another connection does not inherit it (the entry is dropped);
 *  - bounded (REMAINDER_MAX sockets with an unfinished record at once; beyond that the
 *    short read fails with FDSEND_ENOBUFS).
 * The count lives in this one small table because the stream cannot carry it and the API
 * has no receiver object to hold it (docs/windows-protocol.md, "Reading a record in
 * pieces").
 * SPDX-License-Identifier: MIT */
#include "fdsend_win32.h"

#include <stdlib.h>
#include <string.h>

typedef struct remainder {
    SOCKET sock;
    uint32_t remaining;
    int local_len, peer_len;
    struct sockaddr_storage local, peer;
} remainder;

#define REMAINDER_MAX 65536

static SRWLOCK lock = SRWLOCK_INIT;
static remainder *table;
static size_t count, capacity;

static int same_names(const remainder *c, SOCKET s)
{
    struct sockaddr_storage local, peer;
    int ll, pl;
    fdsend_win_socket_names(s, &local, &ll, &peer, &pl);
    return ll == c->local_len && pl == c->peer_len &&
           memcmp(&local, &c->local, (size_t)ll) == 0 &&
           memcmp(&peer, &c->peer, (size_t)pl) == 0;
}

uint32_t fdsend_win_remainder_get(SOCKET s)
{
    uint32_t remaining = 0;
    size_t i;
    int stale = 0;
    AcquireSRWLockShared(&lock);
    for (i = 0; i < count; i++) {
        if (table[i].sock == s) {
            if (same_names(&table[i], s))
                remaining = table[i].remaining;
            else
                stale = 1;
            break;
        }
    }
    ReleaseSRWLockShared(&lock);
    if (stale) {
        AcquireSRWLockExclusive(&lock);
        for (i = 0; i < count; i++) {
            if (table[i].sock == s && !same_names(&table[i], s)) {
                table[i] = table[--count];
                break;
            }
        }
        ReleaseSRWLockExclusive(&lock);
    }
    return remaining;
}

int32_t fdsend_win_remainder_set(SOCKET s, uint32_t remaining)
{
    int32_t rc = FDSEND_OK;
    size_t i;
    AcquireSRWLockExclusive(&lock);
    for (i = 0; i < count; i++) {
        if (table[i].sock == s)
            break;
    }
    if (remaining == 0) {
        if (i < count)
            table[i] = table[--count];
    } else {
        if (i == count) {
            if (count == capacity) {
                size_t cap = capacity ? capacity * 2 : 16;
                remainder *t = cap <= REMAINDER_MAX ? realloc(table, cap * sizeof *t) : NULL;
                if (t == NULL) {
                    rc = FDSEND_ENOBUFS;
                    goto out;
                }
                table = t;
                capacity = cap;
            }
            table[i].sock = s;
            fdsend_win_socket_names(s, &table[i].local, &table[i].local_len, &table[i].peer,
                                    &table[i].peer_len);
            count++;
        }
        table[i].remaining = remaining;
    }
out:
    ReleaseSRWLockExclusive(&lock);
    return rc;
}
