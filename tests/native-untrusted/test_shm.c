/* Sealed shared memory. The attack: a receiver that maps an unsealed memfd dies of SIGBUS
 * when the sender shrinks it (shown in a fork()ed child). The defence: fdsend_shm_map refuses
 * memory without F_SEAL_SHRINK (and the seals and size the caller requires), and memory from
 * fdsend_shm_create with the seals cannot be shrunk, grown or written by anyone.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ALL3 (FDSEND_SEAL_SHRINK | FDSEND_SEAL_GROW | FDSEND_SEAL_WRITE)
#define SIZE (2 * 65536)

static void require_memfd(void)
{
#if !defined(__linux__)
    tu_skip("memfd sealing is Linux-only");
#endif /* !defined(__linux__) */
}

static intptr_t make(uint32_t seals)
{
    static unsigned char data[SIZE];
    intptr_t fd = -1;
    memset(data, 'z', sizeof data);
    CHECK_RC(fdsend_shm_create("test", data, sizeof data, seals, &fd), FDSEND_OK);
    return fd;
}

TEST(create_seals_and_fills)
{
    fdsend_fd_info_t i;
    intptr_t fd;
    const void *p = NULL;
    size_t len = 0;
    char b = 0;
    require_memfd();
    fd = make(ALL3);
    memset(&i, 0, sizeof i);
    i.struct_size = sizeof i;
    CHECK_RC(fdsend_fd_info(fd, &i), FDSEND_OK);
    CHECK_EQ(i.kind, FDSEND_KIND_MEMFD);
    CHECK_EQ(i.size, SIZE);
    CHECK_EQ(i.seals & ALL3, ALL3);
    CHECK(i.flags & FDSEND_FD_CLOEXEC);
    /* Nobody can change it now: not shrink, not grow, not write. */
    CHECK(ftruncate((int)fd, 1) == -1 && errno == EPERM);
    CHECK(ftruncate((int)fd, SIZE * 2) == -1 && errno == EPERM);
    CHECK(pwrite((int)fd, "a", 1, 0) == -1 && errno == EPERM);
    CHECK(mmap(NULL, SIZE, PROT_WRITE, MAP_SHARED, (int)fd, 0) == MAP_FAILED);
    CHECK_RC(fdsend_shm_map(fd, FDSEND_SEAL_WRITE, SIZE, SIZE, &p, &len), FDSEND_OK);
    CHECK_EQ(len, SIZE);
    CHECK_EQ(((const char *)p)[SIZE - 1], 'z');
    CHECK_RC(fdsend_shm_unmap(p, len), FDSEND_OK);
    CHECK(pread((int)fd, &b, 1, 5) == 1 && b == 'z');
    close((int)fd);
}

/* What happens in the child: receive the memfd, map it (naively or checked), tell the
 * parent, wait for it to shrink the memory, read the last byte. */
typedef struct child_args {
    int sock;
    int checked;
} child_args;

static void receiver(void *arg)
{
    child_args *a = arg;
    intptr_t fd = -1;
    int32_t n = 0;
    char b;
    const void *p = NULL;
    size_t len = 0;
    volatile char last;
    CHECK_RC(fdsend_recv(a->sock, &b, 1, &fd, 1, &n, NULL, 0), 1);
    CHECK_EQ(n, 1);
    if (a->checked) {
        int32_t rc = fdsend_shm_map(fd, FDSEND_SEAL_WRITE, 1, -1, &p, &len);
        CHECK_RC(write(a->sock, rc == FDSEND_OK ? "M" : "R", 1), 1);
        if (rc != FDSEND_OK) {
            CHECK_RC(rc, FDSEND_ENOTSEALED);
            _exit(3); /* refused: nothing mapped, nothing to die of */
        }
    } else {
        p = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, (int)fd, 0);
        CHECK(p != MAP_FAILED);
        len = SIZE;
        CHECK_RC(write(a->sock, "M", 1), 1);
    }
    CHECK_RC(read(a->sock, &b, 1), 1); /* the sender has tried to shrink it */
    last = ((const volatile char *)p)[len - 1];
    _exit(last == 'z' ? 0 : 4);
}

/* Runs the exchange; returns the child's wait status. */
static int attack(uint32_t seals, int checked, int *shrink_errno)
{
    int sv[2], status = 0;
    intptr_t fd;
    child_args a;
    pid_t pid;
    char b;
    fd = make(seals);
    tu_socketpair(SOCK_STREAM, sv);
    a.sock = sv[1];
    a.checked = checked;
    pid = tu_fork(receiver, &a);
    CHECK_RC(fdsend_send(sv[0], "m", 1, &fd, 1, 0), 1);
    CHECK_RC(read(sv[0], &b, 1), 1);
    *shrink_errno = ftruncate((int)fd, 0) == 0 ? 0 : errno;
    (void)write(sv[0], "s", 1);
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    close((int)fd);
    close(sv[0]);
    close(sv[1]);
    return status;
}

TEST(attack_unsealed_memfd_kills_a_naive_reader_with_sigbus)
{
    int err = -1, st;
    require_memfd();
    st = attack(0, 0, &err);
    CHECK_EQ(err, 0); /* the sender could shrink it */
    if (!WIFSIGNALED(st))
        tu_fail(__FILE__, __LINE__, "the naive reader was not killed (status 0x%x)", st);
    CHECK_EQ(WTERMSIG(st), SIGBUS);
}

TEST(defence_checked_map_refuses_the_unsealed_memfd)
{
    int err = -1, st;
    require_memfd();
    st = attack(0, 1, &err);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 3); /* refused, alive */
    /* Sealed against shrinking but not against writing: refused when the reader requires
     * FDSEND_SEAL_WRITE. */
    st = attack(FDSEND_SEAL_SHRINK, 1, &err);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 3);
}

TEST(defence_checked_map_accepts_the_sealed_memfd)
{
    int err = 0, st;
    require_memfd();
    st = attack(ALL3, 1, &err);
    CHECK_EQ(err, EPERM); /* the sender can no longer shrink it */
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0); /* mapped, read the last byte, lived */
}

TEST(map_refusals)
{
    intptr_t fd;
    const void *p = (const void *)1;
    size_t len = 7;
    int file = tu_temp_file("just a file");
    require_memfd();
    /* Not a memfd at all. */
    CHECK_RC(fdsend_shm_map(file, 0, 0, -1, &p, &len), FDSEND_ENOTSEALED);
    CHECK(p == NULL);
    CHECK_EQ(len, 0);
    /* F_SEAL_SHRINK is always required, even when the caller asks for nothing. */
    fd = make(FDSEND_SEAL_GROW | FDSEND_SEAL_WRITE);
    CHECK_RC(fdsend_shm_map(fd, 0, 0, -1, &p, &len), FDSEND_ENOTSEALED);
    close((int)fd);
    /* Size bounds. */
    fd = make(ALL3);
    CHECK_RC(fdsend_shm_map(fd, 0, SIZE + 1, -1, &p, &len), FDSEND_ENOTSEALED);
    CHECK_RC(fdsend_shm_map(fd, 0, 0, SIZE - 1, &p, &len), FDSEND_ENOTSEALED);
    CHECK_EQ(fdsend_last_os_error(), 0);
    /* Arguments. */
    CHECK_RC(fdsend_shm_map(fd, 0, 0, -1, NULL, &len), FDSEND_EINVAL);
    CHECK_RC(fdsend_shm_map(fd, 0x100, 0, -1, &p, &len), FDSEND_EINVAL);
    CHECK_RC(fdsend_shm_map(fd, 0, 10, 5, &p, &len), FDSEND_EINVAL);
    CHECK_RC(fdsend_shm_map(-1, 0, 0, -1, &p, &len), FDSEND_EBADF);
    close((int)fd); /* the refused calls below set fd to -1 */
    CHECK_RC(fdsend_shm_create(NULL, NULL, 1, 0, &fd), FDSEND_EINVAL);
    CHECK_RC(fdsend_shm_create(NULL, "x", 1, 0x100, &fd), FDSEND_EINVAL);
    CHECK_RC(fdsend_shm_create(NULL, "x", 1, 0, NULL), FDSEND_EINVAL);
    CHECK_RC(fdsend_shm_unmap(NULL, 0), FDSEND_OK);
    close(file);
}

TEST(empty_memory)
{
    intptr_t fd = -1;
    const void *p = (const void *)1;
    size_t len = 3;
    require_memfd();
    CHECK_RC(fdsend_shm_create(NULL, NULL, 0, ALL3, &fd), FDSEND_OK);
    CHECK_RC(fdsend_shm_map(fd, FDSEND_SEAL_WRITE, 0, -1, &p, &len), FDSEND_OK);
    CHECK(p == NULL);
    CHECK_EQ(len, 0);
    CHECK_RC(fdsend_shm_unmap(p, len), FDSEND_OK);
    close((int)fd);
}

/* Nothing leaks: neither from create's failures nor from refused maps. */
TEST(no_leaks)
{
    int before, i;
    intptr_t fd;
    const void *p;
    size_t len;
    require_memfd();
    before = tu_count_fds();
    for (i = 0; i < 50; i++) {
        fd = make(i % 2 ? ALL3 : 0);
        (void)fdsend_shm_map(fd, FDSEND_SEAL_WRITE, 0, -1, &p, &len);
        if (p != NULL)
            fdsend_shm_unmap(p, len);
        close((int)fd);
    }
    CHECK_EQ(tu_count_fds(), before);
}

static const tu_case cases[] = {
    CASE(create_seals_and_fills),
    CASE(attack_unsealed_memfd_kills_a_naive_reader_with_sigbus),
    CASE(defence_checked_map_refuses_the_unsealed_memfd),
    CASE(defence_checked_map_accepts_the_sealed_memfd),
    CASE(map_refusals),
    CASE(empty_memory),
    CASE(no_leaks),
};

int main(int argc, char **argv)
{
    return tu_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
