/* The control-message parser: a pure function over a byte buffer, so it can be
 * unit-tested and fuzzed without a socket.
 * SPDX-License-Identifier: MIT */
#include "fdsend_posix.h"
#include "fdsend_internal.h"

#include <string.h>

#if defined(__linux__) && !defined(SCM_PIDFD)
/* Linux >= 6.5 puts a pidfd of the sender in an SCM_PIDFD message when the receiver set
 * SO_PASSPIDFD; older C libraries do not name it yet (the value is fixed by the kernel). */
#  define SCM_PIDFD 0x04
#endif /* defined(__linux__) && !defined(SCM_PIDFD) */

/* Round n up to the control-message alignment; 0 if that would overflow. */
static size_t cmsg_align_up(size_t n)
{
    size_t a = FDSEND_CMSG_ALIGNTO;
    if (n > SIZE_MAX - (a - 1))
        return 0;
    return (n + a - 1) / a * a;
}

fdsend_parse_result fdsend_parse_rights(const unsigned char *control, size_t controllen,
                                        int *out, int32_t maxout,
                                        fdsend_excess_fn excess, void *ctx)
{
    fdsend_parse_result r = {0, 0, 0, 0};
    const size_t data_off = (size_t)CMSG_LEN(0); /* header plus its padding */
    size_t off = 0;

    if (fdsend_parse_rights_common(control, controllen, out, maxout, &r))
        return r;
    if (maxout < 0 || out == NULL)
        maxout = 0;

    while (controllen - off >= sizeof(struct cmsghdr)) {
        struct cmsghdr h;
        size_t len, next;

        memcpy(&h, control + off, sizeof h); /* control may be unaligned */
        len = (size_t)h.cmsg_len;
        if (len < data_off) { /* a header that does not even cover itself */
            r.malformed = 1;
            break;
        }
        /* macOS leaves cmsg_len at its untruncated value: never trust it past the buffer. */
        if (len > controllen - off) {
            len = controllen - off;
            r.malformed = 1;
        }
        if (h.cmsg_level == SOL_SOCKET && h.cmsg_type == SCM_RIGHTS) {
            /* Count whole ints only: a partial one at the end is not a descriptor. */
            size_t n = (len - data_off) / sizeof(int);
            const unsigned char *p = control + off + data_off;
            size_t i;
            for (i = 0; i < n; i++) {
                int fd;
                memcpy(&fd, p + i * sizeof(int), sizeof fd);
                if (r.taken < maxout) {
                    out[r.taken++] = fd;
                } else {
                    r.excess++;
                    if (excess != NULL)
                        excess(fd, ctx);
                }
            }
        }
#if defined(SCM_PIDFD)
        else if (h.cmsg_level == SOL_SOCKET && h.cmsg_type == SCM_PIDFD) {
            /* A descriptor the kernel installed for the receiver: never hand-out-able. */
            size_t n = (len - data_off) / sizeof(int);
            size_t i;
            for (i = 0; i < n; i++) {
                int fd;
                memcpy(&fd, control + off + data_off + i * sizeof(int), sizeof fd);
                r.other++;
                if (excess != NULL)
                    excess(fd, ctx);
            }
        }
#endif /* defined(SCM_PIDFD) */
        next = cmsg_align_up((size_t)h.cmsg_len);
        if (next == 0 || next > controllen - off)
            break; /* the last header, or one that claims more than is there */
        off += next;
    }
    return r;
}
