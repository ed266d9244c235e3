/*
 * libFuzzer harness for the FastCGI decoder: upy_fcgi_parse_head,
 * upy_fcgi_parse_params, upy_fcgi_stdin_decode, upy_fcgi_get_values_result.
 *
 * Invariant: never crashes and never reads past len (the input is an exact
 * heap copy); the head decoder returns a count within the input,
 * incomplete, or an error with a status in {400, 413, 431} and a reason;
 * no prefix of the input (half of it, all but one byte) decides otherwise
 * than the whole.  On a head: role responder, keep_alive = keep_conn,
 * chunked = !stdin_ended, at most the cap of vars, every var and the
 * PARAMS block inside the head, the block at most max_head bytes, equal to
 * the PARAMS records' content concatenated (walked here from the original
 * input) and decoding again to the same vars; not compacted, a second call gives the
 * same.  When a body follows, the STDIN decoder gives the same body,
 * trailing bytes and status whole and in pieces (their size from the input
 * length), never more body than input.  GET_VALUES: the content lies in
 * the record and the answer, when there is one, is a GET_VALUES_RESULT
 * record of the length returned.  Other actions: one record.
 */
#include "upy_parse.h"

#include <stdlib.h>
#include <string.h>

#define CAP 64

static const upy_limits lim = {.max_head = 4096, .max_fields = 48, .limit_post = 1000};

typedef struct {
    ssize_t r;
    int status;
    upy_fcgi_head h;
    upy_request req;
    upy_field f[CAP];
} head_out;

static void head(char *buf, size_t len, head_out *o)
{
    memset(&o->req, 0x5a, sizeof(o->req));
    memset(&o->h, 0x5a, sizeof(o->h));
    o->req.fields = o->f;
    o->req.fields_cap = CAP;
    o->r = upy_fcgi_parse_head(buf, len, &o->req, &lim, &o->h);
    o->status = o->r == UPY_PARSE_ERROR ? o->req.error_status : 0;
    if (o->r == UPY_PARSE_ERROR) {
        if ((o->status != 400 && o->status != 413 && o->status != 431) ||
            o->req.error_reason == NULL)
            abort();
    }
    else if (o->r != UPY_PARSE_INCOMPLETE && (o->r <= 0 || (size_t)o->r > len))
        abort();
}

/* A prefix is incomplete or decides as the whole does. */
static void prefix_agrees(const uint8_t *data, size_t n, const head_out *whole)
{
    char *p = malloc(n ? n : 1);
    head_out *o = malloc(sizeof *o);
    memcpy(p, data, n);
    head(p, n, o);
    if (o->r != UPY_PARSE_INCOMPLETE &&
        (o->r != whole->r || o->status != whole->status ||
         (o->r >= 0 && (o->h.action != whole->h.action ||
                        o->req.num_fields != whole->req.num_fields))))
        abort();
    free(o);
    free(p);
}

typedef struct {
    ssize_t r;
    int status;
    size_t out_len, trail_len;
    char *out, *trail;
} body_out;

static void body(const uint8_t *data, size_t size, size_t step, unsigned id, int64_t expected,
                 body_out *o)
{
    upy_fcgi_stdin_decoder d;
    size_t pos = 0;

    upy_fcgi_stdin_init(&d, id, expected);
    o->out = malloc(size + 1);
    o->trail = malloc(size + 1);
    o->out_len = o->trail_len = 0;
    o->status = -1;
    for (;;) {
        size_t n = size - pos < step ? size - pos : step, len = n;
        char *b = malloc(n ? n : 1);
        ssize_t r;
        memcpy(b, data + pos, n);
        r = upy_fcgi_stdin_decode(&d, b, &len, 2000);
        if (len > n)
            abort();
        memcpy(o->out + o->out_len, b, len);
        o->out_len += len;
        pos += n;
        o->r = r;
        if (r == UPY_PARSE_ERROR) {
            if ((d.error_status != 0 && d.error_status != 400 && d.error_status != 413) ||
                d.error_reason == NULL)
                abort();
            o->status = d.error_status;
            free(b);
            return;
        }
        if (r >= 0) {
            if ((size_t)r > n - len || d.total != o->out_len)
                abort();
            memcpy(o->trail, b + len, (size_t)r);
            memcpy(o->trail + r, data + pos, size - pos);
            o->trail_len = (size_t)r + size - pos;
            free(b);
            return;
        }
        free(b);
        if (r != UPY_PARSE_INCOMPLETE)
            abort();
        if (pos == size)
            return;
    }
}

static void check_body(const uint8_t *data, size_t size, const head_out *w)
{
    body_out a, b;
    body(data, size, size ? size : 1, w->h.request_id, w->req.content_length, &a);
    body(data, size, size % 13 + 1, w->h.request_id, w->req.content_length, &b);
    if ((a.r >= 0) != (b.r >= 0) || (a.r < 0 && a.r != b.r) || a.status != b.status)
        abort();
    if (a.r != UPY_PARSE_ERROR &&
        (a.out_len != b.out_len || memcmp(a.out, b.out, a.out_len) != 0))
        abort();
    if (a.r >= 0 && (a.trail_len != b.trail_len || memcmp(a.trail, b.trail, a.trail_len) != 0))
        abort();
    if (a.out_len > size || (w->req.content_length >= 0 && a.r >= 0 &&
                             a.out_len != (size_t)w->req.content_length))
        abort();
    free(a.out);
    free(a.trail);
    free(b.out);
    free(b.trail);
}

/* The content of the PARAMS records after the BEGIN_REQUEST at data[0..n),
   through the empty one, concatenated into out; its length, or -1. */
static ssize_t concat_params(const uint8_t *data, size_t n, char *out)
{
    size_t off = UPY_FCGI_HEADER_LEN + 8 + data[6], len = 0;
    for (;;) {
        size_t cl, pad;
        if (off > n || UPY_FCGI_HEADER_LEN > n - off)
            return -1;
        cl = (size_t)data[off + 4] << 8 | data[off + 5];
        pad = data[off + 6];
        if (data[off + 1] != UPY_FCGI_PARAMS)
            return -1;
        if (cl == 0)
            return (ssize_t)len;
        if (cl > n - off - UPY_FCGI_HEADER_LEN)
            return -1;
        memcpy(out + len, data + off + UPY_FCGI_HEADER_LEN, cl);
        len += cl;
        off += UPY_FCGI_HEADER_LEN + cl + pad;
    }
}

static void check_head(char *buf, const uint8_t *data, size_t size, head_out *w)
{
    char *cat = malloc(size ? size : 1);
    ssize_t catn = concat_params(data, (size_t)w->r, cat);

    if (catn < 0 || (size_t)catn != w->h.params_len ||
        memcmp(cat, buf + w->h.params_off, w->h.params_len) != 0)
        abort();
    free(cat);
    {
    const char *end = buf + w->r;
    size_t i;
    upy_request req;
    upy_field f[CAP];

    if (w->h.role != UPY_FCGI_RESPONDER || w->req.proto != UPY_PROTO_FASTCGI ||
        w->req.keep_alive != w->h.keep_conn || w->req.chunked == w->h.stdin_ended ||
        w->req.num_fields > 48 || w->h.params_len > lim.max_head ||
        w->h.params_off > (size_t)w->r || w->h.params_len > (size_t)w->r - w->h.params_off)
        abort();
    for (i = 0; i < w->req.num_fields; i++) {
        const upy_str *s[2] = {&w->f[i].name, &w->f[i].value};
        int k;
        if (w->f[i].name.len == 0)
            abort();
        for (k = 0; k < 2; k++)
            if (s[k]->len && (s[k]->p < buf || s[k]->len > (size_t)(end - s[k]->p)))
                abort();
    }
    memset(&req, 0x5a, sizeof(req));
    req.fields = f;
    req.fields_cap = CAP;
    if (upy_fcgi_parse_params(buf + w->h.params_off, w->h.params_len, &req, &lim) != 0 ||
        req.num_fields != w->req.num_fields || req.content_length != w->req.content_length)
        abort();
    for (i = 0; i < req.num_fields; i++)
        if (f[i].name.len != w->f[i].name.len || f[i].value.len != w->f[i].value.len ||
            memcmp(f[i].name.p, w->f[i].name.p, f[i].name.len) ||
            (f[i].value.len && memcmp(f[i].value.p, w->f[i].value.p, f[i].value.len)))
            abort();
    if (!w->h.compacted) {
        head_out *again = malloc(sizeof *again);
        head(buf, size, again);
        if (again->r != w->r || again->h.action != w->h.action)
            abort();
        free(again);
    }
    if (w->req.chunked)
        check_body(data + w->r, size - (size_t)w->r, w);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    head_out *w = malloc(sizeof *w);

    memcpy(buf, data, size);
    head(buf, size, w);
    prefix_agrees(data, size / 2, w);
    if (size)
        prefix_agrees(data, size - 1, w);
    if (w->r > 0) {
        switch (w->h.action) {
        case UPY_FCGI_DO_HEAD:
            check_head(buf, data, size, w);
            break;
        case UPY_FCGI_DO_GET_VALUES: {
            char out[1024];
            ssize_t n;
            upy_fcgi_record rr;
            if (w->h.content_len &&
                (w->h.content != buf + UPY_FCGI_HEADER_LEN ||
                 w->h.content_len > (size_t)w->r - UPY_FCGI_HEADER_LEN))
                abort();
            n = upy_fcgi_get_values_result(w->h.content, w->h.content_len, 100, 200, out,
                                           sizeof(out));
            if (n != -1) {
                if (n < UPY_FCGI_HEADER_LEN || (size_t)n > sizeof(out) ||
                    upy_fcgi_parse_record((const unsigned char *)out, (size_t)n, &rr) !=
                        UPY_FCGI_HEADER_LEN ||
                    rr.version != 1 || rr.type != UPY_FCGI_GET_VALUES_RESULT ||
                    rr.request_id != 0 ||
                    (size_t)n != UPY_FCGI_HEADER_LEN + (size_t)rr.content_length +
                                     rr.padding_length)
                    abort();
            }
            break;
        }
        case UPY_FCGI_DO_SKIP:
        case UPY_FCGI_DO_UNKNOWN:
        case UPY_FCGI_DO_BAD_ROLE:
            if ((size_t)w->r > UPY_FCGI_HEADER_LEN + UPY_FCGI_MAX_CONTENT + 255)
                abort();
            break;
        default:
            abort();
        }
    }
    free(w);
    free(buf);
    return 0;
}
