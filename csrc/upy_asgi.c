/*
 * upy_asgi.c - runner "asgi": ASGI 3.0 apps (the asgiref specification,
 * "HTTP & WebSocket ASGI Message Format" 2.4) on the worker's one loop.
 *
 * An asyncio event loop runs in the worker's main thread and drives the C
 * loop (uwsgipy/asgi.py: add_reader on Server.fileno(), run_once(0.0)), as
 * gevent's hub does for the external runner.  The C loop still accepts,
 * reads heads, keeps connections alive and enforces the timeouts.  When a
 * head is complete (the body is not waited for) the connection goes to
 * state ASGI, owned by one cycle object (upy_asgi, the "connection scope"
 * of the spec), and an asyncio task runs app(scope, receive, send):
 *
 *   receive()  a completed awaitable when the message is already here (the
 *              body bytes read with the head, websocket.connect, a queued
 *              WebSocket message), else a Future the loop resolves when the
 *              bytes arrive.  The loop reads a body only while receive() is
 *              waiting for it: backpressure on the client.
 *   send()     writes at once (writev/sendfile, non-blocking); a completed
 *              awaitable when the socket took it, else a Future resolved
 *              once the output drained: backpressure on the app.
 *
 * The scope is built here from the upy_request either decoder filled
 * (HTTP/1.1 or nginx's uwsgi vars).  WebSocket frames are decoded by the
 * pure-C codec (upy_ws.c); pings are answered here, never by Python.
 *
 * Reference ownership: as upy_core.h says; every PyObject * field of
 * upy_asgi and upy_asgi_ctx is strong unless marked borrowed.  All of this
 * runs on the loop's thread with the GIL held (the asgi runner never
 * releases it except while waiting in the poller).
 */
#include "upy_core.h"
#include "upy_proto.h"
#include "upy_log.h"
#include "upy_static.h"
#include "upy_ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#if UPY_HAVE_SENDFILE
#include <sys/sendfile.h>
#endif

#define UPY_ASGI_READ 65536          /* read size for bodies and frames */
#define UPY_ASGI_OUT_HIGH 65536      /* send() waits while more is queued */
#define UPY_ASGI_INBOX_MAX 64        /* WebSocket messages read ahead */
#define UPY_ASGI_PIPELINE_MAX 65536  /* bytes read ahead of the next head */
#define UPY_WS_CLOSE_WAIT 5.0        /* seconds for the peer's close frame */
#define UPY_ASGI_OUT_FIRST 4096      /* a cycle's first output buffer */

/* ------------------------------------------------------------------ */
/* Names                                                               */
/* ------------------------------------------------------------------ */

#define UPY_ASGI_NAMES(X)                                                    \
    X(type, "type") X(body, "body") X(more_body, "more_body")                \
    X(status, "status") X(headers, "headers") X(trailers, "trailers")        \
    X(path, "path") X(subprotocol, "subprotocol") X(bytes, "bytes")          \
    X(text, "text") X(code, "code") X(reason, "reason")                      \
    X(asgi, "asgi") X(version, "version") X(spec_version, "spec_version")    \
    X(http_version, "http_version") X(method, "method") X(scheme, "scheme")  \
    X(raw_path, "raw_path") X(query_string, "query_string")                  \
    X(root_path, "root_path") X(client, "client") X(server, "server")        \
    X(state, "state") X(extensions, "extensions")                            \
    X(subprotocols, "subprotocols") X(http, "http") X(https, "https")        \
    X(websocket, "websocket") X(ws, "ws") X(wss, "wss") X(v10, "1.0")        \
    X(v11, "1.1") X(GET, "GET") X(POST, "POST")                              \
    X(http_request, "http.request") X(http_disconnect, "http.disconnect")    \
    X(http_start, "http.response.start") X(http_body, "http.response.body")  \
    X(http_trailers, "http.response.trailers")                               \
    X(http_pathsend, "http.response.pathsend")                               \
    X(ws_connect, "websocket.connect") X(ws_accept, "websocket.accept")      \
    X(ws_receive, "websocket.receive") X(ws_send, "websocket.send")          \
    X(ws_close, "websocket.close") X(ws_disconnect, "websocket.disconnect")  \
    X(ws_http_start, "websocket.http.response.start")                        \
    X(ws_http_body, "websocket.http.response.body")                          \
    X(set_result, "set_result") X(set_exception, "set_exception")            \
    X(cancelled, "cancelled") X(receive, "receive") X(send, "send")       \
    X(more_trailers, "more_trailers")

typedef struct upy_asgi_ctx {
    PyObject *loop;          /* the asyncio event loop */
    PyObject *create_task;   /* loop.create_task */
    PyObject *create_future; /* loop.create_future */
    PyObject *task_type;     /* asyncio.Task when the loop has no task
                                factory (then called directly), or NULL:
                                loop.create_task */
    PyObject *task_kwnames;  /* ("loop", "eager_start") or ("loop", "name") */
    PyObject *task_kwarg;    /* True, or the tasks' name */
    PyObject *state;         /* lifespan state dict, or NULL */
    PyObject *asgi_dict;     /* scope["asgi"] */
    PyObject *http_ext;      /* scope["extensions"] of http scopes */
    PyObject *ws_ext;        /* ... of websocket scopes */
    PyObject **servers;      /* per listener: scope["server"] */
    char *spare_out;         /* a cycle's output buffer (UPY_ASGI_OUT_FIRST
                                bytes) kept for the next cycle, or NULL */
    PyObject *scope_http;    /* the scope templates (scope_template()) */
    PyObject *scope_ws;
    PyObject *ready_none;    /* the completed awaitable of None */
    PyObject *disconnect_msg; /* {"type": "http.disconnect"} (copied) */
#define UPY_ASGI_DECL(n, s) PyObject *n_##n;
    UPY_ASGI_NAMES(UPY_ASGI_DECL)
#undef UPY_ASGI_DECL
    struct upy_asgi *oldest, *newest; /* HTTP cycles whose response is not
                                         complete, oldest first (harakiri) */
    Py_ssize_t ntasks;       /* cycles whose app has not returned */
    PyObject *base_ctx;      /* the context each request's is a copy of
                                (the one asgi_setup ran in) */
    PyObject *call_soon;     /* loop.call_soon */
    PyObject *context_kw;    /* ("context",) */
    PyObject *cancelled_error; /* asyncio.CancelledError */
    PyObject *enter_task;    /* asyncio.tasks._enter_task, or NULL */
    PyObject *leave_task;    /* asyncio.tasks._leave_task, or NULL */
    int depth;               /* AsgiRun steps in progress (nested) */
    struct upy_asgi_run **wakes; /* kept tasks woken for their next request
                                    during this run_once(), strong: their
                                    steps run at its end (upy_asgi_flush) */
    size_t nwakes, wakes_cap;
    uint64_t ws_max;         /* websockets-max-size, bytes; 0 none */
    double ws_ping;          /* websockets-ping-freq, seconds; 0 none */
    double ws_pong;          /* websockets-pong-tolerance, seconds */
} upy_asgi_ctx;

/* ------------------------------------------------------------------ */
/* The cycle                                                           */
/* ------------------------------------------------------------------ */

typedef enum { UPY_ASGI_HTTP = 0, UPY_ASGI_WS } upy_asgi_kind;

/* HTTP response states */
enum { RS_INIT = 0, RS_STARTED, RS_BODY, RS_TRAILERS, RS_DONE };
/* WebSocket states */
enum { WS_HANDSHAKE = 0, WS_OPEN, WS_CLOSING, WS_CLOSED };

struct upy_asgi_run;

typedef struct upy_asgi {
    PyObject_HEAD
    upy_server *srv;         /* strong */
    upy_conn *conn;          /* borrowed; NULL once detached (closed, or
                                the response ended and the connection
                                went on to its next request) */
    struct upy_asgi_run *run; /* borrowed: the coroutine running the app
                                 for this cycle, while its cy is this */
    struct upy_asgi *older, *newer; /* ctx's in-flight list */
    int in_list;
    upy_asgi_kind kind;
    double started;          /* monotonic, when the head was complete */
    PyObject *task;          /* the asyncio task, until the app ends */
    PyObject *recv_fut;      /* a Future receive() returned, or NULL */
    PyObject *send_fut;      /* a Future send() returned, or NULL */
    unsigned app_done : 1, disconnected : 1, body_done : 1,
        chunked_body : 1, is_head : 1, keep_alive : 1, chunked : 1,
        no_body : 1, want_trailers : 1, connect_given : 1,
        disconnect_given : 1, close_after : 1, logged : 1, is_uwsgi : 1,
        ping_out : 1, close_sent : 1, close_recv : 1, ws_scope : 1,
        expect_continue : 1, sent_continue : 1, counted : 1,
        sent_trailer0 : 1, linger_end : 1, pong_pending : 1;
    unsigned char pong_len;
    char pong[125];          /* the latest ping's payload, when its pong waits */
    int minor_version;
    int64_t body_left;       /* Content-Length bytes not read yet */
    upy_chunked_decoder chunk;
    uint64_t body_total;     /* body bytes given to the app */
    int rstate;              /* RS_* (HTTP) */
    int status;
    PyObject *headers;       /* the app's, from start until the head goes */
    int64_t content_length;  /* the app's, -1 */
    uint64_t sent;           /* body bytes sent */
    /* output not yet taken by the socket */
    char *out;
    size_t out_len, out_off, out_cap;
    int sf_fd;               /* pathsend: the file, -1 */
    off_t sf_off;
    uint64_t sf_left;
    /* WebSocket */
    int wstate;              /* WS_* */
    char ws_accept[28];
    int msg_opcode;          /* of the message being assembled, 0 none */
    char *msg;
    size_t msg_len, msg_cap;
    upy_utf8 utf8;
    PyObject *inbox;         /* list of messages read ahead, or NULL */
    int close_code;          /* the peer's, or ours; 1006 abnormal */
    PyObject *close_reason;  /* str or NULL */
    double ping_at;          /* when our ping went out */
    double close_deadline;
    char method[16];         /* for the scoreboard while it is the oldest */
    char uri[88];
} upy_asgi;

typedef struct {
    PyObject_HEAD
    PyObject *value;         /* the result, NULL for None */
} upy_ready;

/* AsgiRun (see "The task's coroutine"): its states */
enum {
    RUN_ACTIVE = 0,  /* running cy's app, or (cy NULL) ended */
    RUN_OFFERED,     /* running cy's app, whose response is complete: the
                        connection keeps it (conn->asgi_park) for its next
                        request */
    RUN_PARKED,      /* the app returned: the task waits on the run itself
                        (a Future-like) for the connection's next request */
    RUN_WOKEN,       /* the task's callback is called or scheduled; wake
                        says why */
    RUN_HANDOFF      /* a step run outside the task (run_step_here) gives
                        its outcome to the task: its next step returns it */
};
enum { WAKE_REQUEST = 0, WAKE_END, WAKE_CANCEL };

typedef struct upy_asgi_run {
    PyObject_HEAD
    upy_server *srv;         /* strong */
    upy_asgi *cy;            /* strong; NULL between requests, and once ended */
    PyObject *app;           /* strong until the request's first step calls it */
    PyObject *scope;         /* likewise */
    PyObject *it;            /* the awaitable's iterator, once called */
    PyObject *ctx;           /* the request's context, entered around each
                                step of the app; NULL between requests */
    PyObject *task;          /* the Task running this, while it may be kept
                                (task -> coroutine -> task: a cycle, broken
                                when the run ends), or NULL */
    upy_conn *conn;          /* borrowed, while conn->asgi_park is this:
                                exactly while RUN_OFFERED or RUN_PARKED */
    PyObject *wake_cb;       /* parked: the Task's done callback, or NULL */
    PyObject *wake_ctx;      /* and the context it runs in, or NULL */
    int state;               /* RUN_* */
    int wake;                /* WAKE_*, once RUN_WOKEN */
    PySendResult stash_rs;   /* RUN_HANDOFF: the outcome, */
    PyObject *stash;         /* its value (PYGEN_NEXT, PYGEN_RETURN) */
    PyObject *stash_exc[3];  /* or its exception (PYGEN_ERROR) */
    PyObject *cancel_msg;    /* WAKE_CANCEL: cancel()'s msg, or NULL */
    unsigned blocking : 1,   /* _asyncio_future_blocking */
        cancelled : 1;       /* a cancellation reached it (a CancelledError
                                thrown in, or Task.cancel() while not
                                parked): not kept past this request */
} upy_asgi_run;

/* ------------------------------------------------------------------ */
/* The completed awaitable                                             */
/* ------------------------------------------------------------------ */

static PyObject *
ready_new(upy_server *srv, PyObject *value)
{
    upy_ready *r;
    if (value == NULL && PyErr_Occurred())
        return NULL;  /* the message could not be built */
    r = PyObject_New(upy_ready, srv->st->AsgiReady_Type);
    if (r == NULL) {
        Py_XDECREF(value);
        return NULL;
    }
    r->value = value;  /* stolen */
    return (PyObject *)r;
}

static void
ready_dealloc(upy_ready *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_CLEAR(self->value);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyObject *
ready_await(PyObject *self)
{
    return Py_NewRef(self);
}

/* 3.12+: `await` calls tp_iternext; the result is StopIteration's value. */
static PyObject *
ready_iternext(upy_ready *self)
{
    if (self->value != NULL) {
        PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, self->value);
        if (e != NULL) {
            PyErr_SetObject(PyExc_StopIteration, e);
            Py_DECREF(e);
        }
    }
    return NULL;
}

/* 3.10, 3.11: PyIter_Send() takes this, no exception made. */
static PySendResult
ready_am_send(PyObject *self, PyObject *arg, PyObject **result)
{
    PyObject *v = ((upy_ready *)self)->value;
    *result = Py_NewRef(v != NULL ? v : Py_None);
    return PYGEN_RETURN;
}

static PyObject *
ready_send(upy_ready *self, PyObject *arg)
{
    return ready_iternext(self);
}

static PyMethodDef ready_methods[] = {
    {"send", (PyCFunction)ready_send, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot ready_slots[] = {
    {Py_tp_doc, (void *)"A completed awaitable: what receive() and send() "
                        "return when they did not have to wait."},
    {Py_tp_dealloc, ready_dealloc},
    {Py_am_await, ready_await},
    {Py_am_send, ready_am_send},
    {Py_tp_iter, ready_await},
    {Py_tp_iternext, ready_iternext},
    {Py_tp_methods, ready_methods},
    {0, NULL},
};

PyType_Spec upy_asgi_ready_spec = {
    .name = "uwsgipy._core.AsgiReady",
    .basicsize = sizeof(upy_ready),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ready_slots,
};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

#define CTX(cy) ((cy)->srv->asgi)

/* a (any object) equals the str b: by pointer (an interned type), else by
   length and, both ASCII (as message types are), their bytes */
static int
str_eq(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    if (!PyUnicode_Check(a) || PyUnicode_GET_LENGTH(a) != PyUnicode_GET_LENGTH(b))
        return 0;
    if (PyUnicode_IS_COMPACT_ASCII(a) && PyUnicode_IS_COMPACT_ASCII(b))
        return memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b),
                      (size_t)PyUnicode_GET_LENGTH(b)) == 0;
    return PyUnicode_Compare(a, b) == 0;
}

/* A message {"type": t, k1: v1, ...}: v values are stolen. */
static PyObject *
msg_new(upy_asgi_ctx *x, PyObject *type)
{
    PyObject *d = PyDict_New();
    if (d != NULL && PyDict_SetItem(d, x->n_type, type) < 0) {
        Py_CLEAR(d);
    }
    return d;
}

static int
msg_put(PyObject *d, PyObject *k, PyObject *v)
{
    return upy_dict_set_steal(d, k, v);
}

/* Resolve *futp with value (stolen) or, value NULL, with exc (borrowed);
   the future is dropped.  A cancelled future is just dropped. */
static void
fut_resolve(upy_asgi *cy, PyObject **futp, PyObject *value, PyObject *exc)
{
    upy_asgi_ctx *x = CTX(cy);
    PyObject *fut = *futp, *r;
    int cancelled;
    *futp = NULL;
    if (fut == NULL) {
        Py_XDECREF(value);
        return;
    }
    r = PyObject_CallMethodNoArgs(fut, x->n_cancelled);
    cancelled = r == NULL ? -1 : PyObject_IsTrue(r);
    Py_XDECREF(r);
    if (cancelled == 0) {
        r = value != NULL
                ? PyObject_CallMethodOneArg(fut, x->n_set_result, value)
                : PyObject_CallMethodOneArg(fut, x->n_set_exception, exc);
        Py_XDECREF(r);
    }
    if (PyErr_Occurred()) {
        upy_log_exception(cy->srv, "ASGI: cannot resolve a future");
    }
    Py_XDECREF(value);
    Py_DECREF(fut);
}

/* 1 when *futp is a future still waiting; a done one (the app cancelled
   its await, as Starlette's is_disconnected() does) is dropped: 0. */
static int
fut_alive(upy_asgi *cy, PyObject **futp)
{
    PyObject *r;
    int done;
    if (*futp == NULL)
        return 0;
    r = PyObject_CallMethod(*futp, "done", NULL);
    done = r == NULL ? 1 : PyObject_IsTrue(r);
    Py_XDECREF(r);
    if (PyErr_Occurred())
        upy_log_exception(cy->srv, "ASGI: a future's done()");
    if (done) {
        Py_CLEAR(*futp);
        return 0;
    }
    return 1;
}

/* A Future for receive() or send() to return, kept in *futp. */
static PyObject *
fut_new(upy_asgi *cy, PyObject **futp)
{
    PyObject *f;
    if (fut_alive(cy, futp)) {
        PyErr_SetString(PyExc_RuntimeError, "ASGI: receive() or send() "
                        "called again before the previous call completed");
        return NULL;
    }
    f = PyObject_CallNoArgs(CTX(cy)->create_future);
    if (f == NULL)
        return NULL;
    *futp = Py_NewRef(f);
    return f;
}

static PyObject *
gone_error(void)
{
    return PyObject_CallFunction(PyExc_OSError, "is",
                                 EPIPE, "the client has disconnected");
}

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

static int
out_reserve(upy_asgi *cy, size_t n)
{
    size_t cap;
    char *nb;
    if (cy->out_off > 0 && cy->out_off == cy->out_len) {
        cy->out_off = cy->out_len = 0;
    }
    if (cy->out_cap - cy->out_len >= n) {
        return 0;
    }
    if (cy->out_off > 0) {
        memmove(cy->out, cy->out + cy->out_off, cy->out_len - cy->out_off);
        cy->out_len -= cy->out_off;
        cy->out_off = 0;
        if (cy->out_cap - cy->out_len >= n)
            return 0;
    }
    if (cy->out == NULL && n <= UPY_ASGI_OUT_FIRST && CTX(cy) != NULL &&
        CTX(cy)->spare_out != NULL) {
        /* the buffer of a cycle that ended: no malloc per request */
        cy->out = CTX(cy)->spare_out;
        CTX(cy)->spare_out = NULL;
        cy->out_cap = UPY_ASGI_OUT_FIRST;
        return 0;
    }
    cap = cy->out_cap ? cy->out_cap : UPY_ASGI_OUT_FIRST;
    while (cap - cy->out_len < n)
        cap *= 2;
    nb = realloc(cy->out, cap);
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    cy->out = nb;
    cy->out_cap = cap;
    return 0;
}

static int
out_append(upy_asgi *cy, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (out_reserve(cy, n) < 0)
        return -1;
    memcpy(cy->out + cy->out_len, p, n);
    cy->out_len += n;
    return 0;
}

#define OUT_LIT(cy, s) out_append((cy), (s), sizeof(s) - 1)

static size_t
out_pending(const upy_asgi *cy)
{
    return cy->out_len - cy->out_off + (cy->sf_fd >= 0 ? 1 : 0);
}

/* Send what is queued, then data[0..n) (not copied when the socket takes
   it).  Returns 0 (all of it went, or the rest is queued) or -1 when the
   connection broke (errno). */
static int
out_write(upy_asgi *cy, const char *data, size_t n)
{
    upy_conn *c = cy->conn;
    struct iovec iov[2];
    int cnt = 0;
    size_t queued = cy->out_len - cy->out_off, total;
    ssize_t w;
    if (c == NULL) {
        errno = EPIPE;
        return -1;
    }
    if (cy->sf_fd >= 0 && n > 0) {
        /* a file is being sent (pathsend ends the response: nothing
           follows it in practice) */
        return out_append(cy, data, n) < 0 ? -1 : 0;
    }
    if (queued) {
        iov[cnt].iov_base = cy->out + cy->out_off;
        iov[cnt++].iov_len = queued;
    }
    if (n) {
        iov[cnt].iov_base = (void *)data;
        iov[cnt++].iov_len = n;
    }
    total = queued + n;
    if (total == 0)
        return 0;
    for (;;) {
        struct msghdr mh = {0};
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)cnt;
        w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            w = 0;
            break;
        }
        return -1;
    }
    c->last_io = upy_now();
    if ((size_t)w >= queued) {
        size_t took = (size_t)w - queued;
        cy->out_off = cy->out_len = 0;
        if (took < n && out_append(cy, data + took, n - took) < 0)
            return -1;
    }
    else {
        cy->out_off += (size_t)w;
        if (out_append(cy, data, n) < 0)
            return -1;
    }
    return 0;
}

/* Socket writable (or a send): push the queue and a pathsend file.
   Returns 0, or -1 when the connection broke. */
static int
out_flush(upy_asgi *cy)
{
    upy_conn *c = cy->conn;
    if (cy->out_len > cy->out_off && out_write(cy, NULL, 0) < 0)
        return -1;
    while (cy->sf_fd >= 0 && cy->out_len == cy->out_off && c != NULL) {
        size_t want = cy->sf_left > (1u << 20) ? (1u << 20) : (size_t)cy->sf_left;
        ssize_t w;
        if (want == 0) {
            close(cy->sf_fd);
            cy->sf_fd = -1;
            break;
        }
#if UPY_HAVE_SENDFILE
        w = sendfile(c->fd, cy->sf_fd, &cy->sf_off, want);
#else
        {
            char tmp[65536];
            ssize_t r = pread(cy->sf_fd, tmp, want > sizeof tmp ? sizeof tmp : want,
                              cy->sf_off);
            if (r <= 0) {
                errno = r == 0 ? EIO : errno;
                return -1;
            }
            w = send(c->fd, tmp, (size_t)r, MSG_NOSIGNAL);
            if (w > 0)
                cy->sf_off += w;
        }
#endif
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        if (w == 0) {
            errno = EIO;  /* the file shrank */
            return -1;
        }
        c->last_io = upy_now();
        cy->sf_left -= (uint64_t)w;
        cy->sent += (uint64_t)w;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Watching the connection                                             */
/* ------------------------------------------------------------------ */

/* What the loop watches c for, from the cycle's state: writable while
   output is queued; readable while receive() waits, while a WebSocket is
   open (frames, pings), and, once the body is in, for a hang-up (bytes of
   the next request are read ahead up to a bound). */
static void
rewatch(upy_asgi *cy)
{
    upy_conn *c = cy->conn;
    uint32_t ev = 0;
    if (c == NULL)
        return;
    if (out_pending(cy) || cy->send_fut != NULL)
        ev |= UPY_POLL_OUT;  /* writable() resolves a waiting send() */
    if (cy->kind == UPY_ASGI_WS) {
        if (cy->wstate == WS_HANDSHAKE
                ? c->len - c->head_len < UPY_ASGI_PIPELINE_MAX
                : cy->wstate != WS_CLOSED &&
                  (cy->inbox == NULL ||
                   PyList_GET_SIZE(cy->inbox) < UPY_ASGI_INBOX_MAX))
            ev |= UPY_POLL_IN;
    }
    else if (cy->body_done ? c->len - c->head_len < UPY_ASGI_PIPELINE_MAX
                           : cy->recv_fut != NULL)
        ev |= UPY_POLL_IN;
    if (upy_conn_watch(cy->srv->loop, c, ev) < 0) {
        upy_conn_close(cy->srv->loop, c);
    }
}

/* ------------------------------------------------------------------ */
/* In-flight list, counting, the end of a response                     */
/* ------------------------------------------------------------------ */

static void
list_remove(upy_asgi *cy)
{
    upy_asgi_ctx *x = CTX(cy);
    if (!cy->in_list)
        return;
    if (cy->older)
        cy->older->newer = cy->newer;
    else
        x->oldest = cy->newer;
    if (cy->newer)
        cy->newer->older = cy->older;
    else
        x->newest = cy->older;
    cy->older = cy->newer = NULL;
    cy->in_list = 0;
    Py_DECREF(cy);
}

/* Slot 0 shows the oldest request in flight: its start (harakiri counts
   from it), method and URI (the master's harakiri line names them). */
static void
slot_update(upy_server *srv)
{
    upy_slot *sl = srv->cores[0].slot;
    upy_asgi *o = srv->asgi->oldest;
    if (sl == NULL)
        return;
    if (o != NULL) {
        memcpy(sl->method, o->method, sizeof sl->method);
        memcpy(sl->uri, o->uri, sizeof sl->uri);
    }
    sl->request_started = o != NULL ? o->started : 0;
}

static void
log_line(upy_asgi *cy)
{
    upy_server *srv = cy->srv;
    upy_conn *c = cy->conn;
    upy_request req;
    upy_core *co = &srv->cores[0];
    if (cy->logged || c == NULL || srv->access_log_fd < 0)
        return;
    cy->logged = 1;
    if ((srv->log_filter & UPY_LOG_4XX) && cy->status >= 400 && cy->status < 500)
        ;
    else if ((srv->log_filter & UPY_LOG_5XX) && cy->status >= 500)
        ;
    else if (srv->log_filter)
        return;
    if (upy_reparse(co, c, &req) < 0)
        return;
    if (srv->log_format == NULL && srv->log_template == NULL) {
        upy_str proto = {req.minor_version ? "HTTP/1.1" : "HTTP/1.0", 8};
        if (upy_protocols[req.proto]->vars) {
            for (size_t i = 0; i < req.num_fields; i++) {
                if (req.fields[i].name.len == 15 &&
                    memcmp(req.fields[i].name.p, "SERVER_PROTOCOL", 15) == 0)
                    proto = req.fields[i].value;
            }
        }
        upy_access_log_plain(srv, c->addr_text, strlen(c->addr_text),
                             &req.method, &req.target, &proto, cy->status,
                             cy->sent, cy->started, 0, &req);
    }
    else {
        PyObject *env = upy_build_environ(co, c, &req, srv->st->empty_input);
        if (env == NULL) {
            upy_log_exception(srv, "ASGI: cannot build the log line's environ");
            return;
        }
        c->resp.status_code = cy->status;
        c->resp.sent = cy->sent;
        upy_access_log(co, c, env, cy->started);
        Py_DECREF(env);
    }
}

/* The response on c is complete (or failed: keep 0): log, count, and let
   the connection go on to its next request or close.  The cycle lets go
   of the connection; the app may still be running (receive() then says
   http.disconnect). */
static void http_abort(upy_asgi *cy);

static void
http_finish(upy_asgi *cy, int keep)
{
    upy_conn *c = cy->conn;
    upy_loop *loop = cy->srv->loop;
    if (c == NULL)
        return;
    cy->rstate = RS_DONE;
    if (cy->sf_fd >= 0) {
        close(cy->sf_fd);
        cy->sf_fd = -1;
    }
    if (keep && !cy->body_done) {
        /* the app did not read the whole body: skip what is here, close
           when more would have to be read */
        size_t avail = c->len - c->head_len;
        if (!cy->chunked_body && (uint64_t)cy->body_left <= avail) {
            memmove(c->buf + c->head_len, c->buf + c->head_len + cy->body_left,
                    avail - (size_t)cy->body_left);
            c->len -= (size_t)cy->body_left;
            cy->body_left = 0;
            cy->body_done = 1;
        }
        else if (cy->chunked_body && avail > 0) {
            size_t dlen = avail;
            ssize_t rc = upy_chunked_decode(&cy->chunk, c->buf + c->head_len,
                                            &dlen, 0);
            if (rc >= 0) {
                memmove(c->buf + c->head_len, c->buf + c->head_len + dlen,
                        (size_t)rc);
                c->len = c->head_len + (size_t)rc;
                cy->body_done = 1;
            }
        }
        if (!cy->body_done) {
            /* unread body bytes would make the close a reset that can
               destroy the response: linger instead */
            http_abort(cy);
            return;
        }
    }
    log_line(cy);
    list_remove(cy);
    slot_update(cy->srv);
    if (cy->recv_fut != NULL) {
        /* the response is complete: a waiting receive() is told so */
        PyObject *m = PyDict_Copy(CTX(cy)->disconnect_msg);
        if (m == NULL)
            upy_log_exception(cy->srv, "ASGI: cannot build a message");
        else
            fut_resolve(cy, &cy->recv_fut, m, NULL);
    }
    c->resp.status_code = cy->status;
    if (keep && cy->keep_alive && cy->run != NULL && cy->run->cy == cy &&
        cy->run->state == RUN_ACTIVE && !cy->run->cancelled &&
        c->asgi_park == NULL) {
        /* the app's task may serve the next request on c, once the app
           returned (run_returned) */
        cy->run->state = RUN_OFFERED;
        cy->run->conn = c;
        c->asgi_park = Py_NewRef((PyObject *)cy->run);
    }
    cy->conn = NULL;
    c->asgi = NULL;  /* the cycle's reference: released below */
    c->keep_alive = keep && cy->keep_alive;
    upy_conn_finished(loop, c, keep && cy->keep_alive ? UPY_RESP_KEEP
                                                      : UPY_RESP_CLOSE,
                      cy->started);
    slot_update(cy->srv);
    Py_DECREF(cy);
}

/* The connection went away under the cycle (closed by the loop). */
void
upy_asgi_detach(upy_conn *c)
{
    upy_asgi *cy = (upy_asgi *)c->asgi;
    PyObject *err;
    if (cy == NULL)
        return;
    c->asgi = NULL;
    if (cy->kind == UPY_ASGI_HTTP) {
        /* the request ends here, not in http_finish(): log and count it */
        if (cy->status == 0)
            cy->status = 499;  /* nginx's "client closed request" */
        log_line(cy);
        list_remove(cy);
        upy_count_request(cy->srv->loop, c, cy->status, cy->started);
    }
    cy->conn = NULL;
    cy->disconnected = 1;
    if (cy->sf_fd >= 0) {
        close(cy->sf_fd);
        cy->sf_fd = -1;
    }
    if (cy->kind == UPY_ASGI_WS && cy->close_code == 0)
        cy->close_code = 1006;
    list_remove(cy);
    slot_update(cy->srv);
    if (cy->recv_fut != NULL) {
        PyObject *m;
        if (cy->kind == UPY_ASGI_HTTP) {
            m = PyDict_Copy(CTX(cy)->disconnect_msg);
        }
        else {
            m = msg_new(CTX(cy), CTX(cy)->n_ws_disconnect);
            if (m != NULL &&
                msg_put(m, CTX(cy)->n_code, PyLong_FromLong(cy->close_code)) < 0)
                Py_CLEAR(m);
            if (m != NULL)
                cy->disconnect_given = 1;
        }
        if (m == NULL)
            upy_log_exception(cy->srv, "ASGI: cannot build a message");
        else
            fut_resolve(cy, &cy->recv_fut, m, NULL);
    }
    if (cy->send_fut != NULL) {
        err = gone_error();
        if (err != NULL) {
            fut_resolve(cy, &cy->send_fut, NULL, err);
            Py_DECREF(err);
        }
        else
            PyErr_Clear();
    }
    Py_DECREF(cy);
}

/* An HTTP request ends with an error response already sent (or none):
   the cycle lets go (logged, counted), then the connection shuts its write
   side and drains what the client still sends for a moment, so the
   response is not destroyed by the reset a close with unread bytes makes
   (RFC 9112 §9.6), as after the loop's own errors. */
static void
http_abort(upy_asgi *cy)
{
    upy_conn *c = cy->conn;
    if (c == NULL)
        return;
    cy->keep_alive = 0;
    upy_asgi_detach(c);
    upy_conn_linger(cy->srv->loop, c);
}

/* ------------------------------------------------------------------ */
/* Scope                                                               */
/* ------------------------------------------------------------------ */

/* str: p[0..n) percent-decoded (when decode), then UTF-8 with U+FFFD for
   invalid bytes (uvicorn's unquote does the same). */
static PyObject *
path_str(upy_core *co, const char *p, size_t n, int decode)
{
    size_t o;
    if (!decode || memchr(p, '%', n) == NULL || n > co->scratch_cap)
        /* (the scratch holds a whole head: a path never exceeds it) */
        return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "replace");
    o = upy_percent_decode(p, n, co->scratch);
    return PyUnicode_DecodeUTF8(co->scratch, (Py_ssize_t)o, "replace");
}

/* bytes, the name lower-cased */
static PyObject *
lower_bytes(const char *p, size_t n)
{
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    char *d;
    if (b == NULL)
        return NULL;
    d = PyBytes_AS_STRING(b);
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        d[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    return b;
}

/* a uwsgi var's name as a header name: X_FOO gives b"x-foo" */
static PyObject *
var_header_name(const char *p, size_t n)
{
    PyObject *b = lower_bytes(p, n);
    if (b != NULL) {
        char *d = PyBytes_AS_STRING(b);
        for (size_t i = 0; i < n; i++)
            if (d[i] == '_')
                d[i] = '-';
    }
    return b;
}

/* (name, value): name stolen (NULL: an error already set) */
static PyObject *
header_pair(PyObject *name, const char *v, size_t vn)
{
    PyObject *val, *t;
    if (name == NULL)
        return NULL;
    val = PyBytes_FromStringAndSize(v, (Py_ssize_t)vn);
    if (val == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(name);
        Py_DECREF(val);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, name);  /* stolen */
    PyTuple_SET_ITEM(t, 1, val);   /* stolen */
    return t;
}

static int
append_pair(PyObject *list, PyObject *name, const char *v, size_t vn)
{
    PyObject *t = header_pair(name, v, vn);
    int rc;
    if (t == NULL)
        return -1;
    rc = PyList_Append(list, t);
    Py_DECREF(t);
    return rc;
}

/* A header field of req by name (HTTP: field name; uwsgi: var name). */
static const upy_str *
req_field(const upy_request *req, const char *name, size_t n)
{
    for (size_t i = 0; i < req->num_fields; i++) {
        const upy_field *f = &req->fields[i];
        if (f->name.len == n && upy_lower_eq(f->name.p, n, name, n))
            return &f->value;
    }
    return NULL;
}

static PyObject *
addr_tuple(const char *host, size_t hl, const char *port, size_t pl)
{
    long pn = 0;
    PyObject *h, *t;
    if (hl == 0)
        Py_RETURN_NONE;
    for (size_t i = 0; i < pl && i < 6; i++) {
        if (port[i] < '0' || port[i] > '9') {
            pn = 0;
            break;
        }
        pn = pn * 10 + (port[i] - '0');
    }
    h = PyUnicode_DecodeLatin1(host, (Py_ssize_t)hl, NULL);
    if (h == NULL)
        return NULL;
    t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, h);  /* stolen */
    if ((h = PyLong_FromLong(pn)) == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 1, h);  /* stolen */
    return t;
}

/* The request is a WebSocket opening handshake (RFC 6455 §4.2.1):
   1, 0 (plain HTTP), or -1 with *status and *why (a bad handshake). */
static int
ws_handshake(upy_asgi *cy, const upy_request *req, int *status,
             const char **why)
{
    int uw = upy_protocols[req->proto]->vars;
    const upy_str *up = uw ? req_field(req, "http_upgrade", 12)
                           : req_field(req, "upgrade", 7);
    const upy_str *conn = uw ? req_field(req, "http_connection", 15)
                             : req_field(req, "connection", 10);
    const upy_str *key, *ver;
    if (up == NULL || !upy_ws_has_token(up->p, up->len, "websocket"))
        return 0;
    if (conn == NULL || !upy_ws_has_token(conn->p, conn->len, "upgrade"))
        return 0;
    *status = 400;
    if (req->method.len != 3 || memcmp(req->method.p, "GET", 3) != 0) {
        *why = "a WebSocket handshake must be a GET";
        return -1;
    }
    if (!uw && req->minor_version != 1) {
        *why = "a WebSocket handshake needs HTTP/1.1";
        return -1;
    }
    ver = uw ? req_field(req, "http_sec_websocket_version", 26)
             : req_field(req, "sec-websocket-version", 21);
    if (ver == NULL || ver->len != 2 || memcmp(ver->p, "13", 2) != 0) {
        *status = 426;
        *why = "Sec-WebSocket-Version must be 13";
        return -1;
    }
    key = uw ? req_field(req, "http_sec_websocket_key", 22)
             : req_field(req, "sec-websocket-key", 17);
    if (key == NULL || upy_ws_accept_key(key->p, key->len, cy->ws_accept) < 0) {
        *why = "missing or invalid Sec-WebSocket-Key";
        return -1;
    }
    return 1;
}

/* The scope templates: a dict with every key of an http (ws 0) or a
   websocket (ws 1) scope in the order build_scope() gives them, the values
   of type, asgi and extensions set, the usual ones of http_version ("1.1"),
   scheme (http, ws), method (GET), query_string (b"") and root_path (""),
   None for the others; build_scope() copies it (PyDict_Copy clones the
   table) and replaces the rest, and those of the usual ones that differ. */
static PyObject *
scope_template(upy_asgi_ctx *x, int ws)
{
    PyObject *keys[16], *d = PyDict_New(), *empty_b, *empty_s;
    size_t n = 0;
    if (d == NULL)
        return NULL;
    empty_b = PyBytes_FromStringAndSize("", 0);
    empty_s = PyUnicode_FromStringAndSize("", 0);
    if (empty_b == NULL || empty_s == NULL) {
        Py_XDECREF(empty_b);
        Py_XDECREF(empty_s);
        Py_DECREF(d);
        return NULL;
    }
    keys[n++] = x->n_type;
    keys[n++] = x->n_asgi;
    keys[n++] = x->n_http_version;
    keys[n++] = x->n_scheme;
    if (!ws)
        keys[n++] = x->n_method;
    keys[n++] = x->n_path;
    keys[n++] = x->n_raw_path;
    keys[n++] = x->n_query_string;
    keys[n++] = x->n_root_path;
    keys[n++] = x->n_headers;
    keys[n++] = x->n_client;
    keys[n++] = x->n_server;
    if (x->state != NULL)
        keys[n++] = x->n_state;
    keys[n++] = x->n_extensions;
    if (ws)
        keys[n++] = x->n_subprotocols;
    for (size_t i = 0; i < n; i++) {
        PyObject *k = keys[i];
        PyObject *v = k == x->n_type ? (ws ? x->n_websocket : x->n_http)
                      : k == x->n_asgi ? x->asgi_dict
                      : k == x->n_extensions ? (ws ? x->ws_ext : x->http_ext)
                      : k == x->n_http_version ? x->n_v11
                      : k == x->n_scheme ? (ws ? x->n_ws : x->n_http)
                      : k == x->n_method ? x->n_GET
                      : k == x->n_query_string ? empty_b
                      : k == x->n_root_path ? empty_s
                      : Py_None;
        if (PyDict_SetItem(d, k, v) < 0) {
            Py_CLEAR(d);
            break;
        }
    }
    Py_DECREF(empty_b);
    Py_DECREF(empty_s);
    return d;
}

/* New reference: the scope of req on c (kind set by the caller). */
static PyObject *
build_scope(upy_asgi *cy, upy_conn *c, const upy_request *req)
{
    upy_server *srv = cy->srv;
    upy_asgi_ctx *x = srv->asgi;
    upy_core *co = &srv->cores[0];
    int uw = upy_protocols[req->proto]->vars, https = req->https;
    PyObject *s, *headers = NULL, *v;
    upy_str raw = {"", 0}, query = req->query, script = {"", 0};
    const upy_str *pinfo = NULL;
    Py_ssize_t li = c->lst - srv->listeners;
    /* a copy of the template: every key already there in its order, with
       the values of type, asgi and extensions; the others are replaced
       below (no insertion, no resize) */
    s = PyDict_Copy(cy->kind == UPY_ASGI_WS ? x->scope_ws : x->scope_http);
    if (s == NULL)
        return NULL;
    if (!uw) {
        /* one pair per field, in order */
        raw = upy_origin_path(req->path);
        headers = PyList_New((Py_ssize_t)req->num_fields);
        if (headers == NULL)
            goto error;
        for (size_t i = 0; i < req->num_fields; i++) {
            const upy_field *f = &req->fields[i];
            PyObject *t = header_pair(lower_bytes(f->name.p, f->name.len),
                                      f->value.p, f->value.len);
            if (t == NULL)
                goto error;
            PyList_SET_ITEM(headers, (Py_ssize_t)i, t);  /* stolen */
        }
    }
    else {
        const char *q;
        headers = PyList_New(0);
        if (headers == NULL)
            goto error;
        /* nginx sends Content-Type and Content-Length twice: as uwsgi_params'
           CONTENT_TYPE / CONTENT_LENGTH and, with every other header, as
           HTTP_CONTENT_TYPE / HTTP_CONTENT_LENGTH: one header each */
        int http_ct = req_field(req, "http_content_type", 17) != NULL,
            http_cl = req_field(req, "http_content_length", 19) != NULL;
        raw = req->target;
        if (raw.p != NULL && (q = memchr(raw.p, '?', raw.len)) != NULL)
            raw.len = (size_t)(q - raw.p);
        for (size_t i = 0; i < req->num_fields; i++) {
            const upy_field *f = &req->fields[i];
            if ((f->name.len == 12 && memcmp(f->name.p, "CONTENT_TYPE", 12) == 0 &&
                 http_ct) ||
                (f->name.len == 14 && memcmp(f->name.p, "CONTENT_LENGTH", 14) == 0 &&
                 http_cl))
                continue;
            if (f->name.len > 5 && memcmp(f->name.p, "HTTP_", 5) == 0) {
                if (append_pair(headers,
                                var_header_name(f->name.p + 5, f->name.len - 5),
                                f->value.p, f->value.len) < 0)
                    goto error;
            }
            else if ((f->name.len == 12 &&
                      memcmp(f->name.p, "CONTENT_TYPE", 12) == 0) ||
                     (f->name.len == 14 &&
                      memcmp(f->name.p, "CONTENT_LENGTH", 14) == 0)) {
                if (f->value.len > 0 &&
                    append_pair(headers,
                                var_header_name(f->name.p, f->name.len),
                                f->value.p, f->value.len) < 0)
                    goto error;
            }
            else if (f->name.len == 11 &&
                     memcmp(f->name.p, "SCRIPT_NAME", 11) == 0)
                script = f->value;
            else if (f->name.len == 9 && memcmp(f->name.p, "PATH_INFO", 9) == 0)
                pinfo = &f->value;
        }
    }
    /* the template has "1.1", http or ws, GET, b"" and "": set only what
       differs */
    if ((!req->minor_version &&
         PyDict_SetItem(s, x->n_http_version, x->n_v10) < 0) ||
        (https && PyDict_SetItem(s, x->n_scheme,
                                 cy->kind == UPY_ASGI_WS ? x->n_wss : x->n_https) < 0))
        goto error;
    if (cy->kind == UPY_ASGI_HTTP &&
        !(req->method.len == 3 && memcmp(req->method.p, "GET", 3) == 0)) {
        if (req->method.len == 4 && memcmp(req->method.p, "POST", 4) == 0)
            v = Py_NewRef(x->n_POST);
        else
            v = PyUnicode_DecodeLatin1(req->method.p, (Py_ssize_t)req->method.len,
                                       NULL);
        if (upy_dict_set_steal(s, x->n_method, v) < 0)
            goto error;
    }
    /* path: the root path and the rest, decoded (uwsgi: nginx decoded
       PATH_INFO already) */
    if (uw && pinfo != NULL) {
        size_t n = script.len + pinfo->len;
        if (n <= co->scratch_cap) {
            memcpy(co->scratch, script.p, script.len);
            memcpy(co->scratch + script.len, pinfo->p, pinfo->len);
            v = PyUnicode_DecodeUTF8(co->scratch, (Py_ssize_t)n, "replace");
        }
        else
            v = PyUnicode_DecodeUTF8(pinfo->p, (Py_ssize_t)pinfo->len, "replace");
    }
    else
        v = path_str(co, raw.p ? raw.p : "", raw.len, 1);
    if (upy_dict_set_steal(s, x->n_path, v) < 0 ||
        upy_dict_set_steal(s, x->n_raw_path,
                           PyBytes_FromStringAndSize(raw.p ? raw.p : "",
                                                     (Py_ssize_t)raw.len)) < 0 ||
        (query.len > 0 &&
         upy_dict_set_steal(s, x->n_query_string,
                            PyBytes_FromStringAndSize(query.p, (Py_ssize_t)query.len)) < 0) ||
        (script.len > 0 &&
         upy_dict_set_steal(s, x->n_root_path,
                            PyUnicode_DecodeUTF8(script.p, (Py_ssize_t)script.len,
                                                 "replace")) < 0) ||
        PyDict_SetItem(s, x->n_headers, headers) < 0)
        goto error;
    /* client and server */
    if (!uw) {
        v = addr_tuple(c->addr_text + c->host_off, c->host_len,
                       c->addr_text + c->port_off, c->port_len);
        if (upy_dict_set_steal(s, x->n_client, v) < 0 ||
            PyDict_SetItem(s, x->n_server, x->servers[li]) < 0)
            goto error;
    }
    else {
        const upy_str *ra = req_field(req, "remote_addr", 11),
                      *rp = req_field(req, "remote_port", 11),
                      *sn = req_field(req, "server_name", 11),
                      *sp = req_field(req, "server_port", 11);
        v = ra ? addr_tuple(ra->p, ra->len, rp ? rp->p : "", rp ? rp->len : 0)
               : Py_NewRef(Py_None);
        if (upy_dict_set_steal(s, x->n_client, v) < 0)
            goto error;
        v = sn ? addr_tuple(sn->p, sn->len, sp ? sp->p : "", sp ? sp->len : 0)
               : Py_NewRef(x->servers[li]);
        if (upy_dict_set_steal(s, x->n_server, v) < 0)
            goto error;
    }
    if (x->state != NULL &&
        upy_dict_set_steal(s, x->n_state, PyDict_Copy(x->state)) < 0)
        goto error;
    if (cy->kind == UPY_ASGI_WS) {
        PyObject *protos = PyList_New(0);
        if (protos == NULL || PyDict_SetItem(s, x->n_subprotocols, protos) < 0) {
            Py_XDECREF(protos);
            goto error;
        }
        for (size_t i = 0; i < req->num_fields; i++) {
            const upy_field *f = &req->fields[i];
            size_t pos = 0;
            const char *e;
            size_t el;
            if (!(uw ? (f->name.len == 27 &&
                        memcmp(f->name.p, "HTTP_SEC_WEBSOCKET_PROTOCOL", 27) == 0)
                     : UPY_LOWER_EQ(f->name.p, f->name.len,
                                    "sec-websocket-protocol")))
                continue;
            while (upy_ws_next_element(f->value.p, f->value.len, &pos, &e, &el)) {
                PyObject *p = PyUnicode_DecodeLatin1(e, (Py_ssize_t)el, NULL);
                if (p == NULL || PyList_Append(protos, p) < 0) {
                    Py_XDECREF(p);
                    Py_DECREF(protos);
                    goto error;
                }
                Py_DECREF(p);
            }
        }
        Py_DECREF(protos);
    }
    Py_DECREF(headers);
    return s;
error:
    Py_XDECREF(headers);
    Py_DECREF(s);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Starting a cycle                                                    */
/* ------------------------------------------------------------------ */

static upy_asgi *
cycle_new(upy_server *srv, upy_conn *c)
{
    upy_asgi *cy = PyObject_GC_New(upy_asgi, srv->st->Asgi_Type);
    if (cy == NULL)
        return NULL;
    memset((char *)cy + sizeof(PyObject), 0, sizeof *cy - sizeof(PyObject));
    cy->srv = (upy_server *)Py_NewRef(srv);
    cy->conn = c;
    cy->sf_fd = -1;
    cy->content_length = -1;
    PyObject_GC_Track(cy);
    return cy;
}

static void
list_append(upy_asgi *cy)
{
    upy_asgi_ctx *x = CTX(cy);
    cy->older = x->newest;
    cy->newer = NULL;
    if (x->newest)
        x->newest->newer = cy;
    else
        x->oldest = cy;
    x->newest = cy;
    cy->in_list = 1;
    Py_INCREF(cy);
}

/* Send a small canned HTTP response ourselves (a bad handshake). */
static void
send_plain(upy_conn *c, int status, const char *reason, const char *extra)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n%sConnection: close\r\n\r\n%s\n",
                     status, status == 426 ? "Upgrade Required" : "Bad Request",
                     strlen(reason) + 1, extra, reason);
    if (n > 0 && (size_t)n < sizeof buf)
        (void)send(c->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void app_ended(upy_asgi *cy);
static PyObject *run_new(upy_server *srv, upy_asgi *cy, PyObject *scope);
static PyObject *run_context(upy_asgi_ctx *x);
static void run_stage(upy_asgi_run *r, upy_asgi *cy, PyObject *scope,
                      PyObject *ctx);
static PyObject *run_wake(upy_asgi_run *r);
static void run_release(upy_asgi_run *r, int wake);
static upy_asgi *run_take_cycle(upy_asgi_run *r);
static void run_end(upy_asgi_run *r);

int
upy_asgi_start(upy_loop *loop, upy_conn *c, const upy_request *req)
{
    upy_server *srv = loop->srv;
    upy_asgi_ctx *x = srv->asgi;
    upy_asgi *cy;
    upy_asgi_run *kept;
    PyObject *scope = NULL, *coro = NULL, *task = NULL;
    int status = 400, ws;
    const char *why = NULL;

    cy = cycle_new(srv, c);
    if (cy == NULL) {
        upy_log_exception(srv, "ASGI: cannot start a request");
        upy_conn_close(loop, c);
        return -1;
    }
    cy->started = upy_now();
    {
        size_t ml = req->method.len < sizeof cy->method - 1
                        ? req->method.len : sizeof cy->method - 1;
        size_t ul = req->target.len < sizeof cy->uri - 1
                        ? req->target.len : sizeof cy->uri - 1;
        memcpy(cy->method, req->method.p, ml);
        memcpy(cy->uri, req->target.p, ul);  /* NUL-terminated: zeroed */
    }
    cy->minor_version = req->minor_version;
    cy->is_uwsgi = upy_protocols[req->proto]->vars;
    cy->is_head = req->is_head;
    cy->keep_alive = c->keep_alive;
    ws = ws_handshake(cy, req, &status, &why);
    if (ws < 0) {
        upy_log(srv, 30, "%d from %s on %s: %s", status, c->addr_text,
                c->lst->name_c, why);
        send_plain(c, status, why,
                   status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "");
        Py_DECREF(cy);
        upy_conn_linger(loop, c);
        return 0;
    }
    cy->kind = ws ? UPY_ASGI_WS : UPY_ASGI_HTTP;
    cy->ws_scope = ws != 0;
    cy->expect_continue = req->expect_continue;
    if (cy->kind == UPY_ASGI_HTTP) {
        cy->chunked_body = c->chunked;
        cy->body_left = c->chunked ? 0 : c->content_length;
        cy->body_done = !c->chunked && c->content_length == 0;
        if (c->chunked)
            upy_chunked_init(&cy->chunk);
        list_append(cy);
    }
    else {
        cy->body_done = 1;
        cy->keep_alive = 0;
    }
    scope = build_scope(cy, c, req);
    if (scope == NULL)
        goto error;
    kept = (upy_asgi_run *)c->asgi_park;
    if (kept != NULL && (kept->state != RUN_PARKED || kept->wake_cb == NULL ||
                         kept->task == NULL)) {
        /* its app still runs (work after the response): this request gets
           a task of its own, and that one ends when its app returns */
        run_release(kept, WAKE_END);
        kept = NULL;
    }
    if (kept != NULL) {
        /* the task kept on c runs this request: woken below */
        PyObject *rctx = run_context(x);
        if (rctx == NULL && PyErr_Occurred())
            goto error;  /* c closes: the kept task ends */
        c->asgi_park = NULL;  /* the connection's reference: ours now */
        kept->conn = NULL;
        run_stage(kept, cy, scope, rctx);
    }
    else {
        coro = run_new(srv, cy, scope);
        if (coro == NULL)
            goto error;
    }
    Py_CLEAR(scope);
    if (cy->in_list && cy == x->oldest)
        slot_update(srv);
    /* c is the cycle's before the task runs: an eager task factory
       (asyncio.eager_task_factory), eager_start, or a kept task woken at
       once runs the app's first step right here, and that step may finish
       the response */
    c->state = UPY_CONN_ASGI;
    c->asgi = Py_NewRef((PyObject *)cy);  /* the connection's reference */
    c->deadline = 0;
    cy->counted = 1;
    x->ntasks++;
    if (kept != NULL) {
        task = run_wake(kept);
        if (task == NULL) {
            /* its task cannot be woken (the loop is closing): the request
               ends here (500), the run lets go of it */
            upy_asgi *back = run_take_cycle(kept);
            Py_XDECREF(back);
            run_end(kept);
        }
        Py_DECREF(kept);
    }
    else if (x->task_type != NULL) {
        /* asyncio.Task(coro, loop=loop, eager_start=True) (3.12+: the
           first step runs here, as the current task; a hello completes
           without being scheduled or registered), or on 3.11
           asyncio.Task(coro, loop=loop, name=...) (what create_task does,
           without formatting a "Task-N" name for each request) */
        PyObject *argv[4] = {NULL, coro, x->loop, x->task_kwarg};
        task = PyObject_Vectorcall(x->task_type, argv + 1,
                                   1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                   x->task_kwnames);
    }
    else
        task = PyObject_CallOneArg(x->create_task, coro);
    if (coro != NULL) {
        upy_asgi_run *r = (upy_asgi_run *)coro;
        if (task != NULL && r->task == NULL &&
            (r->cy != NULL || r->state == RUN_PARKED))
            r->task = Py_NewRef(task);  /* it may be kept: it holds its task */
        Py_DECREF(coro);
    }
    if (task == NULL) {
        /* KeyboardInterrupt or SystemExit from the app's first step run
           here stops the loop, as it does from a scheduled step */
        PyObject *et = NULL, *ev = NULL, *etb = NULL;
        int fatal = PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
                    PyErr_ExceptionMatches(PyExc_SystemExit);
        if (fatal)
            PyErr_Fetch(&et, &ev, &etb);
        else
            upy_log_exception(srv, "ASGI: cannot start the app");
        app_ended(cy);
        if (cy->conn == c) {
            cy->status = 500;
            upy_send_error(srv, c, 500, "internal error");
            upy_conn_close(loop, c);
        }
        else if (fatal && c->state != UPY_CONN_CLOSED)
            upy_conn_close(loop, c);  /* read no further on it */
        Py_DECREF(cy);
        if (fatal)
            PyErr_Restore(et, ev, etb);
        return c->state == UPY_CONN_CLOSED ? -1 : 0;
    }
    if (cy->app_done)
        Py_DECREF(task);  /* it ended already */
    else
        cy->task = task;
    if (cy->conn == c)
        rewatch(cy);
    Py_DECREF(cy);  /* the reference cycle_new made */
    return c->state == UPY_CONN_CLOSED ? -1 : 0;
error:
    upy_log_exception(srv, "ASGI: cannot start the app");
    Py_XDECREF(coro);
    Py_XDECREF(scope);
    list_remove(cy);
    cy->conn = NULL;
    Py_DECREF(cy);
    upy_send_error(srv, c, 500, "internal error");
    upy_conn_close(loop, c);
    return -1;
}

/* ------------------------------------------------------------------ */
/* HTTP: receive                                                       */
/* ------------------------------------------------------------------ */

/* An http.request message of the body bytes now in the buffer, or NULL
   with nothing to give (no exception) or with an exception. */
static PyObject *
http_take_body(upy_asgi *cy, int *error)
{
    upy_conn *c = cy->conn;
    upy_asgi_ctx *x = CTX(cy);
    char *p = c->buf + c->head_len;
    size_t avail = c->len - c->head_len, take = 0, rest = 0;
    PyObject *m, *b;
    *error = 0;
    if (!cy->chunked_body) {
        take = (uint64_t)cy->body_left < avail ? (size_t)cy->body_left : avail;
        if (take == 0 && cy->body_left > 0)
            return NULL;
        cy->body_left -= (int64_t)take;
        if (cy->body_left == 0)
            cy->body_done = 1;
        rest = avail - take;
        b = PyBytes_FromStringAndSize(p, (Py_ssize_t)take);
    }
    else {
        size_t dlen = avail;
        ssize_t rc;
        if (avail == 0)
            return NULL;
        rc = upy_chunked_decode(&cy->chunk, p, &dlen,
                                cy->srv->limits.limit_post);
        if (rc == UPY_PARSE_ERROR) {
            upy_log(cy->srv, 30, "%d from %s: %s", cy->chunk.error_status,
                    c->addr_text, cy->chunk.error_reason ? cy->chunk.error_reason
                                                         : "bad chunked body");
            *error = 1;
            return NULL;
        }
        take = dlen;
        if (rc >= 0) {
            cy->body_done = 1;
            rest = (size_t)rc;
            /* the decoder moved the pipelined bytes to p + dlen */
        }
        if (take == 0 && !cy->body_done) {
            c->len = c->head_len;
            return NULL;
        }
        b = PyBytes_FromStringAndSize(p, (Py_ssize_t)take);
    }
    if (b == NULL) {
        *error = 1;
        return NULL;
    }
    memmove(p, p + take, rest);
    c->len = c->head_len + rest;
    cy->body_total += take;
    if (cy->srv->limits.limit_post && !cy->chunked_body &&
        cy->body_total > cy->srv->limits.limit_post) {
        Py_DECREF(b);
        *error = 1;
        return NULL;
    }
    m = msg_new(x, x->n_http_request);
    if (m == NULL || msg_put(m, x->n_body, b) < 0 ||
        PyDict_SetItem(m, x->n_more_body, cy->body_done ? Py_False : Py_True) < 0) {
        Py_XDECREF(m);
        *error = 1;
        return NULL;
    }
    return m;
}

static PyObject *
http_receive(upy_asgi *cy)
{
    upy_asgi_ctx *x = CTX(cy);
    upy_conn *c = cy->conn;
    PyObject *m;
    int err;
    if (c == NULL || cy->rstate == RS_DONE || cy->disconnected) {
        return ready_new(cy->srv, PyDict_Copy(x->disconnect_msg));
    }
    if (cy->body_done) {
        if (cy->body_total == 0 && !cy->connect_given) {
            /* the one empty http.request of a bodiless request */
            cy->connect_given = 1;
            m = msg_new(x, x->n_http_request);
            if (m == NULL || PyDict_SetItem(m, x->n_body, cy->srv->st->empty_bytes) < 0 ||
                PyDict_SetItem(m, x->n_more_body, Py_False) < 0) {
                Py_XDECREF(m);
                return NULL;
            }
            return ready_new(cy->srv, m);
        }
        /* later: wait for the disconnect (or the response's end) */
        m = fut_new(cy, &cy->recv_fut);
        rewatch(cy);
        return m;
    }
    cy->connect_given = 1;
    m = http_take_body(cy, &err);
    if (m != NULL)
        return ready_new(cy->srv, m);
    if (err) {
        if (PyErr_Occurred())
            return NULL;
        /* a bad chunked body or over limit-post: the connection ends */
        cy->keep_alive = 0;
        if (cy->rstate == RS_INIT)
            upy_send_error(cy->srv, c, 400, "bad request body");
        cy->status = cy->status ? cy->status : 400;
        http_abort(cy);
        return ready_new(cy->srv, PyDict_Copy(x->disconnect_msg));
    }
    if (cy->expect_continue && !cy->sent_continue && cy->rstate == RS_INIT) {
        /* RFC 9110 §10.1.1: the app asks for the body */
        cy->sent_continue = 1;
        if (OUT_LIT(cy, "HTTP/1.1 100 Continue\r\n\r\n") < 0)
            return NULL;
        if (out_write(cy, NULL, 0) < 0) {
            upy_conn_close(cy->srv->loop, c);
            return ready_new(cy->srv, PyDict_Copy(x->disconnect_msg));
        }
    }
    m = fut_new(cy, &cy->recv_fut);
    if (m != NULL) {
        c->deadline = upy_now() + c->lst->socket_timeout;
        rewatch(cy);
    }
    return m;
}

/* Readable, HTTP. */
static void
http_readable(upy_asgi *cy)
{
    upy_conn *c = cy->conn;
    upy_loop *loop = cy->srv->loop;
    ssize_t n;
    if (upy_conn_reserve(loop, c, UPY_ASGI_READ) < 0) {
        upy_conn_close(loop, c);
        return;
    }
    n = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        upy_conn_close(loop, c);
        return;
    }
    if (n == 0) {
        if (!cy->body_done)
            upy_log(cy->srv, 30, "client %s closed the connection before "
                    "sending the whole body (%llu bytes received)",
                    c->addr_text, (unsigned long long)cy->body_total);
        upy_conn_close(loop, c);  /* detaches: http.disconnect */
        return;
    }
    c->len += (size_t)n;
    c->last_io = upy_now();
    if (fut_alive(cy, &cy->recv_fut) && !cy->body_done) {
        int err;
        PyObject *m = http_take_body(cy, &err);
        if (m != NULL) {
            c->deadline = 0;
            fut_resolve(cy, &cy->recv_fut, m, NULL);
        }
        else if (err) {
            if (PyErr_Occurred())
                upy_log_exception(cy->srv, "ASGI: reading a body");
            cy->keep_alive = 0;
            if (cy->rstate == RS_INIT)
                upy_send_error(cy->srv, c, 400, "bad request body");
            if (cy->status == 0)
                cy->status = 400;
            http_abort(cy);
            return;
        }
        else
            c->deadline = c->last_io + c->lst->socket_timeout;
    }
    rewatch(cy);
}

/* ------------------------------------------------------------------ */
/* HTTP: send                                                          */
/* ------------------------------------------------------------------ */

static const char *
reason_phrase(int s)
{
    switch (s) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

/* bytes-like data of o (bytes, bytearray, memoryview): 0 and view, or -1
   with TypeError naming what. */
static int
bytes_of(PyObject *o, Py_buffer *view, const char *what)
{
    if (PyObject_GetBuffer(o, view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "ASGI: %s must be bytes, not %.100s",
                     what, Py_TYPE(o)->tp_name);
        return -1;
    }
    return 0;
}

/* RFC 9110 §5.6.2 tchar: visible ASCII but the separators. */
static int
token_char(unsigned char ch)
{
    /* bit i of word ch/32: ch is a tchar */
    static const uint32_t tchar[8] = {
        0x00000000u,  /* 0x00-0x1f: controls */
        0x03ff6cfau,  /* 0x20-0x3f: ! # $ % & ' * + - . 0-9 */
        0xc7fffffeu,  /* 0x40-0x5f: A-Z ^ _ */
        0x57ffffffu,  /* 0x60-0x7f: ` a-z | ~ */
        0, 0, 0, 0};
    return (tchar[ch >> 5] >> (ch & 31)) & 1u;
}

/* Decimal digits of v into p (room for 20); returns their count. */
static size_t
fmt_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* Append the app's headers (validated: a token name, no CR/LF/NUL in a
   value: RFC 9110 §5.1, §5.5).  Notes Content-Length and Connection. */
/* A header name or value: a bytes object's own storage (no buffer
   request), else any buffer (bytearray, memoryview); view->obj is NULL
   for the first, so PyBuffer_Release() does nothing. */
static int
header_bytes(PyObject *o, Py_buffer *view, const char **p, size_t *n,
             const char *what)
{
    if (PyBytes_CheckExact(o)) {
        view->obj = NULL;
        *p = PyBytes_AS_STRING(o);
        *n = (size_t)PyBytes_GET_SIZE(o);
        return 0;
    }
    if (bytes_of(o, view, what) < 0)
        return -1;
    *p = view->buf;
    *n = (size_t)view->len;
    return 0;
}

/* One [name, value] header of the app's: checked, noted (Content-Length,
   Connection, Date, ...) and queued.  -1 with an exception. */
static int
append_header(upy_asgi *cy, PyObject *pair, int *has_date, int ws)
{
    PyObject *seq;
    Py_buffer nv = {0}, vv = {0};
    const unsigned char *n, *v;
    const char *np, *vp;
    size_t nl, vl;
    int bad = 0;
    if (PyTuple_CheckExact(pair) || PyList_CheckExact(pair))
        seq = Py_NewRef(pair);
    else if ((seq = PySequence_Fast(pair, "ASGI: a header must be a "
                                    "[name, value] pair")) == NULL)
        return -1;
    if (PySequence_Fast_GET_SIZE(seq) != 2) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_TypeError, "ASGI: a header must be a "
                        "[name, value] pair");
        return -1;
    }
    if (header_bytes(PySequence_Fast_GET_ITEM(seq, 0), &nv, &np, &nl,
                     "a header name") < 0) {
        Py_DECREF(seq);
        return -1;
    }
    if (header_bytes(PySequence_Fast_GET_ITEM(seq, 1), &vv, &vp, &vl,
                     "a header value") < 0) {
        PyBuffer_Release(&nv);
        Py_DECREF(seq);
        return -1;
    }
    n = (const unsigned char *)np;
    v = (const unsigned char *)vp;
    {
        /* without a branch per byte: the name all tchars, the value
           without CR, LF or NUL */
        unsigned ok = nl > 0, vbad = 0;
        for (size_t i = 0; i < nl; i++)
            ok &= token_char(n[i]);
        for (size_t i = 0; i < vl; i++)
            vbad |= (unsigned)(v[i] == '\r') | (v[i] == '\n') | (v[i] == 0);
        bad = !ok || vbad;
    }
    if (bad) {
        PyErr_Format(PyExc_ValueError, "ASGI: invalid header %R",
                     PySequence_Fast_GET_ITEM(seq, 0));
    }
    else if (nl == 10 && upy_lower_eq(np, nl, "connection", 10)) {
        /* ours to send; "close" is honoured */
        if (upy_ws_has_token(vp, vl, "close"))
            cy->keep_alive = 0;
    }
    else if (ws && ((nl == 7 && upy_lower_eq(np, nl, "upgrade", 7)) ||
                    (nl == 20 && upy_lower_eq(np, nl, "sec-websocket-accept", 20)))) {
        /* ours */
    }
    else {
        if (!ws && nl == 14 && upy_lower_eq(np, nl, "content-length", 14)) {
            int64_t cl = 0;
            int ok = vl > 0 && vl < 19;
            for (size_t i = 0; i < vl && ok; i++) {
                ok = v[i] >= '0' && v[i] <= '9';
                cl = cl * 10 + (v[i] - '0');
            }
            if (!ok) {
                PyErr_SetString(PyExc_ValueError,
                                "ASGI: invalid Content-Length header");
                bad = 1;
            }
            else
                cy->content_length = cl;
        }
        else if (!ws && nl == 17 && upy_lower_eq(np, nl, "transfer-encoding", 17))
            cy->content_length = -2; /* the app frames it: never ours */
        else if (nl == 4 && upy_lower_eq(np, nl, "date", 4))
            *has_date = 1;
        if (!bad) {
            /* name ": " value CRLF, in one reservation */
            if (nl + vl > (size_t)PY_SSIZE_T_MAX - 4) {
                PyErr_NoMemory();  /* (each is a Python object's size) */
                bad = 1;
            }
            else if (out_reserve(cy, nl + vl + 4) < 0)
                bad = 1;
            else {
                char *o = cy->out + cy->out_len;
                memcpy(o, n, nl);
                o[nl] = ':';
                o[nl + 1] = ' ';
                memcpy(o + nl + 2, v, vl);
                o[nl + 2 + vl] = '\r';
                o[nl + 3 + vl] = '\n';
                cy->out_len += nl + vl + 4;
            }
        }
    }
    PyBuffer_Release(&nv);
    PyBuffer_Release(&vv);
    Py_DECREF(seq);
    return bad ? -1 : 0;
}

static int
append_headers(upy_asgi *cy, PyObject *headers, int *has_date, int ws)
{
    PyObject *it, *item;
    if (headers == NULL)
        return 0;
    if (PyList_CheckExact(headers) || PyTuple_CheckExact(headers)) {
        /* by index, each pair held while it is read (a buffer export
           could run code that changes the list) */
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(headers); i++) {
            int rc;
            item = Py_NewRef(PySequence_Fast_GET_ITEM(headers, i));
            rc = append_header(cy, item, has_date, ws);
            Py_DECREF(item);
            if (rc < 0)
                return -1;
        }
        return 0;
    }
    it = PyObject_GetIter(headers);
    if (it == NULL)
        return -1;
    while ((item = PyIter_Next(it)) != NULL) {
        int rc = append_header(cy, item, has_date, ws);
        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* Queue the response head, with body_len >= 0 the whole body's length
   when the app gave it at once (more_body false). */
static int
http_head(upy_asgi *cy, int64_t body_len)
{
    upy_server *srv = cy->srv;
    char line[96];
    int has_date = 0, n;
    size_t mark = cy->out_len;
    int st = cy->status;
    cy->no_body = cy->is_head || st < 200 || st == 204 || st == 304;
    if (st == 200) {
        memcpy(line, "HTTP/1.1 200 OK\r\n", 17);
        n = 17;
    }
    else
        n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", st, reason_phrase(st));
    if (out_append(cy, line, (size_t)n) < 0 ||
        append_headers(cy, cy->headers, &has_date, 0) < 0) {
        cy->out_len = mark;
        return -1;
    }
    Py_CLEAR(cy->headers);
    if (cy->content_length == -1) {
        if (body_len >= 0 && !(st < 200 || st == 204 || st == 304) &&
            !(cy->is_head && body_len == 0)) {
            memcpy(line, "Content-Length: ", 16);
            n = 16 + (int)fmt_u64(line + 16, (uint64_t)body_len);
            line[n++] = '\r';
            line[n++] = '\n';
            if (out_append(cy, line, (size_t)n) < 0)
                return -1;
            cy->content_length = body_len;
        }
        else if (!cy->no_body) {
            if (!cy->is_uwsgi && cy->minor_version == 1) {
                cy->chunked = 1;
                if (OUT_LIT(cy, "Transfer-Encoding: chunked\r\n") < 0)
                    return -1;
            }
            else
                cy->keep_alive = 0;  /* close-delimited */
        }
    }
    else if (cy->content_length == -2)
        cy->keep_alive = 0;  /* the app's own transfer coding: close after */
    if (srv->add_headers != NULL &&
        out_append(cy, PyBytes_AS_STRING(srv->add_headers),
                   (size_t)PyBytes_GET_SIZE(srv->add_headers)) < 0)
        return -1;
    if (!has_date) {
        const char *d = upy_date_header();
        if (out_append(cy, d, strlen(d)) < 0)
            return -1;
    }
    if (!cy->is_uwsgi) {
        if (!cy->keep_alive || srv->stopping) {
            cy->keep_alive = 0;
            if (OUT_LIT(cy, "Connection: close\r\n") < 0)
                return -1;
        }
        else if (cy->minor_version == 0 && OUT_LIT(cy, "Connection: keep-alive\r\n") < 0)
            return -1;
    }
    return OUT_LIT(cy, "\r\n");
}

/* The send() awaitable: completed when the queue is below the mark, else
   a future resolved by the loop once it drains. */
static PyObject *
send_wait(upy_asgi *cy)
{
    PyObject *f;
    if (cy->conn == NULL || out_pending(cy) == 0 ||
        (cy->sf_fd < 0 && cy->out_len - cy->out_off < UPY_ASGI_OUT_HIGH / 4)) {
        rewatch(cy);
        return Py_NewRef(CTX(cy)->ready_none);
    }
    f = fut_new(cy, &cy->send_fut);
    if (f != NULL) {
        cy->conn->deadline = upy_now() + cy->conn->lst->socket_timeout;
        rewatch(cy);
    }
    return f;
}

static int
after_write(upy_asgi *cy, int rc)
{
    if (rc < 0 && cy->conn != NULL) {
        cy->keep_alive = 0;
        upy_conn_close(cy->srv->loop, cy->conn);
    }
    return 0;
}

/* The response is complete on our side: finish now, or once the queue
   drained (the writable handler finishes it). */
static void
http_complete(upy_asgi *cy)
{
    cy->rstate = RS_DONE;
    if (cy->conn == NULL)
        return;
    if (out_pending(cy) == 0)
        http_finish(cy, 1);
    else {
        /* the rest goes when the socket takes it (writable()) */
        cy->conn->deadline = upy_now() + cy->conn->lst->socket_timeout;
        rewatch(cy);
    }
}

static PyObject *
http_send(upy_asgi *cy, PyObject *msg, PyObject *type)
{
    upy_asgi_ctx *x = CTX(cy);
    PyObject *v;
    if (str_eq(type, x->n_http_start)) {
        long status;
        if (cy->rstate != RS_INIT) {
            PyErr_SetString(PyExc_RuntimeError, "ASGI: http.response.start "
                            "sent twice");
            return NULL;
        }
        v = PyDict_GetItemWithError(msg, x->n_status);
        if (v == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "ASGI: http.response.start "
                                "without a status");
            return NULL;
        }
        status = PyLong_AsLong(v);
        if (status == -1 && PyErr_Occurred())
            return NULL;
        if (status < 100 || status > 999) {
            PyErr_Format(PyExc_ValueError, "ASGI: invalid status %ld", status);
            return NULL;
        }
        cy->status = (int)status;
        v = PyDict_GetItemWithError(msg, x->n_headers);
        if (v == NULL && PyErr_Occurred())
            return NULL;
        Py_XSETREF(cy->headers, Py_XNewRef(v));
        v = PyDict_GetItemWithError(msg, x->n_trailers);
        cy->want_trailers = v != NULL && PyObject_IsTrue(v) == 1;
        cy->rstate = RS_STARTED;
        if (cy->conn == NULL) {
            PyObject *e = gone_error();
            if (e != NULL) {
                PyErr_SetObject(PyExc_OSError, e);
                Py_DECREF(e);
            }
            return NULL;
        }
        return Py_NewRef(x->ready_none);
    }
    if (str_eq(type, x->n_http_body)) {
        Py_buffer view;
        int more, rc;
        if (cy->rstate != RS_STARTED && cy->rstate != RS_BODY) {
            PyErr_SetString(PyExc_RuntimeError, cy->rstate == RS_INIT
                            ? "ASGI: http.response.body before http.response.start"
                            : "ASGI: http.response.body after the response ended");
            return NULL;
        }
        v = PyDict_GetItemWithError(msg, x->n_more_body);
        if (v == NULL && PyErr_Occurred())
            return NULL;
        more = v != NULL && PyObject_IsTrue(v) == 1;
        v = PyDict_GetItemWithError(msg, x->n_body);
        if (v == NULL && PyErr_Occurred())
            return NULL;
        if (v == NULL)
            v = cy->srv->st->empty_bytes;
        if (bytes_of(v, &view, "http.response.body's body") < 0)
            return NULL;
        if (cy->conn == NULL) {
            PyBuffer_Release(&view);
            PyObject *e = gone_error();
            if (e != NULL) {
                PyErr_SetObject(PyExc_OSError, e);
                Py_DECREF(e);
            }
            return NULL;
        }
        if (cy->rstate == RS_STARTED) {
            if (http_head(cy, more ? -1 : (int64_t)view.len) < 0) {
                PyBuffer_Release(&view);
                return NULL;
            }
            cy->rstate = RS_BODY;
        }
        rc = 0;
        if (!cy->no_body && view.len > 0) {
            size_t n = (size_t)view.len;
            if (cy->content_length >= 0 &&
                cy->sent + n > (uint64_t)cy->content_length) {
                /* never more than the app's Content-Length */
                n = (size_t)((uint64_t)cy->content_length - cy->sent);
            }
            if (cy->chunked && n > 0) {
                char hx[24];
                int hl = snprintf(hx, sizeof hx, "%zx\r\n", n);
                if (out_append(cy, hx, (size_t)hl) < 0) {
                    PyBuffer_Release(&view);
                    return NULL;
                }
            }
            rc = out_write(cy, view.buf, n);
            cy->sent += n;
            if (rc == 0 && cy->chunked && n > 0)
                rc = out_append(cy, "\r\n", 2) < 0 ? -2 : 0;
        }
        PyBuffer_Release(&view);
        if (rc == -2)
            return NULL;
        if (!more) {
            if (cy->chunked && !cy->want_trailers && rc == 0)
                rc = out_append(cy, "0\r\n\r\n", 5) < 0 ? -2 : 0;
            if (rc == -2)
                return NULL;
            if (cy->want_trailers && cy->chunked) {
                cy->rstate = RS_TRAILERS;
            }
            else {
                if (!cy->no_body && cy->content_length >= 0 &&
                    cy->sent < (uint64_t)cy->content_length)
                    cy->keep_alive = 0;  /* shorter than it said */
                if (rc == 0)
                    rc = out_write(cy, NULL, 0);
                after_write(cy, rc);
                if (cy->want_trailers)
                    cy->rstate = RS_TRAILERS;  /* trailers dropped: not chunked */
                else {
                    http_complete(cy);
                    return Py_NewRef(x->ready_none);
                }
            }
        }
        if (rc == 0 && cy->rstate != RS_TRAILERS && more && cy->out_len > cy->out_off)
            rc = out_write(cy, NULL, 0);
        after_write(cy, rc);
        return send_wait(cy);
    }
    if (str_eq(type, x->n_http_trailers)) {
        /* http.response.trailers (the "HTTP Trailers" extension): the
           fields of each message, after the last chunk; more_trailers
           says whether more messages follow */
        int has_date = 0, rc = 0, more;
        if (cy->rstate != RS_TRAILERS) {
            PyErr_SetString(PyExc_RuntimeError, cy->want_trailers
                            ? "ASGI: http.response.trailers before the last "
                              "http.response.body"
                            : "ASGI: http.response.trailers without trailers "
                              "announced in http.response.start");
            return NULL;
        }
        v = PyDict_GetItemWithError(msg, x->n_more_trailers);
        if (v == NULL && PyErr_Occurred())
            return NULL;
        more = v != NULL && PyObject_IsTrue(v) == 1;
        if (cy->conn == NULL)
            return Py_NewRef(x->ready_none);
        if (cy->chunked) {
            if (!cy->sent_trailer0) {
                cy->sent_trailer0 = 1;
                if (OUT_LIT(cy, "0\r\n") < 0)
                    return NULL;
            }
            v = PyDict_GetItemWithError(msg, x->n_headers);
            if (v == NULL && PyErr_Occurred())
                return NULL;
            if (append_headers(cy, v, &has_date, 1) < 0)
                return NULL;
        }
        if (more)
            return Py_NewRef(x->ready_none);
        if (cy->chunked) {
            if (OUT_LIT(cy, "\r\n") < 0)
                return NULL;
            rc = out_write(cy, NULL, 0);
        }
        after_write(cy, rc);
        http_complete(cy);
        return Py_NewRef(x->ready_none);
    }
    if (str_eq(type, x->n_http_pathsend)) {
        PyObject *path, *fs = NULL;
        struct stat sb;
        int fd, rc;
        if (cy->rstate != RS_STARTED) {
            PyErr_SetString(PyExc_RuntimeError, "ASGI: http.response.pathsend "
                            "must follow http.response.start");
            return NULL;
        }
        path = PyDict_GetItemWithError(msg, x->n_path);
        if (path == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "ASGI: pathsend without a path");
            return NULL;
        }
        if (!PyUnicode_FSConverter(path, &fs))
            return NULL;
        fd = open(PyBytes_AS_STRING(fs), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        Py_DECREF(fs);
        if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
            if (fd >= 0) {
                close(fd);
                errno = EISDIR;
            }
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
            return NULL;
        }
        if (cy->conn == NULL) {
            close(fd);
            return Py_NewRef(x->ready_none);
        }
        if (http_head(cy, (int64_t)sb.st_size) < 0) {
            close(fd);
            return NULL;
        }
        cy->rstate = RS_BODY;
        if (cy->no_body || cy->chunked) {
            /* HEAD, or a length the app set differently (chunked never:
               the size is known) */
            close(fd);
        }
        else {
            uint64_t n = (uint64_t)sb.st_size;
            if (cy->content_length >= 0 && (uint64_t)cy->content_length < n)
                n = (uint64_t)cy->content_length;
            cy->sf_fd = fd;
            cy->sf_off = 0;
            cy->sf_left = n;
        }
        rc = out_flush(cy);
        after_write(cy, rc);
        if (cy->conn != NULL && cy->content_length >= 0 && !cy->no_body &&
            (uint64_t)sb.st_size < (uint64_t)cy->content_length)
            cy->keep_alive = 0;
        http_complete(cy);
        return Py_NewRef(x->ready_none);
    }
    PyErr_Format(PyExc_ValueError, "ASGI: unexpected message type %R for an "
                 "http scope", type);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* WebSocket                                                           */
/* ------------------------------------------------------------------ */

/* Queue a frame (server frames are never masked, §5.1). */
static int
ws_frame(upy_asgi *cy, int opcode, const char *p, size_t n)
{
    uint8_t h[14];
    size_t hl = upy_ws_build_header(h, 1, opcode, n);
    if (out_append(cy, h, hl) < 0)
        return -1;
    return out_write(cy, p, n);
}

/* Send our close frame (once) and wait for the peer's. */
static int
ws_send_close(upy_asgi *cy, int code, const char *reason, size_t rlen)
{
    char payload[125];
    int rc;
    if (cy->close_sent || cy->conn == NULL)
        return 0;
    cy->close_sent = 1;
    if (rlen > 123) {
        rlen = 123;
        while (rlen > 0 && ((unsigned char)reason[rlen] & 0xC0) == 0x80)
            rlen--;  /* never inside a UTF-8 sequence (§5.5.1) */
    }
    payload[0] = (char)(code >> 8);
    payload[1] = (char)(code & 0xff);
    memcpy(payload + 2, reason, rlen);
    rc = ws_frame(cy, UPY_WS_CLOSE, payload, code ? 2 + rlen : 0);
    if (cy->wstate == WS_OPEN)
        cy->wstate = WS_CLOSING;
    cy->close_deadline = upy_now() + UPY_WS_CLOSE_WAIT;
    return rc;
}

/* Deliver a message: to the waiting receive(), or to the inbox. */
static void
ws_deliver(upy_asgi *cy, PyObject *m)
{
    if (m == NULL) {
        upy_log_exception(cy->srv, "ASGI: cannot build a WebSocket message");
        return;
    }
    if (fut_alive(cy, &cy->recv_fut)) {
        fut_resolve(cy, &cy->recv_fut, m, NULL);
        return;
    }
    if (cy->inbox == NULL && (cy->inbox = PyList_New(0)) == NULL) {
        Py_DECREF(m);
        upy_log_exception(cy->srv, "ASGI: cannot queue a WebSocket message");
        return;
    }
    if (PyList_Append(cy->inbox, m) < 0)
        upy_log_exception(cy->srv, "ASGI: cannot queue a WebSocket message");
    Py_DECREF(m);
}

static PyObject *
ws_disconnect_msg(upy_asgi *cy)
{
    upy_asgi_ctx *x = CTX(cy);
    PyObject *m = msg_new(x, x->n_ws_disconnect);
    if (m == NULL || msg_put(m, x->n_code, PyLong_FromLong(cy->close_code ? cy->close_code : 1005)) < 0 ||
        PyDict_SetItem(m, x->n_reason, cy->close_reason ? cy->close_reason
                                                        : cy->srv->st->s_empty) < 0) {
        Py_XDECREF(m);
        return NULL;
    }
    cy->disconnect_given = 1;
    return m;
}

/* The WebSocket is over and its output is out: close, or, after a failure
   with the peer's data unread, shut the write side and drain the input for
   a moment (as after an HTTP error) so the close frame is not destroyed by
   the reset a close with unread data sends. */
static void
ws_end(upy_asgi *cy)
{
    upy_conn *c = cy->conn;
    upy_loop *loop = cy->srv->loop;
    if (c == NULL)
        return;
    if (cy->linger_end) {
        upy_asgi_detach(c);
        upy_conn_linger(loop, c);
    }
    else
        upy_conn_close(loop, c);
}

/* A protocol failure (§7.1.7): close with code, no more reading. */
static void
ws_fail(upy_asgi *cy, int code, const char *why)
{
    upy_conn *c = cy->conn;
    upy_log(cy->srv, 30, "WebSocket from %s: %s: closing with %d",
            c ? c->addr_text : "?", why, code);
    cy->close_code = code;
    (void)ws_send_close(cy, code, "", 0);
    cy->close_recv = 1;
    cy->linger_end = 1;
    cy->wstate = WS_CLOSED;
    ws_deliver(cy, ws_disconnect_msg(cy));
    if (c != NULL) {
        c->len = 0;
        if (out_pending(cy) == 0)
            ws_end(cy);
    }
}

/* Parse the frames in the buffer.  0, or -1 when c was closed. */
static int
ws_parse(upy_asgi *cy)
{
    upy_asgi_ctx *x = CTX(cy);
    upy_conn *c = cy->conn;
    size_t off = 0;
    while (c != NULL && cy->conn == c && cy->wstate != WS_CLOSED &&
           (cy->inbox == NULL || PyList_GET_SIZE(cy->inbox) < UPY_ASGI_INBOX_MAX)) {
        upy_ws_frame f;
        int code = 0;
        uint8_t *p = (uint8_t *)c->buf + off;
        size_t avail = c->len - off;
        ssize_t hl = upy_ws_parse_header(p, avail, 1, x->ws_max, &f, &code);
        if (hl == UPY_WS_INCOMPLETE)
            break;
        if (hl < 0) {
            ws_fail(cy, code ? code : 1002, code == 1009 ? "frame over websockets-max-size"
                                                        : "protocol error in a frame");
            return cy->conn == NULL ? -1 : 0;
        }
        if (avail - (size_t)hl < f.payload_len) {
            /* need the whole frame: make room */
            size_t need = (size_t)hl + (size_t)f.payload_len;
            if (off > 0) {
                memmove(c->buf, c->buf + off, c->len - off);
                c->len -= off;
                off = 0;
            }
            if (upy_conn_reserve(cy->srv->loop, c, need - c->len) < 0) {
                ws_fail(cy, 1009, "out of memory for a frame");
                return -1;
            }
            break;
        }
        p += hl;
        upy_ws_unmask(p, (size_t)f.payload_len, f.mask, 0);
        off += (size_t)hl + (size_t)f.payload_len;
        if (f.opcode >= 8) {
            if (f.opcode == UPY_WS_PING) {
                if (cy->close_sent)
                    ;
                else if (cy->out_len - cy->out_off >= UPY_ASGI_OUT_HIGH) {
                    memcpy(cy->pong, p, (size_t)f.payload_len);
                    cy->pong_len = (unsigned char)f.payload_len;
                    cy->pong_pending = 1;
                }
                else if (ws_frame(cy, UPY_WS_PONG, (char *)p, (size_t)f.payload_len) < 0) {
                    upy_conn_close(cy->srv->loop, c);
                    return -1;
                }
            }
            else if (f.opcode == UPY_WS_PONG) {
                cy->ping_out = 0;
            }
            else {
                int cc;
                if (upy_ws_check_close(p, (size_t)f.payload_len, &cc) < 0) {
                    ws_fail(cy, cc, "invalid close frame");
                    return cy->conn == NULL ? -1 : 0;
                }
                cy->close_recv = 1;
                cy->close_code = cc;
                if (f.payload_len > 2) {
                    Py_XSETREF(cy->close_reason,
                               PyUnicode_DecodeUTF8((char *)p + 2,
                                                    (Py_ssize_t)f.payload_len - 2,
                                                    "replace"));
                    if (cy->close_reason == NULL)
                        PyErr_Clear();
                }
                if (!cy->close_sent)
                    (void)ws_send_close(cy, cc == 1005 ? 1000 : cc, "", 0);
                cy->wstate = WS_CLOSED;
                ws_deliver(cy, ws_disconnect_msg(cy));
                c->len = 0;
                if (out_pending(cy) == 0)
                    upy_conn_close(cy->srv->loop, c);
                return cy->conn == NULL ? -1 : 0;
            }
            continue;
        }
        /* data frames */
        if (f.opcode == UPY_WS_CONT ? cy->msg_opcode == 0 : cy->msg_opcode != 0) {
            ws_fail(cy, 1002, f.opcode == UPY_WS_CONT
                                  ? "continuation frame without a message"
                                  : "new message inside a fragmented one");
            return cy->conn == NULL ? -1 : 0;
        }
        if (f.opcode != UPY_WS_CONT) {
            cy->msg_opcode = (int)f.opcode;
            cy->msg_len = 0;
            memset(&cy->utf8, 0, sizeof cy->utf8);
        }
        if (x->ws_max && cy->msg_len + f.payload_len > x->ws_max) {
            ws_fail(cy, 1009, "message over websockets-max-size");
            return cy->conn == NULL ? -1 : 0;
        }
        if (cy->msg_opcode == UPY_WS_TEXT &&
            upy_utf8_feed(&cy->utf8, p, (size_t)f.payload_len) < 0) {
            ws_fail(cy, 1007, "invalid UTF-8 in a text message");
            return cy->conn == NULL ? -1 : 0;
        }
        if (f.fin && cy->msg_len == 0) {
            /* one frame: straight from the buffer */
        }
        else {
            if (cy->msg_cap - cy->msg_len < f.payload_len) {
                size_t cap = cy->msg_cap ? cy->msg_cap : 4096;
                char *nb;
                while (cap - cy->msg_len < f.payload_len)
                    cap *= 2;
                nb = realloc(cy->msg, cap);
                if (nb == NULL) {
                    ws_fail(cy, 1011, "out of memory for a message");
                    return -1;
                }
                cy->msg = nb;
                cy->msg_cap = cap;
            }
            memcpy(cy->msg + cy->msg_len, p, (size_t)f.payload_len);
            cy->msg_len += (size_t)f.payload_len;
        }
        if (f.fin) {
            const char *data = cy->msg_len ? cy->msg : (const char *)p;
            size_t dl = cy->msg_len ? cy->msg_len : (size_t)f.payload_len;
            PyObject *m, *val;
            if (cy->msg_opcode == UPY_WS_TEXT && !upy_utf8_complete(&cy->utf8)) {
                ws_fail(cy, 1007, "text message ends inside a UTF-8 sequence");
                return cy->conn == NULL ? -1 : 0;
            }
            m = msg_new(x, x->n_ws_receive);
            if (cy->msg_opcode == UPY_WS_TEXT)
                val = PyUnicode_DecodeUTF8(data, (Py_ssize_t)dl, "strict");
            else
                val = PyBytes_FromStringAndSize(data, (Py_ssize_t)dl);
            if (m != NULL &&
                msg_put(m, cy->msg_opcode == UPY_WS_TEXT ? x->n_text : x->n_bytes,
                        val) < 0)
                Py_CLEAR(m);
            else if (m == NULL)
                Py_XDECREF(val);
            cy->msg_opcode = 0;
            cy->msg_len = 0;
            if (cy->msg_cap > (1u << 16)) {
                free(cy->msg);
                cy->msg = NULL;
                cy->msg_cap = 0;
            }
            ws_deliver(cy, m);
        }
    }
    if (c != NULL && cy->conn == c && off > 0) {
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
    }
    return 0;
}

static void
ws_readable(upy_asgi *cy)
{
    upy_conn *c = cy->conn;
    upy_loop *loop = cy->srv->loop;
    ssize_t n;
    if (upy_conn_reserve(loop, c, UPY_ASGI_READ) < 0) {
        upy_conn_close(loop, c);
        return;
    }
    n = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        upy_conn_close(loop, c);
        return;
    }
    if (n == 0) {
        if (cy->close_code == 0)
            cy->close_code = 1006;
        upy_conn_close(loop, c);
        return;
    }
    c->len += (size_t)n;
    c->last_io = upy_now();
    if (cy->wstate == WS_HANDSHAKE) {
        rewatch(cy);  /* frames before the 101: parsed after it; bounded */
        return;
    }
    if (ws_parse(cy) < 0)
        return;
    rewatch(cy);
}

static PyObject *
ws_receive(upy_asgi *cy)
{
    upy_asgi_ctx *x = CTX(cy);
    if (!cy->connect_given) {
        cy->connect_given = 1;
        return ready_new(cy->srv, msg_new(x, x->n_ws_connect));
    }
    if (cy->inbox != NULL && PyList_GET_SIZE(cy->inbox) > 0) {
        PyObject *m = Py_NewRef(PyList_GET_ITEM(cy->inbox, 0));
        if (PySequence_DelItem(cy->inbox, 0) < 0) {
            Py_DECREF(m);
            return NULL;
        }
        if (cy->conn != NULL && ws_parse(cy) == 0)
            rewatch(cy);
        return ready_new(cy->srv, m);
    }
    if (cy->conn == NULL || cy->wstate == WS_CLOSED) {
        if (cy->disconnect_given) {
            PyErr_SetString(PyExc_RuntimeError, "ASGI: receive() after "
                            "websocket.disconnect");
            return NULL;
        }
        if (cy->close_code == 0)
            cy->close_code = 1006;
        return ready_new(cy->srv, ws_disconnect_msg(cy));
    }
    {
        PyObject *f = fut_new(cy, &cy->recv_fut);
        rewatch(cy);
        return f;
    }
}

/* The 101 (§4.2.2), with the app's subprotocol and headers. */
static int
ws_accept(upy_asgi *cy, PyObject *msg)
{
    upy_asgi_ctx *x = CTX(cy);
    upy_conn *c = cy->conn;
    PyObject *sub = PyDict_GetItemWithError(msg, x->n_subprotocol);
    PyObject *hdrs;
    int has_date = 0, rc;
    if (sub == NULL && PyErr_Occurred())
        return -1;
    if (OUT_LIT(cy, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: ") < 0 ||
        out_append(cy, cy->ws_accept, 28) < 0 || OUT_LIT(cy, "\r\n") < 0)
        return -1;
    if (sub != NULL && sub != Py_None) {
        Py_ssize_t sl;
        const char *s;
        if (!PyUnicode_Check(sub)) {
            PyErr_SetString(PyExc_TypeError, "ASGI: subprotocol must be a str");
            return -1;
        }
        s = PyUnicode_AsUTF8AndSize(sub, &sl);
        if (s == NULL)
            return -1;
        for (Py_ssize_t i = 0; i < sl; i++) {
            if (!token_char((unsigned char)s[i])) {
                PyErr_SetString(PyExc_ValueError, "ASGI: invalid subprotocol");
                return -1;
            }
        }
        if (OUT_LIT(cy, "Sec-WebSocket-Protocol: ") < 0 ||
            out_append(cy, s, (size_t)sl) < 0 || OUT_LIT(cy, "\r\n") < 0)
            return -1;
    }
    hdrs = PyDict_GetItemWithError(msg, x->n_headers);
    if (hdrs == NULL && PyErr_Occurred())
        return -1;
    if (append_headers(cy, hdrs, &has_date, 1) < 0 || OUT_LIT(cy, "\r\n") < 0)
        return -1;
    cy->status = 101;
    cy->wstate = WS_OPEN;
    /* the head is done with: the log line first, then the frames that
       follow it in the buffer */
    log_line(cy);
    list_remove(cy);
    slot_update(cy->srv);
    upy_count_request(cy->srv->loop, c, 101, cy->started);
    slot_update(cy->srv);  /* counting cleared the slot's start */
    memmove(c->buf, c->buf + c->head_len, c->len - c->head_len);
    c->len -= c->head_len;
    c->head_len = 0;
    rc = out_write(cy, NULL, 0);
    if (rc < 0) {
        upy_conn_close(cy->srv->loop, c);
        return 0;
    }
    if (c->len > 0)
        (void)ws_parse(cy);
    return 0;
}

/* An HTTP response instead of the 101: websocket.close before accept (403)
   or the websocket.http.response extension. */
static PyObject *
ws_deny(upy_asgi *cy, PyObject *msg, PyObject *type)
{
    upy_asgi_ctx *x = CTX(cy);
    PyObject *v, *r;
    cy->kind = UPY_ASGI_HTTP;  /* from here on it is an HTTP response */
    cy->keep_alive = 0;
    cy->wstate = WS_CLOSED;
    if (str_eq(type, x->n_ws_close)) {
        PyObject *start = msg_new(x, x->n_http_start), *body;
        if (start == NULL || msg_put(start, x->n_status, PyLong_FromLong(403)) < 0) {
            Py_XDECREF(start);
            return NULL;
        }
        r = http_send(cy, start, x->n_http_start);
        Py_DECREF(start);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
        body = msg_new(x, x->n_http_body);
        if (body == NULL)
            return NULL;
        r = http_send(cy, body, x->n_http_body);
        Py_DECREF(body);
        return r;
    }
    v = str_eq(type, x->n_ws_http_start) ? x->n_http_start : x->n_http_body;
    return http_send(cy, msg, v);
}

static PyObject *
ws_send(upy_asgi *cy, PyObject *msg, PyObject *type)
{
    upy_asgi_ctx *x = CTX(cy);
    PyObject *v;
    int rc;
    if (cy->wstate == WS_HANDSHAKE) {
        if (str_eq(type, x->n_ws_accept)) {
            if (cy->conn == NULL) {
                PyObject *e = gone_error();
                if (e != NULL) {
                    PyErr_SetObject(PyExc_OSError, e);
                    Py_DECREF(e);
                }
                return NULL;
            }
            if (ws_accept(cy, msg) < 0)
                return NULL;
            return send_wait(cy);
        }
        if (str_eq(type, x->n_ws_close) || str_eq(type, x->n_ws_http_start)) {
            if (cy->conn == NULL)
                return Py_NewRef(x->ready_none);
            return ws_deny(cy, msg, type);
        }
        PyErr_Format(PyExc_RuntimeError, "ASGI: %R before websocket.accept",
                     type);
        return NULL;
    }
    if (cy->kind == UPY_ASGI_HTTP)  /* denial response in progress */
        return http_send(cy, msg, str_eq(type, x->n_ws_http_body) ? x->n_http_body
                                                                 : type);
    if (str_eq(type, x->n_ws_send)) {
        PyObject *t = PyDict_GetItemWithError(msg, x->n_text), *b;
        if (t == NULL && PyErr_Occurred())
            return NULL;
        if (cy->conn == NULL || cy->close_sent) {
            PyObject *e = gone_error();
            if (e != NULL) {
                PyErr_SetObject(PyExc_OSError, e);
                Py_DECREF(e);
            }
            return NULL;
        }
        if (t != NULL && t != Py_None) {
            Py_ssize_t n;
            const char *s;
            if (!PyUnicode_Check(t)) {
                PyErr_SetString(PyExc_TypeError, "ASGI: websocket.send's text "
                                "must be a str");
                return NULL;
            }
            s = PyUnicode_AsUTF8AndSize(t, &n);
            if (s == NULL)
                return NULL;
            rc = ws_frame(cy, UPY_WS_TEXT, s, (size_t)n);
        }
        else {
            Py_buffer view;
            b = PyDict_GetItemWithError(msg, x->n_bytes);
            if (b == NULL && PyErr_Occurred())
                return NULL;
            if (b == NULL || b == Py_None) {
                PyErr_SetString(PyExc_ValueError, "ASGI: websocket.send without "
                                "bytes or text");
                return NULL;
            }
            if (bytes_of(b, &view, "websocket.send's bytes") < 0)
                return NULL;
            rc = ws_frame(cy, UPY_WS_BINARY, view.buf, (size_t)view.len);
            PyBuffer_Release(&view);
        }
        after_write(cy, rc);
        return send_wait(cy);
    }
    if (str_eq(type, x->n_ws_close)) {
        long code = 1000;
        Py_ssize_t rl = 0;
        const char *rs = "";
        v = PyDict_GetItemWithError(msg, x->n_code);
        if (v == NULL && PyErr_Occurred())
            return NULL;
        if (v != NULL && v != Py_None) {
            code = PyLong_AsLong(v);
            if (code == -1 && PyErr_Occurred())
                return NULL;
        }
        if (!upy_ws_close_code_valid((int)code)) {
            PyErr_Format(PyExc_ValueError, "ASGI: close code %ld cannot be sent",
                         code);
            return NULL;
        }
        v = PyDict_GetItemWithError(msg, x->n_reason);
        if (v == NULL && PyErr_Occurred())
            return NULL;
        if (v != NULL && v != Py_None) {
            if (!PyUnicode_Check(v)) {
                PyErr_SetString(PyExc_TypeError, "ASGI: close reason must be a str");
                return NULL;
            }
            rs = PyUnicode_AsUTF8AndSize(v, &rl);
            if (rs == NULL)
                return NULL;
        }
        if (cy->conn == NULL || cy->close_sent)
            return Py_NewRef(x->ready_none);
        if (cy->close_code == 0)
            cy->close_code = (int)code;
        rc = ws_send_close(cy, (int)code, rs, (size_t)rl);
        after_write(cy, rc);
        return send_wait(cy);
    }
    PyErr_Format(PyExc_ValueError, "ASGI: unexpected message type %R for a "
                 "websocket scope", type);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Events from the loop                                                */
/* ------------------------------------------------------------------ */

static void
writable(upy_asgi *cy)
{
    upy_conn *c = cy->conn;
    if (out_flush(cy) < 0) {
        upy_conn_close(cy->srv->loop, c);
        return;
    }
    if (cy->pong_pending && cy->out_len - cy->out_off < UPY_ASGI_OUT_HIGH) {
        cy->pong_pending = 0;
        if (!cy->close_sent && ws_frame(cy, UPY_WS_PONG, cy->pong, cy->pong_len) < 0) {
            upy_conn_close(cy->srv->loop, c);
            return;
        }
    }
    if (out_pending(cy) == 0) {
        c->deadline = 0;
        if (cy->send_fut != NULL)
            fut_resolve(cy, &cy->send_fut, Py_NewRef(Py_None), NULL);
        if (cy->kind == UPY_ASGI_HTTP && cy->rstate == RS_DONE) {
            http_finish(cy, 1);
            return;
        }
        if (cy->kind == UPY_ASGI_WS && cy->wstate == WS_CLOSED) {
            ws_end(cy);
            return;
        }
    }
    else if (cy->send_fut != NULL && cy->sf_fd < 0 &&
             cy->out_len - cy->out_off < UPY_ASGI_OUT_HIGH / 4) {
        fut_resolve(cy, &cy->send_fut, Py_NewRef(Py_None), NULL);
    }
    if (cy->conn != NULL) {
        c->deadline = out_pending(cy) ? upy_now() + c->lst->socket_timeout : 0;
        rewatch(cy);
    }
}

void
upy_asgi_event(upy_loop *loop, upy_conn *c, uint32_t events)
{
    upy_asgi *cy = (upy_asgi *)c->asgi;
    if (cy == NULL)
        return;
    Py_INCREF(cy);
    if ((events & (UPY_POLL_OUT | UPY_POLL_ERR)) && cy->conn == c)
        writable(cy);
    if ((events & (UPY_POLL_IN | UPY_POLL_ERR)) && cy->conn == c &&
        c->state == UPY_CONN_ASGI) {
        if (cy->kind == UPY_ASGI_WS)
            ws_readable(cy);
        else
            http_readable(cy);
    }
    Py_DECREF(cy);
}

void
upy_asgi_sweep(upy_loop *loop, upy_conn *c, double now)
{
    upy_asgi *cy = (upy_asgi *)c->asgi;
    upy_asgi_ctx *x;
    if (cy == NULL)
        return;
    x = CTX(cy);
    if (c->deadline > 0 && now >= c->deadline) {
        upy_log(cy->srv, 30, "client %s stalled for socket-timeout %.0fs: "
                "closing", c->addr_text, c->lst->socket_timeout);
        upy_conn_close(loop, c);
        return;
    }
    if (cy->kind != UPY_ASGI_WS)
        return;
    if (cy->close_sent && now >= cy->close_deadline) {
        upy_conn_close(loop, c);
        return;
    }
    if (cy->wstate == WS_OPEN && x->ws_ping > 0) {
        if (cy->ping_out && now - cy->ping_at > x->ws_pong) {
            Py_INCREF(cy);
            cy->close_code = 1006;
            upy_log(cy->srv, 30, "WebSocket %s: no pong within "
                    "websockets-pong-tolerance %.0fs: closing", c->addr_text,
                    x->ws_pong);
            upy_conn_close(loop, c);
            Py_DECREF(cy);
            return;
        }
        if (!cy->ping_out && now - c->last_io >= x->ws_ping) {
            cy->ping_out = 1;
            cy->ping_at = now;
            Py_INCREF(cy);
            if (ws_frame(cy, UPY_WS_PING, "", 0) < 0)
                upy_conn_close(loop, c);
            else
                rewatch(cy);
            Py_DECREF(cy);
        }
    }
}

void
upy_asgi_going_away(upy_loop *loop, upy_conn *c)
{
    upy_asgi *cy = (upy_asgi *)c->asgi;
    if (cy == NULL || cy->kind != UPY_ASGI_WS || cy->wstate != WS_OPEN ||
        cy->close_sent)
        return;
    Py_INCREF(cy);
    if (ws_send_close(cy, 1001, "server shutting down", 20) < 0)
        upy_conn_close(loop, c);
    else
        rewatch(cy);
    Py_DECREF(cy);
}

/* ------------------------------------------------------------------ */
/* The cycle's Python methods                                          */
/* ------------------------------------------------------------------ */

static PyObject *
cycle_receive(upy_asgi *cy, PyObject *Py_UNUSED(ignored))
{
    return cy->ws_scope ? ws_receive(cy) : http_receive(cy);
}

static PyObject *
cycle_send(upy_asgi *cy, PyObject *msg)
{
    PyObject *type;
    if (!PyDict_Check(msg)) {
        PyErr_Format(PyExc_TypeError, "ASGI: send() takes a dict, not %.100s",
                     Py_TYPE(msg)->tp_name);
        return NULL;
    }
    type = PyDict_GetItemWithError(msg, CTX(cy)->n_type);
    if (type == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "ASGI: a message without 'type'");
        return NULL;
    }
    if (!PyUnicode_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "ASGI: a message's type must be a str");
        return NULL;
    }
    return cy->ws_scope ? ws_send(cy, msg, type) : http_send(cy, msg, type);
}

/* The app's coroutine ended (the task's coroutine, AsgiRun, calls these). */
static void
app_ended(upy_asgi *cy)
{
    cy->app_done = 1;
    if (cy->counted) {
        cy->counted = 0;
        if (CTX(cy) != NULL)
            CTX(cy)->ntasks--;
    }
    Py_CLEAR(cy->task);
}

static void
app_returned(upy_asgi *cy)
{
    app_ended(cy);
    if (cy->conn == NULL)
        return;
    if (cy->kind == UPY_ASGI_HTTP && cy->rstate != RS_DONE) {
        if (cy->rstate == RS_INIT) {
            upy_log(cy->srv, 40, "ASGI app returned without a response to %s",
                    cy->conn->addr_text);
            cy->status = 500;
            upy_send_error(cy->srv, cy->conn, 500, "the app sent no response");
        }
        else if (cy->rstate == RS_TRAILERS && cy->chunked) {
            /* trailers announced, never sent: end the body */
            if (out_append(cy, "0\r\n\r\n", 5) == 0 &&
                out_write(cy, NULL, 0) == 0) {
                http_complete(cy);
                return;
            }
        }
        else
            upy_log(cy->srv, 40, "ASGI app returned before its response to %s "
                    "was complete: closing", cy->conn->addr_text);
        http_abort(cy);
    }
    else if (cy->kind == UPY_ASGI_WS) {
        if (cy->wstate == WS_HANDSHAKE) {
            /* never accepted: 403, as uvicorn */
            PyObject *r, *m = msg_new(CTX(cy), CTX(cy)->n_ws_close);
            if (m != NULL) {
                r = ws_deny(cy, m, CTX(cy)->n_ws_close);
                Py_XDECREF(r);
                Py_DECREF(m);
            }
            if (PyErr_Occurred())
                upy_log_exception(cy->srv, "ASGI: a WebSocket denial");
        }
        else if (!cy->close_sent && cy->conn != NULL) {
            if (ws_send_close(cy, 1000, "", 0) < 0)
                upy_conn_close(cy->srv->loop, cy->conn);
            else
                rewatch(cy);
        }
    }
}

static void
app_failed(upy_asgi *cy, PyObject *exc)
{
    upy_server *srv = cy->srv;
    int cancelled = PyErr_GivenExceptionMatches(exc, PyExc_BaseException) &&
                    !PyErr_GivenExceptionMatches(exc, PyExc_Exception);
    app_ended(cy);
    if (!cancelled) {
        /* the traceback, as for a WSGI app */
        PyObject *t = (PyObject *)Py_TYPE(exc), *tb = PyException_GetTraceback(exc);
        Py_INCREF(t);
        Py_INCREF(exc);
        PyErr_Restore(t, exc, tb);
        upy_log_exception(srv, cy->conn != NULL ? "ASGI app raised" :
                          "ASGI app raised (the client had gone)");
        if (srv->cores[0].slot != NULL)
            __atomic_fetch_add(&srv->cores[0].slot->exceptions, 1,
                               __ATOMIC_RELAXED);
    }
    if (cy->conn == NULL)
        return;
    if (cy->kind == UPY_ASGI_HTTP || cy->wstate == WS_HANDSHAKE) {
        if (cy->rstate == RS_INIT && cy->kind == UPY_ASGI_HTTP) {
            cy->status = 500;
            cy->keep_alive = 0;
            upy_send_error(srv, cy->conn, 500, "internal error");
            http_abort(cy);
        }
        else if (cy->kind == UPY_ASGI_WS) {
            cy->status = 500;
            upy_send_error(srv, cy->conn, 500, "internal error");
            cy->kind = UPY_ASGI_HTTP;  /* an HTTP response: counted as one */
            http_abort(cy);
        }
        else if (cy->rstate != RS_DONE) {
            cy->keep_alive = 0;
            log_line(cy);
            upy_conn_close(srv->loop, cy->conn);
        }
    }
    else if (!cy->close_sent) {
        /* 1011: the server hit an unexpected condition (§7.4.1) */
        if (ws_send_close(cy, 1011, "", 0) < 0)
            upy_conn_close(srv->loop, cy->conn);
        else
            rewatch(cy);
    }
}

static int
cycle_traverse(upy_asgi *cy, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(cy));
    Py_VISIT((PyObject *)cy->srv);
    Py_VISIT(cy->task);
    Py_VISIT(cy->recv_fut);
    Py_VISIT(cy->send_fut);
    Py_VISIT(cy->headers);
    Py_VISIT(cy->inbox);
    return 0;
}

static int
cycle_clear(upy_asgi *cy)
{
    Py_CLEAR(cy->task);
    Py_CLEAR(cy->recv_fut);
    Py_CLEAR(cy->send_fut);
    Py_CLEAR(cy->headers);
    Py_CLEAR(cy->inbox);
    Py_CLEAR(cy->close_reason);
    return 0;
}

static void
cycle_dealloc(upy_asgi *cy)
{
    PyTypeObject *tp = Py_TYPE(cy);
    PyObject_GC_UnTrack(cy);
    if (cy->counted && cy->srv != NULL && cy->srv->asgi != NULL)
        cy->srv->asgi->ntasks--;
    cycle_clear(cy);
    if (cy->sf_fd >= 0)
        close(cy->sf_fd);
    if (cy->out != NULL && cy->out_cap == UPY_ASGI_OUT_FIRST && cy->srv != NULL &&
        cy->srv->asgi != NULL && cy->srv->asgi->spare_out == NULL)
        cy->srv->asgi->spare_out = cy->out;  /* kept for the next cycle */
    else
        free(cy->out);
    free(cy->msg);
    Py_CLEAR(cy->srv);
    PyObject_GC_Del(cy);
    Py_DECREF(tp);
}

static PyMethodDef cycle_methods[] = {
    {"receive", (PyCFunction)cycle_receive, METH_NOARGS,
     "receive() -> awaitable of the next event message (ASGI 3.0)."},
    {"send", (PyCFunction)cycle_send, METH_O,
     "send(message) -> awaitable, done once the socket took the data."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot cycle_slots[] = {
    {Py_tp_doc, (void *)"One ASGI connection scope (an HTTP request or a "
                        "WebSocket): its receive() and send()."},
    {Py_tp_dealloc, cycle_dealloc},
    {Py_tp_traverse, cycle_traverse},
    {Py_tp_clear, cycle_clear},
    {Py_tp_methods, cycle_methods},
    {0, NULL},
};

PyType_Spec upy_asgi_cycle_spec = {
    .name = "uwsgipy._core.AsgiCycle",
    .basicsize = sizeof(upy_asgi),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = cycle_slots,
};

/* ------------------------------------------------------------------ */
/* The task's coroutine                                                */
/* ------------------------------------------------------------------ */

/* AsgiRun: the coroutine of an asyncio task that runs ASGI apps.  Each
   request's first step calls app(scope, receive, send) (inside the task:
   asyncio.current_task() is the task) and every step drives the awaitable
   the app returned, inside the request's own context (a copy of the
   worker's base context, entered around each step, so a ContextVar one
   request sets is not seen by the next).  When the app returns or raises,
   the cycle is told at once (app_returned, app_failed), with no
   done-callback turn of the loop.  An exception of the app ends the
   request normally (it is logged, and answered with a 500 or a close),
   except KeyboardInterrupt and SystemExit, which go on to stop the loop.

   On a keep-alive connection the task is kept for the next request, as
   uWSGI keeps a core: when the response completed while the app ran
   (http_finish: RUN_OFFERED) and the app then returned, the run yields
   itself, a Future-like (_asyncio_future_blocking, add_done_callback,
   result, cancel, get_loop), and the task waits on it (RUN_PARKED).  The
   connection's next request is staged in the run (RUN_WOKEN) and its first
   step runs at the end of run_once() (upy_asgi_flush, run_step_here), or,
   when that is not where the request came (inside another step), the
   task's callback is scheduled with call_soon.  So a keep-alive client
   costs one Task, not one per request.  A task is not kept when a
   cancellation reached it (a CancelledError thrown in: its cancelling()
   count may be up, a cancel scope's business; or Task.cancel() while it
   ran), when its app raised, or when the next request came while the app
   still ran (that one gets a task of its own).
   The connection closing (upy_asgi_unpark) or Task.cancel() wakes it to
   end (return, or raise CancelledError).  In Python terms:

       async def run(app, first, conn):
           request = first
           while request is not None:
               scope, cycle, ctx = request
               try:
                   await ctx.run(app, scope, cycle.receive, cycle.send)  # each step in ctx
               except BaseException as exc:
                   cycle._failed(exc)
                   if isinstance(exc, (KeyboardInterrupt, SystemExit)): raise
                   return
               cycle._returned()
               request = await conn.next_request()  # None: the connection closed

   asyncio takes it as a coroutine (collections.abc.Coroutine: __await__,
   send, throw, close); the Task steps it through am_send (PyIter_Send). */

static PyObject *
run_context(upy_asgi_ctx *x)
{
    return x->base_ctx != NULL ? PyContext_Copy(x->base_ctx) : NULL;
}

static PyObject *
run_new(upy_server *srv, upy_asgi *cy, PyObject *scope)
{
    upy_asgi_run *r;
    PyObject *ctx = run_context(srv->asgi);
    if (ctx == NULL && PyErr_Occurred())
        return NULL;
    r = PyObject_GC_New(upy_asgi_run, srv->st->AsgiRun_Type);
    if (r == NULL) {
        Py_XDECREF(ctx);
        return NULL;
    }
    memset((char *)r + sizeof(PyObject), 0, sizeof *r - sizeof(PyObject));
    r->srv = (upy_server *)Py_NewRef(srv);
    r->cy = (upy_asgi *)Py_NewRef((PyObject *)cy);
    cy->run = r;
    r->app = Py_NewRef(srv->app);
    r->scope = Py_NewRef(scope);
    r->ctx = ctx;
    PyObject_GC_Track(r);
    return (PyObject *)r;
}

/* The next request on r's connection: cy and its scope (borrowed), ctx
   (stolen) its context.  r is parked; run_wake() then runs it. */
static void
run_stage(upy_asgi_run *r, upy_asgi *cy, PyObject *scope, PyObject *ctx)
{
    r->cy = (upy_asgi *)Py_NewRef((PyObject *)cy);
    cy->run = r;
    r->app = Py_NewRef(r->srv->app);
    r->scope = Py_NewRef(scope);
    Py_XSETREF(r->ctx, ctx);
    r->state = RUN_WOKEN;
    r->wake = WAKE_REQUEST;
}

/* cb(r) in context ctx, now (the task's step runs inside). */
static int
run_call_now(PyObject *cb, PyObject *ctx, upy_asgi_run *r)
{
    PyObject *res;
    if (ctx != NULL && PyContext_Enter(ctx) < 0)
        return -1;
    res = PyObject_CallOneArg(cb, (PyObject *)r);
    if (ctx != NULL) {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        if (PyContext_Exit(ctx) < 0)
            PyErr_Clear();  /* entered above: cannot fail */
        PyErr_Restore(et, ev, etb);
    }
    Py_XDECREF(res);
    return res != NULL ? 0 : -1;
}

/* loop.call_soon(cb, r, context=ctx) */
static int
run_call_later(upy_asgi_ctx *x, PyObject *cb, PyObject *ctx, upy_asgi_run *r)
{
    PyObject *argv[4] = {NULL, cb, (PyObject *)r, ctx}, *res;
    if (x->call_soon == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ASGI: the loop is gone");
        return -1;
    }
    res = PyObject_Vectorcall(x->call_soon, argv + 1,
                              2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                              ctx != NULL ? x->context_kw : NULL);
    Py_XDECREF(res);
    return res != NULL ? 0 : -1;
}

/* r is RUN_WOKEN: its task's callback runs at the end of this run_once()
   when the loop is in one and no task's step is in progress (the task may
   enter then: upy_asgi_flush), else soon (call_soon).  At the end, not at
   once: the loop first reads every connection that is ready, then the
   apps answer one after the other, so the responses go out close together
   (a client woken by the first finds the next ones there, not one wake-up
   per response).  Returns the task (a new reference), or NULL with
   call_soon's exception. */
static PyObject *
run_wake(upy_asgi_run *r)
{
    upy_asgi_ctx *x = r->srv->asgi;
    PyObject *cb, *ctx;
    int rc;
    if (r->srv->loop != NULL && r->srv->loop->stepping && x->depth == 0) {
        if (x->nwakes == x->wakes_cap) {
            size_t cap = x->wakes_cap ? x->wakes_cap * 2 : 64;
            upy_asgi_run **w = PyMem_Realloc(x->wakes, cap * sizeof *w);
            if (w != NULL) {
                x->wakes = w;
                x->wakes_cap = cap;
            }
        }
        if (x->nwakes < x->wakes_cap) {
            x->wakes[x->nwakes++] = (upy_asgi_run *)Py_NewRef((PyObject *)r);
            return Py_NewRef(r->task);
        }
        /* no room: soon, by the task */
    }
    cb = r->wake_cb;
    ctx = r->wake_ctx;
    r->wake_cb = r->wake_ctx = NULL;
    rc = run_call_later(x, cb, ctx, r);
    Py_DECREF(cb);
    Py_XDECREF(ctx);
    return rc < 0 ? NULL : Py_NewRef(r->task);
}

static PySendResult run_step(upy_asgi_run *r, PyObject *arg, PyObject *args,
                             PyObject **result);

/* A kept task's step for its next request, run here rather than by the
   task (what Task.__step does, without its wake-up: on 3.11 that is about
   4,200 instructions a request, result() looked up by name, the yielded
   Future-like's attributes read and set, a callback made and registered):
   the task is made the loop's current task (asyncio.tasks._enter_task, so
   current_task() is it), the app steps in the request's context, then
   _leave_task.  When the app returned and the run parked again, the task
   never knew: it still waits on the run, its callback registered.  When
   the app is suspended (it awaits a Future) or ended otherwise, or
   Task.cancel() was called meanwhile, the task takes over at once: the
   outcome is handed to it (RUN_HANDOFF) and its callback called, so its
   step returns what this one gave (it waits on that Future, or ends, or
   delivers the cancellation).  0, or -1 with an exception (a step's
   KeyboardInterrupt or SystemExit goes on to the task, then here). */
static int
run_step_here(upy_asgi_run *r)
{
    upy_asgi_ctx *x = r->srv->asgi;
    PyObject *task, *cb, *ctx, *argv[3], *t, *res;
    PySendResult rs;
    int rc;
    /* the task's callback, its context and the task itself, held here: an
       app that ends in this step ends the run (run_end lets go of them),
       and the task must still be told */
    cb = Py_NewRef(r->wake_cb);
    ctx = Py_XNewRef(r->wake_ctx);
    task = Py_NewRef(r->task);
    argv[0] = NULL;
    argv[1] = x->loop;
    argv[2] = task;
    t = r->cancelled || x->enter_task == NULL ? NULL
        : PyObject_Vectorcall(x->enter_task, argv + 1,
                              2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (t == NULL) {
        /* Task.cancel() came after the request was staged (its step throws
           the CancelledError into the app's start, as into a new task's),
           this asyncio has no _enter_task, or a task is current (cannot be
           at run_once's end): the task steps */
        PyErr_Clear();
        Py_CLEAR(r->wake_cb);
        Py_CLEAR(r->wake_ctx);
        goto call;
    }
    Py_DECREF(t);
    rs = run_step(r, Py_None, NULL, &res);
    {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        t = PyObject_Vectorcall(x->leave_task, argv + 1,
                                2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (t == NULL)
            upy_log_exception(r->srv, "ASGI: asyncio _leave_task");
        Py_XDECREF(t);
        PyErr_Restore(et, ev, etb);
    }
    if (rs == PYGEN_NEXT && res == (PyObject *)r) {
        /* parked again: the task still waits on the run, its callback
           registered (run_returned parks no run Task.cancel() was asked
           of: this one was not) */
        Py_DECREF(res);
        Py_DECREF(cb);
        Py_XDECREF(ctx);
        Py_DECREF(task);
        return 0;
    }
    /* the task takes over: the app is suspended, or ended (the run with
       it), or raised KeyboardInterrupt or SystemExit */
    r->stash_rs = rs;
    if (rs == PYGEN_ERROR)
        PyErr_Fetch(&r->stash_exc[0], &r->stash_exc[1], &r->stash_exc[2]);
    else
        r->stash = res;
    r->state = RUN_HANDOFF;
    Py_CLEAR(r->wake_cb);
    Py_CLEAR(r->wake_ctx);
call:
    rc = run_call_now(cb, ctx, r);
    Py_DECREF(cb);
    Py_XDECREF(ctx);
    Py_DECREF(task);
    return rc;
}

int
upy_asgi_flush(upy_server *srv)
{
    upy_asgi_ctx *x = srv->asgi;
    int rc = 0;
    if (x == NULL)
        return 0;
    /* the list may grow meanwhile (a step's request closing a connection
       does not wake here, but stay general): read its length each time */
    for (size_t i = 0; i < x->nwakes; i++) {
        upy_asgi_run *r = x->wakes[i];
        x->wakes[i] = NULL;
        if (r->wake_cb != NULL) {
            if (rc == 0) {
                if (run_step_here(r) < 0) {
                    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
                        PyErr_ExceptionMatches(PyExc_SystemExit))
                        rc = -1;  /* stops the loop: the others go soon */
                    else
                        upy_log_exception(srv, "ASGI: cannot run a kept task");
                }
            }
            else {
                PyObject *cb = r->wake_cb, *ctx = r->wake_ctx, *et, *ev, *etb;
                r->wake_cb = r->wake_ctx = NULL;
                PyErr_Fetch(&et, &ev, &etb);
                if (run_call_later(x, cb, ctx, r) < 0)
                    upy_log_exception(srv, "ASGI: cannot run a kept task");
                PyErr_Restore(et, ev, etb);
                Py_DECREF(cb);
                Py_XDECREF(ctx);
            }
        }
        Py_DECREF(r);
    }
    x->nwakes = 0;
    return rc;
}

/* r's connection lets go of it (it closes, its next request is another
   task's, or r is not to be kept): offered, it just ends once its app
   returns; parked, its task is woken to end (wake: WAKE_END returns,
   WAKE_CANCEL raises CancelledError). */
static void
run_release(upy_asgi_run *r, int wake)
{
    upy_conn *c = r->conn;
    r->conn = NULL;
    if (c != NULL && c->asgi_park == (PyObject *)r)
        c->asgi_park = NULL;  /* its reference: released last */
    else
        c = NULL;
    if (r->state == RUN_OFFERED)
        r->state = RUN_ACTIVE;
    else if (r->state == RUN_PARKED) {
        r->state = RUN_WOKEN;
        r->wake = wake;
        if (r->wake_cb != NULL) {
            PyObject *cb = r->wake_cb, *ctx = r->wake_ctx, *et, *ev, *etb;
            r->wake_cb = r->wake_ctx = NULL;
            PyErr_Fetch(&et, &ev, &etb);
            if (run_call_later(r->srv->asgi, cb, ctx, r) < 0)
                upy_log_exception(r->srv, "ASGI: cannot end a kept task");
            PyErr_Restore(et, ev, etb);
            Py_DECREF(cb);
            Py_XDECREF(ctx);
        }
    }
    if (c != NULL)
        Py_DECREF(r);
}

void
upy_asgi_unpark(upy_conn *c)
{
    upy_asgi_run *r = (upy_asgi_run *)c->asgi_park;
    if (r == NULL)
        return;
    if (r->conn != c) {
        /* not linked back (cannot happen): just let go */
        c->asgi_park = NULL;
        Py_DECREF(r);
        return;
    }
    run_release(r, WAKE_END);
}

/* The run will not serve another request: its task ends with this step. */
static void
run_end(upy_asgi_run *r)
{
    if (r->conn != NULL)  /* offered, or parked (close()): its task is woken */
        run_release(r, WAKE_END);
    if (r->state != RUN_WOKEN)
        r->state = RUN_ACTIVE;
    Py_CLEAR(r->wake_cb);
    Py_CLEAR(r->wake_ctx);
    Py_CLEAR(r->task);  /* the task's step holds it until it returns */
}

/* The iterator `await obj` would drive (CPython's _PyCoro_GetAwaitableIter,
   with public API): a coroutine itself, a generator-based coroutine, or
   what __await__ returns, which must not be a coroutine.  Steals obj. */
static PyObject *
awaitable_iter(PyObject *obj)
{
    PyTypeObject *t = Py_TYPE(obj);
    PyObject *it;
    if (PyCoro_CheckExact(obj))
        return obj;
    if (PyGen_CheckExact(obj)) {
        PyObject *code = PyObject_GetAttrString(obj, "gi_code");
        long flags = 0;
        if (code != NULL && PyCode_Check(code))
            flags = ((PyCodeObject *)code)->co_flags;
        Py_XDECREF(code);
        PyErr_Clear();
        if (flags & CO_ITERABLE_COROUTINE)
            return obj;
    }
    if (t->tp_as_async == NULL || t->tp_as_async->am_await == NULL) {
        PyErr_Format(PyExc_TypeError, "ASGI: the app returned %.100s, which "
                     "cannot be awaited (an ASGI app is an async callable)",
                     t->tp_name);
        Py_DECREF(obj);
        return NULL;
    }
    it = t->tp_as_async->am_await(obj);
    Py_DECREF(obj);
    if (it == NULL)
        return NULL;
    if (PyCoro_CheckExact(it) || !PyIter_Check(it)) {
        PyErr_Format(PyExc_TypeError, "__await__() returned %s (type %.100s)",
                     PyCoro_CheckExact(it) ? "a coroutine" : "non-iterator",
                     Py_TYPE(it)->tp_name);
        Py_DECREF(it);
        return NULL;
    }
    return it;
}

/* The request's cycle and context go: r is between requests. */
static upy_asgi *
run_take_cycle(upy_asgi_run *r)
{
    upy_asgi *cy = r->cy;
    r->cy = NULL;
    if (cy != NULL && cy->run == r)
        cy->run = NULL;
    Py_CLEAR(r->it);
    Py_CLEAR(r->app);
    Py_CLEAR(r->scope);
    Py_CLEAR(r->ctx);
    return cy;
}

/* The app ended with the exception now set: the cycle is told; the
   exception stays set (PYGEN_ERROR) only for KeyboardInterrupt and
   SystemExit, else the task ends with None (PYGEN_RETURN). */
static PySendResult
run_failed(upy_asgi_run *r, PyObject **result)
{
    PyObject *t, *v, *tb;
    upy_asgi *cy;
    int fatal;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v != NULL && tb != NULL)
        PyException_SetTraceback(v, tb);
    cy = run_take_cycle(r);
    run_end(r);
    fatal = v != NULL && (PyErr_GivenExceptionMatches(v, PyExc_KeyboardInterrupt) ||
                          PyErr_GivenExceptionMatches(v, PyExc_SystemExit));
    if (cy != NULL) {
        app_failed(cy, v != NULL ? v : Py_None);
        if (PyErr_Occurred())
            upy_log_exception(cy->srv, "ASGI: ending a request");
        Py_DECREF(cy);
    }
    if (fatal) {
        PyErr_Restore(t, v, tb);
        *result = NULL;
        return PYGEN_ERROR;
    }
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
    *result = Py_NewRef(Py_None);
    return PYGEN_RETURN;
}

/* The app returned: the cycle is told; then the task waits for the
   connection's next request (the run yields itself), or ends. */
static PySendResult
run_returned(upy_asgi_run *r, PyObject **result)
{
    upy_asgi *cy = run_take_cycle(r);
    if (cy != NULL) {
        app_returned(cy);
        if (PyErr_Occurred())
            upy_log_exception(cy->srv, "ASGI: ending a request");
        Py_DECREF(cy);
    }
    if (r->state == RUN_OFFERED && !r->cancelled) {
        r->state = RUN_PARKED;
        r->blocking = 1;
        *result = Py_NewRef((PyObject *)r);
        return PYGEN_NEXT;
    }
    run_end(r);
    *result = Py_NewRef(Py_None);
    return PYGEN_RETURN;
}

static PySendResult run_rethrow(PyObject *args);

/* The app's part of a step, inside the request's context: call it (the
   request's first step), then send arg in, or (args not NULL) throw
   *args in.  PYGEN_RETURN's *res is the app's return value. */
static PySendResult
run_drive(upy_asgi_run *r, PyObject *arg, PyObject *args, PyObject **res)
{
    *res = NULL;
    if (r->it == NULL) {
        PyObject *argv[4], *obj;
        if (args != NULL)
            /* thrown in before the first step (a task cancelled at once):
               as if the app raised it at its start */
            return run_rethrow(args);
        argv[0] = NULL;
        argv[1] = r->scope;
        argv[2] = PyCFunction_New(&cycle_methods[0], (PyObject *)r->cy);
        argv[3] = PyCFunction_New(&cycle_methods[1], (PyObject *)r->cy);
        obj = argv[2] != NULL && argv[3] != NULL
                  ? PyObject_Vectorcall(r->app, argv + 1,
                                        3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)
                  : NULL;
        Py_XDECREF(argv[2]);
        Py_XDECREF(argv[3]);
        Py_CLEAR(r->app);
        Py_CLEAR(r->scope);
        if (obj == NULL || (r->it = awaitable_iter(obj)) == NULL)
            return PYGEN_ERROR;
    }
    if (args == NULL)
        return PyIter_Send(r->it, arg, res);
    {
        PyObject *throw = PyObject_GetAttrString(r->it, "throw");
        *res = throw != NULL ? PyObject_Call(throw, args, NULL) : NULL;
        Py_XDECREF(throw);
    }
    if (*res != NULL)
        return PYGEN_NEXT;
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyErr_Clear();
        *res = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    return PYGEN_ERROR;
}

/* throw(*args) reaches a run with no app to give it to: it goes on. */
static PySendResult
run_rethrow(PyObject *args)
{
    PyObject *e = PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0) : Py_None;
    if (PyExceptionInstance_Check(e))
        PyErr_SetObject((PyObject *)Py_TYPE(e), e);
    else if (PyExceptionClass_Check(e))
        PyErr_SetNone(e);
    else
        PyErr_SetString(PyExc_TypeError, "throw expected an exception");
    return PYGEN_ERROR;
}

/* The message of the CancelledError in args (a new reference), or NULL. */
static PyObject *
run_cancel_msg(PyObject *args)
{
    PyObject *e = PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0) : NULL, *a, *m = NULL;
    if (e == NULL || !PyExceptionInstance_Check(e))
        return NULL;
    a = PyObject_GetAttrString(e, "args");
    if (a != NULL && PyTuple_Check(a) && PyTuple_GET_SIZE(a) > 0)
        m = Py_NewRef(PyTuple_GET_ITEM(a, 0));
    Py_XDECREF(a);
    PyErr_Clear();
    return m;
}

/* One step of the task: send arg in, or (args not NULL) throw(*args) in. */
static PySendResult
run_step(upy_asgi_run *r, PyObject *arg, PyObject *args, PyObject **result)
{
    upy_asgi_ctx *x = r->srv->asgi;
    PyObject *res;
    PySendResult rs;
    *result = NULL;
    if (r->state == RUN_HANDOFF) {
        /* the outcome of the step run_step_here ran for the task */
        PySendResult srs = r->stash_rs;
        PyObject *v = r->stash;
        r->stash = NULL;
        r->state = RUN_ACTIVE;
        if (srs == PYGEN_ERROR) {
            PyErr_Restore(r->stash_exc[0], r->stash_exc[1], r->stash_exc[2]);
            r->stash_exc[0] = r->stash_exc[1] = r->stash_exc[2] = NULL;
            return PYGEN_ERROR;
        }
        if (args == NULL) {
            /* the Future the app awaits, or the task's end */
            *result = v;
            return srs;
        }
        if (srs == PYGEN_RETURN) {
            /* Task.cancel() in the step where the app ended: the task ends
               cancelled, as asyncio's does */
            Py_XDECREF(v);
            run_end(r);
            return run_rethrow(args);
        }
        /* Task.cancel() in the step that suspended the app: as the task
           does with what it waits on, the Future the app awaits is
           cancelled and waited on (the app gets the CancelledError from
           it); one that cannot be cancelled gets it thrown in now */
        if (v != NULL && v != Py_None) {
            PyObject *msg = run_cancel_msg(args);
            PyObject *c = msg != NULL ? PyObject_CallMethod(v, "cancel", "O", msg)
                                      : PyObject_CallMethod(v, "cancel", NULL);
            int ok = c != NULL && PyObject_IsTrue(c) == 1;
            Py_XDECREF(msg);
            Py_XDECREF(c);
            PyErr_Clear();
            if (ok) {
                *result = v;
                return PYGEN_NEXT;
            }
        }
        Py_XDECREF(v);
    }
    else if (r->state == RUN_WOKEN) {
        int wake = r->wake;
        r->state = RUN_ACTIVE;
        r->wake = WAKE_REQUEST;
        if (wake != WAKE_REQUEST || r->cy == NULL) {
            /* the connection closed, or the wait was cancelled: the task
               ends (a thrown CancelledError goes on: it is cancelled) */
            run_end(r);
            if (args != NULL && PyTuple_GET_SIZE(args) > 0)
                return run_rethrow(args);
            *result = Py_NewRef(Py_None);
            return PYGEN_RETURN;
        }
        /* a request staged by upy_asgi_start: its first step */
    }
    else if (r->state == RUN_PARKED) {
        PyErr_SetString(PyExc_RuntimeError, "ASGI: a kept task stepped "
                        "before its next request");
        return PYGEN_ERROR;
    }
    if (r->cy == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
        return PYGEN_ERROR;
    }
    if (args != NULL && x != NULL && x->cancelled_error != NULL &&
        PyTuple_GET_SIZE(args) > 0 &&
        PyErr_GivenExceptionMatches(PyTuple_GET_ITEM(args, 0), x->cancelled_error))
        r->cancelled = 1;  /* this task is not kept */
    if (r->ctx != NULL && PyContext_Enter(r->ctx) < 0)
        return run_failed(r, result);
    if (x != NULL)
        x->depth++;
    rs = run_drive(r, arg, args, &res);
    if (x != NULL)
        x->depth--;
    if (r->ctx != NULL) {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        if (PyContext_Exit(r->ctx) < 0)
            PyErr_Clear();  /* entered above: cannot fail */
        PyErr_Restore(et, ev, etb);
    }
    switch (rs) {
    case PYGEN_NEXT:
        *result = res;
        return PYGEN_NEXT;
    case PYGEN_RETURN:
        Py_DECREF(res);  /* the app's return value: not used */
        return run_returned(r, result);
    default:
        return run_failed(r, result);
    }
}

static PySendResult
run_am_send(PyObject *self, PyObject *arg, PyObject **result)
{
    return run_step((upy_asgi_run *)self, arg, NULL, result);
}

/* a step as a Python call: the yielded value, or StopIteration */
static PyObject *
run_result(PySendResult rs, PyObject *res)
{
    if (rs == PYGEN_NEXT)
        return res;
    if (rs == PYGEN_RETURN) {
        Py_DECREF(res);  /* always None */
        PyErr_SetNone(PyExc_StopIteration);
    }
    return NULL;
}

static PyObject *
run_send(upy_asgi_run *self, PyObject *arg)
{
    PyObject *res;
    PySendResult rs = run_step(self, arg, NULL, &res);
    return run_result(rs, res);
}

static PyObject *
run_iternext(upy_asgi_run *self)
{
    PyObject *res;
    PySendResult rs = run_step(self, Py_None, NULL, &res);
    if (rs == PYGEN_RETURN) {
        Py_DECREF(res);
        return NULL;  /* exhausted: StopIteration without an object */
    }
    return rs == PYGEN_NEXT ? res : NULL;
}

static PyObject *
run_throw(upy_asgi_run *self, PyObject *args)
{
    PyObject *res;
    PySendResult rs;
    if (PyTuple_GET_SIZE(args) < 1 || PyTuple_GET_SIZE(args) > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    rs = run_step(self, NULL, args, &res);
    return run_result(rs, res);
}

/* close(): the coroutine is dropped unfinished (its task destroyed, the
   loop closing): the app's awaitable is closed and the cycle ends as for
   an app cancelled; a kept run lets go of its connection. */
static PyObject *
run_close(upy_asgi_run *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *it = self->it, *r = NULL;
    upy_asgi *cy;
    self->it = NULL;
    cy = run_take_cycle(self);
    run_end(self);
    if (cy == NULL) {
        Py_XDECREF(it);
        Py_RETURN_NONE;
    }
    if (it != NULL) {
        PyObject *close = PyObject_GetAttrString(it, "close");
        if (close == NULL)
            PyErr_Clear();
        else {
            r = PyObject_CallNoArgs(close);
            Py_DECREF(close);
        }
        Py_DECREF(it);
    }
    if (r == NULL && it != NULL && PyErr_Occurred()) {
        Py_DECREF(cy);
        return NULL;  /* the app's close() raised (ignored GeneratorExit) */
    }
    Py_XDECREF(r);
    {
        PyObject *e = PyObject_CallNoArgs(PyExc_GeneratorExit);
        if (e != NULL) {
            app_failed(cy, e);
            Py_DECREF(e);
        }
        if (PyErr_Occurred())
            upy_log_exception(cy->srv, "ASGI: closing a request's coroutine");
    }
    Py_DECREF(cy);
    Py_RETURN_NONE;
}

static PyObject *
run_await(PyObject *self)
{
    return Py_NewRef(self);
}

/* The Future side, while the task waits for the connection's next request
   (asyncio's Future protocol, as Task.__step reads it). */

/* add_done_callback(fn, *, context=None) */
static PyObject *
run_add_done_callback(upy_asgi_run *self, PyObject *const *args,
                      Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *fn, *ctx = NULL;
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs != 1 || nkw > 1 ||
        (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "context") != 0)) {
        PyErr_SetString(PyExc_TypeError, "add_done_callback(fn, *, context=None)");
        return NULL;
    }
    fn = args[0];
    if (nkw == 1 && args[1] != Py_None)
        ctx = args[1];
    if (self->state == RUN_WOKEN || self->state == RUN_HANDOFF) {
        /* done already: as a done Future, the callback is scheduled */
        if (run_call_later(self->srv->asgi, fn, ctx, self) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (self->state != RUN_PARKED || self->wake_cb != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ASGI: a kept task's wait takes "
                        "one done callback, its task's");
        return NULL;
    }
    self->wake_cb = Py_NewRef(fn);
    self->wake_ctx = Py_XNewRef(ctx);
    Py_RETURN_NONE;
}

static PyObject *
run_remove_done_callback(upy_asgi_run *self, PyObject *fn)
{
    if (self->wake_cb != NULL && self->wake_cb == fn) {
        Py_CLEAR(self->wake_cb);
        Py_CLEAR(self->wake_ctx);
        return PyLong_FromLong(1);
    }
    return PyLong_FromLong(0);
}

static PyObject *
run_fut_result(upy_asgi_run *self, PyObject *Py_UNUSED(ignored))
{
    upy_asgi_ctx *x = self->srv->asgi;
    if (self->state == RUN_WOKEN && self->wake == WAKE_CANCEL) {
        PyObject *t = x != NULL && x->cancelled_error != NULL
                          ? x->cancelled_error : PyExc_RuntimeError;
        if (self->cancel_msg != NULL)
            PyErr_SetObject(t, self->cancel_msg);
        else
            PyErr_SetNone(t);
        return NULL;
    }
    if (self->state != RUN_WOKEN && self->state != RUN_HANDOFF) {
        PyErr_SetString(PyExc_RuntimeError, "ASGI: a kept task's wait is not done");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
run_fut_exception(upy_asgi_run *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *r = run_fut_result(self, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *
run_fut_done(upy_asgi_run *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->state == RUN_WOKEN || self->state == RUN_HANDOFF);
}

static PyObject *
run_fut_cancelled(upy_asgi_run *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->state == RUN_WOKEN && self->wake == WAKE_CANCEL);
}

/* cancel(msg=None): Task.cancel() of a task waiting here ends it
   cancelled (result() raises CancelledError(msg) into its step); of a task
   running or woken (False: the task keeps the cancellation for its next
   step) it is noted, so the run is not kept past it. */
static PyObject *
run_fut_cancel(upy_asgi_run *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *msg = nargs > 0 ? args[0] : nkw > 0 ? args[nargs] : Py_None;
    if (nargs + nkw > 1 ||
        (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "msg") != 0)) {
        PyErr_SetString(PyExc_TypeError, "cancel(msg=None)");
        return NULL;
    }
    if (self->state != RUN_PARKED) {
        self->cancelled = 1;
        Py_RETURN_FALSE;
    }
    Py_XSETREF(self->cancel_msg, msg != Py_None ? Py_NewRef(msg) : NULL);
    run_release(self, WAKE_CANCEL);
    Py_RETURN_TRUE;
}

static PyObject *
run_get_loop(upy_asgi_run *self, PyObject *Py_UNUSED(ignored))
{
    upy_asgi_ctx *x = self->srv->asgi;
    if (x == NULL || x->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ASGI: the loop is gone");
        return NULL;
    }
    return Py_NewRef(x->loop);
}

static PyObject *
run_get_blocking(upy_asgi_run *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->blocking);
}

static int
run_set_blocking(upy_asgi_run *self, PyObject *v, void *Py_UNUSED(closure))
{
    int b = v != NULL ? PyObject_IsTrue(v) : 0;
    if (b < 0)
        return -1;
    self->blocking = b != 0;
    return 0;
}

/* cr_frame, cr_await, cr_code, cr_running: the app's coroutine's, so
   Task.get_stack(), print_stack() and repr() show where the app is. */
static PyObject *
run_inner_attr(upy_asgi_run *self, void *name)
{
    PyObject *v;
    if (self->it == NULL) {
        if (strcmp((const char *)name, "cr_running") == 0)
            Py_RETURN_FALSE;
        Py_RETURN_NONE;
    }
    v = PyObject_GetAttrString(self->it, (const char *)name);
    if (v == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return v;
}

static PyObject *
run_qualname(upy_asgi_run *self, void *Py_UNUSED(closure))
{
    PyObject *src = self->it != NULL ? self->it
                    : self->app != NULL ? self->app
                    : self->srv != NULL ? self->srv->app : NULL, *v;
    if (src != NULL) {
        v = PyObject_GetAttrString(src, "__qualname__");
        if (v != NULL && PyUnicode_Check(v))
            return v;
        Py_XDECREF(v);
        PyErr_Clear();
    }
    return PyUnicode_FromString("uwsgipy-asgi-request");
}

static int
run_traverse(upy_asgi_run *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT((PyObject *)self->srv);
    Py_VISIT((PyObject *)self->cy);
    Py_VISIT(self->app);
    Py_VISIT(self->scope);
    Py_VISIT(self->it);
    Py_VISIT(self->ctx);
    Py_VISIT(self->task);
    Py_VISIT(self->wake_cb);
    Py_VISIT(self->wake_ctx);
    Py_VISIT(self->stash);
    Py_VISIT(self->stash_exc[0]);
    Py_VISIT(self->stash_exc[1]);
    Py_VISIT(self->stash_exc[2]);
    Py_VISIT(self->cancel_msg);
    return 0;
}

static int
run_clear(upy_asgi_run *self)
{
    if (self->cy != NULL && self->cy->run == self)
        self->cy->run = NULL;
    Py_CLEAR(self->cy);
    Py_CLEAR(self->app);
    Py_CLEAR(self->scope);
    Py_CLEAR(self->it);
    Py_CLEAR(self->ctx);
    Py_CLEAR(self->task);
    Py_CLEAR(self->wake_cb);
    Py_CLEAR(self->wake_ctx);
    Py_CLEAR(self->stash);
    Py_CLEAR(self->stash_exc[0]);
    Py_CLEAR(self->stash_exc[1]);
    Py_CLEAR(self->stash_exc[2]);
    Py_CLEAR(self->cancel_msg);
    return 0;
}

static void
run_dealloc(upy_asgi_run *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    run_clear(self);
    Py_CLEAR(self->srv);
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyMethodDef run_methods[] = {
    {"send", (PyCFunction)run_send, METH_O, NULL},
    {"throw", (PyCFunction)run_throw, METH_VARARGS, NULL},
    {"close", (PyCFunction)run_close, METH_NOARGS, NULL},
    {"add_done_callback", (PyCFunction)(void (*)(void))run_add_done_callback,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"remove_done_callback", (PyCFunction)run_remove_done_callback, METH_O, NULL},
    {"result", (PyCFunction)run_fut_result, METH_NOARGS, NULL},
    {"exception", (PyCFunction)run_fut_exception, METH_NOARGS, NULL},
    {"done", (PyCFunction)run_fut_done, METH_NOARGS, NULL},
    {"cancelled", (PyCFunction)run_fut_cancelled, METH_NOARGS, NULL},
    {"cancel", (PyCFunction)(void (*)(void))run_fut_cancel,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"get_loop", (PyCFunction)run_get_loop, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef run_getset[] = {
    {"cr_frame", (getter)run_inner_attr, NULL, NULL, "cr_frame"},
    {"cr_await", (getter)run_inner_attr, NULL, NULL, "cr_await"},
    {"cr_code", (getter)run_inner_attr, NULL, NULL, "cr_code"},
    {"cr_running", (getter)run_inner_attr, NULL, NULL, "cr_running"},
    {"__qualname__", (getter)run_qualname, NULL, NULL, NULL},
    {"__name__", (getter)run_qualname, NULL, NULL, NULL},
    {"_asyncio_future_blocking", (getter)run_get_blocking,
     (setter)run_set_blocking, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot run_slots[] = {
    {Py_tp_doc, (void *)"The coroutine of a request's task: runs the ASGI "
                        "app and tells the connection scope how it ended."},
    {Py_tp_dealloc, run_dealloc},
    {Py_tp_traverse, run_traverse},
    {Py_tp_clear, run_clear},
    {Py_tp_methods, run_methods},
    {Py_tp_getset, run_getset},
    {Py_am_await, run_await},
    {Py_am_send, run_am_send},
    {Py_tp_iter, run_await},
    {Py_tp_iternext, run_iternext},
    {0, NULL},
};

PyType_Spec upy_asgi_run_spec = {
    .name = "uwsgipy._core.AsgiRun",
    .basicsize = sizeof(upy_asgi_run),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = run_slots,
};

/* ------------------------------------------------------------------ */
/* Set-up                                                              */
/* ------------------------------------------------------------------ */

/* scope["server"] of listener l: its bound address. */
static PyObject *
listener_addr(upy_listener *l)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "";
    if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) < 0)
        Py_RETURN_NONE;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        return Py_BuildValue("(si)", host, (int)ntohs(a->sin_port));
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        return Py_BuildValue("(si)", host, (int)ntohs(a->sin6_port));
    }
    if (ss.ss_family == AF_UNIX) {
        struct sockaddr_un *u = (struct sockaddr_un *)&ss;
        size_t n = sl > offsetof(struct sockaddr_un, sun_path)
                       ? strnlen(u->sun_path, sl - offsetof(struct sockaddr_un, sun_path))
                       : 0;
        PyObject *p = PyUnicode_DecodeFSDefaultAndSize(u->sun_path, (Py_ssize_t)n);
        if (p == NULL)
            return NULL;
        return Py_BuildValue("(NO)", p, Py_None);
    }
    Py_RETURN_NONE;
}

void
upy_asgi_free(upy_server *srv)
{
    upy_asgi_ctx *x = srv->asgi;
    if (x == NULL)
        return;
    srv->asgi = NULL;
    free(x->spare_out);
    for (size_t i = 0; i < x->nwakes; i++)
        Py_CLEAR(x->wakes[i]);
    PyMem_Free(x->wakes);
    Py_CLEAR(x->loop);
    Py_CLEAR(x->create_task);
    Py_CLEAR(x->create_future);
    Py_CLEAR(x->task_type);
    Py_CLEAR(x->task_kwnames);
    Py_CLEAR(x->task_kwarg);
    Py_CLEAR(x->state);
    Py_CLEAR(x->scope_http);
    Py_CLEAR(x->scope_ws);
    Py_CLEAR(x->asgi_dict);
    Py_CLEAR(x->http_ext);
    Py_CLEAR(x->ws_ext);
    Py_CLEAR(x->ready_none);
    Py_CLEAR(x->disconnect_msg);
    Py_CLEAR(x->base_ctx);
    Py_CLEAR(x->call_soon);
    Py_CLEAR(x->context_kw);
    Py_CLEAR(x->cancelled_error);
    Py_CLEAR(x->enter_task);
    Py_CLEAR(x->leave_task);
    if (x->servers != NULL) {
        for (Py_ssize_t i = 0; i < srv->nlisteners; i++)
            Py_CLEAR(x->servers[i]);
        PyMem_Free(x->servers);
    }
#define UPY_ASGI_FREE(n, s) Py_CLEAR(x->n_##n);
    UPY_ASGI_NAMES(UPY_ASGI_FREE)
#undef UPY_ASGI_FREE
    PyMem_Free(x);
}

void
upy_asgi_clear(upy_server *srv)
{
    upy_asgi_ctx *x = srv->asgi;
    if (x == NULL)
        return;
    Py_CLEAR(x->loop);
    Py_CLEAR(x->create_task);
    Py_CLEAR(x->create_future);
    Py_CLEAR(x->task_type);
    Py_CLEAR(x->task_kwarg);
    Py_CLEAR(x->state);
    Py_CLEAR(x->base_ctx);
    Py_CLEAR(x->call_soon);
}

int
upy_asgi_traverse(upy_server *srv, visitproc visit, void *arg)
{
    upy_asgi_ctx *x = srv->asgi;
    if (x == NULL)
        return 0;
    Py_VISIT(x->loop);
    Py_VISIT(x->create_task);
    Py_VISIT(x->create_future);
    Py_VISIT(x->task_type);
    Py_VISIT(x->task_kwarg);
    Py_VISIT(x->state);
    Py_VISIT(x->base_ctx);
    Py_VISIT(x->call_soon);
    return 0;
}

Py_ssize_t
upy_asgi_tasks(upy_server *srv)
{
    return srv->asgi != NULL ? srv->asgi->ntasks : 0;
}

/* How upy_asgi_start() makes a task: asyncio.Task directly when the loop
   has no task factory (the factory is looked at here, once: after the
   lifespan startup, which may set one), else loop.create_task. */
static int
task_setup(upy_asgi_ctx *x, PyObject *loop)
{
    PyObject *factory, *asyncio;
    Py_CLEAR(x->task_type);
    Py_CLEAR(x->task_kwarg);
    factory = PyObject_CallMethod(loop, "get_task_factory", NULL);
    if (factory == NULL)
        return -1;
    if (factory != Py_None) {
        Py_DECREF(factory);
        return 0;
    }
    Py_DECREF(factory);
    asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL)
        return -1;
    x->task_type = PyObject_GetAttrString(asyncio, "Task");
    Py_DECREF(asyncio);
    if (x->task_type == NULL)
        return -1;
    if (x->task_kwnames == NULL) {
#if PY_VERSION_HEX >= 0x030C0000
        x->task_kwnames = Py_BuildValue("(ss)", "loop", "eager_start");
#else
        x->task_kwnames = Py_BuildValue("(ss)", "loop", "name");
#endif
        if (x->task_kwnames == NULL)
            return -1;
    }
#if PY_VERSION_HEX >= 0x030C0000
    x->task_kwarg = Py_NewRef(Py_True);
#else
    x->task_kwarg = PyUnicode_InternFromString("uwsgipy-asgi");
#endif
    return x->task_kwarg == NULL ? -1 : 0;
}

PyObject *
upy_asgi_setup(upy_server *srv, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "state", NULL};
    PyObject *loop, *state = Py_None;
    upy_asgi_ctx *x;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O", kwlist, &loop, &state))
        return NULL;
    if (srv->runner != UPY_RUN_ASGI) {
        PyErr_SetString(PyExc_RuntimeError, "asgi_setup() is for the asgi runner");
        return NULL;
    }
    if (srv->asgi == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "asgi runner not initialised");
        return NULL;
    }
    if (srv->serving) {
        PyErr_SetString(PyExc_RuntimeError, "asgi_setup() must come before "
                        "the loop runs");
        return NULL;
    }
    if (state != Py_None && !PyDict_Check(state)) {
        PyErr_SetString(PyExc_TypeError, "state must be a dict or None");
        return NULL;
    }
    x = srv->asgi;
    Py_XSETREF(x->loop, Py_NewRef(loop));
    Py_XSETREF(x->state, state == Py_None ? NULL : Py_NewRef(state));
    Py_XSETREF(x->create_task, PyObject_GetAttrString(loop, "create_task"));
    Py_XSETREF(x->create_future, PyObject_GetAttrString(loop, "create_future"));
    if (x->create_task == NULL || x->create_future == NULL)
        return NULL;
    Py_XSETREF(x->call_soon, PyObject_GetAttrString(loop, "call_soon"));
    Py_XSETREF(x->base_ctx, PyContext_CopyCurrent());
    if (x->call_soon == NULL || x->base_ctx == NULL)
        return NULL;
    if (x->context_kw == NULL &&
        (x->context_kw = Py_BuildValue("(s)", "context")) == NULL)
        return NULL;
    if (x->cancelled_error == NULL) {
        /* asyncio.CancelledError; asyncio.tasks._enter_task and _leave_task
           for run_step_here (without them, another asyncio, the task steps
           every request itself) */
        PyObject *asyncio = PyImport_ImportModule("asyncio"), *tasks;
        if (asyncio == NULL)
            return NULL;
        x->cancelled_error = PyObject_GetAttrString(asyncio, "CancelledError");
        tasks = PyObject_GetAttrString(asyncio, "tasks");
        Py_DECREF(asyncio);
        if (x->cancelled_error == NULL || tasks == NULL) {
            Py_XDECREF(tasks);
            return NULL;
        }
        x->enter_task = PyObject_GetAttrString(tasks, "_enter_task");
        x->leave_task = x->enter_task != NULL
                            ? PyObject_GetAttrString(tasks, "_leave_task") : NULL;
        Py_DECREF(tasks);
        if (x->leave_task == NULL) {
            PyErr_Clear();
            Py_CLEAR(x->enter_task);
        }
    }
    Py_XSETREF(x->scope_http, scope_template(x, 0));
    Py_XSETREF(x->scope_ws, scope_template(x, 1));
    if (x->scope_http == NULL || x->scope_ws == NULL)
        return NULL;
    return task_setup(x, loop) < 0 ? NULL : Py_NewRef(Py_None);
}

int
upy_asgi_init(upy_server *srv, uint64_t ws_max, double ws_ping, double ws_pong)
{
    upy_asgi_ctx *x = PyMem_Calloc(1, sizeof *x);
    PyObject *d;
    if (x == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    srv->asgi = x;
    x->ws_max = ws_max;
    x->ws_ping = ws_ping;
    x->ws_pong = ws_pong;
#define UPY_ASGI_INIT(n, s)                                                  \
    if ((x->n_##n = PyUnicode_InternFromString(s)) == NULL)                  \
        return -1;
    UPY_ASGI_NAMES(UPY_ASGI_INIT)
#undef UPY_ASGI_INIT
    x->asgi_dict = Py_BuildValue("{s:s,s:s}", "version", "3.0",
                                 "spec_version", "2.4");
    x->http_ext = Py_BuildValue("{s:{},s:{}}", "http.response.trailers",
                                "http.response.pathsend");
    x->ws_ext = Py_BuildValue("{s:{}}", "websocket.http.response");
    x->ready_none = ready_new(srv, NULL);
    x->disconnect_msg = msg_new(x, x->n_http_disconnect);
    if (x->asgi_dict == NULL || x->http_ext == NULL || x->ws_ext == NULL ||
        x->ready_none == NULL || x->disconnect_msg == NULL)
        return -1;
    x->servers = PyMem_Calloc((size_t)srv->nlisteners + 1, sizeof(PyObject *));
    if (x->servers == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < srv->nlisteners; i++) {
        d = listener_addr(&srv->listeners[i]);
        if (d == NULL)
            return -1;
        x->servers[i] = d;
    }
    return 0;
}
