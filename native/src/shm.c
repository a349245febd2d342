/* Sealed shared memory: fdsend_shm_create (a memfd, filled and sealed) and fdsend_shm_map
 * (maps received memory only when the sender can no longer shrink it: no SIGBUS).
 * SPDX-License-Identifier: MIT */
#if defined(_WIN32)

#include "fdsend_internal.h"

#include <errno.h>

int32_t fdsend_shm_create(const char *name, const void *data, size_t len, uint32_t seals,
                          intptr_t *fd)
{
    (void)name; (void)data; (void)len; (void)seals;
    if (fd != NULL)
        *fd = -1;
    return fdsend_fail(FDSEND_ENOTSUP, ENOSYS);
}

int32_t fdsend_shm_map(intptr_t fd, uint32_t required_seals, int64_t min_size, int64_t max_size,
                       const void **addr, size_t *len)
{
    (void)fd; (void)required_seals; (void)min_size; (void)max_size;
    if (addr != NULL)
        *addr = NULL;
    if (len != NULL)
        *len = 0;
    return fdsend_fail(FDSEND_ENOTSUP, ENOSYS);
}

int32_t fdsend_shm_unmap(const void *addr, size_t len)
{
    (void)addr; (void)len;
    return fdsend_fail(FDSEND_ENOTSUP, ENOSYS);
}

#else /* !defined(_WIN32) */

#include "fdsend_posix.h"
#include "fdsend_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if HAVE_SYS_MEMFD_CREATE
#  include <sys/syscall.h>
#endif /* HAVE_SYS_MEMFD_CREATE */

#define ALL_SEALS (FDSEND_SEAL_SEAL | FDSEND_SEAL_SHRINK | FDSEND_SEAL_GROW | \
                   FDSEND_SEAL_WRITE | FDSEND_SEAL_FUTURE_WRITE)

/* Close fd keeping errno; returns code with err recorded. */
static int32_t close_and_fail(int fd, int err)
{
    close(fd);
    return fdsend_fail(fdsend_status_from_errno(err), err);
}

#if HAVE_SYS_MEMFD_CREATE && HAVE_F_GET_SEALS
#  ifndef MFD_CLOEXEC
#    define MFD_CLOEXEC 1U
#  endif
#  ifndef MFD_ALLOW_SEALING
#    define MFD_ALLOW_SEALING 2U
#  endif

/* The F_SEAL_* bits for FDSEND_SEAL_* ones (fdsend_seal_bits); -1 if one has no equivalent
 * here. */
static int native_seals(uint32_t seals)
{
    int s = 0;
    size_t i;
    for (i = 0; i < FDSEND_SEAL_BITS; i++) {
        if (seals & fdsend_seal_bits[i].seal) {
            s |= fdsend_seal_bits[i].os;
            seals &= ~fdsend_seal_bits[i].seal;
        }
    }
    return seals != 0 ? -1 : s;
}

/* memfd_create through syscall(): the glibc wrapper is newer (2.27) than the library's
 * glibc baseline (2.17). */
static int create_memory(const char *name)
{
    return (int)syscall(SYS_memfd_create, name != NULL ? name : "fdsend", MFD_CLOEXEC | MFD_ALLOW_SEALING);
}

static int fill(int fd, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}
#else
/* No memfd: POSIX shared memory, unlinked at once (no name stays behind). */
static int create_memory(const char *name)
{
    static unsigned counter;
    char shm_name[64];
    int i;
    (void)name;
    for (i = 0; i < 100; i++) {
        int fd;
        snprintf(shm_name, sizeof shm_name, "/fdsend.%ld.%u", (long)getpid(),
                 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
        fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd >= 0) {
            int err;
            shm_unlink(shm_name);
            if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
                err = errno;
                close(fd);
                errno = err;
                return -1;
            }
        }
        return fd;
    }
    errno = EEXIST;
    return -1;
}

/* shm objects cannot be written with write() everywhere (macOS): size, map, copy. */
static int fill(int fd, const void *data, size_t len)
{
    void *p;
    if (len == 0)
        return 0;
    if (ftruncate(fd, (off_t)len) != 0)
        return -1;
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -1;
    memcpy(p, data, len);
    munmap(p, len);
    return 0;
}
#endif /* HAVE_SYS_MEMFD_CREATE && HAVE_F_GET_SEALS */

int32_t fdsend_shm_create(const char *name, const void *data, size_t len, uint32_t seals,
                          intptr_t *fd)
{
    int m;
    if (fd == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    *fd = -1;
    if ((data == NULL && len > 0) || (seals & ~(uint32_t)ALL_SEALS) != 0)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
#if HAVE_SYS_MEMFD_CREATE && HAVE_F_GET_SEALS
    if (native_seals(seals) < 0)
        return fdsend_fail(FDSEND_ENOTSUP, ENOTSUP);
#else
    if (seals != 0)
        return fdsend_fail(FDSEND_ENOTSUP, ENOTSUP); /* no sealing on this OS */
#endif /* HAVE_SYS_MEMFD_CREATE && HAVE_F_GET_SEALS */
    m = create_memory(name);
    if (m < 0)
        return fdsend_fail_errno();
    if (fill(m, data, len) != 0)
        return close_and_fail(m, errno);
#if HAVE_SYS_MEMFD_CREATE && HAVE_F_GET_SEALS
    if (seals != 0 && fcntl(m, F_ADD_SEALS, native_seals(seals)) != 0)
        return close_and_fail(m, errno);
#endif /* HAVE_SYS_MEMFD_CREATE && HAVE_F_GET_SEALS */
    *fd = m;
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_shm_map(intptr_t fd, uint32_t required_seals, int64_t min_size, int64_t max_size,
                       const void **addr, size_t *len)
{
    fdsend_fd_info_t info;
    uint32_t need = required_seals | FDSEND_SEAL_SHRINK;
    int32_t rc;
    void *p;
    if (addr == NULL || len == NULL)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    *addr = NULL;
    *len = 0;
    if ((required_seals & ~(uint32_t)ALL_SEALS) != 0 || min_size < 0 ||
        (max_size >= 0 && max_size < min_size))
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
#if !HAVE_F_GET_SEALS
    if (fdsend_valid_fd(fd))
        return fdsend_fail(FDSEND_ENOTSUP, ENOTSUP);
#endif /* !HAVE_F_GET_SEALS */
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    rc = fdsend_fd_info(fd, &info);
    if (rc != FDSEND_OK)
        return rc;
    if (info.kind != FDSEND_KIND_MEMFD)
        return fdsend_fail(FDSEND_ENOTSEALED, 0);
#if HAVE_F_GET_SEALS
    {
        /* The seals first, then the size: read the other way round, a sender could shrink
         * the file between the two reads and seal it afterwards, and the mapping would
         * reach past the end. Once F_SEAL_SHRINK is in force the size can only grow. */
        struct stat st;
        int s = fcntl((int)fd, F_GET_SEALS);
        if (s < 0)
            return fdsend_fail_errno();
        info.seals = ((s & F_SEAL_SHRINK) ? FDSEND_SEAL_SHRINK : 0) |
                     (info.seals & ~(uint32_t)FDSEND_SEAL_SHRINK);
        if (fdsend_fstat((int)fd, &st) != 0)
            return fdsend_fail_errno();
        info.size = (int64_t)st.st_size;
    }
#endif /* HAVE_F_GET_SEALS */
    if ((info.seals & need) != need || info.size < min_size ||
        (max_size >= 0 && info.size > max_size))
        return fdsend_fail(FDSEND_ENOTSEALED, 0);
    if ((uint64_t)info.size > (uint64_t)SIZE_MAX)
        return fdsend_fail(FDSEND_ENOBUFS, ENOMEM);
    if (info.size == 0) {
        fdsend_clear_error();
        return FDSEND_OK;
    }
    p = mmap(NULL, (size_t)info.size, PROT_READ, MAP_SHARED, (int)fd, 0);
    if (p == MAP_FAILED)
        return fdsend_fail_errno();
    *addr = p;
    *len = (size_t)info.size;
    fdsend_clear_error();
    return FDSEND_OK;
}

int32_t fdsend_shm_unmap(const void *addr, size_t len)
{
    if (addr == NULL && len == 0) {
        fdsend_clear_error();
        return FDSEND_OK;
    }
    if (addr == NULL || munmap((void *)(uintptr_t)addr, len) != 0)
        return fdsend_fail(FDSEND_EINVAL, EINVAL);
    fdsend_clear_error();
    return FDSEND_OK;
}

#endif /* !defined(_WIN32) */
