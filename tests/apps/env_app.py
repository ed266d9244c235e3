"""Returns the WSGI environ as JSON: {key: {"type": type name, "value": str value or repr}}.

The body (if any) is read completely and reported under "__body__" (length, sha256, first bytes
as latin-1), and the presence of the PEP 3333 stream methods under "__checks__".
"""
import hashlib
import json


def describe(environ):
    out = {}
    for k, v in environ.items():
        out[k] = {"type": type(v).__name__, "key_type": type(k).__name__,
                  "value": v if isinstance(v, str) else repr(v)}
    return out


def checks(environ):
    inp = environ.get("wsgi.input")
    err = environ.get("wsgi.errors")
    return {
        "input_methods": [m for m in ("read", "readline", "readlines", "__iter__") if hasattr(inp, m)],
        "errors_methods": [m for m in ("write", "writelines", "flush") if hasattr(err, m)],
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
        "all_keys_str": all(type(k) is str for k in environ),
        "cgi_values_str": all(type(v) is str for k, v in environ.items() if "." not in k),
    }


def read_body(inp) -> dict:
    """Read wsgi.input in 64 KiB pieces: its length, sha256 and first 4 KiB."""
    h = hashlib.sha256()
    n = 0
    head = b""
    while True:
        chunk = inp.read(65536)
        if not chunk:
            break
        if len(head) < 4096:
            head += chunk[: 4096 - len(head)]
        h.update(chunk)
        n += len(chunk)
    return {"len": n, "sha256": h.hexdigest(), "head": head.decode("latin-1")}


def application(environ, start_response):
    doc = describe(environ)
    doc["__body__"] = read_body(environ["wsgi.input"])
    doc["__checks__"] = checks(environ)
    body = json.dumps(doc).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
