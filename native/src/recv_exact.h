/* The exact receive (fdsend_recv_exact_step, fdsend_recv_exact; fdsend.h), every platform:
 * its rules (recv_exact.c), the platform's two halves (fdsend_exact_ops: fdsend_posix.c,
 * win32/io.c) and, inline here so that each
 * platform's file compiles them with its own halves (no call more than the loop needs on
 * POSIX's receive path), the step and fdsend_recv_exact's blocking loop.
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_RECV_EXACT_H
#define FDSEND_RECV_EXACT_H

#include "fdsend_internal.h"

/* ---- The rules (recv_exact.c) ---- */

/** The checks of a step's arguments and state other than the socket's validity:
 *  FDSEND_EINVAL (state NULL, a flag, buf NULL with len > 0, maxfds < 0, fds NULL with
 *  maxfds > 0, a state that is not as the library left it for this socket, buffer and
 *  maxfds, or one that failed) or FDSEND_OK. Nothing is recorded. */
int32_t fdsend_exact_args(intptr_t sock, const fdsend_exact_state *st, const void *buf,
                          size_t len, const intptr_t *fds, int32_t maxfds, uint32_t flags);

/** 1 once the socket of st has been checked (a stream socket) and recorded in st. */
int fdsend_exact_checked(const fdsend_exact_state *st);

/** Record in st that sock, a stream socket, is the one its receive reads. */
void fdsend_exact_begin(fdsend_exact_state *st, intptr_t sock);

/** 1 if the receive of st is complete (len bytes, or the end of the stream at once). */
int fdsend_exact_finished(const fdsend_exact_state *st, size_t len);

/** Where the next piece's descriptors go and how many it may keep: the piece's receive
 *  stores at most this many at fds[st->nfds ..] (NULL there when 0), in arrival order, and
 *  closes the others, reporting them as lost (truncated). Once the receive holds maxfds,
 *  every further descriptor is closed that way. */
static inline int32_t fdsend_exact_room(const fdsend_exact_state *st, int32_t maxfds)
{
    int32_t room = maxfds - st->nfds;
    return room < FDSEND_MAX_FDS ? room : FDSEND_MAX_FDS;
}

/** Merge one received piece into st: n bytes (already stored at buf[st->received ..]),
 *  ngot descriptors (already stored at fds[st->nfds ..], at most fdsend_exact_room),
 *  truncated (the piece lost descriptors), eos (the piece was the end of the stream).
 *  FDSEND_EXACT_DONE, FDSEND_OK (more is due) or FDSEND_EPROTO (the stream ended after the
 *  first byte: FDSEND_RECV_END_OF_STREAM set in st->rflags; the caller then calls
 *  fdsend_exact_abandon, which closes the piece's descriptors too). Nothing is recorded. */
int32_t fdsend_exact_merge(fdsend_exact_state *st, size_t len, size_t n, int32_t ngot,
                           int truncated, int eos);

/** The receive of st failed: close fds[0 .. st->nfds), set those slots to -1, mark st
 *  failed (st->nfds and st->received are kept for the caller's message). The recorded
 *  error and errno are left as they were. Idempotent. */
void fdsend_exact_abandon(fdsend_exact_state *st, intptr_t *fds);

/* The platform's half of a step and of fdsend_recv_exact's loop (fdsend_posix.c,
 * win32/io.c): its fdsend_exact_io (the socket, the caller's FDSEND_DONTWAIT and the call's
 * one deadline) and its two operations on it. The platform passes its own static const
 * fdsend_exact_ops, so the compiler calls (and may inline) them directly. */
typedef struct fdsend_exact_io fdsend_exact_io;

typedef struct fdsend_exact_ops {
    /** One receive into buf[st->received .. len), merged into st (fdsend_exact_merge):
     *  FDSEND_EXACT_DONE, FDSEND_OK (more is due), or a recorded negative code with the
     *  piece's own descriptors closed (FDSEND_EAGAIN and FDSEND_ETIMEDOUT consumed nothing;
     *  any other code leaves the caller to abandon st). first: the call's first receive,
     *  which starts its deadline and waits as the caller asked (FDSEND_DONTWAIT: not at
     *  all, as a step); otherwise a receive inside the bytes that never waits for a first
     *  byte (FDSEND_EAGAIN: nothing is queued). */
    int32_t (*piece)(fdsend_exact_io *io, fdsend_exact_state *st, unsigned char *buf,
                     size_t len, intptr_t *fds, int32_t maxfds, int first);
    /** A piece inside the bytes failed with rc: FDSEND_EAGAIN waits until the socket is
     *  readable within what is left of the call's deadline and gives FDSEND_OK (receive
     *  again); a timeout (that wait's or rc) gives FDSEND_EPROTO, recorded with the OS's
     *  timeout error; any other code is returned as it is. */
    int32_t (*wait_inside)(fdsend_exact_io *io, int32_t rc);
} fdsend_exact_ops;

/** fdsend_recv_exact_step after its checks (st begun on io's socket): one piece that never
 *  waits, the descriptors closed if it failed (fdsend.h's results). */
static inline int32_t fdsend_exact_step_io(const fdsend_exact_ops *ops, fdsend_exact_io *io,
                                           fdsend_exact_state *st,
                                           unsigned char *buf, size_t len, intptr_t *fds,
                                           int32_t maxfds)
{
    if (!fdsend_exact_finished(st, len)) {
        int32_t rc = ops->piece(io, st, buf, len, fds, maxfds, 1);
        if (rc == FDSEND_EAGAIN)
            return rc; /* nothing consumed: the receive goes on */
        if (rc < 0) {
            fdsend_exact_abandon(st, fds);
            return rc;
        }
    }
    fdsend_clear_error();
    return fdsend_exact_finished(st, len) ? FDSEND_EXACT_DONE : FDSEND_OK;
}

/** fdsend_recv_exact after its checks (st fresh and begun on io's socket): the loop over
 *  the pieces; st->received (len, or 0 at the end of the stream; len 0: at once, nothing
 *  read) with *nfds and *rflags, or a recorded negative code with every descriptor of the
 *  call closed. The first piece in the caller's mode (a blocking socket may wait in the
 *  kernel, within SO_RCVTIMEO); once a byte is in, pieces that never wait for a first byte
 *  and, between them, the platform's wait for what is left of the call's one deadline (a
 *  timeout there: FDSEND_EPROTO). */
static inline int64_t fdsend_exact_run(const fdsend_exact_ops *ops, fdsend_exact_io *io,
                                       fdsend_exact_state *st,
                                       unsigned char *buf, size_t len, intptr_t *fds,
                                       int32_t maxfds, int32_t *nfds, uint32_t *rflags)
{
    if (len > 0) {
        int32_t rc = ops->piece(io, st, buf, len, fds, maxfds, 1);
        while (rc == FDSEND_OK) {
            rc = ops->piece(io, st, buf, len, fds, maxfds, 0);
            if (rc < 0)
                rc = ops->wait_inside(io, rc); /* FDSEND_EAGAIN: wait, then FDSEND_OK */
        }
        if (rc < 0) { /* FDSEND_EAGAIN and FDSEND_ETIMEDOUT come before the first byte */
            fdsend_exact_abandon(st, fds); /* every descriptor of the call */
            return rc;
        }
    }
    if (nfds != NULL)
        *nfds = st->nfds;
    if (rflags != NULL)
        *rflags = st->rflags;
    fdsend_clear_error();
    return (int64_t)st->received;
}

#endif /* FDSEND_RECV_EXACT_H */
