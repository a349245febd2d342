/* fdsend_fd_info, fdsend_socketpair, fdsend_dup, fdsend_set_inheritable: describing a descriptor
 * before it is trusted, and making the connected pair a parent hands to its child.
 * SPDX-License-Identifier: MIT */
#if defined(_WIN32)

#include "fdsend_internal.h"

#include <winsock2.h>
#include <windows.h>
#include <errno.h>
#include <string.h>
#else /* !defined(_WIN32) */

#include "fdsend_posix.h"
#include "fdsend_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#if USE_RAW_FSTAT
#  include <sys/syscall.h>
#endif /* USE_RAW_FSTAT */
#endif /* defined(_WIN32) */

/* A socket's address family and type (as getsockname and SO_TYPE give them, the same
 * constants in Winsock) as FDSEND_FAMILY_* and FDSEND_SOCK_* (0: another type). */
static int32_t family_of(int af)
{
    switch (af) {
    case AF_UNIX: return FDSEND_FAMILY_UNIX;
    case AF_INET: return FDSEND_FAMILY_INET;
    case AF_INET6: return FDSEND_FAMILY_INET6;
    default: return FDSEND_FAMILY_OTHER;
    }
}

static int32_t socket_type_of(int type)
{
    return type == SOCK_STREAM ? FDSEND_SOCK_STREAM :
           type == SOCK_DGRAM ? FDSEND_SOCK_DGRAM :
           type == SOCK_SEQPACKET ? FDSEND_SOCK_SEQPACKET : 0;
}

/* Checks the caller's struct and resets it to "nothing known" (size -1), the start of every
 * fdsend_fd_info: FDSEND_OK, or FDSEND_EINVAL for no struct or one older than this one. */
static int32_t start_info(fdsend_fd_info_t *info)
{
    if (info == NULL || info->struct_size < sizeof *info)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    memset(info, 0, sizeof *info);
    info->struct_size = (uint32_t)sizeof *info;
    info->size = -1;
    return FDSEND_OK;
}

#if defined(_WIN32)

/* A failed Win32 call's error, as the library maps every Win32 error (win32/errors_win32.c:
 * ERROR_INVALID_HANDLE is FDSEND_EBADF, ERROR_ACCESS_DENIED FDSEND_EACCES, ...). */
static int32_t fail_win(DWORD err)
{
    return fdsend_fail(fdsend_status_from_os_error((int)err), (int)err);
}

int32_t fdsend_fd_info(intptr_t fd, fdsend_fd_info_t *info)
{
    HANDLE h = (HANDLE)fd;
    DWORD type, hflags = 0;
    int32_t rc = start_info(info);
    if (rc != FDSEND_OK)
        return rc;
    if (h == NULL || h == INVALID_HANDLE_VALUE || !GetHandleInformation(h, &hflags))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    if ((hflags & HANDLE_FLAG_INHERIT) == 0)
        info->flags |= FDSEND_FD_CLOEXEC;
    SetLastError(0);
    type = GetFileType(h);
    if (type == FILE_TYPE_UNKNOWN && GetLastError() != 0)
        return fail_win(GetLastError());
    switch (type) {
    case FILE_TYPE_DISK: {
        BY_HANDLE_FILE_INFORMATION fi;
        if (GetFileInformationByHandle(h, &fi)) {
            if (fi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) {
                info->kind = FDSEND_KIND_DIRECTORY;
            } else {
                info->kind = FDSEND_KIND_FILE;
                info->size = (int64_t)(((uint64_t)fi.nFileSizeHigh << 32) | fi.nFileSizeLow);
            }
        } else {
            info->kind = FDSEND_KIND_FILE;
        }
        info->access = FDSEND_ACCESS_READ_WRITE; /* not recorded per handle in a way we can read */
        break;
    }
    case FILE_TYPE_CHAR:
        info->kind = FDSEND_KIND_CHAR_DEVICE;
        info->access = FDSEND_ACCESS_READ_WRITE;
        break;
    case FILE_TYPE_PIPE: {
        int st = 0, stlen = sizeof st;
        /* A SOCKET is a pipe-type handle to GetFileType; getsockopt tells them apart. */
        if (getsockopt((SOCKET)fd, SOL_SOCKET, SO_TYPE, (char *)&st, &stlen) == 0) {
            struct sockaddr_storage ss;
            int sl = sizeof ss;
            BOOL listening = FALSE;
            int ll = sizeof listening;
            info->kind = FDSEND_KIND_SOCKET;
            info->access = FDSEND_ACCESS_READ_WRITE;
            info->socket_type = socket_type_of(st);
            memset(&ss, 0, sizeof ss);
            if (getsockname((SOCKET)fd, (struct sockaddr *)&ss, &sl) == 0)
                info->family = family_of(ss.ss_family);
            else
                info->family = FDSEND_FAMILY_OTHER;
            if (getsockopt((SOCKET)fd, SOL_SOCKET, SO_ACCEPTCONN, (char *)&listening, &ll) == 0 &&
                listening)
                info->flags |= FDSEND_FD_LISTENING;
        } else {
            info->kind = FDSEND_KIND_PIPE;
            info->access = FDSEND_ACCESS_READ_WRITE;
        }
        break;
    }
    default:
        info->kind = FDSEND_KIND_OTHER;
        break;
    }
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_socketpair(int32_t type, intptr_t sv[2])
{
    (void)type;
    if (sv != NULL)
        sv[0] = sv[1] = -1;
    return fdsend_fail(FDSEND_ENOTSUP, ENOSYS);
}

int32_t fdsend_dup(intptr_t fd, intptr_t *out)
{
    HANDLE dup = NULL;
    if (out == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    *out = -1;
    if (!DuplicateHandle(GetCurrentProcess(), (HANDLE)fd, GetCurrentProcess(), &dup, 0, FALSE,
                         DUPLICATE_SAME_ACCESS))
        return fail_win(GetLastError());
    *out = (intptr_t)dup;
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_set_inheritable(intptr_t fd, int32_t inheritable)
{
    if (!SetHandleInformation((HANDLE)fd, HANDLE_FLAG_INHERIT, inheritable ? HANDLE_FLAG_INHERIT : 0))
        return fail_win(GetLastError());
    fdsend_clear_error();
    return FDSEND_OK;
}

#else /* !defined(_WIN32) */

int fdsend_fstat(int fd, struct stat *st)
{
#if USE_RAW_FSTAT
    return (int)syscall(SYS_fstat, fd, st);
#else
    return fstat(fd, st);
#endif /* USE_RAW_FSTAT */
}

int fdsend_fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
#if USE_RAW_FSTAT
    return (int)syscall(SYS_newfstatat, dirfd, path, st, flags);
#else
    return fstatat(dirfd, path, st, flags);
#endif /* USE_RAW_FSTAT */
}

/* The kind of a descriptor whose inode has no file type bits (Linux's anonymous inodes)
 * or that is a regular file, from the name the kernel shows for it (/proc/self/fd). */
static int32_t kind_from_proc_link(int fd, int32_t fallback)
{
#if HAVE_PROC_SELF_FD
    char path[64], target[128];
    ssize_t n;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    n = readlink(path, target, sizeof target - 1);
    if (n <= 0)
        return fallback;
    target[n] = '\0';
    if (strncmp(target, "/memfd:", 7) == 0)
        return FDSEND_KIND_MEMFD;
    if (strcmp(target, "anon_inode:[eventfd]") == 0)
        return FDSEND_KIND_EVENTFD;
    if (strcmp(target, "anon_inode:[pidfd]") == 0 || strncmp(target, "pidfd:", 6) == 0)
        return FDSEND_KIND_PIDFD;
#else
    (void)fd;
#endif /* HAVE_PROC_SELF_FD */
    return fallback;
}

static uint32_t memfd_seals(int fd)
{
#if HAVE_F_GET_SEALS
    uint32_t out = 0;
    size_t i;
    int s = fcntl(fd, F_GET_SEALS);
    if (s < 0)
        return 0;
    for (i = 0; i < FDSEND_SEAL_BITS; i++) {
        if (s & fdsend_seal_bits[i].os)
            out |= fdsend_seal_bits[i].seal;
    }
    return out;
#else
    (void)fd;
    return 0;
#endif /* HAVE_F_GET_SEALS */
}

static void describe_socket(int fd, fdsend_fd_info_t *info)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    int type = 0;
    socklen_t tl = sizeof type;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &l) == 0) {
        info->family = family_of(ss.ss_family);
    } else {
        info->family = FDSEND_FAMILY_OTHER;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0)
        info->socket_type = socket_type_of(type);
#if HAVE_SO_ACCEPTCONN
    {
        int listening = 0;
        socklen_t ll = sizeof listening;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) == 0 && listening)
            info->flags |= FDSEND_FD_LISTENING;
    }
#endif /* HAVE_SO_ACCEPTCONN */
}

int32_t fdsend_fd_info(intptr_t fd, fdsend_fd_info_t *info)
{
    struct stat st;
    int fl, fdfl, d;
    int32_t rc = start_info(info);
    if (rc != FDSEND_OK)
        return rc;
    if (!fdsend_valid_fd(fd))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    d = (int)fd;
    fdfl = fcntl(d, F_GETFD);
    if (fdfl < 0)
        return fdsend_fail_errno();
    fl = fcntl(d, F_GETFL);
    if (fl < 0)
        return fdsend_fail_errno();
    if (fdsend_fstat(d, &st) != 0)
        return fdsend_fail_errno();

    if (fdfl & FD_CLOEXEC)
        info->flags |= FDSEND_FD_CLOEXEC;
    if (fl & O_NONBLOCK)
        info->flags |= FDSEND_FD_NONBLOCK;
    if (fl & O_APPEND)
        info->flags |= FDSEND_FD_APPEND;
#if HAVE_O_PATH
    if ((fl & O_PATH) == O_PATH)
        info->access = FDSEND_ACCESS_NONE;
    else
#endif /* HAVE_O_PATH */
    switch (fl & O_ACCMODE) {
    case O_RDONLY: info->access = FDSEND_ACCESS_READ; break;
    case O_WRONLY: info->access = FDSEND_ACCESS_WRITE; break;
    default: info->access = FDSEND_ACCESS_READ_WRITE; break;
    }

    if (S_ISREG(st.st_mode)) {
        info->kind = kind_from_proc_link(d, FDSEND_KIND_FILE);
        info->size = (int64_t)st.st_size;
        if (info->kind == FDSEND_KIND_MEMFD)
            info->seals = memfd_seals(d);
    } else if (S_ISDIR(st.st_mode)) {
        info->kind = FDSEND_KIND_DIRECTORY;
    } else if (S_ISFIFO(st.st_mode)) {
        info->kind = FDSEND_KIND_PIPE;
    } else if (S_ISSOCK(st.st_mode)) {
        info->kind = FDSEND_KIND_SOCKET;
        describe_socket(d, info);
    } else if (S_ISCHR(st.st_mode)) {
        info->kind = FDSEND_KIND_CHAR_DEVICE;
    } else if (S_ISBLK(st.st_mode)) {
        info->kind = FDSEND_KIND_BLOCK_DEVICE;
    } else {
        info->kind = kind_from_proc_link(d, FDSEND_KIND_OTHER);
    }
    fdsend_clear_error();
    return FDSEND_OK;
}

/* Set close-on-exec on fd; 0 or -1 with errno. */
static int set_cloexec(int fd, int on)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0)
        return -1;
    fl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
    return fcntl(fd, F_SETFD, fl);
}

int32_t fdsend_socketpair(int32_t type, intptr_t sv[2])
{
    int native_type, pair[2];
    if (sv == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    sv[0] = sv[1] = -1;
    switch (type) {
    case FDSEND_SOCK_STREAM: native_type = SOCK_STREAM; break;
    case FDSEND_SOCK_DGRAM: native_type = SOCK_DGRAM; break;
    case FDSEND_SOCK_SEQPACKET: native_type = SOCK_SEQPACKET; break;
    default: return fdsend_fail(FDSEND_EINVAL, EINVAL);
    }
#if HAVE_SOCK_CLOEXEC
    if (socketpair(AF_UNIX, native_type | SOCK_CLOEXEC, 0, pair) != 0)
        return fdsend_fail_errno();
#else
    /* No atomic close-on-exec (macOS): set it straight away (racy against a concurrent
     * fork in another thread, as on every system without SOCK_CLOEXEC). */
    if (socketpair(AF_UNIX, native_type, 0, pair) != 0)
        return fdsend_fail_errno();
    if (set_cloexec(pair[0], 1) != 0 || set_cloexec(pair[1], 1) != 0) {
        int err = errno;
        close(pair[0]);
        close(pair[1]);
        return fdsend_fail(fdsend_status_from_errno(err), err);
    }
#endif /* HAVE_SOCK_CLOEXEC */
#if HAVE_SO_NOSIGPIPE && !HAVE_MSG_NOSIGNAL
    {
        int one = 1;
        (void)setsockopt(pair[0], SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
        (void)setsockopt(pair[1], SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
    }
#endif /* HAVE_SO_NOSIGPIPE && !HAVE_MSG_NOSIGNAL */
    sv[0] = pair[0];
    sv[1] = pair[1];
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_dup(intptr_t fd, intptr_t *out)
{
    int d;
    if (out == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    *out = -1;
    if (!fdsend_valid_fd(fd))
        return fdsend_fail(FDSEND_EBADF, EBADF);
#if defined(F_DUPFD_CLOEXEC)
    d = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0)
        return fdsend_fail_errno();
#else
    d = dup((int)fd);
    if (d < 0)
        return fdsend_fail_errno();
    if (set_cloexec(d, 1) != 0) {
        int err = errno;
        close(d);
        return fdsend_fail(fdsend_status_from_errno(err), err);
    }
#endif /* defined(F_DUPFD_CLOEXEC) */
    *out = d;
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_set_inheritable(intptr_t fd, int32_t inheritable)
{
    if (!fdsend_valid_fd(fd))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    if (set_cloexec((int)fd, !inheritable) != 0)
        return fdsend_fail_errno();
    fdsend_clear_error();
    return FDSEND_OK;
}

#endif /* !defined(_WIN32) */
