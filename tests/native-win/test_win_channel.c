/* The message channel on Windows (fdsend_channel_*, fdsend_msg_*): frames over libfdsend's
 * records (docs/wire-format.md 2a), tested as a user observes them: payload bytes, file
 * contents through the received handles, this process's handle count, error codes. Part of
 * test_win.exe (its cases are win.channel_*); the echo peer is "test_win.exe child
 * channel-echo <port>", which tests/FdSend.WinTests also runs against the .NET FdChannel.
 * SPDX-License-Identifier: MIT */
#ifndef WIN32_LEAN_AND_MEAN
#  define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <windows.h>

#include "fdsend.h"

#include <stdlib.h>
#include <string.h>

#include "win_harness.h"
#include "win_util.h"
#include "test_win_channel.h"

#define BIG (200 * 1024) /* over 64 KiB: a header record, then payload records */

static const char *const FILES[] = {"one\n", "two, a longer file\n", "three\n"};

/* A payload byte pattern, different per length. */
static void fill(unsigned char *p, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        p[i] = (unsigned char)(i * 7 + len);
}

/* One frame sent on another thread (a frame larger than the socket buffers must be read
 * while it is sent): on the channel ch, or with fdsend_msg_send on s when ch is NULL. */
typedef struct frame_job {
    fdsend_channel *ch;
    SOCKET s;
    const void *p;
    size_t len;
    const intptr_t *fds;
    int32_t nfds;
    int32_t rc;
} frame_job;

static DWORD WINAPI frame_job_run(LPVOID arg)
{
    frame_job *j = arg;
    j->rc = j->ch != NULL ? fdsend_channel_send(j->ch, j->p, j->len, j->fds, j->nfds, 0)
                          : fdsend_msg_send((intptr_t)j->s, j->p, j->len, j->fds, j->nfds, 0);
    return j->rc == FDSEND_OK ? 0 : 1;
}

static HANDLE start_frame(frame_job *j, fdsend_channel *ch, SOCKET s, const void *p, size_t len,
                          const intptr_t *fds, int32_t nfds)
{
    HANDLE th;
    j->ch = ch;
    j->s = s;
    j->p = p;
    j->len = len;
    j->fds = fds;
    j->nfds = nfds;
    j->rc = 1;
    th = CreateThread(NULL, 0, frame_job_run, j, 0, NULL);
    CHECK(th != NULL);
    return th;
}

/* Check that the received handles got[0 .. n) read FILES[0 .. n), then close them. */
static void check_files(const intptr_t *got, int32_t n)
{
    char buf[64];
    int32_t i;
    for (i = 0; i < n; i++) {
        read_all((HANDLE)got[i], buf, sizeof buf);
        CHECK(strcmp(buf, FILES[i]) == 0);
    }
    CHECK_RC(fdsend_close_all(got, n), FDSEND_OK);
}

/* An 8-byte frame header (the codec's), as a raw record's data. */
static void header(unsigned char *h, uint64_t len, int32_t nfds)
{
    CHECK_RC(fdsend_frame_encode(h, len, nfds), FDSEND_OK);
}

/* Wait (at most 10 s) until bytes are queued on s. */
static void wait_queued(SOCKET s)
{
    u_long queued = 0;
    int k;
    for (k = 0; k < 10000; k++) {
        CHECK(ioctlsocket(s, FIONREAD, &queued) == 0);
        if (queued > 0)
            return;
        Sleep(1);
    }
    CHECK(queued > 0);
}

/* ---- The echo peer ------------------------------------------------------------------------- */

int child_channel_echo(unsigned short port)
{
    SOCKET s = connect_loopback(port);
    fdsend_channel *ch = NULL;
    size_t cap = 1 << 20;
    unsigned char *buf = malloc(cap);
    intptr_t fds[FDSEND_MAX_FDS];
    int32_t n = 0;
    CHECK(buf != NULL);
    CHECK_RC(fdsend_channel_open((intptr_t)s, 0, &ch), FDSEND_OK);
    for (;;) {
        int64_t len = fdsend_channel_recv(ch, buf, cap, fds, FDSEND_MAX_FDS, &n, 0);
        if (len == FDSEND_EOF)
            break;
        CHECK(len >= 0);
        CHECK_RC(fdsend_channel_send(ch, buf, (size_t)len, fds, n, 0), FDSEND_OK);
        CHECK_RC(fdsend_close_all(fds, n), FDSEND_OK); /* the peer has its own copies */
    }
    fdsend_channel_close(ch);
    closesocket(s);
    free(buf);
    return 0;
}

/* ---- Cases ------------------------------------------------------------------------------- */

/* Messages to a C peer process that echoes them on its own channel: a payload with a file,
 * a frame of handles only, a 200 KiB payload with two files (several records), a payload
 * without handles. Payloads and file contents come back intact; no handle is left open;
 * the peer ends at our close, at a message boundary (FDSEND_EOF there). */
TEST(channel_echo_two_processes)
{
    static unsigned char big[BIG], got[BIG];
    unsigned short port;
    SOCKET l = listen_loopback(&port), s;
    HANDLE child = spawn_child("channel-echo", port, NULL);
    fdsend_channel *ch = NULL;
    const size_t lens[4] = {5, 0, BIG, 10};
    const int32_t nfiles[4] = {1, 3, 2, 0};
    DWORD base = 0;
    int m;
    s = accept_child(l);
    CHECK_RC(fdsend_channel_open((intptr_t)s, 0, &ch), FDSEND_OK);
    fill(big, BIG);
    for (m = 0; m < 4; m++) {
        HANDLE f[3];
        intptr_t fds[3], back[8];
        int32_t i, n = -1;
        frame_job job;
        HANDLE th;
        if (m == 1)
            base = handle_count(); /* after the first message: the runtime's own handles */
        for (i = 0; i < nfiles[m]; i++) {
            f[i] = temp_file(FILES[i]);
            fds[i] = (intptr_t)f[i];
        }
        th = start_frame(&job, ch, INVALID_SOCKET, big, lens[m], fds, nfiles[m]);
        CHECK_RC(fdsend_channel_recv(ch, got, sizeof got, back, 8, &n, 0), (int64_t)lens[m]);
        join_ok(th);
        CHECK(memcmp(got, big, lens[m]) == 0);
        CHECK_EQ(n, nfiles[m]);
        for (i = 0; i < nfiles[m]; i++) {
            CHECK((HANDLE)back[i] != f[i]);
            CHECK(same_file((HANDLE)back[i], f[i]));
            CloseHandle(f[i]);
        }
        check_files(back, n);
    }
    CHECK_EQ(handle_count(), base);
    fdsend_channel_close(ch);
    closesocket(s);
    CHECK_EQ(wait_child(child), 0);
    closesocket(l);
}

/* The sender's limits (nothing sent) and the receiver's: a frame with more handles than
 * maxfds, a payload over cap (small, and large across records) are consumed whole and
 * refused, their handles closed; the channel goes on with the next frame. */
TEST(channel_limits)
{
    static unsigned char big[BIG], got[BIG];
    SOCKET a, b;
    fdsend_channel *tx = NULL, *rx = NULL;
    HANDLE f[3];
    intptr_t fds[FDSEND_MAX_FDS + 1], back[4];
    int32_t i, n = -1;
    DWORD base;
    frame_job job;
    HANDLE th;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_channel_open((intptr_t)a, 0, &tx), FDSEND_OK);
    CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &rx), FDSEND_OK);
    for (i = 0; i < 3; i++)
        f[i] = temp_file(FILES[i]);
    for (i = 0; i < FDSEND_MAX_FDS + 1; i++)
        fds[i] = (intptr_t)f[i % 3];
    fill(big, BIG);
    base = handle_count();
    CHECK_RC(fdsend_channel_send(tx, "x", 1, fds, FDSEND_MAX_FDS + 1, 0), FDSEND_ETOOMANYFDS);
    CHECK_RC(fdsend_channel_send(tx, big, (size_t)FDSEND_MSG_MAX_PAYLOAD + 1, NULL, 0, 0),
             FDSEND_EMSGSIZE);
    CHECK_RC(fdsend_channel_recv(rx, got, 1, back, 4, &n, FDSEND_DONTWAIT), FDSEND_EAGAIN);

    CHECK_RC(fdsend_channel_send(tx, "two", 3, fds, 2, 0), FDSEND_OK);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 1, &n, 0), FDSEND_ETOOMANYFDS);
    CHECK_EQ(n, 0);
    CHECK_EQ(handle_count(), base); /* both copies closed */
    CHECK_RC(fdsend_channel_send(tx, big, 100, fds, 1, 0), FDSEND_OK);
    CHECK_RC(fdsend_channel_recv(rx, got, 16, back, 4, &n, 0), FDSEND_EMSGSIZE);
    CHECK_EQ(handle_count(), base);
    th = start_frame(&job, tx, INVALID_SOCKET, big, BIG, fds, 1);
    CHECK_RC(fdsend_channel_recv(rx, got, BIG - 1, back, 4, &n, 0), FDSEND_EMSGSIZE);
    join_ok(th);
    CHECK_EQ(handle_count(), base);

    CHECK_RC(fdsend_channel_send(tx, "ok", 2, fds, 1, 0), FDSEND_OK);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 1, &n, 0), 2);
    CHECK(memcmp(got, "ok", 2) == 0);
    CHECK_EQ(n, 1);
    check_files(back, 1);
    CHECK_EQ(handle_count(), base);
    fdsend_channel_close(tx);
    fdsend_channel_close(rx);
    for (i = 0; i < 3; i++)
        CloseHandle(f[i]);
    closesocket(a);
    closesocket(b);
}

/* A frame whose version byte is wrong, with a handle: FDSEND_EPROTO, the handle closed,
 * and the channel is faulted (every later receive: FDSEND_EPROTO, even for a good frame).
 * A record with handles inside a frame (after its first byte) is a protocol error too. */
TEST(channel_malformed_frame)
{
    SOCKET a, b;
    fdsend_channel *rx = NULL;
    HANDLE f = temp_file(FILES[0]);
    intptr_t fd = (intptr_t)f, back[2];
    unsigned char h[FDSEND_MSG_HEADER_SIZE], got[16];
    int32_t n = -1;
    DWORD base;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &rx), FDSEND_OK);
    base = handle_count();
    header(h, 0, 1);
    h[0] = 2;
    CHECK_RC(fdsend_send((intptr_t)a, h, sizeof h, &fd, 1, 0), (int64_t)sizeof h);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
    CHECK_EQ(n, 0);
    CHECK_EQ(handle_count(), base);
    CHECK_RC(fdsend_msg_send((intptr_t)a, "fine", 4, NULL, 0, 0), FDSEND_OK);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
    fdsend_channel_close(rx);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, got, sizeof got, back, 2, &n, 0), 4); /* in sync */

    /* Handles on the payload's record: a protocol error, both records' handles closed. */
    header(h, 4, 1);
    CHECK_RC(fdsend_send((intptr_t)a, h, sizeof h, &fd, 1, 0), (int64_t)sizeof h);
    CHECK_RC(fdsend_send((intptr_t)a, "late", 4, &fd, 1, 0), 4);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
    CHECK_EQ(n, 0);
    CHECK_EQ(handle_count(), base);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* A hand-made empty record (docs/windows-protocol.md: n + d > 0; no FdSend sender writes
 * one): its 32 header bytes, no handle, no data, no sender to check. */
static void send_empty_record(SOCKET a)
{
    unsigned char rec[32];
    memset(rec, 0, sizeof rec);
    memcpy(rec, "FDSH", 4);
    rec[4] = 1;
    CHECK(send(a, (const char *)rec, (int)sizeof rec, 0) == (int)sizeof rec);
}

/* An empty record where a frame begins, and one inside a frame (after a header record that
 * announces 4 payload bytes, with a handle): FDSEND_EPROTO, never FDSEND_EOF (the peer has
 * not closed), no handle left open, and a channel object stays broken, as the .NET
 * FdChannel (FdSend.WinTests' channel_empty_record_faults) must agree. */
TEST(channel_empty_record)
{
    SOCKET a, b;
    fdsend_channel *rx = NULL;
    HANDLE f = temp_file(FILES[0]);
    intptr_t fd = (intptr_t)f, back[2];
    unsigned char h[FDSEND_MSG_HEADER_SIZE], got[16];
    int32_t n = -1;
    DWORD base;
    socket_pair(&a, &b);
    set_timeout_ms(b, SO_RCVTIMEO, 10000); /* a receive that waits wrongly fails, never hangs */
    base = handle_count();
    send_empty_record(a);
    wait_queued(b);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
    CHECK_EQ(n, 0);
    CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &rx), FDSEND_OK);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
    CHECK_EQ(n, 0);
    fdsend_channel_close(rx);
    CHECK_EQ(handle_count(), base);
    closesocket(a);
    closesocket(b);

    socket_pair(&a, &b);
    set_timeout_ms(b, SO_RCVTIMEO, 10000);
    base = handle_count();
    CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &rx), FDSEND_OK);
    header(h, 4, 1);
    CHECK_RC(fdsend_send((intptr_t)a, h, sizeof h, &fd, 1, 0), (int64_t)sizeof h);
    send_empty_record(a);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
    CHECK_EQ(n, 0);
    CHECK_EQ(handle_count(), base); /* the frame's handle was closed */
    CHECK_RC(fdsend_msg_send((intptr_t)a, "fine", 4, NULL, 0, 0), FDSEND_OK);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
    fdsend_channel_close(rx);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* The lies a hand-made record tells in refused_record. */
enum lie { NO_SUCH_PROCESS, OTHER_CREATION_TIME, NOT_THE_PEERS_SOCKET };

/* A record from this process sent on a (to b), with one entry (a value that is no handle)
 * and, as data, the honest frame "evil" without handles, telling the lie: a pid that no
 * process has, this process's pid with another creation time, or this process's pid and
 * creation time with a SOCKET value that is not a's. */
static void send_refused_record(SOCKET a, SOCKET b, enum lie lie)
{
    unsigned char rec[40 + FDSEND_MSG_HEADER_SIZE + 4];
    uint32_t pid = lie == NO_SUCH_PROCESS ? 0xFFFFFFF0u : (uint32_t)GetCurrentProcessId();
    uint32_t datalen = FDSEND_MSG_HEADER_SIZE + 4;
    uint64_t ctime, sock = lie == NOT_THE_PEERS_SOCKET ? (uint64_t)b : (uint64_t)a;
    uint64_t entry = 0x7ffffc;
    FILETIME c, e, k, u;
    CHECK(GetProcessTimes(GetCurrentProcess(), &c, &e, &k, &u));
    ctime = (uint64_t)c.dwHighDateTime << 32 | c.dwLowDateTime;
    if (lie == OTHER_CREATION_TIME)
        ctime++;
    memset(rec, 0, sizeof rec);
    memcpy(rec, "FDSH", 4);
    rec[4] = 1;
    rec[6] = 1; /* one entry (Windows is little-endian: the fields are copied as they lie) */
    memcpy(rec + 8, &datalen, 4);
    memcpy(rec + 12, &pid, 4);
    memcpy(rec + 16, &ctime, 8);
    memcpy(rec + 24, &sock, 8);
    memcpy(rec + 32, &entry, 8);
    header(rec + 40, 4, 0);
    memcpy(rec + 40 + FDSEND_MSG_HEADER_SIZE, "evil", 4);
    CHECK(send(a, (const char *)rec, (int)sizeof rec, 0) == (int)sizeof rec);
}

/* A record whose sender check fails where a frame begins (docs/windows-protocol.md,
 * "Trust model"): a process that does not exist (FDSEND_ESRCH), a reused pid (FDSEND_ESRCH), a
 * live process that does not hold the peer's socket (FDSEND_EPROTO). The channel object
 * returns that code with no handle, then stays broken (FDSEND_EPROTO, even after a good
 * frame): the record's data ("evil", an honest frame) is never handed out. The .NET
 * FdChannel (FdSend.WinTests' channel_refused_record_faults) must agree. */
TEST(channel_refused_record)
{
    static const int32_t want[] = {FDSEND_ESRCH, FDSEND_ESRCH, FDSEND_EPROTO};
    int lie;
    /* The rule, libfdsend's (fdsend_recv_refused): the codes of a refused record, and
     * FDSEND_EACCES (a sender this process may not open: not seen under wine, where every
     * process may open every other) among them; a wait, a timeout, a reset, the end are
     * not. */
    CHECK_EQ(fdsend_recv_refused(FDSEND_EPROTO), 1);
    CHECK_EQ(fdsend_recv_refused(FDSEND_ESRCH), 1);
    CHECK_EQ(fdsend_recv_refused(FDSEND_EACCES), 1);
    CHECK_EQ(fdsend_recv_refused(FDSEND_EAGAIN), 0);
    CHECK_EQ(fdsend_recv_refused(FDSEND_ETIMEDOUT), 0);
    CHECK_EQ(fdsend_recv_refused(FDSEND_ECONNRESET), 0);
    CHECK_EQ(fdsend_recv_refused(FDSEND_EOF), 0);
    CHECK_EQ(fdsend_recv_refused(FDSEND_OK), 0);
    CHECK_EQ(fdsend_recv_refused(5), 0);
    for (lie = NO_SUCH_PROCESS; lie <= NOT_THE_PEERS_SOCKET; lie++) {
        SOCKET a, b;
        fdsend_channel *rx = NULL;
        intptr_t back[2] = {0, 0};
        unsigned char got[16];
        int32_t n = -1;
        int k;
        DWORD base;
        socket_pair(&a, &b);
        set_timeout_ms(b, SO_RCVTIMEO, 10000); /* a receive that waits wrongly fails */
        CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &rx), FDSEND_OK);
        base = handle_count();
        send_refused_record(a, b, (enum lie)lie);
        CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), want[lie]);
        CHECK_EQ(n, 0);
        CHECK(back[0] == 0 && back[1] == 0);
        CHECK_EQ(handle_count(), base);
        CHECK_RC(fdsend_msg_send((intptr_t)a, "fine", 4, NULL, 0, 0), FDSEND_OK);
        for (k = 0; k < 2; k++) /* every later receive, the good frame's turn too */
            CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
        fdsend_channel_close(rx);
        CHECK_EQ(n, 0);
        CHECK_EQ(handle_count(), base); /* no handle left open, not even the sender's */
        closesocket(a);
        closesocket(b);
    }
}

/* The peer's close between frames is FDSEND_EOF (and stays so); inside a frame (a header
 * record announcing more payload than ever comes) it is FDSEND_EPROTO. */
TEST(channel_peer_gone)
{
    SOCKET a, b;
    fdsend_channel *rx = NULL;
    unsigned char h[FDSEND_MSG_HEADER_SIZE], got[128];
    intptr_t back[2];
    int32_t n = -1;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &rx), FDSEND_OK);
    CHECK_RC(fdsend_msg_send((intptr_t)a, "last", 4, NULL, 0, 0), FDSEND_OK);
    closesocket(a);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), 4);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EOF);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EOF);
    fdsend_channel_close(rx);
    closesocket(b);

    socket_pair(&a, &b);
    CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &rx), FDSEND_OK);
    header(h, 100, 0);
    CHECK_RC(fdsend_send((intptr_t)a, h, sizeof h, NULL, 0, 0), (int64_t)sizeof h);
    CHECK_RC(fdsend_send((intptr_t)a, "0123456789", 10, NULL, 0, 0), 10);
    closesocket(a);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
    fdsend_channel_close(rx);
    closesocket(b);
}

/* FDSEND_DONTWAIT on an empty socket: FDSEND_EAGAIN; SO_RCVTIMEO before a frame:
 * FDSEND_ETIMEDOUT, nothing consumed (the next frame reads); a peer that stops inside a
 * frame for SO_RCVTIMEO: FDSEND_EPROTO, the frame's handle closed. */
TEST(channel_timeouts_and_dontwait)
{
    SOCKET a, b;
    fdsend_channel *rx = NULL;
    HANDLE f = temp_file(FILES[0]);
    intptr_t fd = (intptr_t)f, back[2];
    unsigned char h[FDSEND_MSG_HEADER_SIZE], got[64];
    int32_t n = -1;
    DWORD base;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &rx), FDSEND_OK);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, got, sizeof got, back, 2, &n, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    set_timeout_ms(b, SO_RCVTIMEO, 300);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_ETIMEDOUT);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, got, sizeof got, back, 2, &n, 0), FDSEND_ETIMEDOUT);
    CHECK_RC(fdsend_msg_send((intptr_t)a, "after", 5, &fd, 1, FDSEND_DONTWAIT), FDSEND_OK);
    wait_queued(b);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, FDSEND_DONTWAIT), 5);
    CHECK_EQ(n, 1);
    check_files(back, 1);

    base = handle_count();
    header(h, 50, 1);
    CHECK_RC(fdsend_send((intptr_t)a, h, sizeof h, &fd, 1, 0), (int64_t)sizeof h);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 2, &n, 0), FDSEND_EPROTO);
    CHECK_EQ(n, 0);
    CHECK_EQ(handle_count(), base);
    fdsend_channel_close(rx);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* fdsend_msg_send / fdsend_msg_recv: a payload with handles, a frame of handles only, a
 * 200 KiB payload; a record holding two frames reads as two messages through a channel
 * object, and as FDSEND_EPROTO through fdsend_msg_recv (it keeps no place inside a record). */
TEST(channel_msg_round_trip)
{
    static unsigned char big[BIG], got[BIG];
    SOCKET a, b;
    fdsend_channel *rx = NULL;
    HANDLE f[3];
    intptr_t fds[3], back[4];
    unsigned char two[2 * FDSEND_MSG_HEADER_SIZE + 3];
    int32_t i, n = -1;
    DWORD base;
    frame_job job;
    HANDLE th;
    socket_pair(&a, &b);
    for (i = 0; i < 3; i++) {
        f[i] = temp_file(FILES[i]);
        fds[i] = (intptr_t)f[i];
    }
    fill(big, BIG);
    base = handle_count();
    CHECK_RC(fdsend_msg_send((intptr_t)a, "hello", 5, fds, 2, 0), FDSEND_OK);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, got, sizeof got, back, 4, &n, 0), 5);
    CHECK(memcmp(got, "hello", 5) == 0);
    CHECK_EQ(n, 2);
    check_files(back, 2);
    CHECK_RC(fdsend_msg_send((intptr_t)a, NULL, 0, fds, 3, 0), FDSEND_OK);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, NULL, 0, back, 4, &n, 0), 0);
    CHECK_EQ(n, 3);
    check_files(back, 3);
    th = start_frame(&job, NULL, a, big, BIG, fds, 1);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, got, sizeof got, back, 4, &n, 0), BIG);
    join_ok(th);
    CHECK(memcmp(got, big, BIG) == 0);
    check_files(back, 1);
    CHECK_EQ(handle_count(), base);

    /* Two frames in one record (no FdSend sender writes that; the format allows it). */
    header(two, 1, 0);
    two[FDSEND_MSG_HEADER_SIZE] = 'A';
    header(two + FDSEND_MSG_HEADER_SIZE + 1, 2, 0);
    memcpy(two + 2 * FDSEND_MSG_HEADER_SIZE + 1, "BC", 2);
    CHECK_RC(fdsend_send((intptr_t)a, two, sizeof two, NULL, 0, 0), (int64_t)sizeof two);
    CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &rx), FDSEND_OK);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 4, &n, 0), 1);
    CHECK_EQ(got[0], 'A');
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, back, 4, &n, 0), 2);
    CHECK(memcmp(got, "BC", 2) == 0);
    fdsend_channel_close(rx);
    CHECK_RC(fdsend_send((intptr_t)a, two, sizeof two, NULL, 0, 0), (int64_t)sizeof two);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, got, sizeof got, back, 4, &n, 0), FDSEND_EPROTO);
    for (i = 0; i < 3; i++)
        CloseHandle(f[i]);
    CHECK_EQ(handle_count(), base - 3);
    closesocket(a);
    closesocket(b);
}

/* What the channel writes, read back as plain records: a frame with a small payload is one
 * record (header, payload, handles); a payload over 64 KiB goes as a header record with the
 * handles, then records of payload without handles (the .NET FdChannel's layout). */
TEST(channel_records_on_the_wire)
{
    static unsigned char big[BIG], got[BIG + 64];
    SOCKET a, b;
    HANDLE f = temp_file(FILES[0]);
    intptr_t fd = (intptr_t)f, back[2];
    fdsend_recv_state st = FDSEND_RECV_STATE_INIT;
    size_t have = 0;
    int32_t n = -1;
    uint32_t rf = 99;
    frame_job job;
    HANDLE th;
    socket_pair(&a, &b);
    fill(big, BIG);
    CHECK_RC(fdsend_msg_send((intptr_t)a, "small", 5, &fd, 1, 0), FDSEND_OK);
    CHECK_RC(fdsend_recv((intptr_t)b, got, sizeof got, back, 2, &n, &rf, 0),
             FDSEND_MSG_HEADER_SIZE + 5);
    CHECK_EQ(n, 1);
    CHECK(memcmp(got + FDSEND_MSG_HEADER_SIZE, "small", 5) == 0);
    check_files(back, 1);

    th = start_frame(&job, NULL, a, big, BIG, &fd, 1);
    CHECK_RC(fdsend_recv_part((intptr_t)b, &st, got, 64, back, 2, &n, &rf, 0),
             FDSEND_MSG_HEADER_SIZE); /* the header record ends there */
    CHECK_EQ(n, 1);
    check_files(back, 1);
    while (have < BIG) {
        int64_t k = fdsend_recv_part((intptr_t)b, &st, got + have, BIG - have, back, 2, &n,
                                     &rf, 0);
        CHECK(k > 0);
        CHECK_EQ(n, 0);
        have += (size_t)k;
    }
    join_ok(th);
    CHECK(memcmp(got, big, BIG) == 0);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* Two threads sending on one channel object at once: every frame arrives whole (the send
 * lock serialises them), two 200 KiB frames of different lengths and bytes. */
TEST(channel_threads_share_one_channel)
{
    static unsigned char b1[BIG], b2[BIG], got[BIG];
    SOCKET a, b;
    fdsend_channel *tx = NULL, *rx = NULL;
    frame_job j1, j2;
    HANDLE t1, t2;
    int32_t n = -1;
    int k, seen = 0;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_channel_open((intptr_t)a, 0, &tx), FDSEND_OK);
    CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &rx), FDSEND_OK);
    fill(b1, BIG);
    fill(b2, BIG - 1);
    t1 = start_frame(&j1, tx, INVALID_SOCKET, b1, BIG, NULL, 0);
    t2 = start_frame(&j2, tx, INVALID_SOCKET, b2, BIG - 1, NULL, 0);
    for (k = 0; k < 2; k++) {
        int64_t len = fdsend_channel_recv(rx, got, sizeof got, NULL, 0, &n, 0);
        CHECK(len == BIG || len == BIG - 1);
        CHECK(memcmp(got, len == BIG ? b1 : b2, (size_t)len) == 0);
        seen |= len == BIG ? 1 : 2;
    }
    CHECK_EQ(seen, 3);
    join_ok(t1);
    join_ok(t2);
    fdsend_channel_close(tx);
    fdsend_channel_close(rx);
    closesocket(a);
    closesocket(b);
}

/* One receive on another thread (a frame that the main thread completes later). */
typedef struct recv_job {
    fdsend_channel *ch;
    unsigned char got[64];
    int64_t r;
} recv_job;

static DWORD WINAPI recv_job_run(LPVOID arg)
{
    recv_job *j = arg;
    int32_t n = -1;
    j->r = fdsend_channel_recv(j->ch, j->got, sizeof j->got, NULL, 0, &n, 0);
    return 0;
}

/* A receive that would have to wait behind another thread's frame returns FDSEND_EAGAIN
 * with FDSEND_DONTWAIT (the receive lock is taken; nothing of that frame is touched), and
 * the other thread's frame then completes whole. */
TEST(channel_dontwait_behind_another_frame)
{
    SOCKET a, b;
    fdsend_channel *rx = NULL;
    unsigned char h[FDSEND_MSG_HEADER_SIZE], got[64];
    int32_t n = -1;
    u_long queued = 0;
    recv_job job;
    HANDLE th;
    int k;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_channel_open((intptr_t)b, 0, &rx), FDSEND_OK);
    set_timeout_ms(b, SO_RCVTIMEO, 20000); /* a wrong turn fails, it does not hang */
    header(h, 6, 0);
    CHECK_RC(fdsend_send((intptr_t)a, h, sizeof h, NULL, 0, 0), (int64_t)sizeof h);
    wait_queued(b); /* the record is queued before the reader starts */
    queued = 1;
    job.ch = rx;
    job.r = 99;
    th = CreateThread(NULL, 0, recv_job_run, &job, 0, NULL);
    CHECK(th != NULL);
    /* The other thread has read the header record: its frame is under way. */
    for (k = 0; k < 10000 && queued > 0; k++) {
        CHECK(ioctlsocket(b, FIONREAD, &queued) == 0);
        if (queued > 0)
            Sleep(1);
    }
    CHECK_EQ(queued, 0);
    CHECK_RC(fdsend_channel_recv(rx, got, sizeof got, NULL, 0, &n, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    CHECK_RC(fdsend_send((intptr_t)a, "abcdef", 6, NULL, 0, 0), 6);
    join_ok(th);
    CHECK_RC(job.r, 6);
    CHECK(memcmp(job.got, "abcdef", 6) == 0);
    fdsend_channel_close(rx);
    closesocket(a);
    closesocket(b);
}

/* Bad arguments: the documented codes, nothing sent or consumed. */
TEST(channel_bad_arguments)
{
    SOCKET a, b, udp;
    fdsend_channel *ch = (fdsend_channel *)1;
    HANDLE f = temp_file(FILES[0]);
    intptr_t bad = 0, back[1];
    unsigned char got[8];
    int32_t n = -1;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_channel_open((intptr_t)a, 0, NULL), FDSEND_EINVAL);
    CHECK_RC(fdsend_channel_open(-1, 0, &ch), FDSEND_EBADF);
    CHECK(ch == NULL);
    CHECK_RC(fdsend_channel_open((intptr_t)a, 1, &ch), FDSEND_EINVAL);
    udp = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    CHECK(udp != INVALID_SOCKET);
    CHECK_RC(fdsend_channel_open((intptr_t)udp, 0, &ch), FDSEND_ENOTSUP);
    CHECK_RC(fdsend_msg_send((intptr_t)udp, "x", 1, NULL, 0, 0), FDSEND_ENOTSUP);
    closesocket(udp);
    CHECK(fdsend_channel_open((intptr_t)f, 0, &ch) < 0); /* a file is no socket */
    CHECK(ch == NULL);
    CHECK_RC(fdsend_channel_send(NULL, "x", 1, NULL, 0, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_channel_recv(NULL, got, 1, NULL, 0, &n, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_msg_send((intptr_t)a, NULL, 1, NULL, 0, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_msg_send((intptr_t)a, "x", 1, NULL, 1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_msg_send((intptr_t)a, "x", 1, NULL, 0, FDSEND_UNIX_SOCKET), FDSEND_EINVAL);
    CHECK_RC(fdsend_msg_send((intptr_t)a, "x", 1, &bad, 1, 0), FDSEND_EBADF);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, NULL, 1, NULL, 0, &n, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, got, 1, back, -1, &n, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_msg_recv((intptr_t)b, got, 1, NULL, 1, &n, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_msg_recv(-1, got, 1, NULL, 0, &n, 0), FDSEND_EBADF);
    /* Nothing was sent by any of those. */
    CHECK_RC(fdsend_msg_recv((intptr_t)b, got, 1, NULL, 0, &n, FDSEND_DONTWAIT), FDSEND_EAGAIN);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

const test_case win_channel_cases[] = {
    CASE(channel_echo_two_processes),
    CASE(channel_limits),
    CASE(channel_malformed_frame),
    CASE(channel_empty_record),
    CASE(channel_refused_record),
    CASE(channel_peer_gone),
    CASE(channel_timeouts_and_dontwait),
    CASE(channel_msg_round_trip),
    CASE(channel_records_on_the_wire),
    CASE(channel_threads_share_one_channel),
    CASE(channel_dontwait_behind_another_frame),
    CASE(channel_bad_arguments),
};
const size_t win_channel_ncases = sizeof win_channel_cases / sizeof win_channel_cases[0];
