/*
 * upy_core.h - declarations shared by the CPython glue of uwsgipy._core.
 *
 * Layers (one file each):
 *   upy_module.c    module definition, module state, interned strings
 *   upy_server.c    Server type: the worker's one I/O loop (listeners,
 *                   connections, reading request heads and bodies) and
 *                   the app runners it hands complete requests to
 *   upy_environ.c   the WSGI environ (PEP 3333 §"environ Variables") built
 *                   from a upy_request, in one place for both protocols
 *   upy_response.c  start_response, write(), response iteration and
 *                   sending, wsgi.file_wrapper
 * The protocol parsers (upy_http.c, upy_uwsgi.c) are pure C: upy_parse.h.
 *
 * Reference ownership: every PyObject * field of a C struct here is a
 * strong reference owned by that struct unless its comment says
 * "borrowed".
 */
#ifndef UPY_CORE_H
#define UPY_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "upy_parse.h"
#include "upy_poll.h"
#include "upy_proxy.h"

#define UPY_VISIBLE __attribute__((visibility("default")))

/* sendfile(2) as Linux has it; elsewhere (and in the UPY_PORTABLE build)
   a file body is pread(2) and sent in pieces from the same phase. */
#if defined(__linux__) && !defined(UPY_PORTABLE)
#define UPY_HAVE_SENDFILE 1
#else
#define UPY_HAVE_SENDFILE 0
#endif
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  /* Python ignores SIGPIPE: EPIPE is returned anyway */
#endif
#ifndef MSG_MORE
#define MSG_MORE 0      /* no corking: the head may go in its own packet */
#endif

/* ------------------------------------------------------------------ */
/* Module state                                                        */
/* ------------------------------------------------------------------ */

/* Environ keys and constant values interned once per module. */
#define UPY_INTERNED(X)                                                      \
    X(REQUEST_METHOD) X(SCRIPT_NAME) X(PATH_INFO) X(QUERY_STRING)            \
    X(CONTENT_TYPE) X(CONTENT_LENGTH) X(SERVER_NAME) X(SERVER_PORT)          \
    X(SERVER_PROTOCOL) X(REMOTE_ADDR) X(REMOTE_PORT) X(REQUEST_URI)          \
    X(HTTP_COOKIE) X(HTTPS) X(HTTP_USER_AGENT) X(HTTP_REFERER) X(HTTP_HOST)    \
    X(HTTP_X_FORWARDED_FOR)

typedef struct {
    PyTypeObject *Server_Type;
    PyTypeObject *StartResponse_Type;
    PyTypeObject *FileWrapper_Type;
    PyTypeObject *EmptyInput_Type;
    PyTypeObject *Request_Type;
    PyTypeObject *Asgi_Type;      /* upy_asgi.c: one connection scope */
    PyTypeObject *AsgiReady_Type; /* upy_asgi.c: a completed awaitable */
    PyTypeObject *AsgiRun_Type;   /* upy_asgi.c: a request task's coroutine */
    PyObject *empty_input;   /* the one EmptyInput instance */
#define UPY_DECL_KEY(name) PyObject *k_##name;
    UPY_INTERNED(UPY_DECL_KEY)
#undef UPY_DECL_KEY
    PyObject *k_wsgi_version, *k_wsgi_url_scheme, *k_wsgi_input,
        *k_wsgi_errors, *k_wsgi_multithread, *k_wsgi_multiprocess,
        *k_wsgi_run_once, *k_wsgi_input_terminated, *k_wsgi_file_wrapper;
    PyObject *s_empty, *s_http, *s_https, *s_http10, *s_http11, *s_GET;
    PyObject *s_close, *s_read, *s_fileno, *s_tell, *s_write;
    PyObject *wsgi_version;  /* (1, 0) */
    PyObject *io_BytesIO;    /* io.BytesIO */
    PyObject *io_open;       /* io.open */
    PyObject *empty_bytes;   /* b"" */
} upy_state;

/* ------------------------------------------------------------------ */
/* Server, listeners, connections, loops                               */
/* ------------------------------------------------------------------ */

typedef enum {
    UPY_EV_LISTENER = 1, UPY_EV_CONN, UPY_EV_WAKE,
    UPY_EV_DONE,             /* an app runner handed connections back */
    UPY_EV_SIGNAL            /* signal.set_wakeup_fd()'s pipe */
} upy_ev_kind;

typedef struct {
    upy_ev_kind ev;          /* first: poller user data is a tagged pointer */
    int fd;
    upy_proto proto;
    int is_unix;
    PyObject *base_environ;  /* the constant part of environ, copied per
                                request */
    PyObject *name;          /* "http-socket 127.0.0.1:8000", for logs */
    PyObject *name_bytes;    /* name in UTF-8 (backslashreplace), bytes */
    const char *name_c;      /* its buffer (borrowed from name_bytes) */
    int close_on_stop;       /* a final stop shuts it (not systemd's) */
    int proxy_protocol;      /* HTTP: connections may start with a PROXY
                                header (upy_proxy.h) */
    double socket_timeout;   /* seconds a client may stall (socket-timeout,
                                or http-timeout for http listeners) */
    double keepalive_timeout; /* idle keep-alive, seconds; 0 none */
    int shut;                /* shut down (by this process or another):
                                accept() fails with EINVAL */
} upy_listener;

struct upy_loop;
struct upy_server;
struct upy_core;

typedef enum {
    UPY_CONN_HEAD = 0,       /* reading a request head */
    UPY_CONN_BODY,           /* reading a request body */
    UPY_CONN_WRITE,          /* response blocked on a full socket */
    UPY_CONN_LINGER,         /* response sent, write side shut: draining */
    UPY_CONN_APP,            /* handed to an app runner (queued or running):
                                the loop does not touch it until it comes
                                back on the done queue */
    UPY_CONN_CLOSED,         /* closed in this turn of the loop: reused at
                                its end */
    UPY_CONN_ASGI            /* runner "asgi": an ASGI cycle (upy_asgi.c)
                                owns it; the loop passes its events on */
} upy_conn_state;

/* ------------------------------------------------------------------ */
/* The response of one request                                          */
/* ------------------------------------------------------------------ */

/* Output the socket did not take yet: up to 4 iovecs; small parts are
   copied into `copy`, a body item's data is referenced (`hold`). */
typedef struct {
    struct iovec iov[4];
    int cnt;                 /* 0: nothing pending */
    PyObject *hold;          /* keeps the referenced body data alive */
    char *copy;              /* malloc'd */
    size_t copy_cap;
} upy_pending;

typedef enum {
    UPY_PHASE_ITER = 0,      /* iterating the app's result */
    UPY_PHASE_SENDFILE,      /* sendfile(2) of a file_wrapper's file */
    UPY_PHASE_END,           /* result exhausted: end the framing */
    UPY_PHASE_FINISH         /* all queued: flush, then finish */
} upy_phase;

/* Results of starting or resuming a response. */
#define UPY_RESP_KEEP 0      /* done; the connection may go on */
#define UPY_RESP_CLOSE (-1)  /* done; close the connection */
#define UPY_RESP_BLOCKED 1   /* the socket is full: resume when writable */

struct upy_conn;

typedef struct {
    struct upy_core *core;   /* borrowed: the core running it now */
    struct upy_conn *conn;   /* borrowed */
    int active;              /* a response is in progress */
    upy_phase phase;
    PyObject *sr;            /* the StartResponse object */
    PyObject *result;        /* what the app returned */
    PyObject *iter;          /* iter(result) */
    PyObject *environ;       /* kept for the access log */
    PyObject *input;         /* wsgi.input, released at the end */
    double started;          /* monotonic, when the app was called */
    int64_t known_length;    /* body length the server worked out, -1 */
    int sf_fd;               /* PHASE_SENDFILE: the file (borrowed fd) */
    off_t sf_offset;
    uint64_t sf_remaining;
    int status_code;
    PyObject *status;        /* str, NULL before start_response */
    PyObject *headers;       /* list, NULL before start_response */
    int64_t content_length;  /* from the app, -1 none */
    int headers_sent;
    int chunked;             /* chunked transfer coding in use */
    int no_body;             /* HEAD, 1xx, 204, 304 */
    int keep_alive;          /* connection persists after this response */
    int app_close;           /* the app sent Connection: close */
    int has_date;            /* the app sent Date */
    int failed;              /* the connection broke: stop sending */
    int app_failed;          /* the app raised */
    uint64_t sent;           /* body bytes sent or queued */
    int minor_version;
    upy_proto proto;
    int is_static;           /* a static-map response (upy_static.c): the
                                loop ends it, no Python; sf_fd is owned */
    int end_sent;            /* the protocol's end of response (FastCGI
                                END_REQUEST) is sent or queued */
} upy_response;

typedef struct upy_conn {
    upy_ev_kind ev;          /* first */
    int fd;
    upy_conn_state state;
    upy_listener *lst;       /* borrowed from the server */
    struct upy_conn *prev, *next;

    char *buf;               /* read buffer, malloc'd */
    size_t cap, len;
    size_t last_len;         /* HTTP: length at the last incomplete parse */
    size_t head_len;         /* bytes of the current head in buf */
    double deadline;         /* monotonic seconds; 0 = none */
    double last_io;          /* last read: socket-timeout counts from it */
    double head_started;     /* header-timeout counts from it; 0: no byte
                                of the next head yet */
    double body_started;     /* body-timeout counts from it */
    unsigned requests;       /* served on this connection */
    int registered;          /* known to the poller */
    uint32_t events;         /* UPY_POLL_* registered for */
    struct upy_conn *qnext;  /* the job or done queue it is on */
    int job_rc;              /* UPY_RESP_* of the runner's last turn */
    unsigned orphan : 1;     /* its loop ended while a runner had it */
    PyObject *asgi;          /* state ASGI: the cycle (upy_asgi.c), strong */
    PyObject *asgi_park;     /* runner "asgi": the task's coroutine (AsgiRun)
                                kept for this keep-alive connection's next
                                request (upy_asgi.c), strong, or NULL */

    /* body reception */
    int64_t content_length;  /* -1 unknown (chunked) */
    unsigned chunked : 1, keep_alive : 1, expect_continue : 1,
        sent_continue : 1, is_head : 1,
        proxy_pending : 1;   /* a PROXY header may still come first */
    upy_chunked_decoder chunk;
    uint64_t body_len;       /* body bytes received (decoded) */
    char *body_mem;          /* in-memory body, malloc'd */
    size_t body_cap;
    int body_fd;             /* spilled body, -1 if in memory */

    upy_response resp;       /* the response in progress */
    upy_pending pend;        /* its output the socket has not taken */

    /* FastCGI (upy_proto_fastcgi.c): the request in progress */
    struct {
        uint16_t id;         /* its requestId; 0 between requests */
        unsigned keep : 1;   /* FCGI_KEEP_CONN */
        size_t params_off, params_len; /* the params block in buf */
        upy_fcgi_stdin_decoder in;     /* its STDIN stream */
        char *out;           /* framed output too large for iovecs */
        size_t out_cap;
    } fcgi;

    uint8_t host_off, host_len, port_off, port_len; /* REMOTE_ADDR and
                                REMOTE_PORT within addr_text (HTTP) */
    char addr_text[64];      /* "host:port" or "unix socket", for logs */
} upy_conn;

/*
 * One slot of the scoreboard: a shared (MAP_SHARED) array the master reads
 * for harakiri and the stats server.  One slot per worker thread ("core"
 * in uWSGI's stats).  Written only by the loop owning it; aligned 8-byte
 * fields so the master never sees torn values.  uwsgipy/scoreboard.py
 * mirrors this layout (checked against SLOT_SIZE by the tests).
 */
typedef struct {
    double request_started;  /* CLOCK_MONOTONIC seconds; 0 when idle */
    double avg_rt;           /* running average response time, us */
    uint64_t requests;       /* requests finished */
    uint64_t exceptions;     /* requests whose app raised */
    uint64_t tx;             /* body bytes sent */
    uint64_t running_us;     /* time spent in requests, us */
    uint64_t pid;            /* the worker process */
    char method[16];         /* of the request in progress (NUL-terminated) */
    char uri[88];
    uint64_t static_requests; /* of requests, those static-map served
                                (counted on slot 0 by the loop: atomic
                                adds, as requests and tx there) */
    /* For /metrics (uwsgipy/metrics.py): finished requests by status
       class (1xx..5xx; anything else counts as 5xx) and by duration, one
       counter per bucket of UPY_DURATION_BOUNDS_US, the last one past 10 s
       (not cumulative: the master sums them).  Atomic adds, as requests. */
    uint64_t status_class[5];
    uint64_t duration[12];
} upy_slot;

/* Upper bounds (us) of the request duration buckets, Prometheus' default
   buckets narrowed to 5 ms .. 10 s; mirrored by uwsgipy/metrics.py. */
#define UPY_DURATION_BOUNDS_US \
    {5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, \
     5000000, 10000000}

/* Count a finished request's status class and duration on slot sl. */
static inline void
upy_slot_count(upy_slot *sl, int status, double us)
{
    static const double bounds[] = UPY_DURATION_BOUNDS_US;
    size_t b = 0;
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    while (b < sizeof bounds / sizeof bounds[0] && us > bounds[b])
        b++;
    __atomic_fetch_add(&sl->status_class[cls - 1], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&sl->duration[b], 1, __ATOMIC_RELAXED);
}

/*
 * A core runs one request at a time: the loop thread itself (runner
 * "inline"), one app thread of the pool ("threads"), or one greenlet of
 * an external loop ("external", gevent).  Its buffers are its own, so
 * cores never share per-request scratch space.
 */
typedef struct upy_core {
    struct upy_server *srv;  /* borrowed */
    upy_state *st;           /* borrowed */
    int index;
    upy_slot *slot;          /* its scoreboard slot, or NULL */
    upy_field *fields;       /* the request head parsed again, fields_cap */
    size_t fields_cap;
    char *scratch;           /* percent-decoding etc., scratch_cap bytes */
    size_t scratch_cap;
    char *out;               /* response head being built */
    size_t out_cap;
    int busy;                /* running a request (external: checked) */
    int attached;            /* threads: an app thread serves this core */
} upy_core;

typedef enum {
    UPY_RUN_INLINE = 0,      /* the loop thread calls the app */
    UPY_RUN_THREADS,         /* a pool of app threads fed by a queue */
    UPY_RUN_EXTERNAL,        /* another event loop drives the loop (gevent) */
    UPY_RUN_ASGI             /* asyncio drives the loop; ASGI apps run as
                                tasks on it (upy_asgi.c) */
} upy_runner;

typedef struct upy_loop {
    struct upy_server *srv;  /* borrowed: the server outlives its loop */
    upy_state *st;           /* borrowed */
    upy_poller poller;
    int open;                /* set up (listeners registered) */
    int stepping;            /* in run_once() (external runner) */
    int poller_ok;           /* poller made (at init), not freed yet */
    int wakeup_fd;           /* signal.set_wakeup_fd's read end, or -1 */
    double last_sweep;
    PyThreadState *tstate;   /* threads runner: the loop thread's state
                                while it runs without the GIL */
    upy_ev_kind wake_tag;    /* poller user data of the wake fds */
    upy_ev_kind done_tag;    /* ... of done_rfd */
    upy_ev_kind signal_tag;  /* ... of the signal wakeup fd */
    upy_conn *conns;         /* all open connections */
    size_t nconns;
    upy_field *fields;       /* parser output, fields_cap entries */
    size_t fields_cap;
    int listening;           /* listeners registered in the poller */
    upy_conn *closed;        /* closed in this turn (loop_reap()) */
    upy_conn *free_conns;    /* closed connections kept for reuse */
    size_t nfree;
    void *spare_bufs;        /* read buffers of idle and closed connections,
                                kept for reuse (a list through their first
                                bytes), each UPY_INITIAL_BUF bytes */
    size_t nspare;
    int wake_watched;        /* the server's wake fd is registered */
    int drained;             /* final stop: backlogs served, listeners shut */
    /* accept() out of fds (EMFILE, ENFILE, ENOBUFS, ENOMEM): listeners
       are unregistered until accept_resume_at or a connection closes */
    int accept_paused;
    double accept_resume_at;
    double accept_backoff;   /* seconds, doubles while it keeps failing */
    uint64_t accept_failures; /* since the last log line */
    double accept_logged_at;

    /* The hand-off (runners "threads" and "external"): the loop appends
       complete requests to the job queue; a runner takes one, runs it,
       and appends the connection to the done queue, signalling done_fd
       (registered in the poller) once per batch.  mu guards both queues,
       nidle, done_signalled and ended.  Lock order: the GIL, then mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* app threads wait here for jobs */
    upy_conn *jobs, *jobs_tail;
    upy_conn *done, *done_tail;
    int nidle;               /* app threads waiting on cv */
    int done_signalled;      /* done_fd written since the loop last read it */
    int done_rfd, done_wfd;
    int ended;               /* the loop has ended: runners close what they
                                hold and app threads return */
    int sync_ok;             /* mu and cv are initialised */
    PyObject *ready;         /* external: list of Request objects for
                                run_once() to return */
} upy_loop;

/* A small cache from raw names (uwsgi var names, header field names) to
   their environ key strings, so common keys are made once per server. */
#define UPY_KEY_CACHE_SIZE 256  /* power of two */
#define UPY_KEY_CACHE_MAXLEN 48
typedef struct {
    uint32_t hash;
    uint32_t len;
    char raw[UPY_KEY_CACHE_MAXLEN];
    PyObject *key;           /* strong reference, NULL when empty */
} upy_key_entry;

/* Access log filter bits (uWSGI's log-4xx / log-5xx with disable-logging). */
#define UPY_LOG_4XX 1
#define UPY_LOG_5XX 2

/* log_format codes beyond _core.LOG_VARS (uwsgipy/log.py, same values):
   the default line, and the default line with the time in microseconds
   (log-micros). */
#define UPY_LV_DEFAULT 100
#define UPY_LV_DEFAULT_MICROS 101

/* log-format variables; uwsgipy/log.py compiles "%(var)" to these. */
enum {
    UPY_LV_ADDR = 1, UPY_LV_METHOD, UPY_LV_URI, UPY_LV_PROTO, UPY_LV_STATUS,
    UPY_LV_SIZE, UPY_LV_MSECS, UPY_LV_MICROS, UPY_LV_TIME, UPY_LV_CTIME,
    UPY_LV_UAGENT, UPY_LV_REFERER, UPY_LV_HOST, UPY_LV_PID, UPY_LV_WID,
    UPY_LV_LTIME, UPY_LV_EPOCH, UPY_LV_SECS, UPY_LV_CL, UPY_LV_REQUEST_ID
};

typedef struct upy_server {
    PyObject_HEAD
    upy_state *st;           /* borrowed from the module, kept alive by
                                module_ref */
    PyObject *module_ref;
    PyObject *app;           /* the WSGI callable */
    PyObject *logger;        /* callable(level:int, msg:str, exc) */
    upy_listener *listeners;
    Py_ssize_t nlisteners;
    upy_limits limits;
    uint64_t post_buffering; /* bodies above this spill to a temp file */
    upy_limits uwsgi_limits; /* the same for CGI vars (uwsgi, FastCGI,
                                SCGI), with room for the front end's vars
                                beside the header fields */
    double socket_timeout;   /* seconds a client may stall */
    double keepalive_timeout;
    double header_timeout;   /* seconds for a whole head; 0 off */
    double body_timeout;     /* seconds for a body, plus 1 per
                                body_min_rate bytes received; 0 off */
    double body_min_rate;    /* bytes per second; 0: no extension */
    int close_listeners;     /* this stop serves the backlogs, then shuts
                                the listeners (a final stop) */
    int access_log_fd;       /* -1: access log off */
    int shared_listeners;    /* other loops accept on the same listeners */
    int write_exception;     /* write() raises when the client is gone */
    int log_filter;          /* 0 all, else UPY_LOG_4XX | UPY_LOG_5XX */
    int log_xff;             /* log-x-forwarded-for */
    int worker_id;           /* for %(wid) */
    /* probes (upy_probe.c): paths answered by the loop, "" none */
    char probe_live[128];
    size_t probe_live_len;
    char probe_ready[128];
    size_t probe_ready_len;
    unsigned ready_max_queue; /* readiness fails at this accept queue; 0 off */
    int draining;            /* readiness fails (a graceful stop's drain) */
    PyObject *log_format;    /* tuple of str (literal), int (UPY_LV_*) and
                                1-tuples (an environ key: %(var.NAME)),
                                or NULL */
    int log_json;            /* log-req-encoder = json: one JSON object a
                                line; log_format's str items are then the
                                field names of the items after them */
    PyObject *log_json_extra; /* bytes: '"key":"value",' extra fields
                                (log-json-field), or NULL */
    PyObject *rid_key;       /* request-id: the environ key of the incoming
                                header (HTTP_X_REQUEST_ID), NULL when off */
    PyObject *rid_env;       /* "uwsgipy.request_id" */
    PyObject *rid_header;    /* bytes "X-Request-ID: " for the response */
    PyObject *log_template;  /* bytes: uWSGI's log-req-encoder format/json
                                TEMPLATE, compiled by uwsgipy/log.py (text,
                                and "\0" + a UPY_TPL_* byte for ${var}), or
                                NULL */
    int log_template_json;   /* json: ${msg} and ${strftime:} escaped */
    PyObject *add_headers;   /* bytes: "Name: value\r\n" lines, or NULL */
    upy_key_entry *var_keys; /* uwsgi var name -> environ key */
    upy_key_entry *hdr_keys; /* HTTP field name -> HTTP_* key */
    int wake_rfd, wake_wfd;  /* stop() wakes every loop (upy_wake_*) */
    PyObject *tmpdir;        /* str or None */
    volatile int stopping;   /* 0 run, 1 graceful, 2 immediate */
    int stop_claimed;        /* self_stop() ran (atomic: one caller wins) */
    double stop_deadline;
    uint64_t requests;       /* served, all loops */
    int active_loops;
    uint64_t max_requests;   /* graceful stop after this many; 0 off */
    uint64_t reload_on_rss;  /* graceful stop above this RSS, bytes; 0 off */
    double min_lifetime;     /* no max-requests/reload-on-rss stop before this
                                many seconds (min-worker-lifetime) */
    double created;          /* monotonic, when the Server was made */
    double stop_mercy;       /* seconds for a self-initiated graceful stop */
    const char *stop_reason; /* static: why the server stopped itself */
    Py_buffer scoreboard;    /* .buf NULL when there is none */
    upy_runner runner;
    int ncores;
    upy_core *cores;         /* ncores, PyMem */
    upy_loop *loop;          /* the one loop, PyMem; lives as long as the
                                server (app threads and Requests point at
                                it) */
    int serving;             /* serve_forever() or run_once() is running */
    PyObject *wait_write;    /* external: callable(fd, timeout) -> bool,
                                or NULL */
    char *tmpdir_c;          /* tmpdir in the filesystem encoding, PyMem,
                                or NULL */
    struct upy_static_cfg *static_cfg; /* static-map etc. (upy_static.c),
                                or NULL: no static serving */
    PyObject *mounts;        /* mount: sequence of (prefix, app), or NULL */
    int manage_script_name;  /* manage-script-name */
    struct upy_asgi_ctx *asgi; /* runner "asgi" (upy_asgi.c), or NULL */
} upy_server;

/* The loop's own core (after the runners' ncores): static files. */
/* 1 when static files are opened with openat2(2) RESOLVE_BENEATH (this
   build has it; the kernel may still lack it: then the realpath check). */
int upy_static_have_openat2(void);

/* A probe's answer (upy_probe.c): text[0..len) is the whole response,
   text[0..head_len) its head (for HEAD). */
typedef struct {
    const char *text;
    size_t len, head_len;
} upy_probe_reply;

/* 1 and *out when req is a liveness or readiness probe of srv, else 0;
   waiting: requests of this worker waiting for an app thread (counted only
   for a readiness probe with readiness-max-queue: upy_probe_is_readiness).
   Reads srv only: any loop thread may call it. */
int upy_probe_answer(const struct upy_server *srv, const upy_request *req,
                     size_t waiting, upy_probe_reply *out);
int upy_probe_is_readiness(const struct upy_server *srv, const upy_request *req);
/* _core.set_probes(server, *, liveness, readiness, max_queue, draining) */
PyObject *upy_set_probes(PyObject *module, PyObject *args, PyObject *kwds);

#define UPY_LOOP_CORE(srv) (&(srv)->cores[(srv)->ncores])

typedef struct {
    PyObject_HEAD
    upy_response *resp;      /* borrowed, NULL after the request */
} upy_start_response;

/* A complete request handed to an external runner (run_once()). */
typedef struct {
    PyObject_HEAD
    upy_server *srv;         /* strong reference */
    upy_conn *conn;          /* borrowed; NULL once run (or given back) */
} upy_request_obj;

typedef struct {
    PyObject_HEAD
    PyObject *filelike;
    Py_ssize_t block_size;
} upy_file_wrapper;

/* upy_module.c */
upy_state *upy_get_state_from_type(PyTypeObject *tp);
/* Set d[key] = value and release the reference to value (steals value,
   also on failure).  Returns 0 or -1 with an exception set. */
int upy_dict_set_steal(PyObject *d, PyObject *key, PyObject *value);
double upy_now(void);

/* upy_server.c */
extern PyType_Spec upy_server_spec;
void upy_log(upy_server *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void upy_log_exception(upy_server *srv, const char *what);
extern PyType_Spec upy_request_spec;

/* Parse the head at c->buf[0..head_len) again into core co's fields: the
   loop's are reused by the next request it reads.  Returns 0, or -1. */
int upy_reparse(upy_core *co, upy_conn *c, upy_request *req);

/* upy_static.c: static-map, static-map2, check-static */
struct upy_static_cfg;
/* The config dict from uwsgipy/static.py, converted (GIL held); NULL with
   an exception set. */
struct upy_static_cfg *upy_static_new(upy_server *srv, PyObject *cfg);
void upy_static_free(struct upy_static_cfg *sc);
/* _core.check_ere(pattern) */
PyObject *upy_check_ere(PyObject *module, PyObject *arg);
#define UPY_STATIC_PASS 2    /* not a static file: the app gets it */
#define UPY_STATIC_REJECT 3  /* a NUL, or ".." above the root, in a path
                                a map names: 400 */
/* The loop, for a complete request (no GIL needed; lc is the loop's own
   core): UPY_STATIC_PASS, UPY_STATIC_REJECT, or the UPY_RESP_* of the
   static response it started. */
int upy_static_serve(upy_core *lc, upy_conn *c, const upy_request *req);
/* A parked static response, when the socket is writable: UPY_RESP_*. */
int upy_static_resume(upy_core *lc, upy_conn *c);
/* The connection is going away with a static response parked. */
void upy_static_abort(upy_core *lc, upy_conn *c);

/* upy_server.c, for upy_asgi.c (GIL held, on the loop's thread) */
/* Watch c for events (UPY_POLL_IN | UPY_POLL_OUT); with 0 only a hang-up or
   an error is reported.  Returns 0, or -1 (the caller closes c). */
int upy_conn_watch(upy_loop *loop, upy_conn *c, uint32_t events);
void upy_conn_close(upy_loop *loop, upy_conn *c);
/* Shut the write side and drain the input for a moment, then close. */
void upy_conn_linger(upy_loop *loop, upy_conn *c);
/* Room for need more bytes in c's read buffer.  0, or -1 (out of memory). */
int upy_conn_reserve(upy_loop *loop, upy_conn *c, size_t need);
/* Count a finished request (requests, the scoreboard, max-requests). */
void upy_count_request(upy_loop *loop, upy_conn *c, int status,
                       double started);
/* An ASGI response on c ended (rc UPY_RESP_KEEP or UPY_RESP_CLOSE; state
   still ASGI, c->asgi NULL): count it, then the next request or close. */
void upy_conn_finished(upy_loop *loop, upy_conn *c, int rc, double started);

/* upy_asgi.c: runner "asgi" */
struct upy_asgi_ctx;
extern PyType_Spec upy_asgi_cycle_spec;
extern PyType_Spec upy_asgi_ready_spec;
extern PyType_Spec upy_asgi_run_spec;
/* Server(): the runner's names and constants.  0, or -1 (exception). */
int upy_asgi_init(upy_server *srv, uint64_t ws_max, double ws_ping,
                  double ws_pong);
void upy_asgi_free(upy_server *srv);
/* Drop the references to the event loop and the state (tp_clear). */
void upy_asgi_clear(upy_server *srv);
int upy_asgi_traverse(upy_server *srv, visitproc visit, void *arg);
/* Server.asgi_setup(loop, state=None) */
PyObject *upy_asgi_setup(upy_server *srv, PyObject *args, PyObject *kwds);
Py_ssize_t upy_asgi_tasks(upy_server *srv);
/* The head of a request on c is complete (the body may follow): start its
   cycle.  0 (c is kept: state ASGI, or lingering after a bad handshake),
   -1 when c was closed. */
int upy_asgi_start(upy_loop *loop, upy_conn *c, const upy_request *req);
/* Events (UPY_POLL_*) on a connection in state ASGI. */
void upy_asgi_event(upy_loop *loop, upy_conn *c, uint32_t events);
/* The connection is closing: its cycle lets go (http.disconnect,
   websocket.disconnect, send() raises OSError). */
void upy_asgi_detach(upy_conn *c);
/* c closes: the task kept for its next request ends (upy_asgi.c) */
void upy_asgi_unpark(upy_conn *c);
/* The end of run_once(): the kept tasks woken for their connections' next
   requests run their steps now.  -1 with KeyboardInterrupt or SystemExit
   from an app (the loop stops). */
int upy_asgi_flush(upy_server *srv);
/* Once a second: socket-timeout, WebSocket pings and close waits. */
void upy_asgi_sweep(upy_loop *loop, upy_conn *c, double now);
/* A graceful stop began: open WebSockets get a close frame (1001). */
void upy_asgi_going_away(upy_loop *loop, upy_conn *c);

/* upy_environ.c */
void upy_key_cache_free(upy_key_entry *cache);
PyObject *upy_build_base_environ(upy_state *st, upy_listener *lst,
                                 const char *server_name,
                                 const char *server_port, int multithread,
                                 int multiprocess, PyObject *errors);
/* New reference: the environ dict for req arriving on conn, built with
   core's scratch space. */
PyObject *upy_build_environ(upy_core *core, upy_conn *conn,
                            const upy_request *req, PyObject *input);
/* Server(mounts=): store the checked (prefix, app) pairs in srv->mounts
   (left NULL for None or an empty sequence).  -1 with an exception. */
int upy_mounts_init(upy_server *srv, PyObject *mounts);
/* Borrowed: the app for env (mount / manage-script-name; may rewrite
   SCRIPT_NAME and PATH_INFO); srv->mounts must be set.  NULL with an
   exception. */
PyObject *upy_mount_app(upy_server *srv, upy_state *st, PyObject *env);

/* upy_response.c */
extern PyType_Spec upy_start_response_spec;
/* Start the response to req: call the app and send what the socket takes.
   Steals nothing; keeps its own references to environ and input.
   Returns UPY_RESP_KEEP, UPY_RESP_CLOSE or UPY_RESP_BLOCKED. */
int upy_response_start(upy_core *core, upy_conn *conn, const upy_request *req,
                       PyObject *environ, PyObject *input, double started);
/* Go on once the socket is writable (on any core); same results. */
int upy_response_resume(upy_core *core, upy_conn *conn);
/* The connection is going away: close the app's result, log, release. */
void upy_response_abort(upy_core *core, upy_conn *conn);
/* Without Python (the loop, GIL not held): send what is pending and go on
   with a sendfile(2) in progress.  Returns UPY_RESP_BLOCKED while the
   socket is full, 0 when the rest needs a runner (Python: iterating the
   result, ending the response, or a broken connection: resp.failed). */
int upy_response_flush(upy_conn *conn);
/* Release what the pending-output buffer holds (connection freed). */
void upy_pending_free(upy_pending *p);
extern PyType_Spec upy_file_wrapper_spec;
extern PyType_Spec upy_empty_input_spec;
/* Send a canned error response (status 400...505) with Connection: close,
   without blocking (a small response into an empty socket buffer; what
   the socket does not take is dropped: the connection closes anyway).
   No Python: callable without the GIL. */
void upy_send_error(upy_server *srv, upy_conn *conn, int status,
                    const char *reason);
const char *upy_status_text(int status);
/* "Date: <IMF-fixdate>\r\n", this thread's copy, made once a second. */
const char *upy_date_header(void);
/* The access log line for c's response (c->resp: status_code, sent),
   from environ (GIL held). */
void upy_access_log(upy_core *core, upy_conn *c, PyObject *environ,
                    double started);
/* The default access log line from C strings (no GIL needed): static
   responses.  micros: log-micros.  req (may be NULL): its fields give the
   JSON line's uagent, referer, host and request_id. */
void upy_access_log_plain(upy_server *srv, const char *addr, size_t alen,
                          const upy_str *method, const upy_str *uri,
                          const upy_str *proto, int status, uint64_t sent,
                          double started, int micros,
                          const upy_request *req);
/* request-id: environ["uwsgipy.request_id"] from the incoming header when
   it is sane (upy_request_id_ok), else a new id.  0 or -1 (exception). */
int upy_environ_request_id(upy_server *srv, PyObject *env);
/* _core.set_access_log(server, *, json, json_extra, request_id) */
PyObject *upy_set_access_log(PyObject *module, PyObject *args,
                             PyObject *kwds);

#endif /* UPY_CORE_H */
