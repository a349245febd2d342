/* Tests of the channel codec (fdsend_frame_*), part of tests/native-msg (see msg_test.h):
 * byte sequences fed to the stream reader and records to the record check, one case per
 * rule of docs/wire-format.md; no socket, no descriptor.
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

#include "fdsend.h"

enum { CTRUNC = FDSEND_FRAME_IN_CTRUNC, EOFF = FDSEND_FRAME_IN_EOF,
       TRUNC = FDSEND_FRAME_IN_TRUNC, SEQ = FDSEND_FRAME_IN_SEQPACKET,
       AHEAD = FDSEND_FRAME_IN_AHEAD };

static void header(uint8_t h[8], uint32_t len, uint32_t nfds)
{
    CHECK_EQ(fdsend_frame_encode(h, len, (int32_t)nfds), FDSEND_OK);
}

/* Feed a whole frame as the reader asks, `chunk` bytes at most per read, the descriptors
 * with the first read; returns the final outcome (and the payload length in *len). */
static int32_t feed_frame(fdsend_frame_reader *r, const uint8_t *hdr, uint64_t chunk,
                          int32_t nfds, uint32_t firstflags, uint32_t *len)
{
    int first = 1;
    for (;;) {
        uint64_t off, n;
        int32_t part = fdsend_frame_reader_want(r, &off, &n), rc;
        CHECK(part >= FDSEND_FRAME_HEADER && part <= FDSEND_FRAME_DISCARD);
        if (n > chunk)
            n = chunk;
        rc = fdsend_frame_reader_feed(r, part == FDSEND_FRAME_HEADER ? hdr + off : NULL, n,
                                      first ? nfds : 0, first ? firstflags : 0, len);
        first = 0;
        if (rc != FDSEND_FRAME_MORE)
            return rc;
    }
}

TEST(codec_encode)
{
    uint8_t h[8], keep[8];
    static const uint8_t hello[8] = {0x01, 0x00, 0x02, 0x00, 0x05, 0x00, 0x00, 0x00};
    static const uint8_t big[8] = {0x01, 0x00, 0x01, 0x00, 0x70, 0x11, 0x01, 0x00};
    static const uint8_t most[8] = {0x01, 0x00, 0xfd, 0x00, 0xff, 0xff, 0xff, 0xff};
    header(h, 5, 2);
    CHECK(memcmp(h, hello, 8) == 0);
    header(h, 70000, 1);
    CHECK(memcmp(h, big, 8) == 0);
    header(h, FDSEND_MSG_MAX_PAYLOAD, FDSEND_MAX_FDS);
    CHECK(memcmp(h, most, 8) == 0);
    memcpy(keep, h, 8);
    CHECK_EQ(fdsend_frame_encode(h, (uint64_t)FDSEND_MSG_MAX_PAYLOAD + 1, 0), FDSEND_EMSGSIZE);
    CHECK_EQ(fdsend_frame_encode(h, 0, FDSEND_MAX_FDS + 1), FDSEND_ETOOMANYFDS);
    CHECK_EQ(fdsend_frame_encode(h, 0, -1), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_encode(NULL, 0, 0), FDSEND_EINVAL);
    CHECK(memcmp(h, keep, 8) == 0); /* unchanged on every error */
    CHECK_EQ((int)sizeof(fdsend_frame_reader), FDSEND_FRAME_READER_SIZE);
}

TEST(codec_reader_good)
{
    fdsend_frame_reader r;
    uint8_t h[8];
    uint64_t off = 99, n = 99;
    uint32_t len = 0;
    CHECK_EQ(fdsend_frame_reader_init(&r, 100, 253), FDSEND_OK);
    CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_FRAME_HEADER);
    CHECK(off == 0 && n == 8);
    header(h, 5, 2);
    /* the header in one read, then the payload in two */
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 8, 2, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_FRAME_PAYLOAD);
    CHECK(off == 0 && n == 5);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 3, 0, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_FRAME_PAYLOAD);
    CHECK(off == 3 && n == 2);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 2, 0, 0, &len), FDSEND_OK);
    CHECK_EQ(len, 5);
    /* at the next frame: an empty one, header only, byte by byte */
    CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_FRAME_HEADER);
    CHECK(off == 0 && n == 8);
    header(h, 0, 0);
    len = 99;
    CHECK_EQ(feed_frame(&r, h, 1, 0, 0, &len), FDSEND_OK);
    CHECK_EQ(len, 0);
    /* 253 descriptors, payload exactly at the limit, header in 3 + 5 */
    header(h, 100, 253);
    CHECK_EQ(feed_frame(&r, h, 3, 253, 0, &len), FDSEND_OK);
    CHECK_EQ(len, 100);
    /* then the orderly end at the boundary, and the reader stays ended */
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 0, 0, EOFF, &len), FDSEND_EOF);
    CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_EOF);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 1, 0, 0, &len), FDSEND_EINVAL);
}

/* ---- read-ahead ---------------------------------------------------------------------- */

/* One read-ahead read of the n bytes at b with nfds descriptors: begin_ahead, then the bytes
 * in the pieces want allows. Records each frame's outcome in out[] and the descriptors it
 * took in took[] (at most max); returns how many outcomes, or -1 - k if the read stopped at
 * the k-th with FDSEND_FRAME_MORE pending (the read ended inside a frame). */
static int ahead_read(fdsend_frame_reader *r, const uint8_t *b, uint64_t n, int32_t nfds,
                      uint32_t flags, int32_t *out, int32_t *took, int max)
{
    int k = 0;
    int32_t rc = fdsend_frame_reader_begin_ahead(r, n, nfds, flags);
    if (rc != FDSEND_FRAME_MORE) {
        out[k] = rc;
        took[k] = 0;
        return 1;
    }
    while (n > 0) {
        uint64_t off, most;
        uint32_t len;
        int32_t part = fdsend_frame_reader_want(r, &off, &most);
        uint64_t piece = most < n ? most : n;
        CHECK(part >= FDSEND_FRAME_HEADER && part <= FDSEND_FRAME_DISCARD);
        rc = fdsend_frame_reader_feed(r, b, piece, 0, AHEAD, &len);
        b += piece;
        n -= piece;
        if (rc == FDSEND_FRAME_MORE)
            continue;
        CHECK(k < max);
        out[k] = rc;
        took[k] = rc == FDSEND_EPROTO ? -1 : fdsend_frame_reader_frame_fds(r);
        k++;
        if (rc == FDSEND_EPROTO)
            return k;
    }
    {
        uint64_t off, most;
        int32_t part = fdsend_frame_reader_want(r, &off, &most);
        return part == FDSEND_FRAME_HEADER && off == 0 ? k : -1 - k;
    }
}

/* Frames a (payload "ab", na descriptors announced) and b ("cde", nb) back to back. */
static size_t two_frames(uint8_t *buf, uint32_t na, uint32_t nb)
{
    header(buf, 2, na);
    memcpy(buf + 8, "ab", 2);
    header(buf + 10, 3, nb);
    memcpy(buf + 18, "cde", 3);
    return 21;
}

TEST(codec_ahead_descriptors_find_their_frame)
{
    fdsend_frame_reader r;
    uint8_t b[64];
    int32_t out[4], took[4];
    size_t n;
    /* Linux: a read runs through frames without descriptors into the one that has them */
    fdsend_frame_reader_init(&r, 100, 253);
    n = two_frames(b, 0, 2);
    CHECK_EQ(ahead_read(&r, b, n, 2, 0, out, took, 4), 2);
    CHECK(out[0] == FDSEND_OK && took[0] == 0 && out[1] == FDSEND_OK && took[1] == 2);
    /* a BSD read starts at the descriptors and runs on into frames without any */
    n = two_frames(b, 1, 0);
    CHECK_EQ(ahead_read(&r, b, n, 1, 0, out, took, 4), 2);
    CHECK(out[0] == FDSEND_OK && took[0] == 1 && out[1] == FDSEND_OK && took[1] == 0);
    /* no descriptors at all */
    n = two_frames(b, 0, 0);
    CHECK_EQ(ahead_read(&r, b, n, 0, 0, out, took, 4), 2);
    CHECK(took[0] == 0 && took[1] == 0);
    /* the kernel dropped some (MSG_CTRUNC): that frame is refused, the channel in sync */
    n = two_frames(b, 0, 3);
    CHECK_EQ(ahead_read(&r, b, n, 1, CTRUNC, out, took, 4), 2);
    CHECK(out[0] == FDSEND_OK && out[1] == FDSEND_EMFILE && took[1] == 1);
    /* over the receiver's limits: refused, in sync, the descriptors are the frame's */
    fdsend_frame_reader_limits(&r, 100, 1);
    n = two_frames(b, 2, 0);
    CHECK_EQ(ahead_read(&r, b, n, 2, 0, out, took, 4), 2);
    CHECK(out[0] == FDSEND_ETOOMANYFDS && took[0] == 2 && out[1] == FDSEND_OK);
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 0, 0, EOFF), FDSEND_EOF);
}

TEST(codec_ahead_protocol_errors)
{
    fdsend_frame_reader r;
    uint8_t b[64];
    int32_t out[4], took[4];
    size_t n;
    /* descriptors that no frame of their read announces: found at the read's end */
    fdsend_frame_reader_init(&r, 100, 253);
    n = two_frames(b, 0, 0);
    CHECK_EQ(ahead_read(&r, b, n, 1, 0, out, took, 4), 2);
    CHECK(out[0] == FDSEND_OK && out[1] == FDSEND_EPROTO);
    /* two frames of one read announce descriptors: only one can have them */
    fdsend_frame_reader_init(&r, 100, 253);
    n = two_frames(b, 1, 1);
    CHECK_EQ(ahead_read(&r, b, n, 1, 0, out, took, 4), 2);
    CHECK(out[0] == FDSEND_OK && took[0] == 1 && out[1] == FDSEND_EPROTO);
    /* announced, none came */
    fdsend_frame_reader_init(&r, 100, 253);
    n = two_frames(b, 0, 1);
    CHECK_EQ(ahead_read(&r, b, n, 0, 0, out, took, 4), 2);
    CHECK(out[0] == FDSEND_OK && out[1] == FDSEND_EPROTO);
    /* a count unequal to the announced one */
    fdsend_frame_reader_init(&r, 100, 253);
    n = two_frames(b, 2, 0);
    CHECK_EQ(ahead_read(&r, b, n, 3, 0, out, took, 4), 1);
    CHECK_EQ(out[0], FDSEND_EPROTO);
    /* the end with descriptors, more than FDSEND_MAX_FDS */
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 0, 1, EOFF), FDSEND_EPROTO);
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 5, 254, 0), FDSEND_EPROTO);
    /* descriptors in a later read of a frame that began in a read-ahead read */
    fdsend_frame_reader_init(&r, 100, 253);
    header(b, 3, 1);
    CHECK_EQ(ahead_read(&r, b, 4, 1, 0, out, took, 4), -1);
    CHECK_EQ(fdsend_frame_reader_feed(&r, b + 4, 4, 1, 0, NULL), FDSEND_EPROTO);
    /* a frame left half-read by the read ahead, announcing none: its read's descriptors
     * are nobody's once its header is whole */
    fdsend_frame_reader_init(&r, 100, 253);
    header(b, 3, 0);
    CHECK_EQ(ahead_read(&r, b, 4, 1, 0, out, took, 4), -1);
    CHECK_EQ(fdsend_frame_reader_feed(&r, b + 4, 4, 0, 0, NULL), FDSEND_EPROTO);
    /* an exact read at a boundary while descriptors of a read-ahead read are unclaimed can
     * not happen (they are found first); a read-ahead read ending with a whole frame and
     * descriptors nobody took is broken at once */
    fdsend_frame_reader_init(&r, 100, 253);
    header(b, 0, 0);
    CHECK_EQ(ahead_read(&r, b, 8, 2, 0, out, took, 4), 1);
    CHECK_EQ(out[0], FDSEND_EPROTO);
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 8, 0, 0), FDSEND_EINVAL);
}

TEST(codec_ahead_frame_continues_with_exact_reads)
{
    fdsend_frame_reader r;
    uint8_t b[64];
    int32_t out[4], took[4];
    uint32_t len = 0;
    uint64_t off, n;
    /* the read ended inside the header: the rest is exact, the descriptors the frame's */
    fdsend_frame_reader_init(&r, 100, 253);
    header(b, 3, 2);
    memcpy(b + 8, "xyz", 3);
    CHECK_EQ(ahead_read(&r, b, 3, 2, 0, out, took, 4), -1);
    CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_FRAME_HEADER);
    CHECK(off == 3 && n == 5);
    CHECK_EQ(fdsend_frame_reader_feed(&r, b + 3, 5, 0, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 3, 0, 0, &len), FDSEND_OK);
    CHECK(len == 3 && fdsend_frame_reader_frame_fds(&r) == 2);
    /* the read ended inside the payload */
    CHECK_EQ(ahead_read(&r, b, 9, 2, 0, out, took, 4), -1);
    CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_FRAME_PAYLOAD);
    CHECK(off == 1 && n == 2);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 2, 0, 0, &len), FDSEND_OK);
    CHECK_EQ(fdsend_frame_reader_frame_fds(&r), 2);
    /* exact reads alone report the first read's descriptors too */
    CHECK_EQ(feed_frame(&r, b, 8, 2, 0, &len), FDSEND_OK);
    CHECK_EQ(fdsend_frame_reader_frame_fds(&r), 2);
}

TEST(codec_ahead_bad_calls)
{
    fdsend_frame_reader r;
    uint8_t b[64];
    uint32_t len;
    fdsend_frame_reader_init(&r, 100, 253);
    header(b, 3, 0);
    CHECK_EQ(fdsend_frame_reader_begin_ahead(NULL, 1, 0, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 1, -1, 0), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 1, 0, TRUNC), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 1, 0, AHEAD), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 0, 0, 0), FDSEND_EINVAL); /* 0 bytes, no end */
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 1, 0, EOFF), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_feed(&r, b, 1, 0, AHEAD, &len), FDSEND_EINVAL); /* no read */
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 11, 0, 0), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 11, 0, 0), FDSEND_EINVAL); /* not fed */
    CHECK_EQ(fdsend_frame_reader_feed(&r, b, 1, 1, AHEAD, &len), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_feed(&r, b, 1, 0, AHEAD | CTRUNC, &len), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_feed(&r, b, 1, 0, 0, &len), FDSEND_EINVAL); /* exact first */
    CHECK_EQ(fdsend_frame_reader_feed(&r, b, 9, 0, AHEAD, &len), FDSEND_EINVAL); /* > want */
    CHECK_EQ(fdsend_frame_reader_feed(&r, b, 8, 0, AHEAD, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_limits(&r, 10, 1), FDSEND_EINVAL); /* header judged */
    CHECK_EQ(fdsend_frame_reader_begin_ahead(&r, 3, 0, 0), FDSEND_EINVAL); /* mid-frame */
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 4, 0, AHEAD, &len), FDSEND_EINVAL); /* > read */
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 3, 0, AHEAD, &len), FDSEND_OK);
    CHECK_EQ(fdsend_frame_reader_limits(&r, 10, -1), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_limits(NULL, 10, 1), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_limits(&r, 10, 1), FDSEND_OK);
    CHECK_EQ(fdsend_frame_reader_frame_fds(NULL), FDSEND_EINVAL);
}

TEST(codec_reader_bad_header)
{
    static const uint8_t bad[][8] = {
        {0x00, 0, 0, 0, 0, 0, 0, 0},          /* version 0 (IO::FDPass's zero byte) */
        {0x02, 0, 0, 0, 0, 0, 0, 0},          /* version 2 */
        {0x01, 0x01, 0, 0, 0, 0, 0, 0},       /* flags */
        {0x01, 0x00, 0xfe, 0x00, 0, 0, 0, 0}, /* 254 descriptors announced */
        {0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0}, /* 256 */
    };
    /* The read at which each is judged: version at byte 0, flags at 1, count at 3. */
    static const uint64_t judged_after[] = {1, 1, 2, 4, 4};
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fdsend_frame_reader r;
        uint64_t k, off, n;
        uint32_t len;
        fdsend_frame_reader_init(&r, 1000, 253);
        for (k = 0; k + 1 < judged_after[i]; k++)
            CHECK_EQ(fdsend_frame_reader_feed(&r, bad[i] + k, 1, 0, 0, &len),
                     FDSEND_FRAME_MORE);
        CHECK_EQ(fdsend_frame_reader_feed(&r, bad[i] + k, 1, 0, 0, &len), FDSEND_EPROTO);
        CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_EPROTO);
        CHECK_EQ(fdsend_frame_reader_feed(&r, bad[i], 1, 0, 0, &len), FDSEND_EINVAL);
        /* and whole in one read */
        fdsend_frame_reader_init(&r, 1000, 253);
        CHECK_EQ(fdsend_frame_reader_feed(&r, bad[i], 8, 0, 0, &len), FDSEND_EPROTO);
    }
}

TEST(codec_reader_descriptors)
{
    fdsend_frame_reader r;
    uint8_t h[8];
    uint32_t len;
    header(h, 4, 2);
    /* fewer or more descriptors than announced */
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 8, 1, 0, &len), FDSEND_EPROTO);
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 8, 3, 0, &len), FDSEND_EPROTO);
    /* more than the most a message carries, on the first read */
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 1, 254, 0, &len), FDSEND_EPROTO);
    /* descriptors on a later header byte, or on the payload */
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 1, 2, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h + 1, 7, 1, 0, &len), FDSEND_EPROTO);
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 8, 2, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 1, 1, 0, &len), FDSEND_EPROTO);
    /* MSG_CTRUNC after the first read */
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 4, 2, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h + 4, 4, 0, CTRUNC, &len), FDSEND_EPROTO);
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 8, 2, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 4, 0, CTRUNC, &len), FDSEND_EPROTO);
    /* descriptors with the end of the stream */
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 0, 1, EOFF, &len), FDSEND_EPROTO);
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 0, 0, EOFF | CTRUNC, &len), FDSEND_EPROTO);
}

TEST(codec_reader_end_inside_frame)
{
    fdsend_frame_reader r;
    uint8_t h[8];
    uint32_t len;
    header(h, 4, 0);
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 3, 0, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 0, 0, EOFF, &len), FDSEND_EPROTO);
    fdsend_frame_reader_init(&r, 100, 253);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 8, 0, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 2, 0, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 0, 0, EOFF, &len), FDSEND_EPROTO);
}

TEST(codec_reader_rejections)
{
    fdsend_frame_reader r;
    uint8_t h[8];
    uint64_t off, n;
    uint32_t len = 77;
    /* over the limit: the payload is discarded, then EMSGSIZE, and the reader goes on */
    fdsend_frame_reader_init(&r, 10, 253);
    header(h, 11, 1);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 8, 1, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_FRAME_DISCARD);
    CHECK(off == 0 && n == 11);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 11, 0, 0, &len), FDSEND_EMSGSIZE);
    CHECK_EQ(len, 77);
    header(h, 10, 0);
    CHECK_EQ(feed_frame(&r, h, 4, 0, 0, &len), FDSEND_OK);
    CHECK_EQ(len, 10);
    /* too many descriptors for this receiver */
    fdsend_frame_reader_init(&r, 10, 2);
    header(h, 1, 3);
    CHECK_EQ(feed_frame(&r, h, 8, 3, 0, &len), FDSEND_ETOOMANYFDS);
    header(h, 0, 3); /* an empty payload is judged at the header */
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 8, 3, 0, &len), FDSEND_ETOOMANYFDS);
    header(h, 0, 2);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 8, 2, 0, &len), FDSEND_OK);
    /* the kernel dropped descriptors: consumed whole, EMFILE, fewer than announced is fine */
    fdsend_frame_reader_init(&r, 10, 253);
    header(h, 5, 4);
    CHECK_EQ(feed_frame(&r, h, 8, 1, CTRUNC, &len), FDSEND_EMFILE);
    fdsend_frame_reader_init(&r, 10, 253);
    CHECK_EQ(feed_frame(&r, h, 8, 5, CTRUNC, &len), FDSEND_EPROTO); /* more: a lie */
    /* precedence: truncation over too large over too many */
    fdsend_frame_reader_init(&r, 1, 0);
    header(h, 2, 1);
    CHECK_EQ(feed_frame(&r, h, 8, 0, CTRUNC, &len), FDSEND_EMFILE);
    fdsend_frame_reader_init(&r, 1, 0);
    CHECK_EQ(feed_frame(&r, h, 8, 1, 0, &len), FDSEND_EMSGSIZE);
    /* a cap larger than the format allows counts as the format's limit */
    fdsend_frame_reader_init(&r, UINT64_MAX, 253);
    header(h, FDSEND_MSG_MAX_PAYLOAD, 0);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 8, 0, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_FRAME_PAYLOAD);
    CHECK(n == FDSEND_MSG_MAX_PAYLOAD);
}

TEST(codec_reader_misuse)
{
    fdsend_frame_reader r;
    uint8_t h[8];
    uint64_t off, n;
    uint32_t len;
    CHECK_EQ(fdsend_frame_reader_init(NULL, 1, 1), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_init(&r, 1, -1), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_init(&r, 100, 253), FDSEND_OK);
    CHECK_EQ(fdsend_frame_reader_want(NULL, &off, &n), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_want(&r, NULL, &n), FDSEND_EINVAL);
    header(h, 4, 0);
    CHECK_EQ(fdsend_frame_reader_feed(NULL, h, 1, 0, 0, &len), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 9, 0, 0, &len), FDSEND_EINVAL); /* past header */
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 1, 0, 0, &len), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 0, 0, 0, &len), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 1, -1, 0, &len), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 1, 0, 64, &len), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 1, 0, TRUNC, &len), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 1, 0, EOFF, &len), FDSEND_EINVAL);
    /* none of them changed the reader */
    CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_FRAME_HEADER);
    CHECK(off == 0 && n == 8);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 8, 0, 0, &len), FDSEND_FRAME_MORE);
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 5, 0, 0, &len), FDSEND_EINVAL); /* past payload */
    CHECK_EQ(fdsend_frame_reader_feed(&r, NULL, 4, 0, 0, NULL), FDSEND_OK); /* len may be NULL */
    /* a struct the codec never set up */
    memset(&r, 0xff, sizeof r);
    CHECK_EQ(fdsend_frame_reader_want(&r, &off, &n), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_reader_feed(&r, h, 1, 0, 0, &len), FDSEND_EINVAL);
}

TEST(codec_record)
{
    uint8_t h[8];
    header(h, 5, 2);
    CHECK_EQ(fdsend_frame_check_record(h, 13, 2, 0, 100, 253), 5);
    CHECK_EQ(fdsend_frame_check_record(h, 13, 2, SEQ, 100, 253), 5);
    /* end of a seqpacket connection; an empty datagram; an empty record with fds */
    CHECK_EQ(fdsend_frame_check_record(NULL, 0, 0, SEQ, 100, 253), FDSEND_EOF);
    CHECK_EQ(fdsend_frame_check_record(NULL, 0, 0, 0, 100, 253), FDSEND_EPROTO);
    CHECK_EQ(fdsend_frame_check_record(NULL, 0, 1, SEQ, 100, 253), FDSEND_EPROTO);
    CHECK_EQ(fdsend_frame_check_record(NULL, 0, 0, SEQ | CTRUNC, 100, 253), FDSEND_EPROTO);
    /* shorter than a header; size unequal to 8 + length */
    CHECK_EQ(fdsend_frame_check_record(h, 7, 2, SEQ, 100, 253), FDSEND_EPROTO);
    CHECK_EQ(fdsend_frame_check_record(h, 12, 2, SEQ, 100, 253), FDSEND_EPROTO);
    CHECK_EQ(fdsend_frame_check_record(h, 14, 2, SEQ, 100, 253), FDSEND_EPROTO);
    /* descriptors unequal to the header's, or more than a message carries */
    CHECK_EQ(fdsend_frame_check_record(h, 13, 1, SEQ, 100, 253), FDSEND_EPROTO);
    CHECK_EQ(fdsend_frame_check_record(h, 13, 3, SEQ, 100, 253), FDSEND_EPROTO);
    CHECK_EQ(fdsend_frame_check_record(h, 13, 254, SEQ, 100, 253), FDSEND_EPROTO);
    /* bad header bytes */
    h[0] = 2;
    CHECK_EQ(fdsend_frame_check_record(h, 13, 2, SEQ, 100, 253), FDSEND_EPROTO);
    header(h, 5, 2);
    h[1] = 0x80;
    CHECK_EQ(fdsend_frame_check_record(h, 13, 2, SEQ, 100, 253), FDSEND_EPROTO);
    h[1] = 0;
    h[2] = 0xfe;
    CHECK_EQ(fdsend_frame_check_record(h, 13, 254, SEQ, 100, 253), FDSEND_EPROTO);
    /* cut by the kernel: too large when announced over cap, else longer than said */
    header(h, 50, 0);
    CHECK_EQ(fdsend_frame_check_record(h, 18, 0, TRUNC, 10, 253), FDSEND_EMSGSIZE);
    CHECK_EQ(fdsend_frame_check_record(h, 8, 0, TRUNC, 10, 253), FDSEND_EMSGSIZE);
    CHECK_EQ(fdsend_frame_check_record(h, 18, 0, TRUNC, 50, 253), FDSEND_EPROTO);
    CHECK_EQ(fdsend_frame_check_record(h, 58, 0, 0, 10, 253), FDSEND_EMSGSIZE);
    /* over cap with a descriptor count that differs: the protocol error wins */
    header(h, 50, 2);
    CHECK_EQ(fdsend_frame_check_record(h, 18, 1, TRUNC, 10, 253), FDSEND_EPROTO);
    /* kernel truncation, too many, precedence */
    CHECK_EQ(fdsend_frame_check_record(h, 58, 1, CTRUNC, 100, 253), FDSEND_EMFILE);
    CHECK_EQ(fdsend_frame_check_record(h, 58, 3, CTRUNC, 100, 253), FDSEND_EPROTO);
    CHECK_EQ(fdsend_frame_check_record(h, 58, 2, 0, 100, 1), FDSEND_ETOOMANYFDS);
    CHECK_EQ(fdsend_frame_check_record(h, 58, 2, 0, 10, 1), FDSEND_EMSGSIZE);
    CHECK_EQ(fdsend_frame_check_record(h, 58, 0, CTRUNC, 10, 1), FDSEND_EMFILE);
    /* bad arguments */
    CHECK_EQ(fdsend_frame_check_record(NULL, 8, 0, 0, 10, 1), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_check_record(h, 58, -1, 0, 100, 1), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_check_record(h, 58, 2, 0, 100, -1), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_check_record(h, 58, 2, 64, 100, 1), FDSEND_EINVAL);
    CHECK_EQ(fdsend_frame_check_record(h, 58, 2, EOFF, 100, 1), FDSEND_EINVAL);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
    CASE(codec_ahead_descriptors_find_their_frame),
    CASE(codec_ahead_protocol_errors),
    CASE(codec_ahead_frame_continues_with_exact_reads),
    CASE(codec_ahead_bad_calls),
    CASE(codec_encode),
    CASE(codec_reader_good),
    CASE(codec_reader_bad_header),
    CASE(codec_reader_descriptors),
    CASE(codec_reader_end_inside_frame),
    CASE(codec_reader_rejections),
    CASE(codec_reader_misuse),
    CASE(codec_record),
    };
    return msg_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
