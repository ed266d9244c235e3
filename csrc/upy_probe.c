/*
 * upy_probe.c - liveness and readiness probes answered by the C core
 * (options liveness-path, readiness-path, readiness-max-queue): a GET or
 * HEAD of exactly the configured path is answered on the loop thread
 * without the app, the GIL, the access log or the request counters, so a
 * probe neither waits behind busy app threads nor skews the stats.
 *
 *   liveness:  200 "ok" while the loop runs (a hung loop answers nothing:
 *              that is the failure a liveness probe exists to see).
 *   readiness: 200 "ok" when the app is loaded (a Server exists only after
 *              that), the worker is not draining (a graceful stop with
 *              readiness-drain turns it off first: uwsgipy.worker.serve),
 *              and, with readiness-max-queue N > 0, fewer than N requests
 *              wait: neither for an app thread in this worker (the loop
 *              accepts while the app threads are busy, so this is where a
 *              backlog builds) nor in any TCP listener's accept queue
 *              (TCP_INFO, Linux); else 503 with the reason as the body.
 *
 * The responses are constant strings; the path is compared as sent
 * (HTTP: the request-target up to '?'; uwsgi: PATH_INFO, else REQUEST_URI
 * up to '?'), without percent-decoding.
 */
#include "upy_core.h"
#include "upy_proto.h"

#include <string.h>
#include <sys/socket.h>
#ifdef __linux__
#include <netinet/in.h>
#include <netinet/tcp.h>
#endif

#define PROBE_HEAD(status, len)                                              \
    "HTTP/1.1 " status "\r\nContent-Type: text/plain\r\n"                    \
    "Content-Length: " len "\r\nCache-Control: no-store\r\n\r\n"

static const char ok_text[] = PROBE_HEAD("200 OK", "3") "ok\n";
static const char draining_text[] =
    PROBE_HEAD("503 Service Unavailable", "9") "draining\n";
static const char queue_text[] =
    PROBE_HEAD("503 Service Unavailable", "11") "overloaded\n";

/* Content-Length must match the body: checked when the file compiles. */
_Static_assert(sizeof "ok\n" - 1 == 3, "ok body");
_Static_assert(sizeof "draining\n" - 1 == 9, "draining body");
_Static_assert(sizeof "overloaded\n" - 1 == 11, "overloaded body");

static void
reply(upy_probe_reply *out, const char *text, size_t len, const char *body)
{
    out->text = text;
    out->len = len;
    out->head_len = len - strlen(body);
}

/* The request's path as sent, without the query. */
static upy_str
request_path(const upy_request *req)
{
    upy_str p = req->path;
    if (upy_protocols[req->proto]->vars && p.len == 0 && req->target.p != NULL) {
        const char *qm = memchr(req->target.p, '?', req->target.len);
        p.p = req->target.p;
        p.len = qm ? (size_t)(qm - req->target.p) : req->target.len;
    }
    return p;
}

static int
path_is(upy_str p, const char *want, size_t want_len)
{
    return want_len > 0 && p.len == want_len && memcmp(p.p, want, want_len) == 0;
}

/* 1 when some TCP listener's accept queue holds max or more connections. */
static int
queue_full(const upy_server *srv, unsigned max)
{
#if defined(__linux__) && defined(TCP_INFO)
    for (Py_ssize_t i = 0; i < srv->nlisteners; i++) {
        const upy_listener *l = &srv->listeners[i];
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        if (l->is_unix || l->shut)
            continue;
        memset(&ti, 0, sizeof ti);
        /* a listening socket reports its accept queue as tcpi_unacked */
        if (getsockopt(l->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
            ti.tcpi_unacked >= max)
            return 1;
    }
#else
    (void)srv;
    (void)max;
#endif
    return 0;
}

int
upy_probe_is_readiness(const upy_server *srv, const upy_request *req)
{
    return path_is(request_path(req), srv->probe_ready, srv->probe_ready_len);
}

int
upy_probe_answer(const upy_server *srv, const upy_request *req,
                 size_t waiting, upy_probe_reply *out)
{
    upy_str p;
    int get = req->method.len == 3 && memcmp(req->method.p, "GET", 3) == 0;
    if (!get && !req->is_head)
        return 0;
    p = request_path(req);
    if (path_is(p, srv->probe_live, srv->probe_live_len)) {
        reply(out, ok_text, sizeof ok_text - 1, "ok\n");
        return 1;
    }
    if (!path_is(p, srv->probe_ready, srv->probe_ready_len))
        return 0;
    if (__atomic_load_n(&srv->draining, __ATOMIC_ACQUIRE) || srv->stopping)
        reply(out, draining_text, sizeof draining_text - 1, "draining\n");
    else if (srv->ready_max_queue > 0 && (waiting >= srv->ready_max_queue ||
                                          queue_full(srv, srv->ready_max_queue)))
        reply(out, queue_text, sizeof queue_text - 1, "overloaded\n");
    else
        reply(out, ok_text, sizeof ok_text - 1, "ok\n");
    return 1;
}

/* ------------------------------------------------------------------ */
/* _core.set_probes(server, liveness=None, readiness=None, max_queue=0,
   draining=None): configure or change a Server's probes. */

static int
copy_path(PyObject *o, char *dst, size_t cap, size_t *len, const char *what)
{
    const char *s;
    Py_ssize_t n;
    if (o == Py_None) {
        dst[0] = '\0';
        *len = 0;
        return 0;
    }
    s = PyUnicode_AsUTF8AndSize(o, &n);
    if (s == NULL)
        return -1;
    if (n < 1 || s[0] != '/' || (size_t)n >= cap || memchr(s, '?', (size_t)n) ||
        memchr(s, '\0', (size_t)n)) {
        PyErr_Format(PyExc_ValueError, "%s: a path starting with '/', without "
                     "'?', at most %zu bytes, got %R", what, cap - 1, o);
        return -1;
    }
    memcpy(dst, s, (size_t)n);
    dst[n] = '\0';
    *len = (size_t)n;
    return 0;
}

PyObject *
upy_set_probes(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"server", "liveness", "readiness", "max_queue",
                             "draining", NULL};
    upy_state *st = PyModule_GetState(module);
    PyObject *server, *live = NULL, *ready = NULL, *draining = Py_None;
    long max_queue = -1;
    upy_server *srv;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$OOlO", kwlist, &server,
                                     &live, &ready, &max_queue, &draining))
        return NULL;
    if (!PyObject_TypeCheck(server, st->Server_Type)) {
        PyErr_SetString(PyExc_TypeError, "set_probes: server must be a Server");
        return NULL;
    }
    srv = (upy_server *)server;
    if (live != NULL && copy_path(live, srv->probe_live, sizeof srv->probe_live,
                                  &srv->probe_live_len, "liveness-path") < 0)
        return NULL;
    if (ready != NULL &&
        copy_path(ready, srv->probe_ready, sizeof srv->probe_ready,
                  &srv->probe_ready_len, "readiness-path") < 0)
        return NULL;
    if (max_queue >= 0)
        srv->ready_max_queue = (unsigned)max_queue;
    if (draining != Py_None) {
        int d = PyObject_IsTrue(draining);
        if (d < 0)
            return NULL;
        __atomic_store_n(&srv->draining, d, __ATOMIC_RELEASE);
    }
    Py_RETURN_NONE;
}
