/* What the Windows C tests share (win_util.c): loopback sockets, temporary files, handle
 * counts and child processes (this executable started again as "child <role> <port>").
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_WIN_UTIL_H
#define FDSEND_WIN_UTIL_H

#ifndef WIN32_LEAN_AND_MEAN
#  define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <windows.h>

#include <stddef.h>

/** 1 when running under wine. */
int under_wine(void);

/** A TCP socket listening on 127.0.0.1 (*port: the port it got). */
SOCKET listen_loopback(unsigned short *port);

/** A TCP socket connected to 127.0.0.1:port. */
SOCKET connect_loopback(unsigned short port);

/** A connected TCP loopback pair inside this process. */
void socket_pair(SOCKET *a, SOCKET *b);

/** How many handles this process has open. */
DWORD handle_count(void);

/** A temporary file holding text, open for reading and writing, deleted on close. */
HANDLE temp_file(const char *text);

/** The whole content of the file behind h (read from offset 0), NUL-terminated. */
void read_all(HANDLE h, char *out, size_t cap);

/** The identity of an open file (volume serial and file index). */
unsigned long long file_id(HANDLE h);

/** 1 if a and b are the same file. */
int same_file(HANDLE a, HANDLE b);

/** This executable's path (main fills it in). */
extern wchar_t self_path[MAX_PATH];

/** Start this executable as "child <role> <port> <extra>"; returns the process handle. */
HANDLE spawn_child(const char *role, unsigned short port, const char *extra);

/** Wait (at most 60 s) for a child and return its exit code. */
DWORD wait_child(HANDLE proc);

/** Accept the child's connection on l (with a bound on the wait). */
SOCKET accept_child(SOCKET l);

/** Set SO_RCVTIMEO or SO_SNDTIMEO (opt) of s to ms milliseconds. */
void set_timeout_ms(SOCKET s, int opt, DWORD ms);

/** Wait (at most 60 s) for a thread that must exit with 0, and close its handle. */
void join_ok(HANDLE th);

#endif /* FDSEND_WIN_UTIL_H */
