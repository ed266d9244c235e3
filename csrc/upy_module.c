/*
 * upy_module.c - the uwsgipy._core module: multi-phase init (PEP 489),
 * module state with heap types and the interned strings every request uses.
 */
#include "upy_core.h"

#define UPY_STR_(x) #x
#define UPY_STR(x) UPY_STR_(x)
#if defined(__clang__)
#define UPY_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define UPY_COMPILER "gcc " __VERSION__
#else
#define UPY_COMPILER "unknown"
#endif
#if defined(__GLIBC__)
#define UPY_LIBC "glibc " UPY_STR(__GLIBC__) "." UPY_STR(__GLIBC_MINOR__)
#elif defined(__APPLE__)
#define UPY_LIBC "darwin"
#elif defined(__linux__)
#define UPY_LIBC "musl"
#else
#define UPY_LIBC "system"
#endif

#include <time.h>

upy_state *
upy_get_state_from_type(PyTypeObject *tp)
{
    /* Our types are final (no Py_TPFLAGS_BASETYPE), so the defining
       module is the type's own. */
    PyObject *mod = PyType_GetModule(tp);
    if (mod == NULL) {
        return NULL;
    }
    return (upy_state *)PyModule_GetState(mod);
}

int
upy_dict_set_steal(PyObject *d, PyObject *key, PyObject *value)
{
    int rc;
    if (value == NULL) {
        return -1;
    }
    rc = PyDict_SetItem(d, key, value);
    Py_DECREF(value);
    return rc;
}

double
upy_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
intern_into(PyObject **slot, const char *text)
{
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

static int
upy_exec(PyObject *module)
{
    upy_state *st = (upy_state *)PyModule_GetState(module);
    PyObject *io = NULL;
    int rc = -1;

#define UPY_INIT_KEY(name)                                                   \
    if (intern_into(&st->k_##name, #name) < 0)                               \
        goto error;
    UPY_INTERNED(UPY_INIT_KEY)
#undef UPY_INIT_KEY
    if (intern_into(&st->k_wsgi_version, "wsgi.version") < 0 ||
        intern_into(&st->k_wsgi_url_scheme, "wsgi.url_scheme") < 0 ||
        intern_into(&st->k_wsgi_input, "wsgi.input") < 0 ||
        intern_into(&st->k_wsgi_errors, "wsgi.errors") < 0 ||
        intern_into(&st->k_wsgi_multithread, "wsgi.multithread") < 0 ||
        intern_into(&st->k_wsgi_multiprocess, "wsgi.multiprocess") < 0 ||
        intern_into(&st->k_wsgi_run_once, "wsgi.run_once") < 0 ||
        intern_into(&st->k_wsgi_input_terminated, "wsgi.input_terminated") < 0 ||
        intern_into(&st->k_wsgi_file_wrapper, "wsgi.file_wrapper") < 0 ||
        intern_into(&st->s_empty, "") < 0 ||
        intern_into(&st->s_http, "http") < 0 ||
        intern_into(&st->s_https, "https") < 0 ||
        intern_into(&st->s_http10, "HTTP/1.0") < 0 ||
        intern_into(&st->s_http11, "HTTP/1.1") < 0 ||
        intern_into(&st->s_GET, "GET") < 0 ||
        intern_into(&st->s_close, "close") < 0 ||
        intern_into(&st->s_read, "read") < 0 ||
        intern_into(&st->s_fileno, "fileno") < 0 ||
        intern_into(&st->s_tell, "tell") < 0 ||
        intern_into(&st->s_write, "write") < 0) {
        goto error;
    }
    st->wsgi_version = Py_BuildValue("(ii)", 1, 0);
    if (st->wsgi_version == NULL) {
        goto error;
    }
    st->empty_bytes = PyBytes_FromStringAndSize(NULL, 0);
    if (st->empty_bytes == NULL) {
        goto error;
    }
    io = PyImport_ImportModule("io");
    if (io == NULL) {
        goto error;
    }
    st->io_BytesIO = PyObject_GetAttrString(io, "BytesIO");
    if (st->io_BytesIO == NULL) {
        goto error;
    }
    st->io_open = PyObject_GetAttrString(io, "open");
    if (st->io_open == NULL) {
        goto error;
    }

    st->Server_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &upy_server_spec, NULL);
    if (st->Server_Type == NULL ||
        PyModule_AddType(module, st->Server_Type) < 0) {
        goto error;
    }
    st->StartResponse_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &upy_start_response_spec, NULL);
    if (st->StartResponse_Type == NULL ||
        PyModule_AddType(module, st->StartResponse_Type) < 0) {
        goto error;
    }
    st->FileWrapper_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &upy_file_wrapper_spec, NULL);
    if (st->FileWrapper_Type == NULL ||
        PyModule_AddType(module, st->FileWrapper_Type) < 0) {
        goto error;
    }
    st->Asgi_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &upy_asgi_cycle_spec, NULL);
    st->AsgiReady_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &upy_asgi_ready_spec, NULL);
    st->AsgiRun_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &upy_asgi_run_spec, NULL);
    if (st->Asgi_Type == NULL || st->AsgiReady_Type == NULL ||
        st->AsgiRun_Type == NULL) {
        goto error;
    }
    st->Request_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &upy_request_spec, NULL);
    if (st->Request_Type == NULL ||
        PyModule_AddType(module, st->Request_Type) < 0) {
        goto error;
    }
    st->EmptyInput_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &upy_empty_input_spec, NULL);
    if (st->EmptyInput_Type == NULL) {
        goto error;
    }
    st->empty_input = PyType_GenericAlloc(st->EmptyInput_Type, 0);
    if (st->empty_input == NULL) {
        goto error;
    }
    if (PyModule_AddIntConstant(module, "PROTO_HTTP", UPY_PROTO_HTTP) < 0 ||
        PyModule_AddIntConstant(module, "PROTO_UWSGI", UPY_PROTO_UWSGI) < 0 ||
        PyModule_AddIntConstant(module, "PROTO_FASTCGI", UPY_PROTO_FASTCGI) < 0 ||
        PyModule_AddIntConstant(module, "PROTO_SCGI", UPY_PROTO_SCGI) < 0 ||
        PyModule_AddIntConstant(module, "PROTO_FASTCGI_NPH",
                                UPY_PROTO_FASTCGI_NPH) < 0 ||
        PyModule_AddIntConstant(module, "PROTO_SCGI_NPH", UPY_PROTO_SCGI_NPH) < 0 ||
        PyModule_AddIntConstant(module, "SLOT_SIZE", sizeof(upy_slot)) < 0 ||
        PyModule_AddIntConstant(module, "LOG_4XX", UPY_LOG_4XX) < 0 ||
        PyModule_AddIntConstant(module, "LOG_5XX", UPY_LOG_5XX) < 0 ||
        PyModule_AddStringConstant(module, "POLLER",
                                   UPY_HAVE_EPOLL ? "epoll" : "poll") < 0) {
        goto error;
    }
    {
        /* How this build was made, for `uwsgipy --version` and the tests
           of the portable build.  BUILD: a new dict, owned by the module. */
        PyObject *b = Py_BuildValue(
            "{s:s,s:O,s:O,s:s,s:s,s:s}",
            "poller", UPY_HAVE_EPOLL ? "epoll" : "poll",
            "sendfile", UPY_HAVE_SENDFILE ? Py_True : Py_False,
            "openat2", upy_static_have_openat2() ? Py_True : Py_False,
            "compiler", UPY_COMPILER,
            "python", PY_VERSION,
            "libc", UPY_LIBC);
        if (b == NULL || PyModule_AddObjectRef(module, "BUILD", b) < 0) {
            Py_XDECREF(b);
            goto error;
        }
        Py_DECREF(b);
    }
    {
        static const struct { const char *name; int value; } vars[] = {
            {"addr", UPY_LV_ADDR}, {"method", UPY_LV_METHOD},
            {"uri", UPY_LV_URI}, {"proto", UPY_LV_PROTO},
            {"status", UPY_LV_STATUS}, {"size", UPY_LV_SIZE},
            {"msecs", UPY_LV_MSECS}, {"micros", UPY_LV_MICROS},
            {"time", UPY_LV_TIME}, {"ctime", UPY_LV_CTIME},
            {"uagent", UPY_LV_UAGENT}, {"referer", UPY_LV_REFERER},
            {"host", UPY_LV_HOST}, {"pid", UPY_LV_PID}, {"wid", UPY_LV_WID},
            {"ltime", UPY_LV_LTIME},
            {"epoch", UPY_LV_EPOCH}, {"secs", UPY_LV_SECS}, {"cl", UPY_LV_CL},
            {"request_id", UPY_LV_REQUEST_ID},
        };
        PyObject *d = PyDict_New();
        if (d == NULL)
            goto error;
        for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
            PyObject *v = PyLong_FromLong(vars[i].value);
            int r = v == NULL ? -1 : PyDict_SetItemString(d, vars[i].name, v);
            Py_XDECREF(v);
            if (r < 0) {
                Py_DECREF(d);
                goto error;
            }
        }
        /* PyModule_AddObjectRef does not steal. */
        if (PyModule_AddObjectRef(module, "LOG_VARS", d) < 0) {
            Py_DECREF(d);
            goto error;
        }
        Py_DECREF(d);
    }
    rc = 0;
error:
    Py_XDECREF(io);
    return rc;
}

static int
upy_traverse(PyObject *module, visitproc visit, void *arg)
{
    upy_state *st = (upy_state *)PyModule_GetState(module);
    Py_VISIT(st->Server_Type);
    Py_VISIT(st->StartResponse_Type);
    Py_VISIT(st->FileWrapper_Type);
    Py_VISIT(st->EmptyInput_Type);
    Py_VISIT(st->Request_Type);
    Py_VISIT(st->Asgi_Type);
    Py_VISIT(st->AsgiReady_Type);
    Py_VISIT(st->AsgiRun_Type);
    Py_VISIT(st->empty_input);
    Py_VISIT(st->io_BytesIO);
    Py_VISIT(st->io_open);
    return 0;
}

static int
upy_clear(PyObject *module)
{
    upy_state *st = (upy_state *)PyModule_GetState(module);
    Py_CLEAR(st->Server_Type);
    Py_CLEAR(st->StartResponse_Type);
    Py_CLEAR(st->FileWrapper_Type);
    Py_CLEAR(st->empty_input);
    Py_CLEAR(st->EmptyInput_Type);
    Py_CLEAR(st->Request_Type);
    Py_CLEAR(st->Asgi_Type);
    Py_CLEAR(st->AsgiReady_Type);
    Py_CLEAR(st->AsgiRun_Type);
#define UPY_CLEAR_KEY(name) Py_CLEAR(st->k_##name);
    UPY_INTERNED(UPY_CLEAR_KEY)
#undef UPY_CLEAR_KEY
    Py_CLEAR(st->k_wsgi_version);
    Py_CLEAR(st->k_wsgi_url_scheme);
    Py_CLEAR(st->k_wsgi_input);
    Py_CLEAR(st->k_wsgi_errors);
    Py_CLEAR(st->k_wsgi_multithread);
    Py_CLEAR(st->k_wsgi_multiprocess);
    Py_CLEAR(st->k_wsgi_run_once);
    Py_CLEAR(st->k_wsgi_input_terminated);
    Py_CLEAR(st->k_wsgi_file_wrapper);
    Py_CLEAR(st->s_empty);
    Py_CLEAR(st->s_http);
    Py_CLEAR(st->s_https);
    Py_CLEAR(st->s_http10);
    Py_CLEAR(st->s_http11);
    Py_CLEAR(st->s_GET);
    Py_CLEAR(st->s_close);
    Py_CLEAR(st->s_read);
    Py_CLEAR(st->s_fileno);
    Py_CLEAR(st->s_tell);
    Py_CLEAR(st->s_write);
    Py_CLEAR(st->wsgi_version);
    Py_CLEAR(st->empty_bytes);
    Py_CLEAR(st->io_BytesIO);
    Py_CLEAR(st->io_open);
    return 0;
}

static void
upy_free(void *module)
{
    upy_clear((PyObject *)module);
}

static PyModuleDef_Slot upy_slots[] = {
    {Py_mod_exec, upy_exec},
    {0, NULL},
};

PyDoc_STRVAR(upy_doc,
"uwsgipy._core: the C core of uwsgipy.\n"
"\n"
"Server(app, listeners, ...) runs the request path: accept, uwsgi packet\n"
"and HTTP/1.1 parsing, the PEP 3333 environ, start_response and sending\n"
"the response.  Python binds the sockets and passes their fds.");

PyDoc_STRVAR(check_ere_doc,
"check_ere(pattern)\n--\n\n"
"Raise ValueError (with regerror's reason) unless pattern (str) is a\n"
"POSIX extended regular expression, the dialect the static-expires\n"
"options are matched with (regcomp REG_EXTENDED).");

PyDoc_STRVAR(set_probes_doc,
"set_probes(server, *, liveness=None, readiness=None, max_queue=-1, draining=None)\n--\n\n"
"Configure the probes the C core answers without the app (options\n"
"liveness-path, readiness-path, readiness-max-queue): liveness and readiness\n"
"are paths (str starting with '/', no '?', < 128 bytes) or None (off);\n"
"max_queue >= 0 sets the accept-queue length at which readiness fails (0\n"
"off); draining True makes readiness answer 503 (a graceful stop's drain).\n"
"Arguments left out are unchanged.  ValueError for a bad path.");

PyDoc_STRVAR(set_access_log_doc,
"set_access_log(server, *, json=False, json_extra=None, request_id=None)\n--\n\n"
"Configure the access log's JSON encoding and request ids (options\n"
"log-req-encoder = json, log-json-field, request-id, request-id-header):\n"
"json True writes one JSON object a line; json_extra is bytes of\n"
"'\"key\":\"value\",' fields added to each; request_id is the header\n"
"name (str, e.g. 'X-Request-ID') or None (off).");

static PyMethodDef upy_methods[] = {
    {"set_access_log", (PyCFunction)(void (*)(void))upy_set_access_log,
     METH_VARARGS | METH_KEYWORDS, set_access_log_doc},
    {"check_ere", upy_check_ere, METH_O, check_ere_doc},
    {"set_probes", (PyCFunction)(void (*)(void))upy_set_probes,
     METH_VARARGS | METH_KEYWORDS, set_probes_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef upy_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "uwsgipy._core",
    .m_doc = upy_doc,
    .m_methods = upy_methods,
    .m_size = sizeof(upy_state),
    .m_slots = upy_slots,
    .m_traverse = upy_traverse,
    .m_clear = upy_clear,
    .m_free = upy_free,
};

UPY_VISIBLE PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&upy_module_def);
}
