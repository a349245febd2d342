/* The Windows record codec (native/src/win32/record.c), white-box and without a socket:
 * what fdsend_rec_scan_bytes says about every prefix of a record, each header field that
 * makes a record a protocol error, version 2's kinds and socket infos, and encode/decode
 * round trips. Linked against the static library (the codec is not exported).
 * SPDX-License-Identifier: MIT */
#include "win_harness.h"
#include "fdsend_win32.h"

#include <string.h>

static fdsend_rec_header header(uint32_t version, uint32_t n, uint32_t d)
{
    fdsend_rec_header h;
    h.version = version;
    h.nhandles = n;
    h.datalen = d;
    h.pid = 0x01020304u;
    h.ctime = 0x1122334455667788ull;
    h.sock = 0x0000000000000abcull;
    return h;
}

/* A version 1 record of n entries (values 4, 8, ...) into buf; returns header + table. */
static size_t encode_v1(unsigned char *buf, uint32_t n, uint32_t d)
{
    fdsend_rec_header h = header(FDSEND_REC_VERSION, n, d);
    uint32_t i;
    fdsend_rec_put_header(buf, &h);
    for (i = 0; i < n; i++)
        fdsend_rec_put_entry(buf + FDSEND_REC_HEADER, i, 4 * ((uint64_t)i + 1));
    return fdsend_rec_table_len(n, 0);
}

static fdsend_rec_scan scan(const unsigned char *p, size_t avail, fdsend_rec_header *h,
                            size_t *tablelen, size_t *need)
{
    return fdsend_rec_scan_bytes(p, avail, h, tablelen, need);
}

TEST(v1_round_trip_and_every_prefix)
{
    static unsigned char buf[FDSEND_REC_TABLE_MAX];
    fdsend_rec_header h;
    size_t len = encode_v1(buf, 3, 5), tablelen, need, avail;
    /* The documented bytes (docs/windows-protocol.md). */
    CHECK(memcmp(buf, "FDSH\x01\x00\x03\x00\x05\x00\x00\x00\x04\x03\x02\x01", 16) == 0);
    CHECK_EQ(len, 32 + 3 * 8);
    for (avail = 0; avail < len; avail++) {
        CHECK_EQ(scan(buf, avail, &h, &tablelen, &need), FDSEND_REC_MORE);
        CHECK(need > avail);
    }
    CHECK_EQ(scan(buf, len, &h, &tablelen, &need), FDSEND_REC_READY);
    CHECK_EQ(tablelen, len);
    CHECK_EQ(h.version, 1);
    CHECK_EQ(h.nhandles, 3);
    CHECK_EQ(h.datalen, 5);
    CHECK_EQ(h.pid, 0x01020304u);
    CHECK(h.ctime == 0x1122334455667788ull);
    CHECK(h.sock == 0xabcull);
    CHECK(fdsend_rec_entry(buf + FDSEND_REC_HEADER, 2) == 12);
    /* More bytes than the record (its data, the next record) change nothing. */
    CHECK_EQ(scan(buf, sizeof buf, &h, &tablelen, &need), FDSEND_REC_READY);
    CHECK_EQ(tablelen, len);
}

/* Each field that breaks the header: FDSEND_REC_BAD, and a wrong beginning is refused as
 * soon as its first wrong byte is there. */
TEST(bad_headers)
{
    unsigned char buf[FDSEND_REC_TABLE_MAX], bad[FDSEND_REC_TABLE_MAX];
    fdsend_rec_header h;
    size_t tablelen, need;
    size_t len = encode_v1(buf, 1, 1);
    static const struct { size_t at; unsigned char value; } breaks[] = {
        {0, 'f'}, {3, 'X'}, {4, 0}, {4, 3}, {5, 1}, {7, 1} /* n = 257 */,
        {11, 0x40} /* d = 2^30 + 1 */,
    };
    size_t i;
    for (i = 0; i < sizeof breaks / sizeof breaks[0]; i++) {
        memcpy(bad, buf, len);
        bad[breaks[i].at] = breaks[i].value;
        CHECK_EQ(scan(bad, len, &h, &tablelen, &need), FDSEND_REC_BAD);
        if (breaks[i].at < 6) /* in the fixed beginning: refused from that byte on */
            CHECK_EQ(scan(bad, breaks[i].at + 1, &h, &tablelen, &need), FDSEND_REC_BAD);
    }
    /* n = 253 and d = 2^30 are the limits; n = d = 0 is no record. */
    {
        fdsend_rec_header lim = header(FDSEND_REC_VERSION, FDSEND_MAX_FDS, FDSEND_REC_MAX_DATA);
        fdsend_rec_put_header(bad, &lim);
        CHECK_EQ(scan(bad, FDSEND_REC_HEADER, &h, &tablelen, &need), FDSEND_REC_MORE);
        CHECK_EQ(need, FDSEND_REC_TABLE_MAX);
        lim = header(FDSEND_REC_VERSION, 0, 0);
        fdsend_rec_put_header(bad, &lim);
        CHECK_EQ(scan(bad, FDSEND_REC_HEADER, &h, &tablelen, &need), FDSEND_REC_BAD);
        lim = header(FDSEND_REC_VERSION, 0, 1);
        fdsend_rec_put_header(bad, &lim);
        CHECK_EQ(scan(bad, FDSEND_REC_HEADER, &h, &tablelen, &need), FDSEND_REC_READY);
        CHECK_EQ(tablelen, FDSEND_REC_HEADER);
    }
}

/* Version 2: kinds after the values, one WSAPROTOCOL_INFOW per socket entry; a prefix
 * shorter than the header is not refused for its version byte (it once was). */
TEST(v2_kinds_and_infos)
{
    static unsigned char buf[FDSEND_REC_TABLE2_MAX];
    fdsend_rec_header h = header(FDSEND_REC_VERSION_SOCKETS, 3, 0), got;
    size_t tablelen, need, avail, len = fdsend_rec_table_len(3, 2);
    unsigned char *kinds = buf + FDSEND_REC_HEADER + 3 * 8;
    memset(buf, 0, sizeof buf);
    fdsend_rec_put_header(buf, &h);
    kinds[0] = FDSEND_REC_ENTRY_SOCKET;
    kinds[1] = FDSEND_REC_ENTRY_HANDLE;
    kinds[2] = FDSEND_REC_ENTRY_SOCKET;
    CHECK_EQ(len, 32 + 3 * 9 + 2 * FDSEND_REC_SOCKET_INFO);
    for (avail = 0; avail < len; avail++)
        CHECK_EQ(scan(buf, avail, &got, &tablelen, &need), FDSEND_REC_MORE);
    CHECK_EQ(scan(buf, len, &got, &tablelen, &need), FDSEND_REC_READY);
    CHECK_EQ(tablelen, len);
    CHECK_EQ(got.version, 2);
    kinds[1] = 2;
    CHECK_EQ(scan(buf, len, &got, &tablelen, &need), FDSEND_REC_BAD);
    CHECK_EQ(scan(buf, 32 + 3 * 9, &got, &tablelen, &need), FDSEND_REC_BAD);
    CHECK_EQ(scan(buf, 32 + 3 * 8 + 1, &got, &tablelen, &need), FDSEND_REC_MORE);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        CASE(v1_round_trip_and_every_prefix),
        CASE(bad_headers),
        CASE(v2_kinds_and_infos),
    };
    return run_cases(cases, sizeof cases / sizeof cases[0], argc > 1 ? argv[1] : NULL);
}
