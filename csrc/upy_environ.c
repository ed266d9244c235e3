/*
 * upy_environ.c - the WSGI environ (PEP 3333, "environ Variables"), built in
 * one place from the upy_request either decoder filled.
 *
 * The constant part (SCRIPT_NAME, SERVER_NAME/PORT, wsgi.*) is built once
 * per listener; each request copies it and adds its own keys.  All keys and
 * values are native strings decoded as latin-1 (PEP 3333 "Unicode Issues").
 */
#include "upy_core.h"
#include "upy_proto.h"
#include "upy_log.h"

#include <string.h>

PyObject *
upy_build_base_environ(upy_state *st, upy_listener *lst,
                       const char *server_name, const char *server_port,
                       int multithread, int multiprocess, PyObject *errors)
{
    PyObject *env = PyDict_New();
    if (env == NULL) {
        return NULL;
    }
    if (PyDict_SetItem(env, st->k_SCRIPT_NAME, st->s_empty) < 0 ||
        PyDict_SetItem(env, st->k_QUERY_STRING, st->s_empty) < 0 ||
        upy_dict_set_steal(env, st->k_SERVER_NAME,
                           PyUnicode_DecodeLatin1(server_name,
                                                  strlen(server_name),
                                                  NULL)) < 0 ||
        upy_dict_set_steal(env, st->k_SERVER_PORT,
                           PyUnicode_DecodeLatin1(server_port,
                                                  strlen(server_port),
                                                  NULL)) < 0 ||
        PyDict_SetItem(env, st->k_wsgi_version, st->wsgi_version) < 0 ||
        PyDict_SetItem(env, st->k_wsgi_url_scheme, st->s_http) < 0 ||
        PyDict_SetItem(env, st->k_wsgi_errors, errors) < 0 ||
        PyDict_SetItem(env, st->k_wsgi_multithread,
                       multithread ? Py_True : Py_False) < 0 ||
        PyDict_SetItem(env, st->k_wsgi_multiprocess,
                       multiprocess ? Py_True : Py_False) < 0 ||
        PyDict_SetItem(env, st->k_wsgi_run_once, Py_False) < 0 ||
        PyDict_SetItem(env, st->k_wsgi_input_terminated, Py_True) < 0 ||
        PyDict_SetItem(env, st->k_wsgi_file_wrapper,
                       (PyObject *)st->FileWrapper_Type) < 0) {
        Py_DECREF(env);
        return NULL;
    }
    return env;
}

static uint32_t
fnv1a(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}

typedef PyObject *(*upy_key_maker)(upy_state *st, const upy_str *name);

/* New reference: the environ key for a raw name, from the cache when it
   holds it (a miss replaces the slot: a bounded cache, never a leak). */
static PyObject *
cached_key(upy_state *st, upy_key_entry *cache, const upy_str *name,
           upy_key_maker make)
{
    uint32_t h;
    upy_key_entry *e;
    PyObject *key;
    if (cache == NULL || name->len > UPY_KEY_CACHE_MAXLEN) {
        return make(st, name);
    }
    h = fnv1a(name->p, name->len);
    e = &cache[h & (UPY_KEY_CACHE_SIZE - 1)];
    if (e->key != NULL && e->hash == h && e->len == name->len &&
        memcmp(e->raw, name->p, name->len) == 0) {
        return Py_NewRef(e->key);
    }
    key = make(st, name);
    if (key == NULL) {
        return NULL;
    }
    Py_XSETREF(e->key, Py_NewRef(key));
    e->hash = h;
    e->len = (uint32_t)name->len;
    memcpy(e->raw, name->p, name->len);
    return key;
}

void
upy_key_cache_free(upy_key_entry *cache)
{
    if (cache == NULL)
        return;
    for (size_t i = 0; i < UPY_KEY_CACHE_SIZE; i++)
        Py_CLEAR(cache[i].key);
    PyMem_Free(cache);
}

static PyObject *
var_key(upy_state *st, const upy_str *name)
{
    PyObject *k = PyUnicode_DecodeLatin1(name->p, (Py_ssize_t)name->len,
                                         NULL);
    if (k != NULL)
        PyUnicode_InternInPlace(&k);
    return k;
}

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* New reference: percent-decoded path as a latin-1 str.  Invalid escapes
   are kept as they are (as CGI servers do).  out has room for len bytes. */
static PyObject *
percent_decode(const char *p, size_t len, char *out)
{
    size_t i = 0, o = 0;
    if (memchr(p, '%', len) == NULL) {
        return PyUnicode_DecodeLatin1(p, (Py_ssize_t)len, NULL);
    }
    while (i < len) {
        if (p[i] == '%' && len - i >= 3) {
            int hi = hexval((unsigned char)p[i + 1]);
            int lo = hexval((unsigned char)p[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out[o++] = (char)(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out[o++] = p[i++];
    }
    return PyUnicode_DecodeLatin1(out, (Py_ssize_t)o, NULL);
}

/* New reference: "HTTP_" + name upper-cased with '-' as '_' (CGI, RFC 3875
   §4.1.18).  Content-Type and Content-Length map to their CGI names. */
static PyObject *
header_key(upy_state *st, const upy_str *name)
{
    PyObject *key;
    Py_UCS1 *d;
    if (UPY_LOWER_EQ(name->p, name->len, "content-type")) {
        Py_INCREF(st->k_CONTENT_TYPE);
        return st->k_CONTENT_TYPE;
    }
    if (UPY_LOWER_EQ(name->p, name->len, "content-length")) {
        Py_INCREF(st->k_CONTENT_LENGTH);
        return st->k_CONTENT_LENGTH;
    }
    if (UPY_LOWER_EQ(name->p, name->len, "cookie")) {
        Py_INCREF(st->k_HTTP_COOKIE);
        return st->k_HTTP_COOKIE;
    }
    key = PyUnicode_New((Py_ssize_t)(5 + name->len), 127);
    if (key == NULL) {
        return NULL;
    }
    d = PyUnicode_1BYTE_DATA(key);
    memcpy(d, "HTTP_", 5);
    for (size_t i = 0; i < name->len; i++) {
        unsigned char c = (unsigned char)name->p[i];
        if (c >= 'a' && c <= 'z')
            c = (unsigned char)(c - 32);
        else if (c == '-')
            c = '_';
        d[5 + i] = c;
    }
    return key;
}

/* Add one header: repeated fields are joined with ", " (RFC 9110 §5.3),
   Cookie with "; " (RFC 6265 §5.4). */
static int
add_header(upy_state *st, upy_key_entry *cache, PyObject *env,
           const upy_field *f)
{
    PyObject *key = NULL, *value = NULL, *old, *joined = NULL;
    int rc = -1;

    key = cached_key(st, cache, &f->name, header_key);
    if (key == NULL) {
        goto error;
    }
    value = PyUnicode_DecodeLatin1(f->value.p, (Py_ssize_t)f->value.len, NULL);
    if (value == NULL) {
        goto error;
    }
    old = PyDict_GetItemWithError(env, key); /* borrowed */
    if (old == NULL && PyErr_Occurred()) {
        goto error;
    }
    if (old != NULL && key != st->k_CONTENT_LENGTH &&
        key != st->k_CONTENT_TYPE) {
        joined = PyUnicode_FromFormat("%U%s%U", old,
                                      key == st->k_HTTP_COOKIE ? "; " : ", ",
                                      value);
        if (joined == NULL) {
            goto error;
        }
        rc = PyDict_SetItem(env, key, joined);
    }
    else {
        rc = PyDict_SetItem(env, key, value);
    }
error:
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(joined);
    return rc;
}

static PyObject *
method_str(upy_state *st, const upy_str *m)
{
    if (m->len == 3 && memcmp(m->p, "GET", 3) == 0) {
        Py_INCREF(st->s_GET);
        return st->s_GET;
    }
    return PyUnicode_DecodeLatin1(m->p, (Py_ssize_t)m->len, NULL);
}

/* PATH_INFO from the target's path (percent-decoded), REQUEST_URI the raw
   target.  CONNECT's authority-form (RFC 9112 §3.2.3) has no path: the
   parser gives an empty one, so PATH_INFO is "" and REQUEST_URI the
   authority ("example.com:443").  gunicorn's RAW_URI is the same; its
   PATH_INFO is what urlsplit leaves of "host:port" ("443"), uWSGI's the
   authority itself: neither is a path. */
int
upy_environ_from_http(upy_core *core, upy_conn *conn, const upy_request *req,
                      PyObject *env)
{
    upy_state *st = core->st;
    upy_str path = upy_origin_path(req->path);
    if (upy_dict_set_steal(env, st->k_REQUEST_METHOD,
                           method_str(st, &req->method)) < 0 ||
        upy_dict_set_steal(env, st->k_PATH_INFO,
                           percent_decode(path.p, path.len,
                                          core->scratch)) < 0 ||
        upy_dict_set_steal(env, st->k_REQUEST_URI,
                           PyUnicode_DecodeLatin1(req->target.p,
                                                  (Py_ssize_t)req->target.len,
                                                  NULL)) < 0 ||
        PyDict_SetItem(env, st->k_SERVER_PROTOCOL,
                       req->minor_version ? st->s_http11 : st->s_http10) < 0) {
        return -1;
    }
    if (req->query.len > 0 &&
        upy_dict_set_steal(env, st->k_QUERY_STRING,
                           PyUnicode_DecodeLatin1(req->query.p,
                                                  (Py_ssize_t)req->query.len,
                                                  NULL)) < 0) {
        return -1;
    }
    if (upy_dict_set_steal(env, st->k_REMOTE_ADDR,
                           PyUnicode_DecodeLatin1(
                               conn->addr_text + conn->host_off,
                               conn->host_len, NULL)) < 0 ||
        upy_dict_set_steal(env, st->k_REMOTE_PORT,
                           PyUnicode_DecodeLatin1(
                               conn->addr_text + conn->port_off,
                               conn->port_len, NULL)) < 0) {
        return -1;
    }
    for (size_t i = 0; i < req->num_fields; i++) {
        if (add_header(st, core->srv->hdr_keys, env, &req->fields[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

/* CGI vars (uwsgi, FastCGI, SCGI): every var becomes an environ item as it
   was sent (nginx's uwsgi_params, fastcgi_params, scgi_params); required
   PEP 3333 keys the front end left out get defaults. */
int
upy_environ_from_vars(upy_core *core, upy_conn *conn, const upy_request *req,
                      PyObject *env)
{
    upy_state *st = core->st;
    int r;
    for (size_t i = 0; i < req->num_fields; i++) {
        const upy_field *f = &req->fields[i];
        PyObject *k = cached_key(st, core->srv->var_keys, &f->name, var_key);
        if (k == NULL) {
            return -1;
        }
        r = upy_dict_set_steal(
            env, k,
            PyUnicode_DecodeLatin1(f->value.p, (Py_ssize_t)f->value.len, NULL));
        Py_DECREF(k);
        if (r < 0) {
            return -1;
        }
    }
    if (req->https &&
        PyDict_SetItem(env, st->k_wsgi_url_scheme, st->s_https) < 0) {
        return -1;
    }
    r = PyDict_Contains(env, st->k_PATH_INFO);
    if (r < 0) {
        return -1;
    }
    if (r == 0) {
        /* No PATH_INFO var: derive it from REQUEST_URI's path. */
        upy_str path = req->target;
        const char *q = memchr(path.p ? path.p : "", '?', path.len);
        if (q != NULL) {
            path.len = (size_t)(q - path.p);
        }
        if (upy_dict_set_steal(env, st->k_PATH_INFO,
                               percent_decode(path.p ? path.p : "", path.len,
                                              core->scratch)) < 0) {
            return -1;
        }
    }
    r = PyDict_Contains(env, st->k_SERVER_PROTOCOL);
    if (r < 0 ||
        (r == 0 &&
         PyDict_SetItem(env, st->k_SERVER_PROTOCOL, st->s_http10) < 0)) {
        return -1;
    }
    return 0;
}

PyObject *
upy_build_environ(upy_core *core, upy_conn *conn, const upy_request *req,
                  PyObject *input)
{
    PyObject *env = PyDict_Copy(conn->lst->base_environ);
    if (env == NULL) {
        return NULL;
    }
    if (upy_protocols[req->proto]->environ_from(core, conn, req, env) < 0 ||
        PyDict_SetItem(env, core->st->k_wsgi_input, input) < 0 ||
        (core->srv->rid_key != NULL &&
         upy_environ_request_id(core->srv, env) < 0)) {
        Py_DECREF(env);
        return NULL;
    }
    return env;
}

/* request-id: the incoming header (HTTP_X_REQUEST_ID, from an HTTP
   header or nginx's uwsgi var) stays in the environ as received; the id
   the server uses, uwsgipy.request_id, is that value when it is sane, else
   a new one. */
int
upy_environ_request_id(upy_server *srv, PyObject *env)
{
    PyObject *v = PyDict_GetItemWithError(env, srv->rid_key); /* borrowed */
    PyObject *id;
    int rc;
    if (v == NULL && PyErr_Occurred())
        return -1;
    if (v != NULL && PyUnicode_Check(v) &&
        PyUnicode_KIND(v) == PyUnicode_1BYTE_KIND &&
        upy_request_id_ok((const char *)PyUnicode_1BYTE_DATA(v),
                          (size_t)PyUnicode_GET_LENGTH(v))) {
        id = Py_NewRef(v);
    }
    else {
        char buf[UPY_REQUEST_ID_LEN];
        upy_request_id_new(buf);
        id = PyUnicode_DecodeLatin1(buf, UPY_REQUEST_ID_LEN, NULL);
        if (id == NULL)
            return -1;
    }
    rc = PyDict_SetItem(env, srv->rid_env, id);
    Py_DECREF(id);
    return rc;
}

/* ------------------------------------------------------------------ */
/* mount / manage-script-name: which app a request goes to             */
/* ------------------------------------------------------------------ */

/* Server(mounts=): keep a tuple of (prefix, app) pairs, checked once.
   A prefix is a native string of latin-1 characters (the URL's bytes, as
   PATH_INFO is), "" or starting with '/' and not ending with '/'. */
int
upy_mounts_init(upy_server *srv, PyObject *mounts)
{
    PyObject *seq, *out = NULL;
    Py_ssize_t n;
    if (mounts == Py_None) {
        return 0;
    }
    seq = PySequence_Fast(mounts, "mounts must be a sequence of (prefix, app)");
    if (seq == NULL) {
        return -1;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    if (n == 0) {
        Py_DECREF(seq);
        return 0;
    }
    out = PyTuple_New(n);
    if (out == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i), *prefix;
        Py_ssize_t len;
        const Py_UCS1 *d;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "mounts: each item must be a "
                            "(prefix, app) tuple");
            goto error;
        }
        prefix = PyTuple_GET_ITEM(item, 0);
        if (!PyUnicode_Check(prefix) ||
            PyUnicode_KIND(prefix) != PyUnicode_1BYTE_KIND) {
            PyErr_SetString(PyExc_ValueError, "mounts: a prefix must be a str "
                            "of latin-1 characters (PEP 3333)");
            goto error;
        }
        len = PyUnicode_GET_LENGTH(prefix);
        d = PyUnicode_1BYTE_DATA(prefix);
        if (len > 0 && (d[0] != '/' || d[len - 1] == '/')) {
            PyErr_Format(PyExc_ValueError, "mounts: the prefix %R must start "
                         "with '/' and not end with '/'", prefix);
            goto error;
        }
        if (!PyCallable_Check(PyTuple_GET_ITEM(item, 1))) {
            PyErr_Format(PyExc_TypeError, "mounts: the app for %R is not "
                         "callable", prefix);
            goto error;
        }
        PyTuple_SET_ITEM(out, i, Py_NewRef(item));
    }
    Py_DECREF(seq);
    Py_XSETREF(srv->mounts, out);
    return 0;
error:
    Py_XDECREF(out);
    Py_DECREF(seq);
    return -1;
}

static int
same_text(PyObject *s, const Py_UCS1 *d, Py_ssize_t len)
{
    return PyUnicode_Check(s) && PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND &&
           PyUnicode_GET_LENGTH(s) == len &&
           memcmp(PyUnicode_1BYTE_DATA(s), d, (size_t)len) == 0;
}

/* The app for the request whose environ is env (GIL held; borrowed: the
   server holds it).  uWSGI 2.0's rules (core/protocol.c, the
   manage_script_name block; core/utils.c uwsgi_get_app_id):
   - manage-script-name: the longest prefix of PATH_INFO that ends at a
     segment boundary ("/a" takes "/a", "/a/", "/a/x", not "/ab") wins;
     SCRIPT_NAME becomes the prefix and PATH_INFO the rest ("" for the
     prefix itself), so SCRIPT_NAME + PATH_INFO is the path (PEP 3333).
     Over uwsgi this replaces the SCRIPT_NAME nginx sent, as in uWSGI.
   - otherwise (or no prefix matched): the mount whose prefix equals the
     request's SCRIPT_NAME (nginx's `uwsgi_param SCRIPT_NAME /a;`; ""
     over HTTP), environ untouched;
   - else the default app (srv->app).
   NULL with an exception set on failure. */
PyObject *
upy_mount_app(upy_server *srv, upy_state *st, PyObject *env)
{
    PyObject *m = srv->mounts, *sn;
    Py_ssize_t n = PyTuple_GET_SIZE(m);
    if (srv->manage_script_name) {
        PyObject *pi = PyDict_GetItemWithError(env, st->k_PATH_INFO);
        if (pi == NULL && PyErr_Occurred()) {
            return NULL;
        }
        if (pi != NULL && PyUnicode_Check(pi) &&
            PyUnicode_KIND(pi) == PyUnicode_1BYTE_KIND) {
            Py_ssize_t plen = PyUnicode_GET_LENGTH(pi), best = -1, best_len = 0;
            const Py_UCS1 *p = PyUnicode_1BYTE_DATA(pi);
            for (Py_ssize_t i = 0; i < n; i++) {
                PyObject *prefix = PyTuple_GET_ITEM(PyTuple_GET_ITEM(m, i), 0);
                Py_ssize_t len = PyUnicode_GET_LENGTH(prefix);
                if (len == 0 || len <= best_len || len > plen ||
                    memcmp(p, PyUnicode_1BYTE_DATA(prefix), (size_t)len) != 0 ||
                    (len < plen && p[len] != '/')) {
                    continue;
                }
                best = i;
                best_len = len;
            }
            if (best >= 0) {
                PyObject *item = PyTuple_GET_ITEM(m, best);
                /* pi is borrowed from env: take the rest before replacing it */
                PyObject *rest = PyUnicode_Substring(pi, best_len, plen);
                if (upy_dict_set_steal(env, st->k_PATH_INFO, rest) < 0 ||
                    PyDict_SetItem(env, st->k_SCRIPT_NAME,
                                   PyTuple_GET_ITEM(item, 0)) < 0) {
                    return NULL;
                }
                return PyTuple_GET_ITEM(item, 1);
            }
        }
    }
    sn = PyDict_GetItemWithError(env, st->k_SCRIPT_NAME);
    if (sn == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        sn = st->s_empty;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(m, i);
        PyObject *prefix = PyTuple_GET_ITEM(item, 0);
        if (same_text(sn, PyUnicode_1BYTE_DATA(prefix),
                      PyUnicode_GET_LENGTH(prefix))) {
            return PyTuple_GET_ITEM(item, 1);
        }
    }
    return srv->app;
}
