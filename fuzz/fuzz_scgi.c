/*
 * libFuzzer harness for upy_scgi_parse_head.
 *
 * Invariant: never crashes and never reads past len (the input is an exact
 * heap copy); returns a head length within the input, incomplete, or an
 * error with a status in {400, 413, 431} and a reason; no prefix of the
 * input (half of it, all but one byte) decides otherwise than the whole.
 * On success: proto SCGI, keep_alive 0, at most the cap of vars, the first
 * CONTENT_LENGTH with digits only (the request's content_length), one SCGI
 * with value "1", no empty name, and re-encoding the vars as a netstring
 * ("LEN:" name NUL value NUL ... ",") reproduces the head exactly.
 */
#include "upy_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP 64

static const upy_limits lim = {.max_head = 4096, .max_fields = 48, .limit_post = 100000};

static ssize_t parse(const uint8_t *data, size_t size, upy_request *req, upy_field *f)
{
    char *buf = malloc(size ? size : 1);
    ssize_t r;
    memcpy(buf, data, size);
    memset(req, 0x5a, sizeof(*req));
    req->fields = f;
    req->fields_cap = CAP;
    r = upy_scgi_parse_head(buf, size, req, &lim);
    if (r == UPY_PARSE_ERROR) {
        if ((req->error_status != 400 && req->error_status != 413 &&
             req->error_status != 431) || req->error_reason == NULL)
            abort();
    }
    else if (r != UPY_PARSE_INCOMPLETE && (r <= 0 || (size_t)r > size))
        abort();
    /* the slices point into buf: compare them before it goes */
    if (r > 0) {
        char *re = malloc((size_t)r + 32);
        size_t n = 0, blk = 0, i;
        int scgi = 0, k;
        for (i = 0; i < req->num_fields; i++)
            blk += f[i].name.len + f[i].value.len + 2;
        n = (size_t)sprintf(re, "%zu:", blk);
        for (i = 0; i < req->num_fields; i++) {
            const upy_str *s[2] = {&f[i].name, &f[i].value};
            if (f[i].name.len == 0)
                abort();
            for (k = 0; k < 2; k++) {
                if (s[k]->len && (s[k]->p < buf || s[k]->len > (size_t)(buf + r - s[k]->p)))
                    abort();
                if (s[k]->len + 1 > (size_t)r + 32 - n)
                    abort();
                memcpy(re + n, s[k]->p, s[k]->len);
                n += s[k]->len;
                re[n++] = '\0';
            }
            if (f[i].name.len == 4 && !memcmp(f[i].name.p, "SCGI", 4)) {
                if (f[i].value.len != 1 || f[i].value.p[0] != '1')
                    abort();
                scgi++;
            }
        }
        if (n + 1 > (size_t)r + 32)
            abort();
        re[n++] = ',';
        if (n != (size_t)r || memcmp(re, data, n) != 0)
            abort();
        if (req->num_fields == 0 || req->num_fields > 48 || scgi == 0 ||
            req->proto != UPY_PROTO_SCGI || req->keep_alive ||
            f[0].name.len != 14 || memcmp(f[0].name.p, "CONTENT_LENGTH", 14) != 0 ||
            f[0].value.len == 0)
            abort();
        for (i = 0; i < f[0].value.len; i++)
            if (f[0].value.p[i] < '0' || f[0].value.p[i] > '9')
                abort();
        free(re);
    }
    free(buf);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    upy_field f[CAP], g[CAP];
    upy_request req, part;
    ssize_t r = parse(data, size, &req, f), p;
    size_t cuts[2] = {size / 2, size ? size - 1 : 0}, i;

    for (i = 0; i < 2; i++) {
        p = parse(data, cuts[i], &part, g);
        if (p != UPY_PARSE_INCOMPLETE &&
            (p != r || (p == UPY_PARSE_ERROR && part.error_status != req.error_status) ||
             (p >= 0 && part.num_fields != req.num_fields)))
            abort();
    }
    return 0;
}
