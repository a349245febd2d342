/* libFuzzer target for the control-message parser fdsend_parse_rights.
 *
 * Input: byte 0 chooses maxout (0..31), the rest is the control buffer, handed to the
 * parser at its exact size (ASan catches any read outside) and at an odd address (UBSan
 * catches a misaligned cmsghdr access). Besides memory safety the target checks the
 * parser's promises: never more taken than maxout, every excess descriptor reported to
 * the callback exactly once, never more descriptors than whole ints in the buffer, the
 * same answer for any alignment.
 * SPDX-License-Identifier: MIT */
#include "fdsend_posix.h"
#include "fdsend_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
    int32_t calls;
} seen;

static void count_excess(int fd, void *ctx)
{
    (void)fd;
    ((seen *)ctx)->calls++;
}

static void require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fdsend_parse_rights broke its contract: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int out[32], out_odd[32];
    int32_t maxout;
    size_t len;
    unsigned char *aligned, *odd;
    fdsend_parse_result a, b;
    seen sa = {0}, sb = {0};

    if (size < 1)
        return 0;
    maxout = data[0] % 32;
    len = size - 1;
    aligned = malloc(len > 0 ? len : 1);
    odd = malloc(len + 1);
    if (aligned == NULL || odd == NULL) {
        free(aligned);
        free(odd);
        return 0;
    }
    memcpy(aligned, data + 1, len);
    memcpy(odd + 1, data + 1, len);

    /* Exactly len bytes: the heap block ends right after the buffer. */
    a = fdsend_parse_rights(aligned, len, out, maxout, count_excess, &sa);
    b = fdsend_parse_rights(odd + 1, len, out_odd, maxout, count_excess, &sb);

    require(a.taken >= 0 && a.taken <= maxout, "taken within 0..maxout");
    require(a.excess >= 0 && a.other >= 0, "counts not negative");
    require(a.excess == 0 || a.taken == maxout, "excess only once out[] is full");
    require(sa.calls == a.excess + a.other, "callback called once per excess fd");
    require((size_t)a.taken + (size_t)a.excess + (size_t)a.other <= len / sizeof(int),
            "no more descriptors than ints in the buffer");
    require(a.malformed == 0 || a.malformed == 1, "malformed is a flag");
    require(a.taken == b.taken && a.excess == b.excess && a.other == b.other &&
                a.malformed == b.malformed && sa.calls == sb.calls,
            "same result at any alignment");
    require(memcmp(out, out_odd, (size_t)a.taken * sizeof(int)) == 0,
            "same descriptors at any alignment");
    free(aligned);
    free(odd);
    return 0;
}
