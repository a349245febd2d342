/* Internal declarations shared by libfdsend's sources and its white-box tests.
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_INTERNAL_H
#define FDSEND_INTERNAL_H

#include "fdsend.h"

#include <stddef.h>
#include <stdint.h>

/** Called by the parser for every descriptor that cannot be handed to the caller. */
typedef void (*fdsend_excess_fn)(int fd, void *ctx);

/** What fdsend_parse_rights found in a control buffer. */
typedef struct fdsend_parse_result {
    int32_t taken;     /**< descriptors stored in out[] */
    int32_t excess;    /**< descriptors passed to the excess callback */
    int32_t malformed; /**< 1 if a header was cut short or lied about its length */
} fdsend_parse_result;

/**
 * Walk every control message header in control[0 .. controllen) (a byte buffer of any
 * alignment; nothing is read outside it), collect the descriptors of every
 * SOL_SOCKET/SCM_RIGHTS message, store the first maxout in out[] and hand every other one
 * to excess(). Headers of other levels/types are skipped. Every length is clamped to the
 * buffer with overflow-safe arithmetic; a header shorter than a cmsghdr ends the walk and
 * sets malformed. Pure apart from calling excess().
 */
fdsend_parse_result fdsend_parse_rights(const unsigned char *control, size_t controllen,
                                        int *out, int32_t maxout,
                                        fdsend_excess_fn excess, void *ctx);

/** Map an OS error number to an FDSEND_E* code (one switch; never returns FDSEND_OK). */
int32_t fdsend_status_from_errno(int err);

/** Record err as this thread's last OS error and return code. */
int32_t fdsend_fail(int32_t code, int err);

/** Record success (last OS error 0). */
void fdsend_clear_error(void);

#endif /* FDSEND_INTERNAL_H */
