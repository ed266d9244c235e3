/*
 * libFuzzer harness for upy_chunked_decode.
 *
 * Invariant: never crashes, never touches bytes outside buf[0..*len); an
 * error is 400 with a reason (there is no max_body here, so never 413); the
 * decoded output never exceeds the input; the outcome (complete with the
 * same decoded body and the same trailing bytes / incomplete / error with
 * the same status) does not depend on how the input is split into calls:
 * the input is decoded whole and again in pieces whose sizes come from the
 * first input byte.
 */
#include "upy_parse.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    ssize_t r;
    int status;
    size_t out_len, trail_len;
    char *out, *trail;
} outcome;

static void decode(const uint8_t *data, size_t size, size_t step, outcome *o)
{
    upy_chunked_decoder d;
    size_t pos = 0;

    upy_chunked_init(&d);
    o->out = malloc(size + 1);
    o->trail = malloc(size + 1);
    o->out_len = o->trail_len = 0;
    o->status = 0;
    for (;;) {
        size_t n = size - pos < step ? size - pos : step, len = n;
        char *b = malloc(n ? n : 1);
        ssize_t r;
        memcpy(b, data + pos, n);
        r = upy_chunked_decode(&d, b, &len, 0 /* no max_body */);
        if (len > n)
            abort();
        memcpy(o->out + o->out_len, b, len);
        o->out_len += len;
        pos += n;
        o->r = r;
        if (r == UPY_PARSE_ERROR) {
            if (d.error_status != 400 || d.error_reason == NULL)
                abort();
            o->status = d.error_status;
            free(b);
            return;
        }
        if (r >= 0) {
            if ((size_t)r > n - len)
                abort();
            memcpy(o->trail, b + len, (size_t)r);
            memcpy(o->trail + r, data + pos, size - pos);
            o->trail_len = (size_t)r + size - pos;
            if (d.total != o->out_len)
                abort();
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    outcome a, b;
    size_t step;

    if (size < 1)
        return 0;
    step = (size_t)(data[0] % 17) + 1;
    data++;
    size--;
    decode(data, size, size ? size : 1, &a);
    decode(data, size, step, &b);
    if ((a.r >= 0) != (b.r >= 0) || (a.r < 0 && a.r != b.r) || a.status != b.status)
        abort();
    if (a.r != UPY_PARSE_ERROR &&
        (a.out_len != b.out_len || memcmp(a.out, b.out, a.out_len) != 0))
        abort();
    if (a.r >= 0 && (a.trail_len != b.trail_len || memcmp(a.trail, b.trail, a.trail_len) != 0))
        abort();
    if (a.out_len > size)
        abort();
    free(a.out); free(a.trail); free(b.out); free(b.trail);
    return 0;
}
