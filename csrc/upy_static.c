/*
 * upy_static.c - static files from the loop: uWSGI's static-map,
 * static-map2 and check-static, served without Python.
 *
 * The loop calls upy_static_serve() for every complete request before it
 * goes to an app runner.  A request whose path falls under a map and names
 * a regular file is answered here, on the loop thread, without the GIL:
 * open beneath the map's root (openat2 RESOLVE_BENEATH), fstat, the
 * conditional and range rules (upy_static_http.c, pure C), a head built
 * in the loop core's buffer, then the body: small files read and sent
 * with the head in one sendmsg, larger ones with sendfile(2).  What the
 * socket does not take is parked like any response (c->pend, and the
 * sendfile phase of c->resp with is_static set) and upy_static_resume()
 * goes on when the socket is writable.  A missing file, a directory
 * without an index, a special file or a static-skip-ext name passes the
 * request on to the app, as uWSGI does.
 *
 * The configuration arrives from Python as one dict (uwsgipy/static.py
 * builds it; the keys are listed at upy_static_new()) and is converted
 * here once, into C memory the loop reads without the GIL.
 */
#include "upy_core.h"
#include "upy_proto.h"
#include "upy_static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__) && !defined(UPY_PORTABLE)
#include <sys/syscall.h>
#if defined(SYS_openat2) && __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define UPY_HAVE_OPENAT2 1
#endif
#endif

/* Files up to this size are read and sent with the head in one sendmsg;
   larger ones go by sendfile(2) (nginx sends small files either way: one
   syscall each, but one packet instead of two). */
#define UPY_STATIC_SMALL 32768
/* How often a map's cached root directory fd is checked against its path
   (a root deleted and made again, as collectstatic --clear does, is seen
   within this; a "current" symlink above it is not followed anew: targets
   are resolved once, at start-up). */
#define UPY_STATIC_ROOT_RECHECK 1.0
#define UPY_STATIC_PATH_MAX 4096

enum { MAP_STRIP = 0, MAP_KEEP = 1, MAP_DOCROOT = 2 };
enum { EXP_FILE = 0, EXP_URI = 1, EXP_PATH_INFO = 2, EXP_TYPE = 3 };

typedef struct {
    char *s;
    size_t len;
} sstr;

typedef struct {
    int kind;                /* MAP_* */
    sstr prefix;             /* URL prefix ("" for check-static) */
    sstr root;               /* absolute directory (or file) */
    int is_file;             /* root is a regular file: serve it for the
                                exact prefix */
    int dirfd;               /* root opened O_PATH|O_DIRECTORY, or -1 */
    dev_t dev;
    ino_t ino;
    double checked;          /* monotonic, when dirfd was last checked */
    char *real;              /* realpath(root), malloc'd, or NULL */
    size_t real_len;
} smap;

typedef struct {
    int kind;                /* EXP_* */
    regex_t re;              /* EXP_FILE, EXP_URI, EXP_PATH_INFO */
    int re_ok;
    sstr type;               /* EXP_TYPE */
    long long seconds;
    int mtime;               /* Expires = mtime + seconds */
} sexpire;

typedef struct {
    char ext[32];            /* lowercase, NUL-terminated; "" empty slot */
    sstr type;
} smime;

struct upy_static_cfg {
    smap *maps;
    size_t nmaps;
    sstr *index, *skip_ext, *safe, *gzip_dirs, *gzip_exts;
    size_t nindex, nskip, nsafe, ngzip_dirs, ngzip_exts;
    sexpire *expires;
    size_t nexpires;
    int gzip_all;
    smime *mime;             /* open addressing, mime_cap (a power of 2) */
    size_t mime_cap;
    sstr default_type;
    int log_plain;           /* 0 no access log, 1 the default line,
                                2 default with microseconds, 3 a
                                log-format or routes (Python: GIL) */
    /* loop-thread scratch */
    char *path;              /* decoded URL path, then the file's path */
    size_t path_cap;
    char norm[UPY_STATIC_PATH_MAX]; /* the path without dot-segments */
    char rel[UPY_STATIC_PATH_MAX];
    char full[UPY_STATIC_PATH_MAX + 8];
    char *small;             /* UPY_STATIC_SMALL bytes */
};

/* ------------------------------------------------------------------ */
/* Configuration (GIL held)                                            */
/* ------------------------------------------------------------------ */

static int
sstr_from(PyObject *o, sstr *out, const char *what)
{
    char *p;
    Py_ssize_t n;
    if (!PyBytes_Check(o)) {
        PyErr_Format(PyExc_TypeError, "static: %s must be bytes", what);
        return -1;
    }
    n = PyBytes_GET_SIZE(o);
    p = malloc((size_t)n + 1);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(p, PyBytes_AS_STRING(o), (size_t)n);
    p[n] = '\0';
    out->s = p;
    out->len = (size_t)n;
    return 0;
}

/* cfg[key] as a list of bytes into *arr, *n. */
static int
bytes_list(PyObject *cfg, const char *key, sstr **arr, size_t *n)
{
    PyObject *o = PyDict_GetItemString(cfg, key), *seq; /* borrowed */
    Py_ssize_t len;
    *arr = NULL;
    *n = 0;
    if (o == NULL) {
        return 0;
    }
    seq = PySequence_Fast(o, "static: a list of bytes is needed");
    if (seq == NULL) {
        return -1;
    }
    len = PySequence_Fast_GET_SIZE(seq);
    if (len > 0) {
        *arr = calloc((size_t)len, sizeof(sstr));
        if (*arr == NULL) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        if (sstr_from(PySequence_Fast_GET_ITEM(seq, i), &(*arr)[i], key) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        (*n)++;
    }
    Py_DECREF(seq);
    return 0;
}

static size_t
mime_hash(const char *ext, size_t n)
{
    size_t h = 5381;
    for (size_t i = 0; i < n; i++)
        h = h * 33 + (unsigned char)ext[i];
    return h;
}

static int
mime_table(struct upy_static_cfg *sc, PyObject *cfg)
{
    PyObject *o = PyDict_GetItemString(cfg, "mime"), *seq;
    Py_ssize_t len;
    size_t cap = 64;
    if (o == NULL) {
        return 0;
    }
    seq = PySequence_Fast(o, "static: mime must be a list of (ext, type)");
    if (seq == NULL) {
        return -1;
    }
    len = PySequence_Fast_GET_SIZE(seq);
    while (cap < (size_t)len * 2)
        cap *= 2;
    sc->mime = calloc(cap, sizeof(smime));
    if (sc->mime == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    sc->mime_cap = cap;
    for (Py_ssize_t i = 0; i < len; i++) {
        const char *ext, *type;
        Py_ssize_t elen, tlen;
        size_t h;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "y#y#", &ext,
                              &elen, &type, &tlen)) {
            Py_DECREF(seq);
            return -1;
        }
        if (elen == 0 || (size_t)elen >= sizeof sc->mime[0].ext) {
            continue;
        }
        h = mime_hash(ext, (size_t)elen) & (cap - 1);
        while (sc->mime[h].ext[0] != '\0' &&
               strcmp(sc->mime[h].ext, ext) != 0)
            h = (h + 1) & (cap - 1);
        if (sc->mime[h].ext[0] != '\0') {
            continue; /* the first entry for an extension wins */
        }
        memcpy(sc->mime[h].ext, ext, (size_t)elen);
        sc->mime[h].ext[elen] = '\0';
        if (sstr_from(PyTuple_GET_ITEM(PySequence_Fast_GET_ITEM(seq, i), 1),
                      &sc->mime[h].type, "mime type") < 0) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

/* Compile an ERE for static-expires; 0, or -1 with ValueError. */
static int
compile_ere(regex_t *re, const char *pattern, const char *what)
{
    int rc = regcomp(re, pattern, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[256];
        regerror(rc, re, msg, sizeof msg);
        PyErr_Format(PyExc_ValueError, "%s: bad regular expression '%s': %s",
                     what, pattern, msg);
        return -1;
    }
    return 0;
}

/* _core.check_ere(pattern): raise ValueError when pattern is not a POSIX
   extended regular expression (static-expires and friends). */
PyObject *
upy_check_ere(PyObject *module, PyObject *arg)
{
    regex_t re;
    PyObject *b;
    int rc;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "check_ere() takes a str");
        return NULL;
    }
    if (!PyUnicode_FSConverter(arg, &b)) {
        return NULL;
    }
    rc = compile_ere(&re, PyBytes_AS_STRING(b), "regular expression");
    Py_DECREF(b);
    if (rc < 0) {
        return NULL;
    }
    regfree(&re);
    Py_RETURN_NONE;
}

static int
expires_list(struct upy_static_cfg *sc, PyObject *cfg)
{
    PyObject *o = PyDict_GetItemString(cfg, "expires"), *seq;
    Py_ssize_t len;
    static const char *const names[] = {
        "static-expires", "static-expires-uri", "static-expires-path-info",
        "static-expires-type"};
    if (o == NULL) {
        return 0;
    }
    seq = PySequence_Fast(o, "static: expires must be a list");
    if (seq == NULL) {
        return -1;
    }
    len = PySequence_Fast_GET_SIZE(seq);
    if (len > 0 && (sc->expires = calloc((size_t)len, sizeof(sexpire))) == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        sexpire *e = &sc->expires[i];
        int kind, mtime;
        const char *pat;
        Py_ssize_t plen;
        long long secs;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iy#Lp", &kind,
                              &pat, &plen, &secs, &mtime)) {
            Py_DECREF(seq);
            return -1;
        }
        if (kind < EXP_FILE || kind > EXP_TYPE) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "static: bad expires kind");
            return -1;
        }
        e->kind = kind;
        e->seconds = secs;
        e->mtime = mtime;
        sc->nexpires++;
        if (kind == EXP_TYPE) {
            if (sstr_from(PyTuple_GET_ITEM(PySequence_Fast_GET_ITEM(seq, i), 1),
                          &e->type, "expires type") < 0) {
                Py_DECREF(seq);
                return -1;
            }
        }
        else {
            if (memchr(pat, '\0', (size_t)plen) != NULL) {
                Py_DECREF(seq);
                PyErr_SetString(PyExc_ValueError, "static: NUL in a pattern");
                return -1;
            }
            if (compile_ere(&e->re, pat, names[kind]) < 0) {
                Py_DECREF(seq);
                return -1;
            }
            e->re_ok = 1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

static int
maps_list(struct upy_static_cfg *sc, PyObject *cfg)
{
    PyObject *o = PyDict_GetItemString(cfg, "maps"), *seq;
    Py_ssize_t len;
    if (o == NULL) {
        return 0;
    }
    seq = PySequence_Fast(o, "static: maps must be a list");
    if (seq == NULL) {
        return -1;
    }
    len = PySequence_Fast_GET_SIZE(seq);
    if (len > 0 && (sc->maps = calloc((size_t)len, sizeof(smap))) == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        smap *m = &sc->maps[i];
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        int kind;
        PyObject *prefix, *root;
        if (!PyArg_ParseTuple(t, "iSS", &kind, &prefix, &root)) {
            Py_DECREF(seq);
            return -1;
        }
        m->dirfd = -1;
        sc->nmaps++;
        if (kind < MAP_STRIP || kind > MAP_DOCROOT ||
            sstr_from(prefix, &m->prefix, "map prefix") < 0 ||
            sstr_from(root, &m->root, "map target") < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "static: bad map kind");
            Py_DECREF(seq);
            return -1;
        }
        m->kind = kind;
        /* "/static/" and "/static" are one prefix; so are roots */
        while (m->prefix.len > 0 && m->prefix.s[m->prefix.len - 1] == '/')
            m->prefix.s[--m->prefix.len] = '\0';
        while (m->root.len > 1 && m->root.s[m->root.len - 1] == '/')
            m->root.s[--m->root.len] = '\0';
        if (m->root.len == 0 || m->root.s[0] != '/' ||
            memchr(m->root.s, '\0', m->root.len) != NULL) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "static: the target '%s' must be "
                         "an absolute path", m->root.s);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

void
upy_static_free(struct upy_static_cfg *sc)
{
    if (sc == NULL) {
        return;
    }
    for (size_t i = 0; i < sc->nmaps; i++) {
        free(sc->maps[i].prefix.s);
        free(sc->maps[i].root.s);
        free(sc->maps[i].real);
        if (sc->maps[i].dirfd >= 0)
            close(sc->maps[i].dirfd);
    }
    free(sc->maps);
#define FREE_LIST(a, n)                                                      \
    do {                                                                     \
        for (size_t i = 0; i < (n); i++)                                     \
            free((a)[i].s);                                                  \
        free(a);                                                             \
    } while (0)
    FREE_LIST(sc->index, sc->nindex);
    FREE_LIST(sc->skip_ext, sc->nskip);
    FREE_LIST(sc->safe, sc->nsafe);
    FREE_LIST(sc->gzip_dirs, sc->ngzip_dirs);
    FREE_LIST(sc->gzip_exts, sc->ngzip_exts);
#undef FREE_LIST
    for (size_t i = 0; i < sc->nexpires; i++) {
        if (sc->expires[i].re_ok)
            regfree(&sc->expires[i].re);
        free(sc->expires[i].type.s);
    }
    free(sc->expires);
    for (size_t i = 0; i < sc->mime_cap; i++)
        free(sc->mime[i].type.s);
    free(sc->mime);
    free(sc->default_type.s);
    free(sc->path);
    free(sc->small);
    free(sc);
}

/* The access-log mode for static responses: the default line is written
   from the request's own bytes; a log-format or routes need an environ
   (built under the GIL). */
static int
log_mode(upy_server *srv)
{
    PyObject *f = srv->log_format;
    if (srv->access_log_fd < 0)
        return 0;
    if (f == NULL)
        return 1;
    if (PyTuple_GET_SIZE(f) == 1 && PyLong_Check(PyTuple_GET_ITEM(f, 0))) {
        long v = PyLong_AsLong(PyTuple_GET_ITEM(f, 0));
        if (v == UPY_LV_DEFAULT)
            return 1;
        if (v == UPY_LV_DEFAULT_MICROS)
            return 2;
    }
    PyErr_Clear();
    return 3;
}

struct upy_static_cfg *
upy_static_new(upy_server *srv, PyObject *cfg)
{
    struct upy_static_cfg *sc;
    PyObject *o;
    if (!PyDict_Check(cfg)) {
        PyErr_SetString(PyExc_TypeError, "static must be a dict or None");
        return NULL;
    }
    sc = calloc(1, sizeof *sc);
    if (sc == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (maps_list(sc, cfg) < 0 ||
        bytes_list(cfg, "index", &sc->index, &sc->nindex) < 0 ||
        bytes_list(cfg, "skip_ext", &sc->skip_ext, &sc->nskip) < 0 ||
        bytes_list(cfg, "safe", &sc->safe, &sc->nsafe) < 0 ||
        bytes_list(cfg, "gzip_dirs", &sc->gzip_dirs, &sc->ngzip_dirs) < 0 ||
        bytes_list(cfg, "gzip_exts", &sc->gzip_exts, &sc->ngzip_exts) < 0 ||
        expires_list(sc, cfg) < 0 || mime_table(sc, cfg) < 0) {
        goto error;
    }
    o = PyDict_GetItemString(cfg, "gzip_all");
    if (o != NULL && (sc->gzip_all = PyObject_IsTrue(o)) < 0) {
        goto error;
    }
    o = PyDict_GetItemString(cfg, "default_type");
    if (o != NULL) {
        if (sstr_from(o, &sc->default_type, "default_type") < 0)
            goto error;
    }
    else if ((sc->default_type.s = strdup("application/octet-stream")) == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    else {
        sc->default_type.len = strlen(sc->default_type.s);
    }
    for (size_t i = 0; i < sc->nsafe; i++) {
        while (sc->safe[i].len > 1 && sc->safe[i].s[sc->safe[i].len - 1] == '/')
            sc->safe[i].s[--sc->safe[i].len] = '\0';
    }
    sc->path_cap = srv->limits.max_head + 16;
    sc->path = malloc(sc->path_cap);
    sc->small = malloc(UPY_STATIC_SMALL);
    if (sc->path == NULL || sc->small == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    sc->log_plain = log_mode(srv);
    return sc;
error:
    upy_static_free(sc);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The request's side (loop thread, no GIL)                            */
/* ------------------------------------------------------------------ */

/* What a static response needs of the request, from one pass over its
   header fields (HTTP) or vars (uwsgi). */
typedef struct {
    char *path;              /* decoded URL path, NUL-terminated (sc->path) */
    size_t path_len;
    upy_str inm, im, ims, ius, range, if_range, ae;
    upy_str remote_addr, xff, protocol; /* uwsgi vars, for the log */
    int is_get, is_head;
    int trailing;            /* the path names a directory ("/", "/.") */
} sreq;

static int
name_is(const upy_field *f, upy_proto proto, const char *http, size_t hlen,
        const char *var, size_t vlen)
{
    if (!upy_protocols[proto]->vars)
        return upy_lower_eq(f->name.p, f->name.len, http, hlen);
    return f->name.len == vlen && memcmp(f->name.p, var, vlen) == 0;
}

#define NAME_IS(f, proto, http, var)                                         \
    name_is((f), (proto), http, sizeof(http) - 1, var, sizeof(var) - 1)

/* Fill q from req.  Returns 0, or -1 when the path does not fit (the app
   gets the request). */
static int
read_request(struct upy_static_cfg *sc, const upy_request *req, sreq *q)
{
    upy_proto proto = req->proto;
    memset(q, 0, sizeof *q);
    q->path = sc->path;
    if (!upy_protocols[proto]->vars) {
        upy_str p = upy_origin_path(req->path);
        if (p.len >= sc->path_cap)
            return -1;
        q->path_len = upy_percent_decode(p.p, p.len, sc->path);
    }
    else if (req->path.len > 0) {
        /* nginx's PATH_INFO ($document_uri) is decoded already */
        if (req->path.len >= sc->path_cap)
            return -1;
        memcpy(sc->path, req->path.p, req->path.len);
        q->path_len = req->path.len;
    }
    else {
        /* no PATH_INFO var: REQUEST_URI's path, as the environ does */
        const char *t = req->target.p ? req->target.p : "";
        size_t n = req->target.len;
        const char *qm = memchr(t, '?', n);
        if (qm != NULL)
            n = (size_t)(qm - t);
        if (n >= sc->path_cap)
            return -1;
        q->path_len = upy_percent_decode(t, n, sc->path);
    }
    sc->path[q->path_len] = '\0';
    q->is_head = req->is_head;
    q->is_get = req->method.len == 3 && memcmp(req->method.p, "GET", 3) == 0;
    for (size_t i = 0; i < req->num_fields; i++) {
        const upy_field *f = &req->fields[i];
        if (f->name.len < 5)
            continue;
        if (NAME_IS(f, proto, "if-none-match", "HTTP_IF_NONE_MATCH"))
            q->inm = f->value;
        else if (NAME_IS(f, proto, "if-match", "HTTP_IF_MATCH"))
            q->im = f->value;
        else if (NAME_IS(f, proto, "if-modified-since", "HTTP_IF_MODIFIED_SINCE"))
            q->ims = f->value;
        else if (NAME_IS(f, proto, "if-unmodified-since",
                         "HTTP_IF_UNMODIFIED_SINCE"))
            q->ius = f->value;
        else if (NAME_IS(f, proto, "range", "HTTP_RANGE"))
            q->range = f->value;
        else if (NAME_IS(f, proto, "if-range", "HTTP_IF_RANGE"))
            q->if_range = f->value;
        else if (NAME_IS(f, proto, "accept-encoding", "HTTP_ACCEPT_ENCODING"))
            q->ae = f->value;
        else if (NAME_IS(f, proto, "x-forwarded-for", "HTTP_X_FORWARDED_FOR"))
            q->xff = f->value;
        else if (upy_protocols[proto]->vars &&
                 NAME_IS(f, proto, "", "REMOTE_ADDR"))
            q->remote_addr = f->value;
        else if (upy_protocols[proto]->vars &&
                 NAME_IS(f, proto, "", "SERVER_PROTOCOL"))
            q->protocol = f->value;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Opening beneath a root                                              */
/* ------------------------------------------------------------------ */

#define OPEN_FLAGS (O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)

#ifdef UPY_HAVE_OPENAT2
static int no_openat2; /* the kernel (or a seccomp filter) refused it */
#endif

/* The map's root directory, opened and checked at most once a second.
   Returns the fd, or -1 when the root does not exist. */
static int
map_root(smap *m, double now)
{
    struct stat st;
    int fd;
    char real[PATH_MAX];
    if (now - m->checked < UPY_STATIC_ROOT_RECHECK && m->checked != 0) {
        return m->dirfd;
    }
    m->checked = now;
    if (stat(m->root.s, &st) < 0) {
        if (m->dirfd >= 0)
            close(m->dirfd);
        m->dirfd = -1;
        return -1;
    }
    if (m->dirfd >= 0 && st.st_dev == m->dev && st.st_ino == m->ino) {
        return m->dirfd;
    }
    /* new, or the path now names another directory (a deploy swapped it) */
    if (m->dirfd >= 0)
        close(m->dirfd);
    m->dirfd = -1;
#ifdef O_PATH
    fd = open(m->root.s, O_PATH | O_CLOEXEC);
#else
    fd = open(m->root.s, O_RDONLY | O_CLOEXEC); /* a file map's root too */
#endif
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    m->dev = st.st_dev;
    m->ino = st.st_ino;
    m->is_file = S_ISREG(st.st_mode);
    free(m->real);
    m->real = NULL;
    if (realpath(m->root.s, real) != NULL && (m->real = strdup(real)) != NULL) {
        m->real_len = strlen(real);
    }
    m->dirfd = fd;
    return fd;
}

/* 1 when path[0..n) is dir or below it. */
static int
under(const char *path, size_t n, const char *dir, size_t dlen)
{
    if (dlen == 1 && dir[0] == '/')
        return 1;
    return n >= dlen && memcmp(path, dir, dlen) == 0 &&
           (n == dlen || path[dlen] == '/');
}

/* Open rel (clean, relative; "" the root) beneath map m's root.  Returns
   an fd, or -1 with *err: ENOENT and the like (not there: the next map or
   the app), EXDEV (it resolves outside the root and every static-safe
   dir: 403), EACCES (403). */
static int
open_beneath(struct upy_static_cfg *sc, smap *m, const char *rel, int *err)
{
    char real[PATH_MAX];
    size_t rl;
    int fd, n;
#ifdef UPY_HAVE_OPENAT2
    if (!no_openat2) {
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = OPEN_FLAGS;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        fd = (int)syscall(SYS_openat2, m->dirfd, rel[0] ? rel : ".", &how,
                          sizeof how);
        if (fd >= 0) {
            return fd;
        }
        if (errno == ENOSYS || errno == E2BIG) {
            no_openat2 = 1; /* older kernel: the realpath check below */
        }
        else if (errno == EXDEV || errno == ELOOP) {
            /* RESOLVE_BENEATH refuses every absolute symlink, also one
               that names a file inside the root, and one that leaves it
               for a static-safe dir: realpath decides (as uWSGI does) */
        }
        else {
            *err = errno == ELOOP ? EXDEV : errno;
            return -1;
        }
    }
#endif
    /* The portable way (and static-safe): resolve, check, open.  A
       symlink swapped in between could still redirect the open: the
       openat2 path above has no such window. */
    n = snprintf(sc->full, sizeof sc->full, "%s/%s", m->root.s, rel);
    if (n < 0 || (size_t)n >= sizeof sc->full) {
        *err = ENAMETOOLONG;
        return -1;
    }
    if (realpath(sc->full, real) == NULL) {
        *err = errno;
        return -1;
    }
    rl = strlen(real);
    if (m->real == NULL || !under(real, rl, m->real, m->real_len)) {
        int safe = 0;
        for (size_t i = 0; i < sc->nsafe && !safe; i++)
            safe = under(real, rl, sc->safe[i].s, sc->safe[i].len);
        if (!safe) {
            *err = EXDEV;
            return -1;
        }
    }
    fd = open(real, OPEN_FLAGS);
    if (fd < 0) {
        *err = errno;
    }
    return fd;
}

/* ------------------------------------------------------------------ */
/* The response                                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} hbuf;

static void
h_put(hbuf *h, const char *s, size_t n)
{
    if (h->cap - h->len < n) {
        size_t cap = h->cap * 2;
        char *nb;
        while (cap - h->len < n)
            cap *= 2;
        nb = realloc(h->p, cap);
        if (nb == NULL) {
            h->oom = 1;
            return;
        }
        h->p = nb;
        h->cap = cap;
    }
    memcpy(h->p + h->len, s, n);
    h->len += n;
}

#define H_LIT(h, lit) h_put((h), lit, sizeof(lit) - 1)

static void
h_str(hbuf *h, const char *s)
{
    h_put(h, s, strlen(s));
}

static void
h_num(hbuf *h, unsigned long long v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", v);
    h_put(h, tmp, (size_t)n);
}

static const char *
reason(int status)
{
    switch (status) {
    case 200: return "200 OK";
    case 206: return "206 Partial Content";
    case 304: return "304 Not Modified";
    case 403: return "403 Forbidden";
    case 405: return "405 Method Not Allowed";
    case 412: return "412 Precondition Failed";
    case 416: return "416 Range Not Satisfiable";
    default: return "500 Internal Server Error";
    }
}

/* What one static response is made of. */
typedef struct {
    int status;
    int fd;                  /* the file (or its .gz/.br sibling), or -1 */
    struct stat st;          /* of fd */
    const char *name;        /* the file's name (for the type), NUL-term. */
    const char *encoding;    /* "gzip", "br" or NULL */
    int vary;                /* gzip applies: Vary: Accept-Encoding */
    uint64_t first, len;     /* the body's part of the file */
    int range;               /* a 206 */
    int keep_alive;
    double started;
} sresp;

/* The Content-Type for a file name: by its extension, lowercased. */
static const sstr *
content_type(struct upy_static_cfg *sc, const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash ? slash : name, '.');
    char ext[32];
    size_t n, h;
    if (dot == NULL || sc->mime_cap == 0)
        return &sc->default_type;
    n = strlen(dot + 1);
    if (n == 0 || n >= sizeof ext)
        return &sc->default_type;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)dot[1 + i];
        ext[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    ext[n] = '\0';
    h = mime_hash(ext, n) & (sc->mime_cap - 1);
    while (sc->mime[h].ext[0] != '\0') {
        if (strcmp(sc->mime[h].ext, ext) == 0)
            return &sc->mime[h].type;
        h = (h + 1) & (sc->mime_cap - 1);
    }
    return &sc->default_type;
}

/* Expires from the first rule that matches; 0 when none does. */
static int
expires_for(struct upy_static_cfg *sc, const upy_request *req, const sreq *q,
            const char *full, const sstr *type, const struct stat *st,
            int64_t now, int64_t *when)
{
    char uri[2048];
    size_t tlen = type->len;
    const char *semi = memchr(type->s, ';', type->len);
    int have_uri = 0;
    if (semi != NULL) {
        tlen = (size_t)(semi - type->s);
        while (tlen > 0 && type->s[tlen - 1] == ' ')
            tlen--;
    }
    for (size_t i = 0; i < sc->nexpires; i++) {
        const sexpire *e = &sc->expires[i];
        int hit = 0;
        switch (e->kind) {
        case EXP_FILE:
            hit = regexec(&e->re, full, 0, NULL, 0) == 0;
            break;
        case EXP_URI:
            if (!have_uri) {
                size_t n = req->target.len < sizeof uri - 1 ? req->target.len
                                                           : sizeof uri - 1;
                if (n)
                    memcpy(uri, req->target.p, n);
                uri[n] = '\0';
                have_uri = 1;
            }
            hit = regexec(&e->re, uri, 0, NULL, 0) == 0;
            break;
        case EXP_PATH_INFO:
            hit = regexec(&e->re, q->path, 0, NULL, 0) == 0;
            break;
        default:
            hit = e->type.len == tlen && memcmp(e->type.s, type->s, tlen) == 0;
        }
        if (hit) {
            *when = (e->mtime ? (int64_t)st->st_mtime : now) + e->seconds;
            return 1;
        }
    }
    return 0;
}

/* Build the head into lc->out.  Returns its length, or -1 (no memory). */
static ssize_t
build_head(upy_core *lc, struct upy_static_cfg *sc, const upy_request *req,
           const sreq *q, sresp *s, const char *full)
{
    upy_server *srv = lc->srv;
    hbuf h = {lc->out, 0, lc->out_cap, 0};
    char date[UPY_HTTP_DATE_LEN + 1], etag[48];
    int entity = s->status == 200 || s->status == 206 || s->status == 304;
    int64_t now = (int64_t)time(NULL);

    {
        size_t plen;
        const char *prefix = upy_status_prefix(upy_protocols[req->proto],
                                               req->minor_version, &plen);
        h_put(&h, prefix, plen);
    }
    h_str(&h, reason(s->status));
    H_LIT(&h, "\r\n");
    if (s->status == 200 || s->status == 206) {
        const sstr *type = content_type(sc, s->name);
        int64_t when;
        H_LIT(&h, "Content-Type: ");
        h_put(&h, type->s, type->len);
        H_LIT(&h, "\r\nContent-Length: ");
        h_num(&h, s->len);
        H_LIT(&h, "\r\n");
        if (s->range) {
            H_LIT(&h, "Content-Range: bytes ");
            h_num(&h, s->first);
            H_LIT(&h, "-");
            h_num(&h, s->first + s->len - 1);
            H_LIT(&h, "/");
            h_num(&h, (unsigned long long)s->st.st_size);
            H_LIT(&h, "\r\n");
        }
        H_LIT(&h, "Accept-Ranges: bytes\r\n");
        if (s->encoding != NULL) {
            H_LIT(&h, "Content-Encoding: ");
            h_str(&h, s->encoding);
            H_LIT(&h, "\r\n");
        }
        if (sc->nexpires > 0 &&
            expires_for(sc, req, q, full, type, &s->st, now, &when)) {
            upy_http_date_format(when, date);
            H_LIT(&h, "Expires: ");
            h_put(&h, date, UPY_HTTP_DATE_LEN);
            H_LIT(&h, "\r\nCache-Control: max-age=");
            h_num(&h, when > now ? (unsigned long long)(when - now) : 0);
            H_LIT(&h, "\r\n");
        }
    }
    else if (s->status == 304) {
        const sstr *type = content_type(sc, s->name);
        int64_t when;
        if (sc->nexpires > 0 &&
            expires_for(sc, req, q, full, type, &s->st, now, &when)) {
            upy_http_date_format(when, date);
            H_LIT(&h, "Expires: ");
            h_put(&h, date, UPY_HTTP_DATE_LEN);
            H_LIT(&h, "\r\nCache-Control: max-age=");
            h_num(&h, when > now ? (unsigned long long)(when - now) : 0);
            H_LIT(&h, "\r\n");
        }
    }
    else {
        /* 403, 405, 412, 416: a short text body */
        H_LIT(&h, "Content-Type: text/plain\r\nContent-Length: ");
        h_num(&h, strlen(reason(s->status)) + 1);
        H_LIT(&h, "\r\n");
        if (s->status == 416) {
            H_LIT(&h, "Content-Range: bytes */");
            h_num(&h, (unsigned long long)s->st.st_size);
            H_LIT(&h, "\r\n");
        }
        if (s->status == 405) {
            H_LIT(&h, "Allow: GET, HEAD\r\n");
        }
    }
    if (entity) {
        upy_http_date_format((int64_t)s->st.st_mtime, date);
        H_LIT(&h, "Last-Modified: ");
        h_put(&h, date, UPY_HTTP_DATE_LEN);
        H_LIT(&h, "\r\nETag: ");
        h_put(&h, etag, upy_etag_format((int64_t)s->st.st_mtime,
                                        (uint64_t)s->st.st_size, etag));
        H_LIT(&h, "\r\n");
        if (s->vary)
            H_LIT(&h, "Vary: Accept-Encoding\r\n");
    }
    if (srv->add_headers != NULL) {
        /* bytes, immutable and kept by the server: no GIL needed */
        h_put(&h, PyBytes_AS_STRING(srv->add_headers),
              (size_t)PyBytes_GET_SIZE(srv->add_headers));
    }
    h_str(&h, upy_date_header());
    if (upy_protocols[req->proto]->connection_header) {
        if (!s->keep_alive)
            H_LIT(&h, "Connection: close\r\n");
        else if (req->minor_version == 0)
            H_LIT(&h, "Connection: keep-alive\r\n");
    }
    H_LIT(&h, "\r\n");
    if (s->status >= 400 && !q->is_head) {
        h_str(&h, reason(s->status));
        H_LIT(&h, "\n");
    }
    lc->out = h.p;
    lc->out_cap = h.cap;
    return h.oom ? -1 : (ssize_t)h.len;
}

/* sendmsg without blocking: bytes written, 0 when the socket is full,
   -1 when the connection is broken. */
static ssize_t
send_iov(int fd, struct iovec *iov, int cnt, int more)
{
    struct msghdr msg;
    ssize_t n;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)cnt;
    do {
        n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT | (more ? MSG_MORE : 0));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
    return n;
}

/* Send iov; keep what the socket did not take in c->pend (copied).
   Returns 1 all sent, 0 some queued, -1 broken or out of memory. */
static int
send_or_park(upy_conn *c, struct iovec *iov, int cnt, int more)
{
    upy_pending *p = &c->pend;
    size_t need = 0, off = 0;
    ssize_t n;
    if (UPY_CONN_PROTO(c)->frame != NULL) {
        /* in the protocol's records (FastCGI) */
        if (UPY_CONN_PROTO(c)->frame(c, iov, cnt, NULL, NULL, 0,
                                     !more) < 0)
            return -1;
        return p->cnt > 0 ? 0 : 1;
    }
    n = send_iov(c->fd, iov, cnt, more);
    if (n < 0)
        return -1;
    while (cnt > 0 && (size_t)n >= iov->iov_len) {
        n -= (ssize_t)iov->iov_len;
        iov++;
        cnt--;
    }
    if (cnt == 0)
        return 1;
    iov->iov_base = (char *)iov->iov_base + n;
    iov->iov_len -= (size_t)n;
    for (int i = 0; i < cnt; i++)
        need += iov[i].iov_len;
    if (p->copy_cap < need) {
        char *nb = realloc(p->copy, need);
        if (nb == NULL)
            return -1;
        p->copy = nb;
        p->copy_cap = need;
    }
    for (int i = 0; i < cnt; i++) {
        memcpy(p->copy + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    p->iov[0].iov_base = p->copy;
    p->iov[0].iov_len = need;
    p->cnt = 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Ending a static response: the log line and the counters             */
/* ------------------------------------------------------------------ */

static void
static_log(upy_core *lc, upy_conn *c, const upy_request *req)
{
    upy_server *srv = lc->srv;
    struct upy_static_cfg *sc = srv->static_cfg;
    upy_response *r = &c->resp;
    upy_request again;
    sreq q;
    if (sc->log_plain == 0)
        return;
    if (req == NULL) {
        /* parked: the loop's fields are another request's by now */
        if (upy_reparse(lc, c, &again) < 0)
            return;
        req = &again;
    }
    if (sc->log_plain == 3) {
        /* a log-format or routes: the environ they read, made as for an
           app (GIL; this loop's own core's scratch) */
        PyGILState_STATE gil = PyGILState_Ensure();
        PyObject *env = upy_build_environ(lc, c, req, lc->st->empty_input);
        if (env != NULL) {
            upy_access_log(lc, c, env, r->started);
            Py_DECREF(env);
        }
        PyErr_Clear();
        PyGILState_Release(gil);
        return;
    }
    {
        const char *addr;
        size_t alen;
        upy_str proto;
        memset(&q, 0, sizeof q);
        for (size_t i = 0; i < req->num_fields; i++) {
            const upy_field *f = &req->fields[i];
            if (NAME_IS(f, req->proto, "x-forwarded-for", "HTTP_X_FORWARDED_FOR"))
                q.xff = f->value;
            else if (upy_protocols[req->proto]->vars &&
                     NAME_IS(f, req->proto, "", "REMOTE_ADDR"))
                q.remote_addr = f->value;
            else if (upy_protocols[req->proto]->vars &&
                     NAME_IS(f, req->proto, "", "SERVER_PROTOCOL"))
                q.protocol = f->value;
        }
        if (srv->log_xff && q.xff.len > 0) {
            const char *comma = memchr(q.xff.p, ',', q.xff.len);
            addr = q.xff.p;
            alen = comma ? (size_t)(comma - q.xff.p) : q.xff.len;
        }
        else if (!upy_protocols[req->proto]->vars) {
            addr = c->addr_text + c->host_off;
            alen = c->host_len;
        }
        else {
            addr = q.remote_addr.p;
            alen = q.remote_addr.len;
        }
        if (!upy_protocols[req->proto]->vars) {
            proto.p = req->minor_version ? "HTTP/1.1" : "HTTP/1.0";
            proto.len = 8;
        }
        else if (q.protocol.len > 0) {
            proto = q.protocol;
        }
        else {
            proto.p = "HTTP/1.0";
            proto.len = 8;
        }
        upy_access_log_plain(srv, addr, alen, &req->method,
                             req->target.len ? &req->target : &req->path,
                             &proto, r->status_code, r->sent, r->started,
                             sc->log_plain == 2, req);
    }
}

/* The static response on c is over (all sent, or the connection broke):
   close the file, log, count.  Returns UPY_RESP_KEEP or UPY_RESP_CLOSE. */
static int
static_finish(upy_core *lc, upy_conn *c, const upy_request *req)
{
    upy_response *r = &c->resp;
    upy_server *srv = lc->srv;
    upy_slot *sl = srv->cores[0].slot;
    int ok = !r->failed && r->sf_remaining == 0;
    if (r->sf_fd >= 0) {
        close(r->sf_fd);
        r->sf_fd = -1;
    }
    c->pend.cnt = 0;
    static_log(lc, c, req);
    if (sl != NULL) {
        /* slot 0's app core counts too: atomic adds on both sides */
        __atomic_fetch_add(&sl->requests, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&sl->static_requests, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&sl->tx, r->sent, __ATOMIC_RELAXED);
        upy_slot_count(sl, r->status_code, (upy_now() - r->started) * 1e6);
    }
    r->active = 0;
    r->is_static = 0;
    c->keep_alive = ok && r->keep_alive;
    return c->keep_alive ? UPY_RESP_KEEP : UPY_RESP_CLOSE;
}

int
upy_static_resume(upy_core *lc, upy_conn *c)
{
    if (upy_response_flush(c) == UPY_RESP_BLOCKED) {
        return UPY_RESP_BLOCKED;
    }
    return static_finish(lc, c, NULL);
}

void
upy_static_abort(upy_core *lc, upy_conn *c)
{
    if (c->resp.active && c->resp.is_static) {
        c->resp.failed = 1;
        (void)static_finish(lc, c, NULL);
    }
}

/* ------------------------------------------------------------------ */
/* Serving                                                             */
/* ------------------------------------------------------------------ */

/* Conditionals (RFC 9110 §13.2.2, in its order) and Range (§14.2) for
   the file s->fd: sets s->status, s->first, s->len, s->range. */
static void
evaluate(const sreq *q, sresp *s)
{
    char etag[48];
    size_t elen = upy_etag_format((int64_t)s->st.st_mtime,
                                  (uint64_t)s->st.st_size, etag);
    int64_t t, mtime = (int64_t)s->st.st_mtime;
    uint64_t size = (uint64_t)s->st.st_size, a, b;
    s->status = 200;
    s->first = 0;
    s->len = size;
    if (q->im.len > 0) {
        if (!upy_etag_match(q->im.p, q->im.len, etag, elen, 1)) {
            s->status = 412;
            return;
        }
    }
    else if (q->ius.len > 0 && upy_http_date_parse(q->ius.p, q->ius.len, &t) == 0 &&
             mtime > t) {
        s->status = 412;
        return;
    }
    if (q->inm.len > 0) {
        if (upy_etag_match(q->inm.p, q->inm.len, etag, elen, 0)) {
            s->status = 304;
            return;
        }
    }
    else if (q->ims.len > 0 && upy_http_date_parse(q->ims.p, q->ims.len, &t) == 0 &&
             mtime <= t) {
        s->status = 304;
        return;
    }
    if (q->range.len == 0 || !q->is_get) {
        return;
    }
    if (q->if_range.len > 0) {
        /* §13.1.5: an entity-tag (strong comparison) or a date that must
           equal Last-Modified; otherwise the whole representation */
        if (q->if_range.p[0] == '"' || (q->if_range.len > 1 && q->if_range.p[0] == 'W')) {
            if (!upy_etag_match(q->if_range.p, q->if_range.len, etag, elen, 1))
                return;
        }
        else if (upy_http_date_parse(q->if_range.p, q->if_range.len, &t) < 0 ||
                 t != mtime) {
            return;
        }
    }
    switch (upy_range_parse(q->range.p, q->range.len, size, &a, &b)) {
    case UPY_RANGE_OK:
        s->status = 206;
        s->range = 1;
        s->first = a;
        s->len = b - a + 1;
        break;
    case UPY_RANGE_UNSATISFIABLE:
        s->status = 416;
        break;
    default:
        break;
    }
}

/* 1 when gzip/br siblings are considered for the file full[0..n). */
static int
gzip_applies(struct upy_static_cfg *sc, const char *full, size_t n)
{
    if (sc->gzip_all)
        return 1;
    for (size_t i = 0; i < sc->ngzip_dirs; i++) {
        if (n >= sc->gzip_dirs[i].len &&
            memcmp(full, sc->gzip_dirs[i].s, sc->gzip_dirs[i].len) == 0)
            return 1;
    }
    for (size_t i = 0; i < sc->ngzip_exts; i++) {
        size_t el = sc->gzip_exts[i].len;
        if (n >= el && memcmp(full + n - el, sc->gzip_exts[i].s, el) == 0)
            return 1;
    }
    return 0;
}

/* Open a regular sibling "<rel><suffix>" (".br", ".gz") into s; 1 when it
   replaced s->fd. */
static int
try_sibling(struct upy_static_cfg *sc, smap *m, const char *rel,
            const char *suffix, sresp *s)
{
    char name[UPY_STATIC_PATH_MAX + 8];
    struct stat st;
    int fd, err = 0;
    int n = snprintf(name, sizeof name, "%s%s", rel, suffix);
    if (n < 0 || (size_t)n >= sizeof name)
        return 0;
    if (m->is_file) {
        char path[UPY_STATIC_PATH_MAX + 8];
        n = snprintf(path, sizeof path, "%s%s", m->root.s, suffix);
        if (n < 0 || (size_t)n >= sizeof path)
            return 0;
        fd = open(path, OPEN_FLAGS);
    }
    else {
        fd = open_beneath(sc, m, name, &err);
    }
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 0;
    }
    close(s->fd);
    s->fd = fd;
    s->st = st;
    return 1;
}

/* Send the response s on c: head, then the body (small: read and sent
   with the head; large: sendfile).  Returns a UPY_RESP_*. */
static int
respond(upy_core *lc, upy_conn *c, const upy_request *req, const sreq *q,
        sresp *s, const char *full)
{
    struct upy_static_cfg *sc = lc->srv->static_cfg;
    upy_response *r = &c->resp;
    struct iovec iov[2];
    int body = !q->is_head && (s->status == 200 || s->status == 206);
    ssize_t hlen = build_head(lc, sc, req, q, s, full);
    int sent;

    r->conn = c;
    r->core = NULL;
    r->is_static = 1;
    r->end_sent = 0;
    r->active = 1;
    r->failed = 0;
    r->status_code = s->status;
    r->started = s->started;
    r->keep_alive = s->keep_alive;
    r->proto = req->proto;
    r->sf_fd = -1;
    r->sf_remaining = 0;
    r->sent = 0;
    r->phase = UPY_PHASE_END;
    if (hlen < 0) {
        r->failed = 1;
        if (s->fd >= 0)
            close(s->fd);
        return static_finish(lc, c, req);
    }
    iov[0].iov_base = lc->out;
    iov[0].iov_len = (size_t)hlen;
    if (s->status >= 400 && !q->is_head) {
        r->sent = strlen(reason(s->status)) + 1;
    }
    if (!body || s->len <= UPY_STATIC_SMALL) {
        int cnt = 1;
        if (body && s->len > 0) {
            size_t got = 0;
            while (got < s->len) {
                ssize_t n = pread(s->fd, sc->small + got, s->len - got,
                                  (off_t)(s->first + got));
                if (n < 0 && errno == EINTR)
                    continue;
                if (n <= 0)
                    break;
                got += (size_t)n;
            }
            if (got < s->len) {
                /* the file shrank under us: what is there, then close */
                r->keep_alive = 0;
            }
            iov[1].iov_base = sc->small;
            iov[1].iov_len = got;
            cnt = 2;
            r->sent = got;
        }
        if (s->fd >= 0) {
            close(s->fd);
            s->fd = -1;
        }
        sent = send_or_park(c, iov, cnt, 0);
        if (sent < 0) {
            r->failed = 1;
        }
        else if (upy_response_flush(c) == UPY_RESP_BLOCKED) {
            return UPY_RESP_BLOCKED; /* a part, or the protocol's end */
        }
        return static_finish(lc, c, req);
    }
    /* large: the head (corked), then sendfile from the loop */
    r->sf_fd = s->fd;
    s->fd = -1;
    r->sf_offset = (off_t)s->first;
    r->sf_remaining = s->len;
    r->phase = UPY_PHASE_SENDFILE;
    sent = send_or_park(c, iov, 1, 1);
    if (sent < 0) {
        r->failed = 1;
        return static_finish(lc, c, req);
    }
    if (upy_response_flush(c) == UPY_RESP_BLOCKED) {
        return UPY_RESP_BLOCKED;
    }
    return static_finish(lc, c, req);
}

/* A file name's static-skip-ext match. */
static int
skipped(struct upy_static_cfg *sc, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sc->nskip; i++) {
        size_t el = sc->skip_ext[i].len;
        if (el > 0 && n >= el && memcmp(name + n - el, sc->skip_ext[i].s, el) == 0)
            return 1;
    }
    return 0;
}

/* Try map m for the path remainder rem.  Returns UPY_STATIC_PASS (not
   here: the next map), UPY_STATIC_REJECT (400), or a UPY_RESP_* (served). */
static int
try_map(upy_core *lc, upy_conn *c, const upy_request *req, const sreq *q,
        smap *m, const char *rem, size_t rlen, double now)
{
    upy_server *srv = lc->srv;
    struct upy_static_cfg *sc = srv->static_cfg;
    sresp s;
    int trailing, err = 0;
    ssize_t len;
    const char *name;
    size_t flen = 0;
    int found_index = 0;     /* a directory's index: "/dir/" names it */

    if (map_root(m, now) < 0) {
        return UPY_STATIC_PASS;
    }
    memset(&s, 0, sizeof s);
    s.fd = -1;
    s.started = now;
    s.keep_alive = req->keep_alive && !srv->stopping;
    if (m->is_file) {
        /* static-map = /favicon.ico=/srv/favicon.ico: exactly the prefix */
        (void)rem;
        if (m->kind == MAP_DOCROOT ||
            (m->kind == MAP_STRIP ? rlen != 0 : rlen != m->prefix.len))
            return UPY_STATIC_PASS;
        s.fd = open(m->root.s, OPEN_FLAGS);
        if (s.fd < 0)
            return UPY_STATIC_PASS;
        snprintf(sc->rel, sizeof sc->rel, "%s", m->root.s);
        name = sc->rel;
        flen = (size_t)snprintf(sc->full, sizeof sc->full, "%s", m->root.s);
    }
    else {
        len = upy_static_clean(rem, rlen, sc->rel, sizeof sc->rel, &trailing);
        if (len == UPY_STATIC_NUL)
            return UPY_STATIC_REJECT;
        if (len == UPY_STATIC_ESCAPE) {
            err = EXDEV;
            goto refused;
        }
        if (len < 0)
            return UPY_STATIC_PASS;
        s.fd = open_beneath(sc, m, sc->rel, &err);
        if (s.fd < 0)
            goto refused;
        name = sc->rel;
    }
    if (fstat(s.fd, &s.st) < 0) {
        close(s.fd);
        return UPY_STATIC_PASS;
    }
    if (S_ISDIR(s.st.st_mode) && !m->is_file) {
        /* static-index, in order; none: the app */
        size_t base = strlen(sc->rel);
        int found = 0;
        found_index = 1;
        for (size_t i = 0; i < sc->nindex && !found; i++) {
            int fd;
            struct stat st;
            if (base + 1 + sc->index[i].len >= sizeof sc->rel)
                continue;
            sc->rel[base] = '\0';
            if (base > 0)
                strcat(sc->rel, "/");
            strcat(sc->rel, sc->index[i].s);
            fd = open_beneath(sc, m, sc->rel, &err);
            if (fd < 0)
                continue;
            if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
                close(s.fd);
                s.fd = fd;
                s.st = st;
                found = 1;
            }
            else {
                close(fd);
            }
        }
        if (!found) {
            close(s.fd);
            return UPY_STATIC_PASS;
        }
    }
    if (!S_ISREG(s.st.st_mode) || skipped(sc, name) ||
        (q->trailing && !S_ISDIR(s.st.st_mode) && !found_index)) {
        /* a FIFO, socket or device (opened O_NONBLOCK: never waited on),
           or static-skip-ext: the app */
        close(s.fd);
        return UPY_STATIC_PASS;
    }
    if (!m->is_file) {
        int n = snprintf(sc->full, sizeof sc->full, "%s/%s", m->root.s, sc->rel);
        flen = n > 0 && (size_t)n < sizeof sc->full ? (size_t)n : 0;
    }
    s.name = name;
    if (!q->is_get && !q->is_head) {
        close(s.fd);
        s.fd = -1;
        s.status = 405;
        return respond(lc, c, req, q, &s, sc->full);
    }
    if (gzip_applies(sc, sc->full, flen)) {
        s.vary = 1;
        if (q->ae.len > 0) {
            if (upy_coding_accepted(q->ae.p, q->ae.len, "br", 2) &&
                try_sibling(sc, m, sc->rel, ".br", &s))
                s.encoding = "br";
            else if (upy_coding_accepted(q->ae.p, q->ae.len, "gzip", 4) &&
                     try_sibling(sc, m, sc->rel, ".gz", &s))
                s.encoding = "gzip";
        }
    }
    evaluate(q, &s);
    if (s.status != 200 && s.status != 206) {
        close(s.fd);
        s.fd = -1;
    }
    return respond(lc, c, req, q, &s, sc->full);

refused:
    if (err == EXDEV || err == EACCES || err == EPERM) {
        memset(&s.st, 0, sizeof s.st);
        s.status = 403;
        s.name = "";
        if (err == EXDEV) {
            upy_log(srv, 30, "static: %s from %s resolves outside %s and every "
                    "static-safe directory: 403", q->path, c->addr_text,
                    m->root.s);
        }
        return respond(lc, c, req, q, &s, "");
    }
    return UPY_STATIC_PASS;
}

int
upy_static_have_openat2(void)
{
#ifdef UPY_HAVE_OPENAT2
    return 1;
#else
    return 0;
#endif
}

int
upy_static_serve(upy_core *lc, upy_conn *c, const upy_request *req)
{
    upy_server *srv = lc->srv;
    struct upy_static_cfg *sc = srv->static_cfg;
    sreq q;
    double now;
    size_t norm_len;
    if (sc->nmaps == 0 || read_request(sc, req, &q) < 0 || q.path_len == 0 ||
        q.path[0] != '/') {
        return UPY_STATIC_PASS;
    }
    /* Dot-segments go first, over the whole path (RFC 3986 §5.2.4, as
       nginx does before it matches a location): /static/../x is /x, which
       no /static map serves. */
    {
        ssize_t n = upy_static_clean(q.path, q.path_len, sc->norm + 1,
                                     sizeof sc->norm - 1, &q.trailing);
        if (n == UPY_STATIC_NUL || n == UPY_STATIC_ESCAPE) {
            /* a NUL, or ".." above the root: 400 when a map's prefix
               names it, else it is the app's to judge */
            for (size_t i = 0; i < sc->nmaps; i++) {
                const smap *m = &sc->maps[i];
                if (m->kind == MAP_DOCROOT ||
                    under(q.path, q.path_len, m->prefix.s, m->prefix.len))
                    return UPY_STATIC_REJECT;
            }
            return UPY_STATIC_PASS;
        }
        if (n < 0) {
            return UPY_STATIC_PASS;
        }
        sc->norm[0] = '/';
        norm_len = (size_t)n + 1;
    }
    now = upy_now();
    for (size_t i = 0; i < sc->nmaps; i++) {
        smap *m = &sc->maps[i];
        const char *rem = sc->norm;
        size_t rlen = norm_len;
        int rc;
        if (m->kind != MAP_DOCROOT) {
            if (norm_len < m->prefix.len ||
                memcmp(sc->norm, m->prefix.s, m->prefix.len) != 0 ||
                (norm_len > m->prefix.len && sc->norm[m->prefix.len] != '/'))
                continue;
            if (m->kind == MAP_STRIP) {
                rem += m->prefix.len;
                rlen -= m->prefix.len;
            }
        }
        rc = try_map(lc, c, req, &q, m, rem, rlen, now);
        if (rc != UPY_STATIC_PASS) {
            return rc;
        }
    }
    return UPY_STATIC_PASS;
}
