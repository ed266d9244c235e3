/*
 * test_parsers.c - table tests for csrc/upy_http.c and csrc/upy_uwsgi.c.
 *
 * After picohttpparser's test.c: every input is placed at the very end of a
 * readable region followed by a PROT_NONE guard page, so a single byte of
 * over-read faults.  Every HTTP case is run
 *   (a) whole, (b) byte by byte with a growing length (INCOMPLETE until the
 *   end; an invalid input may fail early, with the same status), and
 *   (c) followed by a pipelined request (same result, same consumed count);
 * every chunked case whole, one byte per call, split in two at every
 * offset, and followed by extra bytes.  Prints "N passed, M failed".
 *
 * Build: see tests/c/Makefile (or tests/test_c_parsers.py).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "upy_parse.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "table.h"   /* guard_init, place, check, passed, failed */

/* ------------------------------------------------------------------ */
/* request checks                                                      */
/* ------------------------------------------------------------------ */

static int str_is(upy_str s, const char *want)
{
    return s.len == strlen(want) && (s.len == 0 || memcmp(s.p, want, s.len) == 0);
}

/*
 * `spec` is space-separated key=value checks; only keys present are
 * checked: m t p q minor ka cl ch ec head https nf.
 * Returns NULL when all hold, else a message in a static buffer.
 */
static const char *check_spec(const upy_request *r, const char *spec)
{
    static char msg[512];
    char buf[1024], *tok, *save = NULL;

    if (spec == NULL)
        return NULL;
    snprintf(buf, sizeof(buf), "%s", spec);
    for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        const char *k = tok, *v;
        int ok;
        long long got = 0;
        if (eq == NULL)
            return "bad spec";
        *eq = '\0';
        v = eq + 1;
        if (!strcmp(k, "m"))
            ok = str_is(r->method, v);
        else if (!strcmp(k, "t"))
            ok = str_is(r->target, v);
        else if (!strcmp(k, "p"))
            ok = str_is(r->path, v);
        else if (!strcmp(k, "q"))
            ok = str_is(r->query, v);
        else {
            if (!strcmp(k, "minor"))
                got = r->minor_version;
            else if (!strcmp(k, "ka"))
                got = r->keep_alive;
            else if (!strcmp(k, "cl"))
                got = r->content_length;
            else if (!strcmp(k, "ch"))
                got = r->chunked;
            else if (!strcmp(k, "ec"))
                got = r->expect_continue;
            else if (!strcmp(k, "head"))
                got = r->is_head;
            else if (!strcmp(k, "https"))
                got = r->https;
            else if (!strcmp(k, "nf"))
                got = (long long)r->num_fields;
            else
                return "unknown spec key";
            ok = got == strtoll(v, NULL, 10);
        }
        if (!ok) {
            const upy_str *s = !strcmp(k, "m") ? &r->method
                             : !strcmp(k, "t") ? &r->target
                             : !strcmp(k, "p") ? &r->path
                             : !strcmp(k, "q") ? &r->query : NULL;
            if (s)
                snprintf(msg, sizeof(msg), "%s: want '%s', got '%.*s'", k, v,
                         (int)s->len, s->p);
            else
                snprintf(msg, sizeof(msg), "%s: want %s, got %lld", k, v, got);
            return msg;
        }
    }
    return NULL;
}

/* `fields` is "name: value\n" per expected field, in order. */
static const char *check_fields(const upy_request *r, const char *fields)
{
    static char msg[512];
    const char *p = fields;
    size_t i = 0;

    if (fields == NULL)
        return NULL;
    while (*p) {
        const char *nl = strchr(p, '\n'), *sep = strstr(p, ": ");
        const upy_field *f;
        size_t nlen, vlen;
        if (nl == NULL || sep == NULL || sep > nl)
            return "bad fields spec";
        if (i >= r->num_fields) {
            snprintf(msg, sizeof(msg), "missing field %zu", i);
            return msg;
        }
        f = &r->fields[i];
        nlen = (size_t)(sep - p);
        vlen = (size_t)(nl - sep - 2);
        if (f->name.len != nlen || memcmp(f->name.p, p, nlen) ||
            f->value.len != vlen || (vlen && memcmp(f->value.p, sep + 2, vlen))) {
            snprintf(msg, sizeof(msg), "field %zu: want '%.*s', got '%.*s: %.*s'",
                     i, (int)(nl - p), p, (int)f->name.len, f->name.p,
                     (int)f->value.len, f->value.p);
            return msg;
        }
        i++;
        p = nl + 1;
    }
    if (i != r->num_fields) {
        snprintf(msg, sizeof(msg), "want %zu fields, got %zu", i, r->num_fields);
        return msg;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* HTTP request head                                                   */
/* ------------------------------------------------------------------ */

#define OK 0
#define INCOMPLETE (-2)
#define NO_TRAIL 1 /* (c) does not apply: the input has no end of head */

typedef struct {
    const char *name;
    const char *in;
    size_t len;
    int status; /* OK, INCOMPLETE, or the error status */
    int flags;
    const char *spec;
    const char *fields;
    size_t max_head, max_fields; /* 0: the defaults below */
    uint64_t limit_post;
    size_t max_line, max_field; /* 0: the defaults below; NOLIMIT: 0 */
} http_case;

#define NOLIMIT ((size_t)-1)

#define IN(s) .in = (s), .len = sizeof(s) - 1
#define H11 "GET / HTTP/1.1\r\nHost: h\r\n"

static const http_case http_cases[] = {
    /* ---- valid ---- */
    {"simple", IN("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), OK, 0,
     "m=GET t=/ p=/ q= minor=1 ka=1 cl=-1 ch=0 ec=0 head=0 https=0 nf=1",
     "Host: example.com\n"},
    {"query", IN("GET /a/b?x=1&y=2?z HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0,
     "t=/a/b?x=1&y=2?z p=/a/b q=x=1&y=2?z"},
    {"empty query", IN("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0,
     "t=/a? p=/a q="},
    {"query only", IN("GET /?x HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0,
     "t=/?x p=/ q=x"},
    {"absolute-form", IN("GET http://h/p?q HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0,
     "t=http://h/p?q p=http://h/p q=q"},
    {"asterisk", IN("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0,
     "m=OPTIONS t=* p=* q="},
    {"absolute-form", IN("GET http://h/p?q HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0,
     "t=http://h/p?q p=http://h/p q=q"},
    {"method token", IN("M-SEARCH~! / HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0,
     "m=M-SEARCH~! head=0"},
    {"HEAD", IN("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0, "m=HEAD head=1"},
    {"head is case-sensitive", IN("head / HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0,
     "m=head head=0"},
    {"1.0 no host", IN("GET / HTTP/1.0\r\n\r\n"), OK, 0,
     "minor=0 ka=0 nf=0", ""},
    {"1.0 with host", IN("GET / HTTP/1.0\r\nHost: h\r\n\r\n"), OK, 0,
     "minor=0 ka=0 nf=1"},
    {"1.0 keep-alive", IN("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), OK, 0,
     "minor=0 ka=1"},
    {"1.0 keep-alive in list",
     IN("GET / HTTP/1.0\r\nConnection: ,foo ,  keep-alive ,\r\n\r\n"), OK, 0, "ka=1"},
    {"1.0 keep-alive and close",
     IN("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"), OK, 0,
     "ka=0"},
    {"1.0 keep-alive substring",
     IN("GET / HTTP/1.0\r\nConnection: keep-alived\r\n\r\n"), OK, 0, "ka=0"},
    {"1.1 close", IN(H11 "Connection: close\r\n\r\n"), OK, 0, "ka=0"},
    {"1.1 close in list", IN(H11 "Connection: Upgrade, CLOSE\r\n\r\n"), OK, 0, "ka=0"},
    {"1.1 closed is not close", IN(H11 "Connection: closed\r\n\r\n"), OK, 0, "ka=1"},
    {"OWS stripped",
     IN("GET / HTTP/1.1\r\nHost:   h \t\r\nX-Empty:\r\nX-Sp: a  \tb \r\nX-Tab:\tv\r\n\r\n"),
     OK, 0, "nf=4", "Host: h\nX-Empty: \nX-Sp: a  \tb\nX-Tab: v\n"},
    {"OWS-only value", IN(H11 "X:  \t \r\n\r\n"), OK, 0, "nf=2", "Host: h\nX: \n"},
    {"name case kept", IN("GET / HTTP/1.1\r\nhOsT: h\r\nX-FoO: Bar\r\n\r\n"), OK, 0,
     NULL, "hOsT: h\nX-FoO: Bar\n"},
    {"underscore dropped",
     IN("GET / HTTP/1.1\r\nX_Forwarded_For: evil\r\nHost: h\r\nX-Forwarded-For: ok\r\n_: x\r\n\r\n"),
     OK, 0, "nf=2", "Host: h\nX-Forwarded-For: ok\n"},
    {"underscore host not a host", IN("GET / HTTP/1.0\r\nHo_st: h\r\n\r\n"), OK, 0, "nf=0"},
    {"obs-text value", IN(H11 "X: caf\xc3\xa9 \xff\x80\r\n\r\n"), OK, 0, NULL,
     "Host: h\nX: caf\xc3\xa9 \xff\x80\n"},
    {"colon in value", IN(H11 "X: a: b:\r\n\r\n"), OK, 0, NULL, "Host: h\nX: a: b:\n"},
    {"content-length", IN("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n"), OK, 0,
     "m=POST cl=42 ch=0"},
    {"content-length 0", IN(H11 "Content-Length: 0\r\n\r\n"), OK, 0, "cl=0"},
    {"content-length leading zeros", IN(H11 "content-length: 007\r\n\r\n"), OK, 0, "cl=7"},
    {"content-length OWS", IN(H11 "Content-Length:  5 \t\r\n\r\n"), OK, 0, "cl=5"},
    {"content-length repeated same",
     IN(H11 "Content-Length: 5\r\nCONTENT-LENGTH: 5\r\n\r\n"), OK, 0, "cl=5 nf=3"},
    {"content-length int64 max", IN(H11 "Content-Length: 9223372036854775807\r\n\r\n"), OK, 0,
     "cl=9223372036854775807"},
    {"content-length at limit-post", IN(H11 "Content-Length: 100\r\n\r\n"), OK, 0, "cl=100",
     NULL, 0, 0, 100},
    {"chunked", IN(H11 "Transfer-Encoding: chunked\r\n\r\n"), OK, 0, "ch=1 cl=-1"},
    {"chunked case and OWS", IN(H11 "transfer-encoding: \t ChUnKeD \t\r\n\r\n"), OK, 0,
     "ch=1"},
    {"expect", IN(H11 "Expect: 100-Continue\r\n\r\n"), OK, 0, "ec=1"},
    {"expect other", IN(H11 "Expect: 100-continuex\r\n\r\n"), OK, 0, "ec=0"},
    {"expect on 1.0", IN("GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), OK, 0, "ec=0"},
    {"leading empty lines", IN("\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0,
     "m=GET t=/x"},
    {"max_fields exact", IN(H11 "A: 1\r\nB: 2\r\n\r\n"), OK, 0, "nf=3", NULL, 0, 3},
    {"max_head exact", IN("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0, "nf=1", NULL, 27},

    /* ---- incomplete ---- */
    {"no blank line", IN("GET / HTTP/1.1\r\nHost: h\r\n"), INCOMPLETE, NO_TRAIL},
    {"half CRLF", IN("GET / HTTP/1.1\r\nHost: h\r\n\r"), INCOMPLETE, NO_TRAIL},
    {"only CRLFs", IN("\r\n\r\n\r\n"), INCOMPLETE, NO_TRAIL},
    {"empty", IN(""), INCOMPLETE, NO_TRAIL},

    /* ---- line endings ---- */
    {"bare LF request line", IN("GET / HTTP/1.1\nHost: h\r\n\r\n"), 400},
    {"target without slash", IN("GET env HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"target query only", IN("GET ?x HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"target fragment", IN("GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"asterisk not OPTIONS", IN("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"authority-form not CONNECT", IN("GET h:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"scheme without rest", IN("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"bare LF header", IN("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n"), 400},
    {"bare LF end", IN("GET / HTTP/1.1\r\nHost: h\r\n\n"), 400},
    {"LF only", IN("GET / HTTP/1.1\nHost: h\n\n"), 400},
    {"leading bare LF", IN("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"bare CR header", IN("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), 400},
    {"bare CR request line", IN("GET /\r HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"bare CR after version", IN("GET / HTTP/1.1\r\rHost: h\r\n\r\n"), 400},
    {"CR CR LF", IN("GET / HTTP/1.1\r\nHost: h\r\r\n\r\n"), 400},
    {"leading bare CR", IN("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400},

    /* ---- request line ---- */
    {"empty method", IN(" / HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"bad method char", IN("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"8-bit method", IN("G\xc3\x89T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"double space", IN("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"tab separator", IN("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"DEL in target", IN("GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"8-bit target", IN("GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"NUL in target", IN("GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"no target", IN("GET HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"no version", IN("GET /\r\nHost: h\r\n\r\n"), 400},
    {"HTTP/0.9 line", IN("GET /\r\n\r\n"), 400},
    {"version trailing space", IN("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400},
    {"version lowercase", IN("GET / http/1.1\r\nHost: h\r\n\r\n"), 400},
    {"version 1.10", IN("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), 400},
    {"version short", IN("GET / HTTP/1\r\nHost: h\r\n\r\n"), 400},
    {"version junk", IN("GET / HTTP/1.x\r\nHost: h\r\n\r\n"), 400},
    {"version 1.2", IN("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), 505},
    {"version 2.0", IN("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505},
    {"version 0.9", IN("GET / HTTP/0.9\r\n\r\n"), 505},
    {"three parts extra", IN("GET / x HTTP/1.1\r\nHost: h\r\n\r\n"), 400},

    /* ---- field lines ---- */
    {"no colon", IN(H11 "X y\r\n\r\n"), 400},
    {"space before colon", IN("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400},
    {"tab before colon", IN(H11 "X\t: y\r\n\r\n"), 400},
    {"empty name", IN(H11 ": y\r\n\r\n"), 400},
    {"bad name char", IN(H11 "X(y): z\r\n\r\n"), 400},
    {"8-bit name", IN(H11 "X\xc3\xa9: z\r\n\r\n"), 400},
    {"obs-fold", IN(H11 "X: a\r\n b\r\n\r\n"), 400},
    {"obs-fold tab", IN(H11 "X: a\r\n\tb\r\n\r\n"), 400},
    {"leading space first field", IN("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), 400},
    {"NUL in value", IN(H11 "X: a\0b\r\n\r\n"), 400},
    {"CTL in value", IN(H11 "X: a\x01" "b\r\n\r\n"), 400},
    {"VT in value", IN(H11 "X: a\x0b" "b\r\n\r\n"), 400},
    {"ESC in value", IN(H11 "X: \x1b[0m\r\n\r\n"), 400},
    {"DEL in value", IN(H11 "X: a\x7f\r\n\r\n"), 400},

    /* ---- Host (RFC 9112 §3.2) ---- */
    {"1.1 no host", IN("GET / HTTP/1.1\r\nX: y\r\n\r\n"), 400},
    {"1.1 two hosts", IN("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), 400},
    {"1.0 two hosts", IN("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400},
    {"two hosts, one dropped", IN("GET / HTTP/1.1\r\nHost: a\r\nHo_st: b\r\n\r\n"), OK, 0, "nf=1"},

    /* ---- singleton fields (RFC 9110 §5.3; each name: test_http_singletons) ---- */
    {"Content-Type twice", IN(H11 "Content-Type: a/b\r\nContent-Type: a/b\r\n\r\n"), 400},
    {"Authorization twice, case", IN(H11 "Authorization: x\r\nAUTHORIZATION: y\r\n\r\n"), 400},
    {"list field twice is fine", IN(H11 "Accept: a\r\nAccept: b\r\n\r\n"), OK, 0, "nf=3"},
    {"near-singleton names", IN(H11 "X-Content-Type: a\r\nX-Content-Type: b\r\nContent-Types: a\r\n"
                                "Content-Types: b\r\nHos: a\r\nHos: b\r\n\r\n"), OK, 0, "nf=7"},
    {"dropped singleton does not count", IN(H11 "User_Agent: a\r\nUser-Agent: b\r\n\r\n"), OK, 0,
     "nf=2"},
    {"singleton after 431 limit", IN(H11 "Range: a\r\nRange: b\r\n\r\n"), 431, 0, NULL, NULL, 0, 2},

    /* ---- framing (RFC 9112 §6) ---- */
    {"CL letters", IN(H11 "Content-Length: abc\r\n\r\n"), 400},
    {"CL empty", IN(H11 "Content-Length: \r\n\r\n"), 400},
    {"CL negative", IN(H11 "Content-Length: -1\r\n\r\n"), 400},
    {"CL plus", IN(H11 "Content-Length: +1\r\n\r\n"), 400},
    {"CL inner space", IN(H11 "Content-Length: 1 2\r\n\r\n"), 400},
    {"CL list", IN(H11 "Content-Length: 5, 5\r\n\r\n"), 400},
    {"CL hex", IN(H11 "Content-Length: 0x10\r\n\r\n"), 400},
    {"CL int64 overflow", IN(H11 "Content-Length: 9223372036854775808\r\n\r\n"), 400},
    {"CL uint64 overflow", IN(H11 "Content-Length: 18446744073709551616\r\n\r\n"), 400},
    {"CL huge", IN(H11 "Content-Length: 99999999999999999999999999999\r\n\r\n"), 400},
    {"CL differing", IN(H11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"), 400},
    {"CL differing spelling", IN(H11 "Content-Length: 5\r\nContent-Length: 05\r\n\r\n"), 400},
    {"CL and TE", IN(H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 400},
    {"TE and CL", IN(H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), 400},
    {"TE on 1.0", IN("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400},
    {"TE gzip on 1.0", IN("POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n"), 400},
    {"TE gzip", IN(H11 "Transfer-Encoding: gzip\r\n\r\n"), 501},
    {"TE gzip, chunked", IN(H11 "Transfer-Encoding: gzip, chunked\r\n\r\n"), 501},
    {"TE chunked, chunked", IN(H11 "Transfer-Encoding: chunked, chunked\r\n\r\n"), 501},
    {"TE twice", IN(H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), 501},
    {"TE with params", IN(H11 "Transfer-Encoding: chunked;q=1\r\n\r\n"), 501},
    {"TE empty", IN(H11 "Transfer-Encoding:\r\n\r\n"), 501},
    {"TE chunkedx", IN(H11 "Transfer-Encoding: chunkedx\r\n\r\n"), 501},
    {"TE empty list", IN(H11 "Transfer-Encoding: ,\r\n\r\n"), 501},
    {"TE empty elements only", IN(H11 "Transfer-Encoding:  , ,\t,\r\n\r\n"), 501},
    /* RFC 9110 §5.6.1: empty list elements are ignored */
    {"TE ,chunked", IN(H11 "Transfer-Encoding: ,chunked\r\n\r\n"), OK, 0, "ch=1"},
    {"TE chunked,", IN(H11 "Transfer-Encoding: chunked,\r\n\r\n"), OK, 0, "ch=1"},
    {"TE , chunked", IN(H11 "Transfer-Encoding: , chunked\r\n\r\n"), OK, 0, "ch=1"},
    {"TE many empty", IN(H11 "Transfer-Encoding: ,, ,\tChunked , ,\r\n\r\n"), OK, 0, "ch=1"},
    {"TE , chunked, gzip", IN(H11 "Transfer-Encoding: , chunked, gzip\r\n\r\n"), 501},
    {"TE empty then chunked field", IN(H11 "Transfer-Encoding: ,\r\nTransfer-Encoding: chunked\r\n\r\n"),
     501},
    {"CL over limit-post", IN(H11 "Content-Length: 101\r\n\r\n"), 413, 0, NULL, NULL, 0, 0, 100},

    /* ---- limits ---- */
    {"head too large, no end", IN("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n"),
     431, NO_TRAIL, NULL, NULL, 32},
    {"head too large, complete", IN("GET / HTTP/1.1\r\nHost: hhhhhhhhhhhhhhhhhhhhhh\r\n\r\n"),
     431, 0, NULL, NULL, 32},
    {"head one over max_head", IN("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 431, 0, NULL, NULL, 26},
    {"leading CRLFs over max_head", IN("\r\n\r\n\r\n\r\n\r\n\r\n"), 431, NO_TRAIL, NULL, NULL, 8},
    {"too many fields", IN(H11 "A: 1\r\nB: 2\r\nC: 3\r\n\r\n"), 431, 0, NULL, NULL, 0, 3},
    {"too many fields with dropped", IN(H11 "A_1: 1\r\n\r\n"), 431, 0, NULL, NULL, 0, 1},

    /* ---- request line and field line limits (414 / 431) ---- */
    /* "GET /aaaa HTTP/1.1" is 18 bytes */
    {"request line at limit", IN("GET /aaaa HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0, "t=/aaaa", .max_line = 18},
    {"request line over limit", IN("GET /aaaa HTTP/1.1\r\nHost: h\r\n\r\n"), 414, .max_line = 17},
    {"request line streamed", IN("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 414, NO_TRAIL, .max_line = 17},
    {"request line streamed, no limit", IN("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), INCOMPLETE,
     NO_TRAIL, .max_line = NOLIMIT},
    {"request line no limit", IN("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0,
     NULL, .max_line = NOLIMIT},
    {"request line over, bad method", IN("G(T /aaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n"), 414,
     .max_line = 17},
    {"request line over, then bare LF", IN("GET /aaaaaaaaaaaaaaaaaaa HTTP/1.1\nHost: h\r\n\r\n"), 414,
     .max_line = 17},
    {"bare LF, then request line over", IN("GET /\naaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n"),
     400, .max_line = 17},
    {"request line CR at limit", IN("GET /aaaa HTTP/1.1\r\r\nHost: h\r\n\r\n"), 400, .max_line = 18},
    {"request line over max_head", IN("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 431, NO_TRAIL, NULL,
     NULL, 32, .max_line = 40},
    {"request line limit within max_head", IN("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 414, NO_TRAIL,
     NULL, NULL, 32, .max_line = 20},
    {"leading CRLFs not in the line", IN("\r\n\r\nGET /aaaa HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0, NULL,
     .max_line = 18},
    /* "X-Long: abcdefgh" is 16 bytes */
    {"field line at limit", IN(H11 "X-Long: abcdefgh\r\n\r\n"), OK, 0, "nf=2", .max_field = 16},
    {"field line over limit", IN(H11 "X-Long: abcdefgh\r\n\r\n"), 431, .max_field = 15},
    {"field line OWS counts", IN(H11 "X-Long: abcdefg \r\n\r\n"), 431, .max_field = 15},
    {"field line streamed", IN(H11 "X-Long: abcdefghijklmnopqrstuvwxyz"), 431, NO_TRAIL, .max_field = 15},
    {"field line streamed, no limit", IN(H11 "X-Long: abcdefghijklmnopqrstuvwxyz"), INCOMPLETE, NO_TRAIL,
     .max_field = NOLIMIT},
    {"field line over, bad byte", IN(H11 "X-Long:\x01" "bcdefghijklmnopq\r\n\r\n"), 431, .max_field = 15},
    {"bad byte line, then line over", IN(H11 "X(: a\r\nX-Long: abcdefghijklmnopq\r\n\r\n"), 431,
     .max_field = 15},
    {"bare CR, then line over", IN(H11 "X: a\rb\r\nX-Long: abcdefghijklmnopq\r\n\r\n"), 400,
     .max_field = 15},
    {"field limit not for request line", IN("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n"),
     OK, 0, NULL, .max_field = 10},
    {"request limit not for fields", IN(H11 "X-Long: abcdefghijklmnopqrstuvwxyz\r\n\r\n"), OK, 0, NULL,
     .max_line = 18},
    {"obs-fold line over", IN(H11 "X: a\r\n abcdefghijklmnopqrstuvwxyz\r\n\r\n"), 431, .max_field = 15},

    /* ---- CONNECT, authority-form (RFC 9112 §3.2.3, RFC 9110 §9.3.6) ---- */
    {"CONNECT", IN("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), OK, 0,
     "m=CONNECT t=example.com:443 p= q= ka=0 nf=1"},
    {"CONNECT ip-literal", IN("CONNECT [::1]:8443 HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0,
     "t=[::1]:8443 p= ka=0"},
    {"CONNECT ipv4", IN("CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0, "t=127.0.0.1:1"},
    {"CONNECT pct-encoded", IN("CONNECT a%41b:65535 HTTP/1.1\r\nHost: h\r\n\r\n"), OK, 0, "p= q="},
    {"CONNECT 1.0 keep-alive", IN("CONNECT h:443 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), OK, 0,
     "ka=0"},
    {"CONNECT port 0", IN("CONNECT h:0 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT port 65536", IN("CONNECT h:65536 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT port 6 digits", IN("CONNECT h:000443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT no port", IN("CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT empty port", IN("CONNECT h: HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT empty host", IN("CONNECT :443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT empty ip-literal", IN("CONNECT []:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT unclosed ip-literal", IN("CONNECT [::1:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT userinfo", IN("CONNECT u@h:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT path", IN("CONNECT h:443/x HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT query", IN("CONNECT h:443?x HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT bad pct", IN("CONNECT a%4:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT origin-form", IN("CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT absolute-form", IN("CONNECT http://h:443/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT asterisk", IN("CONNECT * HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"CONNECT without Host", IN("CONNECT h:443 HTTP/1.1\r\n\r\n"), 400},
    {"connect is not CONNECT", IN("connect h:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"OPTIONS authority-form", IN("OPTIONS h:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
    {"POST authority-form", IN("POST h:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
};

#define DEFAULT_MAX_HEAD 65535
#define FIELDS_CAP 64
#define PIPELINED "GET /next HTTP/1.1\r\nHost: n\r\n\r\n"

#define DEFAULT_LINE 8190 /* limit-request-line, limit-request-field-size */

static size_t line_limit(size_t v)
{
    return v == NOLIMIT ? 0 : v ? v : DEFAULT_LINE;
}

static void limits_for(const http_case *c, upy_limits *lim)
{
    lim->max_head = c->max_head ? c->max_head : DEFAULT_MAX_HEAD;
    lim->max_fields = c->max_fields ? c->max_fields : FIELDS_CAP;
    lim->limit_post = c->limit_post;
    lim->max_request_line = line_limit(c->max_line);
    lim->max_field_size = line_limit(c->max_field);
}

/* Run one call; returns the status code convention used by the table. */
static int run_http(const char *buf, size_t len, size_t last_len, const upy_limits *lim,
                    upy_request *req, upy_field *fields, ssize_t *ret)
{
    memset(req, 0xa5, sizeof(*req)); /* outputs must be reset on entry */
    req->fields = fields;
    req->fields_cap = FIELDS_CAP;
    *ret = upy_http_parse_request(buf, len, last_len, req, lim);
    if (*ret == UPY_PARSE_INCOMPLETE)
        return INCOMPLETE;
    if (*ret == UPY_PARSE_ERROR)
        return req->error_status;
    return OK;
}

static void verify_http(const http_case *c, const char *mode, int got, ssize_t ret,
                        const upy_request *req, size_t want_ret)
{
    const char *why;

    if (got != c->status) {
        check(0, c->name, mode, "want status %d, got %d (ret %zd, reason %s)", c->status,
              got, ret, got > 0 ? req->error_reason : "-");
        return;
    }
    if (got > 0) {
        check(req->error_reason != NULL && req->error_reason[0] != '\0', c->name, mode,
              "error without a reason");
        return;
    }
    if (got != OK) {
        check(1, c->name, mode, "");
        return;
    }
    if (ret != (ssize_t)want_ret) {
        check(0, c->name, mode, "want consumed %zu, got %zd", want_ret, ret);
        return;
    }
    why = check_spec(req, c->spec);
    if (why == NULL)
        why = check_fields(req, c->fields);
    check(why == NULL, c->name, mode, "%s", why ? why : "");
}

static void test_http_case(const http_case *c)
{
    upy_field fields[FIELDS_CAP];
    upy_request req;
    upy_limits lim;
    ssize_t ret;
    size_t i, last = 0;
    int got;
    char tmp[4096];

    limits_for(c, &lim);

    /* (a) whole */
    got = run_http(place(c->in, c->len), c->len, 0, &lim, &req, fields, &ret);
    verify_http(c, "whole", got, ret, &req, c->len);

    /* (b) byte by byte, with last_len */
    for (i = 0; i <= c->len; i++) {
        got = run_http(place(c->in, i), i, last, &lim, &req, fields, &ret);
        last = i;
        if (i == c->len) {
            verify_http(c, "bytewise", got, ret, &req, c->len);
            break;
        }
        if (got == INCOMPLETE)
            continue;
        /* an invalid input may be refused early, with its own status */
        check(got == c->status && c->status > 0, c->name, "bytewise",
              "at %zu of %zu: want INCOMPLETE, got %d", i, c->len, got);
        break;
    }

    /* (c) a pipelined request behind it */
    if (!(c->flags & NO_TRAIL) && c->status != INCOMPLETE) {
        if (c->len + sizeof(PIPELINED) > sizeof(tmp))
            exit(2);
        memcpy(tmp, c->in, c->len);
        memcpy(tmp + c->len, PIPELINED, sizeof(PIPELINED) - 1);
        got = run_http(place(tmp, c->len + sizeof(PIPELINED) - 1),
                       c->len + sizeof(PIPELINED) - 1, 0, &lim, &req, fields, &ret);
        verify_http(c, "trailing", got, ret, &req, c->len);
    }
}

/* fields_cap below max_fields: 431, and nothing past fields_cap written */
static void test_http_fields_cap(void)
{
    static const char in[] = H11 "A: 1\r\nB: 2\r\n\r\n";
    upy_field fields[4];
    upy_request req;
    upy_limits lim = {.max_head = DEFAULT_MAX_HEAD, .max_fields = 100};
    ssize_t ret;

    memset(fields, 0x5a, sizeof(fields));
    memset(&req, 0, sizeof(req));
    req.fields = fields;
    req.fields_cap = 2;
    ret = upy_http_parse_request(place(in, sizeof(in) - 1), sizeof(in) - 1, 0, &req, &lim);
    check(ret == UPY_PARSE_ERROR && req.error_status == 431, "fields_cap", "whole",
          "want 431, got %zd/%d", ret, req.error_status);
    check(((unsigned char *)&fields[2])[0] == 0x5a && ((unsigned char *)&fields[3])[0] == 0x5a,
          "fields_cap", "whole", "wrote past fields_cap");
}

/* A big head: many fields, long values, fed in 7-byte steps. */
static void test_http_big(void)
{
    static char in[60000];
    upy_field fields[FIELDS_CAP];
    upy_request req;
    upy_limits lim = {.max_head = DEFAULT_MAX_HEAD, .max_fields = FIELDS_CAP,
                      .max_request_line = DEFAULT_LINE, .max_field_size = DEFAULT_LINE};
    size_t n = 0, i, last = 0;
    ssize_t ret = 0;
    int k;

    n += (size_t)sprintf(in + n, "POST /big?%s HTTP/1.1\r\nHost: h\r\n", "q=1");
    for (k = 0; k < 60; k++) {
        n += (size_t)sprintf(in + n, "X-%d: ", k);
        memset(in + n, 'v', 900);
        n += 900;
        n += (size_t)sprintf(in + n, "\r\n");
    }
    n += (size_t)sprintf(in + n, "\r\n");
    for (i = 7; ; i += 7) {
        size_t l = i < n ? i : n;
        memset(&req, 0, sizeof(req));
        req.fields = fields;
        req.fields_cap = FIELDS_CAP;
        ret = upy_http_parse_request(place(in, l), l, last, &req, &lim);
        last = l;
        if (l == n || ret != UPY_PARSE_INCOMPLETE)
            break;
    }
    check(ret == (ssize_t)n && req.num_fields == 61 && req.fields[60].value.len == 900,
          "big head", "7-byte steps", "ret %zd (len %zu) nf %zu", ret, n, req.num_fields);
}

/* ------------------------------------------------------------------ */
/* chunked                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *in;
    size_t len;
    int status; /* OK, INCOMPLETE, 400, 413 */
    const char *body;
    size_t body_len;
    size_t trail_len; /* the last trail_len bytes of `in` follow the body */
    uint64_t max_body;
} chunked_case;

#define BODY(s) .body = (s), .body_len = sizeof(s) - 1

static const chunked_case chunked_cases[] = {
    {"one chunk", IN("5\r\nhello\r\n0\r\n\r\n"), OK, BODY("hello")},
    {"empty body", IN("0\r\n\r\n"), OK, BODY("")},
    {"several chunks", IN("5\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n"), OK,
     BODY("hello 0123456789")},
    {"hex case", IN("a\r\n0123456789\r\nB\r\n0123456789A\r\n0\r\n\r\n"), OK,
     BODY("01234567890123456789A")},
    {"leading zeros", IN("0005\r\nhello\r\n000\r\n\r\n"), OK, BODY("hello")},
    {"16 hex digits", IN("0000000000000005\r\nhello\r\n0\r\n\r\n"), OK, BODY("hello")},
    {"CRLF in data", IN("4\r\n\r\n\r\n\r\n0\r\n\r\n"), OK, BODY("\r\n\r\n")},
    {"binary data", IN("3\r\n\0\xff\n\r\n0\r\n\r\n"), OK, BODY("\0\xff\n")},
    {"ext", IN("5;foo=bar\r\nhello\r\n0;last\r\n\r\n"), OK, BODY("hello")},
    {"ext many", IN("5;a;b=1;c=\"x\"\r\nhello\r\n0\r\n\r\n"), OK, BODY("hello")},
    {"ext quoted", IN("5;a=\"q \\\" ;x=\\\\ \t\xff\"\r\nhello\r\n0\r\n\r\n"), OK, BODY("hello")},
    {"ext BWS", IN("5 ; a = b \t; c\r\nhello\r\n0\r\n\r\n"), OK, BODY("hello")},
    {"ext BWS before ;", IN("5 \t;a\r\nhello\r\n0 ;z\r\n\r\n"), OK, BODY("hello")},
    {"ext quoted then ;", IN("5;a=\"b\" ;c=\"d\"\r\nhello\r\n0\r\n\r\n"), OK, BODY("hello")},
    /* RFC 9112 §7.1: chunk-size [ chunk-ext ] CRLF, BWS only before ';' */
    {"size trailing SP", IN("5 \r\nhello\r\n0\r\n\r\n"), 400},
    {"size trailing OWS", IN("5 \t\r\nhello\r\n0\r\n\r\n"), 400},
    {"size trailing HTAB", IN("5\t\r\nhello\r\n0\r\n\r\n"), 400},
    {"last size trailing SP", IN("5\r\nhello\r\n0 \r\n\r\n"), 400, BODY("hello")},
    {"ext name trailing SP", IN("5;a \r\nhello\r\n0\r\n\r\n"), 400},
    {"ext token trailing SP", IN("5;a=b \r\nhello\r\n0\r\n\r\n"), 400},
    {"ext quoted trailing SP", IN("5;a=\"b\"\t\r\nhello\r\n0\r\n\r\n"), 400},
    {"ext quoted then junk", IN("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n"), 400},
    {"trailers", IN("5\r\nhello\r\n0\r\nX-T: v\r\nY:\r\nZ: a b \xff\r\n\r\n"), OK, BODY("hello")},
    {"allowed trailers", IN("0\r\nExpires: x\r\nDate: y\r\nX-Checksum: z\r\nServer-Timing: t\r\n\r\n"),
     OK, BODY("")},
    {"near-forbidden trailer names", IN("0\r\nContent-Lengthx: 1\r\nX-Host: a\r\nHos: b\r\nT: c\r\n"
                                         "Content-Length-And-Then-Some: 1\r\nProxy-Authorizations: 1\r\n\r\n"),
     OK, BODY("")},
    {"forbidden trailer", IN("5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"), 400, BODY("hello")},
    {"forbidden trailer, case", IN("0\r\nX: y\r\ntRaNsFeR-eNcOdInG: chunked\r\n\r\n"), 400},
    {"forbidden trailer, empty value", IN("0\r\nHost:\r\n\r\n"), 400},
    {"trailing bytes", IN("5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n"), OK, BODY("hello"), 16},
    {"trailing bytes after trailers", IN("0\r\nA: b\r\n\r\nXY"), OK, BODY(""), 2},
    {"max_body exact", IN("5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n"), OK, BODY("helloworld!"), 0, 11},
    {"incomplete data", IN("a\r\nhello"), INCOMPLETE, BODY("hello")},
    {"incomplete trailer", IN("5\r\nhello\r\n0\r\nX: y\r\n"), INCOMPLETE, BODY("hello")},
    {"huge size incomplete", IN("FFFFFFFFFFFFFFFF\r\nab"), INCOMPLETE, BODY("ab")},

    {"empty size", IN("\r\nhello\r\n0\r\n\r\n"), 400},
    {"non-hex size", IN("g\r\n"), 400},
    {"negative size", IN("-5\r\nhello\r\n0\r\n\r\n"), 400},
    {"0x prefix", IN("0x5\r\nhello\r\n0\r\n\r\n"), 400},
    {"size space inside", IN("1 0\r\n"), 400},
    {"size overflow", IN("10000000000000000\r\n"), 400},
    {"size overflow big", IN("FFFFFFFFFFFFFFFFFFFFFFFF\r\n"), 400},
    {"data too long", IN("5\r\nhelloX\r\n0\r\n\r\n"), 400, BODY("hello")},
    {"data bare LF", IN("5\r\nhello\n0\r\n\r\n"), 400, BODY("hello")},
    {"data CR only", IN("5\r\nhello\r0\r\n\r\n"), 400, BODY("hello")},
    {"size bare LF", IN("5\nhello\r\n0\r\n\r\n"), 400},
    {"size bare CR", IN("5\rhello\r\n0\r\n\r\n"), 400},
    {"last bare LF", IN("5\r\nhello\r\n0\n\n"), 400, BODY("hello")},
    {"final bare LF", IN("5\r\nhello\r\n0\r\n\n"), 400, BODY("hello")},
    {"ext empty name", IN("5;\r\nhello\r\n0\r\n\r\n"), 400},
    {"ext empty value", IN("5;a=\r\nhello\r\n0\r\n\r\n"), 400},
    {"ext two names", IN("5;a b\r\nhello\r\n0\r\n\r\n"), 400},
    {"ext unterminated quote", IN("5;a=\"x\r\nhello\r\n0\r\n\r\n"), 400},
    {"ext CTL in quote", IN("5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n"), 400},
    {"ext bad escape", IN("5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n"), 400},
    {"ext junk after quote", IN("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n"), 400},
    {"ext bad name char", IN("5;a@=b\r\nhello\r\n0\r\n\r\n"), 400},
    {"trailer no colon", IN("0\r\nbad line\r\n\r\n"), 400},
    {"trailer space before colon", IN("0\r\nX : y\r\n\r\n"), 400},
    {"trailer obs-fold", IN("0\r\nX: a\r\n b\r\n\r\n"), 400},
    {"trailer bare LF", IN("0\r\nX: a\n\r\n"), 400},
    {"trailer bare CR", IN("0\r\nX: a\rb\r\n\r\n"), 400},
    {"trailer CTL", IN("0\r\nX: a\x01\r\n\r\n"), 400},
    {"trailer NUL", IN("0\r\nX: \0\r\n\r\n"), 400},
    {"over max_body", IN("5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n"), 413, BODY("hello"), 0, 10},
};

/* Runtime-built cases (long lines; every singleton and forbidden trailer) */
static char long_ok[8192], long_bad[8192], tr_ok[16384], tr_bad[16384];
static chunked_case built_cases[4];

static void build_chunked_cases(void)
{
    size_t n;

    /* size line of exactly 4096 bytes including CRLF: accepted */
    n = (size_t)sprintf(long_ok, "5;x=");
    memset(long_ok + n, 'a', 4096 - 2 - n);
    n = 4096 - 2;
    n += (size_t)sprintf(long_ok + n, "\r\nhello\r\n0\r\n\r\n");
    built_cases[0] = (chunked_case){"size line 4096", long_ok, n, OK, "hello", 5, 0, 0};

    n = (size_t)sprintf(long_bad, "5;x=");
    memset(long_bad + n, 'a', 4097 - 2 - n);
    n = 4097 - 2;
    n += (size_t)sprintf(long_bad + n, "\r\nhello\r\n0\r\n\r\n");
    built_cases[1] = (chunked_case){"size line 4097", long_bad, n, 400, "", 0, 0, 0};

    /* trailer section (after "0\r\n") of exactly 8192 bytes: accepted */
    n = (size_t)sprintf(tr_ok, "0\r\nX: ");
    memset(tr_ok + n, 'v', 3 + 8192 - 4 - n);
    n = 3 + 8192 - 4;
    n += (size_t)sprintf(tr_ok + n, "\r\n\r\n");
    built_cases[2] = (chunked_case){"trailers 8192", tr_ok, n, OK, "", 0, 0, 0};

    n = (size_t)sprintf(tr_bad, "0\r\nX: ");
    memset(tr_bad + n, 'v', 3 + 8193 - 4 - n);
    n = 3 + 8193 - 4;
    n += (size_t)sprintf(tr_bad + n, "\r\n\r\n");
    built_cases[3] = (chunked_case){"trailers 8193", tr_bad, n, 400, "", 0, 0, 0};
}

/*
 * Feed c->in split at the given cut points (sorted offsets, ending with
 * c->len) into a fresh decoder; each piece is placed against the guard
 * page.  Collects decoded output and trailing bytes.
 */
static char out[65536], trail[65536];

static int feed_chunked(const chunked_case *c, const char *in, size_t len,
                        const size_t *cuts, size_t ncuts, size_t *out_len,
                        size_t *trail_len, int *status)
{
    upy_chunked_decoder d;
    size_t prev = 0, k;

    upy_chunked_init(&d);
    *out_len = 0;
    *trail_len = 0;
    for (k = 0; k < ncuts; k++) {
        size_t piece = cuts[k] - prev, l = piece;
        char *b = place(in + prev, piece);
        ssize_t r = upy_chunked_decode(&d, b, &l, c->max_body);
        if (l > piece)
            return -1;
        memcpy(out + *out_len, b, l);
        *out_len += l;
        prev = cuts[k];
        if (r == UPY_PARSE_ERROR) {
            *status = d.error_status;
            return 0;
        }
        if (r >= 0) {
            if ((size_t)r + l > piece)
                return -1;
            memcpy(trail, b + l, (size_t)r);
            *trail_len = (size_t)r;
            /* anything not yet fed is trailing too */
            memcpy(trail + *trail_len, in + prev, len - prev);
            *trail_len += len - prev;
            *status = OK;
            return 0;
        }
    }
    *status = INCOMPLETE;
    return 0;
}

static void verify_chunked(const chunked_case *c, const char *mode, const char *in,
                           size_t len, const size_t *cuts, size_t ncuts, size_t want_trail)
{
    size_t ol, tl;
    int st;

    if (feed_chunked(c, in, len, cuts, ncuts, &ol, &tl, &st) != 0) {
        check(0, c->name, mode, "decoder returned an impossible length");
        return;
    }
    if (st != c->status) {
        check(0, c->name, mode, "want status %d, got %d", c->status, st);
        return;
    }
    /* On error the output produced before the error is a prefix of the
     * body; when the case gives a body, compare that much. */
    if (c->status != OK && c->status != INCOMPLETE) {
        check(ol <= c->body_len && (ol == 0 || memcmp(out, c->body, ol) == 0), c->name, mode,
              "output before error is not a prefix of the body");
        return;
    }
    if (ol != c->body_len || (ol && memcmp(out, c->body, ol) != 0)) {
        check(0, c->name, mode, "body mismatch: got %zu bytes '%.*s'", ol, (int)ol, out);
        return;
    }
    if (c->status == OK) {
        check(tl == want_trail && (tl == 0 || memcmp(trail, in + len - want_trail, tl) == 0), c->name,
              mode, "trailing bytes: want %zu, got %zu", want_trail, tl);
        return;
    }
    check(1, c->name, mode, "");
}

static void test_chunked_case(const chunked_case *c)
{
    static size_t cuts[40000];
    static char tmp[40000];
    size_t i, tlen;

    /* whole */
    cuts[0] = c->len;
    verify_chunked(c, "whole", c->in, c->len, cuts, 1, c->trail_len);

    /* one byte per call */
    for (i = 0; i < c->len; i++)
        cuts[i] = i + 1;
    verify_chunked(c, "bytewise", c->in, c->len, cuts, c->len, c->trail_len);

    /* split in two at every offset (short inputs only) */
    if (c->len < 200) {
        for (i = 0; i <= c->len; i++) {
            cuts[0] = i;
            cuts[1] = c->len;
            verify_chunked(c, "split", c->in, c->len, cuts, 2, c->trail_len);
        }
    }

    /* extra bytes behind: a pipelined request */
    if (c->status == OK || c->status >= 400) {
        tlen = c->len + sizeof(PIPELINED) - 1;
        memcpy(tmp, c->in, c->len);
        memcpy(tmp + c->len, PIPELINED, sizeof(PIPELINED) - 1);
        cuts[0] = tlen;
        verify_chunked(c, "trailing", tmp, tlen, cuts, 1,
                       c->trail_len + sizeof(PIPELINED) - 1);
        for (i = 0; i < tlen; i++)
            cuts[i] = i + 1;
        verify_chunked(c, "trailing bytewise", tmp, tlen, cuts, tlen,
                       c->trail_len + sizeof(PIPELINED) - 1);
    }
}

/* Every field RFC 9110 defines as a singleton, repeated (the second time in
 * upper case): 400; once: accepted.  The list is the spec, kept here on
 * purpose apart from the parser's table. */
static void test_http_singletons(void)
{
    static const char *const names[] = {
        "Host", "Authorization", "Proxy-Authorization", "Content-Type",
        "Content-Location", "Content-Range", "Date", "From", "If-Modified-Since",
        "If-Unmodified-Since", "If-Range", "Max-Forwards", "Range", "Referer",
        "User-Agent",
    };
    static char bufs[2][sizeof(names) / sizeof(names[0])][256];
    size_t i, k;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char upper[64];
        http_case c = {0};
        for (k = 0; names[i][k]; k++)
            upper[k] = (char)(names[i][k] >= 'a' && names[i][k] <= 'z' ? names[i][k] - 32
                                                                        : names[i][k]);
        upper[k] = '\0';
        /* once */
        c.name = names[i];
        c.in = bufs[0][i];
        c.len = (size_t)snprintf(bufs[0][i], sizeof(bufs[0][i]),
                                 "GET / HTTP/1.1\r\n%s%s: a\r\n\r\n",
                                 strcmp(names[i], "Host") ? "Host: h\r\n" : "", names[i]);
        c.status = OK;
        test_http_case(&c);
        /* twice */
        c.in = bufs[1][i];
        c.len = (size_t)snprintf(bufs[1][i], sizeof(bufs[1][i]),
                                 "GET / HTTP/1.1\r\nHost: h\r\n%s: a\r\nX: y\r\n%s: a\r\n\r\n",
                                 names[i], upper);
        c.status = 400;
        test_http_case(&c);
    }
}

/* Every trailer field RFC 9110 §6.5.1 rules out (as a trailer, in mixed
 * case, with and without a value, after an allowed one): 400. */
static void test_chunked_forbidden_trailers(void)
{
    static const char *const names[] = {
        "Content-Length", "Transfer-Encoding", "Trailer", "Host", "Connection",
        "Max-Forwards", "Upgrade", "Expect", "TE", "If-Match", "If-None-Match",
        "If-Modified-Since", "If-Unmodified-Since", "If-Range", "Range",
        "Cache-Control", "Pragma", "Authorization", "Proxy-Authorization", "Cookie",
        "Content-Type", "Content-Encoding", "Content-Range",
    };
    static char bufs[sizeof(names) / sizeof(names[0])][256];
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        chunked_case c = {0};
        c.name = names[i];
        c.in = bufs[i];
        c.len = (size_t)snprintf(bufs[i], sizeof(bufs[i]), "3\r\nabc\r\n0\r\nX-Ok: 1\r\n%s:%s\r\n\r\n",
                                 names[i], i % 2 ? "" : " v");
        c.status = 400;
        c.body = "abc";
        c.body_len = 3;
        test_chunked_case(&c);
    }
}

/* Calls after completion return all input as trailing; after an error,
 * errors. */
static void test_chunked_after_end(void)
{
    upy_chunked_decoder d;
    char b[32];
    size_t l;
    ssize_t r;

    upy_chunked_init(&d);
    memcpy(b, "0\r\n\r\n", 5);
    l = 5;
    r = upy_chunked_decode(&d, b, &l, 0);
    check(r == 0 && l == 0, "after end", "complete", "r=%zd l=%zu", r, l);
    memcpy(b, "abc", 3);
    l = 3;
    r = upy_chunked_decode(&d, b, &l, 0);
    check(r == 3 && l == 0 && memcmp(b, "abc", 3) == 0, "after end", "again", "r=%zd l=%zu",
          r, l);

    upy_chunked_init(&d);
    l = 3;
    memcpy(b, "zz\r", 3);
    r = upy_chunked_decode(&d, b, &l, 0);
    l = 3;
    memcpy(b, "0\r\n", 3);
    r = upy_chunked_decode(&d, b, &l, 0);
    check(r == UPY_PARSE_ERROR && d.error_status == 400, "after error", "again", "r=%zd", r);

    /* zero-length feed */
    upy_chunked_init(&d);
    l = 0;
    r = upy_chunked_decode(&d, b, &l, 0);
    check(r == UPY_PARSE_INCOMPLETE && l == 0, "empty feed", "whole", "r=%zd", r);
}

/* ------------------------------------------------------------------ */
/* uwsgi                                                               */
/* ------------------------------------------------------------------ */

/* Build a vars block from NULL-terminated key, value pairs. */
static size_t vars_block(char *dst, ...)
{
    va_list ap;
    size_t n = 0;
    const char *k;

    va_start(ap, dst);
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        size_t kl = strlen(k), vl = strlen(v);
        dst[n++] = (char)(kl & 0xff);
        dst[n++] = (char)(kl >> 8);
        memcpy(dst + n, k, kl);
        n += kl;
        dst[n++] = (char)(vl & 0xff);
        dst[n++] = (char)(vl >> 8);
        memcpy(dst + n, v, vl);
        n += vl;
    }
    va_end(ap);
    return n;
}

static void run_uwsgi(const char *name, const char *vars, size_t n, int want,
                      const char *spec, const char *fields, const upy_limits *lim)
{
    static const char body[] = "body bytes after the vars";
    static char tmp[70000];
    upy_field fl[FIELDS_CAP];
    upy_request req;
    const char *why;
    int pass, r, got;
    char *b;

    for (pass = 0; pass < 2; pass++) {
        const char *mode = pass ? "with body behind" : "whole";
        memcpy(tmp, vars, n);
        memcpy(tmp + n, body, pass ? sizeof(body) - 1 : 0);
        b = place(tmp, n + (pass ? sizeof(body) - 1 : 0));
        memset(&req, 0xa5, sizeof(req));
        req.fields = fl;
        req.fields_cap = FIELDS_CAP;
        r = upy_uwsgi_parse_vars(b, n, &req, lim);
        got = r == 0 ? OK : r == UPY_PARSE_ERROR ? req.error_status : -99;
        if (got != want) {
            check(0, name, mode, "want %d, got %d (%s)", want, got,
                  got > 0 ? req.error_reason : "-");
            continue;
        }
        if (got != OK) {
            check(req.error_reason != NULL, name, mode, "no reason");
            continue;
        }
        why = check_spec(&req, spec);
        if (why == NULL)
            why = check_fields(&req, fields);
        if (why == NULL && req.proto != UPY_PROTO_UWSGI)
            why = "proto not uwsgi";
        if (why == NULL && (req.keep_alive || req.chunked || req.expect_continue))
            why = "HTTP-only flags set";
        check(why == NULL, name, mode, "%s", why ? why : "");
    }
}

static void test_uwsgi(void)
{
    static char v[70000];
    upy_limits lim = {.max_head = 65535, .max_fields = FIELDS_CAP};
    upy_limits lim3 = {.max_head = 65535, .max_fields = 3};
    upy_limits lim_post = {.max_head = 65535, .max_fields = FIELDS_CAP, .limit_post = 100};
    upy_limits lim_small = {.max_head = 16, .max_fields = FIELDS_CAP};
    upy_uwsgi_header h;
    size_t n;
    int k;

    n = vars_block(v, "REQUEST_METHOD", "GET", "REQUEST_URI", "/a/b?x=1",
                   "PATH_INFO", "/a/b", "QUERY_STRING", "x=1", "SERVER_PROTOCOL",
                   "HTTP/1.1", "HTTP_HOST", "example.com", "CONTENT_LENGTH", "",
                   (char *)NULL);
    run_uwsgi("nginx GET", v, n, OK,
              "m=GET t=/a/b?x=1 p=/a/b q=x=1 minor=1 cl=-1 head=0 https=0 ka=0 nf=7",
              "REQUEST_METHOD: GET\nREQUEST_URI: /a/b?x=1\nPATH_INFO: /a/b\n"
              "QUERY_STRING: x=1\nSERVER_PROTOCOL: HTTP/1.1\nHTTP_HOST: example.com\n"
              "CONTENT_LENGTH: \n", &lim);

    n = vars_block(v, "REQUEST_METHOD", "HEAD", "PATH_INFO", "/", "SERVER_PROTOCOL",
                   "HTTP/1.0", "CONTENT_LENGTH", "12", (char *)NULL);
    run_uwsgi("no REQUEST_URI", v, n, OK, "m=HEAD head=1 t= p=/ q= minor=0 cl=12 nf=4",
              NULL, &lim);

    n = vars_block(v, "X", "", (char *)NULL);
    run_uwsgi("minimal", v, n, OK, "m= t= p= q= minor=1 cl=-1 nf=1", "X: \n", &lim);

    n = vars_block(v, "SERVER_PROTOCOL", "HTTP/2.0", (char *)NULL);
    run_uwsgi("protocol 2", v, n, OK, "minor=1", NULL, &lim);
    n = vars_block(v, "SERVER_PROTOCOL", "http/1.0", (char *)NULL);
    run_uwsgi("protocol lowercase", v, n, OK, "minor=1", NULL, &lim);

    n = vars_block(v, "HTTPS", "on", (char *)NULL);
    run_uwsgi("HTTPS on", v, n, OK, "https=1", NULL, &lim);
    n = vars_block(v, "HTTPS", "ON", (char *)NULL);
    run_uwsgi("HTTPS ON", v, n, OK, "https=1", NULL, &lim);
    n = vars_block(v, "HTTPS", "1", (char *)NULL);
    run_uwsgi("HTTPS 1", v, n, OK, "https=1", NULL, &lim);
    n = vars_block(v, "HTTPS", "off", (char *)NULL);
    run_uwsgi("HTTPS off", v, n, OK, "https=0", NULL, &lim);
    n = vars_block(v, "HTTPS", "", (char *)NULL);
    run_uwsgi("HTTPS empty", v, n, OK, "https=0", NULL, &lim);
    n = vars_block(v, "UWSGI_SCHEME", "https", (char *)NULL);
    run_uwsgi("UWSGI_SCHEME https", v, n, OK, "https=1", NULL, &lim);
    n = vars_block(v, "UWSGI_SCHEME", "HTTPS", (char *)NULL);
    run_uwsgi("UWSGI_SCHEME HTTPS", v, n, OK, "https=1", NULL, &lim);
    n = vars_block(v, "UWSGI_SCHEME", "http", (char *)NULL);
    run_uwsgi("UWSGI_SCHEME http", v, n, OK, "https=0", NULL, &lim);
    n = vars_block(v, "https", "on", (char *)NULL);
    run_uwsgi("https key case", v, n, OK, "https=0", NULL, &lim);

    n = vars_block(v, "REQUEST_METHOD", "GET", "REQUEST_METHOD", "POST", (char *)NULL);
    run_uwsgi("repeated var last wins", v, n, OK, "m=POST nf=2", NULL, &lim);

    n = vars_block(v, "CONTENT_LENGTH", "0", (char *)NULL);
    run_uwsgi("CONTENT_LENGTH 0", v, n, OK, "cl=0", NULL, &lim);
    n = vars_block(v, "CONTENT_LENGTH", "9223372036854775807", (char *)NULL);
    run_uwsgi("CONTENT_LENGTH max", v, n, OK, "cl=9223372036854775807", NULL, &lim);
    n = vars_block(v, "CONTENT_LENGTH", "100", (char *)NULL);
    run_uwsgi("CONTENT_LENGTH at limit", v, n, OK, "cl=100", NULL, &lim_post);
    n = vars_block(v, "CONTENT_LENGTH", "101", (char *)NULL);
    run_uwsgi("CONTENT_LENGTH over limit", v, n, 413, NULL, NULL, &lim_post);
    n = vars_block(v, "CONTENT_LENGTH", "12a", (char *)NULL);
    run_uwsgi("CONTENT_LENGTH letters", v, n, 400, NULL, NULL, &lim);
    n = vars_block(v, "CONTENT_LENGTH", "-1", (char *)NULL);
    run_uwsgi("CONTENT_LENGTH negative", v, n, 400, NULL, NULL, &lim);
    n = vars_block(v, "CONTENT_LENGTH", " 1", (char *)NULL);
    run_uwsgi("CONTENT_LENGTH space", v, n, 400, NULL, NULL, &lim);
    n = vars_block(v, "CONTENT_LENGTH", "9223372036854775808", (char *)NULL);
    run_uwsgi("CONTENT_LENGTH overflow", v, n, 400, NULL, NULL, &lim);

    n = vars_block(v, "A", "1", "B", "2", "C", "3", (char *)NULL);
    run_uwsgi("max vars exact", v, n, OK, "nf=3", NULL, &lim3);
    n = vars_block(v, "A", "1", "B", "2", "C", "3", "D", "4", (char *)NULL);
    run_uwsgi("too many vars", v, n, 431, NULL, NULL, &lim3);
    n = vars_block(v, "A", "0123456789abcdef", (char *)NULL);
    run_uwsgi("datasize over max_head", v, n, 431, NULL, NULL, &lim_small);

    /* large values and a datasize near 64 KiB */
    memset(v + 8, 'x', 60000);
    v[0] = 3; v[1] = 0; memcpy(v + 2, "BIG", 3);
    v[5] = (char)(60000 & 0xff); v[6] = (char)(60000 >> 8);
    memmove(v + 7, v + 8, 60000);
    run_uwsgi("60000-byte value", v, 7 + 60000, OK, "nf=1", NULL, &lim);

    /* malformed blocks, written out byte by byte */
    run_uwsgi("datasize 0", "", 0, 400, NULL, NULL, &lim);
    run_uwsgi("one byte", "\x01", 1, 400, NULL, NULL, &lim);
    run_uwsgi("zero-length key", "\x00\x00\x01\x00" "x", 5, 400, NULL, NULL, &lim);
    run_uwsgi("key overruns", "\x05\x00" "abc", 5, 400, NULL, NULL, &lim);
    run_uwsgi("key length 0xffff", "\xff\xff" "abc", 5, 400, NULL, NULL, &lim);
    run_uwsgi("key without value length", "\x01\x00" "k", 3, 400, NULL, NULL, &lim);
    run_uwsgi("key with half value length", "\x01\x00" "k\x01", 4, 400, NULL, NULL, &lim);
    run_uwsgi("value overruns", "\x01\x00" "k\x05\x00" "abc", 8, 400, NULL, NULL, &lim);
    run_uwsgi("value length 0xffff", "\x01\x00" "k\xff\xff" "abc", 8, 400, NULL, NULL, &lim);
    run_uwsgi("trailing byte", "\x01\x00" "k\x01\x00" "v\x00", 7, 400, NULL, NULL, &lim);
    run_uwsgi("trailing zero pair", "\x01\x00" "k\x01\x00" "v\x00\x00", 8, 400, NULL, NULL,
              &lim);
    run_uwsgi("empty value ok", "\x01\x00" "k\x00\x00", 5, OK, "nf=1", "k: \n", &lim);
    run_uwsgi("binary key and value", "\x02\x00" "\0\xff\x02\x00" "\xff\0", 8, OK, "nf=1",
              NULL, &lim);

    /* header */
    k = upy_uwsgi_parse_header((const unsigned char *)place("\x00\x34\x12\x05", 4), 4, &h);
    check(k == 4 && h.modifier1 == 0 && h.datasize == 0x1234 && h.modifier2 == 5,
          "uwsgi header", "whole", "got %d %u %u %u", k, h.modifier1, h.datasize, h.modifier2);
    k = upy_uwsgi_parse_header((const unsigned char *)place("\xff\xff\xff\xfe" "abc", 7), 7, &h);
    check(k == 4 && h.modifier1 == 255 && h.datasize == 0xffff && h.modifier2 == 0xfe,
          "uwsgi header", "trailing", "got %d %u %u %u", k, h.modifier1, h.datasize,
          h.modifier2);
    for (n = 0; n < 4; n++) {
        k = upy_uwsgi_parse_header((const unsigned char *)place("\x00\x10\x00\x00", n), n, &h);
        check(k == UPY_PARSE_INCOMPLETE, "uwsgi header", "short", "len %zu: got %d", n, k);
    }

    /* looks_like_http */
    {
        static const struct {
            const char *s;
            size_t n;
            int want;
        } l[] = {
#define L(s, w) {s, sizeof(s) - 1, w}
            L("GET / HTTP/1.1\r\n", 1), L("POST /x", 1), L("HEAD /", 1), L("PUT /a", 1),
            L("DELETE /a", 1), L("OPTIONS * HTTP/1.1", 1), L("PATCH /", 1),
            L("CONNECT h:443 HTTP/1.1", 1), L("TRACE / HTTP/1.1", 1),
            L("PRI * HTTP/2.0\r\n", 1), L("GET ", 1), L("GET", 0), L("", 0),
            L("\x00\x10\x00\x00", 0), L("GETX /", 0), L("get / HTTP/1.1", 0),
            L("PUTS /", 0), L("GET x", 0), L("DELE", 1),
#undef L
        };
        size_t i;
        for (i = 0; i < sizeof(l) / sizeof(l[0]); i++) {
            k = upy_uwsgi_looks_like_http(place(l[i].s, l[i].n), l[i].n);
            check(k == l[i].want, "looks_like_http", l[i].s, "got %d", k);
        }
    }
}

int main(void)
{
    size_t i;

    guard_init();
    for (i = 0; i < sizeof(http_cases) / sizeof(http_cases[0]); i++)
        test_http_case(&http_cases[i]);
    test_http_fields_cap();
    test_http_big();
    test_http_singletons();

    build_chunked_cases();
    for (i = 0; i < sizeof(chunked_cases) / sizeof(chunked_cases[0]); i++)
        test_chunked_case(&chunked_cases[i]);
    for (i = 0; i < sizeof(built_cases) / sizeof(built_cases[0]); i++)
        test_chunked_case(&built_cases[i]);
    test_chunked_forbidden_trailers();
    test_chunked_after_end();

    test_uwsgi();

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
