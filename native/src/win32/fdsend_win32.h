/* Internal declarations shared by libfdsend's Windows sources (native/src/win32/):
 *   record.c   the record codec (docs/windows-protocol.md): pure, no Winsock calls
 *   errors_win32.c  Win32 / Winsock error -> FDSEND_E* (beside errors_posix.c)
 *   socket.c   Winsock start-up, socket checks and names
 *   handles.c  handles and sockets into a record (sender) and out of one (receiver)
 *   peer.c     who is at the other end: TCP-table owner, AF_UNIX peer pid, sender proof
 *   wait.c     the one way to wait: a deadline per call from SO_RCVTIMEO / SO_SNDTIMEO
 *   io.c       fdsend_send / fdsend_recv / fdsend_recv_part: records on the stream (a
 *              record read in pieces keeps its count in the caller's fdsend_recv_state);
 *              the exact receive's piece (one record) for ../recv_exact.c's step and loop
 *   channel_win32.c  the message channel (fdsend_channel_*, fdsend_msg_*): frames of
 *              docs/wire-format.md as records, read with fdsend_recv_part driving the codec
 *   poller.c   the readiness engine (fdsend_poller_*) on WSAPoll (uses none of the above
 *              but errors and start-up)
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_WIN32_H
#define FDSEND_WIN32_H

#ifndef WIN32_LEAN_AND_MEAN
#  define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include "fdsend_internal.h"

#include <stddef.h>
#include <stdint.h>

/* ---- record.c: the record codec ------------------------------------------------------ */

#define FDSEND_REC_VERSION 1          /* handles only */
#define FDSEND_REC_VERSION_SOCKETS 2  /* at least one socket shared with WSADuplicateSocketW */
#define FDSEND_REC_HEADER 32
#define FDSEND_REC_ENTRY_HANDLE 0
#define FDSEND_REC_ENTRY_SOCKET 1
/* WSAPROTOCOL_INFOW: the same 628 bytes in 32- and 64-bit processes (no pointers). */
#define FDSEND_REC_SOCKET_INFO 628
/* The largest version 1 table, and the largest version 2 one (every entry a socket). */
#define FDSEND_REC_TABLE_MAX (FDSEND_REC_HEADER + 8 * FDSEND_MAX_FDS)
#define FDSEND_REC_TABLE2_MAX \
    (FDSEND_REC_HEADER + (8 + 1 + FDSEND_REC_SOCKET_INFO) * FDSEND_MAX_FDS)
/* One record carries at most 1 GiB of data; a longer fdsend_send is a partial send. */
#define FDSEND_REC_MAX_DATA ((uint32_t)1 << 30)

typedef struct fdsend_rec_header {
    uint32_t version;
    uint32_t nhandles;
    uint32_t datalen;
    uint32_t pid;
    uint64_t ctime;
    uint64_t sock;
} fdsend_rec_header;

/** Write h's 32 bytes at p (the caller chose version, counts and sender fields). */
void fdsend_rec_put_header(unsigned char *p, const fdsend_rec_header *h);

/** Write entry i's 8-byte value into a table that starts right after the header. */
void fdsend_rec_put_entry(unsigned char *table, uint32_t i, uint64_t value);

/** Entry i's value from a table that starts right after the header. */
uint64_t fdsend_rec_entry(const unsigned char *table, uint32_t i);

/** What the first avail bytes of a stream say about the record starting there. */
typedef enum fdsend_rec_scan {
    FDSEND_REC_BAD = -1,  /* a protocol error (FDSEND_EPROTO, nothing consumed) */
    FDSEND_REC_MORE = 0,  /* not enough bytes to know: need at least *need bytes */
    FDSEND_REC_READY = 1  /* header and table present: *h, *tablelen filled */
} fdsend_rec_scan;

/**
 * Decode the record at p[0 .. avail): refuses a wrong beginning as soon as its bytes are
 * there, then checks the header and (version 2) the entry kinds. On FDSEND_REC_READY,
 * *tablelen is header + table (the data follows it); on FDSEND_REC_MORE, *need is a lower
 * bound of the bytes needed (grows as more is known). Pure.
 */
fdsend_rec_scan fdsend_rec_scan_bytes(const unsigned char *p, size_t avail,
                                      fdsend_rec_header *h, size_t *tablelen,
                                      size_t *need);

/** Header + table length of a record of n entries of which k are sockets. */
size_t fdsend_rec_table_len(uint32_t n, uint32_t k);

/* ---- errors_win32.c --------------------------------------------------------------- */

/** Map a Win32 or Winsock error to an FDSEND_E* code (one switch). */
int32_t fdsend_status_from_win32(DWORD err);

/** Record err as this thread's OS error (GetLastError too) and return code. */
int32_t fdsend_fail_win32(int32_t code, DWORD err);

/** fdsend_fail_win32 for WSAGetLastError(), mapped. */
int32_t fdsend_fail_wsa(void);

/* ---- socket.c ----------------------------------------------------------------------- */

/** Winsock started once for the library (never released). */
void fdsend_win_startup(void);

/** FDSEND_OK if sock is a SOCK_STREAM socket; a status otherwise. */
int32_t fdsend_win_check_stream(intptr_t sock);

/** 1 if h is a socket to this process's Winsock (SO_TYPE answers). */
int fdsend_win_is_socket(HANDLE h);

/** s's two addresses; a length of 0 where the system did not say. */
void fdsend_win_socket_names(SOCKET s, struct sockaddr_storage *local, int *local_len,
                             struct sockaddr_storage *peer, int *peer_len);

/* ---- peer.c ------------------------------------------------------------------------- */

/** The process at the other end of the connected socket s (AF_UNIX: the kernel; TCP: the
 *  system's TCP table), or 0 if it cannot be known. */
DWORD fdsend_win_peer_pid(SOCKET s);

/** This process's creation time (FILETIME as 100 ns since 1601), 0 if unknown. */
uint64_t fdsend_win_self_creation_time(void);

/** Open the sender named by h, checking it is alive, wrote the header (creation time) and
 *  is the peer of s. *proc: PROCESS_DUP_HANDLE access, the caller closes it. Fails only
 *  with a refusal (fdsend_recv_refused): FDSEND_ESRCH (gone, or another process under its
 *  pid), FDSEND_EPROTO (not the peer), FDSEND_EACCES (cannot be opened or proven, the OS's
 *  error recorded). */
int32_t fdsend_win_open_sender(SOCKET s, const fdsend_rec_header *h, HANDLE *proc);

/* ---- handles.c ---------------------------------------------------------------------- */

/** The entries of a record being sent: copies (kind handle) or shared sockets. */
typedef struct fdsend_win_entries {
    int32_t n;
    int32_t nsockets;
    unsigned char kinds[FDSEND_MAX_FDS];
    HANDLE copies[FDSEND_MAX_FDS];
    WSAPROTOCOL_INFOW *infos; /* nsockets of them (heap), or NULL */
} fdsend_win_entries;

/** Make the record's entries for fds[0..n) sent on s. FDSEND_OK, or a status (nothing
 *  left open). */
int32_t fdsend_win_entries_make(fdsend_win_entries *e, SOCKET s, const intptr_t *fds,
                                int32_t n);

/** Close the record's own copies (kind handle); a shared socket cannot be taken back. */
void fdsend_win_entries_close(fdsend_win_entries *e);

/** Free what fdsend_win_entries_make allocated (not the copies). */
void fdsend_win_entries_free(fdsend_win_entries *e);

/** Take a received record's entries: the first cap into got[] (is_sock[] marks sockets),
 *  the rest closed; *truncated set when one was dropped or could not be taken. */
int32_t fdsend_win_entries_take(SOCKET s, const fdsend_rec_header *h,
                                const unsigned char *table, int32_t cap, HANDLE *got,
                                unsigned char *is_sock, int32_t *taken, int *truncated);

/** Close what fdsend_win_entries_take handed out (on an error path). */
void fdsend_win_close_taken(const HANDLE *got, const unsigned char *is_sock, int32_t n);

/* ---- io.c --------------------------------------------------------------------------- */

/** 1 if st (a fdsend_recv_part state) is inside a record: data bytes of it are still due. */
int fdsend_win_state_in_record(const fdsend_recv_state *st);

/* ---- wait.c: the one way libfdsend waits on Windows ---------------------------------- */

typedef struct fdsend_win_deadline {
    ULONGLONG start;    /* microseconds on QueryPerformanceCounter at the start of the call */
    int64_t timeout_ms; /* -1: not read yet; 0: none (wait for ever); else the socket's */
    int for_write;      /* SO_SNDTIMEO and POLLWRNORM, else SO_RCVTIMEO and POLLRDNORM */
    int dontwait;       /* FDSEND_DONTWAIT: never wait */
} fdsend_win_deadline;

/** Start a call's deadline (read lazily from the socket on the first wait). */
void fdsend_win_deadline_start(fdsend_win_deadline *d, int for_write, int dontwait);

/** Restart the deadline from now (bytes moved: a call that goes on waits for a whole
 *  timeout again, as a stream frame in progress does). */
void fdsend_win_deadline_renew(fdsend_win_deadline *d);

/** Milliseconds left of d (the socket's timeout read on first use): -1 for no limit, 0
 *  when it has passed. For the waits that are not on the socket (a channel's lock). */
int fdsend_win_deadline_left(fdsend_win_deadline *d, SOCKET s);

/** Wait until s is readable / writable (d->for_write), the deadline passes
 *  (FDSEND_ETIMEDOUT) or, with dontwait, at once (FDSEND_EAGAIN when not ready). */
int32_t fdsend_win_wait(SOCKET s, fdsend_win_deadline *d);

/** Wait, within the deadline, for more than have bytes to be queued on s (a record that
 *  left the sender in one piece and is still arriving). FDSEND_OK, FDSEND_ETIMEDOUT,
 *  FDSEND_EAGAIN (dontwait), FDSEND_ECONNRESET (the peer closed mid-record) or a status. */
int32_t fdsend_win_wait_more(SOCKET s, size_t have, fdsend_win_deadline *d);

/** A read inside something already started (fdsend_recv_exact's bytes) failed with the
 *  recorded code rc: FDSEND_EAGAIN waits until s is readable within d (whatever the
 *  socket mode or FDSEND_DONTWAIT) and gives FDSEND_OK (read again); a timeout (that
 *  wait's or rc) becomes FDSEND_EPROTO with WSAETIMEDOUT; any other code is returned. */
int32_t fdsend_win_wait_inside(SOCKET s, int32_t rc, fdsend_win_deadline *d);

#endif /* FDSEND_WIN32_H */
