/*
 * libFuzzer harness for upy_proxy_parse (PROXY protocol v1 and v2).
 *
 * Invariant: never crashes and never reads past size (the input is an exact
 * heap copy); returns a header length in 1..size, 0, INCOMPLETE or ERROR
 * (with a reason).  Determinism and prefixes: parsing any prefix of the
 * input never gives a different header length, and a decided result (0,
 * ERROR, or a length) on a prefix stays the same on the whole input; a
 * header found has family 0, 4 or 6 and NUL-terminated addresses.
 */
#include "upy_proxy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    upy_proxy_info info, pinfo;
    char *buf = malloc(size ? size : 1);
    ssize_t rc;

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    rc = upy_proxy_parse(buf, size, &info);
    if (rc == UPY_PARSE_ERROR) {
        if (info.error == NULL)
            abort();
    }
    else if (rc > 0) {
        if ((size_t)rc > size ||
            (info.family != 0 && info.family != 4 && info.family != 6) ||
            memchr(info.src_addr, '\0', sizeof info.src_addr) == NULL ||
            memchr(info.dst_addr, '\0', sizeof info.dst_addr) == NULL)
            abort();
    }
    else if (rc != 0 && rc != UPY_PARSE_INCOMPLETE) {
        abort();
    }
    /* A shorter prefix never decides differently. */
    for (size_t n = size > 64 ? size - 64 : 0; n < size; n++) {
        char *p = malloc(n ? n : 1);
        ssize_t prc;
        if (p == NULL)
            break;
        memcpy(p, data, n);
        prc = upy_proxy_parse(p, n, &pinfo);
        free(p);
        if (prc == UPY_PARSE_INCOMPLETE)
            continue;
        if (prc != rc)
            abort();
    }
    free(buf);
    return 0;
}
