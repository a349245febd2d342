/* Consumer of an installed libfdsend: header found, library linked, one descriptor
 * passed and the version checked. Prints "consumer ok <version>".
 * SPDX-License-Identifier: MIT */
#define _POSIX_C_SOURCE 200809L
#include <fdsend.h>

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
    int sv[2], p[2];
    intptr_t fd, got[1];
    int32_t n = 0;
    uint32_t rflags = 0;
    char buf[8];
    struct stat a, b;
    int64_t rc;

    if (strcmp(fdsend_version(), FDSEND_VERSION_STRING) != 0) {
        fprintf(stderr, "header %s but library %s\n", FDSEND_VERSION_STRING,
                fdsend_version());
        return 1;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || pipe(p) != 0) {
        perror("socketpair/pipe");
        return 1;
    }
    fd = p[0];
    rc = fdsend_send(sv[0], "hi", 2, &fd, 1, 0);
    if (rc == 2)
        rc = fdsend_recv(sv[1], buf, sizeof buf, got, 1, &n, &rflags, 0);
    if (rc != 2 || n != 1) {
        fprintf(stderr, "round trip failed: %s\n",
                rc < 0 ? fdsend_strerror((int32_t)rc) : "wrong count");
        return 1;
    }
    if (fstat((int)got[0], &a) != 0 || fstat(p[0], &b) != 0 || a.st_ino != b.st_ino) {
        fprintf(stderr, "received a different file\n");
        return 1;
    }
    close((int)got[0]);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    printf("consumer ok %s\n", fdsend_version());
    return 0;
}
