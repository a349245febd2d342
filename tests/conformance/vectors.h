/* The conformance vectors of the message channel (channel-vectors.txt, format described at
 * its top), read into memory for the C runners: tests/native-msg/test_msg_vectors.c (POSIX,
 * raw sendmsg writes) and tests/native-win/test_win_vectors.c (Windows, one record per
 * write). The .NET runner reads the same file itself. Portable C, no socket calls.
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_VECTORS_H
#define FDSEND_VECTORS_H

#include <stddef.h>
#include <stdint.h>

enum { OUT_OK, OUT_EOF, OUT_PROTO, OUT_SIZE, OUT_FDS };

/* The socket types a vector names. */
enum { VEC_STREAM, VEC_SEQPACKET, VEC_DGRAM };

#define VEC_MAX_WRITES 32
#define VEC_MAX_BYTES 128

typedef struct vec_write {
    int nfds;
    size_t len;
    unsigned char bytes[VEC_MAX_BYTES];
} vec_write;

typedef struct vector {
    char name[96];
    int line;
    int type; /* VEC_* */
    size_t cap;
    int32_t maxfds;
    vec_write writes[VEC_MAX_WRITES];
    int nwrites;
    int close_after;
    int expect[2]; /* expect[1] == expect[0] unless "either" */
    unsigned char payload[VEC_MAX_BYTES];
    size_t payload_len;
    int nfds;
    int after_good;
} vector;

/** The good frame a writer sends after a vector marked "after good" (with 1 descriptor). */
extern const unsigned char vec_good_frame[12];

/** Read every vector of the file at path: their number (*out: a malloc'ed array the caller
 *  frees), or -1 with why (file, line and text) in err. */
int vectors_load(const char *path, vector **out, char *err, size_t errlen);

/** The outcome of a receive's result (OUT_*), or -1 for a code no vector expects. */
int vectors_outcome_of_rc(int64_t r);

/** The name of an outcome as the file spells it. */
const char *vectors_outcome_name(int o);

#endif /* FDSEND_VECTORS_H */
