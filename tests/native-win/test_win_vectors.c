/* The conformance vectors of the message channel (tests/conformance/channel-vectors.txt,
 * shared with tests/native-msg and the .NET tests) against the C channel on Windows: each
 * "write" of a stream vector is one record (fdsend_send, its descriptors the handles of one
 * temporary file), "close" shuts the writer's sending side down, and the receiver
 * (fdsend_msg_recv, or a channel object) must get the vector's outcome, close every handle it
 * does not hand out, and after "good" still read the good frame. Seqpacket and datagram vectors are skipped: Windows passes handles on
 * stream sockets only. Part of test_win.exe (win.channel_vectors*). The handle count must be
 * back where it was after each vector (sockets, file and every handle received closed).
 * SPDX-License-Identifier: MIT */
#ifndef WIN32_LEAN_AND_MEAN
#  define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <windows.h>

#include "fdsend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vectors.h"
#include "win_harness.h"
#include "win_util.h"
#include "test_win_channel.h"

#ifndef FDSEND_VECTORS_FILE
#  error "FDSEND_VECTORS_FILE: the path of tests/conformance/channel-vectors.txt"
#endif

/* One write of a vector as one record, with nfds copies of file. */
static void write_record(SOCKET a, const vector *v, const unsigned char *bytes, size_t len,
                         int nfds, HANDLE file)
{
    intptr_t fds[253];
    int i;
    int64_t r;
    for (i = 0; i < nfds; i++)
        fds[i] = (intptr_t)file;
    r = fdsend_send((intptr_t)a, bytes, len, fds, nfds, 0);
    if (r != (int64_t)len)
        fail_at(__FILE__, __LINE__, "vector %s: a record of %u bytes returned %lld (%s)",
                v->name, (unsigned)len, (long long)r, fdsend_strerror((int32_t)r));
}

static int64_t receive(fdsend_channel *ch, SOCKET b, void *buf, size_t cap, intptr_t *got,
                       int32_t maxfds, int32_t *n)
{
    return ch != NULL ? fdsend_channel_recv(ch, buf, cap, got, maxfds, n, 0)
                      : fdsend_msg_recv((intptr_t)b, buf, cap, got, maxfds, n, 0);
}

/* The handles got[0 .. n) name file: check, then close them. */
static void check_and_close(const intptr_t *got, int32_t n, HANDLE file)
{
    int32_t i;
    for (i = 0; i < n; i++)
        CHECK(same_file((HANDLE)got[i], file));
    if (n > 0)
        CHECK_RC(fdsend_close_all(got, n), FDSEND_OK);
}

/* Runs one stream vector; 1 if it passed (a mismatch is reported, not fatal, so that one
 * run lists every failing vector). base: this process's handle count before it, which it
 * must leave as it found it. */
static int run_vector(const vector *v, int use_channel, DWORD base)
{
    const char *api = use_channel ? "fdsend_channel_recv" : "fdsend_msg_recv";
    fdsend_channel *ch = NULL;
    HANDLE file = temp_file("vector");
    unsigned char *buf = malloc(v->cap + 1);
    intptr_t got[253];
    int32_t n = -1;
    SOCKET a, b;
    DWORD now;
    int64_t r;
    int i, o, ok = 1;
    CHECK(buf != NULL);
    socket_pair(&a, &b);
    if (use_channel)
        CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &ch), FDSEND_OK);
    for (i = 0; i < v->nwrites; i++)
        write_record(a, v, v->writes[i].bytes, v->writes[i].len, v->writes[i].nfds, file);
    if (v->close_after)
        CHECK(shutdown(a, SD_SEND) == 0);
    r = receive(ch, b, buf, v->cap, got, v->maxfds, &n);
    o = vectors_outcome_of_rc(r);
    if (o != v->expect[0] && o != v->expect[1]) {
        fprintf(stderr, "FAIL %s (line %d): %s returned %lld (%s), expected %s%s%s\n", v->name,
                v->line, api, (long long)r, fdsend_strerror((int32_t)r),
                vectors_outcome_name(v->expect[0]), v->expect[0] == v->expect[1] ? "" : " or ",
                v->expect[0] == v->expect[1] ? "" : vectors_outcome_name(v->expect[1]));
        ok = 0;
    } else if (o == OUT_OK && ((size_t)r != v->payload_len || n != v->nfds ||
                               memcmp(buf, v->payload, v->payload_len) != 0)) {
        fprintf(stderr, "FAIL %s (line %d): got %lld bytes and %d handles, expected %u and %d\n",
                v->name, v->line, (long long)r, (int)n, (unsigned)v->payload_len, v->nfds);
        ok = 0;
    } else if (o != OUT_OK && n != 0) {
        fprintf(stderr, "FAIL %s (line %d): %d handles handed out with an error\n", v->name,
                v->line, (int)n);
        ok = 0;
    }
    if (r >= 0)
        check_and_close(got, n, file);
    if (v->after_good) {
        write_record(a, v, vec_good_frame, sizeof vec_good_frame, 1, file);
        n = -1;
        r = receive(ch, b, buf, v->cap, got, v->maxfds, &n);
        if (r != 4 || memcmp(buf, "next", 4) != 0 || n != 1) {
            fprintf(stderr, "FAIL %s (line %d): the good frame after: %lld (%s), %d handles\n",
                    v->name, v->line, (long long)r, fdsend_strerror((int32_t)r), (int)n);
            ok = 0;
        }
        if (r >= 0)
            check_and_close(got, n, file);
    }
    fdsend_channel_close(ch);
    closesocket(a);
    closesocket(b);
    CloseHandle(file);
    free(buf);
    now = handle_count(); /* every handle received and not handed out was closed */
    if (now != base) {
        fprintf(stderr, "FAIL %s (line %d): %lu handles open, %lu before\n", v->name, v->line,
                (unsigned long)now, (unsigned long)base);
        ok = 0;
    }
    if (ok)
        printf("ok   %s %s\n", api, v->name);
    return ok;
}

static void run_all(int use_channel)
{
    char err[1300];
    vector *vs = NULL;
    int n = vectors_load(FDSEND_VECTORS_FILE, &vs, err, sizeof err), i, ran = 0, failed = 0;
    DWORD base = handle_count();
    if (n < 0)
        fail_at(__FILE__, __LINE__, "%s", err);
    for (i = 0; i < n; i++) {
        if (vs[i].type != VEC_STREAM)
            continue; /* Windows passes handles on stream sockets only */
        failed += !run_vector(&vs[i], use_channel, base);
        ran++;
    }
    printf("%d vectors, %d stream ones run, %d failed\n", n, ran, failed);
    free(vs);
    CHECK(ran > 0);
    CHECK_EQ(failed, 0);
}

/* The stateless receiver (frames end where records end in every vector). */
TEST(channel_vectors_msg)
{
    run_all(0);
}

/* A channel object (its fdsend_recv_state kept between receives). */
TEST(channel_vectors)
{
    run_all(1);
}

const test_case win_vector_cases[] = {
    CASE(channel_vectors_msg),
    CASE(channel_vectors),
};
const size_t win_vector_ncases = sizeof win_vector_cases / sizeof win_vector_cases[0];
