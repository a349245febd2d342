/* libfdsend quick start: a parent passes an open file to its child over a socketpair.
 * Build (from this folder, libfdsend installed under $HOME/.local: see the README):
 *   cc quickstart.c $(pkg-config --cflags --libs fdsend) \
 *      -Wl,-rpath,"$(pkg-config --variable=libdir fdsend)" -o quickstart */
#define _POSIX_C_SOURCE 200809L
#include <fdsend.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void child(int sock)
{
    char msg[64], text[64];
    intptr_t fds[1];
    int32_t nfds = 0;
    uint32_t rflags = 0;
    ssize_t n;

    /* One message: up to 63 bytes of data and up to 1 descriptor. */
    int64_t len = fdsend_recv(sock, msg, sizeof msg - 1, fds, 1, &nfds, &rflags, 0);
    if (len < 0 || nfds != 1) {
        fprintf(stderr, "child: receive failed: %s\n",
                len < 0 ? fdsend_strerror((int32_t)len) : "no descriptor");
        exit(1);
    }
    msg[len] = '\0';
    printf("child: got \"%s\" and descriptor %d\n", msg, (int)fds[0]);

    /* The descriptor is ours now (close-on-exec): read the file through it. */
    n = pread((int)fds[0], text, sizeof text - 1, 0);
    if (n < 0) {
        perror("child: pread");
        exit(1);
    }
    text[n] = '\0';
    printf("child: the file says: %s", text);
    close((int)fds[0]);
}

int main(void)
{
    int sv[2], status;
    FILE *file;
    intptr_t fd;
    pid_t pid;
    int64_t sent;

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        perror("socketpair");
        return 1;
    }
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(sv[0]);
        child(sv[1]);
        return 0;
    }
    close(sv[1]);

    /* An open file the child could not open itself: it has no name any more. */
    file = tmpfile();
    if (file == NULL) {
        perror("tmpfile");
        return 1;
    }
    fputs("hello from the parent's file\n", file);
    fflush(file);

    /* Send "here is a file" plus the descriptor in one message. We keep our copy. */
    fd = fileno(file);
    sent = fdsend_send(sv[0], "here is a file", strlen("here is a file"), &fd, 1, 0);
    if (sent < 0) {
        fprintf(stderr, "parent: send failed: %s\n", fdsend_strerror((int32_t)sent));
        return 1;
    }
    fclose(file);
    close(sv[0]);

    waitpid(pid, &status, 0);
    printf("parent: child exited with %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
