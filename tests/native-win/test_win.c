/* libfdsend on Windows: HANDLE passing over a connected stream socket (TCP loopback, the
 * socket every Windows and wine has), tested as a user observes it: file contents and
 * file identity (volume serial + file index) through the received handle, the handle
 * counts of both processes, error codes, and two real processes where it matters.
 *
 * Each case is "test_win.exe <case>" (one CTest test per TEST(...) line). Cases that need
 * a second process start this executable again as "test_win.exe child <role> <port>...".
 * SPDX-License-Identifier: MIT */
#ifndef WIN32_LEAN_AND_MEAN
#  define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include "fdsend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win_harness.h"
#include "win_util.h"
#include "test_win_channel.h"

static const char *const CONTENTS[] = {"alpha file\n", "bravo file, longer\n", "charlie\n",
                                       "delta: 4th\n", "echo, the fifth file\n"};
#define NFILES 5

/* ---- Child roles -------------------------------------------------------------------------- */

/* "send": send NFILES files and a greeting, wait for the parent's verdict (one byte),
 * check every file handle still works here, exit with the verdict. */
static int child_send(unsigned short port)
{
    HANDLE files[NFILES];
    intptr_t fds[NFILES];
    char buf[64], verdict = 0;
    int i;
    int32_t n = 0;
    uint32_t rf = 0;
    SOCKET s = connect_loopback(port);
    for (i = 0; i < NFILES; i++) {
        files[i] = temp_file(CONTENTS[i]);
        fds[i] = (intptr_t)files[i];
    }
    CHECK_RC(fdsend_send((intptr_t)s, "from child", 10, fds, NFILES, 0), 10);
    /* The parent answers with one byte through fdsend (a record without handles). */
    CHECK_RC(fdsend_recv((intptr_t)s, &verdict, 1, NULL, 0, &n, &rf, 0), 1);
    for (i = 0; i < NFILES; i++) {
        read_all(files[i], buf, sizeof buf); /* the sender kept its handles */
        CHECK(strcmp(buf, CONTENTS[i]) == 0);
        CloseHandle(files[i]);
    }
    closesocket(s);
    return verdict == 'Y' ? 0 : 3;
}

/* "die": send two files with data, then exit at once without waiting for the receiver. */
static int child_die(unsigned short port)
{
    HANDLE f[2];
    intptr_t fds[2];
    SOCKET s = connect_loopback(port);
    f[0] = temp_file("gone 1");
    f[1] = temp_file("gone 2");
    fds[0] = (intptr_t)f[0];
    fds[1] = (intptr_t)f[1];
    CHECK_RC(fdsend_send((intptr_t)s, "orphan data", 11, fds, 2, 0), 11);
    /* Leave without closing anything: the process's handles die with it. The socket is
     * closed by the system; the record stays queued at the receiver. */
    ExitProcess(0);
}

/* "hold": open a file, tell the parent its handle value and our identity, then wait for
 * the parent's byte and check that the handle is still ours and still works. */
static int child_hold(unsigned short port)
{
    char buf[64], go = 0;
    unsigned long long value[2];
    SOCKET s = connect_loopback(port);
    HANDLE f = temp_file("victim's file");
    value[0] = (unsigned long long)(uintptr_t)f;
    value[1] = (unsigned long long)s;
    CHECK(send(s, (const char *)value, sizeof value, 0) == (int)sizeof value);
    CHECK(recv(s, &go, 1, 0) == 1);
    read_all(f, buf, sizeof buf);
    closesocket(s);
    return strcmp(buf, "victim's file") == 0 ? 0 : 4;
}

/* "creds": connect and wait for the parent to close. */
static int child_creds(unsigned short port)
{
    char b;
    SOCKET s = connect_loopback(port);
    recv(s, &b, 1, 0);
    closesocket(s);
    return 0;
}

/* A socket to this process's Winsock: SO_TYPE answers (a duplicated SOCKET handle does not
 * under wine: WSAENOTSOCK); SOCK_STREAM expected. */
static void check_is_stream_socket(SOCKET so)
{
    int type = 0, tl = (int)sizeof type;
    CHECK(getsockopt(so, SOL_SOCKET, SO_TYPE, (char *)&type, &tl) == 0);
    CHECK_EQ(type, SOCK_STREAM);
}

/* "listener": receive a listening socket (its port in the data): a real socket here,
 * listening on that port; accept the parent's connection through it, read "hi!", answer
 * "ok". The parent closed its own copy before connecting. */
static int child_listener(unsigned short port)
{
    SOCKET s = connect_loopback(port), l, a;
    unsigned short lport = 0;
    intptr_t got = -1;
    int32_t n = 0;
    uint32_t rf = 99;
    int on = 0, ol = (int)sizeof on;
    struct sockaddr_in addr;
    int alen = (int)sizeof addr;
    char b[4] = {0};
    CHECK_RC(fdsend_recv((intptr_t)s, &lport, sizeof lport, &got, 1, &n, &rf, 0),
             sizeof lport);
    CHECK_EQ(n, 1);
    CHECK_EQ(rf, 0);
    l = (SOCKET)got;
    check_is_stream_socket(l);
    CHECK(getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, (char *)&on, &ol) == 0);
    CHECK(on != 0);
    CHECK(getsockname(l, (struct sockaddr *)&addr, &alen) == 0);
    CHECK_EQ(ntohs(addr.sin_port), lport);
    a = accept_child(l);
    CHECK(recv(a, b, 3, MSG_WAITALL) == 3);
    CHECK(memcmp(b, "hi!", 3) == 0);
    CHECK(send(a, "ok", 2, 0) == 2);
    closesocket(a);
    CHECK_RC(fdsend_close_all(&got, 1), FDSEND_OK); /* closesocket, for a socket */
    closesocket(s);
    return 0;
}

/* "connected": receive one end of a connected pair; read "ping" through it (sent by the
 * parent's other end after the handover), answer "pong". */
static int child_connected(unsigned short port)
{
    SOCKET s = connect_loopback(port), so;
    intptr_t got = -1;
    char data[8], b[8] = {0};
    int32_t n = 0;
    uint32_t rf = 99;
    CHECK_RC(fdsend_recv((intptr_t)s, data, sizeof data, &got, 1, &n, &rf, 0), 4);
    CHECK(memcmp(data, "conn", 4) == 0);
    CHECK_EQ(n, 1);
    so = (SOCKET)got;
    check_is_stream_socket(so);
    CHECK(recv(so, b, 4, MSG_WAITALL) == 4);
    CHECK(memcmp(b, "ping", 4) == 0);
    CHECK(send(so, "pong", 4, 0) == 4);
    CHECK(closesocket(so) == 0);
    closesocket(s);
    return 0;
}

static int child_main(int argc, char **argv)
{
    unsigned short port;
    if (argc < 4)
        return 2;
    port = (unsigned short)atoi(argv[3]);
    if (strcmp(argv[2], "send") == 0)
        return child_send(port);
    if (strcmp(argv[2], "die") == 0)
        return child_die(port);
    if (strcmp(argv[2], "hold") == 0)
        return child_hold(port);
    if (strcmp(argv[2], "creds") == 0)
        return child_creds(port);
    if (strcmp(argv[2], "listener") == 0)
        return child_listener(port);
    if (strcmp(argv[2], "connected") == 0)
        return child_connected(port);
    if (strcmp(argv[2], "channel-echo") == 0)
        return child_channel_echo(port);
    return 2;
}

/* ---- Cases ------------------------------------------------------------------------------- */

/* One file handle and data within one process: content through the received handle, a
 * different handle value that names the same file, and no handle left behind. */
TEST(round_trip_in_process)
{
    SOCKET a, b;
    HANDLE f;
    intptr_t fd, got = 0;
    char buf[64], data[16];
    int32_t n = -1;
    uint32_t rf = 99;
    DWORD base;
    socket_pair(&a, &b);
    f = temp_file("hello through a handle");
    fd = (intptr_t)f;
    base = handle_count();
    CHECK_RC(fdsend_send((intptr_t)a, "data", 4, &fd, 1, 0), 4);
    CHECK_EQ(handle_count(), base + 1); /* the record's copy, owned until received */
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, &got, 1, &n, &rf, 0), 4);
    CHECK(memcmp(data, "data", 4) == 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(rf, 0);
    CHECK(got != 0 && got != fd);
    CHECK_EQ(handle_count(), base + 1); /* the copy became the received handle */
    CHECK(same_file((HANDLE)got, f));
    CHECK(file_id((HANDLE)got) == file_id(f));
    read_all((HANDLE)got, buf, sizeof buf);
    CHECK(strcmp(buf, "hello through a handle") == 0);
    CHECK(CloseHandle((HANDLE)got));
    read_all(f, buf, sizeof buf); /* the sender's own handle is untouched */
    CHECK(strcmp(buf, "hello through a handle") == 0);
    CHECK_EQ(handle_count(), base);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* The real thing: five file handles and data from another process; contents checked
 * here, the child checks that its own handles still work. */
TEST(cross_process_several_handles)
{
    unsigned short port;
    SOCKET l = listen_loopback(&port), s;
    HANDLE child = spawn_child("send", port, NULL);
    intptr_t got[8];
    char data[32], buf[64];
    int32_t n = 0, i;
    uint32_t rf = 99;
    DWORD base;
    s = accept_child(l);
    base = handle_count();
    CHECK_RC(fdsend_recv((intptr_t)s, data, sizeof data, got, 8, &n, &rf, 0), 10);
    CHECK(memcmp(data, "from child", 10) == 0);
    CHECK_EQ(n, NFILES);
    CHECK_EQ(rf, 0);
    CHECK_EQ(handle_count(), base + NFILES);
    for (i = 0; i < NFILES; i++) {
        read_all((HANDLE)got[i], buf, sizeof buf); /* in the order they were sent */
        CHECK(strcmp(buf, CONTENTS[i]) == 0);
        CHECK(CloseHandle((HANDLE)got[i]));
    }
    CHECK_EQ(handle_count(), base);
    CHECK_RC(fdsend_send((intptr_t)s, "Y", 1, NULL, 0, 0), 1);
    CHECK_EQ(wait_child(child), 0);
    closesocket(s);
    closesocket(l);
}

/* maxfds smaller than what was sent: the extra handles are closed in the sender (its
 * handle count is back to what it was) and truncation is reported. */
TEST(maxfds_truncation_closes_extras)
{
    SOCKET a, b;
    HANDLE f[4];
    intptr_t fds[4], got[4] = {0, 0, 0, 0};
    char data[8];
    int32_t n = -1, i;
    uint32_t rf = 0;
    DWORD base;
    socket_pair(&a, &b);
    for (i = 0; i < 4; i++) {
        f[i] = temp_file(CONTENTS[i]);
        fds[i] = (intptr_t)f[i];
    }
    base = handle_count();
    CHECK_RC(fdsend_send((intptr_t)a, "xyz", 3, fds, 4, 0), 3);
    CHECK_EQ(handle_count(), base + 4);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, got, 2, &n, &rf, 0), 3);
    CHECK_EQ(n, 2);
    CHECK_EQ(rf, FDSEND_RECV_FDS_TRUNCATED);
    CHECK(got[2] == 0 && got[3] == 0); /* nothing written past *nfds */
    CHECK(same_file((HANDLE)got[0], f[0]));
    CHECK(same_file((HANDLE)got[1], f[1]));
    CHECK_EQ(handle_count(), base + 2); /* the two extras are gone, not leaked */
    CloseHandle((HANDLE)got[0]);
    CloseHandle((HANDLE)got[1]);
    CHECK_EQ(handle_count(), base);

    /* maxfds 0: every handle closed, data still delivered. */
    CHECK_RC(fdsend_send((intptr_t)a, "q", 1, fds, 3, 0), 1);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, NULL, 0, NULL, &rf, 0), 1);
    CHECK_EQ(rf, FDSEND_RECV_FDS_TRUNCATED);
    CHECK_EQ(handle_count(), base);
    for (i = 0; i < 4; i++)
        CloseHandle(f[i]);
    closesocket(a);
    closesocket(b);
}

/* A record read in pieces with fdsend_recv_part: the handles come with the first piece,
 * the caller's state carries the count of bytes still due, one read never crosses into
 * the next record, and the state is fresh (all zero) again at the record's end. */
TEST(partial_reads_keep_the_stream)
{
    SOCKET a, b;
    HANDLE f = temp_file("piecewise");
    intptr_t fd = (intptr_t)f, got = 0;
    char data[32];
    int32_t n = -1;
    uint32_t rf = 99;
    fdsend_recv_state st = FDSEND_RECV_STATE_INIT;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_send((intptr_t)a, "0123456789", 10, &fd, 1, 0), 10);
    CHECK_RC(fdsend_send((intptr_t)a, "next", 4, NULL, 0, 0), 4);
    CHECK_RC(fdsend_recv_part((intptr_t)b, &st, data, 3, &got, 1, &n, &rf, 0), 3);
    CHECK(memcmp(data, "012", 3) == 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(rf, 0);
    CHECK(same_file((HANDLE)got, f));
    CloseHandle((HANDLE)got);
    CHECK(st.reserved[0] != 0); /* inside the record */
    CHECK_RC(fdsend_recv_part((intptr_t)b, &st, data, 4, &got, 1, &n, &rf, 0), 4);
    CHECK(memcmp(data, "3456", 4) == 0);
    CHECK_EQ(n, 0);
    /* One receive never crosses into the next message. */
    CHECK_RC(fdsend_recv_part((intptr_t)b, &st, data, sizeof data, &got, 1, &n, &rf, 0), 3);
    CHECK(memcmp(data, "789", 3) == 0);
    CHECK(st.reserved[0] == 0 && st.reserved[1] == 0); /* at a record boundary again */
    /* Between records, fdsend_recv and a state-taking read are interchangeable. */
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, &got, 1, &n, &rf, 0), 4);
    CHECK(memcmp(data, "next", 4) == 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, 0);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* fdsend_recv reads whole records: a buffer too small for the record's data (len == 0
 * included) is FDSEND_EMSGSIZE with nothing consumed and no handle taken (the record's
 * copy is still the only one: the handle count is unchanged); a retry with room gets the
 * record whole, handles and all. */
TEST(recv_small_buffer_is_emsgsize)
{
    SOCKET a, b;
    HANDLE f = temp_file("too small");
    intptr_t fd = (intptr_t)f, got = 0;
    char data[16];
    int32_t n = 9;
    uint32_t rf = 9;
    DWORD base;
    socket_pair(&a, &b);
    base = handle_count();
    CHECK_RC(fdsend_send((intptr_t)a, "0123456789", 10, &fd, 1, 0), 10);
    CHECK_EQ(handle_count(), base + 1); /* the record's copy */
    CHECK_RC(fdsend_recv((intptr_t)b, data, 9, &got, 1, &n, &rf, 0), FDSEND_EMSGSIZE);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, 0);
    CHECK_EQ(got, 0);
    CHECK_EQ(fdsend_last_os_error(), WSAEMSGSIZE);
    CHECK_EQ(handle_count(), base + 1); /* nothing duplicated into this side */
    n = 9;
    rf = 9;
    CHECK_RC(fdsend_recv((intptr_t)b, NULL, 0, &got, 1, &n, &rf, FDSEND_DONTWAIT),
             FDSEND_EMSGSIZE);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, 0);
    CHECK_EQ(handle_count(), base + 1);
    CHECK_RC(fdsend_recv((intptr_t)b, data, 10, &got, 1, &n, &rf, 0), 10);
    CHECK(memcmp(data, "0123456789", 10) == 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(rf, 0);
    CHECK(same_file((HANDLE)got, f));
    CHECK_EQ(handle_count(), base + 1); /* the copy became the received handle */
    CHECK(CloseHandle((HANDLE)got));
    CHECK_EQ(handle_count(), base);
    /* A record of handles only still reads with len == 0. */
    CHECK_RC(fdsend_send((intptr_t)a, NULL, 0, &fd, 1, 0), 0);
    CHECK_RC(fdsend_recv((intptr_t)b, NULL, 0, &got, 1, &n, &rf, 0), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(rf, 0);
    CHECK(CloseHandle((HANDLE)got));
    CHECK_EQ(handle_count(), base);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* One state object reads a record in pieces on one socket, then (finished there) on
 * another; a state in the middle of a record on another socket, a NULL state and one that
 * is not as the library left it are FDSEND_EINVAL with nothing consumed. */
TEST(recv_part_state_on_two_sockets)
{
    SOCKET a1, b1, a2, b2;
    char data[16];
    int32_t n = 9;
    uint32_t rf = 9;
    fdsend_recv_state st = FDSEND_RECV_STATE_INIT, bad;
    socket_pair(&a1, &b1);
    socket_pair(&a2, &b2);
    CHECK_RC(fdsend_send((intptr_t)a1, "first!", 6, NULL, 0, 0), 6);
    CHECK_RC(fdsend_send((intptr_t)a2, "second", 6, NULL, 0, 0), 6);
    CHECK_RC(fdsend_recv_part((intptr_t)b1, &st, data, 4, NULL, 0, &n, &rf, 0), 4);
    CHECK(memcmp(data, "firs", 4) == 0);
    /* Mid-record on b1: refused on b2, nothing consumed on either. */
    CHECK_RC(fdsend_recv_part((intptr_t)b2, &st, data, sizeof data, NULL, 0, &n, &rf, 0),
             FDSEND_EINVAL);
    CHECK_RC(fdsend_recv_part((intptr_t)b1, &st, data, sizeof data, NULL, 0, &n, &rf, 0), 2);
    CHECK(memcmp(data, "t!", 2) == 0);
    CHECK_RC(fdsend_recv_part((intptr_t)b2, &st, data, 3, NULL, 0, &n, &rf, 0), 3);
    CHECK(memcmp(data, "sec", 3) == 0);
    CHECK_RC(fdsend_recv_part((intptr_t)b2, &st, data, sizeof data, NULL, 0, &n, &rf, 0), 3);
    CHECK(memcmp(data, "ond", 3) == 0);
    n = 9;
    rf = 9;
    CHECK_RC(fdsend_recv_part((intptr_t)b2, NULL, data, sizeof data, NULL, 0, &n, &rf, 0),
             FDSEND_EINVAL);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, 0);
    memset(&bad, 0xff, sizeof bad); /* never zeroed */
    CHECK_RC(fdsend_recv_part((intptr_t)b2, &bad, data, sizeof data, NULL, 0, &n, &rf, 0),
             FDSEND_EINVAL);
    CHECK_RC(fdsend_send((intptr_t)a2, "x", 1, NULL, 0, 0), 1);
    CHECK_RC(fdsend_recv((intptr_t)b2, data, sizeof data, NULL, 0, &n, &rf, 0), 1);
    CHECK_EQ(data[0], 'x');
    closesocket(a1);
    closesocket(b1);
    closesocket(a2);
    closesocket(b2);
}

/* len == 0: handles alone round-trip with no flag. A receive of length 0 that meets data:
 * fdsend_recv (whole records) says FDSEND_EMSGSIZE and consumes nothing; fdsend_recv_part
 * consumes one byte and says so, as on POSIX. */
TEST(zero_length_data)
{
    SOCKET a, b;
    HANDLE f = temp_file("zero");
    intptr_t fd = (intptr_t)f, got = 0;
    char data[8];
    int32_t n = -1;
    uint32_t rf = 99;
    fdsend_recv_state st = FDSEND_RECV_STATE_INIT;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_send((intptr_t)a, NULL, 0, &fd, 1, 0), 0);
    CHECK_RC(fdsend_recv((intptr_t)b, NULL, 0, &got, 1, &n, &rf, 0), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(rf, 0);
    CHECK(same_file((HANDLE)got, f));
    CloseHandle((HANDLE)got);
    /* Nothing at all: nothing goes on the wire. */
    CHECK_RC(fdsend_send((intptr_t)a, NULL, 0, NULL, 0, 0), 0);
    CHECK_RC(fdsend_send((intptr_t)a, "ab", 2, NULL, 0, 0), 2);
    CHECK_RC(fdsend_recv((intptr_t)b, NULL, 0, &got, 1, &n, &rf, 0), FDSEND_EMSGSIZE);
    CHECK_RC(fdsend_recv_part((intptr_t)b, &st, NULL, 0, &got, 1, &n, &rf, 0), 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, FDSEND_RECV_DATA_TRUNCATED);
    CHECK_RC(fdsend_recv_part((intptr_t)b, &st, data, sizeof data, &got, 1, &n, &rf, 0), 1);
    CHECK_EQ(data[0], 'b');
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

typedef struct send_job {
    SOCKET s;
    const unsigned char *p;
    size_t len;
    intptr_t fd;
} send_job;

static DWORD WINAPI send_job_run(LPVOID arg)
{
    send_job *j = arg;
    int64_t r = fdsend_send((intptr_t)j->s, j->p, j->len, &j->fd, 1, 0);
    return r == (int64_t)j->len ? 0 : 1;
}

/* Start a thread sending p[0..len) with fd on s (j holds the job while it runs). */
static HANDLE start_send_job(send_job *j, SOCKET s, const unsigned char *p, size_t len,
                             intptr_t fd)
{
    HANDLE th;
    j->s = s;
    j->p = p;
    j->len = len;
    j->fd = fd;
    th = CreateThread(NULL, 0, send_job_run, j, 0, NULL);
    CHECK(th != NULL);
    return th;
}

/* Wait (bounded) for a thread that returns 0 on success; close it. */
/* A megabyte of data with a handle, read back in uneven pieces (fdsend_recv_part), every
 * byte checked; then the same megabyte read whole by fdsend_recv, which waits for the
 * bytes still arriving (the sender is still writing when the header is read). */
TEST(large_message)
{
    enum { SIZE = 1 << 20 };
    SOCKET a, b;
    HANDLE f = temp_file("big"), th;
    intptr_t fd = (intptr_t)f, got = 0;
    unsigned char *out = malloc(SIZE), *in = malloc(SIZE);
    size_t off = 0, i;
    int32_t n = 0, total_fds = 0;
    uint32_t rf;
    fdsend_recv_state st = FDSEND_RECV_STATE_INIT;
    send_job j;
    socket_pair(&a, &b);
    CHECK(out != NULL && in != NULL);
    for (i = 0; i < SIZE; i++)
        out[i] = (unsigned char)(i * 7 + (i >> 9));
    /* A sender thread, since a megabyte does not fit in the socket buffers. */
    th = start_send_job(&j, a, out, SIZE, fd);
    while (off < SIZE) {
        size_t want = 1 + (off * 31 % 65521);
        int64_t r;
        if (want > SIZE - off)
            want = SIZE - off;
        r = fdsend_recv_part((intptr_t)b, &st, in + off, want, &got, 1, &n, &rf, 0);
        CHECK(r > 0);
        total_fds += n;
        if (n == 1) {
            CHECK(same_file((HANDLE)got, f));
            CloseHandle((HANDLE)got);
        }
        off += (size_t)r;
    }
    join_ok(th);
    CHECK_EQ(total_fds, 1);
    CHECK(memcmp(in, out, SIZE) == 0);
    /* Whole: one fdsend_recv while the sender is still writing. */
    memset(in, 0, SIZE);
    th = start_send_job(&j, a, out, SIZE, fd);
    CHECK_RC(fdsend_recv((intptr_t)b, in, SIZE, &got, 1, &n, &rf, 0), SIZE);
    CHECK_EQ(n, 1);
    CHECK(same_file((HANDLE)got, f));
    CloseHandle((HANDLE)got);
    join_ok(th);
    CHECK(memcmp(in, out, SIZE) == 0);
    free(in);
    free(out);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* The sender exits before the receiver reads: its handles are gone, the receiver gets
 * FDSEND_ESRCH with no handle and the handle count unchanged. fdsend_recv_part leaves the
 * record's data for the next read with its state; fdsend_recv (whole records, no state)
 * drops the record whole, so the next call meets the end of the stream. */
static void sender_died(int with_state)
{
    unsigned short port;
    SOCKET l = listen_loopback(&port), s;
    HANDLE child = spawn_child("die", port, NULL);
    intptr_t got[2] = {0, 0};
    char data[32];
    int32_t n = 7;
    uint32_t rf = 7;
    DWORD base;
    fdsend_recv_state st = FDSEND_RECV_STATE_INIT;
    fdsend_recv_state *sp = with_state ? &st : NULL;
    s = accept_child(l);
    CHECK_EQ(wait_child(child), 0);
    base = handle_count();
    CHECK_RC(sp != NULL ? fdsend_recv_part((intptr_t)s, sp, data, sizeof data, got, 2, &n, &rf, 0)
                        : fdsend_recv((intptr_t)s, data, sizeof data, got, 2, &n, &rf, 0),
             FDSEND_ESRCH);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, 0);
    CHECK(got[0] == 0 && got[1] == 0);
    CHECK_EQ(handle_count(), base);
    if (sp != NULL) {
        CHECK_RC(fdsend_recv_part((intptr_t)s, sp, data, sizeof data, got, 2, &n, &rf, 0), 11);
        CHECK(memcmp(data, "orphan data", 11) == 0);
        CHECK_EQ(n, 0);
    }
    CHECK_RC(fdsend_recv((intptr_t)s, data, sizeof data, got, 2, &n, &rf, 0), 0); /* EOF */
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, FDSEND_RECV_END_OF_STREAM);
    closesocket(s);
    closesocket(l);
}

TEST(sender_died)
{
    sender_died(1);
}

TEST(sender_died_whole_record)
{
    sender_died(0);
}

/* A peer that names ANOTHER process in its header (here: a child holding a file) must not
 * make the receiver take that process's handles: FDSEND_EPROTO, and the child's handle
 * still works afterwards. */
TEST(forged_sender_is_refused)
{
    unsigned short port;
    SOCKET l = listen_loopback(&port), cs, a, b;
    HANDLE child = spawn_child("hold", port, NULL);
    unsigned long long victim[2] = {0, 0}, t;
    unsigned char rec[40];
    FILETIME c, e, k, u;
    intptr_t got = 0;
    char data[8];
    int32_t n = 0;
    uint32_t rf = 0;
    DWORD child_pid;
    cs = accept_child(l);
    CHECK(recv(cs, (char *)victim, sizeof victim, MSG_WAITALL) == (int)sizeof victim);
    child_pid = GetProcessId(child);
    CHECK(GetProcessTimes(child, &c, &e, &k, &u));
    t = (unsigned long long)c.dwHighDateTime << 32 | c.dwLowDateTime;
    /* A hand-made record on a connection between two sockets of THIS process: the child's
     * pid and creation time, the child's handle value, and the child's own socket (so the
     * handle-copy check succeeds and the address check must catch the lie). */
    socket_pair(&a, &b);
    memset(rec, 0, sizeof rec);
    memcpy(rec, "FDSH", 4);
    rec[4] = 1;
    rec[6] = 1;
    memcpy(rec + 12, &child_pid, 4);
    memcpy(rec + 16, &t, 8);
    memcpy(rec + 24, &victim[1], 8);
    memcpy(rec + 32, &victim[0], 8);
    CHECK(send(a, (const char *)rec, sizeof rec, 0) == (int)sizeof rec);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, &got, 1, &n, &rf, 0), FDSEND_EPROTO);
    CHECK_EQ(n, 0);
    CHECK_EQ(got, 0);
    CHECK(send(cs, "g", 1, 0) == 1);
    CHECK_EQ(wait_child(child), 0); /* the child's file handle survived */
    closesocket(a);
    closesocket(b);
    closesocket(cs);
    closesocket(l);
}

/* Bytes that are no record: FDSEND_EPROTO, and nothing consumed. */
TEST(garbage_is_a_protocol_error)
{
    SOCKET a, b;
    char data[64];
    int32_t n = 0;
    uint32_t rf = 0;
    const char junk[] = "this is not an fdsend record at all";
    socket_pair(&a, &b);
    CHECK(send(a, junk, (int)sizeof junk, 0) == (int)sizeof junk);
    Sleep(50);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, NULL, 0, &n, &rf, 0), FDSEND_EPROTO);
    CHECK(recv(b, data, sizeof data, 0) == (int)sizeof junk);
    CHECK(memcmp(data, junk, sizeof junk) == 0);
    closesocket(a);
    closesocket(b);
}

/* DONTWAIT: nothing queued gives EAGAIN and consumes nothing; then the message arrives
 * whole. Peer closed: 0, no handle, no flag. */
TEST(dontwait_and_end_of_stream)
{
    SOCKET a, b;
    HANDLE f = temp_file("later");
    intptr_t fd = (intptr_t)f, got = 0;
    char data[8];
    int32_t n = 9;
    uint32_t rf = 9;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, &got, 1, &n, &rf, FDSEND_DONTWAIT),
             FDSEND_EAGAIN);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, 0);
    CHECK_RC(fdsend_send((intptr_t)a, "k", 1, &fd, 1, FDSEND_DONTWAIT), 1);
    Sleep(50);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, &got, 1, &n, &rf, FDSEND_DONTWAIT), 1);
    CHECK_EQ(n, 1);
    CHECK(same_file((HANDLE)got, f));
    CloseHandle((HANDLE)got);
    closesocket(a);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, &got, 1, &n, &rf, 0), 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, FDSEND_RECV_END_OF_STREAM);
    CloseHandle(f);
    closesocket(b);
}

/* One fdsend_recv_exact_step once something is queued. */
static int32_t exact_step_when_ready(SOCKET b, fdsend_exact_state *st, void *buf, size_t len,
                                     intptr_t *fds, int32_t maxfds)
{
    CHECK_RC(fdsend_wait((intptr_t)b, FDSEND_POLL_IN, 10000), FDSEND_OK);
    return fdsend_recv_exact_step((intptr_t)b, st, buf, len, fds, maxfds, 0);
}

/* fdsend_recv_exact_step over records (what ReceiveFdsExactly uses on Windows): nothing
 * queued is FDSEND_EAGAIN; records merge in order, handles beyond maxfds closed and
 * flagged; a record with more data than is still due is FDSEND_EMSGSIZE, consumes nothing
 * and ends the receive with every handle it held closed; the end of the stream before the
 * first byte is a finished receive. */
TEST(exact_step_over_records)
{
    SOCKET a, b;
    HANDLE f[3];
    intptr_t fds[3], got[4] = {0, 0, 0, 0};
    unsigned char buf[6];
    uint32_t count = 5;
    int i;
    DWORD base;
    fdsend_exact_state st = FDSEND_EXACT_STATE_INIT;

    socket_pair(&a, &b);
    for (i = 0; i < 3; i++) {
        f[i] = temp_file(CONTENTS[i]);
        fds[i] = (intptr_t)f[i];
    }
    base = handle_count();
    CHECK_RC(fdsend_recv_exact_step((intptr_t)b, &st, buf, sizeof buf, got, 2, 0), FDSEND_EAGAIN);
    CHECK_RC(fdsend_send((intptr_t)a, &count, sizeof count, NULL, 0, 0), 4);
    CHECK_RC(exact_step_when_ready(b, &st, buf, sizeof buf, got, 2), FDSEND_OK);
    CHECK_EQ(st.received, 4);
    CHECK_RC(fdsend_send((intptr_t)a, "a", 1, fds, 3, 0), 1);
    CHECK_RC(exact_step_when_ready(b, &st, buf, sizeof buf, got, 2), FDSEND_OK);
    CHECK_EQ(st.received, 5);
    CHECK_EQ(st.nfds, 2);
    CHECK_EQ(st.rflags, FDSEND_RECV_FDS_TRUNCATED);
    CHECK(same_file((HANDLE)got[0], f[0]));
    CHECK(same_file((HANDLE)got[1], f[1]));
    CHECK_EQ(handle_count(), base + 2); /* the third was closed */

    CHECK_RC(fdsend_send((intptr_t)a, "bc", 2, NULL, 0, 0), 2);
    CHECK_RC(exact_step_when_ready(b, &st, buf, sizeof buf, got, 2), FDSEND_EMSGSIZE);
    CHECK(got[0] == -1 && got[1] == -1);
    CHECK_EQ(st.nfds, 2);
    CHECK_EQ(handle_count(), base);
    CHECK_RC(fdsend_recv_exact_step((intptr_t)b, &st, buf, sizeof buf, got, 2, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv((intptr_t)b, buf, sizeof buf, NULL, 0, NULL, NULL, 0), 2); /* still queued */

    memset(&st, 0, sizeof st);
    CHECK_RC(fdsend_send((intptr_t)a, "d", 1, fds, 1, 0), 1);
    CHECK_RC(exact_step_when_ready(b, &st, buf, 1, got, 2), FDSEND_EXACT_DONE);
    CHECK_EQ(st.nfds, 1);
    CHECK(same_file((HANDLE)got[0], f[0]));
    CloseHandle((HANDLE)got[0]);
    CHECK_EQ(handle_count(), base);
    memset(&st, 0, sizeof st);
    closesocket(a);
    CHECK_RC(exact_step_when_ready(b, &st, buf, sizeof buf, got, 2), FDSEND_EXACT_DONE);
    CHECK_EQ(st.received, 0);
    CHECK_EQ(st.rflags, FDSEND_RECV_END_OF_STREAM);
    for (i = 0; i < 3; i++)
        CloseHandle(f[i]);
    closesocket(b);
}

/* Milliseconds on QueryPerformanceCounter (the clock libfdsend's deadlines use). */
static double precise_ms(void)
{
    LARGE_INTEGER c, f;
    QueryPerformanceCounter(&c);
    QueryPerformanceFrequency(&f);
    return (double)c.QuadPart * 1000.0 / (double)f.QuadPart;
}

/* fdsend_wait on WSAPoll: readable once a record is queued (nothing consumed: the record
 * still reads whole), writable at once, a timeout that never ends early, bad arguments;
 * fdsend_peek is FDSEND_ENOTSUP here. */
TEST(wait_and_peek)
{
    SOCKET a, b;
    char data[8];
    int32_t n = 9;
    uint32_t rf = 9;
    double start, took;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_wait((intptr_t)b, FDSEND_POLL_IN, 0), FDSEND_ETIMEDOUT);
    CHECK_RC(fdsend_wait((intptr_t)b, FDSEND_POLL_OUT, 0), FDSEND_OK);
    start = precise_ms();
    CHECK_RC(fdsend_wait((intptr_t)b, FDSEND_POLL_IN, 200), FDSEND_ETIMEDOUT);
    took = precise_ms() - start;
    printf("fdsend_wait 200 ms: %.1f ms\n", took);
    CHECK(took >= 200.0);
    CHECK_RC(fdsend_send((intptr_t)a, "hi", 2, NULL, 0, 0), 2);
    CHECK_RC(fdsend_wait((intptr_t)b, FDSEND_POLL_IN, 10000), FDSEND_OK);
    CHECK_RC(fdsend_peek((intptr_t)b, data, sizeof data, 0), FDSEND_ENOTSUP);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, NULL, 0, &n, &rf, 0), 2);
    CHECK(memcmp(data, "hi", 2) == 0);
    CHECK_RC(fdsend_wait((intptr_t)b, 0, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_wait((intptr_t)b, FDSEND_POLL_IN | FDSEND_POLL_OUT, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_wait((intptr_t)b, FDSEND_POLL_IN, -2), FDSEND_EINVAL);
    CHECK_RC(fdsend_wait(-1, FDSEND_POLL_IN, 0), FDSEND_EBADF);
    closesocket(a);
    closesocket(b);
}

/* A data-only record (no handle, so no sender to check) of len bytes, as fdsend_send
 * writes it (docs/windows-protocol.md), into out (32 + len bytes). */
static size_t raw_record(unsigned char *out, const char *data, uint32_t len)
{
    memset(out, 0, 32);
    memcpy(out, "FDSH", 4);
    out[4] = 1;
    out[8] = (unsigned char)len;
    out[9] = (unsigned char)(len >> 8);
    memcpy(out + 32, data, len);
    return 32 + (size_t)len;
}

/* A connected pair whose receiving end b has SO_RCVTIMEO ms and has the first queued
 * bytes of a data-only record of data queued; the whole record is in rec (returns its
 * length). */
static size_t half_record(SOCKET *a, SOCKET *b, unsigned char *rec, const char *data,
                          int queued, DWORD ms)
{
    size_t len = raw_record(rec, data, (uint32_t)strlen(data));
    socket_pair(a, b);
    set_timeout_ms(*b, SO_RCVTIMEO, ms);
    CHECK(send(*a, (const char *)rec, queued, 0) == queued);
    return len;
}

/* SO_RCVTIMEO bounds fdsend_recv: with a record whose header stopped half-way (the wait for
 * the rest of it; that wait had no limit once), and with nothing queued. Both give
 * FDSEND_ETIMEDOUT and consume nothing: the record, once complete, reads whole. */
TEST(recv_timeout)
{
    SOCKET a, b;
    unsigned char rec[64];
    char data[8];
    int32_t n = 9;
    uint32_t rf = 9;
    size_t len = half_record(&a, &b, rec, "hi", 10, 300);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, NULL, 0, &n, &rf, 0), FDSEND_ETIMEDOUT);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, 0);
    CHECK(send(a, (const char *)rec + 10, (int)len - 10, 0) == (int)len - 10);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, NULL, 0, &n, &rf, 0), 2);
    CHECK(memcmp(data, "hi", 2) == 0);
    CHECK_EQ(rf, 0);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, NULL, 0, &n, &rf, 0), FDSEND_ETIMEDOUT);
    closesocket(a);
    closesocket(b);
}

/* SO_RCVTIMEO inside a record's data (read in pieces with fdsend_recv_part, the rest not
 * sent yet): the remaining count survives the timeout in the caller's state, so the rest
 * reads as data once it comes (it was once forgotten, and the rest then parsed as a
 * header: FDSEND_EPROTO). */
TEST(recv_timeout_inside_record_data)
{
    SOCKET a, b;
    unsigned char rec[64];
    char data[8];
    int32_t n = 9;
    uint32_t rf = 9;
    fdsend_recv_state st = FDSEND_RECV_STATE_INIT;
    size_t len = half_record(&a, &b, rec, "helo", 32 + 2, 300);
    Sleep(50);
    CHECK_RC(fdsend_recv_part((intptr_t)b, &st, data, sizeof data, NULL, 0, &n, &rf, 0), 2);
    CHECK(memcmp(data, "he", 2) == 0);
    CHECK_RC(fdsend_recv_part((intptr_t)b, &st, data, sizeof data, NULL, 0, &n, &rf, 0), FDSEND_ETIMEDOUT);
    CHECK(send(a, (const char *)rec + len - 2, 2, 0) == 2);
    CHECK_RC(fdsend_recv_part((intptr_t)b, &st, data, sizeof data, NULL, 0, &n, &rf, 0), 2);
    CHECK(memcmp(data, "lo", 2) == 0);
    closesocket(a);
    closesocket(b);
}

typedef struct late_send {
    SOCKET s;
    const unsigned char *p;
    int len;
} late_send;

/* Sends its bytes once the receiver is inside the record (it cannot return before them). */
static DWORD WINAPI late_send_run(LPVOID arg)
{
    late_send *j = arg;
    Sleep(100);
    return send(j->s, (const char *)j->p, j->len, 0) == j->len ? 0 : 1;
}

/* fdsend_recv (whole records) inside a record's data that is still arriving: it waits for
 * the rest even on a non-blocking socket with FDSEND_DONTWAIT, and returns the record
 * whole; with nothing more coming, SO_RCVTIMEO ends the wait (FDSEND_ETIMEDOUT; the
 * connection is then inside the record). */
TEST(recv_whole_waits_for_record_data)
{
    SOCKET a, b;
    unsigned char rec[64];
    char data[8];
    int32_t n = 9;
    uint32_t rf = 9;
    u_long on = 1;
    late_send j;
    HANDLE th;
    size_t len = half_record(&a, &b, rec, "helo", 32 + 2, 0);
    CHECK(ioctlsocket(b, FIONBIO, &on) == 0);
    Sleep(50);
    j.s = a;
    j.p = rec + len - 2;
    j.len = 2;
    th = CreateThread(NULL, 0, late_send_run, &j, 0, NULL);
    CHECK(th != NULL);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, NULL, 0, &n, &rf, FDSEND_DONTWAIT), 4);
    CHECK(memcmp(data, "helo", 4) == 0);
    CHECK_EQ(rf, 0);
    join_ok(th);
    closesocket(a);
    closesocket(b);

    half_record(&a, &b, rec, "helo", 32 + 2, 300);
    Sleep(50);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, NULL, 0, &n, &rf, 0), FDSEND_ETIMEDOUT);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, 0);
    closesocket(a);
    closesocket(b);
}

/* The three records of the fdsend_recv_exact tests: "abcd" with f[0], "e" with f[1] and
 * f[2], then "fg" (raw, no handles) of which the first `sent` bytes are sent now and the
 * rest by a thread once the receiver waits inside the bytes; 7 bytes in all. */
static HANDLE exact_records(SOCKET a, const HANDLE *f, unsigned char *rec, int sent,
                            late_send *j)
{
    intptr_t fds[3];
    size_t len = raw_record(rec, "fg", 2);
    HANDLE th;
    int i;
    for (i = 0; i < 3; i++)
        fds[i] = (intptr_t)f[i];
    CHECK_RC(fdsend_send((intptr_t)a, "abcd", 4, fds, 1, 0), 4);
    CHECK_RC(fdsend_send((intptr_t)a, "e", 1, fds + 1, 2, 0), 1);
    CHECK(sent == 0 || send(a, (const char *)rec, sent, 0) == sent);
    j->s = a;
    j->p = rec + sent;
    j->len = (int)len - sent;
    th = CreateThread(NULL, 0, late_send_run, j, 0, NULL);
    CHECK(th != NULL);
    return th;
}

/* fdsend_recv_exact over several records, the last sent later (whole, then its second
 * half only): the bytes in order, the handles merged in arrival order; beyond maxfds closed
 * and flagged; on a non-blocking socket with FDSEND_DONTWAIT the rest is waited for once
 * the first byte is in. */
TEST(exact_whole_over_records)
{
    SOCKET a, b;
    HANDLE f[3];
    intptr_t got[4] = {0, 0, 0, 0};
    unsigned char buf[8], rec[64];
    uint32_t rf = 9;
    int32_t n = 9;
    u_long on = 1;
    late_send j;
    int i;
    DWORD base;

    socket_pair(&a, &b);
    for (i = 0; i < 3; i++)
        f[i] = temp_file(CONTENTS[i]);
    base = handle_count();
    {   /* the last record comes once the call waits for it (or is there before: fine) */
        HANDLE th = exact_records(a, f, rec, 0, &j);
        CHECK_RC(fdsend_recv_exact((intptr_t)b, buf, 7, got, 4, &n, &rf, 0), 7);
        join_ok(th);
    }
    CHECK(memcmp(buf, "abcdefg", 7) == 0);
    CHECK_EQ(n, 3);
    CHECK_EQ(rf, 0);
    for (i = 0; i < 3; i++)
        CHECK(same_file((HANDLE)got[i], f[i]));
    CHECK_EQ(handle_count(), base + 3);
    CHECK_RC(fdsend_close_all(got, 3), FDSEND_OK);
    CHECK_EQ(handle_count(), base);

    CHECK(ioctlsocket(b, FIONBIO, &on) == 0);
    {
        HANDLE th = exact_records(a, f, rec, 33, &j); /* its header half there */
        Sleep(20);
        CHECK_RC(fdsend_recv_exact((intptr_t)b, buf, 7, got, 2, &n, &rf, FDSEND_DONTWAIT), 7);
        join_ok(th);
    }
    CHECK(memcmp(buf, "abcdefg", 7) == 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(rf, FDSEND_RECV_FDS_TRUNCATED);
    CHECK(same_file((HANDLE)got[0], f[0]));
    CHECK(same_file((HANDLE)got[1], f[1]));
    CHECK_EQ(handle_count(), base + 2); /* the third was closed */
    CHECK_RC(fdsend_close_all(got, 2), FDSEND_OK);
    CHECK_EQ(handle_count(), base);
    for (i = 0; i < 3; i++)
        CloseHandle(f[i]);
    closesocket(a);
    closesocket(b);
}

/* fdsend_recv_exact of 4 bytes on b once a record "ab" with a handle came, the rest not to
 * come: want, the handle closed (its slot -1), no result, the handle count back at base. */
static void exact_fails_inside(SOCKET b, int32_t want, DWORD base)
{
    intptr_t got[2] = {0, 0};
    unsigned char buf[8];
    uint32_t rf = 9;
    int32_t n = 9;
    CHECK_RC(fdsend_recv_exact((intptr_t)b, buf, 4, got, 2, &n, &rf, 0), want);
    CHECK(got[0] == -1);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, 0);
    CHECK_EQ(handle_count(), base);
}

/* fdsend_recv_exact before and inside its bytes: with nothing queued, FDSEND_EAGAIN with
 * FDSEND_DONTWAIT and FDSEND_ETIMEDOUT at SO_RCVTIMEO, as fdsend_recv (nothing consumed); a
 * record with more data than is still due is FDSEND_EMSGSIZE; the end of the stream inside
 * the bytes is FDSEND_EPROTO; both close every handle the call had received. The end before
 * the first byte: 0 and END_OF_STREAM. */
TEST(exact_end_of_stream)
{
    SOCKET a, b;
    HANDLE f = temp_file("end");
    intptr_t fd = (intptr_t)f, got[2] = {0, 0};
    unsigned char buf[8];
    uint32_t rf = 9;
    int32_t n = 9;
    DWORD base;

    socket_pair(&a, &b);
    set_timeout_ms(b, SO_RCVTIMEO, 300);
    base = handle_count();
    CHECK_RC(fdsend_recv_exact((intptr_t)b, buf, 4, got, 2, &n, &rf, FDSEND_DONTWAIT), FDSEND_EAGAIN);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, 0);
    CHECK_RC(fdsend_recv_exact((intptr_t)b, buf, 4, got, 2, &n, &rf, 0), FDSEND_ETIMEDOUT);
    CHECK_RC(fdsend_send((intptr_t)a, "ab", 2, &fd, 1, 0), 2);
    CHECK_RC(fdsend_send((intptr_t)a, "cde", 3, NULL, 0, 0), 3);
    exact_fails_inside(b, FDSEND_EMSGSIZE, base);
    CHECK_RC(fdsend_recv((intptr_t)b, buf, sizeof buf, NULL, 0, NULL, NULL, 0), 3); /* still queued */

    CHECK_RC(fdsend_send((intptr_t)a, "ab", 2, &fd, 1, 0), 2);
    /* The end of the stream, the connection kept: a closed socket would be no peer of b,
     * and the record's sender check would refuse it (a failure before the first byte). */
    CHECK(shutdown(a, SD_SEND) == 0);
    exact_fails_inside(b, FDSEND_EPROTO, base);
    CHECK_EQ(fdsend_last_os_error(), ERROR_HANDLE_EOF); /* the end inside, not a refusal */
    CHECK_RC(fdsend_recv_exact((intptr_t)b, buf, 4, got, 2, &n, &rf, 0), 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, FDSEND_RECV_END_OF_STREAM);
    CHECK_EQ(handle_count(), base);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* SO_RCVTIMEO inside fdsend_recv_exact's bytes (the peer stopped after a record):
 * FDSEND_EPROTO with WSAETIMEDOUT, and the handle that came is closed. */
TEST(exact_timeout_inside)
{
    SOCKET a, b;
    HANDLE f = temp_file("slow");
    intptr_t fd = (intptr_t)f;
    DWORD base;

    socket_pair(&a, &b);
    set_timeout_ms(b, SO_RCVTIMEO, 300);
    base = handle_count();
    CHECK_RC(fdsend_send((intptr_t)a, "ab", 2, &fd, 1, 0), 2);
    exact_fails_inside(b, FDSEND_EPROTO, base);
    CHECK_EQ(fdsend_last_os_error(), WSAETIMEDOUT);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* A peer that closes half-way through a record's header ends the call: Windows reports
 * the hang-up (WSAPoll's POLLHUP) and fdsend_recv gives FDSEND_ECONNRESET; wine 8 reports
 * no hang-up while bytes are still queued, so there it ends at the SO_RCVTIMEO deadline
 * (FDSEND_ETIMEDOUT; before the wait module, it waited for ever). */
TEST(recv_peer_gone_mid_record)
{
    SOCKET a, b;
    unsigned char rec[64];
    char data[8];
    int32_t n = 9;
    int64_t r;
    half_record(&a, &b, rec, "hi", 10, 500);
    closesocket(a);
    r = fdsend_recv((intptr_t)b, data, sizeof data, NULL, 0, &n, NULL, 0);
    if (under_wine() && r == FDSEND_ETIMEDOUT)
        printf("wine: the hang-up was not reported; the deadline ended the call\n");
    else
        CHECK_RC(r, FDSEND_ECONNRESET);
    CHECK_EQ(n, 0);
    closesocket(b);
}

/* SO_SNDTIMEO bounds fdsend_send when the peer reads nothing: on a blocking socket, and on
 * a non-blocking one, where a record that got partly out must be finished (it waits for
 * room within SO_SNDTIMEO: that wait had no limit once) and one that did not start is
 * FDSEND_EAGAIN. */
static void send_until_timeout(int nonblocking)
{
    SOCKET a, b;
    HANDLE f = temp_file("room");
    intptr_t fd = (intptr_t)f;
    const size_t chunk = 1 << 20;
    char *big = calloc(1, chunk);
    int i, timed_out = 0, again = 0;
    CHECK(big != NULL);
    socket_pair(&a, &b);
    if (nonblocking) {
        u_long on = 1;
        CHECK(ioctlsocket(a, FIONBIO, &on) == 0);
    }
    set_timeout_ms(a, SO_SNDTIMEO, 300);
    /* At most 1 GiB: loopback buffers hold a few MiB, so the sender stops long before. */
    for (i = 0; i < 1024 && !timed_out; i++) {
        int64_t r = fdsend_send((intptr_t)a, big, chunk, &fd, 1, 0);
        if (r == FDSEND_ETIMEDOUT)
            timed_out = 1;
        else if (r == FDSEND_EAGAIN)
            again++;
        else
            CHECK_EQ(r, (int64_t)chunk);
    }
    printf("%s: %d records, %d x FDSEND_EAGAIN, then %s\n",
           nonblocking ? "non-blocking" : "blocking", i, again,
           timed_out ? "FDSEND_ETIMEDOUT" : "no timeout");
    CHECK(timed_out);
    closesocket(a);
    closesocket(b);
    CloseHandle(f);
    free(big);
}

TEST(send_timeout_blocking)
{
    send_until_timeout(0);
}

TEST(send_timeout_nonblocking)
{
    send_until_timeout(1);
}

/* ---- The readiness engine (fdsend_poller_*, WSAPoll) ------------------------------------ */

static intptr_t make_poller(void)
{
    intptr_t p = 0;
    CHECK_RC(fdsend_poller_create(&p), FDSEND_OK);
    CHECK(p != 0);
    return p;
}

/* Ask for up to 8 events; returns the count. */
static int poller_events(intptr_t p, fdsend_poll_event *ev, int timeout_ms)
{
    int32_t n = fdsend_poller_wait(p, ev, 8, timeout_ms);
    CHECK(n >= 0);
    return (int)n;
}

/* Level-triggered: reported while ready; one-shot: once, until modify re-arms it; a
 * writable socket; a peer that closed; remove / modify / add errors; no handle left. */
TEST(poller_level_oneshot_and_errors)
{
    SOCKET a, b;
    HANDLE f = temp_file("not a socket");
    fdsend_poll_event ev[8];
    intptr_t p, q = 0;
    DWORD base;
    char c;
    socket_pair(&a, &b);
    base = handle_count();
    p = make_poller();
    CHECK_RC(fdsend_poller_add(p, (intptr_t)b, FDSEND_POLL_IN, 42), FDSEND_OK);
    CHECK_RC(fdsend_poller_add(p, (intptr_t)b, FDSEND_POLL_IN, 43), FDSEND_EINVAL);
    CHECK_EQ(poller_events(p, ev, 0), 0);
    CHECK(send(a, "x", 1, 0) == 1);
    CHECK_EQ(poller_events(p, ev, 10000), 1);
    CHECK_EQ(ev[0].token, 42);
    CHECK_EQ(ev[0].events, FDSEND_POLL_IN);
    CHECK_EQ(poller_events(p, ev, 0), 1); /* level: still readable, reported again */
    CHECK_RC(fdsend_poller_modify(p, (intptr_t)b, FDSEND_POLL_IN | FDSEND_POLL_ONESHOT, 7),
             FDSEND_OK);
    CHECK_EQ(poller_events(p, ev, 10000), 1);
    CHECK_EQ(ev[0].token, 7);
    CHECK_EQ(poller_events(p, ev, 0), 0); /* fired: disarmed although still readable */
    CHECK_RC(fdsend_poller_add(p, (intptr_t)b, FDSEND_POLL_IN | FDSEND_POLL_ONESHOT, 6),
             FDSEND_OK); /* a fired one-shot value may be added again (a new socket?) */
    CHECK_EQ(poller_events(p, ev, 10000), 1);
    CHECK_EQ(ev[0].token, 6);
    CHECK_RC(fdsend_poller_modify(p, (intptr_t)b, FDSEND_POLL_IN | FDSEND_POLL_ONESHOT, 8),
             FDSEND_OK);
    CHECK_EQ(poller_events(p, ev, 10000), 1);
    CHECK_EQ(ev[0].token, 8);
    CHECK(recv(b, &c, 1, 0) == 1);
    CHECK_RC(fdsend_poller_modify(p, (intptr_t)b, FDSEND_POLL_IN, 9), FDSEND_OK);
    CHECK_EQ(poller_events(p, ev, 0), 0); /* drained: nothing to report */
    /* writable */
    CHECK_RC(fdsend_poller_add(p, (intptr_t)a, FDSEND_POLL_OUT, 5), FDSEND_OK);
    CHECK_EQ(poller_events(p, ev, 10000), 1);
    CHECK_EQ(ev[0].token, 5);
    CHECK(ev[0].events & FDSEND_POLL_OUT);
    CHECK_RC(fdsend_poller_remove(p, (intptr_t)a), FDSEND_OK);
    CHECK_RC(fdsend_poller_remove(p, (intptr_t)a), FDSEND_ENOENT);
    CHECK_RC(fdsend_poller_modify(p, (intptr_t)a, FDSEND_POLL_IN, 1), FDSEND_ENOENT);
    /* the peer closes: readable (end of stream) */
    closesocket(a);
    CHECK_EQ(poller_events(p, ev, 10000), 1);
    CHECK_EQ(ev[0].token, 9);
    CHECK(ev[0].events & FDSEND_POLL_IN);
    /* errors */
    CHECK_RC(fdsend_poller_create(NULL), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_add(p, (intptr_t)f, FDSEND_POLL_IN, 1), FDSEND_EBADF);
    CHECK_RC(fdsend_poller_add(p, -1, FDSEND_POLL_IN, 1), FDSEND_EBADF);
    CHECK_RC(fdsend_poller_add(p, (intptr_t)b, FDSEND_POLL_IN | 0x8000, 1), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_modify(p, (intptr_t)b,
                                  FDSEND_POLL_IN | FDSEND_POLL_EDGE | FDSEND_POLL_ONESHOT, 1),
             FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_modify(p, (intptr_t)b, FDSEND_POLL_IN | FDSEND_POLL_EDGE, 1),
             FDSEND_ENOTSUP);
    CHECK_RC(fdsend_poller_wait(p, ev, 0, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_wait(p, NULL, 1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_wait(q, ev, 1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_wake(q), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_destroy(q), FDSEND_EINVAL);
    CHECK_RC(fdsend_poller_destroy(p), FDSEND_OK);
    CHECK_EQ(handle_count(), base - 1); /* a was closed; the wake-up pair is gone */
    closesocket(b);
    CloseHandle(f);
}

/* More ready registrations than the caller asks for: none is dropped (one-shot: each is
 * reported exactly once over three waits of one). */
TEST(poller_max_keeps_the_rest)
{
    SOCKET a[3], b[3];
    fdsend_poll_event ev[8];
    intptr_t p = make_poller();
    int i, seen = 0;
    for (i = 0; i < 3; i++) {
        socket_pair(&a[i], &b[i]);
        CHECK(send(a[i], "x", 1, 0) == 1);
        CHECK_RC(fdsend_poller_add(p, (intptr_t)b[i], FDSEND_POLL_IN | FDSEND_POLL_ONESHOT,
                                   (uint64_t)100 + (uint64_t)i), FDSEND_OK);
    }
    for (i = 0; i < 3; i++) {
        CHECK_EQ(fdsend_poller_wait(p, ev, 1, 10000), 1);
        CHECK(ev[0].token >= 100 && ev[0].token < 103);
        CHECK((seen & (1 << (ev[0].token - 100))) == 0);
        seen |= 1 << (ev[0].token - 100);
    }
    CHECK_EQ(seen, 7);
    CHECK_EQ(poller_events(p, ev, 0), 0);
    CHECK_RC(fdsend_poller_destroy(p), FDSEND_OK);
    for (i = 0; i < 3; i++) {
        closesocket(a[i]);
        closesocket(b[i]);
    }
}

typedef struct poller_waiter {
    intptr_t p;
    int32_t n;
    fdsend_poll_event ev[8];
    HANDLE entered;
} poller_waiter;

static DWORD WINAPI poller_waiter_run(LPVOID arg)
{
    poller_waiter *w = arg;
    SetEvent(w->entered);
    w->n = fdsend_poller_wait(w->p, w->ev, 8, 60000);
    return 0;
}

/* A thread waiting (60 s limit) in fdsend_poller_wait is woken by a registration made on
 * another thread and reports it; fdsend_poller_wake ends a wait with 0 events. */
TEST(poller_wakes_for_registration_and_wake)
{
    SOCKET a, b;
    poller_waiter w;
    HANDLE t;
    socket_pair(&a, &b);
    CHECK(send(a, "x", 1, 0) == 1);
    memset(&w, 0, sizeof w);
    w.p = make_poller();
    w.entered = CreateEventW(NULL, TRUE, FALSE, NULL);
    CHECK(w.entered != NULL);
    t = CreateThread(NULL, 0, poller_waiter_run, &w, 0, NULL);
    CHECK(t != NULL);
    CHECK(WaitForSingleObject(w.entered, 30000) == WAIT_OBJECT_0);
    Sleep(100); /* most likely inside WSAPoll now; either way the wait must report it */
    CHECK_RC(fdsend_poller_add(w.p, (intptr_t)b, FDSEND_POLL_IN | FDSEND_POLL_ONESHOT, 77),
             FDSEND_OK);
    CHECK(WaitForSingleObject(t, 30000) == WAIT_OBJECT_0);
    CloseHandle(t);
    /* The wake-up may have come back alone first (0 events); then the next wait has it. */
    if (w.n == 0)
        w.n = fdsend_poller_wait(w.p, w.ev, 8, 10000);
    CHECK_EQ(w.n, 1);
    CHECK_EQ(w.ev[0].token, 77);

    ResetEvent(w.entered);
    t = CreateThread(NULL, 0, poller_waiter_run, &w, 0, NULL);
    CHECK(t != NULL);
    CHECK(WaitForSingleObject(w.entered, 30000) == WAIT_OBJECT_0);
    Sleep(100);
    CHECK_RC(fdsend_poller_wake(w.p), FDSEND_OK);
    CHECK(WaitForSingleObject(t, 30000) == WAIT_OBJECT_0); /* not the 60 s limit */
    CloseHandle(t);
    CHECK_EQ(w.n, 0);
    CHECK_RC(fdsend_poller_destroy(w.p), FDSEND_OK);
    CloseHandle(w.entered);
    closesocket(a);
    closesocket(b);
}

/* Every bad argument gets its code, and no handle copy is left behind. */
TEST(bad_arguments)
{
    SOCKET a, b, udp;
    HANDLE f = temp_file("args");
    intptr_t fd = (intptr_t)f, fds[FDSEND_MAX_FDS + 1], got = 0, bad[2];
    char data[8];
    int32_t n = 0, i;
    uint32_t rf = 0;
    DWORD base;
    socket_pair(&a, &b);
    for (i = 0; i <= FDSEND_MAX_FDS; i++)
        fds[i] = fd;
    base = handle_count();
    CHECK_RC(fdsend_send(-1, "x", 1, NULL, 0, 0), FDSEND_EBADF);
    CHECK_RC(fdsend_send((intptr_t)a, NULL, 1, NULL, 0, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_send((intptr_t)a, "x", 1, NULL, 1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_send((intptr_t)a, "x", 1, &fd, -1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_send((intptr_t)a, "x", 1, &fd, 1, 0x80), FDSEND_EINVAL);
    CHECK_RC(fdsend_send((intptr_t)a, "x", 1, fds, FDSEND_MAX_FDS + 1, 0), FDSEND_ETOOMANYFDS);
    bad[0] = fd;
    bad[1] = 0;
    CHECK_RC(fdsend_send((intptr_t)a, "x", 1, bad, 2, 0), FDSEND_EBADF);
    bad[1] = -1; /* GetCurrentProcess(): a pseudo-handle, never sent */
    CHECK_RC(fdsend_send((intptr_t)a, "x", 1, bad, 2, 0), FDSEND_EBADF);
    bad[1] = (intptr_t)0x3ffffffc; /* far beyond any handle table here */
    CHECK_RC(fdsend_send((intptr_t)a, "x", 1, bad, 2, 0), FDSEND_EBADF);
    CHECK_EQ(handle_count(), base); /* the copy of bad[0] was closed again */
    CHECK_RC(fdsend_send(fd, "x", 1, NULL, 0, 0), FDSEND_ENOTSOCK);
    CHECK_RC(fdsend_send_to((intptr_t)a, "/tmp/x", "x", 1, NULL, 0, 0), FDSEND_ENOTSUP);
    udp = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    CHECK(udp != INVALID_SOCKET);
    CHECK_RC(fdsend_send((intptr_t)udp, "x", 1, &fd, 1, 0), FDSEND_ENOTSUP);
    closesocket(udp);

    CHECK_RC(fdsend_recv(-1, data, 1, NULL, 0, NULL, NULL, 0), FDSEND_EBADF);
    CHECK_RC(fdsend_recv((intptr_t)b, NULL, 1, NULL, 0, NULL, NULL, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv((intptr_t)b, data, 1, NULL, 1, &n, NULL, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv((intptr_t)b, data, 1, &got, 1, NULL, NULL, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv((intptr_t)b, data, 1, &got, -1, &n, NULL, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv((intptr_t)b, data, 1, &got, 1, &n, &rf, 4), FDSEND_EINVAL);
    CHECK_RC(fdsend_recv(fd, data, 1, &got, 1, &n, &rf, 0), FDSEND_ENOTSOCK);
    CHECK_EQ(handle_count(), base);

    /* The connection still works after all of that. */
    CHECK_RC(fdsend_send((intptr_t)a, "ok", 2, &fd, 1, 0), 2);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, &got, 1, &n, &rf, 0), 2);
    CHECK_EQ(n, 1);
    CloseHandle((HANDLE)got);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* The most handles one message carries, all distinct and all arriving. */
TEST(max_fds)
{
    SOCKET a, b;
    HANDLE f = temp_file("many");
    intptr_t fds[FDSEND_MAX_FDS], got[FDSEND_MAX_FDS];
    char data[4];
    int32_t n = 0, i;
    uint32_t rf = 9;
    DWORD base;
    socket_pair(&a, &b);
    CHECK_EQ(fdsend_max_fds(), FDSEND_MAX_FDS);
    for (i = 0; i < FDSEND_MAX_FDS; i++)
        fds[i] = (intptr_t)f;
    base = handle_count();
    CHECK_RC(fdsend_send((intptr_t)a, "m", 1, fds, FDSEND_MAX_FDS, 0), 1);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, got, FDSEND_MAX_FDS, &n, &rf, 0), 1);
    CHECK_EQ(n, FDSEND_MAX_FDS);
    CHECK_EQ(rf, 0);
    CHECK_EQ(handle_count(), base + FDSEND_MAX_FDS);
    for (i = 0; i < n; i++) {
        CHECK(same_file((HANDLE)got[i], f));
        CHECK(CloseHandle((HANDLE)got[i]));
    }
    CHECK_EQ(handle_count(), base);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* The peer's process id, from the system's TCP connection table; no uid/gid on Windows. */
TEST(peer_credentials)
{
    unsigned short port;
    SOCKET l = listen_loopback(&port), s;
    HANDLE child = spawn_child("creds", port, NULL);
    int64_t pid = 0, uid = 0, gid = 0;
    int32_t rc;
    DWORD child_pid = GetProcessId(child);
    s = accept_child(l);
    rc = fdsend_peer_credentials((intptr_t)s, &pid, &uid, &gid);
    printf("peer credentials: rc %d pid %lld (child %lu)\n", (int)rc, (long long)pid,
           (unsigned long)child_pid);
    CHECK_RC(rc, FDSEND_OK);
    CHECK_EQ(pid, child_pid);
    CHECK_EQ(uid, -1);
    CHECK_EQ(gid, -1);
    CHECK_RC(fdsend_peer_credentials(-1, &pid, NULL, NULL), FDSEND_EBADF);
    closesocket(s);
    CHECK_EQ(wait_child(child), 0);
    closesocket(l);
}

/* fdsend_close_all closes received handles in one call (negative slots skipped); a handle
 * that is not open is FDSEND_EBADF, the others are closed anyway. */
TEST(close_all)
{
    SOCKET a, b;
    HANDLE f = temp_file("close-all");
    intptr_t fds[2] = {(intptr_t)f, (intptr_t)f}, got[3] = {-1, -1, -1};
    char data[4];
    int32_t n = 0;
    uint32_t rf = 0;
    DWORD base;
    socket_pair(&a, &b);
    base = handle_count();
    CHECK_RC(fdsend_send((intptr_t)a, "c", 1, fds, 2, 0), 1);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, got, 2, &n, &rf, 0), 1);
    CHECK_EQ(n, 2);
    CHECK_EQ(handle_count(), base + 2);
    CHECK_RC(fdsend_close_all(got, 3), FDSEND_OK); /* got[2] is -1: skipped */
    CHECK_EQ(handle_count(), base);
    CHECK_RC(fdsend_close_all(got, 2), FDSEND_EBADF);
    CHECK_RC(fdsend_close_all(NULL, 1), FDSEND_EINVAL);
    CHECK_RC(fdsend_close_all(NULL, 0), FDSEND_OK);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

/* Sockets go to the receiver with WSADuplicateSocketW when the sender knows the
 * receiver's process id (docs/windows-protocol.md). Over TCP it comes from the system's TCP
 * table; wine 8's table has no owner (pid 0) for a socket made by accept(), so in these
 * cases the receiver is the side that connected (the child), whose pid wine knows. */

/* A listening socket from another process: a real socket to the receiver's Winsock,
 * listening on the sender's port, and it accepts after the sender closed its own. */
TEST(socket_listener_cross_process)
{
    unsigned short port, lport;
    SOCKET l = listen_loopback(&port), s, l2, c;
    HANDLE child = spawn_child("listener", port, NULL);
    intptr_t fd;
    char b[4] = {0};
    s = accept_child(l);
    l2 = listen_loopback(&lport);
    fd = (intptr_t)l2;
    CHECK_RC(fdsend_send((intptr_t)s, &lport, sizeof lport, &fd, 1, 0), sizeof lport);
    CHECK(closesocket(l2) == 0); /* only the child's copy listens now */
    c = connect_loopback(lport);
    CHECK(send(c, "hi!", 3, 0) == 3);
    CHECK(recv(c, b, 2, MSG_WAITALL) == 2);
    CHECK(memcmp(b, "ok", 2) == 0);
    closesocket(c);
    CHECK_EQ(wait_child(child), 0);
    closesocket(s);
    closesocket(l);
}

/* A connected socket to another process: it receives there what our other end sends
 * after the handover, and sends back. */
TEST(socket_connected_cross_process)
{
    unsigned short port;
    SOCKET l = listen_loopback(&port), s, c, a;
    HANDLE child = spawn_child("connected", port, NULL);
    intptr_t fd;
    char b[8] = {0};
    s = accept_child(l);
    socket_pair(&c, &a);
    fd = (intptr_t)a;
    CHECK_RC(fdsend_send((intptr_t)s, "conn", 4, &fd, 1, 0), 4);
    CHECK(closesocket(a) == 0);
    CHECK(send(c, "ping", 4, 0) == 4);
    CHECK(recv(c, b, 4, MSG_WAITALL) == 4);
    CHECK(memcmp(b, "pong", 4) == 0);
    closesocket(c);
    CHECK_EQ(wait_child(child), 0);
    closesocket(s);
    closesocket(l);
}

/* Within one process (the receiver's pid is our own; sent from the accepted end, see
 * above): a listener received with maxfds 0
 * is closed by the receiver (truncation reported): once the sender closes its own, the
 * port refuses connections, so no copy was left open anywhere. A second one, taken, keeps
 * the port open after the sender closed its own. */
TEST(socket_in_process_and_truncation)
{
    SOCKET a, b, l, c, acc;
    unsigned short lport;
    intptr_t fd, got = -1;
    char data[4];
    int32_t n = 0;
    uint32_t rf = 0;
    struct sockaddr_in addr;
    socket_pair(&a, &b);

    l = listen_loopback(&lport);
    fd = (intptr_t)l;
    CHECK_RC(fdsend_send((intptr_t)b, "t", 1, &fd, 1, 0), 1);
    CHECK_RC(fdsend_recv((intptr_t)a, data, sizeof data, NULL, 0, &n, &rf, 0), 1);
    CHECK_EQ(n, 0);
    CHECK_EQ(rf, FDSEND_RECV_FDS_TRUNCATED);
    CHECK(closesocket(l) == 0);
    c = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(lport);
    CHECK(connect(c, (struct sockaddr *)&addr, sizeof addr) == SOCKET_ERROR);
    CHECK_EQ(WSAGetLastError(), WSAECONNREFUSED);
    closesocket(c);

    l = listen_loopback(&lport);
    fd = (intptr_t)l;
    CHECK_RC(fdsend_send((intptr_t)b, "k", 1, &fd, 1, 0), 1);
    CHECK_RC(fdsend_recv((intptr_t)a, data, sizeof data, &got, 1, &n, &rf, 0), 1);
    CHECK_EQ(n, 1);
    CHECK_EQ(rf, 0);
    CHECK(got != (intptr_t)l);
    CHECK(closesocket(l) == 0);
    check_is_stream_socket((SOCKET)got);
    c = connect_loopback(lport);
    acc = accept_child((SOCKET)got);
    closesocket(acc);
    closesocket(c);
    CHECK(closesocket((SOCKET)got) == 0);
    closesocket(a);
    closesocket(b);
}

TEST(version_and_strings)
{
    CHECK(strcmp(fdsend_version(), FDSEND_VERSION_STRING) == 0);
    CHECK(strcmp(fdsend_strerror(FDSEND_ESRCH), "unknown fdsend error code") != 0);
    CHECK(strcmp(fdsend_strerror(12345), "unknown fdsend error code") == 0);
}

/* The file broker's codec is pure and exists here too; its I/O (fdsend_broker_serve_one,
 * fdsend_broker_open) is POSIX only. fdsend_fd_info cannot tell a read-only handle here (a
 * file is reported read-write), so a reply carrying a file is refused, closed, never handed
 * on: the safe answer where the check cannot be made. */
TEST(broker_codec)
{
    unsigned char b[4];
    int32_t n = 7, st = 0;
    intptr_t fds[1], file = 5;
    fdsend_violation v;
    DWORD base;
    CHECK_RC(fdsend_broker_check_request("ok.txt", 6, 0), FDSEND_OK);
    CHECK_RC(fdsend_broker_check_request("ok.txt", 6, 1), FDSEND_EPOLICY);
    CHECK_RC(fdsend_broker_check_request("a\0b", 3, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_check_request(NULL, FDSEND_BROKER_MAX_PATH + 1, 0), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_reply_encode(FDSEND_ENOENT, b, sizeof b, &n), FDSEND_OK);
    CHECK_EQ(n, 0);
    CHECK_RC(fdsend_broker_reply_decode(b, sizeof b, NULL, 0, &st, &file, NULL), FDSEND_OK);
    CHECK_RC(st, FDSEND_ENOENT);
    CHECK_EQ(file, -1);
    CHECK_RC(fdsend_broker_reply_encode(1, b, sizeof b, &n), FDSEND_EINVAL);
    CHECK_RC(fdsend_broker_reply_decode(b, 3, NULL, 0, &st, &file, &v), FDSEND_OK);
    CHECK_RC(st, FDSEND_EPROTO);
    CHECK_EQ(v.reason, FDSEND_VIOLATION_NONE);
    base = handle_count();
    /* A refusal with a handle, and a success with a file: refused, the handle closed. */
    fds[0] = (intptr_t)temp_file("reply");
    CHECK_RC(fdsend_broker_reply_decode(b, sizeof b, fds, 1, &st, &file, &v), FDSEND_OK);
    CHECK_RC(st, FDSEND_EPROTO);
    CHECK_EQ(v.reason, FDSEND_VIOLATION_TOO_MANY_FDS);
    CHECK_EQ(fds[0], -1);
    CHECK_RC(fdsend_broker_reply_encode(FDSEND_OK, b, sizeof b, &n), FDSEND_OK);
    CHECK_EQ(n, 1);
    fds[0] = (intptr_t)temp_file("reply");
    CHECK_RC(fdsend_broker_reply_decode(b, sizeof b, fds, 1, &st, &file, &v), FDSEND_OK);
    CHECK_RC(st, FDSEND_EPROTO);
    CHECK_EQ(v.reason, FDSEND_VIOLATION_ACCESS);
    CHECK_EQ(file, -1);
    CHECK_EQ(handle_count(), base);
    CHECK_RC(fdsend_broker_serve_one(0, 0, 0, &st), FDSEND_ENOTSUP);
    CHECK_RC(fdsend_broker_open(0, "ok.txt", &file), FDSEND_ENOTSUP);
}

/* One round trip of every kind before a case counts handles: Winsock and wine allocate
 * some per-thread objects (events) on first use, which are no leak. */
static void warm_up(void)
{
    SOCKET a, b;
    HANDLE f = temp_file("warm");
    intptr_t fd = (intptr_t)f, got = 0;
    char data[4];
    int32_t n = 0;
    uint32_t rf = 0;
    socket_pair(&a, &b);
    CHECK_RC(fdsend_send((intptr_t)a, "w", 1, &fd, 1, 0), 1);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, &got, 1, &n, &rf, 0), 1);
    CHECK_EQ(n, 1);
    CloseHandle((HANDLE)got);
    CHECK_RC(fdsend_send((intptr_t)a, "w", 1, &fd, 1, FDSEND_DONTWAIT), 1);
    CHECK_RC(fdsend_recv((intptr_t)b, data, sizeof data, &got, 1, &n, &rf, 0), 1);
    CloseHandle((HANDLE)got);
    CloseHandle(f);
    closesocket(a);
    closesocket(b);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        CASE(round_trip_in_process),
        CASE(broker_codec),
        CASE(cross_process_several_handles),
        CASE(maxfds_truncation_closes_extras),
        CASE(partial_reads_keep_the_stream),
        CASE(recv_small_buffer_is_emsgsize),
        CASE(recv_part_state_on_two_sockets),
        CASE(zero_length_data),
        CASE(large_message),
        CASE(sender_died),
        CASE(sender_died_whole_record),
        CASE(forged_sender_is_refused),
        CASE(garbage_is_a_protocol_error),
        CASE(dontwait_and_end_of_stream),
        CASE(exact_step_over_records),
        CASE(exact_whole_over_records),
        CASE(exact_end_of_stream),
        CASE(exact_timeout_inside),
        CASE(wait_and_peek),
        CASE(recv_timeout),
        CASE(recv_timeout_inside_record_data),
        CASE(recv_whole_waits_for_record_data),
        CASE(recv_peer_gone_mid_record),
        CASE(send_timeout_blocking),
        CASE(send_timeout_nonblocking),
        CASE(poller_level_oneshot_and_errors),
        CASE(poller_max_keeps_the_rest),
        CASE(poller_wakes_for_registration_and_wake),
        CASE(bad_arguments),
        CASE(max_fds),
        CASE(peer_credentials),
        CASE(close_all),
        CASE(socket_listener_cross_process),
        CASE(socket_connected_cross_process),
        CASE(socket_in_process_and_truncation),
        CASE(version_and_strings),
    };
    test_case all[sizeof cases / sizeof cases[0] + 16];
    size_t n = sizeof cases / sizeof cases[0];
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        return 1;
    CHECK(GetModuleFileNameW(NULL, self_path, MAX_PATH) > 0);
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        return child_main(argc, argv);
    warm_up();
    CHECK(win_channel_ncases + win_vector_ncases <= sizeof all / sizeof all[0] - n);
    memcpy(all, cases, sizeof cases);
    memcpy(all + n, win_channel_cases, win_channel_ncases * sizeof all[0]);
    n += win_channel_ncases;
    memcpy(all + n, win_vector_cases, win_vector_ncases * sizeof all[0]);
    n += win_vector_ncases;
    return run_cases(all, n, argc > 1 ? argv[1] : NULL);
}
