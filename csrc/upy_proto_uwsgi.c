/*
 * upy_proto_uwsgi.c - the uwsgi entry of the protocol table (upy_proto.h):
 * the packet nginx's uwsgi_pass sends (upy_uwsgi.c: modifier1, datasize,
 * vars), the environ from the vars, an HTTP status line back, one request
 * per connection (nginx's uwsgi module does not keep upstream connections).
 */
#include "upy_proto.h"

#include <stdio.h>

static ssize_t
uwsgi_parse_head(upy_loop *loop, upy_conn *c, upy_request *req, size_t len)
{
    upy_server *srv = loop->srv;
    upy_uwsgi_header h;
    if (len >= 4 && upy_uwsgi_looks_like_http(c->buf, len)) {
        upy_conn_reject(loop, c, 400,
                        "this looks like an HTTP request on a uwsgi socket; "
                        "point HTTP clients and proxy_pass at an http-socket, "
                        "and nginx's uwsgi_pass at a socket");
        return UPY_PARSE_ERROR;
    }
    if (upy_uwsgi_parse_header((const unsigned char *)c->buf, len, &h) !=
        UPY_UWSGI_HEADER_SIZE) {
        return UPY_PARSE_INCOMPLETE;
    }
    if (h.modifier1 != 0) {
        upy_log(srv, 30, "uwsgi packet with modifier1 %u from %s on %s: "
                "only modifier1 0 (WSGI) is served; closing",
                (unsigned)h.modifier1, c->addr_text, c->lst->name_c);
        upy_conn_linger(loop, c);
        return UPY_PARSE_ERROR;
    }
    if (h.datasize == 0) {
        upy_conn_reject(loop, c, 400, "uwsgi packet with datasize 0");
        return UPY_PARSE_ERROR;
    }
    if (h.datasize > srv->limits.max_head) {
        char reason[160];
        snprintf(reason, sizeof reason,
                 "uwsgi packet vars of %u bytes exceed buffer-size %zu; "
                 "raise buffer-size (at most 65535)",
                 (unsigned)h.datasize, srv->limits.max_head);
        upy_conn_reject(loop, c, 431, reason);
        return UPY_PARSE_ERROR;
    }
    if (len < (size_t)UPY_UWSGI_HEADER_SIZE + h.datasize) {
        return UPY_PARSE_INCOMPLETE;
    }
    if (upy_uwsgi_parse_vars(c->buf + UPY_UWSGI_HEADER_SIZE, h.datasize, req,
                             &srv->uwsgi_limits) != 0) {
        upy_conn_reject(loop, c, req->error_status ? req->error_status : 400,
                        req->error_reason ? req->error_reason
                                          : "invalid uwsgi vars");
        return UPY_PARSE_ERROR;
    }
    if (req->method.len == 0) {
        upy_conn_reject(loop, c, 400, "uwsgi packet without REQUEST_METHOD");
        return UPY_PARSE_ERROR;
    }
    return (ssize_t)(UPY_UWSGI_HEADER_SIZE + h.datasize);
}

static int
uwsgi_reparse(upy_server *srv, upy_conn *c, upy_request *req)
{
    if (c->head_len < UPY_UWSGI_HEADER_SIZE) {
        return -1;
    }
    return upy_uwsgi_parse_vars(c->buf + UPY_UWSGI_HEADER_SIZE,
                                c->head_len - UPY_UWSGI_HEADER_SIZE, req,
                                &srv->uwsgi_limits);
}

const upy_protocol upy_proto_uwsgi = {
    .name = "uwsgi",
    .parse_head = uwsgi_parse_head,
    .reparse = uwsgi_reparse,
    .head_slack = UPY_UWSGI_HEADER_SIZE,
    .body_begin = NULL,
    .body_decode = NULL,
    .vars = 1,
    .environ_from = upy_environ_from_vars,
    .status_prefix = "HTTP/1.1 ",
    .status_prefix_len = 9,
    .chunked_out = 0,
    .ends_itself = 0,
    .connection_header = 0,
    .frame = NULL,
    .end = NULL,
    .probes = 1,
    .read_at_accept = 1,
    .send_error = upy_send_error_http,
};
