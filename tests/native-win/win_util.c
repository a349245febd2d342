/* What the Windows C tests share: see win_util.h.
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

int under_wine(void)
{
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    return ntdll != NULL && GetProcAddress(ntdll, "wine_get_version") != NULL;
}

/* ---- Sockets, files, processes ---------------------------------------------------------- */

SOCKET listen_loopback(unsigned short *port)
{
    struct sockaddr_in a;
    int alen = (int)sizeof a;
    SOCKET l = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    CHECK(l != INVALID_SOCKET);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(l, 4) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &alen) == 0);
    *port = ntohs(a.sin_port);
    return l;
}

SOCKET connect_loopback(unsigned short port)
{
    struct sockaddr_in a;
    SOCKET c = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    CHECK(c != INVALID_SOCKET);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
    return c;
}

/* A connected TCP loopback pair inside this process. */
void socket_pair(SOCKET *a, SOCKET *b)
{
    unsigned short port;
    SOCKET l = listen_loopback(&port);
    *a = connect_loopback(port);
    *b = accept(l, NULL, NULL);
    CHECK(*b != INVALID_SOCKET);
    closesocket(l);
}

/* How many handles this process has open. Windows counts them for us; wine 8's
 * GetProcessHandleCount always says 0, so there every plausible handle value is probed
 * (wine hands out small multiples of 4). */
DWORD handle_count(void)
{
    DWORD n = 0, flags;
    uintptr_t v;
    if (!under_wine()) {
        CHECK(GetProcessHandleCount(GetCurrentProcess(), &n));
        return n;
    }
    for (v = 4; v < 0x10000; v += 4) {
        if (GetHandleInformation((HANDLE)v, &flags))
            n++;
    }
    CHECK(n > 0);
    return n;
}

/* A temporary file holding text, open for reading and writing, deleted on close. */
HANDLE temp_file(const char *text)
{
    wchar_t dir[MAX_PATH], path[MAX_PATH];
    DWORD written = 0;
    HANDLE h;
    CHECK(GetTempPathW(MAX_PATH, dir) > 0);
    CHECK(GetTempFileNameW(dir, L"fds", 0, path) != 0);
    h = CreateFileW(path, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE |
                    FILE_SHARE_DELETE, NULL, CREATE_ALWAYS, FILE_FLAG_DELETE_ON_CLOSE, NULL);
    CHECK(h != INVALID_HANDLE_VALUE);
    CHECK(WriteFile(h, text, (DWORD)strlen(text), &written, NULL));
    CHECK_EQ(written, strlen(text));
    return h;
}

/* The whole content of the file behind h (read from offset 0), NUL-terminated. */
void read_all(HANDLE h, char *out, size_t cap)
{
    DWORD got = 0;
    CHECK(SetFilePointer(h, 0, NULL, FILE_BEGIN) != INVALID_SET_FILE_POINTER);
    CHECK(ReadFile(h, out, (DWORD)(cap - 1), &got, NULL));
    out[got] = '\0';
}

/* The identity of an open file: volume serial number and file index (Windows' st_dev and
 * st_ino). */
unsigned long long file_id(HANDLE h)
{
    BY_HANDLE_FILE_INFORMATION info;
    CHECK(GetFileInformationByHandle(h, &info));
    return ((unsigned long long)info.nFileIndexHigh << 32 | info.nFileIndexLow) ^
           ((unsigned long long)info.dwVolumeSerialNumber << 48);
}

int same_file(HANDLE a, HANDLE b)
{
    BY_HANDLE_FILE_INFORMATION x, y;
    CHECK(GetFileInformationByHandle(a, &x));
    CHECK(GetFileInformationByHandle(b, &y));
    return x.dwVolumeSerialNumber == y.dwVolumeSerialNumber &&
           x.nFileIndexHigh == y.nFileIndexHigh && x.nFileIndexLow == y.nFileIndexLow;
}

wchar_t self_path[MAX_PATH];

/* Start this executable as "child <role> <port> <extra>"; returns the process handle. */
HANDLE spawn_child(const char *role, unsigned short port, const char *extra)
{
    wchar_t cmd[2 * MAX_PATH];
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    CHECK(swprintf(cmd, sizeof cmd / sizeof cmd[0], L"\"%ls\" child %hs %u %hs", self_path,
                   role, (unsigned)port, extra != NULL ? extra : "-") > 0);
    CHECK(CreateProcessW(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi));
    CloseHandle(pi.hThread);
    return pi.hProcess;
}

DWORD wait_child(HANDLE proc)
{
    DWORD code = 99;
    CHECK(WaitForSingleObject(proc, 60000) == WAIT_OBJECT_0);
    CHECK(GetExitCodeProcess(proc, &code));
    CloseHandle(proc);
    return code;
}

/* Accept the child's connection on l (with a bound on the wait). */
SOCKET accept_child(SOCKET l)
{
    fd_set set;
    struct timeval tv = {60, 0};
    SOCKET s;
    FD_ZERO(&set);
    FD_SET(l, &set);
    CHECK(select(0, &set, NULL, NULL, &tv) == 1);
    s = accept(l, NULL, NULL);
    CHECK(s != INVALID_SOCKET);
    return s;
}

void join_ok(HANDLE th)
{
    DWORD code = 9;
    CHECK(WaitForSingleObject(th, 60000) == WAIT_OBJECT_0);
    CHECK(GetExitCodeThread(th, &code));
    CHECK_EQ(code, 0);
    CloseHandle(th);
}

void set_timeout_ms(SOCKET s, int opt, DWORD ms)
{
    CHECK(setsockopt(s, SOL_SOCKET, opt, (const char *)&ms, sizeof ms) == 0);
}
