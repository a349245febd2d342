/* What the message-channel test programs (test_msg_<fixture>.c) share: the support
 * library's harness and checks (tests/native/testutil.h), raw peers that write frames
 * by hand, descriptor and payload helpers (msg_test.c), and msg_main.
 *
 * Every case checks what a user observes: payload bytes, the inode of every received
 * descriptor, close-on-exec, error codes, and the number of open descriptors before and
 * after (nothing may leak on any path). One CTest test per case, msg.<case>, run as
 * `test_msg_<fixture> <case>` (tests/native-msg/CMakeLists.txt).
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_MSG_TEST_H
#define FDSEND_MSG_TEST_H

#include "testutil.h"
#include "fdsend.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#define SKIP_CODE 77

/* macOS has neither SOCK_CLOEXEC (testutil.h defines it as 0 there), pipe2 nor
 * MSG_CMSG_CLOEXEC (Linux, the BSDs and illumos have them): there the test's descriptors
 * get FD_CLOEXEC from fcntl right after they are made. The forked peers of these programs
 * exec nothing, so the moment in between is harmless. */
#define TEST_SOCK_CLOEXEC SOCK_CLOEXEC
#ifndef MSG_CMSG_CLOEXEC
#  define MSG_CMSG_CLOEXEC 0
#endif

/* Runs the case named argv[1] (tu_main) with RLIMIT_NOFILE raised to its hard limit. */
int msg_main(int argc, char **argv, const tu_case *cases, size_t ncases);

/* ---- descriptors ---------------------------------------------------------------- */
void set_cloexec(int fd);
/* socket(domain, type), close-on-exec. */
int cloexec_socket(int domain, int type);
/* pipe(), both ends close-on-exec. */
void cloexec_pipe(int p[2]);
/* n descriptors with distinct inodes (read ends of pipes; the write ends are closed). */
void make_fds(int *out, int n);
void close_all(const int *fds, int n);
void to_intptr(const int *in, intptr_t *out, int n);
/* Check the received descriptors: same files as expected[], in order, close-on-exec;
 * then close them. */
void check_and_close(const intptr_t *got, int32_t ngot, const int *expected, int n);

/* ---- payloads and frames -------------------------------------------------------- */
void fill_pattern(unsigned char *p, size_t len, unsigned seed);
int check_pattern(const unsigned char *p, size_t len, unsigned seed);
/* A raw peer: one sendmsg of data with fds attached (exactly one SCM_RIGHTS header). */
ssize_t raw_send(int sock, const void *data, size_t len, const int *fds, int nfds);
void raw_send_all(int sock, const void *data, size_t len, const int *fds, int nfds);
/* fdsend_msg_recv on a socket that may be non-blocking: waits (poll) on FDSEND_EAGAIN. */
int64_t recv_waiting(int sock, void *buf, size_t cap, intptr_t *fds, int32_t maxfds,
                     int32_t *n);
/* A raw peer writing one frame byte by byte (the first byte with the descriptors). */
void slow_frame(int sock, const char *payload, const int *fds, int nfds, int delay_us);

/* A thread sending one message of len bytes (fill_pattern seed 99, no descriptors) with
 * fdsend_channel_send on ch if it is set, else fdsend_msg_send on sock; its result in rc. */
typedef struct big_sender {
    int sock;
    size_t len;
    int32_t rc;
    fdsend_channel *ch;
} big_sender;
void *big_send_main(void *arg);

#endif /* FDSEND_MSG_TEST_H */
