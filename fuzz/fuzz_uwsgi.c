/*
 * libFuzzer harness for upy_uwsgi_parse_header / upy_uwsgi_parse_vars.
 *
 * Invariant: never crashes and never reads past datasize (the vars block is
 * an exact heap copy); returns 0 or UPY_PARSE_ERROR with a status in
 * {400, 413, 431} and a reason; on success every var lies inside the block
 * and re-encoding the vars (u16-LE lengths) reproduces the block exactly.
 */
#include "upy_parse.h"

#include <stdlib.h>
#include <string.h>

#define CAP 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    upy_uwsgi_header h;
    upy_field f[CAP];
    upy_request req;
    const upy_limits lim = {.max_head = 65535, .max_fields = 48, .limit_post = 1000};
    char *vars, *re;
    size_t ds, i, n = 0;
    int r;

    upy_uwsgi_looks_like_http((const char *)data, size);
    r = upy_uwsgi_parse_header(data, size, &h);
    if (size < 4) {
        if (r != UPY_PARSE_INCOMPLETE)
            abort();
        return 0;
    }
    if (r != 4)
        abort();
    /* use the rest of the input as the vars block, whatever datasize says:
     * the fuzzer then controls the block exactly */
    ds = size - 4;
    vars = malloc(ds ? ds : 1);
    memcpy(vars, data + 4, ds);
    memset(&req, 0x5a, sizeof(req));
    req.fields = f;
    req.fields_cap = CAP;
    r = upy_uwsgi_parse_vars(vars, ds, &req, &lim);
    if (r == UPY_PARSE_ERROR) {
        if ((req.error_status != 400 && req.error_status != 413 &&
             req.error_status != 431) || req.error_reason == NULL)
            abort();
        free(vars);
        return 0;
    }
    if (r != 0 || req.num_fields > 48 || req.proto != UPY_PROTO_UWSGI)
        abort();
    re = malloc(ds ? ds : 1);
    for (i = 0; i < req.num_fields; i++) {
        const upy_str *s[2] = {&f[i].name, &f[i].value};
        int k;
        for (k = 0; k < 2; k++) {
            if (s[k]->len && (s[k]->p < vars || s[k]->len > (size_t)(vars + ds - s[k]->p)))
                abort();
            if (2 + s[k]->len > ds - n)
                abort();
            re[n++] = (char)(s[k]->len & 0xff);
            re[n++] = (char)(s[k]->len >> 8);
            memcpy(re + n, s[k]->p, s[k]->len);
            n += s[k]->len;
        }
    }
    if (n != ds || memcmp(re, vars, ds) != 0)
        abort();
    free(re);
    free(vars);
    return 0;
}
