/*
 * upy_response.c - the response half of PEP 3333: start_response, write(),
 * iterating the app's result, framing (Content-Length, chunked, or
 * close-delimited), wsgi.file_wrapper with sendfile(2), and the access log.
 */
#include "upy_core.h"
#include "upy_proto.h"
#include "upy_log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#if UPY_HAVE_SENDFILE
#include <sys/sendfile.h>
#endif

/* getattr that treats AttributeError as "absent": 1 found (*out new ref),
   0 absent, -1 other error. */
static int
optional_attr(PyObject *o, PyObject *name, PyObject **out)
{
    /* without raising (and formatting) an AttributeError when absent */
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(o, name, out);
#else
    return _PyObject_LookupAttr(o, name, out);
#endif
}

/* ------------------------------------------------------------------ */
/* Validation (PEP 3333 "The start_response() Callable"; RFC 9110 §5)  */
/* ------------------------------------------------------------------ */

static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

/* Header name or value equal to a lowercase literal, ignoring case. */
#define IEQ(a, alen, lit) UPY_LOWER_EQ((a), (size_t)(alen), lit)

/* Latin-1 bytes of a str; ASCII-only strings borrow their data.  Returns
   NULL with ValueError for characters above U+00FF (PEP 3333: headers are
   latin-1 native strings). */
static const char *
latin1_data(PyObject *s, Py_ssize_t *len, const char *what)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what,
                     Py_TYPE(s)->tp_name);
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) {  /* always ready from 3.12 on */
        return NULL;
    }
#endif
    if (PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be latin-1 (PEP 3333): %R", what, s);
        return NULL;
    }
    *len = PyUnicode_GET_LENGTH(s);
    return (const char *)PyUnicode_1BYTE_DATA(s);
}

/* Validate status and headers, and note the ones that affect framing.
   r is changed only on success (a rejected start_response(..., exc_info)
   must not alter the response already accepted).  Returns 0 or -1 with an
   exception set. */
static int
check_response(upy_response *r, PyObject *status, PyObject *headers)
{
    Py_ssize_t slen, n;
    int64_t content_length = -1;
    int app_close = 0, has_date = 0;
    const char *s = latin1_data(status, &slen, "status");
    if (s == NULL) {
        return -1;
    }
    if (slen < 4 || s[0] < '1' || s[0] > '5' || s[1] < '0' || s[1] > '9' ||
        s[2] < '0' || s[2] > '9' || s[3] != ' ') {
        PyErr_Format(PyExc_ValueError,
                     "status must be 'NNN Reason' (PEP 3333), got %R", status);
        return -1;
    }
    for (Py_ssize_t i = 4; i < slen; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            PyErr_Format(PyExc_ValueError,
                         "control character in status %R", status);
            return -1;
        }
    }
    if (!PyList_Check(headers)) {
        PyErr_Format(PyExc_TypeError,
                     "response_headers must be a list (PEP 3333), not %.100s",
                     Py_TYPE(headers)->tp_name);
        return -1;
    }
    n = PyList_GET_SIZE(headers);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(headers, i);
        const char *name, *value;
        Py_ssize_t nlen, vlen;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_Format(PyExc_TypeError,
                         "each response header must be a (name, value) "
                         "tuple, got %R", item);
            return -1;
        }
        name = latin1_data(PyTuple_GET_ITEM(item, 0), &nlen, "header name");
        if (name == NULL)
            return -1;
        value = latin1_data(PyTuple_GET_ITEM(item, 1), &vlen, "header value");
        if (value == NULL)
            return -1;
        if (nlen == 0) {
            PyErr_SetString(PyExc_ValueError, "empty header name");
            return -1;
        }
        for (Py_ssize_t j = 0; j < nlen; j++) {
            if (!tchar[(unsigned char)name[j]]) {
                PyErr_Format(PyExc_ValueError,
                             "invalid character in header name %R",
                             PyTuple_GET_ITEM(item, 0));
                return -1;
            }
        }
        for (Py_ssize_t j = 0; j < vlen; j++) {
            unsigned char c = (unsigned char)value[j];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                PyErr_Format(PyExc_ValueError,
                             "control character (CR, LF, NUL...) in the "
                             "value of header %R",
                             PyTuple_GET_ITEM(item, 0));
                return -1;
            }
        }
        if (IEQ(name, nlen, "content-length")) {
            int64_t cl = 0;
            if (vlen == 0 || vlen > 18) {
                goto bad_cl;
            }
            for (Py_ssize_t j = 0; j < vlen; j++) {
                if (value[j] < '0' || value[j] > '9')
                    goto bad_cl;
                cl = cl * 10 + (value[j] - '0');
            }
            content_length = cl;
            continue;
        bad_cl:
            PyErr_Format(PyExc_ValueError, "invalid Content-Length %R",
                         PyTuple_GET_ITEM(item, 1));
            return -1;
        }
        else if (IEQ(name, nlen, "transfer-encoding") ||
                 IEQ(name, nlen, "keep-alive") || IEQ(name, nlen, "upgrade") ||
                 IEQ(name, nlen, "te") || IEQ(name, nlen, "trailer")) {
            PyErr_Format(PyExc_ValueError,
                         "hop-by-hop header %R is the server's to send "
                         "(PEP 3333)", PyTuple_GET_ITEM(item, 0));
            return -1;
        }
        else if (IEQ(name, nlen, "connection")) {
            if (IEQ(value, vlen, "close")) {
                app_close = 1;
            }
        }
        else if (IEQ(name, nlen, "date")) {
            has_date = 1;
        }
    }
    r->status_code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    r->content_length = content_length;
    r->app_close = app_close;
    r->has_date = has_date;
    return 0;
}

/* ------------------------------------------------------------------ */
/* start_response and write()                                          */
/* ------------------------------------------------------------------ */

static int send_body(upy_core *core, upy_response *r, PyObject *data);

static PyObject *
sr_call(upy_start_response *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"status", "response_headers", "exc_info", NULL};
    PyObject *status, *headers, *exc_info = Py_None, *copy;
    upy_response *r = self->resp;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:start_response",
                                     kwlist, &status, &headers, &exc_info)) {
        return NULL;
    }
    if (r == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "start_response called after the request ended");
        return NULL;
    }
    if (exc_info != Py_None) {
        if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
            PyErr_SetString(PyExc_TypeError,
                            "exc_info must be a (type, value, traceback) "
                            "tuple");
            return NULL;
        }
        if (r->headers_sent) {
            /* PEP 3333: too late to change the response: re-raise. */
            PyObject *t = PyTuple_GET_ITEM(exc_info, 0);
            PyObject *v = PyTuple_GET_ITEM(exc_info, 1);
            PyObject *tb = PyTuple_GET_ITEM(exc_info, 2);
            PyErr_Restore(Py_NewRef(t), Py_NewRef(v),
                          tb == Py_None ? NULL : Py_NewRef(tb));
            return NULL;
        }
    }
    else if (r->status != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "start_response called a second time without "
                        "exc_info (PEP 3333)");
        return NULL;
    }
    if (!PyList_Check(headers)) {
        PyErr_Format(PyExc_TypeError,
                     "response_headers must be a list (PEP 3333), not %.100s",
                     Py_TYPE(headers)->tp_name);
        return NULL;
    }
    /* A private copy: the app may change its list after this call, and
       build_head() reads the items without checking them again. */
    copy = PyList_GetSlice(headers, 0, PY_SSIZE_T_MAX);
    if (copy == NULL) {
        return NULL;
    }
    if (check_response(r, status, copy) < 0) {
        Py_DECREF(copy);
        return NULL;
    }
    Py_XSETREF(r->status, Py_NewRef(status));
    Py_XSETREF(r->headers, copy); /* steals copy */
    return PyObject_GetAttr((PyObject *)self, r->core->st->s_write);
}

static PyObject *
sr_write(upy_start_response *self, PyObject *data)
{
    upy_response *r = self->resp;
    int rc;
    if (r == NULL || r->status == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        r == NULL ? "write() called after the request ended"
                                  : "write() called before start_response");
        return NULL;
    }
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "write() takes bytes, not %.100s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    rc = send_body(r->core, r, data);
    if (rc < 0 && !PyErr_Occurred() && !r->core->srv->write_exception) {
        Py_RETURN_NONE; /* disable-write-exception */
    }
    if (rc < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_OSError,
                            "write(): the client closed the connection");
        return NULL;
    }
    Py_RETURN_NONE;
}

static void
sr_dealloc(upy_start_response *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef sr_methods[] = {
    {"write", (PyCFunction)sr_write, METH_O,
     "write(data: bytes): send data now (PEP 3333 imperative write)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot sr_slots[] = {
    {Py_tp_doc, "start_response(status, response_headers, exc_info=None)\n"
                "(PEP 3333); returns the write() callable."},
    {Py_tp_call, sr_call},
    {Py_tp_methods, sr_methods},
    {Py_tp_dealloc, sr_dealloc},
    {0, NULL},
};

PyType_Spec upy_start_response_spec = {
    .name = "uwsgipy._core.StartResponse",
    .basicsize = sizeof(upy_start_response),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = sr_slots,
};

/* ------------------------------------------------------------------ */
/* wsgi.file_wrapper (PEP 3333 "Optional Platform-Specific File        */
/* Handling")                                                          */
/* ------------------------------------------------------------------ */

static PyObject *
fw_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"filelike", "block_size", NULL};
    PyObject *filelike;
    Py_ssize_t block_size = 65536;
    upy_file_wrapper *self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|n:file_wrapper", kwlist,
                                     &filelike, &block_size)) {
        return NULL;
    }
    if (block_size <= 0) {
        PyErr_SetString(PyExc_ValueError, "block_size must be positive");
        return NULL;
    }
    self = (upy_file_wrapper *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->filelike = Py_NewRef(filelike);
    self->block_size = block_size;
    return (PyObject *)self;
}

static PyObject *
fw_iternext(upy_file_wrapper *self)
{
    PyObject *data = PyObject_CallMethod(self->filelike, "read", "n",
                                         self->block_size);
    if (data == NULL) {
        return NULL;
    }
    if (PyBytes_Check(data) && PyBytes_GET_SIZE(data) == 0) {
        Py_DECREF(data);
        return NULL; /* StopIteration */
    }
    return data;
}

static PyObject *
fw_close(upy_file_wrapper *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *close = NULL;
    upy_state *st = upy_get_state_from_type(Py_TYPE(self));
    if (st == NULL || optional_attr(self->filelike, st->s_close, &close) < 0) {
        return NULL;
    }
    if (close != NULL) {
        PyObject *r = PyObject_CallNoArgs(close);
        Py_DECREF(close);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static int
fw_traverse(upy_file_wrapper *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->filelike);
    return 0;
}

static int
fw_clear(upy_file_wrapper *self)
{
    Py_CLEAR(self->filelike);
    return 0;
}

static void
fw_dealloc(upy_file_wrapper *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    fw_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef fw_methods[] = {
    {"close", (PyCFunction)fw_close, METH_NOARGS,
     "Close the wrapped file-like object (if it has close())."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot fw_slots[] = {
    {Py_tp_doc, "file_wrapper(filelike, block_size=65536): wsgi.file_wrapper"
                " (PEP 3333).  Sent with sendfile(2) when filelike has a\n"
                "fileno() of a regular file, by read(block_size) otherwise."},
    {Py_tp_new, fw_new},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, fw_iternext},
    {Py_tp_methods, fw_methods},
    {Py_tp_traverse, fw_traverse},
    {Py_tp_clear, fw_clear},
    {Py_tp_dealloc, fw_dealloc},
    {0, NULL},
};

PyType_Spec upy_file_wrapper_spec = {
    .name = "uwsgipy._core.FileWrapper",
    .basicsize = sizeof(upy_file_wrapper),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = fw_slots,
};

/* ------------------------------------------------------------------ */
/* wsgi.input of a request without a body: one shared, stateless object */
/* ------------------------------------------------------------------ */

static PyObject *
ei_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "takes at most one argument");
        return NULL;
    }
    return PyBytes_FromStringAndSize(NULL, 0);
}

static PyObject *
ei_readlines(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "takes at most one argument");
        return NULL;
    }
    return PyList_New(0);
}

static PyObject *
ei_iternext(PyObject *self)
{
    return NULL;
}

static PyMethodDef ei_methods[] = {
    {"read", (PyCFunction)(void (*)(void))ei_read, METH_FASTCALL,
     "read(size=-1) -> b'' (the body is empty)"},
    {"readline", (PyCFunction)(void (*)(void))ei_read, METH_FASTCALL,
     "readline(size=-1) -> b''"},
    {"readlines", (PyCFunction)(void (*)(void))ei_readlines, METH_FASTCALL,
     "readlines(hint=-1) -> []"},
    {NULL, NULL, 0, NULL},
};

static void
ei_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot ei_slots[] = {
    {Py_tp_doc, "wsgi.input of a request without a body (PEP 3333 input "
                "stream): every read returns b''."},
    {Py_tp_methods, ei_methods},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, ei_iternext},
    {Py_tp_dealloc, ei_dealloc},
    {0, NULL},
};

PyType_Spec upy_empty_input_spec = {
    .name = "uwsgipy._core.EmptyInput",
    .basicsize = sizeof(PyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ei_slots,
};

/* ------------------------------------------------------------------ */
/* Sending                                                             */
/* ------------------------------------------------------------------ */

/* "Date: <IMF-fixdate>\r\n" (RFC 9110 §6.6.1), formatted once a second. */
const char *
upy_date_header(void)
{
    static __thread char buf[64];
    static __thread time_t last;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        last = now;
    }
    return buf;
}

static int
out_append(upy_core *core, size_t *len, const char *p, size_t n)
{
    if (core->out_cap - *len < n) {
        size_t cap = core->out_cap * 2;
        char *nb;
        while (cap - *len < n)
            cap *= 2;
        nb = realloc(core->out, cap);
        if (nb == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        core->out = nb;
        core->out_cap = cap;
    }
    memcpy(core->out + *len, p, n);
    *len += n;
    return 0;
}

/* Build the response head in core->out, choosing the framing.
   `known_length` >= 0 is a body length the server worked out itself. */
static ssize_t
build_head(upy_core *core, upy_response *r, int64_t known_length)
{
    const upy_protocol *pr = upy_protocols[r->proto];
    const char *prefix;
    size_t len = 0, plen;
    Py_ssize_t n = PyList_GET_SIZE(r->headers), slen;
    const char *s = latin1_data(r->status, &slen, "status");
    char line[64];

    if (s == NULL)
        return -1;
    r->no_body = r->no_body || r->status_code < 200 ||
                 r->status_code == 204 || r->status_code == 304;
    /* Not for 304 (RFC 9110 §8.6: only the length a 200 would have), nor a
       0 that only says a HEAD's app produced no body (§9.3.2). */
    if (r->content_length < 0 && known_length >= 0 &&
        !(r->status_code < 200 || r->status_code == 204 ||
          r->status_code == 304) &&
        !(r->no_body && known_length == 0)) {
        r->content_length = known_length;
        snprintf(line, sizeof line, "Content-Length: %lld\r\n",
                 (long long)known_length);
    }
    else {
        line[0] = '\0';
    }
    if (r->app_close) {
        r->keep_alive = 0;
    }
    if (r->content_length < 0 && !r->no_body) {
        if (pr->chunked_out && r->minor_version == 1) {
            r->chunked = 1;
        }
        else if (!pr->ends_itself) {
            r->keep_alive = 0; /* close-delimited (HTTP/1.0, uwsgi, SCGI) */
        }
    }
    if ((prefix = upy_status_prefix(pr, r->minor_version, &plen)) == NULL ||
        out_append(core, &len, prefix, plen) < 0 ||
        out_append(core, &len, s, (size_t)slen) < 0 ||
        out_append(core, &len, "\r\n", 2) < 0) {
        return -1;
    }
    PyObject *rid = core->srv->rid_header;   /* "X-Request-ID: " or NULL */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(r->headers, i);
        Py_ssize_t nlen, vlen;
        const char *name = latin1_data(PyTuple_GET_ITEM(item, 0), &nlen, "");
        const char *value = latin1_data(PyTuple_GET_ITEM(item, 1), &vlen, "");
        if (name == NULL || value == NULL)
            return -1;
        if (IEQ(name, nlen, "connection"))
            continue; /* ours to send, below */
        if (rid != NULL && nlen == PyBytes_GET_SIZE(rid) - 2 &&
            strncasecmp(name, PyBytes_AS_STRING(rid), (size_t)nlen) == 0)
            rid = NULL; /* the app set it: its value is sent */
        if (out_append(core, &len, name, (size_t)nlen) < 0 ||
            out_append(core, &len, ": ", 2) < 0 ||
            out_append(core, &len, value, (size_t)vlen) < 0 ||
            out_append(core, &len, "\r\n", 2) < 0) {
            return -1;
        }
    }
    if (out_append(core, &len, line, strlen(line)) < 0) {
        return -1;
    }
    if (core->srv->add_headers != NULL &&
        out_append(core, &len, PyBytes_AS_STRING(core->srv->add_headers),
                   (size_t)PyBytes_GET_SIZE(core->srv->add_headers)) < 0) {
        return -1;
    }
    if (rid != NULL && r->environ != NULL) {
        /* request-id: the id the environ carries (upy_environ.c) */
        PyObject *v = PyDict_GetItemWithError(r->environ, core->srv->rid_env);
        if (v != NULL && PyUnicode_Check(v) &&
            PyUnicode_KIND(v) == PyUnicode_1BYTE_KIND &&
            upy_request_id_ok((const char *)PyUnicode_1BYTE_DATA(v),
                              (size_t)PyUnicode_GET_LENGTH(v))) {
            if (out_append(core, &len, PyBytes_AS_STRING(rid),
                           (size_t)PyBytes_GET_SIZE(rid)) < 0 ||
                out_append(core, &len, (const char *)PyUnicode_1BYTE_DATA(v),
                           (size_t)PyUnicode_GET_LENGTH(v)) < 0 ||
                out_append(core, &len, "\r\n", 2) < 0)
                return -1;
        }
        PyErr_Clear();
    }
    if (r->chunked &&
        out_append(core, &len, "Transfer-Encoding: chunked\r\n", 28) < 0) {
        return -1;
    }
    if (!r->has_date) {
        const char *d = upy_date_header();
        if (out_append(core, &len, d, strlen(d)) < 0)
            return -1;
    }
    if (core->srv->stopping) {
        r->keep_alive = 0;
    }
    if (pr->connection_header) {
        if (!r->keep_alive) {
            r->keep_alive = 0;
            if (out_append(core, &len, "Connection: close\r\n", 19) < 0)
                return -1;
        }
        else if (r->minor_version == 0 &&
                 out_append(core, &len, "Connection: keep-alive\r\n", 24) < 0) {
            return -1;
        }
    }
    if (out_append(core, &len, "\r\n", 2) < 0) {
        return -1;
    }
    return (ssize_t)len;
}

/* ------------------------------------------------------------------ */
/* Non-blocking output with a pending queue                            */
/* ------------------------------------------------------------------ */

void
upy_pending_free(upy_pending *p)
{
    Py_CLEAR(p->hold);
    free(p->copy);
    p->copy = NULL;
    p->copy_cap = 0;
    p->cnt = 0;
}

/* Drop n written bytes from the front of iov[0..*cnt). */
static struct iovec *
iov_advance(struct iovec *iov, int *cnt, size_t n)
{
    while (*cnt > 0 && n >= iov->iov_len) {
        n -= iov->iov_len;
        iov++;
        (*cnt)--;
    }
    if (*cnt > 0) {
        iov->iov_base = (char *)iov->iov_base + n;
        iov->iov_len -= n;
    }
    return iov;
}

/* sendmsg without blocking: bytes written, 0 when the socket is full,
   -1 when the connection is broken. */
static ssize_t
send_nb(int fd, struct iovec *iov, int cnt)
{
    struct msghdr msg;
    ssize_t n;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)cnt;
    do {
        n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
    return n;
}

/* Send iov now; what the socket does not take is queued in c->pend (the
   entry pointing at `data` by reference to `hold`, the others copied).
   Nothing may be pending on entry.  Returns 0, or -1 (broken). */
static int
send_or_queue(upy_conn *c, struct iovec *iov, int cnt, PyObject *hold,
              const char *data, size_t data_len)
{
    upy_pending *p = &c->pend;
    size_t need = 0, off = 0;
    ssize_t n = send_nb(c->fd, iov, cnt);
    if (n < 0) {
        return -1;
    }
    iov = iov_advance(iov, &cnt, (size_t)n);
    if (cnt == 0) {
        return 0;
    }
#define UPY_IS_DATA(v)                                                       \
    (data != NULL && (const char *)(v).iov_base >= data &&                   \
     (const char *)(v).iov_base < data + data_len)
    for (int i = 0; i < cnt; i++) {
        if (!UPY_IS_DATA(iov[i]))
            need += iov[i].iov_len;
    }
    if (p->copy_cap < need) {
        char *nb = realloc(p->copy, need);
        if (nb == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        p->copy = nb;
        p->copy_cap = need;
    }
    for (int i = 0; i < cnt; i++) {
        p->iov[i] = iov[i];
        if (!UPY_IS_DATA(iov[i])) {
            memcpy(p->copy + off, iov[i].iov_base, iov[i].iov_len);
            p->iov[i].iov_base = p->copy + off;
            off += iov[i].iov_len;
        }
    }
#undef UPY_IS_DATA
    p->cnt = cnt;
    Py_XSETREF(p->hold, Py_XNewRef(hold));
    return 0;
}

int
upy_send_or_queue(upy_conn *c, struct iovec *iov, int cnt, PyObject *hold,
                  const char *data, size_t data_len)
{
    return send_or_queue(c, iov, cnt, hold, data, data_len);
}

int
upy_out_send(upy_conn *c, struct iovec *iov, int cnt, PyObject *hold,
             const char *data, size_t data_len, int last)
{
    const upy_protocol *pr = UPY_CONN_PROTO(c);
    if (pr->frame != NULL)
        return pr->frame(c, iov, cnt, hold, data, data_len, last);
    return send_or_queue(c, iov, cnt, hold, data, data_len);
}

/* The bytes that end the response on c in its protocol (FastCGI's
   END_REQUEST), sent or queued once.  0, or -1 (broken). */
static int
send_end(upy_conn *c)
{
    const upy_protocol *pr = UPY_CONN_PROTO(c);
    char out[32];
    struct iovec iov;
    if (pr->end == NULL || c->resp.end_sent)
        return 0;
    c->resp.end_sent = 1;
    iov.iov_base = out;
    iov.iov_len = pr->end(c, out);
    return send_or_queue(c, &iov, 1, NULL, NULL, 0);
}

/* Write what is pending: 1 when nothing is left, 0 when the socket is
   full, -1 when the connection is broken. */
static int
flush_pending(upy_conn *c)
{
    upy_pending *p = &c->pend;
    ssize_t n;
    struct iovec *iov;
    int cnt;
    if (p->cnt == 0) {
        return 1;
    }
    n = send_nb(c->fd, p->iov, p->cnt);
    if (n < 0) {
        return -1;
    }
    cnt = p->cnt;
    iov = iov_advance(p->iov, &cnt, (size_t)n);
    if (cnt == 0) {
        p->cnt = 0;
        Py_CLEAR(p->hold);
        return 1;
    }
    memmove(p->iov, iov, (size_t)cnt * sizeof *iov);
    p->cnt = cnt;
    return 0;
}

/* Wait (GIL released, up to socket-timeout per stall) until nothing is
   pending: the imperative write() must return only once data is sent. */
static int
flush_blocking(upy_server *srv, upy_conn *c)
{
    for (;;) {
        struct pollfd pfd = {c->fd, POLLOUT, 0};
        int pr, f = flush_pending(c);
        if (f != 0) {
            return f > 0 ? 0 : -1;
        }
        if (srv->wait_write != NULL) {
            /* an external loop (gevent): wait in it, not in poll(2),
               which would stop every other greenlet */
            PyObject *ok = PyObject_CallFunction(
                srv->wait_write, "id", c->fd, c->lst->socket_timeout);
            int t;
            if (ok == NULL) {
                return -1;
            }
            t = PyObject_IsTrue(ok);
            Py_DECREF(ok);
            if (t <= 0) {
                return -1;
            }
            continue;
        }
        Py_BEGIN_ALLOW_THREADS
        pr = poll(&pfd, 1, (int)(c->lst->socket_timeout * 1000.0));
        Py_END_ALLOW_THREADS
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0 || (pfd.revents & (POLLERR | POLLHUP)))
            return -1;
    }
}

/* Send (or queue) the head if not yet sent and n body bytes of `hold`
   with the chosen framing.  Returns 0, or -1 (broken, or an exception is
   set). */
static int
send_chunk(upy_core *core, upy_response *r, const char *p, size_t n,
           PyObject *hold)
{
    struct iovec iov[4];
    int cnt = 0;
    char size_line[32];

    if (r->failed) {
        return -1;
    }
    if (!r->headers_sent) {
        ssize_t hlen = build_head(core, r, r->known_length);
        if (hlen < 0) {
            r->failed = 1; /* or pump() would retry it forever */
            return -1;
        }
        iov[cnt].iov_base = core->out;
        iov[cnt++].iov_len = (size_t)hlen;
        r->headers_sent = 1;
    }
    if (r->no_body) {
        n = 0;
    }
    if (r->content_length >= 0 &&
        (uint64_t)r->content_length - r->sent < n) {
        upy_log(core->srv, 30,
                "the app sent more than its Content-Length %lld; "
                "the excess was not sent", (long long)r->content_length);
        n = (size_t)((uint64_t)r->content_length - r->sent);
    }
    if (n > 0) {
        if (r->chunked) {
            int sl = snprintf(size_line, sizeof size_line, "%zx\r\n", n);
            iov[cnt].iov_base = size_line;
            iov[cnt++].iov_len = (size_t)sl;
        }
        iov[cnt].iov_base = (void *)p;
        iov[cnt++].iov_len = n;
        if (r->chunked) {
            iov[cnt].iov_base = "\r\n";
            iov[cnt++].iov_len = 2;
        }
    }
    if (cnt == 0) {
        return 0;
    }
    if (upy_out_send(r->conn, iov, cnt, hold, n > 0 ? p : NULL, n,
                     r->no_body || (r->content_length >= 0 &&
                                    r->sent + n ==
                                        (uint64_t)r->content_length)) < 0) {
        r->failed = 1;
        return -1;
    }
    r->sent += n;
    return 0;
}

/* The imperative write() (PEP 3333): sent before it returns.  data (bytes)
   is what a stalled send leaves queued by reference: c->pend holds it, as
   the caller may drop it once write() returned or raised. */
static int
send_body(upy_core *core, upy_response *r, PyObject *data)
{
    size_t n = (size_t)PyBytes_GET_SIZE(data);
    if (n == 0 && r->headers_sent) {
        return 0;
    }
    if (flush_blocking(core->srv, r->conn) < 0 ||
        send_chunk(core, r, PyBytes_AS_STRING(data), n, data) < 0 ||
        flush_blocking(core->srv, r->conn) < 0) {
        r->failed = 1;
        return -1;
    }
    return 0;
}

/* Prepare sendfile(2) of a file_wrapper's regular file.  Returns 1 when
   set up (phase SENDFILE, head sent or queued), 0 when the object is not
   a regular file with a usable fileno() (the caller iterates it instead),
   -1 on failure. */
static int
setup_sendfile(upy_core *core, upy_response *r, upy_file_wrapper *fw)
{
    PyObject *o;
    int fd;
    struct stat sb;
    off_t offset;
    uint64_t remaining;
    upy_state *st = core->st;

    if (r->chunked || r->headers_sent) {
        return 0; /* write() went first: iterate */
    }
    if (optional_attr(fw->filelike, st->s_fileno, &o) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (o == NULL)
        return 0;
    {
        PyObject *v = PyObject_CallNoArgs(o);
        Py_DECREF(o);
        if (v == NULL) {
            PyErr_Clear(); /* io.BytesIO raises UnsupportedOperation */
            return 0;
        }
        fd = PyLong_AsLong(v);
        Py_DECREF(v);
        if (fd < 0) {
            PyErr_Clear();
            return 0;
        }
    }
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        return 0;
    }
    /* The Python file object's position, which its buffer may hold ahead
       of the fd's offset. */
    offset = -1;
    if (optional_attr(fw->filelike, st->s_tell, &o) >= 0 && o != NULL) {
        PyObject *v = PyObject_CallNoArgs(o);
        Py_DECREF(o);
        if (v != NULL) {
            offset = (off_t)PyLong_AsLongLong(v);
            Py_DECREF(v);
        }
    }
    if (PyErr_Occurred() || offset < 0) {
        PyErr_Clear();
        offset = lseek(fd, 0, SEEK_CUR);
        if (offset < 0)
            return 0;
    }
    remaining = sb.st_size > offset ? (uint64_t)(sb.st_size - offset) : 0;
    if (r->content_length >= 0 && (uint64_t)r->content_length < remaining) {
        remaining = (uint64_t)r->content_length;
    }
    /* The file's size is the body length when the app gave none. */
    r->known_length = (int64_t)remaining;
    if (send_chunk(core, r, NULL, 0, NULL) < 0) {
        return -1;
    }
    r->sf_fd = fd;
    r->sf_offset = offset;
    r->sf_remaining = r->no_body ? 0 : remaining;
    r->phase = UPY_PHASE_SENDFILE;
    return 1;
}

/* Send the file part r->sf_fd [sf_offset, +sf_remaining) until done (1),
   the socket is full (0) or failure (-1): sendfile(2) on Linux, else
   pread(2) and send(2) in pieces (what is not taken is read again next
   time: no buffer outlives the call). */
static int
pump_sendfile(upy_response *r)
{
    upy_conn *c = r->conn;
    if (UPY_CONN_PROTO(c)->frame != NULL) {
        /* records around the file's bytes (FastCGI): read and send them
           in pieces through the framing; a piece the socket did not take
           is queued in c->pend */
        char piece[32768];
        for (;;) {
            if (c->pend.cnt > 0) {
                int f = flush_pending(c);
                if (f <= 0)
                    return f;
            }
            if (r->sf_remaining == 0)
                return 1;
            {
                size_t want = r->sf_remaining < sizeof piece
                                  ? (size_t)r->sf_remaining : sizeof piece;
                ssize_t got = pread(r->sf_fd, piece, want, r->sf_offset);
                struct iovec iov;
                if (got < 0 && errno == EINTR)
                    continue;
                if (got < 0)
                    return -1;
                if (got == 0)
                    return 1; /* the file shrank: Content-Length unmet */
                iov.iov_base = piece;
                iov.iov_len = (size_t)got;
                if (upy_out_send(c, &iov, 1, NULL, NULL, 0,
                                 (uint64_t)got == r->sf_remaining) < 0)
                    return -1;
                r->sf_offset += (off_t)got;
                r->sf_remaining -= (uint64_t)got;
                r->sent += (uint64_t)got;
            }
        }
    }
#if UPY_HAVE_SENDFILE
    while (r->sf_remaining > 0) {
        ssize_t n = sendfile(r->conn->fd, r->sf_fd, &r->sf_offset,
                             r->sf_remaining > (1u << 30)
                                 ? (1u << 30) : (size_t)r->sf_remaining);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            return -1;
        }
        if (n == 0) {
            break; /* the file shrank: Content-Length will not be met */
        }
        r->sf_remaining -= (uint64_t)n;
        r->sent += (uint64_t)n;
    }
    return 1;
#else
    char piece[16384];
    while (r->sf_remaining > 0) {
        size_t want = r->sf_remaining < sizeof piece ? (size_t)r->sf_remaining
                                                     : sizeof piece;
        ssize_t got = pread(r->sf_fd, piece, want, r->sf_offset);
        ssize_t n;
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (got == 0) {
            break; /* the file shrank: Content-Length will not be met */
        }
        do {
            n = send(r->conn->fd, piece, (size_t)got,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        r->sf_offset += (off_t)n;
        r->sf_remaining -= (uint64_t)n;
        r->sent += (uint64_t)n;
    }
    return 1;
#endif
}

/* Sum of the lengths of a list/tuple of bytes, or -1 when it is anything
   else: lets the server send Content-Length for the common
   `return [body]`. */
static int64_t
sequence_length(PyObject *result)
{
    PyObject **items;
    Py_ssize_t n;
    int64_t total = 0;
    if (PyList_CheckExact(result)) {
        items = ((PyListObject *)result)->ob_item;
        n = PyList_GET_SIZE(result);
    }
    else if (PyTuple_CheckExact(result)) {
        items = ((PyTupleObject *)result)->ob_item;
        n = PyTuple_GET_SIZE(result);
    }
    else {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_CheckExact(items[i]))
            return -1;
        total += PyBytes_GET_SIZE(items[i]);
    }
    return total;
}

/* A str item of environ as UTF-8, or "-" (borrowed from the str). */
static const char *
env_text(PyObject *environ, PyObject *key, Py_ssize_t *len)
{
    PyObject *o = PyDict_GetItemWithError(environ, key);
    const char *t;
    if (o == NULL || !PyUnicode_Check(o)) {
        PyErr_Clear();
        *len = 1;
        return "-";
    }
    t = PyUnicode_AsUTF8AndSize(o, len);
    if (t == NULL || *len == 0) {
        PyErr_Clear();
        *len = 1;
        return "-";
    }
    return t;
}

/* Append to a fixed line buffer, truncating. */
typedef struct {
    char *p;
    size_t len, cap;
} upy_line;

static void
line_put(upy_line *l, const char *s, size_t n)
{
    if (n > l->cap - l->len)
        n = l->cap - l->len;
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void
line_fmt(upy_line *l, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        line_put(l, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* The client address for the log: REMOTE_ADDR, or with
   log-x-forwarded-for the first X-Forwarded-For entry. */
static const char *
log_addr(upy_server *srv, PyObject *environ, Py_ssize_t *len)
{
    const char *a;
    if (srv->log_xff) {
        a = env_text(environ, srv->st->k_HTTP_X_FORWARDED_FOR, len);
        if (*a != '-') {
            const char *comma = memchr(a, ',', (size_t)*len);
            if (comma != NULL)
                *len = comma - a;
            return a;
        }
    }
    return env_text(environ, srv->st->k_REMOTE_ADDR, len);
}

/* Conditional logging with disable-logging, as uWSGI's log_request():
   log_filter's low byte is UPY_LOG_4XX | UPY_LOG_5XX | UPY_LOG_ZERO, its
   upper bits log-slow's threshold in milliseconds (uwsgipy/log.py builds
   it).  These two live here, with the access log: only log.py uses them. */
#define UPY_LOG_ZERO 4
#define UPY_LOG_SLOW_SHIFT 8


static int
log_wanted(upy_server *srv, int status, uint64_t sent, double secs)
{
    int flags = srv->log_filter & 0xff;
    unsigned slow_ms = (unsigned)srv->log_filter >> UPY_LOG_SLOW_SHIFT;
    if (srv->access_log_fd < 0)
        return 0;
    if (srv->log_filter == 0)
        return 1;
    return ((flags & UPY_LOG_4XX) && status >= 400 && status < 500) ||
           ((flags & UPY_LOG_5XX) && status >= 500) ||
           ((flags & UPY_LOG_ZERO) && sent == 0) ||
           (slow_ms && secs * 1000.0 >= (double)slow_ms);
}

/* The route matcher (route/route-uri, uwsgipy/routes.py) is the log
   format's first item when routes are configured: called with the
   environ, a true result logs the request.  Returns 1 log, 0 skip. */
static int
log_route(upy_server *srv, PyObject *matcher, PyObject *environ)
{
    PyObject *res = PyObject_CallOneArg(matcher, environ);
    int yes;
    if (res == NULL) {
        upy_log_exception(srv, "error in the route matcher");
        return 1;
    }
    yes = PyObject_IsTrue(res);
    Py_DECREF(res);
    if (yes < 0) {
        upy_log_exception(srv, "error in the route matcher");
        return 1;
    }
    return yes;
}

/* ${var} codes of a compiled log-req-encoder template (uwsgipy/log.py
   has the same values): "\0" then the code; UPY_TPL_STRFTIME is followed
   by the format and a closing "\0". */
#define UPY_TPL_MSG 1
#define UPY_TPL_MSGNL 2
#define UPY_TPL_UNIX 3
#define UPY_TPL_MICROS 4
#define UPY_TPL_MILLIS 5
#define UPY_TPL_STRFTIME 6

/* A growing line: a stack buffer first, then PyMem_Raw (no GIL needed).
   After an allocation failure the line is dropped (failed set). */
typedef struct {
    char *p;
    size_t len, cap;
    int heap, failed, fields;
} upy_jline;
static int jl_reserve(upy_jline *l, size_t n);
static void jl_raw(upy_jline *l, const char *s, size_t n);
static void jl_escaped(upy_jline *l, const char *s, size_t n);
static void jl_write(upy_server *srv, upy_jline *l);

/* Write a finished plain line (no newline yet): as it is, or through
   uWSGI's format / json template encoder (log-req-encoder). */
static void
log_emit(upy_server *srv, upy_line *pl)
{
    PyObject *tpl = srv->log_template;
    if (tpl == NULL) {
        pl->p[pl->len++] = '\n';
        (void)!write(srv->access_log_fd, pl->p, pl->len);
        return;
    }
    {
        char buf[8192];
        upy_jline l = {buf, 0, sizeof buf, 0, 0, 0};
        const char *t = PyBytes_AS_STRING(tpl); /* bytes: immutable, no GIL */
        size_t n = (size_t)PyBytes_GET_SIZE(tpl), i = 0;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        while (i < n) {
            const char *z = memchr(t + i, '\0', n - i);
            size_t lit = z ? (size_t)(z - (t + i)) : n - i;
            int code;
            jl_raw(&l, t + i, lit);
            i += lit;
            if (i + 1 >= n)
                break;
            code = (unsigned char)t[i + 1];
            i += 2;
            switch (code) {
            case UPY_TPL_MSG:
            case UPY_TPL_MSGNL:
                if (srv->log_template_json)
                    jl_escaped(&l, pl->p, pl->len);
                else
                    jl_raw(&l, pl->p, pl->len);
                if (code == UPY_TPL_MSGNL)
                    jl_raw(&l, srv->log_template_json ? "\\n" : "\n",
                           srv->log_template_json ? 2 : 1);
                break;
            case UPY_TPL_UNIX:
            case UPY_TPL_MICROS:
            case UPY_TPL_MILLIS: {
                char num[32];
                long long v = code == UPY_TPL_UNIX ? (long long)ts.tv_sec
                              : code == UPY_TPL_MILLIS
                                  ? (long long)ts.tv_sec * 1000 +
                                        ts.tv_nsec / 1000000
                                  : (long long)ts.tv_sec * 1000000 +
                                        ts.tv_nsec / 1000;
                int k = snprintf(num, sizeof num, "%lld", v);
                if (k > 0)
                    jl_raw(&l, num, (size_t)k);
                break;
            }
            case UPY_TPL_STRFTIME: {
                /* the format up to the closing NUL; 64 bytes of result, as
                   uWSGI's buffer */
                const char *fz = memchr(t + i, '\0', n - i);
                char fmt[256], out[64];
                size_t fl = fz ? (size_t)(fz - (t + i)) : n - i, k;
                struct tm tm;
                time_t now = ts.tv_sec;
                if (fl >= sizeof fmt)
                    fl = sizeof fmt - 1;
                memcpy(fmt, t + i, fl);
                fmt[fl] = '\0';
                i += fl + (fz ? 1 : 0);
                k = localtime_r(&now, &tm) ? strftime(out, sizeof out, fmt, &tm)
                                           : 0;
                if (srv->log_template_json)
                    jl_escaped(&l, out, k);
                else
                    jl_raw(&l, out, k);
                break;
            }
            default:
                break;
            }
        }
        /* uWSGI adds the newline with a further `nl` encoder; here every
           line ends with one */
        if (l.len == 0 || l.p[l.len - 1] != '\n')
            jl_raw(&l, "\n", 1);
        jl_write(srv, &l);
    }
}

/* ------------------------------------------------------------------ */
/* The JSON access line (log-req-encoder = json)                       */
/* ------------------------------------------------------------------ */

/* A string field's value is cut at this many bytes (before escaping), so
   a line stays bounded whatever the client sends; 64 KiB is more than any
   header a parser here accepts (buffer-size). */
#define UPY_JSON_FIELD_MAX 65536

static int
jl_reserve(upy_jline *l, size_t n)
{
    size_t cap;
    char *np;
    if (l->failed)
        return -1;
    if (n <= l->cap - l->len)
        return 0;
    if (n > ((size_t)1 << 26) - l->len) {
        l->failed = 1;   /* 64 MiB: never, with the field cap */
        return -1;
    }
    cap = l->cap * 2 > l->len + n ? l->cap * 2 : l->len + n + 4096;
    np = l->heap ? PyMem_RawRealloc(l->p, cap) : PyMem_RawMalloc(cap);
    if (np == NULL) {
        l->failed = 1;
        return -1;
    }
    if (!l->heap)
        memcpy(np, l->p, l->len);
    l->p = np;
    l->cap = cap;
    l->heap = 1;
    return 0;
}

static void
jl_raw(upy_jline *l, const char *s, size_t n)
{
    if (jl_reserve(l, n) < 0)
        return;
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

/* ,"name": (name is a known-safe field name, or escaped) */
static void
jl_key(upy_jline *l, const char *name, size_t n)
{
    if (l->fields++)
        jl_raw(l, ",", 1);
    jl_raw(l, "\"", 1);
    if (jl_reserve(l, UPY_JSON_ESCAPE_MAX(n)) == 0)
        l->len += upy_json_escape(l->p + l->len, name, n);
    jl_raw(l, "\":", 2);
}

static void
jl_escaped(upy_jline *l, const char *s, size_t n)
{
    if (n > UPY_JSON_FIELD_MAX)
        n = UPY_JSON_FIELD_MAX;
    if (jl_reserve(l, UPY_JSON_ESCAPE_MAX(n)) == 0)
        l->len += upy_json_escape(l->p + l->len, s, n);
}

static void
jl_write(upy_server *srv, upy_jline *l)
{
    if (!l->failed)
        (void)!write(srv->access_log_fd, l->p, l->len);
    if (l->heap)
        PyMem_RawFree(l->p);
}

static void
jl_str(upy_jline *l, const char *name, const char *s, size_t n)
{
    if (n > UPY_JSON_FIELD_MAX)
        n = UPY_JSON_FIELD_MAX;
    jl_key(l, name, strlen(name));
    jl_raw(l, "\"", 1);
    if (jl_reserve(l, UPY_JSON_ESCAPE_MAX(n)) == 0)
        l->len += upy_json_escape(l->p + l->len, s, n);
    jl_raw(l, "\"", 1);
}

static void
jl_fmt(upy_jline *l, const char *name, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n <= 0 || (size_t)n >= sizeof tmp)
        return;
    jl_key(l, name, strlen(name));
    jl_raw(l, tmp, (size_t)n);
}

/* "time": the request's start, UTC, ISO 8601 with milliseconds
   (RFC 3339: 2026-12-02T08:55:01.123Z). */
static void
jl_time(upy_jline *l, double secs)
{
    struct timespec ts;
    struct tm tm;
    char tb[40];
    double at;
    time_t whole;
    clock_gettime(CLOCK_REALTIME, &ts);
    at = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - secs;
    whole = (time_t)at;
    if (gmtime_r(&whole, &tm) == NULL)
        return;
    {
        size_t n = strftime(tb, sizeof tb, "%Y-%m-%dT%H:%M:%S", &tm);
        int ms = (int)((at - (double)whole) * 1000.0);
        if (ms > 999)
            ms = 999;
        if (ms < 0)
            ms = 0;
        if (n == 0)
            return;
        snprintf(tb + n, sizeof tb - n, ".%03dZ", ms);
    }
    jl_str(l, "time", tb, strlen(tb));
}

static void
jl_end(upy_server *srv, upy_jline *l)
{
    if (srv->log_json_extra != NULL &&
        PyBytes_GET_SIZE(srv->log_json_extra) > 0) {
        /* '"k":"v",' pieces: the last comma is dropped */
        if (l->fields++)
            jl_raw(l, ",", 1);
        jl_raw(l, PyBytes_AS_STRING(srv->log_json_extra),
               (size_t)PyBytes_GET_SIZE(srv->log_json_extra) - 1);
    }
    jl_raw(l, "}\n", 2);
    jl_write(srv, l);
}

/* An environ str's bytes: a latin-1 str (what the server put there, PEP
   3333) gives back the bytes received, so the JSON line shows the UTF-8
   the client sent; any other str its UTF-8.  NULL when absent or not a
   str.  Borrowed from the str. */
static const char *
env_bytes(PyObject *environ, PyObject *key, Py_ssize_t *len)
{
    PyObject *o = PyDict_GetItemWithError(environ, key);
    const char *t;
    if (o == NULL || !PyUnicode_Check(o)) {
        PyErr_Clear();
        return NULL;
    }
    if (PyUnicode_KIND(o) == PyUnicode_1BYTE_KIND) {
        *len = PyUnicode_GET_LENGTH(o);
        return (const char *)PyUnicode_1BYTE_DATA(o);
    }
    t = PyUnicode_AsUTF8AndSize(o, len);
    if (t == NULL)
        PyErr_Clear();
    return t;
}

/* A string field from the environ; absent: null. */
static void
jl_env(upy_jline *l, const char *name, PyObject *environ, PyObject *key)
{
    Py_ssize_t n;
    const char *t = env_bytes(environ, key, &n);
    if (t == NULL) {
        jl_key(l, name, strlen(name));
        jl_raw(l, "null", 4);
        return;
    }
    jl_str(l, name, t, (size_t)n);
}

/* The client address, as log_addr(), in bytes. */
static void
jl_addr(upy_jline *l, const char *name, upy_server *srv, PyObject *environ)
{
    Py_ssize_t n;
    const char *a;
    if (srv->log_xff) {
        a = env_bytes(environ, srv->st->k_HTTP_X_FORWARDED_FOR, &n);
        if (a != NULL && n > 0) {
            const char *comma = memchr(a, ',', (size_t)n);
            jl_str(l, name, a, comma ? (size_t)(comma - a) : (size_t)n);
            return;
        }
    }
    jl_env(l, name, environ, srv->st->k_REMOTE_ADDR);
}

/* The CONTENT_LENGTH as a number (0 when absent or not digits). */
static unsigned long long
env_cl(PyObject *environ, PyObject *key)
{
    Py_ssize_t n;
    const char *t = env_bytes(environ, key, &n);
    unsigned long long v = 0;
    if (t == NULL)
        return 0;
    for (Py_ssize_t i = 0; i < n && i < 19; i++) {
        if (t[i] < '0' || t[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(t[i] - '0');
    }
    return v;
}

static void
access_log_json(upy_core *core, upy_response *r, PyObject *environ,
                double secs, Py_ssize_t first, Py_ssize_t count)
{
    upy_server *srv = core->srv;
    upy_state *st = core->st;
    char buf[8192];
    upy_jline l = {buf, 0, sizeof buf, 0, 0, 0};
    int status = r->status_code ? r->status_code : 500;
    jl_raw(&l, "{", 1);
    if (count == 0) {
        /* the default field set */
        Py_ssize_t n;
        const char *t;
        jl_time(&l, secs);
        jl_addr(&l, "addr", srv, environ);
        jl_env(&l, "method", environ, st->k_REQUEST_METHOD);
        t = env_bytes(environ, st->k_REQUEST_URI, &n);
        if (t != NULL)
            jl_str(&l, "uri", t, (size_t)n);
        else
            jl_env(&l, "uri", environ, st->k_PATH_INFO);
        jl_env(&l, "proto", environ, st->k_SERVER_PROTOCOL);
        jl_fmt(&l, "status", "%d", status);
        jl_fmt(&l, "size", "%llu", (unsigned long long)r->sent);
        jl_fmt(&l, "msecs", "%.3f", secs * 1000.0);
        jl_fmt(&l, "micros", "%llu", (unsigned long long)(secs * 1e6));
        jl_fmt(&l, "worker", "%d", srv->worker_id);
        jl_fmt(&l, "pid", "%ld", (long)getpid());
        if (srv->rid_env != NULL) {
            t = env_bytes(environ, srv->rid_env, &n);
            if (t != NULL)
                jl_str(&l, "request_id", t, (size_t)n);
        }
        if ((t = env_bytes(environ, st->k_HTTP_HOST, &n)) != NULL)
            jl_str(&l, "host", t, (size_t)n);
        if ((t = env_bytes(environ, st->k_HTTP_USER_AGENT, &n)) != NULL)
            jl_str(&l, "uagent", t, (size_t)n);
        if ((t = env_bytes(environ, st->k_HTTP_REFERER, &n)) != NULL)
            jl_str(&l, "referer", t, (size_t)n);
        jl_end(srv, &l);
        return;
    }
    /* log-format: each variable a field, named by the str before it
       (uwsgipy/log.py compiles it so); text between variables is not
       logged */
    for (Py_ssize_t i = first; i + 1 < count; i += 2) {
        PyObject *nm = PyTuple_GET_ITEM(srv->log_format, i);
        PyObject *item = PyTuple_GET_ITEM(srv->log_format, i + 1);
        const char *name;
        long var;
        if (!PyUnicode_Check(nm) || (name = PyUnicode_AsUTF8(nm)) == NULL) {
            PyErr_Clear();
            continue;
        }
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 1) {
            Py_ssize_t n;
            const char *t = env_bytes(environ, PyTuple_GET_ITEM(item, 0), &n);
            jl_str(&l, name, t ? t : "", t ? (size_t)n : 0);
            continue;
        }
        var = PyLong_AsLong(item);
        switch (var) {
        case UPY_LV_ADDR:
            jl_addr(&l, name, srv, environ);
            break;
        case UPY_LV_METHOD:
            jl_env(&l, name, environ, st->k_REQUEST_METHOD);
            break;
        case UPY_LV_URI:
            jl_env(&l, name, environ, st->k_REQUEST_URI);
            break;
        case UPY_LV_PROTO:
            jl_env(&l, name, environ, st->k_SERVER_PROTOCOL);
            break;
        case UPY_LV_STATUS:
            jl_fmt(&l, name, "%d", status);
            break;
        case UPY_LV_SIZE:
            jl_fmt(&l, name, "%llu", (unsigned long long)r->sent);
            break;
        case UPY_LV_MSECS:
            jl_fmt(&l, name, "%llu", (unsigned long long)(secs * 1e3));
            break;
        case UPY_LV_MICROS:
            jl_fmt(&l, name, "%llu", (unsigned long long)(secs * 1e6));
            break;
        case UPY_LV_TIME:
        case UPY_LV_EPOCH: {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            jl_fmt(&l, name, "%lld",
                   (long long)(var == UPY_LV_TIME ? ts.tv_sec - (time_t)secs
                                                  : ts.tv_sec));
            break;
        }
        case UPY_LV_CTIME:
        case UPY_LV_LTIME: {
            char tb[64];
            struct tm tm;
            time_t at = time(NULL) - (time_t)secs;
            size_t tl = 0;
            if (var == UPY_LV_CTIME) {
                if (ctime_r(&at, tb) != NULL) {
                    tl = strlen(tb);
                    if (tl && tb[tl - 1] == '\n')
                        tl--;
                }
            }
            else if (localtime_r(&at, &tm) != NULL) {
                tl = strftime(tb, sizeof tb, "%d/%b/%Y:%H:%M:%S %z", &tm);
            }
            jl_str(&l, name, tb, tl);
            break;
        }
        case UPY_LV_UAGENT:
            jl_env(&l, name, environ, st->k_HTTP_USER_AGENT);
            break;
        case UPY_LV_REFERER:
            jl_env(&l, name, environ, st->k_HTTP_REFERER);
            break;
        case UPY_LV_HOST:
            jl_env(&l, name, environ, st->k_HTTP_HOST);
            break;
        case UPY_LV_PID:
            jl_fmt(&l, name, "%ld", (long)getpid());
            break;
        case UPY_LV_WID:
            jl_fmt(&l, name, "%d", srv->worker_id);
            break;
        case UPY_LV_SECS:
            jl_fmt(&l, name, "%f", secs);
            break;
        case UPY_LV_CL:
            jl_fmt(&l, name, "%llu", env_cl(environ, st->k_CONTENT_LENGTH));
            break;
        case UPY_LV_REQUEST_ID:
            if (srv->rid_env != NULL)
                jl_env(&l, name, environ, srv->rid_env);
            else {
                jl_key(&l, name, strlen(name));
                jl_raw(&l, "null", 4);
            }
            break;
        default:
            jl_key(&l, name, strlen(name));
            jl_raw(&l, "null", 4);
        }
    }
    PyErr_Clear();
    jl_end(srv, &l);
}

static void
access_log(upy_core *core, upy_conn *c, upy_response *r, PyObject *environ,
           double started)
{
    upy_server *srv = core->srv;
    upy_state *st = core->st;
    char buf[4096];
    upy_line l = {buf, 0, sizeof buf - 1};
    double secs;
    int status = r->status_code ? r->status_code : 500;
    Py_ssize_t n;
    const char *t;

    Py_ssize_t first = 0, count = 0;
    int micros = 0;

    if (srv->access_log_fd < 0)
        return;   /* disable-logging: not even the clock */
    secs = upy_now() - started;
    if (!log_wanted(srv, status, r->sent, secs)) {
        return;
    }
    if (srv->log_format != NULL) {
        PyObject *item;
        count = PyTuple_GET_SIZE(srv->log_format);
        item = count ? PyTuple_GET_ITEM(srv->log_format, 0) : NULL;
        if (item != NULL && PyCallable_Check(item)) {
            if (!log_route(srv, item, environ))
                return;
            first = 1;
        }
        if (count - first == 1) {
            item = PyTuple_GET_ITEM(srv->log_format, first);
            if (PyLong_Check(item)) {
                long v = PyLong_AsLong(item);
                if (v == UPY_LV_DEFAULT || v == UPY_LV_DEFAULT_MICROS) {
                    micros = v == UPY_LV_DEFAULT_MICROS;
                    count = 0;   /* the default line */
                }
            }
        }
    }
    if (srv->log_json) {
        access_log_json(core, r, environ, secs, first, count);
        return;
    }
    if (count == 0) {
        /* 127.0.0.1 "GET /path?q HTTP/1.1" 200 13 0.120ms
           (log-micros: ... 200 13 120us) */
        t = log_addr(srv, environ, &n);
        line_put(&l, t, (size_t)n);
        line_put(&l, " \"", 2);
        t = env_text(environ, st->k_REQUEST_METHOD, &n);
        line_put(&l, t, (size_t)(n > 32 ? 32 : n));
        line_put(&l, " ", 1);
        t = env_text(environ, st->k_REQUEST_URI, &n);
        if (*t == '-')
            t = env_text(environ, st->k_PATH_INFO, &n);
        line_put(&l, t, (size_t)(n > 2048 ? 2048 : n));
        line_put(&l, " ", 1);
        t = env_text(environ, st->k_SERVER_PROTOCOL, &n);
        line_put(&l, t, (size_t)(n > 16 ? 16 : n));
        if (micros)
            line_fmt(&l, "\" %d %llu %lluus", status,
                     (unsigned long long)r->sent, (unsigned long long)(secs * 1e6));
        else
            line_fmt(&l, "\" %d %llu %.3fms", status,
                     (unsigned long long)r->sent, secs * 1000.0);
    }
    else {
        for (Py_ssize_t i = first; i < count; i++) {
            PyObject *item = PyTuple_GET_ITEM(srv->log_format, i);
            long var;
            if (PyUnicode_Check(item)) {
                t = PyUnicode_AsUTF8AndSize(item, &n);
                if (t != NULL)
                    line_put(&l, t, (size_t)n);
                continue;
            }
            if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 1) {
                /* %(var.NAME): the environ's NAME, empty when absent, as
                   uWSGI */
                PyObject *v = PyDict_GetItemWithError(environ,
                                                      PyTuple_GET_ITEM(item, 0));
                if (v != NULL && PyUnicode_Check(v)) {
                    t = PyUnicode_AsUTF8AndSize(v, &n);
                    if (t != NULL)
                        line_put(&l, t, (size_t)n);
                }
                PyErr_Clear();
                continue;
            }
            var = PyLong_AsLong(item);
            switch (var) {
            case UPY_LV_ADDR:
                t = log_addr(srv, environ, &n);
                line_put(&l, t, (size_t)n);
                break;
            case UPY_LV_METHOD:
                t = env_text(environ, st->k_REQUEST_METHOD, &n);
                line_put(&l, t, (size_t)n);
                break;
            case UPY_LV_URI:
                t = env_text(environ, st->k_REQUEST_URI, &n);
                line_put(&l, t, (size_t)n);
                break;
            case UPY_LV_PROTO:
                t = env_text(environ, st->k_SERVER_PROTOCOL, &n);
                line_put(&l, t, (size_t)n);
                break;
            case UPY_LV_STATUS:
                line_fmt(&l, "%d", status);
                break;
            case UPY_LV_SIZE:
                line_fmt(&l, "%llu", (unsigned long long)r->sent);
                break;
            case UPY_LV_MSECS:
                line_fmt(&l, "%llu", (unsigned long long)(secs * 1e3));
                break;
            case UPY_LV_MICROS:
                line_fmt(&l, "%llu", (unsigned long long)(secs * 1e6));
                break;
            case UPY_LV_TIME:
                line_fmt(&l, "%lld", (long long)time(NULL));
                break;
            case UPY_LV_CTIME: {
                char tb[32];
                time_t now = time(NULL);
                if (ctime_r(&now, tb) != NULL) {
                    size_t tl = strlen(tb);
                    if (tl && tb[tl - 1] == '\n')
                        tl--;
                    line_put(&l, tb, tl);
                }
                break;
            }
            case UPY_LV_UAGENT:
            case UPY_LV_REFERER:
            case UPY_LV_HOST:
                t = env_text(environ,
                             var == UPY_LV_UAGENT ? st->k_HTTP_USER_AGENT
                             : var == UPY_LV_REFERER ? st->k_HTTP_REFERER
                                                     : st->k_HTTP_HOST,
                             &n);
                line_put(&l, t, (size_t)n);
                break;
            case UPY_LV_PID:
                line_fmt(&l, "%ld", (long)getpid());
                break;
            case UPY_LV_WID:
                line_fmt(&l, "%d", srv->worker_id);
                break;
            case UPY_LV_LTIME: {
                /* uWSGI's ltime: the request's start, local time, in the
                   Apache/nginx log form 01/Dec/2026:23:20:00 +0000 */
                char tb[64];
                struct tm tm;
                time_t at = time(NULL) - (time_t)secs;
                size_t tl = localtime_r(&at, &tm) != NULL
                                ? strftime(tb, sizeof tb, "%d/%b/%Y:%H:%M:%S %z",
                                           &tm)
                                : 0;
                line_put(&l, tb, tl);
                break;
            }
            case UPY_LV_EPOCH: {
                /* CLOCK_REALTIME, not time(2): glibc's time() reads the
                   coarse clock, a tick behind Python's time.time() */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                line_fmt(&l, "%lld", (long long)ts.tv_sec);
                break;
            }
            case UPY_LV_SECS:
                line_fmt(&l, "%f", secs);
                break;
            case UPY_LV_CL: {
                Py_ssize_t cl_n;
                const char *cl = env_text(environ, st->k_CONTENT_LENGTH, &cl_n);
                if (cl_n > 0 && *cl != '-')
                    line_put(&l, cl, (size_t)cl_n);
                else
                    line_put(&l, "0", 1);
                break;
            }
            case UPY_LV_REQUEST_ID:
                if (srv->rid_env != NULL) {
                    t = env_text(environ, srv->rid_env, &n);
                    line_put(&l, t, (size_t)n);
                }
                else {
                    line_put(&l, "-", 1);
                }
                break;
            default:
                line_put(&l, "-", 1);
            }
        }
        PyErr_Clear();
    }
    log_emit(srv, &l);
}

void
upy_access_log(upy_core *core, upy_conn *c, PyObject *environ, double started)
{
    access_log(core, c, &c->resp, environ, started);
}

/* A request field by its HTTP name (lowercase) or uwsgi var name. */
static const upy_str *
req_field(const upy_request *req, const char *http, const char *var)
{
    size_t hl = strlen(http), vl = strlen(var);
    if (req == NULL)
        return NULL;
    for (size_t i = 0; i < req->num_fields; i++) {
        const upy_field *f = &req->fields[i];
        if (!upy_protocols[req->proto]->vars
                ? f->name.len == hl && strncasecmp(f->name.p, http, hl) == 0
                : f->name.len == vl && memcmp(f->name.p, var, vl) == 0)
            return &f->value;
    }
    return NULL;
}

/* The default JSON field set from the request's own bytes (static files:
   no GIL, no environ). */
static void
access_log_plain_json(upy_server *srv, const char *addr, size_t alen,
                      const upy_str *method, const upy_str *uri,
                      const upy_str *proto, int status, uint64_t sent,
                      double secs, const upy_request *req)
{
    char buf[8192];
    upy_jline l = {buf, 0, sizeof buf, 0, 0, 0};
    const upy_str *v;
    jl_raw(&l, "{", 1);
    jl_time(&l, secs);
    if (alen > 0)
        jl_str(&l, "addr", addr, alen);
    else {
        jl_key(&l, "addr", 4);
        jl_raw(&l, "null", 4);
    }
    jl_str(&l, "method", method->p, method->len);
    jl_str(&l, "uri", uri->p, uri->len);
    jl_str(&l, "proto", proto->p, proto->len);
    jl_fmt(&l, "status", "%d", status);
    jl_fmt(&l, "size", "%llu", (unsigned long long)sent);
    jl_fmt(&l, "msecs", "%.3f", secs * 1000.0);
    jl_fmt(&l, "micros", "%llu", (unsigned long long)(secs * 1e6));
    jl_fmt(&l, "worker", "%d", srv->worker_id);
    jl_fmt(&l, "pid", "%ld", (long)getpid());
    if (srv->rid_env != NULL) {
        /* the incoming id when sane, else a new one (not sent back: the
           static head is built in upy_static.c) */
        char id[UPY_REQUEST_ID_LEN];
        const char *name = PyBytes_AS_STRING(srv->rid_header);
        char lower[64];
        size_t nl = (size_t)PyBytes_GET_SIZE(srv->rid_header) - 2;
        /* ASCII (set_access_log checked it): its data, no GIL needed */
        const char *var = (const char *)PyUnicode_DATA(srv->rid_key);
        if (nl >= sizeof lower)
            nl = sizeof lower - 1;
        for (size_t i = 0; i < nl; i++)
            lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32
                                                                : name[i]);
        lower[nl] = '\0';
        v = var != NULL ? req_field(req, lower, var) : NULL;
        if (v != NULL && upy_request_id_ok(v->p, v->len)) {
            jl_str(&l, "request_id", v->p, v->len);
        }
        else {
            upy_request_id_new(id);
            jl_str(&l, "request_id", id, sizeof id);
        }
    }
    if ((v = req_field(req, "host", "HTTP_HOST")) != NULL)
        jl_str(&l, "host", v->p, v->len);
    if ((v = req_field(req, "user-agent", "HTTP_USER_AGENT")) != NULL)
        jl_str(&l, "uagent", v->p, v->len);
    if ((v = req_field(req, "referer", "HTTP_REFERER")) != NULL)
        jl_str(&l, "referer", v->p, v->len);
    jl_end(srv, &l);
}

/* _core.set_access_log(server, *, json=False, json_extra=None,
   request_id=None): see upy_module.c's docstring. */
PyObject *
upy_set_access_log(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"server", "json", "json_extra", "request_id",
                             "template", "template_json", NULL};
    PyObject *server, *extra = Py_None, *rid = Py_None, *tpl = Py_None;
    int tpl_json = 0;
    PyObject *key = NULL, *env = NULL, *hdr = NULL;
    int json = 0;
    upy_server *srv;
    upy_state *st = PyModule_GetState(module);
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$pOOOp", kwlist, &server,
                                     &json, &extra, &rid, &tpl, &tpl_json))
        return NULL;
    if (tpl != Py_None && !PyBytes_Check(tpl)) {
        PyErr_SetString(PyExc_TypeError, "template must be bytes or None");
        return NULL;
    }
    if (st == NULL || !PyObject_TypeCheck(server, st->Server_Type)) {
        PyErr_SetString(PyExc_TypeError, "server must be a _core.Server");
        return NULL;
    }
    srv = (upy_server *)server;
    if (extra != Py_None && (!PyBytes_Check(extra) ||
                             (PyBytes_GET_SIZE(extra) > 0 &&
                              PyBytes_AS_STRING(extra)
                                      [PyBytes_GET_SIZE(extra) - 1] != ','))) {
        PyErr_SetString(PyExc_TypeError,
                        "json_extra must be bytes of '\"k\":v,' fields");
        return NULL;
    }
    if (rid != Py_None) {
        Py_ssize_t n;
        const char *name;
        char up[80];
        if (!PyUnicode_Check(rid) ||
            (name = PyUnicode_AsUTF8AndSize(rid, &n)) == NULL || n == 0 ||
            n > 64) {
            PyErr_SetString(PyExc_ValueError,
                            "request_id must be a header name (1-64 bytes)");
            return NULL;
        }
        memcpy(up, "HTTP_", 5);
        for (Py_ssize_t i = 0; i < n; i++) {
            char ch = name[i];
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '-')) {
                PyErr_Format(PyExc_ValueError,
                             "invalid request id header name %R", rid);
                return NULL;
            }
            up[5 + i] = ch == '-' ? '_' : (ch >= 'a' && ch <= 'z') ? ch - 32
                                                                   : ch;
        }
        key = PyUnicode_FromStringAndSize(up, n + 5);
        env = PyUnicode_InternFromString("uwsgipy.request_id");
        hdr = PyBytes_FromFormat("%s: ", name);
        if (key == NULL || env == NULL || hdr == NULL) {
            Py_XDECREF(key);
            Py_XDECREF(env);
            Py_XDECREF(hdr);
            return NULL;
        }
    }
    srv->log_json = json;
    srv->log_template_json = tpl_json;
    Py_XSETREF(srv->log_template, tpl == Py_None ? NULL : Py_NewRef(tpl));
    Py_XSETREF(srv->log_json_extra, extra == Py_None ? NULL : Py_NewRef(extra));
    Py_XSETREF(srv->rid_key, key);   /* the new references, stolen */
    Py_XSETREF(srv->rid_env, env);
    Py_XSETREF(srv->rid_header, hdr);
    Py_RETURN_NONE;
}

void
upy_access_log_plain(upy_server *srv, const char *addr, size_t alen,
                     const upy_str *method, const upy_str *uri,
                     const upy_str *proto, int status, uint64_t sent,
                     double started, int micros, const upy_request *req)
{
    char buf[4096];
    upy_line l = {buf, 0, sizeof buf - 1};
    double secs;
    if (srv->access_log_fd < 0)
        return;
    secs = upy_now() - started;
    if (!log_wanted(srv, status, sent, secs))
        return;
    if (srv->log_json) {
        access_log_plain_json(srv, addr, alen, method, uri, proto, status,
                              sent, secs, req);
        return;
    }
    /* the default line, as access_log() writes it from an environ */
    if (alen > 0)
        line_put(&l, addr, alen);
    else
        line_put(&l, "-", 1);
    line_put(&l, " \"", 2);
    line_put(&l, method->p, method->len > 32 ? 32 : method->len);
    line_put(&l, " ", 1);
    line_put(&l, uri->p, uri->len > 2048 ? 2048 : uri->len);
    line_put(&l, " ", 1);
    line_put(&l, proto->p, proto->len > 16 ? 16 : proto->len);
    if (micros)
        line_fmt(&l, "\" %d %llu %lluus", status, (unsigned long long)sent,
                 (unsigned long long)(secs * 1e6));
    else
        line_fmt(&l, "\" %d %llu %.3fms", status, (unsigned long long)sent,
                 secs * 1000.0);
    log_emit(srv, &l);
}

/* Call result.close() if it has one (PEP 3333: always, also on errors). */
static void
close_result(upy_server *srv, PyObject *result)
{
    PyObject *meth = NULL, *r;
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
        return; /* the common `return [body]`: no close() */
    }
    if (optional_attr(result, srv->st->s_close, &meth) < 0) {
        upy_log_exception(srv, "error looking up the response's close()");
        return;
    }
    if (meth == NULL)
        return;
    r = PyObject_CallNoArgs(meth);
    Py_DECREF(meth);
    if (r == NULL) {
        upy_log_exception(srv, "error in the response's close()");
        return;
    }
    Py_DECREF(r);
}

/* Queue a 500 after the app failed before sending anything. */
static void
send_500(upy_core *core, upy_response *r)
{
    static const char body[] = "500 Internal Server Error\n";
    const upy_protocol *pr = upy_protocols[r->proto];
    size_t plen;
    char head[256];
    int hlen;
    struct iovec iov[2];
    if (core->srv->stopping || (!pr->chunked_out && !pr->ends_itself))
        r->keep_alive = 0;
    hlen = snprintf(head, sizeof head,
                    "%s500 Internal Server Error\r\n"
                    "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
                    "%s\r\n",
                    upy_status_prefix(pr, r->minor_version, &plen),
                    sizeof body - 1,
                    r->keep_alive || !pr->connection_header
                        ? "" : "Connection: close\r\n");
    iov[0].iov_base = head;
    iov[0].iov_len = (size_t)hlen;
    iov[1].iov_base = (void *)body;
    iov[1].iov_len = r->no_body ? 0 : sizeof body - 1;
    r->status_code = 500;
    r->headers_sent = 1;
    if (upy_out_send(r->conn, iov, 2, NULL, NULL, 0, 1) < 0) {
        r->failed = 1;
    }
    r->sent = r->no_body ? 0 : sizeof body - 1;
}

/* The app failed (exception set, already logged): answer 500 when nothing
   was sent yet, else only closing the connection tells the client. */
static void
app_failed(upy_core *core, upy_response *r)
{
    PyErr_Clear();
    r->app_failed = 1;
    if (core->slot != NULL)
        core->slot->exceptions++;
    if (!r->headers_sent) {
        send_500(core, r);
        if (!r->failed && send_end(r->conn) < 0)
            r->failed = 1;
    }
    else {
        r->failed = 1;
        r->keep_alive = 0;
    }
    r->phase = UPY_PHASE_FINISH;
}

/* Everything after the last byte: close(), the access log, releasing. */
static int
finish(upy_core *core, upy_conn *c)
{
    upy_response *r = &c->resp;
    upy_server *srv = core->srv;
    int ok = !r->failed;

    if (ok && !r->app_failed && !r->no_body && r->content_length >= 0 &&
        r->sent < (uint64_t)r->content_length) {
        upy_log(srv, 30, "the app sent %llu bytes of its Content-Length "
                "%lld; closing the connection",
                (unsigned long long)r->sent, (long long)r->content_length);
        ok = 0;
    }
    if (PyErr_Occurred()) {
        upy_log_exception(srv, "error in the response");
    }
    /* Detach start_response and write() first: the body has ended (a
       chunked one with its terminator), so the close() below must not
       send more. */
    if (r->sr != NULL) {
        ((upy_start_response *)r->sr)->resp = NULL;
        Py_CLEAR(r->sr);
    }
    Py_CLEAR(r->iter);
    if (r->result != NULL) {
        close_result(srv, r->result);
        Py_CLEAR(r->result);
    }
    if (core->slot != NULL) /* atomic: the loop counts static files on slot 0 */
        __atomic_fetch_add(&core->slot->tx, r->sent, __ATOMIC_RELAXED);
    access_log(core, c, r, r->environ, r->started);
    Py_CLEAR(r->status);
    Py_CLEAR(r->headers);
    Py_CLEAR(r->environ);
    Py_CLEAR(r->input);
    Py_CLEAR(c->pend.hold);
    c->pend.cnt = 0;
    r->active = 0;
    c->keep_alive = r->keep_alive;
    return ok && r->keep_alive ? UPY_RESP_KEEP : UPY_RESP_CLOSE;
}

/* Drive the response as far as the socket allows. */
static int
pump(upy_core *core, upy_conn *c)
{
    upy_response *r = &c->resp;
    upy_server *srv = core->srv;
    upy_state *st = core->st;

    for (;;) {
        if (r->failed) {
            return finish(core, c);
        }
        if (c->pend.cnt > 0) {
            int f = flush_pending(c);
            if (f < 0) {
                r->failed = 1;
                return finish(core, c);
            }
            if (f == 0) {
                return UPY_RESP_BLOCKED;
            }
        }
        switch (r->phase) {
        case UPY_PHASE_SENDFILE: {
            int f = pump_sendfile(r);
            if (f < 0) {
                r->failed = 1;
                return finish(core, c);
            }
            if (f == 0) {
                return UPY_RESP_BLOCKED;
            }
            r->phase = UPY_PHASE_END;
            break;
        }
        case UPY_PHASE_ITER: {
            PyObject *item = PyIter_Next(r->iter);
            if (item == NULL) {
                if (PyErr_Occurred()) {
                    upy_log_exception(srv, "exception while iterating the "
                                      "response");
                    app_failed(core, r);
                }
                else {
                    r->phase = UPY_PHASE_END;
                }
                break;
            }
            if (!PyBytes_Check(item)) {
                PyErr_Format(PyExc_TypeError,
                             "the WSGI app yielded %.100s, not bytes "
                             "(PEP 3333)", Py_TYPE(item)->tp_name);
                Py_DECREF(item);
                upy_log_exception(srv, "bad response body");
                app_failed(core, r);
                break;
            }
            if (r->status == NULL) {
                Py_DECREF(item);
                PyErr_SetString(PyExc_RuntimeError,
                                "the WSGI app returned a body before "
                                "calling start_response");
                upy_log_exception(srv, "bad response");
                app_failed(core, r);
                break;
            }
            if (PyBytes_GET_SIZE(item) > 0 &&
                send_chunk(core, r, PyBytes_AS_STRING(item),
                           (size_t)PyBytes_GET_SIZE(item), item) < 0) {
                if (PyErr_Occurred())
                    upy_log_exception(srv, "error sending the response");
            }
            Py_DECREF(item);
            break;
        }
        case UPY_PHASE_END:
            if (r->status == NULL) {
                PyErr_SetString(PyExc_RuntimeError,
                                "the WSGI app never called start_response");
                upy_log_exception(srv, "bad response");
                app_failed(core, r);
                break;
            }
            if (!r->headers_sent) {
                /* Nothing was sent: the length is known to be 0. */
                r->known_length = 0;
                if (send_chunk(core, r, NULL, 0, NULL) < 0) {
                    if (PyErr_Occurred())
                        upy_log_exception(srv, "error sending the response");
                    break;
                }
            }
            if (r->chunked) {
                struct iovec end = {"0\r\n\r\n", 5};
                if (send_or_queue(c, &end, 1, NULL, NULL, 0) < 0)
                    r->failed = 1;
            }
            else if (send_end(c) < 0) {
                r->failed = 1;
            }
            r->phase = UPY_PHASE_FINISH;
            break;
        case UPY_PHASE_FINISH:
            return finish(core, c);
        }
        (void)st;
    }
}

int
upy_response_start(upy_core *core, upy_conn *c, const upy_request *req,
                   PyObject *environ, PyObject *input, double started)
{
    upy_server *srv = core->srv;
    upy_state *st = core->st;
    upy_response *r = &c->resp;
    upy_start_response *sr;
    PyObject *result, *app = srv->app;

    memset(r, 0, sizeof *r);
    r->core = core;
    r->conn = c;
    r->active = 1;
    r->phase = UPY_PHASE_ITER;
    r->content_length = -1;
    r->known_length = -1;
    r->keep_alive = c->keep_alive;
    r->no_body = c->is_head;
    r->minor_version = req->minor_version;
    r->proto = req->proto;
    r->started = started;
    r->environ = Py_NewRef(environ);
    r->input = Py_NewRef(input);

    /* mount / manage-script-name (upy_environ.c) */
    if (srv->mounts != NULL &&
        (app = upy_mount_app(srv, st, environ)) == NULL) {
        upy_log_exception(srv, "cannot choose the mounted app");
        app_failed(core, r);
        return pump(core, c);
    }
    sr = PyObject_New(upy_start_response, st->StartResponse_Type);
    if (sr == NULL) {
        upy_log_exception(srv, "cannot create start_response");
        app_failed(core, r);
        return pump(core, c);
    }
    sr->resp = r;
    r->sr = (PyObject *)sr;

    result = PyObject_CallFunctionObjArgs(app, environ, (PyObject *)sr,
                                          NULL);
    if (result == NULL) {
        upy_log_exception(srv, "exception in the WSGI app");
        app_failed(core, r);
        return pump(core, c);
    }
    r->result = result;
    if (r->failed) {
        return pump(core, c); /* write() found the client gone */
    }
    if (PyObject_TypeCheck(result, st->FileWrapper_Type) && r->status != NULL) {
        int sf = setup_sendfile(core, r, (upy_file_wrapper *)result);
        if (sf != 0) {
            if (sf < 0 && PyErr_Occurred())
                upy_log_exception(srv, "error sending a file");
            return pump(core, c);
        }
    }
    r->known_length = sequence_length(result);
    r->iter = PyObject_GetIter(result);
    if (r->iter == NULL) {
        upy_log_exception(srv, "the WSGI app returned a non-iterable");
        app_failed(core, r);
    }
    return pump(core, c);
}

int
upy_response_resume(upy_core *core, upy_conn *c)
{
    c->resp.core = core;
    return pump(core, c);
}

int
upy_response_flush(upy_conn *c)
{
    upy_response *r = &c->resp;
    upy_pending *p = &c->pend;
    if (r->failed) {
        return 0;
    }
    while (p->cnt > 0) {
        /* as flush_pending(), but p->hold stays for the runner to drop */
        ssize_t n = send_nb(c->fd, p->iov, p->cnt);
        int cnt = p->cnt;
        struct iovec *iov;
        if (n < 0) {
            r->failed = 1;
            return 0;
        }
        iov = iov_advance(p->iov, &cnt, (size_t)n);
        if (cnt > 0) {
            memmove(p->iov, iov, (size_t)cnt * sizeof *iov);
            p->cnt = cnt;
            return UPY_RESP_BLOCKED;
        }
        p->cnt = 0;
    }
    if (r->phase == UPY_PHASE_SENDFILE) {
        int f = pump_sendfile(r);
        if (f < 0) {
            r->failed = 1;
            return 0;
        }
        if (f == 0) {
            return UPY_RESP_BLOCKED;
        }
        r->phase = UPY_PHASE_END;
    }
    if (r->is_static && !r->end_sent) {
        /* the end of a static response in its protocol (FastCGI) */
        if (send_end(c) < 0) {
            r->failed = 1;
            return 0;
        }
        if (c->pend.cnt > 0) {
            return UPY_RESP_BLOCKED;
        }
    }
    return 0;
}

void
upy_response_abort(upy_core *core, upy_conn *c)
{
    if (c->resp.active) {
        c->resp.failed = 1;
        c->resp.keep_alive = 0;
        (void)finish(core, c);
    }
}
