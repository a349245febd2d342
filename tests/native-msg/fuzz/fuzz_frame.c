/* libFuzzer target for the channel codec: the stream reader (fdsend_frame_reader_*) and
 * the record check (fdsend_frame_check_record).
 *
 * Input: byte 0 picks the receiver's payload limit (0 .. 255, or the format's maximum),
 * byte 1 its descriptor limit and whether the rest is one record (odd) or a stream; then
 * a run of reads, each a control byte (descriptor count in its low 2 bits scaled, CTRUNC,
 * EOF, read-ahead) and a length byte, followed by that many bytes (clamped to what the
 * reader asks, except a read-ahead read at a frame boundary, which is fed in the pieces want
 * allows: fdsend_frame_reader_begin_ahead, FDSEND_FRAME_IN_AHEAD).
 * Besides memory safety the target checks the codec's promises: every answer is one the
 * header documents; a read never asked for more than want said is never refused; a
 * complete frame consumed exactly 8 + its length bytes and its length is within the
 * limit; a broken or ended reader stays so; a record's length is within limit and size;
 * the descriptors of a read-ahead read go to at most one frame, all of them or none.
 * SPDX-License-Identifier: MIT */
#include "fdsend.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "the channel codec broke its contract: %s\n", what);
        abort();
    }
}

static void fuzz_record(const uint8_t *d, size_t n, uint64_t cap, int32_t maxfds)
{
    uint32_t flags;
    int32_t nfds;
    int64_t rc;
    uint8_t *copy;
    if (n < 2)
        return;
    flags = d[0] & (FDSEND_FRAME_IN_CTRUNC | FDSEND_FRAME_IN_TRUNC | FDSEND_FRAME_IN_SEQPACKET);
    nfds = d[1];
    d += 2;
    n -= 2;
    copy = malloc(n ? n : 1); /* exact size: ASan sees any read past it */
    memcpy(copy, d, n);
    rc = fdsend_frame_check_record(n ? copy : NULL, n, nfds, flags, cap, maxfds);
    if (rc >= 0) {
        require(n >= 8 && (uint64_t)rc <= cap, "a record's length is within the limit");
        require((uint64_t)rc == n - 8, "a record's size is 8 + its length");
        require(!(flags & (FDSEND_FRAME_IN_CTRUNC | FDSEND_FRAME_IN_TRUNC)),
                "a truncated record is never accepted");
    } else {
        require(rc == FDSEND_EOF || rc == FDSEND_EPROTO || rc == FDSEND_EMFILE ||
                    rc == FDSEND_EMSGSIZE || rc == FDSEND_ETOOMANYFDS,
                "a documented record outcome");
        require(rc != FDSEND_EOF || (n == 0 && nfds == 0), "EOF only for an empty record");
    }
    free(copy);
}

/* Checks one outcome of feed (rc) for the frame whose bytes so far are *consumed; returns 1
 * when the reader has ended (broken or at the end of the stream). */
static int check_outcome(const fdsend_frame_reader *r, int32_t rc, uint32_t flags, uint32_t len,
                         uint64_t *consumed, uint64_t cap, int at_boundary)
{
    switch (rc) {
    case FDSEND_FRAME_MORE:
        require(!(flags & FDSEND_FRAME_IN_EOF), "the end never asks for more");
        return 0;
    case FDSEND_OK:
        require(len <= cap && *consumed == 8 + (uint64_t)len, "a frame is 8 + length bytes");
        require(!(flags & FDSEND_FRAME_IN_EOF), "the end is never a frame");
        require(fdsend_frame_reader_frame_fds(r) >= 0, "a frame's descriptor count");
        *consumed = 0;
        return 0;
    case FDSEND_EMSGSIZE:
    case FDSEND_ETOOMANYFDS:
    case FDSEND_EMFILE:
        require(len == 0xdeadbeef, "len is only written for a good frame");
        *consumed = 0;
        return 0;
    case FDSEND_EOF:
        require(*consumed == 0 && at_boundary, "EOF only at a frame boundary");
        return 1;
    case FDSEND_EPROTO:
        return 1;
    default:
        require(0, "a documented feed outcome (EINVAL for a read want allowed)");
        return 1;
    }
}

/* A read-ahead read of the k bytes at d with nfds descriptors, fed as want allows. Returns 1
 * when the reader has ended. */
static int ahead_read(fdsend_frame_reader *r, const uint8_t *d, uint64_t k, int32_t nfds,
                      uint32_t flags, uint64_t *consumed, uint64_t cap)
{
    int takers = 0;
    int32_t rc = fdsend_frame_reader_begin_ahead(r, k, nfds, flags);
    if (rc != FDSEND_FRAME_MORE) {
        require(rc == FDSEND_EPROTO || (rc == FDSEND_EOF && k == 0), "a documented begin outcome");
        return 1;
    }
    while (k > 0) {
        uint64_t off, most, piece;
        uint32_t len = 0xdeadbeef;
        uint8_t *bytes;
        int32_t part = fdsend_frame_reader_want(r, &off, &most);
        require(part >= FDSEND_FRAME_HEADER && part <= FDSEND_FRAME_DISCARD && most >= 1,
                "want answers a part and at least one byte");
        piece = most < k ? most : k;
        bytes = malloc(piece);
        memcpy(bytes, d, piece);
        rc = fdsend_frame_reader_feed(r, bytes, piece, 0, FDSEND_FRAME_IN_AHEAD, &len);
        free(bytes);
        d += piece;
        k -= piece;
        *consumed += piece;
        if (rc != FDSEND_FRAME_MORE && rc != FDSEND_EPROTO) {
            int32_t t = fdsend_frame_reader_frame_fds(r);
            require(t == 0 || t == nfds, "a frame takes all of its read's descriptors or none");
            takers += t > 0;
            require(takers <= 1, "one read's descriptors go to one frame");
        }
        if (check_outcome(r, rc, 0, len, consumed, cap, 0))
            return 1;
    }
    return 0;
}

static void fuzz_stream(const uint8_t *d, size_t n, uint64_t cap, int32_t maxfds)
{
    fdsend_frame_reader r;
    uint64_t consumed = 0; /* bytes of the current frame */
    int ended = 0;
    require(fdsend_frame_reader_init(&r, cap, maxfds) == FDSEND_OK, "init");
    while (n >= 2) {
        uint64_t off, most, k;
        uint32_t flags = 0, len = 0xdeadbeef;
        int32_t part, rc, nfds;
        uint8_t ctl = d[0];
        uint8_t *bytes;
        part = fdsend_frame_reader_want(&r, &off, &most);
        if (ended) {
            require(part == FDSEND_EOF || part == FDSEND_EPROTO, "ended stays ended");
            return;
        }
        require(part >= FDSEND_FRAME_HEADER && part <= FDSEND_FRAME_DISCARD && most >= 1,
                "want answers a part and at least one byte");
        require(part != FDSEND_FRAME_HEADER || off + most == 8, "header reads stop at 8");
        nfds = (ctl & 3) == 3 ? 253 + (ctl >> 7) : (ctl & 3);
        if (ctl & 4)
            flags |= FDSEND_FRAME_IN_CTRUNC;
        k = d[1];
        if ((ctl & 16) && part == FDSEND_FRAME_HEADER && off == 0) {
            d += 2;
            n -= 2;
            if (k > n)
                k = n;
            if (ctl & 8)
                k = 0, flags |= FDSEND_FRAME_IN_EOF;
            if (k == 0 && !(flags & FDSEND_FRAME_IN_EOF))
                return;
            ended = ahead_read(&r, d, k, nfds, flags, &consumed, cap);
            d += k;
            n -= k;
            continue;
        }
        if (k > most)
            k = most;
        d += 2;
        n -= 2;
        if (k > n)
            k = n;
        if (ctl & 8)
            k = 0, flags |= FDSEND_FRAME_IN_EOF;
        if (k == 0 && !(flags & FDSEND_FRAME_IN_EOF)) {
            if (n == 0)
                return;
            k = 1; /* a read returns at least one byte unless it is the end */
        }
        bytes = malloc(k ? k : 1);
        memcpy(bytes, d, k);
        rc = fdsend_frame_reader_feed(&r, bytes, k, nfds, flags, &len);
        free(bytes);
        d += k;
        n -= k;
        consumed += k;
        ended = check_outcome(&r, rc, flags, len, &consumed, cap,
                              part == FDSEND_FRAME_HEADER && off == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t cap;
    int32_t maxfds;
    if (size < 2)
        return 0;
    cap = data[0] == 255 ? UINT64_MAX : data[0];
    maxfds = data[1] >> 1;
    if (data[1] & 1)
        fuzz_record(data + 2, size - 2, cap > FDSEND_MSG_MAX_PAYLOAD ? FDSEND_MSG_MAX_PAYLOAD : cap, maxfds);
    else
        fuzz_stream(data + 2, size - 2, cap > FDSEND_MSG_MAX_PAYLOAD ? FDSEND_MSG_MAX_PAYLOAD : cap, maxfds);
    return 0;
}
