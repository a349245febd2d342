/* file_broker: privilege separation with libfdsend. A broker process holds the only
 * descriptor of a directory and opens files beneath it, read-only, for a worker process
 * that asks over a Unix socket; the worker never gets a directory descriptor, a path
 * outside, a symbolic link, a FIFO or a device. In a real program the worker would also
 * drop its privileges (setuid, a seccomp filter, a mount namespace) after the fork.
 *
 *   file_broker <directory> <path>...   the worker asks for each path in turn
 *   file_broker --demo                  builds a directory with a file, a FIFO, symbolic
 *                                       links and a subdirectory, and asks for each
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE 1
#include <fdsend.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The worker: asks for each path, prints what it got. */
static int worker(int sock, char **paths, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        intptr_t fd = -1;
        int32_t rc = fdsend_broker_open(sock, paths[i], &fd);
        if (rc == FDSEND_OK) {
            char line[64] = "";
            ssize_t got = pread((int)fd, line, sizeof line - 1, 0);
            line[got > 0 ? got : 0] = '\0';
            line[strcspn(line, "\n")] = '\0';
            printf("worker: %s: opened read-only: \"%s\"\n", paths[i], line);
            close((int)fd);
        } else {
            printf("worker: %s: refused: %s\n", paths[i], fdsend_strerror(rc));
        }
    }
    return 0;
}

/* The broker: serves requests until the worker hangs up. */
static int broker(int sock, const char *directory)
{
    int32_t rc, status;
    int dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        perror(directory);
        return 1;
    }
    while ((rc = fdsend_broker_serve_one(sock, dir, 0, &status)) == FDSEND_OK) {
    }
    close(dir);
    return rc == FDSEND_EOF ? 0 : 1;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

/* A directory to serve, with one file of each kind the broker must refuse. */
static const char *make_demo_dir(char *tmpl)
{
    char p[512];
    if (mkdtemp(tmpl) == NULL)
        return NULL;
    snprintf(p, sizeof p, "%s/notes.txt", tmpl);
    if (write_file(p, "hello from the broker's directory\n") != 0)
        return NULL;
    snprintf(p, sizeof p, "%s/sub", tmpl);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/fifo", tmpl);
    mkfifo(p, 0600);
    snprintf(p, sizeof p, "%s/link", tmpl);
    if (symlink("/etc/passwd", p) != 0)
        return NULL;
    return tmpl;
}

static void remove_demo_dir(const char *dir)
{
    static const char *names[] = {"notes.txt", "sub", "fifo", "link"};
    char p[512];
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (unlink(p) != 0)
            rmdir(p);
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    static char *demo_paths[] = {"notes.txt", "../../etc/passwd", "/etc/passwd", "link",
                                 "fifo", "sub", "missing.txt"};
    char tmpl[] = "/tmp/file_broker.XXXXXX";
    const char *dir;
    char **paths;
    int npaths, status = 0, rc;
    intptr_t sv[2];
    pid_t pid;
    if (argc == 2 && strcmp(argv[1], "--demo") == 0) {
        dir = make_demo_dir(tmpl);
        if (dir == NULL) {
            perror("demo directory");
            return 1;
        }
        paths = demo_paths;
        npaths = (int)(sizeof demo_paths / sizeof demo_paths[0]);
    } else if (argc >= 3) {
        dir = argv[1];
        paths = argv + 2;
        npaths = argc - 2;
    } else {
        fprintf(stderr, "usage: %s <directory> <path>... | --demo\n", argv[0]);
        return 2;
    }
    if (fdsend_socketpair(FDSEND_SOCK_SEQPACKET, sv) != FDSEND_OK &&
        fdsend_socketpair(FDSEND_SOCK_STREAM, sv) != FDSEND_OK) {
        fprintf(stderr, "socketpair: %s\n", fdsend_strerror(fdsend_last_os_error()));
        return 1;
    }
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) { /* the worker: it gets the socket and nothing else */
        close((int)sv[1]);
        _exit(worker((int)sv[0], paths, npaths) == 0 && fflush(stdout) == 0 ? 0 : 1);
    }
    close((int)sv[0]);
    rc = broker((int)sv[1], dir);
    close((int)sv[1]);
    waitpid(pid, &status, 0);
    if (dir == tmpl)
        remove_demo_dir(dir);
    printf("broker: worker exited with %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
