/* The channel codec: every framing rule of docs/wire-format.md, without I/O, allocation
 * or global state. Driven by the C channel (channel.c) and by the .NET FdChannel.
 * SPDX-License-Identifier: MIT */
#include "fdsend.h"
#include "fdsend_internal.h"

#include <stddef.h>
#include <string.h>

#define HDR FDSEND_MSG_HEADER_SIZE

/* Reader states. */
enum { ST_HEADER = 0, ST_PAYLOAD = 1, ST_DISCARD = 2, ST_BROKEN = 3, ST_ENDED = 4 };

#define KNOWN_FLAGS                                                                        \
    ((uint32_t)(FDSEND_FRAME_IN_CTRUNC | FDSEND_FRAME_IN_EOF | FDSEND_FRAME_IN_TRUNC |      \
                FDSEND_FRAME_IN_SEQPACKET | FDSEND_FRAME_IN_AHEAD))

/* ahead_flags bits. */
#define AH_CTRUNC 1u /* the read-ahead read reported CTRUNC, and no frame has taken that yet */
#define AH_FRAME 2u  /* the frame being read began inside the read-ahead read */

typedef char reader_size_is_documented[sizeof(fdsend_frame_reader) == FDSEND_FRAME_READER_SIZE
                                           ? 1 : -1];

static uint32_t header_fds(const uint8_t *h)
{
    return (uint32_t)h[2] | (uint32_t)h[3] << 8;
}

static uint32_t header_len(const uint8_t *h)
{
    return (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 |
           (uint32_t)h[7] << 24;
}

/* The checks on the first `have` bytes of a header (version as soon as byte 0 is here,
 * flags as soon as byte 1 is, the descriptor count once whole): 1 if they pass. */
static int header_prefix_ok(const uint8_t *h, size_t have)
{
    if (have >= 1 && h[0] != FDSEND_MSG_VERSION)
        return 0;
    if (have >= 2 && h[1] != 0)
        return 0;
    if (have >= 4 && header_fds(h) > FDSEND_MAX_FDS)
        return 0;
    return 1;
}

/* Whether the descriptors that came with a frame match its header: all of them, or (the
 * kernel dropped some) no more than the header announced. */
static int fds_match(uint32_t announced, int32_t arrived, int ctrunc)
{
    return ctrunc ? (uint32_t)arrived <= announced : (uint32_t)arrived == announced;
}

/* The outcome of a frame consumed whole with a valid header, in the document's order. */
static int32_t judge(int ctrunc, uint64_t len, uint64_t cap, uint32_t fds, int32_t maxfds)
{
    if (ctrunc)
        return FDSEND_EMFILE;
    if (len > cap)
        return FDSEND_EMSGSIZE;
    if ((int64_t)fds > (int64_t)maxfds)
        return FDSEND_ETOOMANYFDS;
    return FDSEND_OK;
}

int32_t fdsend_frame_encode(uint8_t *header, uint64_t len, int32_t nfds)
{
    if (header == NULL || nfds < 0)
        return FDSEND_EINVAL;
    if (len > FDSEND_MSG_MAX_PAYLOAD)
        return FDSEND_EMSGSIZE;
    if (nfds > FDSEND_MAX_FDS)
        return FDSEND_ETOOMANYFDS;
    header[0] = FDSEND_MSG_VERSION;
    header[1] = 0; /* flags: none defined */
    header[2] = (uint8_t)(nfds & 0xff);
    header[3] = (uint8_t)((nfds >> 8) & 0xff);
    header[4] = (uint8_t)(len & 0xffu);
    header[5] = (uint8_t)((len >> 8) & 0xffu);
    header[6] = (uint8_t)((len >> 16) & 0xffu);
    header[7] = (uint8_t)((len >> 24) & 0xffu);
    return FDSEND_OK;
}

/* ---- Stream reader ----------------------------------------------------------------------- */

static void next_frame(fdsend_frame_reader *r)
{
    r->ahead_flags &= (uint8_t)~AH_FRAME;
    r->remaining = 0;
    r->len = 0;
    r->nfds = 0;
    memset(r->header, 0, sizeof r->header);
    r->have = 0;
    r->state = ST_HEADER;
    r->ctrunc = 0;
}

int32_t fdsend_frame_reader_init(fdsend_frame_reader *r, uint64_t cap, int32_t maxfds)
{
    if (r == NULL || maxfds < 0)
        return FDSEND_EINVAL;
    memset(r, 0, sizeof *r);
    r->cap = cap > FDSEND_MSG_MAX_PAYLOAD ? FDSEND_MSG_MAX_PAYLOAD : cap;
    r->maxfds = maxfds;
    next_frame(r);
    return FDSEND_OK;
}

int32_t fdsend_frame_reader_want(const fdsend_frame_reader *r, uint64_t *offset, uint64_t *n)
{
    if (r == NULL || offset == NULL || n == NULL)
        return FDSEND_EINVAL;
    switch (r->state) {
    case ST_HEADER:
        if (r->have >= HDR)
            return FDSEND_EINVAL; /* not a reader this codec set up */
        *offset = r->have;
        *n = HDR - r->have;
        return FDSEND_FRAME_HEADER;
    case ST_PAYLOAD:
    case ST_DISCARD:
        if (r->remaining == 0 || r->remaining > r->len)
            return FDSEND_EINVAL;
        *offset = r->len - r->remaining;
        *n = r->remaining;
        return r->state == ST_PAYLOAD ? FDSEND_FRAME_PAYLOAD : FDSEND_FRAME_DISCARD;
    case ST_BROKEN:
        return FDSEND_EPROTO;
    case ST_ENDED:
        return FDSEND_EOF;
    default:
        return FDSEND_EINVAL;
    }
}

/* The frame's last byte is in: its outcome, and the reader moves to the next frame. */
static int32_t finish(fdsend_frame_reader *r, uint32_t *len)
{
    int32_t rc = judge(r->ctrunc, r->len, r->cap, header_fds(r->header), r->maxfds);
    if (rc == FDSEND_OK && len != NULL)
        *len = r->len;
    r->done_nfds = r->nfds;
    next_frame(r);
    return rc;
}

static int32_t broken(fdsend_frame_reader *r)
{
    r->state = ST_BROKEN;
    return FDSEND_EPROTO;
}

/* Descriptors (or the kernel's report of dropped ones) of the read-ahead read that no frame
 * has taken yet. */
static int unclaimed(const fdsend_frame_reader *r)
{
    return r->ahead_nfds > 0 || (r->ahead_flags & AH_CTRUNC) != 0;
}

/* The read-ahead read's descriptors can no longer find their frame: every byte of that read
 * is fed, and the frame being read (if any) did not begin in it or has its header already. */
static int orphaned(const fdsend_frame_reader *r)
{
    if (!unclaimed(r) || r->ahead > 0)
        return 0;
    return !(r->state == ST_HEADER && r->have > 0 && (r->ahead_flags & AH_FRAME));
}

/* The header is whole: check it against what came with the first read, and choose where
 * the payload goes. */
static int32_t header_done(fdsend_frame_reader *r, uint32_t *len)
{
    uint32_t announced = header_fds(r->header);
    /* A frame that began in a read-ahead read takes that read's descriptors if it announces
     * any (at most one frame of a read can: see docs/wire-format.md 4.1). */
    if ((r->ahead_flags & AH_FRAME) && announced > 0 && unclaimed(r)) {
        r->nfds = r->ahead_nfds;
        r->ctrunc = (r->ahead_flags & AH_CTRUNC) != 0;
        r->ahead_nfds = 0;
        r->ahead_flags &= (uint8_t)~AH_CTRUNC;
    }
    if (!header_prefix_ok(r->header, HDR) || !fds_match(announced, r->nfds, r->ctrunc))
        return broken(r);
    r->len = header_len(r->header);
    r->remaining = r->len;
    if (r->len == 0)
        return finish(r, len);
    r->state = judge(r->ctrunc, r->len, r->cap, announced, r->maxfds) == FDSEND_OK
                   ? ST_PAYLOAD : ST_DISCARD;
    return FDSEND_FRAME_MORE;
}

static int32_t feed_header(fdsend_frame_reader *r, const uint8_t *bytes, uint64_t n,
                           int32_t nfds, uint32_t flags, uint32_t *len)
{
    int first = r->have == 0;
    if (first && (flags & FDSEND_FRAME_IN_AHEAD)) {
        r->nfds = 0; /* it may take the read-ahead read's descriptors once its header is whole */
        r->ctrunc = 0;
        r->ahead_flags |= AH_FRAME;
    } else if (first) {
        if (unclaimed(r))
            return broken(r); /* descriptors of an earlier read that no frame announced */
        r->nfds = nfds;
        r->ctrunc = (flags & FDSEND_FRAME_IN_CTRUNC) != 0;
        if (nfds > FDSEND_MAX_FDS)
            return broken(r);
    } else if (nfds > 0 || (flags & FDSEND_FRAME_IN_CTRUNC)) {
        return broken(r); /* descriptors belong to the frame's first byte only */
    }
    memcpy(r->header + r->have, bytes, (size_t)n);
    r->have = (uint8_t)(r->have + n);
    /* Judge the version and flags as soon as they are here: a peer that does not speak
     * the format (IO::FDPass sends one zero byte) gets a protocol error, not a wait for
     * header bytes that never come. */
    if (!header_prefix_ok(r->header, r->have))
        return broken(r);
    if (r->have < HDR)
        return FDSEND_FRAME_MORE;
    return header_done(r, len);
}

/* fdsend_frame_reader_feed once its arguments are checked: n bytes of the part want asks for. */
static int32_t feed_part(fdsend_frame_reader *r, int32_t part, const uint8_t *bytes, uint64_t n,
                         int32_t nfds, uint32_t flags, uint32_t *len)
{
    if (part == FDSEND_FRAME_HEADER)
        return feed_header(r, bytes, n, nfds, flags, len);
    if (nfds > 0 || (flags & FDSEND_FRAME_IN_CTRUNC))
        return broken(r); /* descriptors belong to the frame's first byte only */
    r->remaining -= n;
    return r->remaining == 0 ? finish(r, len) : FDSEND_FRAME_MORE;
}

int32_t fdsend_frame_reader_feed(fdsend_frame_reader *r, const uint8_t *bytes, uint64_t n,
                                 int32_t nfds, uint32_t flags, uint32_t *len)
{
    uint64_t offset, most;
    int32_t part, rc;
    int ahead = (flags & FDSEND_FRAME_IN_AHEAD) != 0;
    if (r == NULL || nfds < 0 || (flags & ~KNOWN_FLAGS) != 0 ||
        (flags & (FDSEND_FRAME_IN_TRUNC | FDSEND_FRAME_IN_SEQPACKET)) != 0)
        return FDSEND_EINVAL;
    /* Bytes of a read-ahead read: its descriptors, flags and end went to begin_ahead. */
    if (ahead && (nfds != 0 || (flags & (FDSEND_FRAME_IN_CTRUNC | FDSEND_FRAME_IN_EOF)) != 0 ||
                  n > r->ahead))
        return FDSEND_EINVAL;
    if (!ahead && r->ahead > 0)
        return FDSEND_EINVAL; /* the read-ahead read's bytes come first */
    part = fdsend_frame_reader_want(r, &offset, &most);
    if (part < 0)
        return FDSEND_EINVAL; /* broken, ended or never set up: nothing to feed */
    if (flags & FDSEND_FRAME_IN_EOF) {
        if (n != 0)
            return FDSEND_EINVAL;
        if (part == FDSEND_FRAME_HEADER && offset == 0 && nfds == 0 &&
            !(flags & FDSEND_FRAME_IN_CTRUNC) && !unclaimed(r)) {
            r->state = ST_ENDED;
            return FDSEND_EOF; /* at a frame boundary: the orderly end */
        }
        return broken(r); /* inside a frame, or descriptors with the end */
    }
    if (n == 0 || n > most || (part == FDSEND_FRAME_HEADER && bytes == NULL))
        return FDSEND_EINVAL;
    if (ahead)
        r->ahead -= n;
    rc = feed_part(r, part, bytes, n, nfds, flags, len);
    if (rc != FDSEND_EPROTO && orphaned(r))
        return broken(r); /* descriptors arrived that no frame of their read announced */
    return rc;
}

int32_t fdsend_frame_reader_begin_ahead(fdsend_frame_reader *r, uint64_t n, int32_t nfds,
                                        uint32_t flags)
{
    uint64_t offset, most;
    int32_t part;
    if (r == NULL || nfds < 0 ||
        (flags & ~(uint32_t)(FDSEND_FRAME_IN_CTRUNC | FDSEND_FRAME_IN_EOF)) != 0)
        return FDSEND_EINVAL;
    part = fdsend_frame_reader_want(r, &offset, &most);
    if (part != FDSEND_FRAME_HEADER || offset != 0 || r->ahead > 0)
        return FDSEND_EINVAL; /* not at a frame boundary, or the last read is not all fed */
    if (unclaimed(r))
        return broken(r); /* cannot happen: orphans break the reader as soon as they are */
    if (flags & FDSEND_FRAME_IN_EOF) {
        if (n != 0)
            return FDSEND_EINVAL;
        if (nfds == 0 && !(flags & FDSEND_FRAME_IN_CTRUNC)) {
            r->state = ST_ENDED;
            return FDSEND_EOF;
        }
        return broken(r);
    }
    if (n == 0)
        return FDSEND_EINVAL;
    if (nfds > FDSEND_MAX_FDS)
        return broken(r);
    r->ahead = n;
    r->ahead_nfds = nfds;
    if (flags & FDSEND_FRAME_IN_CTRUNC)
        r->ahead_flags |= AH_CTRUNC;
    return FDSEND_FRAME_MORE;
}

int32_t fdsend_frame_reader_frame_fds(const fdsend_frame_reader *r)
{
    return r == NULL ? FDSEND_EINVAL : r->done_nfds;
}

int32_t fdsend_frame_reader_limits(fdsend_frame_reader *r, uint64_t cap, int32_t maxfds)
{
    if (r == NULL || maxfds < 0)
        return FDSEND_EINVAL;
    if (r->state != ST_HEADER || r->have >= HDR)
        return FDSEND_EINVAL; /* the frame being read was judged with the old ones */
    r->cap = cap > FDSEND_MSG_MAX_PAYLOAD ? FDSEND_MSG_MAX_PAYLOAD : cap;
    r->maxfds = maxfds;
    return FDSEND_OK;
}

/* ---- Seqpacket / datagram records -------------------------------------------------------- */

int64_t fdsend_frame_check_record(const uint8_t *rec, uint64_t n, int32_t nfds,
                                  uint32_t flags, uint64_t cap, int32_t maxfds)
{
    int ctrunc = (flags & FDSEND_FRAME_IN_CTRUNC) != 0;
    int cut = (flags & FDSEND_FRAME_IN_TRUNC) != 0;
    uint32_t announced, len;
    int32_t rc;
    if ((rec == NULL && n > 0) || nfds < 0 || maxfds < 0 || (flags & ~KNOWN_FLAGS) != 0 ||
        (flags & FDSEND_FRAME_IN_EOF) != 0)
        return FDSEND_EINVAL;
    if (cap > FDSEND_MSG_MAX_PAYLOAD)
        cap = FDSEND_MSG_MAX_PAYLOAD;
    if (n == 0 && nfds == 0 && !ctrunc && !cut && (flags & FDSEND_FRAME_IN_SEQPACKET))
        return FDSEND_EOF; /* no frame is empty: the end of the connection */
    if (n < HDR || nfds > FDSEND_MAX_FDS || !header_prefix_ok(rec, HDR))
        return FDSEND_EPROTO;
    announced = header_fds(rec);
    len = header_len(rec);
    /* Cut short by the kernel: too large if the header announced more than the caller's
     * room, else the record is longer than its header says. */
    if (cut ? len <= cap : n - HDR != len)
        return FDSEND_EPROTO;
    if (!fds_match(announced, nfds, ctrunc))
        return FDSEND_EPROTO;
    rc = judge(ctrunc, len, cap, announced, maxfds);
    return rc == FDSEND_OK ? (int64_t)len : rc;
}

int32_t fdsend_frame_ahead_size(void)
{
    return FDSEND_FRAME_AHEAD_SIZE;
}
