/*
 * libFuzzer harness for upy_http_parse_request.
 *
 * Invariant: never crashes and never reads past len (the input is an exact
 * heap copy, so ASan flags any over-read); returns a head length in
 * (0, len], UPY_PARSE_INCOMPLETE, or UPY_PARSE_ERROR with a status in
 * {400, 413, 431, 501, 505} and a reason; every slice lies inside the
 * input; num_fields <= fields_cap; the result is the same whether the input
 * comes whole or byte by byte (with last_len), and parsing exactly the
 * consumed prefix gives the same head length.
 */
#include "upy_parse.h"

#include <stdlib.h>
#include <string.h>

#define CAP 16

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
        if ((s != 400 && s != 413 && s != 431 && s != 501 && s != 505) ||
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
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    upy_field f[CAP];
    upy_request req;
    /* small limits so 431/413 paths are reachable */
    const upy_limits lim = {1024, 12, 1000};
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
    free(buf);
    return 0;
}
