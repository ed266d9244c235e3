/*
 * libFuzzer harness for upy_http_parse_request.
 *
 * Invariant: never crashes and never reads past len (the input is an exact
 * heap copy, so ASan flags any over-read); returns a head length in
 * (0, len], UPY_PARSE_INCOMPLETE, or UPY_PARSE_ERROR with a status in
 * {400, 413, 414, 431, 501, 505} and a reason; on success every slice lies
 * inside the consumed head, num_fields <= min(max_fields, fields_cap), the
 * request line and every field line are within their limits, the target
 * form fits the method (authority-form exactly for CONNECT, which never
 * keeps the connection), and no singleton field (Host, Content-Type,
 * Authorization, ...) is stored twice; the result is the same whether the
 * input comes whole or byte by byte (with last_len), parsing exactly the
 * consumed prefix gives the same head length, and turning the line limits
 * off never turns a success into a failure.
 */
#include "upy_parse.h"

#include <stdlib.h>
#include <string.h>

#define CAP 16
#define MAX_FIELDS 12
#define MAX_LINE 200
#define MAX_FIELD 100

static int lower_eq(const upy_str *s, const char *lit)
{
    return upy_lower_eq(s->p, s->len, lit, strlen(lit));
}

/* The success-only invariants of the header comment. */
static void check_success(const char *buf, size_t r, const upy_request *req,
                          const upy_field *f, const upy_limits *lim)
{
    static const char *const singletons[] = {
        "host", "content-type", "authorization", "proxy-authorization", "user-agent",
        "range", "if-range", "referer", "date", "from", "max-forwards",
        "if-modified-since", "if-unmodified-since", "content-range", "content-location",
    };
    const char *cr;
    size_t i, k, j;
    int connect;

    if (req->num_fields > lim->max_fields || req->method.len == 0)
        abort();
    /* request line: from the method to its CR */
    cr = memchr(req->method.p, '\r', (size_t)(buf + r - req->method.p));
    if (cr == NULL || (lim->max_request_line && (size_t)(cr - req->method.p) > lim->max_request_line))
        abort();
    for (i = 0; i < req->num_fields; i++) {
        const char *vend = f[i].value.p + f[i].value.len;
        if (f[i].name.len == 0 || vend < f[i].name.p)
            abort();
        cr = memchr(vend, '\r', (size_t)(buf + r - vend));
        if (cr == NULL || (lim->max_field_size && (size_t)(cr - f[i].name.p) > lim->max_field_size))
            abort();
    }
    connect = req->method.len == 7 && memcmp(req->method.p, "CONNECT", 7) == 0;
    if (connect) {
        if (req->path.len != 0 || req->query.len != 0 || req->keep_alive ||
            memchr(req->target.p, ':', req->target.len) == NULL)
            abort();
    } else if (req->target.p[0] != '/' &&
               !(req->target.len == 1 && req->target.p[0] == '*') &&
               !(req->target.len > 7 && upy_lower_eq(req->target.p, 7, "http://", 7)) &&
               !(req->target.len > 8 && upy_lower_eq(req->target.p, 8, "https://", 8))) {
        abort();
    }
    for (k = 0; k < sizeof(singletons) / sizeof(singletons[0]); k++) {
        int seen = 0;
        for (j = 0; j < req->num_fields; j++)
            seen += lower_eq(&f[j].name, singletons[k]);
        if (seen > 1)
            abort();
    }
}

static void in_bounds(upy_str s, const char *buf, size_t len)
{
    if (s.len == 0)
        return;
    if (s.p < buf || s.p > buf + len || s.len > (size_t)(buf + len - s.p))
        abort();
}

static ssize_t parse(const char *buf, size_t len, size_t last, upy_request *req,
                     upy_field *f, const upy_limits *lim)
{
    ssize_t r;
    size_t i;

    memset(req, 0x5a, sizeof(*req));
    req->fields = f;
    req->fields_cap = CAP;
    r = upy_http_parse_request(buf, len, last, req, lim);
    if (r == UPY_PARSE_ERROR) {
        int s = req->error_status;
        if ((s != 400 && s != 413 && s != 414 && s != 431 && s != 501 && s != 505) ||
            req->error_reason == NULL)
            abort();
    } else if (r != UPY_PARSE_INCOMPLETE) {
        if (r <= 0 || (size_t)r > len || req->num_fields > CAP)
            abort();
        in_bounds(req->method, buf, (size_t)r);
        in_bounds(req->target, buf, (size_t)r);
        in_bounds(req->path, buf, (size_t)r);
        in_bounds(req->query, buf, (size_t)r);
        for (i = 0; i < req->num_fields; i++) {
            in_bounds(f[i].name, buf, (size_t)r);
            in_bounds(f[i].value, buf, (size_t)r);
        }
        check_success(buf, (size_t)r, req, f, lim);
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    upy_field f[CAP];
    upy_request req;
    /* small limits so the 413/414/431 paths are reachable */
    const upy_limits lim = {.max_head = 1024, .max_fields = MAX_FIELDS, .limit_post = 1000,
                            .max_request_line = MAX_LINE, .max_field_size = MAX_FIELD};
    upy_limits nolines = lim;
    char *buf = malloc(size ? size : 1);
    ssize_t whole, r = UPY_PARSE_INCOMPLETE;
    int whole_status;
    size_t i, last = 0;

    memcpy(buf, data, size);
    whole = parse(buf, size, 0, &req, f, &lim);
    whole_status = req.error_status;

    /* byte by byte: the first non-incomplete answer must be the whole one,
     * except that an error may come earlier than the whole input's success
     * never does */
    for (i = 0; i <= size; i++) {
        char *b = malloc(i ? i : 1);
        memcpy(b, data, i);
        r = parse(b, i, last, &req, f, &lim);
        free(b);
        last = i;
        if (r != UPY_PARSE_INCOMPLETE)
            break;
    }
    if (whole >= 0 && r != whole)
        abort();
    if (whole == UPY_PARSE_ERROR && (r != UPY_PARSE_ERROR || req.error_status != whole_status))
        abort();
    if (whole == UPY_PARSE_INCOMPLETE && r != UPY_PARSE_INCOMPLETE)
        abort();

    if (whole > 0 && parse(buf, (size_t)whole, 0, &req, f, &lim) != whole)
        abort();
    /* without line limits (only max_head): what passed still passes */
    nolines.max_request_line = 0;
    nolines.max_field_size = 0;
    r = parse(buf, size, 0, &req, f, &nolines);
    if (whole >= 0 && r != whole)
        abort();
    free(buf);
    return 0;
}
