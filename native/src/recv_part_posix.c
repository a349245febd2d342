/* fdsend_recv_part on POSIX: the kernel keeps a stream's position, so the caller's state
 * is only checked (as the library leaves it: all zero) and the call is fdsend_recv. The
 * Windows counterpart, where the state holds a record's data bytes still due, is in
 * native/src/win32/io.c.
 * SPDX-License-Identifier: MIT */
#include "fdsend_internal.h"

#include <errno.h>

int64_t fdsend_recv_part(intptr_t sock, fdsend_recv_state *state, void *buf, size_t len,
                         intptr_t *fds, int32_t maxfds, int32_t *nfds, uint32_t *rflags,
                         uint32_t flags)
{
    if (state == NULL || state->reserved[0] != 0 || state->reserved[1] != 0) {
        if (nfds != NULL)
            *nfds = 0;
        if (rflags != NULL)
            *rflags = 0;
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    }
    return fdsend_recv(sock, buf, len, fds, maxfds, nfds, rflags, flags);
}
