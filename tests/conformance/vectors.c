/* Reads channel-vectors.txt: see vectors.h.
 * SPDX-License-Identifier: MIT */
#include "vectors.h"

#include "fdsend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const unsigned char vec_good_frame[12] = {1, 0, 1, 0, 4, 0, 0, 0, 'n', 'e', 'x', 't'};

static int outcome_of(const char *s)
{
    if (strcmp(s, "ok") == 0) return OUT_OK;
    if (strcmp(s, "eof") == 0) return OUT_EOF;
    if (strcmp(s, "proto") == 0) return OUT_PROTO;
    if (strcmp(s, "rejected-size") == 0) return OUT_SIZE;
    if (strcmp(s, "rejected-fds") == 0) return OUT_FDS;
    return -1;
}

const char *vectors_outcome_name(int o)
{
    static const char *names[] = {"ok", "eof", "proto", "rejected-size", "rejected-fds"};
    return o >= 0 && o <= OUT_FDS ? names[o] : "?";
}

int vectors_outcome_of_rc(int64_t r)
{
    if (r >= 0) return OUT_OK;
    if (r == FDSEND_EOF) return OUT_EOF;
    if (r == FDSEND_EPROTO) return OUT_PROTO;
    if (r == FDSEND_EMSGSIZE) return OUT_SIZE;
    if (r == FDSEND_ETOOMANYFDS) return OUT_FDS;
    return -1;
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
        if (*len >= VEC_MAX_BYTES || sscanf(two, "%2x", &v) != 1)
            return -1;
        buf[(*len)++] = (unsigned char)v;
    }
    return 0;
}

/* Split line (in place) at spaces and tabs: the number of tokens (at most max). */
static int split(char *line, char **tok, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            *p++ = '\0';
        if (*p == '\0' || n == max)
            return n;
        tok[n++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t')
            p++;
    }
}

static void fresh(vector *v, const char *name, int lineno)
{
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    v->line = lineno;
    v->type = -1;
    v->cap = 65536;
    v->maxfds = 253;
    v->expect[0] = -1;
    v->after_good = -1;
}

/* One line of a vector (tok[0] is not "vector"): 0, or -1 when it is not valid. */
static int parse_line(vector *v, char **tok, int ntok)
{
    if (strcmp(tok[0], "socket") == 0) {
        if (ntok != 2)
            return -1;
        v->type = strcmp(tok[1], "stream") == 0      ? VEC_STREAM
                  : strcmp(tok[1], "seqpacket") == 0 ? VEC_SEQPACKET
                  : strcmp(tok[1], "dgram") == 0     ? VEC_DGRAM
                                                     : -1;
        return v->type == -1 ? -1 : 0;
    }
    if (strcmp(tok[0], "limits") == 0) {
        if (ntok != 3)
            return -1;
        v->cap = (size_t)strtoul(tok[1], NULL, 10);
        v->maxfds = (int32_t)atoi(tok[2]);
        return 0;
    }
    if (strcmp(tok[0], "write") == 0) {
        vec_write *w;
        int i;
        if (ntok < 3 || v->nwrites >= VEC_MAX_WRITES)
            return -1;
        w = &v->writes[v->nwrites++];
        w->nfds = atoi(tok[1]);
        if (w->nfds < 0 || w->nfds > 253)
            return -1;
        for (i = 2; i < ntok; i++) {
            if (append_hex(w->bytes, &w->len, tok[i]) != 0)
                return -1;
        }
        return 0;
    }
    if (strcmp(tok[0], "close") == 0) {
        v->close_after = 1;
        return 0;
    }
    if (strcmp(tok[0], "expect") == 0) {
        if (ntok >= 2 && strcmp(tok[1], "either") == 0) {
            if (ntok != 4)
                return -1;
            v->expect[0] = outcome_of(tok[2]);
            v->expect[1] = outcome_of(tok[3]);
            return v->expect[0] > OUT_OK && v->expect[1] > OUT_OK ? 0 : -1;
        }
        if (ntok < 2 || (v->expect[0] = v->expect[1] = outcome_of(tok[1])) < 0)
            return -1;
        if (v->expect[0] != OUT_OK)
            return ntok == 2 ? 0 : -1;
        if (ntok != 4 || append_hex(v->payload, &v->payload_len, tok[2]) != 0)
            return -1;
        v->nfds = atoi(tok[3]);
        return 0;
    }
    if (strcmp(tok[0], "after") == 0) {
        if (ntok != 2)
            return -1;
        v->after_good = strcmp(tok[1], "good") == 0 ? 1 : strcmp(tok[1], "none") == 0 ? 0 : -1;
        return v->after_good == -1 ? -1 : 0;
    }
    return -1;
}

int vectors_load(const char *path, vector **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int lineno = 0, n = 0, cap = 0, bad = 0;
    vector *vs = NULL, *v = NULL;
    *out = NULL;
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    while (!bad && fgets(line, sizeof line, f) != NULL) {
        char copy[1024], *tok[80];
        int ntok;
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        strcpy(copy, line);
        ntok = split(copy, tok, 80);
        if (ntok == 0 || tok[0][0] == '#')
            continue;
        if (strcmp(tok[0], "vector") == 0) {
            if (v != NULL || ntok != 2) {
                bad = 1;
                break;
            }
            if (n == cap) {
                vector *more;
                cap = cap ? cap * 2 : 64;
                more = realloc(vs, (size_t)cap * sizeof *vs);
                if (more == NULL) {
                    bad = 1;
                    break;
                }
                vs = more;
            }
            v = &vs[n];
            fresh(v, tok[1], lineno);
        } else if (v == NULL) {
            bad = 1;
        } else if (strcmp(tok[0], "end") == 0) {
            bad = v->type == -1 || v->expect[0] == -1 || v->after_good == -1;
            n++;
            v = NULL;
        } else {
            bad = parse_line(v, tok, ntok) != 0;
        }
    }
    fclose(f);
    if (bad || v != NULL) {
        snprintf(err, errlen, "%s:%d: bad vector line: %s", path, lineno, bad ? line : "(no end)");
        free(vs);
        return -1;
    }
    *out = vs;
    return n;
}
