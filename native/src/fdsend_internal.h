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

/** Record success (last OS error 0). Inline: every successful call makes it. */
static inline void fdsend_clear_error(void)
{
    fdsend_thread_os_error = 0;
}

#endif /* FDSEND_INTERNAL_H */
