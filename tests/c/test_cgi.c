/*
 * test_cgi.c - table tests for the FastCGI and SCGI decoders
 * (csrc/upy_fastcgi.c, csrc/upy_scgi.c, over csrc/upy_cgivars.c), written
 * from the contract in csrc/upy_parse.h (the FastCGI and SCGI sections).
 *
 * FastCGI head (upy_fcgi_parse_head): every row is run
 *   (a) whole, against the guard page (table.h: the last input byte is the
 *       last readable byte, one byte of over-read faults), then (b) again
 *       on the same bytes, which the decoder may have compacted: the same
 *       result;
 *   (c) in every prefix, each placed against the guard page: INCOMPLETE
 *       until the row's length (a row ends exactly where its outcome is
 *       decided), or for an error row INCOMPLETE or the same error (and
 *       that error already at `err_by` when the row says so);
 *   (d) grown in place in one buffer, as the server does (a call on the
 *       first k bytes, then on k + 1, ... from the same start): the same;
 *   (e) followed by trailing bytes: the same result, the same count.
 * Long rows take the prefixes of their first and last 600 bytes and every
 * 97th in between.  The STDIN decoder (upy_fcgi_stdin_decode) rows are run
 * whole, one byte per call, split in two at every offset and followed by
 * trailing bytes, every piece against the guard page.  SCGI rows as (a),
 * (c), (e).  Prints "N passed, M failed".
 *
 * Built and run plain (-Werror) and with ASan+UBSan by
 * tests/test_fastcgi_c.py, or `make -C tests/c test_cgi`.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "upy_parse.h"

#include <inttypes.h>

#include "table.h" /* guard_init, place, check, passed, failed */

#define OK 0
#define INC (-2)
#define FIELDS_CAP 64
#define PAD_BYTE 0xee /* padding content is arbitrary (§3.3): never zeros */

/* ------------------------------------------------------------------ */
/* building inputs                                                     */
/* ------------------------------------------------------------------ */

#define WB_MAX (200 * 1024)

typedef struct {
    char b[WB_MAX];
    size_t n;
} wbuf;

static void put(wbuf *w, const void *p, size_t n)
{
    if (n > WB_MAX - w->n) {
        fprintf(stderr, "wbuf overflow\n");
        exit(2);
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void put_byte(wbuf *w, unsigned c)
{
    unsigned char b = (unsigned char)c;
    put(w, &b, 1);
}

/* One record (header, content, padding) with an explicit version. */
static void rec_v(wbuf *w, unsigned version, unsigned type, unsigned id, const void *c,
                  size_t clen, unsigned pad)
{
    unsigned char h[8] = {(unsigned char)version, (unsigned char)type,
                          (unsigned char)(id >> 8), (unsigned char)id,
                          (unsigned char)(clen >> 8), (unsigned char)clen,
                          (unsigned char)pad, 0};
    unsigned i;
    put(w, h, 8);
    put(w, c, clen);
    for (i = 0; i < pad; i++)
        put_byte(w, PAD_BYTE);
}

static void rec(wbuf *w, unsigned type, unsigned id, const void *c, size_t clen, unsigned pad)
{
    rec_v(w, 1, type, id, c, clen, pad);
}

static void begin(wbuf *w, unsigned id, unsigned role, unsigned flags)
{
    unsigned char c[8] = {(unsigned char)(role >> 8), (unsigned char)role,
                          (unsigned char)flags, 1, 2, 3, 4, 5}; /* reserved: any */
    rec(w, UPY_FCGI_BEGIN_REQUEST, id, c, 8, 0);
}

/* A PARAMS stream and the vars it should decode to. */
typedef struct {
    char s[WB_MAX];
    size_t n;
    upy_field f[FIELDS_CAP * 2];
    size_t nf;
} pstream;

static void put_len(char *s, size_t *n, size_t len, int four)
{
    if (!four && len < 128) {
        s[(*n)++] = (char)len;
        return;
    }
    s[(*n)++] = (char)(0x80 | ((len >> 24) & 0x7f));
    s[(*n)++] = (char)(len >> 16);
    s[(*n)++] = (char)(len >> 8);
    s[(*n)++] = (char)len;
}

/* Append the pair k, v (length classes forced to 4 bytes by k4, v4). */
static void pair4(pstream *ps, const char *k, size_t kl, int k4, const char *v, size_t vl, int v4)
{
    if (kl + vl + 8 > WB_MAX - ps->n || ps->nf >= FIELDS_CAP * 2) {
        fprintf(stderr, "pstream overflow\n");
        exit(2);
    }
    put_len(ps->s, &ps->n, kl, k4);
    put_len(ps->s, &ps->n, vl, v4);
    memcpy(ps->s + ps->n, k, kl);
    ps->f[ps->nf].name.p = ps->s + ps->n;
    ps->f[ps->nf].name.len = kl;
    ps->n += kl;
    memcpy(ps->s + ps->n, v, vl);
    ps->f[ps->nf].value.p = ps->s + ps->n;
    ps->f[ps->nf].value.len = vl;
    ps->n += vl;
    ps->nf++;
}

static void pair(pstream *ps, const char *k, const char *v)
{
    pair4(ps, k, strlen(k), 0, v, strlen(v), 0);
}

/* nginx's fastcgi_params for "GET /p?a=1" */
static void nginx_vars(pstream *ps)
{
    pair(ps, "QUERY_STRING", "a=1");
    pair(ps, "REQUEST_METHOD", "GET");
    pair(ps, "CONTENT_TYPE", "");
    pair(ps, "CONTENT_LENGTH", "");
    pair(ps, "SCRIPT_NAME", "/p");
    pair(ps, "REQUEST_URI", "/p?a=1");
    pair(ps, "DOCUMENT_URI", "/p");
    pair(ps, "SERVER_PROTOCOL", "HTTP/1.1");
    pair(ps, "REMOTE_ADDR", "127.0.0.1");
    pair(ps, "SERVER_PORT", "80");
    pair(ps, "SERVER_NAME", "localhost");
    pair(ps, "PATH_INFO", "/p");
    pair(ps, "HTTP_HOST", "localhost");
}

/* The PARAMS records of stream[0..n), `rs` content bytes per record (0:
   one record), each with `pad` padding, then the empty PARAMS (padded). */
static void params(wbuf *w, unsigned id, const char *stream, size_t n, size_t rs, unsigned pad)
{
    size_t off = 0;
    if (rs == 0)
        rs = UPY_FCGI_MAX_CONTENT;
    while (off < n) {
        size_t k = n - off < rs ? n - off : rs;
        rec(w, UPY_FCGI_PARAMS, id, stream + off, k, pad);
        off += k;
    }
    rec(w, UPY_FCGI_PARAMS, id, "", 0, pad);
}

static void stdin_rec(wbuf *w, unsigned id, const char *s, unsigned pad)
{
    rec(w, UPY_FCGI_STDIN, id, s, strlen(s), pad);
}

/* ------------------------------------------------------------------ */
/* checks                                                              */
/* ------------------------------------------------------------------ */

static int str_is(upy_str s, const char *want)
{
    return s.len == strlen(want) && (s.len == 0 || memcmp(s.p, want, s.len) == 0);
}

/*
 * `spec`: space-separated key=value; only the keys present are checked.
 * Request: m t p q minor ka cl ch head https nf.  FastCGI head (h may be
 * NULL): act id role kc se cp pl type clen.
 */
static const char *check_spec(const upy_request *r, const upy_fcgi_head *h, const char *spec)
{
    static char msg[512];
    char buf[1024], *tok, *save = NULL;

    if (spec == NULL)
        return NULL;
    snprintf(buf, sizeof(buf), "%s", spec);
    for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        const char *k = tok, *v;
        const upy_str *s = NULL;
        long long got = 0;
        int ok;
        if (eq == NULL)
            return "bad spec";
        *eq = '\0';
        v = eq + 1;
        if (!strcmp(k, "m"))
            s = &r->method;
        else if (!strcmp(k, "t"))
            s = &r->target;
        else if (!strcmp(k, "p"))
            s = &r->path;
        else if (!strcmp(k, "q"))
            s = &r->query;
        if (s) {
            if (str_is(*s, v))
                continue;
            snprintf(msg, sizeof(msg), "%s: want '%s', got '%.*s'", k, v, (int)s->len, s->p);
            return msg;
        }
        if (!strcmp(k, "minor"))
            got = r->minor_version;
        else if (!strcmp(k, "ka"))
            got = r->keep_alive;
        else if (!strcmp(k, "cl"))
            got = r->content_length;
        else if (!strcmp(k, "ch"))
            got = r->chunked;
        else if (!strcmp(k, "head"))
            got = r->is_head;
        else if (!strcmp(k, "https"))
            got = r->https;
        else if (!strcmp(k, "nf"))
            got = (long long)r->num_fields;
        else if (h == NULL)
            return "unknown spec key";
        else if (!strcmp(k, "act"))
            got = h->action;
        else if (!strcmp(k, "id"))
            got = h->request_id;
        else if (!strcmp(k, "role"))
            got = h->role;
        else if (!strcmp(k, "kc"))
            got = h->keep_conn;
        else if (!strcmp(k, "se"))
            got = h->stdin_ended;
        else if (!strcmp(k, "cp"))
            got = h->compacted;
        else if (!strcmp(k, "pl"))
            got = (long long)h->params_len;
        else if (!strcmp(k, "type"))
            got = h->type;
        else if (!strcmp(k, "clen"))
            got = (long long)h->content_len;
        else
            return "unknown spec key";
        ok = got == strtoll(v, NULL, 10);
        if (!ok) {
            snprintf(msg, sizeof(msg), "%s: want %s, got %lld", k, v, got);
            return msg;
        }
    }
    return NULL;
}

/* The vars equal want[0..n), and each slice lies inside buf[0..len). */
static const char *check_vars(const upy_request *r, const upy_field *want, size_t n,
                              const char *buf, size_t len)
{
    static char msg[512];
    size_t i;

    for (i = 0; i < r->num_fields; i++) {
        const upy_str *s[2] = {&r->fields[i].name, &r->fields[i].value};
        int k;
        for (k = 0; k < 2; k++)
            if (s[k]->len && (s[k]->p < buf || s[k]->len > (size_t)(buf + len - s[k]->p))) {
                snprintf(msg, sizeof(msg), "var %zu: slice outside the head", i);
                return msg;
            }
    }
    if (want == NULL)
        return NULL;
    if (r->num_fields != n) {
        snprintf(msg, sizeof(msg), "want %zu vars, got %zu", n, r->num_fields);
        return msg;
    }
    for (i = 0; i < n; i++) {
        const upy_field *f = &r->fields[i];
        if (f->name.len != want[i].name.len || memcmp(f->name.p, want[i].name.p, f->name.len) ||
            f->value.len != want[i].value.len ||
            (f->value.len && memcmp(f->value.p, want[i].value.p, f->value.len))) {
            snprintf(msg, sizeof(msg), "var %zu: want '%.*s'=%zu bytes, got '%.*s'=%zu bytes", i,
                     (int)(want[i].name.len > 40 ? 40 : want[i].name.len), want[i].name.p,
                     want[i].value.len, (int)(f->name.len > 40 ? 40 : f->name.len), f->name.p,
                     f->value.len);
            return msg;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* FastCGI head rows                                                   */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *name;
    const wbuf *in;
    int status;         /* OK or the error status */
    ssize_t consumed;   /* OK: the return value; 0 = the whole input */
    const char *spec;
    const upy_field *vars; /* expected vars (NULL: not checked) */
    size_t nvars;
    size_t max_head, max_fields, fields_cap; /* 0: 65535, 100, FIELDS_CAP */
    uint64_t limit_post;
    size_t err_by;      /* error rows: reported on this prefix already */
    const char *reason; /* error rows: a word the reason contains */
} fcase;

static upy_limits limits_of(size_t max_head, size_t max_fields, uint64_t limit_post)
{
    upy_limits lim = {0};
    lim.max_head = max_head ? max_head : 65535;
    lim.max_fields = max_fields ? max_fields : 100;
    lim.limit_post = limit_post;
    return lim;
}

typedef struct {
    ssize_t r;
    int status;
    const char *reason;
    upy_request req;
    upy_fcgi_head h;
    upy_field f[FIELDS_CAP];
} fres;

static void fcgi_call(const fcase *c, char *buf, size_t len, fres *o)
{
    upy_limits lim = limits_of(c->max_head, c->max_fields, c->limit_post);
    /* junk in every output, to see that they are reset on entry */
    memset(&o->req, 0x5a, sizeof(o->req));
    memset(&o->h, 0x5a, sizeof(o->h));
    o->req.fields = o->f;
    o->req.fields_cap = c->fields_cap ? c->fields_cap : FIELDS_CAP;
    o->r = upy_fcgi_parse_head(buf, len, &o->req, &lim, &o->h);
    o->status = o->r >= 0 ? OK : o->r == UPY_PARSE_ERROR ? o->req.error_status : INC;
    o->reason = o->r == UPY_PARSE_ERROR ? o->req.error_reason : NULL;
}

/* Judge a result of the whole input (or one decided as the whole is). */
static const char *fcgi_judge(const fcase *c, const fres *o, const char *buf, size_t len)
{
    static char msg[600];
    ssize_t want_n = c->consumed ? c->consumed : (ssize_t)len;
    const char *why;

    if (o->r != UPY_PARSE_ERROR && o->r != UPY_PARSE_INCOMPLETE && o->r < 0) {
        snprintf(msg, sizeof(msg), "returned %zd", o->r);
        return msg;
    }
    if (o->status != c->status) {
        snprintf(msg, sizeof(msg), "want %d, got %d (%s)", c->status, o->status,
                 o->reason ? o->reason : "-");
        return msg;
    }
    if (c->status != OK) {
        if (o->reason == NULL)
            return "error without a reason";
        if (c->reason && strstr(o->reason, c->reason) == NULL) {
            snprintf(msg, sizeof(msg), "reason '%s' does not say '%s'", o->reason, c->reason);
            return msg;
        }
        return NULL;
    }
    if (o->r != want_n) {
        snprintf(msg, sizeof(msg), "consumed: want %zd, got %zd", want_n, o->r);
        return msg;
    }
    why = check_spec(&o->req, &o->h, c->spec);
    if (why)
        return why;
    if (o->h.action == UPY_FCGI_DO_HEAD) {
        if (o->req.proto != UPY_PROTO_FASTCGI)
            return "proto not FastCGI";
        if (o->req.expect_continue)
            return "expect_continue set";
        if (o->req.keep_alive != o->h.keep_conn)
            return "keep_alive is not keep_conn";
        if (o->h.role != UPY_FCGI_RESPONDER)
            return "HEAD with a role other than responder";
        if (o->req.chunked == o->h.stdin_ended)
            return "chunked must be the opposite of stdin_ended";
        return check_vars(&o->req, c->vars, c->nvars, buf, (size_t)o->r);
    }
    if (o->h.action == UPY_FCGI_DO_GET_VALUES &&
        (o->h.content_len && (o->h.content < buf ||
                              o->h.content_len > (size_t)(buf + o->r - o->h.content))))
        return "GET_VALUES content outside the record";
    return NULL;
}

static int same(const fres *a, const fres *b)
{
    size_t i;
    if (a->r != b->r || a->status != b->status)
        return 0;
    if (a->r < 0)
        return 1;
    if (a->h.action != b->h.action || a->h.request_id != b->h.request_id ||
        a->h.keep_conn != b->h.keep_conn || a->h.stdin_ended != b->h.stdin_ended ||
        a->h.params_len != b->h.params_len || a->req.num_fields != b->req.num_fields ||
        a->req.content_length != b->req.content_length || a->req.chunked != b->req.chunked)
        return 0;
    for (i = 0; i < a->req.num_fields; i++) {
        const upy_field *x = &a->f[i], *y = &b->f[i];
        if (x->name.len != y->name.len || memcmp(x->name.p, y->name.p, x->name.len) ||
            x->value.len != y->value.len ||
            (x->value.len && memcmp(x->value.p, y->value.p, x->value.len)))
            return 0;
    }
    return 1;
}

static int sampled(size_t i, size_t len)
{
    return len <= 4096 || i < 600 || len - i < 600 || i % 97 == 0;
}

static char grow[WB_MAX + 64];

/* A prefix of length i (< len): INCOMPLETE, or for an error row the same
   error; at err_by and after it, the error. */
static const char *prefix_ok(const fcase *c, const fres *o, size_t i)
{
    static char msg[300];
    if (o->status == INC && !(c->status != OK && c->err_by && i >= c->err_by))
        return NULL;
    if (c->status != OK && o->status == c->status)
        return NULL;
    snprintf(msg, sizeof(msg), "prefix %zu: got %d (%s)", i, o->status,
             o->reason ? o->reason : "-");
    return msg;
}

static void test_fcgi(const fcase *c)
{
    static fres whole, o;
    static const char trail[] = "\x01\x05\x00\x01\x00\x05\x00\x00hello\x01\x01\x00\x01";
    const char *in = c->in->b, *why;
    size_t len = c->in->n, i;
    char *b;

    /* (a) whole, (b) again: on the same bytes when they were not
       compacted, and the PARAMS block through upy_fcgi_parse_params */
    b = place(in, len);
    fcgi_call(c, b, len, &whole);
    why = fcgi_judge(c, &whole, b, len);
    check(why == NULL, c->name, "whole", "%s", why ? why : "");
    if (whole.r >= 0 && whole.h.action == UPY_FCGI_DO_HEAD) {
        upy_limits lim = limits_of(c->max_head, c->max_fields, c->limit_post);
        size_t i_;
        int r_;
        if (whole.h.params_off > (size_t)whole.r ||
            whole.h.params_len > (size_t)whole.r - whole.h.params_off) {
            check(0, c->name, "params block", "%zu+%zu outside the %zd-byte head",
                  whole.h.params_off, whole.h.params_len, whole.r);
        } else {
            memset(&o.req, 0x5a, sizeof(o.req));
            o.req.fields = o.f;
            o.req.fields_cap = c->fields_cap ? c->fields_cap : FIELDS_CAP;
            r_ = upy_fcgi_parse_params(b + whole.h.params_off, whole.h.params_len, &o.req, &lim);
            o.r = whole.r;
            o.status = r_ == 0 ? OK : o.req.error_status;
            o.h = whole.h;
            o.req.keep_alive = whole.req.keep_alive;
            o.req.chunked = whole.req.chunked;
            check(r_ == 0 && same(&whole, &o) && o.req.proto == UPY_PROTO_FASTCGI &&
                      o.req.method.len == whole.req.method.len &&
                      o.req.target.len == whole.req.target.len && o.req.https == whole.req.https,
                  c->name, "parse_params", "got %d (%s)", r_,
                  r_ ? o.req.error_reason : "a different request");
            for (i_ = 0; i_ < o.req.num_fields && r_ == 0; i_++)
                if (o.f[i_].name.p < b + whole.h.params_off ||
                    o.f[i_].name.p >= b + whole.h.params_off + whole.h.params_len) {
                    check(0, c->name, "parse_params", "var %zu outside the block", i_);
                    break;
                }
        }
    }
    if (whole.r < 0 || !(whole.h.action == UPY_FCGI_DO_HEAD && whole.h.compacted)) {
        fcgi_call(c, b, len, &o);
        check(same(&whole, &o), c->name, "second call", "got %zd/%d, first %zd/%d", o.r,
              o.status, whole.r, whole.status);
    }

    /* (c) every prefix against the guard page */
    for (i = 0; i < len; i++) {
        if (!sampled(i, len))
            continue;
        b = place(in, i);
        fcgi_call(c, b, i, &o);
        why = prefix_ok(c, &o, i);
        if (why) {
            check(0, c->name, "prefix", "%s", why);
            break;
        }
    }
    check(i == len, c->name, "prefixes", "stopped at %zu", i);

    /* (d) grown in place from the same start */
    memcpy(grow, in, len);
    for (i = 0; i < len; i++) {
        if (!sampled(i, len))
            continue;
        fcgi_call(c, grow, i, &o);
        why = prefix_ok(c, &o, i);
        if (why) {
            check(0, c->name, "grown", "%s", why);
            break;
        }
    }
    if (i == len) {
        fcgi_call(c, grow, len, &o);
        why = fcgi_judge(c, &o, grow, len);
        check(why == NULL, c->name, "grown", "%s", why ? why : "");
    }

    /* (e) trailing bytes: the same result and count */
    memcpy(grow, in, len);
    memcpy(grow + len, trail, sizeof(trail) - 1);
    b = place(grow, len + sizeof(trail) - 1);
    fcgi_call(c, b, len + sizeof(trail) - 1, &o);
    if (c->status == OK || whole.status != INC) {
        fcase t = *c;
        if (!t.consumed)
            t.consumed = (ssize_t)len;
        why = fcgi_judge(&t, &o, b, len + sizeof(trail) - 1);
        check(why == NULL, c->name, "trailing", "%s", why ? why : "");
    }
}

/* ---- the rows ---- */

static wbuf W;
static pstream P, P2;

static void reset(void)
{
    W.n = 0;
    P.n = P.nf = 0;
    P2.n = P2.nf = 0;
}

#define ROW(...)                                                                                   \
    do {                                                                                           \
        fcase c_ = {__VA_ARGS__};                                                                  \
        test_fcgi(&c_);                                                                            \
    } while (0)

static char big[WB_MAX];

static void fcgi_rows(void)
{
    char s[64];
    size_t i, n;

    /* ---- heads ---- */
    reset();
    nginx_vars(&P);
    begin(&W, 1, 1, 0);
    params(&W, 1, P.s, P.n, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("nginx GET, empty STDIN in the head", &W, OK, 0,
        "act=0 id=1 role=1 kc=0 se=1 cp=0 ch=0 ka=0 m=GET t=/p?a=1 p=/p q=a=1 minor=1 cl=-1 head=0 "
        "https=0 nf=13",
        P.f, P.nf);

    reset();
    nginx_vars(&P);
    begin(&W, 1, 1, UPY_FCGI_KEEP_CONN);
    params(&W, 1, P.s, P.n, 0, UPY_FCGI_PADDING(P.n));
    stdin_rec(&W, 1, "", 0);
    ROW("nginx keep_conn, padded to 8", &W, OK, 0, "act=0 kc=1 ka=1 se=1", P.f, P.nf);

    reset();
    pair(&P, "REQUEST_METHOD", "POST");
    pair(&P, "CONTENT_LENGTH", "5");
    pair(&P, "REQUEST_URI", "/post");
    begin(&W, 7, 1, 1);
    params(&W, 7, P.s, P.n, 0, 3);
    n = W.n;
    rec(&W, UPY_FCGI_STDIN, 7, "hello", 5, 0);
    W.n -= 5; /* the head is decided by the STDIN record's header */
    ROW("body follows: the head ends before STDIN", &W, OK, (ssize_t)n,
        "act=0 id=7 se=0 ch=1 cl=5 m=POST t=/post p= q=", P.f, P.nf);

    reset();
    pair(&P, "REQUEST_METHOD", "POST");
    begin(&W, 7, 1, 0);
    params(&W, 7, P.s, P.n, 0, 0);
    n = W.n;
    rec(&W, UPY_FCGI_STDIN, 7, "x", 1, 7);
    W.n -= 8;
    ROW("body without CONTENT_LENGTH", &W, OK, (ssize_t)n, "se=0 ch=1 cl=-1", P.f, P.nf);

    reset();
    pair(&P, "REQUEST_METHOD", "GET");
    begin(&W, 1, 1, 0);
    params(&W, 1, P.s, P.n, 0, 0);
    stdin_rec(&W, 1, "", 255);
    ROW("empty STDIN with 255 bytes of padding", &W, OK, 0, "se=1 ch=0", P.f, P.nf);

    reset();
    pair(&P, "CONTENT_LENGTH", "0");
    begin(&W, 1, 1, 0);
    params(&W, 1, P.s, P.n, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("CONTENT_LENGTH 0 and the stream ended", &W, OK, 0, "se=1 cl=0", P.f, P.nf);

    reset();
    pair(&P, "CONTENT_LENGTH", "5");
    begin(&W, 1, 1, 0);
    params(&W, 1, P.s, P.n, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("CONTENT_LENGTH 5 but the stream ended", &W, 400, 0, NULL, NULL, 0);

    reset();
    pair(&P, "REQUEST_METHOD", "HEAD");
    pair(&P, "SERVER_PROTOCOL", "HTTP/1.0");
    pair(&P, "HTTPS", "on");
    begin(&W, 0xffff, 1, 0xff);
    params(&W, 0xffff, P.s, P.n, 0, 0);
    stdin_rec(&W, 0xffff, "", 0);
    ROW("request id 0xffff, all flag bits, HEAD 1.0 https", &W, OK, 0,
        "id=65535 kc=1 ka=1 head=1 minor=0 https=1", P.f, P.nf);

    reset();
    pair(&P, "A", "1");
    begin(&W, 0x0102, 1, 0);
    params(&W, 0x0102, P.s, P.n, 0, 0);
    stdin_rec(&W, 0x0102, "", 0);
    ROW("request id big-endian", &W, OK, 0, "id=258", P.f, P.nf);

    reset();
    begin(&W, 1, 1, 0);
    params(&W, 1, "", 0, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("no params at all", &W, OK, 0, "act=0 nf=0 pl=0 m= t= cl=-1", P.f, 0);

    /* the two length classes, at 127 and 128, and the high bit */
    for (i = 0; i < 2; i++) {
        size_t L = i ? 128 : 127;
        memset(big, 'k', L);
        memset(big + 200, 'v', L);
        reset();
        pair4(&P, big, L, 0, big + 200, L, 0);
        begin(&W, 1, 1, 0);
        params(&W, 1, P.s, P.n, 0, 0);
        stdin_rec(&W, 1, "", 0);
        snprintf(s, sizeof(s), "name and value of %zu bytes", L);
        {
            char spec[64];
            snprintf(spec, sizeof(spec), "nf=1 pl=%zu", P.n);
            ROW(s, &W, OK, 0, spec, P.f, P.nf);
        }
    }
    reset();
    pair4(&P, "NAME", 4, 1, "value", 5, 1);
    pair4(&P, "N2", 2, 1, "", 0, 0);
    pair4(&P, "N3", 2, 0, "", 0, 1);
    begin(&W, 1, 1, 0);
    params(&W, 1, P.s, P.n, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("4-byte lengths below 128 (high bit set)", &W, OK, 0, "nf=3", P.f, P.nf);

    reset();
    memset(big, 'x', 70000);
    pair4(&P, "BIG", 3, 0, big, 70000, 0);
    begin(&W, 1, 1, 0);
    params(&W, 1, P.s, P.n, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("a 70000-byte value spanning two records", &W, OK, 0, "nf=1 cp=1", P.f, P.nf,
        .max_head = 100000);

    reset();
    memset(big, 'y', 0x10203);
    pair4(&P, big, 0x10203, 0, "v", 1, 0);
    begin(&W, 1, 1, 0);
    params(&W, 1, P.s, P.n, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("a 66051-byte name: every length byte matters", &W, OK, 0, "nf=1", P.f, P.nf,
        .max_head = 100000);

    /* a pair spanning records, split at every offset of the stream */
    reset();
    pair4(&P2, "REQUEST_METHOD", 14, 0, "PUT", 3, 0);
    memset(big, 'n', 130);
    pair4(&P2, big, 130, 0, "four-byte name", 14, 0);
    pair4(&P2, "V4", 2, 0, big, 129, 0);
    pair4(&P2, "Q", 1, 1, "", 0, 1);
    for (i = 1; i <= P2.n; i++) {
        char nm[80];
        W.n = 0;
        begin(&W, 3, 1, 0);
        params(&W, 3, P2.s, P2.n, i, (unsigned)(i % 9));
        stdin_rec(&W, 3, "", 0);
        snprintf(nm, sizeof(nm), "PARAMS records of %zu bytes", i);
        if (i < 8 || i % 37 == 0 || i == P2.n - 1 || i == P2.n || (i >= 128 && i <= 136))
            ROW(nm, &W, OK, 0, i < P2.n ? "nf=4 m=PUT cp=1" : "nf=4 m=PUT cp=0", P2.f, P2.nf);
        else { /* whole only: the full run of each would be slow */
            fcase c = {nm, &W, OK, 0, "nf=4 m=PUT", P2.f, P2.nf};
            static fres o;
            const char *why;
            char *b = place(W.b, W.n);
            fcgi_call(&c, b, W.n, &o);
            why = fcgi_judge(&c, &o, b, W.n);
            check(why == NULL, nm, "whole", "%s", why ? why : "");
        }
    }

    /* params at exactly max_head and one over */
    for (i = 0; i < 3; i++) {
        /* name "K" (1-byte length), value over 127 (4-byte length) */
        size_t vl = 1024 - (1 + 4 + 1) + i;
        reset();
        memset(big, 'z', vl);
        pair4(&P, "K", 1, 0, big, vl, 0);
        begin(&W, 1, 1, 0);
        params(&W, 1, P.s, P.n, 300, 0);
        stdin_rec(&W, 1, "", 0);
        if (i == 0)
            ROW("params at exactly max_head", &W, OK, 0, "pl=1024", P.f, P.nf, .max_head = 1024);
        else {
            /* the running total passes max_head once byte 1025 of the
               content is there */
            size_t at = 16 + 4 * 8 + 1025;
            ROW(i == 1 ? "params one over max_head" : "params two over max_head", &W, 431, 0,
                NULL, NULL, 0, .max_head = 1024, .err_by = at);
        }
    }
    reset();
    memset(big, 'z', 5000);
    pair4(&P, "K", 1, 0, big, 5000, 0);
    begin(&W, 1, 1, 0);
    params(&W, 1, P.s, P.n, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("one 5006-byte PARAMS record over max_head 1024", &W, 431, 0, NULL, NULL, 0,
        .max_head = 1024, .err_by = 16 + 8 + 1025);

    /* vars: the cap */
    reset();
    pair(&P, "A", "1");
    pair(&P, "B", "2");
    pair(&P, "C", "3");
    begin(&W, 1, 1, 0);
    params(&W, 1, P.s, P.n, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("max_fields vars exactly", &W, OK, 0, "nf=3", P.f, P.nf, .max_fields = 3);
    ROW("a var over max_fields", &W, 431, 0, NULL, NULL, 0, .max_fields = 2);
    ROW("a var over fields_cap", &W, 431, 0, NULL, NULL, 0, .fields_cap = 2);

    /* CONTENT_LENGTH as for uwsgi */
    {
        static const struct {
            const char *v;
            int status;
            const char *spec;
        } cls[] = {
            {"", OK, "cl=-1"},          {"0", OK, "cl=0"},
            {"12", OK, "cl=12"},        {"100", OK, "cl=100"},
            {"101", 413, NULL},         {"1x", 400, NULL},
            {"-1", 400, NULL},          {" 1", 400, NULL},
            {"99999999999999999999", 400, NULL},
            {"9223372036854775807", 413, NULL},
        };
        for (i = 0; i < sizeof(cls) / sizeof(cls[0]); i++) {
            char nm[80];
            reset();
            pair(&P, "CONTENT_LENGTH", cls[i].v);
            begin(&W, 1, 1, 0);
            params(&W, 1, P.s, P.n, 0, 0);
            /* a body follows (the head does not end the stream) */
            n = W.n;
            rec(&W, UPY_FCGI_STDIN, 1, "x", 1, 0);
            W.n -= 1;
            snprintf(nm, sizeof(nm), "CONTENT_LENGTH '%s' (limit-post 100)", cls[i].v);
            ROW(nm, &W, cls[i].status, cls[i].status == OK ? (ssize_t)n : 0, cls[i].spec,
                P.f, P.nf, .limit_post = 100);
        }
    }

    /* ---- errors inside a head ---- */
    reset();
    pair(&P, "A", "1");
    begin(&W, 1, 1, 0);
    rec(&W, UPY_FCGI_ABORT_REQUEST, 1, "", 0, 0);
    ROW("ABORT_REQUEST inside the head", &W, 400, 0, NULL, NULL, 0, .reason = "abort");

    reset();
    pair(&P, "A", "1");
    begin(&W, 1, 1, 0);
    rec(&W, UPY_FCGI_PARAMS, 1, P.s, P.n, 0);
    rec(&W, UPY_FCGI_ABORT_REQUEST, 1, "", 0, 0);
    ROW("ABORT_REQUEST between PARAMS records", &W, 400, 0, NULL, NULL, 0, .reason = "abort");

    reset();
    begin(&W, 1, 1, 0);
    rec(&W, UPY_FCGI_STDIN, 1, "x", 1, 0);
    ROW("STDIN before the PARAMS end", &W, 400, 0, NULL, NULL, 0);

    reset();
    pair(&P, "A", "1");
    begin(&W, 1, 1, 0);
    rec(&W, UPY_FCGI_PARAMS, 2, P.s, P.n, 0);
    ROW("PARAMS of another request", &W, 400, 0, NULL, NULL, 0);

    reset();
    pair(&P, "A", "1");
    begin(&W, 1, 1, 0);
    rec(&W, UPY_FCGI_PARAMS, 1, P.s, P.n, 0);
    rec(&W, UPY_FCGI_PARAMS, 2, "", 0, 0);
    ROW("the empty PARAMS of another request", &W, 400, 0, NULL, NULL, 0);

    reset();
    begin(&W, 1, 1, 0);
    begin(&W, 2, 1, 0);
    ROW("BEGIN_REQUEST inside the head (multiplexing)", &W, 400, 0, NULL, NULL, 0);

    reset();
    begin(&W, 1, 1, 0);
    rec(&W, UPY_FCGI_GET_VALUES, 0, "", 0, 0);
    ROW("GET_VALUES inside the head", &W, 400, 0, NULL, NULL, 0);

    reset();
    begin(&W, 1, 1, 0);
    rec(&W, UPY_FCGI_DATA, 1, "x", 1, 0);
    ROW("DATA inside the head", &W, 400, 0, NULL, NULL, 0);

    reset();
    pair(&P, "A", "1");
    begin(&W, 1, 1, 0);
    rec_v(&W, 2, UPY_FCGI_PARAMS, 1, P.s, P.n, 0);
    ROW("version 2 on a PARAMS record", &W, 400, 0, NULL, NULL, 0);

    reset();
    begin(&W, 1, 1, 0);
    rec_v(&W, 0, UPY_FCGI_PARAMS, 1, "", 0, 0);
    ROW("version 0 on the empty PARAMS", &W, 400, 0, NULL, NULL, 0);

    /* name-value pairs */
    reset();
    begin(&W, 1, 1, 0);
    params(&W, 1, "\x00\x01x", 3, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("a name of length 0", &W, 400, 0, NULL, NULL, 0);

    reset();
    begin(&W, 1, 1, 0);
    params(&W, 1, "\x80\x00\x00\x00\x01x", 6, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("a 4-byte name length of 0", &W, 400, 0, NULL, NULL, 0);

    reset();
    begin(&W, 1, 1, 0);
    params(&W, 1, "\x05\x01" "abc", 5, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("a name running past the stream", &W, 400, 0, NULL, NULL, 0);

    reset();
    begin(&W, 1, 1, 0);
    params(&W, 1, "\x01\x05" "abc", 5, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("a value running past the stream", &W, 400, 0, NULL, NULL, 0);

    reset();
    begin(&W, 1, 1, 0);
    params(&W, 1, "\x01\x01" "kv" "\x01", 5, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("a name length and nothing else at the end", &W, 400, 0, NULL, NULL, 0);

    reset();
    begin(&W, 1, 1, 0);
    params(&W, 1, "\x01\x80\x00", 3, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("a 4-byte value length cut by the stream end", &W, 400, 0, NULL, NULL, 0);

    reset();
    begin(&W, 1, 1, 0);
    params(&W, 1, "\x81", 1, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("a 4-byte name length cut by the stream end", &W, 400, 0, NULL, NULL, 0);

    reset();
    begin(&W, 1, 1, 0);
    params(&W, 1, "\x01\xff\xff\xff\xff" "k", 6, 0, 0);
    stdin_rec(&W, 1, "", 0);
    ROW("a value length of 0x7fffffff", &W, 400, 0, NULL, NULL, 0, .max_head = 100000);

    /* BEGIN_REQUEST itself */
    reset();
    begin(&W, 0, 1, 0);
    ROW("BEGIN_REQUEST with request id 0", &W, 400, 0, NULL, NULL, 0);

    reset();
    rec(&W, UPY_FCGI_BEGIN_REQUEST, 1, "\x00\x01\x00\x00\x00\x00\x00", 7, 0);
    ROW("BEGIN_REQUEST of 7 bytes", &W, 400, 0, NULL, NULL, 0, .err_by = 8);

    reset();
    rec(&W, UPY_FCGI_BEGIN_REQUEST, 1, "\x00\x01\x00\x00\x00\x00\x00\x00\x00", 9, 0);
    ROW("BEGIN_REQUEST of 9 bytes", &W, 400, 0, NULL, NULL, 0, .err_by = 8);

    reset();
    rec_v(&W, 2, UPY_FCGI_BEGIN_REQUEST, 1, "\x00\x01\x00\x00\x00\x00\x00\x00", 8, 0);
    ROW("version 2", &W, 400, 0, NULL, NULL, 0, .err_by = 8);

    reset();
    rec_v(&W, 0, UPY_FCGI_BEGIN_REQUEST, 1, "\x00\x01\x00\x00\x00\x00\x00\x00", 8, 0);
    ROW("version 0", &W, 400, 0, NULL, NULL, 0, .err_by = 8);

    reset();
    put(&W, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27);
    ROW("HTTP on a FastCGI socket", &W, 400, 0, NULL, NULL, 0, .err_by = 8);

    /* ---- one-record actions ---- */
    reset();
    begin(&W, 5, UPY_FCGI_AUTHORIZER, 1);
    ROW("authorizer: BAD_ROLE", &W, OK, 0, "act=4 id=5 role=2", NULL, 0);
    reset();
    begin(&W, 5, UPY_FCGI_FILTER, 0);
    ROW("filter: BAD_ROLE", &W, OK, 0, "act=4 id=5 role=3", NULL, 0);
    reset();
    begin(&W, 9, 0, 0);
    ROW("role 0: BAD_ROLE", &W, OK, 0, "act=4 id=9 role=0", NULL, 0);
    reset();
    begin(&W, 9, 0x0100, 0);
    ROW("role 256 (big-endian): BAD_ROLE", &W, OK, 0, "act=4 role=256", NULL, 0);
    reset();
    rec(&W, UPY_FCGI_BEGIN_REQUEST, 4, "\x00\x02\x00\x00\x00\x00\x00\x00", 8, 200);
    ROW("BAD_ROLE takes its padding", &W, OK, 0, "act=4 id=4", NULL, 0);

    {
        static const unsigned skip_types[] = {UPY_FCGI_ABORT_REQUEST, UPY_FCGI_PARAMS,
                                              UPY_FCGI_STDIN, UPY_FCGI_DATA};
        for (i = 0; i < 4; i++) {
            char nm[80];
            reset();
            rec(&W, skip_types[i], 3, "stray", i == 0 ? 0 : 5, (unsigned)(i * 3));
            snprintf(nm, sizeof(nm), "a stray type %u record: SKIP", skip_types[i]);
            ROW(nm, &W, OK, 0, "act=1", NULL, 0);
        }
        reset();
        rec(&W, UPY_FCGI_STDIN, 3, "", 0, 0);
        ROW("a stray empty STDIN: SKIP", &W, OK, 0, "act=1", NULL, 0);
        reset();
        rec(&W, UPY_FCGI_PARAMS, 3, "", 0, 0);
        ROW("a stray empty PARAMS: SKIP", &W, OK, 0, "act=1", NULL, 0);
        reset();
        rec(&W, UPY_FCGI_STDIN, 3, "x", 1, 0);
        begin(&W, 3, 1, 0);
        W.n -= 16;
        ROW("SKIP is exactly one record", &W, OK, 9, "act=1", NULL, 0);
    }

    reset();
    pair(&P, "FCGI_MAX_CONNS", "");
    pair(&P, "FCGI_MAX_REQS", "");
    pair(&P, "FCGI_MPXS_CONNS", "");
    rec(&W, UPY_FCGI_GET_VALUES, 0, P.s, P.n, UPY_FCGI_PADDING(P.n));
    snprintf(s, sizeof(s), "act=2 clen=%zu", P.n);
    ROW("GET_VALUES", &W, OK, 0, s, NULL, 0);
    reset();
    rec(&W, UPY_FCGI_GET_VALUES, 0, "", 0, 0);
    ROW("empty GET_VALUES", &W, OK, 0, "act=2 clen=0", NULL, 0);

    {
        static const unsigned unknown_types[] = {0, 12, 13, 100, 255};
        for (i = 0; i < 5; i++) {
            char nm[80], spec[40];
            reset();
            rec(&W, unknown_types[i], 0, "abc", 3, 5);
            snprintf(nm, sizeof(nm), "management type %u: UNKNOWN", unknown_types[i]);
            snprintf(spec, sizeof(spec), "act=3 type=%u", unknown_types[i]);
            ROW(nm, &W, OK, 0, spec, NULL, 0);
        }
    }
}

/* The content a GET_VALUES row points to is the record's own. */
static void fcgi_get_values_content(void)
{
    upy_limits lim = limits_of(0, 0, 0);
    upy_field f[4];
    upy_request req;
    upy_fcgi_head h;
    ssize_t r;
    char *b;

    reset();
    pair(&P, "FCGI_MAX_CONNS", "");
    rec(&W, UPY_FCGI_GET_VALUES, 0, P.s, P.n, 3);
    b = place(W.b, W.n);
    req.fields = f;
    req.fields_cap = 4;
    r = upy_fcgi_parse_head(b, W.n, &req, &lim, &h);
    check(r == (ssize_t)W.n && h.action == UPY_FCGI_DO_GET_VALUES && h.content == b + 8 &&
              h.content_len == P.n,
          "GET_VALUES content", "whole", "r %zd action %d", r, (int)h.action);
}

/* ------------------------------------------------------------------ */
/* records and GET_VALUES_RESULT                                       */
/* ------------------------------------------------------------------ */

static void fcgi_records(void)
{
    static const unsigned char hdr[8] = {1, 5, 0x12, 0x34, 0xff, 0xfe, 0xab, 0x77};
    upy_fcgi_record r;
    unsigned char out[8];
    size_t i;
    int k;

    for (i = 0; i < 8; i++) {
        k = upy_fcgi_parse_record((const unsigned char *)place((const char *)hdr, i), i, &r);
        check(k == UPY_PARSE_INCOMPLETE, "record header", "short", "len %zu: %d", i, k);
    }
    k = upy_fcgi_parse_record((const unsigned char *)place((const char *)hdr, 8), 8, &r);
    check(k == 8 && r.version == 1 && r.type == 5 && r.request_id == 0x1234 &&
              r.content_length == 0xfffe && r.padding_length == 0xab,
          "record header", "whole", "%d: %u %u %u %u %u", k, r.version, r.type, r.request_id,
          r.content_length, r.padding_length);
    upy_fcgi_put_record(out, 7, 0xfedc, 65535, 255);
    check(!memcmp(out, "\x01\x07\xfe\xdc\xff\xff\xff", 7), "put_record", "65535/255", "bytes");
    upy_fcgi_put_record(out, UPY_FCGI_STDOUT, 1, 0, 0);
    check(!memcmp(out, "\x01\x06\x00\x01\x00\x00\x00", 7), "put_record", "empty", "bytes");
    for (i = 0; i < 70000; i += 1 + i / 3) {
        size_t cl = i > 65535 ? 65535 : i;
        unsigned pad = UPY_FCGI_PADDING(cl);
        upy_fcgi_put_record(out, UPY_FCGI_STDOUT, (unsigned)(i & 0xffff), cl, pad);
        k = upy_fcgi_parse_record(out, 8, &r);
        check(k == 8 && r.version == 1 && r.type == UPY_FCGI_STDOUT &&
                  r.request_id == (i & 0xffff) && r.content_length == cl &&
                  r.padding_length == pad && pad < 8 && (cl + pad) % 8 == 0,
              "put/parse record", "round trip", "content %zu", cl);
    }
}

/* Read one name-value pair at p[0..n): its length, or 0 when malformed. */
static size_t nv_read(const unsigned char *p, size_t n, upy_str *k, upy_str *v)
{
    size_t off = 0, len[2];
    int i;
    for (i = 0; i < 2; i++) {
        if (off >= n)
            return 0;
        if (p[off] < 128)
            len[i] = p[off++];
        else {
            if (4 > n - off)
                return 0;
            len[i] = ((size_t)(p[off] & 0x7f) << 24) | ((size_t)p[off + 1] << 16) |
                     ((size_t)p[off + 2] << 8) | p[off + 3];
            off += 4;
        }
    }
    if (len[0] > n - off || len[1] > n - off - len[0])
        return 0;
    k->p = (const char *)p + off;
    k->len = len[0];
    v->p = (const char *)p + off + len[0];
    v->len = len[1];
    return off + len[0] + len[1];
}

/* A second guarded region for output: out_cap bytes ending at a PROT_NONE
   page, so a write past out_cap faults. */
static char *guard_out(size_t cap)
{
    static char *base;
    long page = sysconf(_SC_PAGESIZE);
    if (base == NULL) {
        base = mmap(NULL, REGION + (size_t)page, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED || mprotect(base + REGION, (size_t)page, PROT_NONE)) {
            perror("mmap/mprotect");
            exit(2);
        }
    }
    return base + REGION - cap;
}

/* want: "NAME=VALUE;..." in order ("" for none); -1: the call must fail. */
static void get_values_row(const char *name, const char *content, size_t clen,
                           unsigned long conns, unsigned long reqs, const char *want)
{
    static char out[4096];
    char got[1024];
    const char *c = place(content, clen);
    ssize_t r = upy_fcgi_get_values_result(c, clen, conns, reqs, out, sizeof(out));
    upy_fcgi_record rr;
    size_t off, g = 0;

    if (want == NULL || (want[0] == '?' && r == -1)) {
        check(r == -1, name, "malformed", "got %zd", r);
        return;
    }
    if (want[0] == '?')
        want = "";
    if (r < 8) {
        check(0, name, "result", "got %zd", r);
        return;
    }
    upy_fcgi_parse_record((const unsigned char *)out, 8, &rr);
    if (!(rr.version == 1 && rr.type == UPY_FCGI_GET_VALUES_RESULT && rr.request_id == 0 &&
          (size_t)r == 8u + rr.content_length + rr.padding_length)) {
        check(0, name, "result", "header %u %u %u %u %u for %zd bytes", rr.version, rr.type,
              rr.request_id, rr.content_length, rr.padding_length, r);
        return;
    }
    got[0] = '\0';
    for (off = 0; off < rr.content_length;) {
        upy_str k, v;
        size_t m = nv_read((const unsigned char *)out + 8 + off, rr.content_length - off, &k, &v);
        if (m == 0) {
            check(0, name, "result", "malformed pair at %zu", off);
            return;
        }
        g += (size_t)snprintf(got + g, sizeof(got) - g, "%.*s=%.*s;", (int)k.len, k.p,
                              (int)v.len, v.p);
        off += m;
    }
    check(!strcmp(got, want), name, "result", "want '%s', got '%s'", want, got);
    /* exactly the record's size fits; one byte less does not (and writes
       nothing past it: the output ends at a guard page) */
    check(upy_fcgi_get_values_result(c, clen, conns, reqs, guard_out((size_t)r), (size_t)r) ==
                  r &&
              !memcmp(guard_out((size_t)r), out, (size_t)r),
          name, "exact out_cap", "failed");
    check(upy_fcgi_get_values_result(c, clen, conns, reqs, guard_out((size_t)r - 1),
                                     (size_t)r - 1) == -1,
          name, "out_cap one short", "did not fail");
    for (off = 0; off < 8; off++)
        check(upy_fcgi_get_values_result(c, clen, conns, reqs, guard_out(off), off) == -1, name,
              "out_cap below a header", "%zu bytes", off);
}

static void fcgi_get_values(void)
{
    reset();
    pair(&P, "FCGI_MAX_CONNS", "");
    pair(&P, "FCGI_MAX_REQS", "");
    pair(&P, "FCGI_MPXS_CONNS", "");
    get_values_row("GET_VALUES all three", P.s, P.n, 10, 20,
                   "FCGI_MAX_CONNS=10;FCGI_MAX_REQS=20;FCGI_MPXS_CONNS=0;");
    reset();
    pair(&P, "FCGI_MPXS_CONNS", "");
    pair(&P, "FCGI_UNKNOWN_NAME", "");
    pair(&P, "FCGI_MAX_CONNS", "");
    get_values_row("GET_VALUES unknown name left out", P.s, P.n, 4294967295UL, 0,
                   "FCGI_MPXS_CONNS=0;FCGI_MAX_CONNS=4294967295;");
    reset();
    pair4(&P, "FCGI_MAX_REQS", 13, 1, "", 0, 1);
    get_values_row("GET_VALUES with 4-byte lengths", P.s, P.n, 1, 1, "FCGI_MAX_REQS=1;");
    get_values_row("GET_VALUES empty", "", 0, 1, 1, "");
    get_values_row("GET_VALUES only unknown", "\x03\x00" "ABC", 5, 1, 1, "");
    get_values_row("GET_VALUES truncated pair", "\x0e\x00" "FCGI_MAX", 10, 1, 1, NULL);
    get_values_row("GET_VALUES truncated length", "\x0e", 1, 1, 1, NULL);
    get_values_row("GET_VALUES 4-byte length past the end", "\x8e\x00\x00", 3, 1, 1, NULL);
    /* not said by §4.1 or the contract: either refused or answered empty */
    get_values_row("GET_VALUES empty name", "\x00\x00", 2, 1, 1, "?");
}

/* ------------------------------------------------------------------ */
/* STDIN decoder                                                       */
/* ------------------------------------------------------------------ */

#define END 0
#define ERROR 1

typedef struct {
    const char *name;
    const wbuf *in;
    unsigned id;
    int64_t expected;
    uint64_t max_body;
    int result;          /* END, INC, ERROR */
    int status;          /* ERROR: the error_status (0 for ABORT) */
    const char *body;    /* END, INC: the body */
    size_t body_len;
    size_t trail;        /* END: bytes after the stream end */
} scase;

static char sout[WB_MAX], strail[WB_MAX];

/* Decode in pieces ending at cuts[0..ncuts) (the last is the length). */
static const char *stdin_feed(const scase *c, const char *in, size_t len, const size_t *cuts,
                              size_t ncuts, size_t want_trail)
{
    static char msg[300];
    upy_fcgi_stdin_decoder d;
    size_t prev = 0, out_n = 0, i, trail_n = 0;
    ssize_t r = UPY_PARSE_INCOMPLETE;

    memset(&d, 0x5a, sizeof(d));
    upy_fcgi_stdin_init(&d, c->id, c->expected);
    for (i = 0; i < ncuts; i++) {
        size_t piece = cuts[i] - prev, l = piece;
        char *b = place(in + prev, piece);
        r = upy_fcgi_stdin_decode(&d, b, &l, c->max_body);
        if (l > piece) {
            snprintf(msg, sizeof(msg), "len grew to %zu from %zu", l, piece);
            return msg;
        }
        memcpy(sout + out_n, b, l);
        out_n += l;
        prev = cuts[i];
        if (r == UPY_PARSE_ERROR)
            break;
        if (r >= 0) {
            if ((size_t)r > piece - l) {
                snprintf(msg, sizeof(msg), "trailing %zd of %zu", r, piece - l);
                return msg;
            }
            memcpy(strail, b + l, (size_t)r);
            memcpy(strail + r, in + prev, len - prev);
            trail_n = (size_t)r + len - prev;
            break;
        }
        if (r != UPY_PARSE_INCOMPLETE) {
            snprintf(msg, sizeof(msg), "returned %zd", r);
            return msg;
        }
    }
    if (c->result == ERROR) {
        if (r != UPY_PARSE_ERROR || d.error_status != c->status || d.error_reason == NULL) {
            snprintf(msg, sizeof(msg), "want error %d, got %zd (status %d)", c->status, r,
                     d.error_status);
            return msg;
        }
        return NULL;
    }
    if ((c->result == END && r < 0) || (c->result == INC && r != INC)) {
        snprintf(msg, sizeof(msg), "want %s, got %zd (%d %s)", c->result == END ? "end" : "inc",
                 r, d.error_status, r == UPY_PARSE_ERROR ? d.error_reason : "");
        return msg;
    }
    if (out_n != c->body_len || memcmp(sout, c->body, out_n) || d.total != out_n) {
        snprintf(msg, sizeof(msg), "body: want %zu bytes, got %zu (total %" PRIu64 ")",
                 c->body_len, out_n, d.total);
        return msg;
    }
    if (c->result == END &&
        (trail_n != want_trail || memcmp(strail, in + len - want_trail, want_trail))) {
        snprintf(msg, sizeof(msg), "trailing: want %zu, got %zu", want_trail, trail_n);
        return msg;
    }
    return NULL;
}

static void test_stdin(const scase *c)
{
    static char tmp[WB_MAX + 64];
    static size_t cuts[WB_MAX + 64];
    static const char extra[] = "\x01\x01\x00\x02\x00\x08\x00\x00" "NEXTREQ!";
    size_t len = c->in->n, i, j;
    const char *why;

    cuts[0] = len;
    why = stdin_feed(c, c->in->b, len, cuts, 1, c->trail);
    check(why == NULL, c->name, "whole", "%s", why ? why : "");

    for (i = 0; i < len; i++)
        cuts[i] = i + 1;
    why = stdin_feed(c, c->in->b, len, cuts, len, c->trail);
    check(why == NULL, c->name, "bytewise", "%s", why ? why : "");

    for (i = 1; i < len; i++) {
        if (!sampled(i, len))
            continue;
        cuts[0] = i;
        cuts[1] = len;
        why = stdin_feed(c, c->in->b, len, cuts, 2, c->trail);
        if (why) {
            check(0, c->name, "split", "at %zu: %s", i, why);
            break;
        }
    }

    memcpy(tmp, c->in->b, len);
    memcpy(tmp + len, extra, sizeof(extra) - 1);
    j = len + sizeof(extra) - 1;
    cuts[0] = j;
    why = stdin_feed(c, tmp, j, cuts, 1,
                     c->result == END ? c->trail + sizeof(extra) - 1 : 0);
    if (c->result != INC)
        check(why == NULL, c->name, "trailing", "%s", why ? why : "");
}

#define SROW(...)                                                                                  \
    do {                                                                                           \
        scase c_ = {__VA_ARGS__};                                                                  \
        test_stdin(&c_);                                                                           \
    } while (0)
#define BODY(lit) lit, sizeof(lit) - 1

static void stdin_rows(void)
{
    reset();
    stdin_rec(&W, 1, "hello", 3);
    stdin_rec(&W, 1, "", 0);
    SROW("one record", &W, 1, -1, 0, END, 0, BODY("hello"), 0);
    SROW("one record, CONTENT_LENGTH 5", &W, 1, 5, 0, END, 0, BODY("hello"), 0);
    SROW("one record, max_body 5", &W, 1, -1, 5, END, 0, BODY("hello"), 0);
    SROW("one record, max_body 4", &W, 1, -1, 4, ERROR, 413, NULL, 0, 0);
    SROW("more body than CONTENT_LENGTH", &W, 1, 4, 0, ERROR, 400, NULL, 0, 0);
    SROW("the stream ends before CONTENT_LENGTH", &W, 1, 6, 0, ERROR, 400, NULL, 0, 0);
    SROW("another request's STDIN", &W, 2, -1, 0, ERROR, 400, NULL, 0, 0);

    reset();
    stdin_rec(&W, 9, "", 0);
    SROW("empty body", &W, 9, -1, 0, END, 0, BODY(""), 0);
    SROW("empty body, CONTENT_LENGTH 0", &W, 9, 0, 0, END, 0, BODY(""), 0);

    reset();
    stdin_rec(&W, 1, "ab", 0);
    stdin_rec(&W, 1, "c", 255);
    stdin_rec(&W, 1, "defgh", 7);
    stdin_rec(&W, 1, "", 200);
    SROW("records with padding 0..255, empty STDIN padded", &W, 1, 8, 0, END, 0,
         BODY("abcdefgh"), 0);

    reset();
    stdin_rec(&W, 1, "ab", 0);
    stdin_rec(&W, 1, "", 0);
    put(&W, "\x01\x01\x00\x02", 4);
    SROW("bytes after the stream end", &W, 1, -1, 0, END, 0, BODY("ab"), 4);

    reset();
    stdin_rec(&W, 1, "ab", 0);
    SROW("no end yet", &W, 1, -1, 0, INC, 0, BODY("ab"), 0);

    reset();
    stdin_rec(&W, 1, "ab", 0);
    rec(&W, UPY_FCGI_ABORT_REQUEST, 1, "", 0, 0);
    SROW("ABORT_REQUEST during the body", &W, 1, -1, 0, ERROR, 0, NULL, 0, 0);

    reset();
    rec(&W, UPY_FCGI_ABORT_REQUEST, 1, "", 0, 0);
    SROW("ABORT_REQUEST first", &W, 1, 10, 0, ERROR, 0, NULL, 0, 0);

    reset();
    stdin_rec(&W, 1, "ab", 0);
    rec(&W, UPY_FCGI_ABORT_REQUEST, 2, "", 0, 0);
    SROW("ABORT_REQUEST of another request", &W, 1, -1, 0, ERROR, 400, NULL, 0, 0);

    reset();
    stdin_rec(&W, 1, "ab", 0);
    rec(&W, UPY_FCGI_PARAMS, 1, "", 0, 0);
    SROW("PARAMS during the body", &W, 1, -1, 0, ERROR, 400, NULL, 0, 0);

    reset();
    stdin_rec(&W, 1, "ab", 0);
    rec(&W, UPY_FCGI_DATA, 1, "x", 1, 0);
    SROW("DATA during the body", &W, 1, -1, 0, ERROR, 400, NULL, 0, 0);

    reset();
    stdin_rec(&W, 1, "ab", 0);
    rec(&W, UPY_FCGI_GET_VALUES, 0, "", 0, 0);
    SROW("GET_VALUES during the body", &W, 1, -1, 0, ERROR, 400, NULL, 0, 0);

    reset();
    stdin_rec(&W, 1, "ab", 0);
    rec(&W, UPY_FCGI_STDIN, 2, "cd", 2, 0);
    SROW("STDIN of another request during the body", &W, 1, -1, 0, ERROR, 400, NULL, 0, 0);

    reset();
    stdin_rec(&W, 1, "ab", 0);
    rec_v(&W, 2, UPY_FCGI_STDIN, 1, "cd", 2, 0);
    SROW("version 2 during the body", &W, 1, -1, 0, ERROR, 400, NULL, 0, 0);

    reset();
    memset(big, 'b', 131070);
    rec(&W, UPY_FCGI_STDIN, 1, big, 65535, 1);
    rec(&W, UPY_FCGI_STDIN, 1, big, 65535, 0);
    stdin_rec(&W, 1, "", 0);
    SROW("two 65535-byte records", &W, 1, 131070, 0, END, 0, big, 131070, 0);
    /* max_body exact and one under */
    SROW("max_body exactly the body", &W, 1, -1, 131070, END, 0, big, 131070, 0);
    SROW("max_body one under the body", &W, 1, -1, 131069, ERROR, 413, NULL, 0, 0);
}

/* ------------------------------------------------------------------ */
/* SCGI                                                                */
/* ------------------------------------------------------------------ */

/* "LEN:" + block + "," in dst */
static size_t netstring(char *dst, const char *block, size_t n)
{
    int k = sprintf(dst, "%zu:", n);
    memcpy(dst + k, block, n);
    dst[(size_t)k + n] = ',';
    return (size_t)k + n + 1;
}

static char ns_buf[WB_MAX];

typedef struct {
    const char *name;
    const char *in;
    size_t len;
    int status;
    ssize_t consumed; /* OK: the head length; 0: the whole input */
    const char *spec;
    const char *vars; /* "NAME=VALUE\n" per var (NULL: not checked) */
    size_t max_head, max_fields;
    uint64_t limit_post;
    size_t err_by;
} ccase;

static void scgi_call(const ccase *c, const char *b, size_t len, upy_request *req, upy_field *f,
                      ssize_t *r, int *status)
{
    upy_limits lim = limits_of(c->max_head, c->max_fields, c->limit_post);
    memset(req, 0x5a, sizeof(*req));
    req->fields = f;
    req->fields_cap = FIELDS_CAP;
    *r = upy_scgi_parse_head(b, len, req, &lim);
    *status = *r >= 0 ? OK : *r == UPY_PARSE_ERROR ? req->error_status : INC;
}

static const char *scgi_judge(const ccase *c, const upy_request *req, ssize_t r, int status,
                              const char *b, size_t len)
{
    static char msg[600];
    ssize_t want_n = c->consumed ? c->consumed : (ssize_t)len;
    const char *why;
    size_t i;

    if (status != c->status) {
        snprintf(msg, sizeof(msg), "want %d, got %d (%s)", c->status, status,
                 r == UPY_PARSE_ERROR ? req->error_reason : "-");
        return msg;
    }
    if (status != OK)
        return req->error_reason ? NULL : "error without a reason";
    if (r != want_n) {
        snprintf(msg, sizeof(msg), "consumed: want %zd, got %zd", want_n, r);
        return msg;
    }
    if (req->proto != UPY_PROTO_SCGI || req->keep_alive || req->chunked)
        return "proto not SCGI, or keep_alive/chunked set";
    why = check_spec(req, NULL, c->spec);
    if (why)
        return why;
    why = check_vars(req, NULL, 0, b, (size_t)r);
    if (why || c->vars == NULL)
        return why;
    {
        const char *p = c->vars;
        for (i = 0; *p; i++) {
            const char *nl = strchr(p, '\n'), *eq = strchr(p, '=');
            const upy_field *f = &req->fields[i];
            if (i >= req->num_fields)
                return "too few vars";
            if (f->name.len != (size_t)(eq - p) || memcmp(f->name.p, p, f->name.len) ||
                f->value.len != (size_t)(nl - eq - 1) ||
                memcmp(f->value.p, eq + 1, f->value.len)) {
                snprintf(msg, sizeof(msg), "var %zu: want '%.*s', got '%.*s=%.*s'", i,
                         (int)(nl - p), p, (int)f->name.len, f->name.p, (int)f->value.len,
                         f->value.p);
                return msg;
            }
            p = nl + 1;
        }
        if (i != req->num_fields)
            return "too many vars";
    }
    return NULL;
}

static void test_scgi(const ccase *c)
{
    static char tmp[WB_MAX + 64];
    static const char body[] = "the body, then more";
    upy_field f[FIELDS_CAP];
    upy_request req;
    const char *why, *b;
    ssize_t r;
    int status;
    size_t i;

    b = place(c->in, c->len);
    scgi_call(c, b, c->len, &req, f, &r, &status);
    why = scgi_judge(c, &req, r, status, b, c->len);
    check(why == NULL, c->name, "whole", "%s", why ? why : "");

    for (i = 0; i < c->len; i++) {
        if (!sampled(i, c->len))
            continue;
        b = place(c->in, i);
        scgi_call(c, b, i, &req, f, &r, &status);
        if (!((status == INC && !(c->err_by && i >= c->err_by)) ||
              (c->status != OK && status == c->status))) {
            check(0, c->name, "prefix", "%zu: got %d", i, status);
            break;
        }
    }
    check(i == c->len, c->name, "prefixes", "stopped at %zu", i);

    memcpy(tmp, c->in, c->len);
    memcpy(tmp + c->len, body, sizeof(body) - 1);
    b = place(tmp, c->len + sizeof(body) - 1);
    scgi_call(c, b, c->len + sizeof(body) - 1, &req, f, &r, &status);
    {
        ccase t = *c;
        if (!t.consumed)
            t.consumed = (ssize_t)c->len;
        why = scgi_judge(&t, &req, r, status, b, c->len + sizeof(body) - 1);
        check(why == NULL, c->name, "trailing", "%s", why ? why : "");
    }
}

/* a raw input */
#define CROW(name, lit, ...)                                                                       \
    do {                                                                                           \
        ccase c_ = {name, lit, sizeof(lit) - 1, __VA_ARGS__};                                      \
        test_scgi(&c_);                                                                            \
    } while (0)


/* the netstring of a block literal */
#define NROW(name, block, ...)                                                                     \
    do {                                                                                           \
        ccase c_ = {name, ns_buf, netstring(ns_buf, block, sizeof(block) - 1), __VA_ARGS__};       \
        test_scgi(&c_);                                                                            \
    } while (0)

static void scgi_rows(void)
{
    static char blk[WB_MAX], ns[WB_MAX];
    size_t i, n, m;

#define CL0 "CONTENT_LENGTH\0" "0\0"
#define SCGI1 "SCGI\0" "1\0"
    /* the example of the SCGI protocol document, as written there */
    CROW("the SCGI document's example",
         "70:CONTENT_LENGTH\0" "27\0" "SCGI\0" "1\0" "REQUEST_METHOD\0" "POST\0"
         "REQUEST_URI\0" "/deepthought\0,",
         OK, 0, "m=POST t=/deepthought cl=27 nf=4 minor=1 head=0 https=0",
         "CONTENT_LENGTH=27\nSCGI=1\nREQUEST_METHOD=POST\nREQUEST_URI=/deepthought\n");
    NROW("nginx-like GET",
         CL0 SCGI1 "REQUEST_METHOD\0" "GET\0" "REQUEST_URI\0" "/p?a=1\0" "QUERY_STRING\0"
         "a=1\0" "PATH_INFO\0" "/p\0" "SERVER_PROTOCOL\0" "HTTP/1.0\0" "HTTPS\0" "on\0"
         "HTTP_HOST\0" "h\0",
         OK, 0, "m=GET t=/p?a=1 p=/p q=a=1 cl=0 minor=0 https=1 nf=9", NULL);
    NROW("HEAD, UWSGI_SCHEME https",
         CL0 SCGI1 "REQUEST_METHOD\0" "HEAD\0" "UWSGI_SCHEME\0" "https\0", OK, 0,
         "m=HEAD head=1 https=1 nf=4", NULL);
    NROW("an empty value", "CONTENT_LENGTH\0" "5\0" SCGI1 "X\0" "\0", OK, 0, "cl=5 nf=3",
         "CONTENT_LENGTH=5\nSCGI=1\nX=\n");
    NROW("SCGI=1 last", "CONTENT_LENGTH\0" "5\0" "X\0" "\0" SCGI1, OK, 0, "cl=5 nf=3", NULL);
    NROW("CONTENT_LENGTH with leading zeros is digits", "CONTENT_LENGTH\0" "007\0" SCGI1, OK, 0,
         "cl=7", NULL);
    NROW("bytes 1-255 in a value", "CONTENT_LENGTH\0" "0\0" SCGI1 "X\0" "\x01\xff\t\r,:\0", OK, 0,
         "nf=3", "CONTENT_LENGTH=0\nSCGI=1\nX=\x01\xff\t\r,:\n");

    /* the netstring */
    CROW("leading zero in the netstring length", "024:" CL0 SCGI1 ",", 400, 0, NULL, NULL,
         .err_by = 2);
    CROW("netstring length 0", "0:,", 400, 0, NULL, NULL);
    CROW("netstring not a number", "x4:CONTENT_LENGTH\0", 400, 0, NULL, NULL, .err_by = 1);
    CROW("netstring starting with ':'", ":CONTENT_LENGTH\0", 400, 0, NULL, NULL, .err_by = 1);
    CROW("netstring length then no ':'", "24;" CL0 SCGI1 ",", 400, 0, NULL, NULL, .err_by = 3);
    CROW("netstring length then a space", "24 :" CL0 SCGI1 ",", 400, 0, NULL, NULL,
         .err_by = 3);
    CROW("missing ','", "24:" CL0 SCGI1 ";", 400, 0, NULL, NULL);
    CROW("missing ',': the body starts", "24:" CL0 SCGI1 "body", 400, 0, NULL, NULL,
         .err_by = 28);
    CROW("netstring length over max_head", "25:" CL0 SCGI1 "\0,", 431, 0, NULL, NULL,
         .max_head = 24, .err_by = 3);
    CROW("netstring length at max_head", "24:" CL0 SCGI1 ",", OK, 0, "cl=0 nf=2", NULL,
         .max_head = 24);
    CROW("netstring length of 30 digits", "999999999999999999999999999999:", 431, 0, NULL, NULL);

    /* CONTENT_LENGTH */
    NROW("CONTENT_LENGTH not first", SCGI1 CL0, 400, 0, NULL, NULL);
    NROW("CONTENT_LENGTH repeated", "CONTENT_LENGTH\0" "5\0" SCGI1 "CONTENT_LENGTH\0" "\0", 400, 0,
         NULL, NULL);
    NROW("CONTENT_LENGTH repeated, same value", "CONTENT_LENGTH\0" "5\0" SCGI1
         "CONTENT_LENGTH\0" "5\0", 400, 0, NULL, NULL);
    NROW("SCGI repeated", "CONTENT_LENGTH\0" "5\0" SCGI1 SCGI1, 400, 0, NULL, NULL);
    NROW("another name repeated (nginx: a repeated header)", "CONTENT_LENGTH\0" "0\0" SCGI1
         "HTTP_X\0" "a\0" "HTTP_X\0" "b\0", OK, 0, "nf=4", NULL);
    NROW("CONTENT_LENGTH missing", SCGI1, 400, 0, NULL, NULL);
    NROW("CONTENT_LENGTH empty", "CONTENT_LENGTH\0" "\0" SCGI1, 400, 0, NULL, NULL);
    NROW("CONTENT_LENGTH letters", "CONTENT_LENGTH\0" "1a\0" SCGI1, 400, 0, NULL, NULL);
    NROW("CONTENT_LENGTH negative", "CONTENT_LENGTH\0" "-1\0" SCGI1, 400, 0, NULL, NULL);
    NROW("CONTENT_LENGTH space", "CONTENT_LENGTH\0" " 1\0" SCGI1, 400, 0, NULL, NULL);
    NROW("CONTENT_LENGTH overflow", "CONTENT_LENGTH\0" "99999999999999999999999\0" SCGI1, 400,
         0, NULL, NULL);
    NROW("CONTENT_LENGTH at limit-post", "CONTENT_LENGTH\0" "100\0" SCGI1, OK, 0, "cl=100",
         NULL, .limit_post = 100);
    NROW("CONTENT_LENGTH over limit-post", "CONTENT_LENGTH\0" "101\0" SCGI1, 413, 0, NULL, NULL,
         .limit_post = 100);
    NROW("content_length lowercase is not CONTENT_LENGTH", "content_length\0" "0\0" SCGI1, 400,
         0, NULL, NULL);

    /* SCGI=1 */
    NROW("no SCGI var", CL0, 400, 0, NULL, NULL);
    NROW("SCGI=0", CL0 "SCGI\0" "0\0", 400, 0, NULL, NULL);
    NROW("SCGI=11", CL0 "SCGI\0" "11\0", 400, 0, NULL, NULL);
    NROW("SCGI empty", CL0 "SCGI\0" "\0", 400, 0, NULL, NULL);
    NROW("scgi=1 lowercase", CL0 "scgi\0" "1\0", 400, 0, NULL, NULL);

    /* pairs */
    NROW("odd NUL count", CL0 "SCGI\0" "1", 400, 0, NULL, NULL);
    NROW("odd NUL count: a name without a value", CL0 SCGI1 "X\0", 400, 0, NULL, NULL);
    NROW("bytes after the last NUL", CL0 SCGI1 "X", 400, 0, NULL, NULL);
    NROW("an empty name", CL0 SCGI1 "\0" "v\0", 400, 0, NULL, NULL);
    NROW("a var over max_fields", CL0 SCGI1 "A\0" "\0", 431, 0, NULL, NULL, .max_fields = 2);
    NROW("max_fields vars exactly", CL0 SCGI1 "A\0" "\0", OK, 0, "nf=3", NULL, .max_fields = 3);
    CROW("HTTP on an SCGI socket", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, 0, NULL, NULL,
         .err_by = 1);
#undef CL0
#undef SCGI1

    /* long heads: one 60000-byte value; fields_cap vars */
#define HEAD0 "CONTENT_LENGTH\0" "3\0" "SCGI\0" "1\0" "BIG\0"
    memcpy(blk, HEAD0, sizeof(HEAD0) - 1);
    n = sizeof(HEAD0) - 1;
#undef HEAD0
    memset(blk + n, 'v', 60000);
    n += 60000;
    blk[n++] = '\0';
    m = netstring(ns, blk, n);
    {
        ccase c = {"a 60000-byte value", ns, m, OK, 0, "cl=3 nf=3", NULL};
        test_scgi(&c);
        c.name = "a 60000-byte value, max_head 60000";
        c.status = 431;
        c.max_head = 60000;
        c.err_by = 6;
        test_scgi(&c);
    }
#define HEAD0 "CONTENT_LENGTH\0" "0\0" "SCGI\0" "1\0"
    memcpy(blk, HEAD0, sizeof(HEAD0) - 1);
    n = sizeof(HEAD0) - 1;
#undef HEAD0
    for (i = 0; i < FIELDS_CAP - 2; i++) {
        n += (size_t)sprintf(blk + n, "HTTP_X_%zu", i) + 1;
        n += (size_t)sprintf(blk + n, "%zu", i) + 1;
    }
    m = netstring(ns, blk, n);
    {
        ccase c = {"fields_cap vars", ns, m, OK, 0, "nf=64", NULL};
        test_scgi(&c);
        c.name = "fields_cap vars, max_fields 63";
        c.status = 431;
        c.max_fields = 63;
        c.spec = NULL;
        test_scgi(&c);
    }
}

/* ------------------------------------------------------------------ */
/* a head, then its body: the two decoders together                    */
/* ------------------------------------------------------------------ */

/* The head (whole input up to `head_len`) decodes with `spec`; the rest,
   given to the STDIN decoder of the request, gives `result`/`status`. */
static void head_then_body(const char *name, const wbuf *w, size_t head_len, const char *spec,
                           int result, int status, const char *body, size_t trail)
{
    fcase c = {name, w, OK, (ssize_t)head_len, spec};
    static fres o;
    static wbuf rest;
    const char *why;
    char *b = place(w->b, w->n);

    fcgi_call(&c, b, w->n, &o);
    why = fcgi_judge(&c, &o, b, w->n);
    check(why == NULL, name, "head", "%s", why ? why : "");
    if (why)
        return;
    rest.n = 0;
    put(&rest, w->b + head_len, w->n - head_len);
    {
        scase sc = {name, &rest, o.h.request_id, o.req.content_length, 0, result, status, body,
                    body ? strlen(body) : 0, trail};
        test_stdin(&sc);
    }
}

static void fcgi_head_and_body(void)
{
    size_t n;

    reset();
    pair(&P, "CONTENT_LENGTH", "11");
    begin(&W, 2, 1, 1);
    params(&W, 2, P.s, P.n, 0, 1);
    n = W.n;
    stdin_rec(&W, 2, "hello", 3);
    stdin_rec(&W, 2, " world", 0);
    stdin_rec(&W, 2, "", 0);
    begin(&W, 3, 1, 1); /* the next request on the connection */
    head_then_body("POST, then the next request", &W, n, "ch=1 cl=11 kc=1", END, 0,
                   "hello world", 16);

    reset();
    pair(&P, "A", "1");
    begin(&W, 2, 1, 0);
    params(&W, 2, P.s, P.n, 0, 0);
    n = W.n;
    rec(&W, UPY_FCGI_ABORT_REQUEST, 2, "", 0, 0);
    head_then_body("ABORT_REQUEST right after the params", &W, n, "ch=1 se=0", ERROR, 0, NULL,
                   0);

    reset();
    pair(&P, "A", "1");
    begin(&W, 2, 1, 0);
    params(&W, 2, P.s, P.n, 0, 0);
    n = W.n;
    rec(&W, UPY_FCGI_STDIN, 3, "", 0, 0);
    head_then_body("another request's empty STDIN after the params", &W, n, "ch=1 se=0", ERROR,
                   400, NULL, 0);

    reset();
    pair(&P, "A", "1");
    begin(&W, 2, 1, 0);
    params(&W, 2, P.s, P.n, 0, 0);
    n = W.n;
    rec(&W, UPY_FCGI_GET_VALUES, 0, "", 0, 0);
    head_then_body("GET_VALUES after the params", &W, n, "ch=1 se=0", ERROR, 400, NULL, 0);

    reset();
    pair(&P, "CONTENT_LENGTH", "0");
    begin(&W, 2, 1, 0);
    params(&W, 2, P.s, P.n, 0, 0);
    n = W.n;
    stdin_rec(&W, 2, "x", 0);
    stdin_rec(&W, 2, "", 0);
    head_then_body("CONTENT_LENGTH 0 and a body", &W, n, "ch=1 cl=0", ERROR, 400, NULL, 0);
}

int main(void)
{
    guard_init();
    fcgi_rows();
    fcgi_get_values_content();
    fcgi_records();
    fcgi_get_values();
    stdin_rows();
    fcgi_head_and_body();
    scgi_rows();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
