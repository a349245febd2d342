/* Internal declarations shared by libfdsend's sources and its white-box tests.
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_INTERNAL_H
#define FDSEND_INTERNAL_H

#include "fdsend.h"

#include <stddef.h>
#include <stdint.h>

/** Bytes a stream reader may read ahead at a frame boundary (fdsend_frame_ahead_size, the
 *  codec's rule; docs/wire-format.md 4.1): only where the kernel is known (and tested,
 *  tests/native-msg/test_msg_ahead.c) never to hand one read the descriptors of two writes,
 *  nor those of a write whose first byte the read did not take. */
#if defined(__linux__)
#  define FDSEND_FRAME_AHEAD_SIZE 4096
#else
#  define FDSEND_FRAME_AHEAD_SIZE 0
#endif

/** Called by the parser for every descriptor that cannot be handed to the caller. */
typedef void (*fdsend_excess_fn)(int fd, void *ctx);

/** What fdsend_parse_rights found in a control buffer. */
typedef struct fdsend_parse_result {
    int32_t taken;     /**< SCM_RIGHTS descriptors stored in out[] */
    int32_t excess;    /**< SCM_RIGHTS descriptors passed to the excess callback */
    int32_t other;     /**< descriptors of other kinds (Linux SCM_PIDFD) passed to the
                            excess callback; they are not the peer's, so not truncation */
    int32_t malformed; /**< 1 if a header was cut short or lied about its length */
} fdsend_parse_result;

/**
 * Walk every control message header in control[0 .. controllen) (a byte buffer of any
 * alignment; nothing is read outside it), collect the descriptors of every
 * SOL_SOCKET/SCM_RIGHTS message, store the first maxout in out[] (maxout < 0 or out ==
 * NULL count as 0) and hand every other one to excess(). Descriptors the kernel adds on
 * its own (Linux's SCM_PIDFD, when the receiver enabled SO_PASSPIDFD) also go to
 * excess(), counted in .other: fdsend_recv has no way to hand them out, so it closes them.
 * Headers of other levels/types are skipped. Every length is clamped to the buffer with
 * overflow-safe arithmetic; a header whose cmsg_len does not even cover the header, or
 * reaches past the buffer, ends the walk and sets malformed (the descriptors inside the
 * buffer are still collected). control == NULL gives an all-zero result. Pure apart from
 * calling excess() (which may be NULL).
 */
fdsend_parse_result fdsend_parse_rights(const unsigned char *control, size_t controllen,
                                        int *out, int32_t maxout,
                                        fdsend_excess_fn excess, void *ctx);

/** Map an errno value to an FDSEND_E* code (one switch; never returns FDSEND_OK).
 *  POSIX only (errors_posix.c). */
int32_t fdsend_status_from_errno(int err);

/** Map an OS error as fdsend_last_os_error() records it (errno on POSIX, a Win32 or
 *  Winsock error on Windows: win32/errors_win32.c) to an FDSEND_E* code. */
int32_t fdsend_status_from_os_error(int err);

/** Record err as this thread's last OS error and return code. */
int32_t fdsend_fail(int32_t code, int err);

/** fdsend_fail for the error in errno: its FDSEND_E* code, errno recorded. POSIX only. */
int32_t fdsend_fail_errno(void);

#if defined(_MSC_VER)
#  define FDSEND_THREAD_LOCAL __declspec(thread)
#else
#  define FDSEND_THREAD_LOCAL _Thread_local
#endif

/** This thread's last OS error (errors.c): what fdsend_last_os_error() returns. Written
 *  only through fdsend_fail and fdsend_clear_error. */
extern FDSEND_THREAD_LOCAL int fdsend_thread_os_error;

/* ---- Argument checks that no OS changes (the callers record their OS's error) ---- */

/** The checks of a channel send's arguments that do not depend on the OS (not the socket,
 *  not the descriptors' values): FDSEND_OK, FDSEND_EINVAL (payload NULL with len > 0,
 *  nfds < 0, fds NULL with nfds > 0, a flag other than FDSEND_DONTWAIT) or FDSEND_EMSGSIZE
 *  (len over FDSEND_MSG_MAX_PAYLOAD, or a frame longer than a signed size). Nothing is
 *  recorded: the caller records its OS's error for the code. */
static inline int32_t fdsend_channel_send_args(const void *payload, size_t len,
                                               const intptr_t *fds, int32_t nfds,
                                               uint32_t flags)
{
    if ((payload == NULL && len > 0) || nfds < 0 || (fds == NULL && nfds > 0) ||
        (flags & ~(uint32_t)FDSEND_DONTWAIT) != 0)
        return FDSEND_EINVAL;
    if ((uint64_t)len > FDSEND_MSG_MAX_PAYLOAD || len > SIZE_MAX / 2 - FDSEND_MSG_HEADER_SIZE)
        return FDSEND_EMSGSIZE;
    return FDSEND_OK;
}

/** The checks of a receive's arguments that do not depend on the OS (fdsend_recv, the
 *  channel's receives; not the socket): FDSEND_EINVAL for a NULL buffer with len > 0,
 *  maxfds < 0, maxfds > 0 without fds or nfds, or a flag outside known; else FDSEND_OK.
 *  Nothing is recorded: the caller records its OS's error (fdsend_check_recv_args on POSIX,
 *  win32/io.c and win32/channel_win32.c on Windows). */
static inline int32_t fdsend_recv_args_code(const void *buf, size_t len, const intptr_t *fds,
                                            int32_t maxfds, const int32_t *nfds,
                                            uint32_t flags, uint32_t known)
{
    if ((buf == NULL && len > 0) || maxfds < 0 ||
        (maxfds > 0 && (fds == NULL || nfds == NULL)) || (flags & ~known) != 0)
        return FDSEND_EINVAL;
    return FDSEND_OK;
}

/** Record success (last OS error 0). Inline: every successful call makes it. */
static inline void fdsend_clear_error(void)
{
    fdsend_thread_os_error = 0;
}

#endif /* FDSEND_INTERNAL_H */
