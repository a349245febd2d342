/* Unit tests of the pure control-message parser fdsend_parse_rights on hand-built
 * buffers, well-formed and malformed. Every buffer is a heap block of exactly the size
 * under test, so ASan and valgrind catch any read outside it.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include "fdsend_posix.h"
#include "fdsend_internal.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* The credentials message type a kernel may put before SCM_RIGHTS. */
#if defined(SCM_CREDENTIALS)
#  define CREDS_TYPE SCM_CREDENTIALS /* Linux */
#elif defined(SCM_CREDS)
#  define CREDS_TYPE SCM_CREDS /* FreeBSD, NetBSD, macOS */
#else
#  define CREDS_TYPE 0x02
#endif /* defined(SCM_CREDENTIALS) */

/* A control buffer being built, aligned like a kernel one. */
typedef struct builder {
    size_t len;
    union { /* last: glibc's cmsghdr ends in a flexible array member */
        struct cmsghdr align;
        unsigned char buf[1024];
    } u;
} builder;

/* Append one control message (cmsg_len = CMSG_LEN(datalen), advanced by CMSG_SPACE). */
static void add_cmsg(builder *b, int level, int type, const void *data, size_t datalen)
{
    struct cmsghdr h;
    CHECK(b->len + CMSG_SPACE(datalen) <= sizeof b->u.buf);
    memset(&h, 0, sizeof h);
    h.cmsg_level = level;
    h.cmsg_type = type;
    h.cmsg_len = CMSG_LEN(datalen);
    memcpy(b->u.buf + b->len, &h, sizeof h);
    if (datalen > 0)
        memcpy(b->u.buf + b->len + CMSG_LEN(0), data, datalen);
    b->len += CMSG_SPACE(datalen);
}

static void add_rights(builder *b, const int *fds, int n)
{
    add_cmsg(b, SOL_SOCKET, SCM_RIGHTS, fds, (size_t)n * sizeof(int));
}

/* Overwrite the cmsg_len of the header at byte offset off (any width of cmsg_len). */
static void set_cmsg_len(builder *b, size_t off, size_t value)
{
    struct cmsghdr h;
    memcpy(&h, b->u.buf + off, sizeof h);
    h.cmsg_len = value;
    memcpy(b->u.buf + off, &h, sizeof h);
}

/* The largest value cmsg_len can hold (its type is size_t on glibc, socklen_t on musl). */
static void set_cmsg_len_max(builder *b, size_t off, unsigned char low_byte_minus)
{
    struct cmsghdr h;
    memcpy(&h, b->u.buf + off, sizeof h);
    memset(&h.cmsg_len, 0xff, sizeof h.cmsg_len);
    h.cmsg_len -= low_byte_minus;
    memcpy(b->u.buf + off, &h, sizeof h);
}

/* Record of the excess callback's calls. */
typedef struct excess_log {
    int fds[64];
    int n;
} excess_log;

static void log_excess(int fd, void *ctx)
{
    excess_log *log = ctx;
    CHECK(log->n < 64);
    log->fds[log->n++] = fd;
}

/* Parse len bytes of b copied to a fresh heap block at byte offset shift (to test
 * unaligned buffers), with room for maxout descriptors. */
static fdsend_parse_result parse(const builder *b, size_t len, size_t shift, int *out,
                                 int32_t maxout, excess_log *log)
{
    unsigned char *block = malloc(len + shift + 1); /* +1: malloc(0) may return NULL */
    fdsend_parse_result r;
    CHECK(block != NULL);
    memcpy(block + shift, b->u.buf, len);
    r = fdsend_parse_rights(block + shift, len, out, maxout, log_excess, log);
    free(block);
    return r;
}

static void init(builder *b, excess_log *log)
{
    memset(b, 0, sizeof *b);
    memset(log, 0, sizeof *log);
}

/* One SCM_RIGHTS header with three descriptors: all three, in order. */
TEST(single_rights)
{
    builder b;
    excess_log log;
    int fds[3] = {7, 8, 9}, out[8] = {0};
    fdsend_parse_result r;
    init(&b, &log);
    add_rights(&b, fds, 3);
    r = parse(&b, b.len, 0, out, 8, &log);
    CHECK_EQ(r.taken, 3);
    CHECK_EQ(r.excess, 0);
    CHECK_EQ(r.other, 0);
    CHECK_EQ(r.malformed, 0);
    CHECK_MEM(out, fds, sizeof fds);
    CHECK_EQ(log.n, 0);
}

/* Two SCM_RIGHTS headers (Haiku splits rights; a hostile peer may too): every fd is
 * collected, in order, across headers. */
TEST(multiple_rights)
{
    builder b;
    excess_log log;
    int a[2] = {10, 11}, c[3] = {12, 13, 14}, out[8] = {0};
    int want[5] = {10, 11, 12, 13, 14};
    fdsend_parse_result r;
    init(&b, &log);
    add_rights(&b, a, 2);
    add_rights(&b, c, 3);
    r = parse(&b, b.len, 0, out, 8, &log);
    CHECK_EQ(r.taken, 5);
    CHECK_EQ(r.excess, 0);
    CHECK_EQ(r.malformed, 0);
    CHECK_MEM(out, want, sizeof want);
}

/* Credentials before the rights (FreeBSD's SCM_CREDS, Linux's SCM_CREDENTIALS), other
 * levels and unknown types are skipped: their payload is never taken for descriptors. */
TEST(unknown_types_skipped)
{
    builder b;
    excess_log log;
    int creds[3] = {1234, 1000, 1000};  /* looks like ints, must not become fds */
    int junk[4] = {40, 41, 42, 43};
    int fds[2] = {20, 21}, out[8] = {0};
    fdsend_parse_result r;
    init(&b, &log);
    add_cmsg(&b, SOL_SOCKET, CREDS_TYPE, creds, sizeof creds);
    add_cmsg(&b, IPPROTO_IP, SCM_RIGHTS, junk, sizeof junk);  /* right type, wrong level */
    add_cmsg(&b, SOL_SOCKET, 0x7777, junk, 3);                /* unknown type, odd size */
    add_rights(&b, fds, 2);
    add_cmsg(&b, SOL_SOCKET, 0x7778, junk, sizeof junk);      /* unknown type after */
    r = parse(&b, b.len, 0, out, 8, &log);
    CHECK_EQ(r.taken, 2);
    CHECK_EQ(r.excess, 0);
    CHECK_EQ(r.other, 0);
    CHECK_EQ(r.malformed, 0);
    CHECK_MEM(out, fds, sizeof fds);
    CHECK_EQ(log.n, 0);
}

/* Linux's SCM_PIDFD (receiver set SO_PASSPIDFD) carries a descriptor the kernel installed:
 * it goes to the excess callback (to be closed) but is not a truncation of the peer's fds. */
TEST(pidfd_goes_to_excess)
{
#if defined(__linux__)
    builder b;
    excess_log log;
    int pidfd = 55, fds[1] = {56}, out[4] = {0};
    fdsend_parse_result r;
    init(&b, &log);
    add_cmsg(&b, SOL_SOCKET, 0x04 /* SCM_PIDFD */, &pidfd, sizeof pidfd);
    add_rights(&b, fds, 1);
    r = parse(&b, b.len, 0, out, 4, &log);
    CHECK_EQ(r.taken, 1);
    CHECK_EQ(out[0], 56);
    CHECK_EQ(r.excess, 0);
    CHECK_EQ(r.other, 1);
    CHECK_EQ(log.n, 1);
    CHECK_EQ(log.fds[0], 55);
#else
    tu_skip("SCM_PIDFD is Linux-only");
#endif /* defined(__linux__) */
}

/* maxout smaller than what arrived: the first maxout are taken, each other one goes to
 * the callback exactly once, in order. */
TEST(excess_to_callback)
{
    builder b;
    excess_log log;
    int fds[5] = {30, 31, 32, 33, 34}, out[2] = {0};
    fdsend_parse_result r;
    init(&b, &log);
    add_rights(&b, fds, 5);
    r = parse(&b, b.len, 0, out, 2, &log);
    CHECK_EQ(r.taken, 2);
    CHECK_EQ(r.excess, 3);
    CHECK_EQ(out[0], 30);
    CHECK_EQ(out[1], 31);
    CHECK_EQ(log.n, 3);
    CHECK_EQ(log.fds[0], 32);
    CHECK_EQ(log.fds[1], 33);
    CHECK_EQ(log.fds[2], 34);
}

/* maxout 0 (and a negative maxout, and out == NULL): every descriptor is excess. */
TEST(maxout_zero_all_excess)
{
    builder b;
    excess_log log;
    int fds[3] = {1, 2, 3}, out[1] = {-1};
    fdsend_parse_result r;
    init(&b, &log);
    add_rights(&b, fds, 3);
    r = parse(&b, b.len, 0, out, 0, &log);
    CHECK_EQ(r.taken, 0);
    CHECK_EQ(r.excess, 3);
    CHECK_EQ(log.n, 3);
    CHECK_EQ(out[0], -1);
    log.n = 0;
    r = parse(&b, b.len, 0, out, -5, &log);
    CHECK_EQ(r.taken, 0);
    CHECK_EQ(r.excess, 3);
    log.n = 0;
    r = parse(&b, b.len, 0, NULL, 3, &log);
    CHECK_EQ(r.taken, 0);
    CHECK_EQ(r.excess, 3);
    CHECK_EQ(log.n, 3);
    /* A NULL callback: excess counted, nothing called, no crash. */
    r = fdsend_parse_rights(b.u.buf, b.len, NULL, 0, NULL, NULL);
    CHECK_EQ(r.excess, 3);
}

/* cmsg_len at its largest (macOS leaves it untruncated; a hostile buffer can say
 * anything): clamped to the buffer, no overflow, nothing read outside, flagged malformed;
 * the whole ints that are inside the buffer are still seen (so they can be closed). */
TEST(huge_cmsg_len)
{
    static const unsigned char minus[] = {0, 1, 3, 7, 8, 15};
    size_t i;
    for (i = 0; i < sizeof minus; i++) {
        builder b;
        excess_log log;
        int fds[2] = {3, 4}, out[8] = {0};
        fdsend_parse_result r;
        init(&b, &log);
        add_rights(&b, fds, 2);
        set_cmsg_len_max(&b, 0, minus[i]);
        r = parse(&b, b.len, 0, out, 8, &log);
        CHECK_EQ(r.malformed, 1);
        CHECK_EQ(r.taken, 2);
        CHECK_EQ(out[0], 3);
        CHECK_EQ(out[1], 4);
        /* Same with the huge header second. */
        init(&b, &log);
        add_rights(&b, fds, 1);
        add_rights(&b, fds + 1, 1);
        set_cmsg_len_max(&b, CMSG_SPACE(sizeof(int)), minus[i]);
        /* The buffer ends right after the second fd (a clamped header's padding bytes
         * would be read as descriptors: the ints inside the buffer are all it has). */
        r = parse(&b, CMSG_SPACE(sizeof(int)) + CMSG_LEN(sizeof(int)), 0, out, 8, &log);
        CHECK_EQ(r.malformed, 1);
        CHECK_EQ(r.taken, 2);
    }
    /* A length just past the end, and one that is past it by a whole header. */
    {
        builder b;
        excess_log log;
        int fds[2] = {3, 4}, out[8] = {0};
        fdsend_parse_result r;
        init(&b, &log);
        add_rights(&b, fds, 2);
        set_cmsg_len(&b, 0, b.len + 1);
        r = parse(&b, b.len, 0, out, 8, &log);
        CHECK_EQ(r.malformed, 1);
        CHECK_EQ(r.taken, 2);
        set_cmsg_len(&b, 0, b.len + 4096);
        r = parse(&b, b.len, 0, out, 8, &log);
        CHECK_EQ(r.malformed, 1);
        CHECK_EQ(r.taken, 2);
    }
}

/* cmsg_len smaller than CMSG_LEN(0) (0 would loop forever in a naive walker): the walk
 * stops, flagged malformed, nothing taken from that header or after it. */
TEST(cmsg_len_too_small)
{
    size_t bad;
    for (bad = 0; bad < CMSG_LEN(0); bad++) {
        builder b;
        excess_log log;
        int fds[2] = {3, 4}, out[8] = {0};
        fdsend_parse_result r;
        init(&b, &log);
        add_rights(&b, fds, 1);
        add_rights(&b, fds + 1, 1);
        set_cmsg_len(&b, 0, bad);
        r = parse(&b, b.len, 0, out, 8, &log);
        CHECK_EQ(r.malformed, 1);
        CHECK_EQ(r.taken, 0);
        CHECK_EQ(r.excess, 0);
        /* The bad header second: the first is still taken. */
        set_cmsg_len(&b, 0, CMSG_LEN(sizeof(int)));
        set_cmsg_len(&b, CMSG_SPACE(sizeof(int)), bad);
        r = parse(&b, b.len, 0, out, 8, &log);
        CHECK_EQ(r.malformed, 1);
        CHECK_EQ(r.taken, 1);
        CHECK_EQ(out[0], 3);
    }
}

/* A header whose data is not a whole number of ints: the partial int is not a fd. Also a
 * buffer that ends in the middle of an int. */
TEST(partial_int)
{
    builder b;
    excess_log log;
    int fds[3] = {5, 6, 7}, out[8] = {0};
    fdsend_parse_result r;
    init(&b, &log);
    add_rights(&b, fds, 3);
    set_cmsg_len(&b, 0, CMSG_LEN(2 * sizeof(int) + 2));
    r = parse(&b, b.len, 0, out, 8, &log);
    CHECK_EQ(r.taken, 2);
    CHECK_EQ(r.excess, 0);
    CHECK_EQ(r.malformed, 0);
    CHECK_EQ(out[0], 5);
    CHECK_EQ(out[1], 6);

    /* The buffer ends two bytes into the second int; the header claims three ints. */
    init(&b, &log);
    add_rights(&b, fds, 3);
    r = parse(&b, CMSG_LEN(sizeof(int)) + 2, 0, out, 8, &log);
    CHECK_EQ(r.taken, 1);
    CHECK_EQ(out[0], 5);
    CHECK_EQ(r.malformed, 1);
}

/* A buffer too short to hold even one header, or empty, or NULL: nothing, no crash. */
TEST(short_and_null_buffers)
{
    builder b;
    excess_log log;
    int fds[1] = {9}, out[4] = {0};
    size_t len;
    fdsend_parse_result r;
    init(&b, &log);
    add_rights(&b, fds, 1);
    for (len = 0; len < sizeof(struct cmsghdr); len++) {
        r = parse(&b, len, 0, out, 4, &log);
        CHECK_EQ(r.taken, 0);
        CHECK_EQ(r.excess, 0);
        CHECK_EQ(log.n, 0);
    }
    /* Exactly a header and nothing more (the header claims one int). */
    r = parse(&b, sizeof(struct cmsghdr), 0, out, 4, &log);
    CHECK_EQ(r.taken, 0);
    CHECK_EQ(r.malformed, 1);
    r = fdsend_parse_rights(NULL, 4096, out, 4, log_excess, &log);
    CHECK_EQ(r.taken, 0);
    CHECK_EQ(r.excess, 0);
    CHECK_EQ(r.other, 0);
    CHECK_EQ(r.malformed, 0);
    CHECK_EQ(log.n, 0);
}

/* A header with no descriptors (cmsg_len == CMSG_LEN(0)) is walked past, not a stop. */
TEST(empty_rights_header)
{
    builder b;
    excess_log log;
    int fds[1] = {9}, out[4] = {0};
    fdsend_parse_result r;
    init(&b, &log);
    add_rights(&b, NULL, 0);
    add_rights(&b, fds, 1);
    r = parse(&b, b.len, 0, out, 4, &log);
    CHECK_EQ(r.taken, 1);
    CHECK_EQ(out[0], 9);
    CHECK_EQ(r.malformed, 0);
}

/* The buffer need not be aligned: every start offset within a word gives the same result
 * (UBSan's alignment check fails if the parser dereferences a misaligned cmsghdr). */
TEST(unaligned_buffer)
{
    size_t shift;
    for (shift = 0; shift < 2 * sizeof(long); shift++) {
        builder b;
        excess_log log;
        int a[2] = {3, 4}, c[3] = {5, 6, 7}, creds[3] = {1, 2, 3}, out[8] = {0};
        int want[5] = {3, 4, 5, 6, 7};
        fdsend_parse_result r;
        init(&b, &log);
        add_rights(&b, a, 2);
        add_cmsg(&b, SOL_SOCKET, CREDS_TYPE, creds, sizeof creds);
        add_rights(&b, c, 3);
        r = parse(&b, b.len, shift, out, 4, &log);
        CHECK_EQ(r.taken, 4);
        CHECK_EQ(r.excess, 1);
        CHECK_MEM(out, want, 4 * sizeof(int));
        CHECK_EQ(log.fds[0], 7);
        CHECK_EQ(r.malformed, 0);
    }
}

/* The last header may lack its trailing padding (the kernel's msg_controllen is the
 * sum of CMSG_SPACEs except possibly the last): still fully parsed, not malformed. */
TEST(last_header_unpadded)
{
    builder b;
    excess_log log;
    int fds[1] = {11}, out[2] = {0};
    fdsend_parse_result r;
    init(&b, &log);
    add_rights(&b, fds, 1);
    r = parse(&b, CMSG_LEN(sizeof(int)), 0, out, 2, &log);
    CHECK_EQ(r.taken, 1);
    CHECK_EQ(out[0], 11);
    CHECK_EQ(r.malformed, 0);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
        CASE(single_rights),       CASE(multiple_rights),    CASE(unknown_types_skipped),
        CASE(pidfd_goes_to_excess), CASE(excess_to_callback), CASE(maxout_zero_all_excess),
        CASE(huge_cmsg_len),       CASE(cmsg_len_too_small), CASE(partial_int),
        CASE(short_and_null_buffers), CASE(empty_rights_header), CASE(unaligned_buffer),
        CASE(last_header_unpadded),
    };
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
