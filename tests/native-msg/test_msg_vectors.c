/* Tests of the message channel, part of tests/native-msg (see msg_test.h): every vector of
 * the conformance set shared with the .NET tests (tests/conformance/channel-vectors.txt,
 * format described at its top) against fdsend_msg_recv and a channel object (fdsend_channel_recv). A writer thread plays the raw
 * peer; the receiver must get the vector's outcome, close every descriptor of a frame it
 * does not hand out, and (after good) still read the next good frame.
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

#include "fdsend.h"
#include "vectors.h"

#ifndef FDSEND_VECTORS_FILE
#  error "FDSEND_VECTORS_FILE: the path of tests/conformance/channel-vectors.txt"
#endif

/* Reads every vector of the file (the parser shared with tests/native-win, vectors.c);
 * returns their number (*out: malloc'ed array). */
static int load_vectors(vector **out)
{
    char err[1300];
    int n = vectors_load(FDSEND_VECTORS_FILE, out, err, sizeof err);
    if (n < 0)
        tu_fail(__FILE__, __LINE__, "%s", err);
    return n;
}

/* The socket type of a vector. */
static int sock_type(const vector *v)
{
    return v->type == VEC_STREAM ? SOCK_STREAM : v->type == VEC_SEQPACKET ? SOCK_SEQPACKET
                                                                          : SOCK_DGRAM;
}

/* ---- running a vector --------------------------------------------------------------- */

typedef struct writer {
    const vector *v;
    int sock;   /* the writer's end */
    int reader; /* the receiver's end (FIONREAD) */
    int file;   /* the descriptor attached, as many times as a write says */
    int go_after;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} writer;

/* On a stream: wait (up to 2 s) until the receiver has consumed everything sent so far. */
static void wait_consumed(const writer *w)
{
    double start = tu_now_ms();
    while (tu_pending(w->reader) > 0 && tu_now_ms() - start < 2000)
        tu_sleep_ms(1);
}

static void send_write(const writer *w, const unsigned char *bytes, size_t len, int nfds)
{
    int fds[253];
    for (int i = 0; i < nfds; i++)
        fds[i] = w->file;
    ssize_t r = raw_send(w->sock, bytes, len, fds, nfds);
    if (r != (ssize_t)len)
        tu_fail(__FILE__, __LINE__, "vector %s: raw write of %zu bytes returned %zd (%s)",
                w->v->name, len, r, tu_errno_text());
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    const vector *v = w->v;
    for (int i = 0; i < v->nwrites; i++) {
        if (i > 0 && sock_type(v) == SOCK_STREAM)
            wait_consumed(w);
        send_write(w, v->writes[i].bytes, v->writes[i].len, v->writes[i].nfds);
    }
    if (v->close_after) {
        if (sock_type(v) == SOCK_STREAM)
            wait_consumed(w);
        CHECK_SYS(shutdown(w->sock, SHUT_WR));
    }
    if (v->after_good) {
        pthread_mutex_lock(&w->mu);
        while (!w->go_after)
            pthread_cond_wait(&w->cv, &w->mu);
        pthread_mutex_unlock(&w->mu);
        send_write(w, vec_good_frame, sizeof vec_good_frame, 1);
    }
    return NULL;
}

/* One receive: through a channel object (which reads ahead on streams where the kernel
 * allows it) or the stateless fdsend_msg_recv (exact reads). */
static int64_t receive(fdsend_channel *ch, int sock, void *buf, size_t cap, intptr_t *got,
                       int32_t maxfds, int32_t *n)
{
    return ch != NULL ? fdsend_channel_recv(ch, buf, cap, got, maxfds, n, 0)
                      : fdsend_msg_recv(sock, buf, cap, got, maxfds, n, 0);
}

/* Runs one vector; returns 1 if it passed (a mismatch of outcome is reported, not fatal,
 * so that one run lists every failing vector). */
static int run_vector(const vector *v, int use_channel)
{
    fdsend_channel *ch = NULL;
    const char *api = use_channel ? "fdsend_channel_recv" : "fdsend_msg_recv";
    int sv[2];
    writer w;
    pthread_t th;
    intptr_t got[253];
    int32_t n = -1;
    unsigned char *buf = malloc(v->cap + 1);
    int ok = 1;

    CHECK(buf != NULL);
    tu_socketpair(sock_type(v), sv);
    memset(&w, 0, sizeof w);
    w.v = v;
    w.sock = sv[0];
    w.reader = sv[1];
    w.file = tu_temp_file("vector");
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    if (use_channel)
        CHECK_EQ(fdsend_channel_open(sv[1], 0, &ch), FDSEND_OK);
    int base = tu_count_fds();
    CHECK(pthread_create(&th, NULL, writer_main, &w) == 0);

    int64_t r = receive(ch, sv[1], buf, v->cap, got, v->maxfds, &n);
    int o = vectors_outcome_of_rc(r);
    if (o != v->expect[0] && o != v->expect[1]) {
        fprintf(stderr, "FAIL %s (line %d): %s returned %lld (%s), expected %s%s%s%s\n",
                v->name, v->line, api, (long long)r, tu_describe(r),
                v->expect[0] == v->expect[1] ? "" : "either ", vectors_outcome_name(v->expect[0]),
                v->expect[0] == v->expect[1] ? "" : " or ", v->expect[0] == v->expect[1] ? "" : vectors_outcome_name(v->expect[1]));
        ok = 0;
    } else if (o == OUT_OK) {
        if ((size_t)r != v->payload_len || memcmp(buf, v->payload, v->payload_len) != 0 ||
            n != v->nfds) {
            fprintf(stderr, "FAIL %s (line %d): got %lld bytes and %d descriptors, expected %zu and %d\n",
                    v->name, v->line, (long long)r, (int)n, v->payload_len, v->nfds);
            ok = 0;
        }
        for (int32_t i = 0; i < n; i++) {
            CHECK(tu_same_file((int)got[i], w.file));
            CHECK(tu_cloexec((int)got[i]));
        }
        tu_close_all(got, n > 0 ? n : 0);
    } else if (n != 0) {
        fprintf(stderr, "FAIL %s (line %d): %d descriptors handed out with an error\n",
                v->name, v->line, (int)n);
        ok = 0;
    }
    if (tu_count_fds() != base) {
        fprintf(stderr, "FAIL %s (line %d): %d descriptors open, %d before\n", v->name,
                v->line, tu_count_fds(), base);
        ok = 0;
    }
    if (v->after_good) {
        pthread_mutex_lock(&w.mu);
        w.go_after = 1;
        pthread_cond_signal(&w.cv);
        pthread_mutex_unlock(&w.mu);
        n = -1;
        r = receive(ch, sv[1], buf, v->cap, got, v->maxfds, &n);
        if (r != 4 || memcmp(buf, "next", 4) != 0 || n != 1) {
            fprintf(stderr, "FAIL %s (line %d): the good frame after: %lld (%s), %d descriptors\n",
                    v->name, v->line, (long long)r, tu_describe(r), (int)n);
            ok = 0;
        }
        if (r >= 0 && n > 0) {
            CHECK(tu_same_file((int)got[0], w.file));
            tu_close_all(got, n);
        }
    }
    CHECK(pthread_join(th, NULL) == 0);
    fdsend_channel_close(ch);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    close(w.file);
    close(sv[0]);
    close(sv[1]);
    free(buf);
    if (ok && v->expect[0] != v->expect[1])
        printf("ok   %s %s (either: %s)\n", api, v->name, vectors_outcome_name(o));
    else if (ok)
        printf("ok   %s %s\n", api, v->name);
    return ok;
}

static void run_all(int use_channel)
{
    vector *vs = NULL;
    int n = load_vectors(&vs), failed = 0;
    const char *only = getenv("FDSEND_VECTOR"); /* run one vector by name */
    CHECK(n > 0);
    tu_watchdog(120, "conformance vectors");
    for (int i = 0; i < n; i++) {
        if (only != NULL && strcmp(only, vs[i].name) != 0)
            continue;
        if (!tu_have_socket_type(sock_type(&vs[i]))) {
            printf("skip %s (socket type not supported here)\n", vs[i].name);
            continue;
        }
        failed += !run_vector(&vs[i], use_channel);
    }
    printf("%d vectors, %d failed\n", n, failed);
    free(vs);
    CHECK_EQ(failed, 0);
}

/* The stateless receiver: exact reads. */
TEST(vectors)
{
    run_all(0);
}

/* A channel object: on Linux it reads ahead at frame boundaries, so the same vectors check
 * the read-ahead rules (wire-format 4.1) too. */
TEST(vectors_channel)
{
    run_all(1);
}

int main(int argc, char **argv)
{
    static const tu_case cases[] = {
    CASE(vectors),
    CASE(vectors_channel),
    };
    return msg_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
