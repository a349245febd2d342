/* Tests of the message channel, part of tests/native-msg (see msg_test.h): every vector of
 * the conformance set shared with the .NET tests (tests/conformance/channel-vectors.txt,
 * format described at its top) against fdsend_msg_recv and a channel object (fdsend_channel_recv). A writer thread plays the raw
 * peer; the receiver must get the vector's outcome, close every descriptor of a frame it
 * does not hand out, and (after good) still read the next good frame.
 * SPDX-License-Identifier: MIT */
#include "msg_test.h"

#include "fdsend.h"

#ifndef FDSEND_VECTORS_FILE
#  error "FDSEND_VECTORS_FILE: the path of tests/conformance/channel-vectors.txt"
#endif

enum { OUT_OK, OUT_EOF, OUT_PROTO, OUT_SIZE, OUT_FDS };

#define MAX_WRITES 32
#define MAX_BYTES 128

typedef struct vec_write {
    int nfds;
    size_t len;
    unsigned char bytes[MAX_BYTES];
} vec_write;

typedef struct vector {
    char name[96];
    int line;
    int type;
    size_t cap;
    int32_t maxfds;
    vec_write writes[MAX_WRITES];
    int nwrites;
    int close_after;
    int expect[2]; /* expect[1] == expect[0] unless "either" */
    unsigned char payload[MAX_BYTES];
    size_t payload_len;
    int nfds;
    int after_good;
} vector;

static int outcome_of(const char *s)
{
    if (strcmp(s, "ok") == 0) return OUT_OK;
    if (strcmp(s, "eof") == 0) return OUT_EOF;
    if (strcmp(s, "proto") == 0) return OUT_PROTO;
    if (strcmp(s, "rejected-size") == 0) return OUT_SIZE;
    if (strcmp(s, "rejected-fds") == 0) return OUT_FDS;
    return -1;
}

static const char *outcome_name(int o)
{
    static const char *names[] = {"ok", "eof", "proto", "rejected-size", "rejected-fds"};
    return o >= 0 && o <= OUT_FDS ? names[o] : "?";
}

/* Append the hex token s ("-" is nothing) to buf; 0 on success. */
static int append_hex(unsigned char *buf, size_t *len, const char *s)
{
    if (strcmp(s, "-") == 0)
        return 0;
    if (strlen(s) % 2 != 0)
        return -1;
    for (; *s != '\0'; s += 2) {
        unsigned v;
        char two[3] = {s[0], s[1], 0};
        if (*len >= MAX_BYTES || sscanf(two, "%2x", &v) != 1)
            return -1;
        buf[(*len)++] = (unsigned char)v;
    }
    return 0;
}

#define PARSE_CHECK(cond)                                                                 \
    do {                                                                                  \
        if (!(cond))                                                                      \
            tu_fail(__FILE__, __LINE__, "%s:%d: bad vector line: %s", FDSEND_VECTORS_FILE, \
                    lineno, line);                                                        \
    } while (0)

/* Reads every vector of the file; returns their number (*out: malloc'ed array). */
static int load_vectors(vector **out)
{
    FILE *f = fopen(FDSEND_VECTORS_FILE, "r");
    char line[1024];
    int lineno = 0, n = 0, cap = 0;
    vector *vs = NULL, *v = NULL;
    if (f == NULL)
        tu_fail(__FILE__, __LINE__, "cannot open %s: %s", FDSEND_VECTORS_FILE, tu_errno_text());
    while (fgets(line, sizeof line, f) != NULL) {
        char copy[1024], *tok[80], *save = NULL;
        int ntok = 0;
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        strcpy(copy, line);
        for (char *t = strtok_r(copy, " \t", &save); t != NULL && ntok < 80;
             t = strtok_r(NULL, " \t", &save))
            tok[ntok++] = t;
        if (ntok == 0 || tok[0][0] == '#')
            continue;
        if (strcmp(tok[0], "vector") == 0) {
            PARSE_CHECK(v == NULL && ntok == 2);
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                vs = realloc(vs, (size_t)cap * sizeof *vs);
                CHECK(vs != NULL);
            }
            v = &vs[n];
            memset(v, 0, sizeof *v);
            snprintf(v->name, sizeof v->name, "%s", tok[1]);
            v->line = lineno;
            v->type = -1;
            v->cap = 65536;
            v->maxfds = 253;
            v->expect[0] = -1;
            v->after_good = -1;
            continue;
        }
        PARSE_CHECK(v != NULL);
        if (strcmp(tok[0], "socket") == 0) {
            PARSE_CHECK(ntok == 2);
            v->type = strcmp(tok[1], "stream") == 0      ? SOCK_STREAM
                      : strcmp(tok[1], "seqpacket") == 0 ? SOCK_SEQPACKET
                      : strcmp(tok[1], "dgram") == 0     ? SOCK_DGRAM
                                                         : -1;
            PARSE_CHECK(v->type != -1);
        } else if (strcmp(tok[0], "limits") == 0) {
            PARSE_CHECK(ntok == 3);
            v->cap = (size_t)strtoul(tok[1], NULL, 10);
            v->maxfds = (int32_t)atoi(tok[2]);
        } else if (strcmp(tok[0], "write") == 0) {
            vec_write *w;
            PARSE_CHECK(ntok >= 3 && v->nwrites < MAX_WRITES);
            w = &v->writes[v->nwrites++];
            w->nfds = atoi(tok[1]);
            PARSE_CHECK(w->nfds >= 0 && w->nfds <= 253);
            for (int i = 2; i < ntok; i++)
                PARSE_CHECK(append_hex(w->bytes, &w->len, tok[i]) == 0);
        } else if (strcmp(tok[0], "close") == 0) {
            v->close_after = 1;
        } else if (strcmp(tok[0], "expect") == 0) {
            PARSE_CHECK(ntok >= 2);
            if (strcmp(tok[1], "either") == 0) {
                PARSE_CHECK(ntok == 4);
                v->expect[0] = outcome_of(tok[2]);
                v->expect[1] = outcome_of(tok[3]);
                PARSE_CHECK(v->expect[0] > OUT_OK && v->expect[1] > OUT_OK);
            } else {
                v->expect[0] = v->expect[1] = outcome_of(tok[1]);
                PARSE_CHECK(v->expect[0] >= 0);
                if (v->expect[0] == OUT_OK) {
                    PARSE_CHECK(ntok == 4);
                    PARSE_CHECK(append_hex(v->payload, &v->payload_len, tok[2]) == 0);
                    v->nfds = atoi(tok[3]);
                } else {
                    PARSE_CHECK(ntok == 2);
                }
            }
        } else if (strcmp(tok[0], "after") == 0) {
            PARSE_CHECK(ntok == 2);
            v->after_good = strcmp(tok[1], "good") == 0 ? 1 : strcmp(tok[1], "none") == 0 ? 0 : -1;
            PARSE_CHECK(v->after_good != -1);
        } else if (strcmp(tok[0], "end") == 0) {
            PARSE_CHECK(v->type != -1 && v->expect[0] != -1 && v->after_good != -1);
            n++;
            v = NULL;
        } else {
            PARSE_CHECK(0);
        }
    }
    fclose(f);
    CHECK(v == NULL);
    *out = vs;
    return n;
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

static const unsigned char good_frame[] = {1, 0, 1, 0, 4, 0, 0, 0, 'n', 'e', 'x', 't'};

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
        if (i > 0 && v->type == SOCK_STREAM)
            wait_consumed(w);
        send_write(w, v->writes[i].bytes, v->writes[i].len, v->writes[i].nfds);
    }
    if (v->close_after) {
        if (v->type == SOCK_STREAM)
            wait_consumed(w);
        CHECK_SYS(shutdown(w->sock, SHUT_WR));
    }
    if (v->after_good) {
        pthread_mutex_lock(&w->mu);
        while (!w->go_after)
            pthread_cond_wait(&w->cv, &w->mu);
        pthread_mutex_unlock(&w->mu);
        send_write(w, good_frame, sizeof good_frame, 1);
    }
    return NULL;
}

static int outcome_of_rc(int64_t r)
{
    if (r >= 0) return OUT_OK;
    if (r == FDSEND_EOF) return OUT_EOF;
    if (r == FDSEND_EPROTO) return OUT_PROTO;
    if (r == FDSEND_EMSGSIZE) return OUT_SIZE;
    if (r == FDSEND_ETOOMANYFDS) return OUT_FDS;
    return -1;
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
    tu_socketpair(v->type, sv);
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
    int o = outcome_of_rc(r);
    if (o != v->expect[0] && o != v->expect[1]) {
        fprintf(stderr, "FAIL %s (line %d): %s returned %lld (%s), expected %s%s%s%s\n",
                v->name, v->line, api, (long long)r, tu_describe(r),
                v->expect[0] == v->expect[1] ? "" : "either ", outcome_name(v->expect[0]),
                v->expect[0] == v->expect[1] ? "" : " or ", v->expect[0] == v->expect[1] ? "" : outcome_name(v->expect[1]));
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
        printf("ok   %s %s (either: %s)\n", api, v->name, outcome_name(o));
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
        if (!tu_have_socket_type(vs[i].type)) {
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
