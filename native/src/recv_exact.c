/* The rules of receiving exactly N bytes with their descriptors (fdsend_recv_exact_step,
 * fdsend_recv_exact; fdsend.h), on every platform: the checks of a step's arguments and
 * state, the merge of one received piece into the caller's buffer, descriptor array and
 * state; the step itself and fdsend_recv_exact's blocking loop over it are recv_exact.h's
 * (inline in each platform's file, over its fdsend_exact_ops: fdsend_posix.c, win32/io.c).
 * SPDX-License-Identifier: MIT */
#include "recv_exact.h"

#include <errno.h>

/* state->reserved[0]: the socket the receive began on, plus 1 (0: not checked yet);
 * state->reserved[1]: where it ended. */
#define EXACT_RUNNING 0
#define EXACT_FINISHED 1
#define EXACT_FAILED 2

#define EXACT_KNOWN_RFLAGS ((uint32_t)(FDSEND_RECV_FDS_TRUNCATED | FDSEND_RECV_END_OF_STREAM))

int32_t fdsend_exact_args(intptr_t sock, const fdsend_exact_state *st, const void *buf,
                          size_t len, const intptr_t *fds, int32_t maxfds, uint32_t flags)
{
    if (st == NULL || flags != 0 || (buf == NULL && len > 0) || maxfds < 0 ||
        (fds == NULL && maxfds > 0))
        return FDSEND_EINVAL;
    if (st->received > (uint64_t)len || st->nfds < 0 || st->nfds > maxfds ||
        (st->rflags & ~EXACT_KNOWN_RFLAGS) != 0 ||
        ((st->rflags & FDSEND_RECV_END_OF_STREAM) != 0 && st->received > 0) ||
        st->reserved[1] > EXACT_FINISHED ||
        (st->reserved[0] != 0 && st->reserved[0] != (uint64_t)sock + 1))
        return FDSEND_EINVAL;
    return FDSEND_OK;
}

int fdsend_exact_checked(const fdsend_exact_state *st)
{
    return st->reserved[0] != 0;
}

void fdsend_exact_begin(fdsend_exact_state *st, intptr_t sock)
{
    st->reserved[0] = (uint64_t)sock + 1;
}

int fdsend_exact_finished(const fdsend_exact_state *st, size_t len)
{
    return st->received == (uint64_t)len || (st->rflags & FDSEND_RECV_END_OF_STREAM) != 0;
}

/* Close fds[0 .. n) leaving this thread's recorded error and errno as they were. */
static void close_quietly(intptr_t *fds, int32_t n)
{
    int saved_os = fdsend_thread_os_error;
    int saved_errno = errno;
    if (n > 0)
        (void)fdsend_close_all(fds, n);
    fdsend_thread_os_error = saved_os;
    errno = saved_errno;
}

int32_t fdsend_exact_merge(fdsend_exact_state *st, size_t len, size_t n, int32_t ngot,
                           int truncated, int eos)
{
    st->nfds += ngot;
    if (truncated)
        st->rflags |= FDSEND_RECV_FDS_TRUNCATED;
    if (eos) {
        st->rflags |= FDSEND_RECV_END_OF_STREAM;
        if (st->received > 0)
            return FDSEND_EPROTO; /* the stream ended inside the bytes */
        st->reserved[1] = EXACT_FINISHED;
        return FDSEND_EXACT_DONE;
    }
    st->received += (uint64_t)n;
    if (st->received < (uint64_t)len)
        return FDSEND_OK;
    st->reserved[1] = EXACT_FINISHED;
    return FDSEND_EXACT_DONE;
}

void fdsend_exact_abandon(fdsend_exact_state *st, intptr_t *fds)
{
    int32_t i;
    if (st->reserved[1] == EXACT_FAILED)
        return;
    close_quietly(fds, st->nfds);
    for (i = 0; i < st->nfds; i++)
        fds[i] = -1;
    st->reserved[1] = EXACT_FAILED;
}
