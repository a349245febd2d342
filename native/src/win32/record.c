/* The Windows record codec (docs/windows-protocol.md): a record's header and entry table
 * to and from bytes. Pure: no Winsock, no handles; io.c sends and receives the bytes,
 * handles.c fills and takes the entries.
 *
 *  0  4  magic "FDSH"
 *  4  1  version (1; 2 when at least one entry is a socket shared with WSADuplicateSocketW)
 *  5  1  reserved, 0
 *  6  2  entry count n (0 .. FDSEND_MAX_FDS), little-endian
 *  8  4  data length d (0 .. FDSEND_REC_MAX_DATA), little-endian; n + d > 0
 * 12  4  sender process id
 * 16  8  sender process creation time (FILETIME, 100 ns since 1601)
 * 24  8  the sender's SOCKET value (proves, over TCP, that the pid really is the peer)
 * 32  8n entry values: a handle value in the sender's process (kind 0), or 0 (kind 1)
 * Version 2 only:
 * 32+8n  n     entry kinds: 0 handle, 1 socket
 * 32+9n  628k  the k sockets' WSAPROTOCOL_INFOW structures, in entry order
 * then   d     data
 * SPDX-License-Identifier: MIT */
#include "fdsend_win32.h"

#include <string.h>

static const unsigned char lead[6] = {'F', 'D', 'S', 'H', FDSEND_REC_VERSION, 0};

static void put_u16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    put_u16(p, v);
    put_u16(p + 2, v >> 16);
}

static void put_u64(unsigned char *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u16(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t get_u32(const unsigned char *p)
{
    return get_u16(p) | get_u16(p + 2) << 16;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

void fdsend_rec_put_header(unsigned char *p, const fdsend_rec_header *h)
{
    memcpy(p, lead, 4);
    p[4] = (unsigned char)h->version;
    p[5] = 0;
    put_u16(p + 6, h->nhandles);
    put_u32(p + 8, h->datalen);
    put_u32(p + 12, h->pid);
    put_u64(p + 16, h->ctime);
    put_u64(p + 24, h->sock);
}

void fdsend_rec_put_entry(unsigned char *table, uint32_t i, uint64_t value)
{
    put_u64(table + 8 * (size_t)i, value);
}

uint64_t fdsend_rec_entry(const unsigned char *table, uint32_t i)
{
    return get_u64(table + 8 * (size_t)i);
}

size_t fdsend_rec_table_len(uint32_t n, uint32_t k)
{
    size_t len = FDSEND_REC_HEADER + 8 * (size_t)n;
    if (k > 0)
        len += (size_t)n + FDSEND_REC_SOCKET_INFO * (size_t)k;
    return len;
}

/* Decode and check a whole header (p has 32 bytes). */
static int parse_header(const unsigned char *p, fdsend_rec_header *h)
{
    if (memcmp(p, lead, 4) != 0 ||
        (p[4] != FDSEND_REC_VERSION && p[4] != FDSEND_REC_VERSION_SOCKETS) || p[5] != 0)
        return 0;
    h->version = p[4];
    h->nhandles = get_u16(p + 6);
    h->datalen = get_u32(p + 8);
    h->pid = get_u32(p + 12);
    h->ctime = get_u64(p + 16);
    h->sock = get_u64(p + 24);
    return h->nhandles <= FDSEND_MAX_FDS && h->datalen <= FDSEND_REC_MAX_DATA &&
           (h->nhandles > 0 || h->datalen > 0);
}

fdsend_rec_scan fdsend_rec_scan_bytes(const unsigned char *p, size_t avail,
                                      fdsend_rec_header *h, size_t *tablelen,
                                      size_t *need)
{
    size_t kinds_at, e;
    uint32_t k = 0;
    *tablelen = 0;
    *need = FDSEND_REC_HEADER;
    if (avail < FDSEND_REC_HEADER) {
        /* Refuse a wrong beginning at once, rather than wait for a header never sent
         * (byte 4, the version, may also be 2). */
        size_t i;
        for (i = 0; i < avail && i < sizeof lead; i++) {
            if (p[i] != lead[i] && !(i == 4 && p[i] == FDSEND_REC_VERSION_SOCKETS))
                return FDSEND_REC_BAD;
        }
        return FDSEND_REC_MORE;
    }
    if (!parse_header(p, h))
        return FDSEND_REC_BAD;
    kinds_at = FDSEND_REC_HEADER + 8 * (size_t)h->nhandles;
    if (h->version == FDSEND_REC_VERSION) {
        *need = kinds_at;
        if (avail < kinds_at)
            return FDSEND_REC_MORE;
        *tablelen = kinds_at;
        return FDSEND_REC_READY;
    }
    /* Version 2: the kinds, then one WSAPROTOCOL_INFOW per socket entry. */
    *need = kinds_at + h->nhandles;
    if (avail < *need)
        return FDSEND_REC_MORE;
    for (e = 0; e < h->nhandles; e++) {
        unsigned char kind = p[kinds_at + e];
        if (kind == FDSEND_REC_ENTRY_SOCKET)
            k++;
        else if (kind != FDSEND_REC_ENTRY_HANDLE)
            return FDSEND_REC_BAD;
    }
    *need = kinds_at + h->nhandles + FDSEND_REC_SOCKET_INFO * (size_t)k;
    if (avail < *need)
        return FDSEND_REC_MORE;
    *tablelen = *need;
    return FDSEND_REC_READY;
}
