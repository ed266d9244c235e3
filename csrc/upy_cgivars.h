/*
 * upy_cgivars.h - storing one CGI var (uwsgi, FastCGI, SCGI): inline, as
 * it runs once per var of every request (upy_cgivars.c has the rest).
 * Pure C, like upy_parse.h.
 */
#ifndef UPY_CGIVARS_H
#define UPY_CGIVARS_H

#include <string.h>

#include "upy_parse.h"

#define UPY_KEY_IS(k, lit)                                                   \
    ((k)->len == sizeof(lit) - 1 && memcmp((k)->p, lit, sizeof(lit) - 1) == 0)

/* Store one var (name non-empty): 0, or UPY_PARSE_ERROR (431: more than
   min(lim->max_fields, req->fields_cap) vars). */
static inline int upy_vars_add(upy_request *req, upy_vars_state *st,
                               upy_str k, upy_str v)
{
    if (req->num_fields >= st->cap) {
        req->error_status = 431;
        req->error_reason = "too many vars (limit-request-fields)";
        return UPY_PARSE_ERROR;
    }
    if (v.len == 0)
        v.p = "";
    req->fields[req->num_fields].name = k;
    req->fields[req->num_fields].value = v;
    req->num_fields++;

    /* A repeated var: the last one wins, as it would in the environ dict
     * built from the fields in order. */
    switch (k.len) {
    case 5:
        if (UPY_KEY_IS(&k, "HTTPS"))
            st->https = v;
        break;
    case 9:
        if (UPY_KEY_IS(&k, "PATH_INFO"))
            req->path = v;
        break;
    case 11:
        if (UPY_KEY_IS(&k, "REQUEST_URI"))
            req->target = v;
        break;
    case 12:
        if (UPY_KEY_IS(&k, "QUERY_STRING"))
            req->query = v;
        else if (UPY_KEY_IS(&k, "UWSGI_SCHEME"))
            st->scheme = v;
        break;
    case 14:
        if (UPY_KEY_IS(&k, "REQUEST_METHOD"))
            req->method = v;
        else if (UPY_KEY_IS(&k, "CONTENT_LENGTH")) {
            st->clen = v;
            st->have_clen = 1;
        }
        break;
    case 15:
        if (UPY_KEY_IS(&k, "SERVER_PROTOCOL"))
            st->proto = v;
        break;
    default:
        break;
    }
    return 0;
}

#endif /* UPY_CGIVARS_H */
