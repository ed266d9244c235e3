"""The app behind the static maps in tests/test_static.py: every request the static handler
passes on (a missing file, a directory without index, a FIFO, a skipped extension) lands here.

It answers 200 with `X-App: fallback` and a JSON body naming the method, PATH_INFO,
SCRIPT_NAME and REQUEST_URI it got, so a test can tell "the app answered" from "a file was
served", and what path the app saw.  `/__app/slow?s=SECONDS` sleeps first (capped at 5 s).
"""
import json
import time


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/__app/slow":
        qs = environ.get("QUERY_STRING", "")
        secs = float(qs.partition("s=")[2] or "0.2")
        time.sleep(min(secs, 5.0))
    body = json.dumps({
        "app": "fallback",
        "method": environ["REQUEST_METHOD"],
        # PATH_INFO is bytes decoded as latin-1 (PEP 3333): keep it exactly as received
        "path_info": path,
        "script_name": environ.get("SCRIPT_NAME", ""),
        "request_uri": environ.get("REQUEST_URI", ""),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("X-App", "fallback"),
                              ("Content-Length", str(len(body)))])
    if environ["REQUEST_METHOD"] == "HEAD":
        return [b""]
    return [body]
