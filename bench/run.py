#!/usr/bin/env python3
"""Side-by-side benchmark of uwsgipy against its peers on this machine.

Stdlib only; drives the servers, `wrk`, `taskset` and (for the nginx
scenario) a real `nginx` as child processes, all bound to 127.0.0.1.

For every scenario, round and server: start the server on a free port with
one process and one thread, pinned to the server CPU; poll until it answers a
real request; warm up; run `wrk --latency` pinned to the client CPU; sample
the server's CPU time (utime+stime of its whole process tree, from
/proc/PID/stat) across the run; stop the server by pid.  Servers are
interleaved inside each round and the per-metric median over rounds is
reported.  See bench/README.md for what each scenario measures and the
caveats.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
HELLO_APP = BENCH_DIR / "apps" / "hello.py"
BJOERN_LAUNCHER = BENCH_DIR / "serve_bjoern.py"
FASTWSGI_LAUNCHER = BENCH_DIR / "serve_fastwsgi.py"
EXPECTED_BODY = b"Hello, World!"

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class StaticFile:
    """The file a static scenario fetches, made once per run in a temp dir
    that every server maps at STATIC_PREFIX."""

    name: str
    size: int  # bytes
    connections: int  # default wrk -c: many small requests, or a few streams


STATIC_PREFIX = "/static"
# A 1 KiB file shows the per-request cost (open, fstat, headers, sendfile);
# a 100 MiB one the bulk path (sendfile, socket buffers), where a handful of
# streams already fill the loopback.
STATIC_SCENARIOS = {
    "static-1k": StaticFile("1k.bin", 1024, 50),
    "static-100m": StaticFile("100m.bin", 100 * 1024 * 1024, 4),
}
APPS_DIR = BENCH_DIR / "apps"
WSLOAD_SRC = BENCH_DIR / "wsload.c"


@dataclass(frozen=True)
class AsgiScenario:
    """An ASGI scenario (issue 10): the app module in bench/apps every server loads, the
    protocol the app server speaks (nginx in front for "uwsgi"), and the load generator
    ("wrk" for HTTP, "wsload" for WebSocket echo)."""

    module: str
    protocol: str
    client: str
    connections: int


ASGI_SCENARIOS = {
    # Raw ASGI hello: the same 13-byte body and headers as the WSGI hello.
    "asgi-hello": AsgiScenario("asgi_hello", "http", "wrk", 50),
    "starlette-hello": AsgiScenario("starlette_hello", "http", "wrk", 50),
    # WebSocket echo, small text messages, one in flight per connection (bench/wsload.c).
    "ws-echo": AsgiScenario("asgi_hello", "http", "wsload", 32),
    # wrk -> nginx uwsgi_pass -> the app server's uwsgi socket, as nginx-uwsgi.
    "asgi-nginx-uwsgi": AsgiScenario("asgi_hello", "uwsgi", "wrk", 50),
}
# Issue 12: nginx in front of the app server over FastCGI (fastcgi_pass, with and without
# fastcgi_keep_conn) and SCGI (scgi_pass), the WSGI hello as in nginx-uwsgi.
CGI_SCENARIOS = {"fastcgi-nginx": "fastcgi", "scgi-nginx": "scgi"}
SCENARIOS = ("http-keepalive", "nginx-uwsgi", *STATIC_SCENARIOS, *ASGI_SCENARIOS,
             *CGI_SCENARIOS)
# Scenarios with nginx (uwsgi_pass, fastcgi_pass, scgi_pass) in front of the app server.
NGINX_SCENARIOS = ("nginx-uwsgi", "asgi-nginx-uwsgi", *CGI_SCENARIOS)
# The scenarios where --baseline-tree adds its row (uwsgipy-base): the protocols the old
# core speaks, on the WSGI hello, and the ASGI hellos.
BASELINE_TREE_SCENARIOS = ("http-keepalive", "nginx-uwsgi", "asgi-hello", "starlette-hello",
                           "asgi-nginx-uwsgi")
DEFAULT_SERVERS = ("uwsgipy", "uwsgi", "bjoern", "uwsgi-router", "uwsgi-close")
# fastcgi-nginx: each server with nginx's fastcgi_keep_conn off (a new upstream connection per
# request) and on (upstream keepalive); scgi-nginx has no keep-alive (SCGI closes).
CGI_DEFAULT_SERVERS = {
    "fastcgi-nginx": ("uwsgipy", "uwsgipy-keepconn", "uwsgi", "uwsgi-keepconn"),
    "scgi-nginx": ("uwsgipy", "uwsgi"),
}
STATIC_DEFAULT_SERVERS = ("uwsgipy", "nginx", "uwsgi")
ASGI_DEFAULT_SERVERS = ("uwsgipy", "uvicorn", "granian", "socketify", "gunicorn")
# Where the ASGI peers are installed (bench/README.md): a venv of their own, not the test
# venv; uwsgipy runs from the same interpreter (imported from this checkout), so every
# ASGI row shares one uvloop and one Starlette.
DEFAULT_ASGI_PYTHON = os.environ.get("BENCH_ASGI_PYTHON") or (
    "/tmp/benchvenv/bin/python" if os.path.exists("/tmp/benchvenv/bin/python")
    else sys.executable)
# Extra rows that exist in one scenario only; elsewhere they are dropped
# without a row (the main servers always get a row, skipped or not).
MAIN_SERVERS = ("uwsgipy", "uwsgi", "bjoern")
ASGI_MAIN_SERVERS = ASGI_DEFAULT_SERVERS

# How long a server gets to answer its first request before it counts as
# failed to start.  uWSGI and bjoern answer in well under a second here.
READY_TIMEOUT_S = 20.0
# Interval between readiness probes: a poll, not a fixed sleep.
POLL_INTERVAL_S = 0.01
# How long a server gets to exit after its stop signal before SIGKILL.
STOP_TIMEOUT_S = 5.0
# wrk stops by itself after -d; past this much longer it is stuck.
WRK_GRACE_S = 30.0


# --------------------------------------------------------------------------
# Server definitions
# --------------------------------------------------------------------------

@dataclass
class ServerSpec:
    """How to start one server for one scenario.

    `argv(port)` builds the command line; `protocol` is what the server
    speaks on that port ("http" or "uwsgi"); `stop_signal` is the signal that
    makes it exit (uWSGI 2.0 treats SIGTERM as "reload", SIGINT as "kill").
    """

    name: str
    argv: Callable[[int], list[str]]
    protocol: str
    stop_signal: int = signal.SIGTERM
    note: str = ""
    available: Callable[[], Optional[str]] = lambda: None  # returns reason if not
    # For a server that needs files written first (nginx serving static):
    # builds the argv from the port and the measurement's temp dir instead.
    argv_in: Optional[Callable[[int, Path], list[str]]] = None
    # A master process that forks the worker(s) (gunicorn's arbiter, granian's main
    # process): "worker CPU" then counts the descendants only, not the master.
    master: bool = False
    # Where the server starts (default: the repo root): a --baseline-tree row starts in
    # its tree, so `python -m uwsgipy` imports that tree's package and core.
    cwd: Optional[Path] = None
    # fastcgi-nginx: nginx keeps its upstream connections (fastcgi_keep_conn on and an
    # upstream keepalive pool) instead of one connection per request.
    nginx_keep_conn: bool = False


def _which_or_reason(exe: str) -> Optional[str]:
    return None if shutil.which(exe) else f"`{exe}` not found on PATH"


def _exe_reason(exe: str) -> Optional[str]:
    """None if `exe` (a path, or a name on PATH) can be run, else why not."""
    if os.sep in exe:
        return None if os.access(exe, os.X_OK) else f"`{exe}` not found or not executable"
    return _which_or_reason(exe)


def default_uwsgi() -> str:
    """uWSGI on PATH, else the one installed beside this interpreter (a virtualenv's
    bin/uwsgi, as `pip install uwsgi` puts it), else the bare name (reported missing)."""
    found = shutil.which("uwsgi")
    if found:
        return found
    beside = Path(sys.executable).parent / "uwsgi"
    return str(beside) if os.access(beside, os.X_OK) else "uwsgi"


def _import_reason(python: str, module: str, check: str = "") -> Optional[str]:
    """None if `python` (run from the checkout, as the servers are) imports `module` and
    `check` (a statement) passes, else why not."""
    code = f"import {module}" + (f"; {check}" if check else "")
    proc = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, cwd=str(REPO_DIR)
    )
    if proc.returncode == 0:
        return None
    last = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
    return f"`{python} -c '{code}'` failed: {last}"


def _tree_reason(python: str, tree: Path) -> Optional[str]:
    """None if `python`, started in `tree`, imports uwsgipy and its built core from that
    tree (not from this checkout), else why not."""
    code = ("import os, sys, uwsgipy, uwsgipy._core as c; "
            "t = os.path.realpath(sys.argv[1]) + os.sep; "
            "bad = [m.__file__ for m in (uwsgipy, c) if not os.path.realpath(m.__file__).startswith(t)]; "
            "assert not bad, 'imported from elsewhere: ' + ', '.join(bad)")
    proc = subprocess.run([python, "-c", code, str(tree)], capture_output=True, text=True,
                          cwd=str(tree), env={**os.environ, "PYTHONPATH": str(tree)})
    if proc.returncode == 0:
        return None
    last = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
    return (f"uwsgipy from {tree} is not importable by {python} "
            f"(build it there: python setup.py build_ext --inplace): {last}")


def baseline_tree_spec(args: argparse.Namespace, socket_opt: str, protocol: str) -> ServerSpec:
    """uwsgipy-base: uwsgipy as another checkout (--baseline-tree, e.g. a `git worktree`
    of the commit before a change, its extension built in place) serves the same app with
    the same interpreter and flags, beside this tree's uwsgipy in the same run.  It starts
    in that tree with PYTHONPATH set to it, so `python -m uwsgipy` imports the tree's
    package and core, not this checkout's (a `-m` module's search path starts with the
    current directory)."""
    tree = args.baseline_tree
    py, app = args.python, str(args.app)
    return ServerSpec(
        "uwsgipy-base",
        lambda p: ["env", f"PYTHONPATH={tree}", py, "-m", "uwsgipy", socket_opt,
                   f"127.0.0.1:{p}", "--wsgi-file", app, "--processes", "1", "--threads", "1",
                   "--disable-logging", *(args.uwsgipy_arg or [])],
        protocol,
        note=f"uwsgipy from the tree {tree} (git {args.baseline_tree_rev}), started there: "
             "the baseline build beside this tree's",
        available=lambda: _tree_reason(py, tree),
        cwd=tree,
    )


def server_specs(args: argparse.Namespace, scenario: str) -> dict[str, ServerSpec]:
    """All known servers for `scenario`; the CLI picks some by name."""
    if scenario in ASGI_SCENARIOS:
        return asgi_server_specs(args, scenario)
    if scenario in CGI_SCENARIOS:
        return cgi_server_specs(args, scenario)
    app = str(args.app)
    py = args.python
    # One process, one thread, no master, no request log: the leanest
    # uWSGI that serves the app, matching uwsgipy's single worker.
    uwsgi_common = [
        "--wsgi-file", app, "--processes", "1", "--threads", "1",
        "--disable-logging",
    ]
    uwsgipy_extra = list(args.uwsgipy_arg or [])
    specs: dict[str, ServerSpec] = {}

    if scenario == "http-keepalive":
        specs["uwsgipy"] = ServerSpec(
            "uwsgipy",
            lambda p: [py, "-m", "uwsgipy", "--http-socket", f"127.0.0.1:{p}",
                       "--wsgi-file", app, "--processes", "1", "--threads", "1",
                       "--disable-logging", *uwsgipy_extra],
            "http",
            available=lambda: _import_reason(py, "uwsgipy._core"),
        )
        # The cost of the request log (written to /dev/null, so only the
        # formatting and the write(2) are measured): the plain line, and one
        # JSON object a line (log-req-encoder = json) with a request id.
        for name, flags, note in (
                ("uwsgipy-log", [], "access log on, plain line, to /dev/null"),
                ("uwsgipy-jsonlog", ["--log-req-encoder", "json", "--request-id"],
                 "access log on, log-req-encoder = json and request-id, to /dev/null")):
            specs[name] = ServerSpec(
                name,
                lambda p, flags=flags: [py, "-m", "uwsgipy", "--http-socket", f"127.0.0.1:{p}",
                                        "--wsgi-file", app, "--processes", "1", "--threads", "1",
                                        "--logto", "/dev/null", *flags, *uwsgipy_extra],
                "http",
                note=note,
                available=lambda: _import_reason(py, "uwsgipy._core"),
            )
        # uWSGI 2.0 has no keep-alive on plain --http-socket: the "http"
        # protocol closes after every response (proto/http.c).  Its choices:
        #   http11  --http11-socket: keep-alive, but a core keeps serving the
        #           connection it holds until that client goes idle
        #           (proto/http.c uwsgi_proto_http11_accept), so 1 process x
        #           1 thread serves ONE of wrk's connections at a time.
        #   router  --http + --http-keepalive: the HTTP router (separate
        #           process, evented) keeps client connections alive and talks
        #           uwsgi to the worker; 3 processes (master, router, worker).
        #   close   --http-socket + "Connection: close": a new TCP connection
        #           per request, announced so wrk reconnects without errors.
        http11 = ServerSpec(
            "uwsgi-http11",
            lambda p: [args.uwsgi, "--http11-socket", f"127.0.0.1:{p}", *uwsgi_common],
            "http", signal.SIGINT,
            note="--http11-socket: keep-alive; 1 worker core serves one "
                 "connection at a time, the other connections wait",
            available=lambda: _exe_reason(args.uwsgi),
        )
        router = ServerSpec(
            "uwsgi-router",
            lambda p: [args.uwsgi, "--master", "--http", f"127.0.0.1:{p}",
                       "--http-keepalive", *uwsgi_common],
            "http", signal.SIGINT,
            note="--http router with --http-keepalive in front of 1 worker "
                 "(master + router + worker processes, all on the server CPU)",
            available=lambda: _exe_reason(args.uwsgi),
        )
        close = ServerSpec(
            "uwsgi-close",
            lambda p: [args.uwsgi, "--http-socket", f"127.0.0.1:{p}",
                       "--add-header", "Connection: close", *uwsgi_common],
            "http", signal.SIGINT,
            note="--http-socket (no keep-alive in uWSGI 2.0) + "
                 "'Connection: close': one TCP connection per request",
            available=lambda: _exe_reason(args.uwsgi),
        )
        variants = {"http11": http11, "router": router, "close": close}
        chosen = variants[args.uwsgi_http_mode]
        specs["uwsgi"] = ServerSpec(
            "uwsgi", chosen.argv, chosen.protocol, chosen.stop_signal,
            note=f"mode {args.uwsgi_http_mode}: {chosen.note}",
            available=chosen.available,
        )
        specs.update({s.name: s for s in variants.values()})
        specs["bjoern"] = ServerSpec(
            "bjoern",
            lambda p: [py, str(BJOERN_LAUNCHER), app, "127.0.0.1", str(p)],
            "http",
            note="bjoern.run(app, host, port); keep-alive built in",
            available=lambda: _import_reason(py, "bjoern"),
        )
        specs["fastwsgi"] = ServerSpec(
            "fastwsgi",
            lambda p: [py, str(FASTWSGI_LAUNCHER), app, "127.0.0.1", str(p)],
            "http",
            note="fastwsgi.run(app, host, port) (libuv, one thread)",
            available=lambda: _import_reason(py, "fastwsgi"),
        )
        if args.ref_python:
            specs["uwsgipy-ref"] = ServerSpec(
                "uwsgipy-ref",
                lambda p: [args.ref_python, "-m", "uwsgipy", "--http-socket",
                           f"127.0.0.1:{p}", "--wsgi-file", app, "--processes", "1",
                           "--threads", "1", "--disable-logging", *uwsgipy_extra],
                "http",
                note=f"uwsgipy as {args.ref_python} imports it (a reference build)",
                available=lambda: _import_reason(args.ref_python, "uwsgipy._core"),
            )
        if args.baseline_tree:
            specs["uwsgipy-base"] = baseline_tree_spec(args, "--http-socket", "http")
        specs["uwsgipy-t4"] = ServerSpec(
            "uwsgipy-t4",
            lambda p: [py, "-m", "uwsgipy", "--http-socket", f"127.0.0.1:{p}",
                       "--wsgi-file", app, "--processes", "1", "--threads", "4",
                       "--disable-logging", *uwsgipy_extra],
            "http",
            note="--threads 4: the loop hands requests to a pool of 4 app threads",
            available=lambda: _import_reason(py, "uwsgipy._core"),
        )
    elif scenario == "nginx-uwsgi":
        specs["uwsgipy"] = ServerSpec(
            "uwsgipy",
            lambda p: [py, "-m", "uwsgipy", "--socket", f"127.0.0.1:{p}",
                       "--wsgi-file", app, "--processes", "1", "--threads", "1",
                       "--disable-logging", *uwsgipy_extra],
            "uwsgi",
            available=lambda: _import_reason(py, "uwsgipy._core"),
        )
        if args.ref_python:
            specs["uwsgipy-ref"] = ServerSpec(
                "uwsgipy-ref",
                lambda p: [args.ref_python, "-m", "uwsgipy", "--socket", f"127.0.0.1:{p}",
                           "--wsgi-file", app, "--processes", "1", "--threads", "1",
                           "--disable-logging", *uwsgipy_extra],
                "uwsgi",
                note=f"uwsgipy as {args.ref_python} imports it (a reference build)",
                available=lambda: _import_reason(args.ref_python, "uwsgipy._core"),
            )
        if args.baseline_tree:
            specs["uwsgipy-base"] = baseline_tree_spec(args, "--socket", "uwsgi")
        specs["uwsgipy-t4"] = ServerSpec(
            "uwsgipy-t4",
            lambda p: [py, "-m", "uwsgipy", "--socket", f"127.0.0.1:{p}",
                       "--wsgi-file", app, "--processes", "1", "--threads", "4",
                       "--disable-logging", *uwsgipy_extra],
            "uwsgi",
            note="--threads 4: the loop hands requests to a pool of 4 app threads",
            available=lambda: _import_reason(py, "uwsgipy._core"),
        )
        specs["uwsgi"] = ServerSpec(
            "uwsgi",
            lambda p: [args.uwsgi, "--socket", f"127.0.0.1:{p}", *uwsgi_common],
            "uwsgi", signal.SIGINT,
            note="--socket (uwsgi protocol)",
            available=lambda: _exe_reason(args.uwsgi),
        )
        specs["bjoern"] = ServerSpec(
            "bjoern", lambda p: [], "uwsgi",
            available=lambda: "bjoern does not speak the uwsgi protocol "
                              "(not applicable behind uwsgi_pass)",
        )
    elif scenario in STATIC_SCENARIOS:
        # The same directory mapped at STATIC_PREFIX by every server; the app
        # is loaded too (a static hit must not reach it), logging off.
        static_map = ["--static-map", f"{STATIC_PREFIX}={args.static_root}"]
        specs["uwsgipy"] = ServerSpec(
            "uwsgipy",
            lambda p: [py, "-m", "uwsgipy", "--http-socket", f"127.0.0.1:{p}",
                       *static_map, "--wsgi-file", app, "--processes", "1",
                       "--threads", "1", "--disable-logging", *uwsgipy_extra],
            "http",
            note="static-map served by the C core (sendfile), keep-alive",
            available=lambda: _import_reason(py, "uwsgipy._core"),
        )
        specs["nginx"] = ServerSpec(
            "nginx", lambda p: [], "http", signal.SIGTERM,
            note="1 worker, `location /static/ { alias DIR/; }`, sendfile on, "
                 "tcp_nopush on (Debian's default), access_log off, no open_file_cache",
            available=lambda: (None if os.path.exists(args.nginx)
                               else f"`{args.nginx}` not found (apt-get install -y nginx)"),
            argv_in=lambda p, tmp: nginx_static_argv(args, tmp, p),
        )
        # uWSGI's --http-socket closes the connection after every response,
        # static ones included, without announcing it: wrk reconnects and
        # counts one "read" socket error per request.  Measured as it is.
        specs["uwsgi"] = ServerSpec(
            "uwsgi",
            lambda p: [args.uwsgi, "--http-socket", f"127.0.0.1:{p}", *static_map,
                       *uwsgi_common],
            "http", signal.SIGINT,
            note="--http-socket + static-map: closes the connection after every "
                 "response (no keep-alive in uWSGI 2.0's http protocol; wrk counts "
                 "a read error per request and reconnects)",
            available=lambda: _exe_reason(args.uwsgi),
        )
        specs["uwsgi-http11"] = ServerSpec(
            "uwsgi-http11",
            lambda p: [args.uwsgi, "--http11-socket", f"127.0.0.1:{p}", *static_map,
                       *uwsgi_common],
            "http", signal.SIGINT,
            note="--http11-socket + static-map: keep-alive, but the one worker core "
                 "serves one connection at a time",
            available=lambda: _exe_reason(args.uwsgi),
        )
        specs["bjoern"] = ServerSpec(
            "bjoern", lambda p: [], "http",
            available=lambda: "bjoern has no static file serving",
        )
    else:  # pragma: no cover - argparse restricts choices
        raise ValueError(scenario)
    return specs


def cgi_server_specs(args: argparse.Namespace, scenario: str) -> dict[str, ServerSpec]:
    """fastcgi-nginx and scgi-nginx (issue 12): the WSGI hello behind nginx's fastcgi_pass
    or scgi_pass, uwsgipy's and uWSGI's own FastCGI/SCGI listeners (uWSGI's option names:
    --fastcgi-socket, --scgi-socket), one process, one thread, no request log.  FastCGI
    rows come in pairs: nginx with fastcgi_keep_conn off (a new upstream connection per
    request, FCGI_KEEP_CONN clear: the app server closes after END_REQUEST) and on (an
    upstream keepalive pool, FCGI_KEEP_CONN set: the connection carries the next request)."""
    proto = CGI_SCENARIOS[scenario]
    opt = f"--{proto}-socket"
    app = str(args.app)
    py = args.python
    uwsgipy_extra = list(args.uwsgipy_arg or [])
    # The core speaks the protocol when it has its constant (csrc/upy_proto.h, issue 12).
    const = {"fastcgi": "PROTO_FASTCGI", "scgi": "PROTO_SCGI"}[proto]
    core_check = f"assert hasattr(c, {const!r}), 'this build of the core has no {proto}'"
    keeps = (False, True) if proto == "fastcgi" else (False,)
    specs: dict[str, ServerSpec] = {}
    for keep in keeps:
        suffix = "-keepconn" if keep else ""
        nginx_note = (" (nginx: fastcgi_keep_conn on, upstream keepalive "
                      f"{NGINX_UPSTREAM_KEEPALIVE})" if keep else
                      " (nginx: fastcgi_keep_conn off, one upstream connection per request)"
                      if proto == "fastcgi" else " (nginx: one upstream connection per request)")
        specs[f"uwsgipy{suffix}"] = ServerSpec(
            f"uwsgipy{suffix}",
            lambda p: [py, "-m", "uwsgipy", opt, f"127.0.0.1:{p}", "--wsgi-file", app,
                       "--processes", "1", "--threads", "1", "--disable-logging",
                       *uwsgipy_extra],
            proto,
            note=f"{opt}{nginx_note}",
            available=lambda: _import_reason(py, "uwsgipy._core as c", core_check),
            nginx_keep_conn=keep,
        )
        specs[f"uwsgi{suffix}"] = ServerSpec(
            f"uwsgi{suffix}",
            lambda p: [args.uwsgi, opt, f"127.0.0.1:{p}", "--wsgi-file", app,
                       "--processes", "1", "--threads", "1", "--disable-logging"],
            proto, signal.SIGINT,
            note=f"{opt}{nginx_note}",
            available=lambda: _exe_reason(args.uwsgi),
            nginx_keep_conn=keep,
        )
    specs["bjoern"] = ServerSpec(
        "bjoern", lambda p: [], proto,
        available=lambda: f"bjoern does not speak {proto} (not applicable behind "
                          f"{proto}_pass)",
    )
    return specs


def asgi_server_specs(args: argparse.Namespace, scenario: str) -> dict[str, ServerSpec]:
    """The ASGI rows (issue 10): the same app module for every server, one process (or a
    master and one worker), one event loop, uvloop, no access log."""
    sc = ASGI_SCENARIOS[scenario]
    py = args.asgi_python
    mod = sc.module
    app_file = str(APPS_DIR / f"{mod}.py")
    uwsgi_proto = sc.protocol == "uwsgi"
    uwsgipy_extra = list(args.uwsgipy_arg or [])
    specs: dict[str, ServerSpec] = {}

    def peer(dist: str) -> Callable[[], Optional[str]]:
        return lambda: _import_reason(py, dist)

    specs["uwsgipy"] = ServerSpec(
        "uwsgipy",
        lambda p: [py, "-m", "uwsgipy", "--socket" if uwsgi_proto else "--http-socket",
                   f"127.0.0.1:{p}", "--wsgi-file", app_file, "--asgi", "true",
                   "--loop", "uvloop", "--processes", "1", "--threads", "1",
                   "--disable-logging", *uwsgipy_extra],
        sc.protocol,
        note="asgi = true, loop = uvloop, the C core's ASGI runner"
             + (" on a uwsgi socket" if uwsgi_proto else ""),
        available=lambda: _import_reason(
            py, "uwsgipy._core as c",
            "assert hasattr(c.Server, 'asgi_setup'), 'this build of the core has no ASGI'"),
    )
    if args.baseline_tree:
        tree = args.baseline_tree
        specs["uwsgipy-base"] = ServerSpec(
            "uwsgipy-base",
            lambda p: ["env", f"PYTHONPATH={tree}", *specs["uwsgipy"].argv(p)],
            sc.protocol,
            note=f"uwsgipy from the tree {tree} (git {args.baseline_tree_rev}), started there: "
                 "the baseline build beside this tree's",
            available=lambda: _tree_reason(py, tree),
            cwd=tree,
        )
    if scenario == "asgi-hello":
        # The same server on the WSGI hello (bench/apps/hello.py, same body and headers):
        # what the ASGI path costs over WSGI, in the same run.
        specs["uwsgipy-wsgi"] = ServerSpec(
            "uwsgipy-wsgi",
            lambda p: [py, "-m", "uwsgipy", "--http-socket", f"127.0.0.1:{p}",
                       "--wsgi-file", str(HELLO_APP), "--processes", "1", "--threads", "1",
                       "--disable-logging", *uwsgipy_extra],
            "http",
            note="the WSGI hello (bench/apps/hello.py) on the same server: the ASGI "
                 "path's cost over WSGI",
            available=lambda: _import_reason(py, "uwsgipy._core"),
        )
    if uwsgi_proto:
        # Only gunicorn among the peers reads the uwsgi protocol (27.0: its own `asgi`
        # worker with --protocol uwsgi, gunicorn/asgi/uwsgi.py).
        for name in ("uvicorn", "granian", "socketify"):
            specs[name] = ServerSpec(
                name, lambda p: [], "uwsgi",
                available=lambda name=name: f"{name} does not speak the uwsgi protocol "
                                            "(not applicable behind uwsgi_pass)")
    else:
        for name, ws in (("uvicorn", "websockets"), ("uvicorn-sansio", "websockets-sansio")):
            specs[name] = ServerSpec(
                name,
                lambda p, ws=ws: [py, "-m", "uvicorn", "--app-dir", str(APPS_DIR), f"{mod}:app",
                                  "--host", "127.0.0.1", "--port", str(p), "--loop", "uvloop",
                                  "--http", "httptools", "--ws", ws, "--no-access-log",
                                  "--log-level", "warning"],
                "http",
                note=f"uvloop + httptools, --ws {ws}, one process",
                available=peer("uvicorn"),
            )
        specs["granian"] = ServerSpec(
            "granian",
            lambda p: [py, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
                       "--port", str(p), "--workers", "1", "--runtime-threads", "1",
                       "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
                       "--working-dir", str(APPS_DIR), f"{mod}:app"],
            "http",
            note="--interface asgi, 1 worker process (forked by granian's main process), "
                 "1 runtime thread, uvloop",
            available=peer("granian"),
            master=True,
        )
        specs["socketify"] = ServerSpec(
            "socketify",
            # socketify imports APP from sys.path: the apps dir goes first.
            lambda p: ["env", f"PYTHONPATH={APPS_DIR}", py, "-m", "socketify", f"{mod}:app",
                       "--host", "127.0.0.1", "--port", str(p), "--interface", "asgi",
                       "--workers", "1"],
            "http",
            note="--interface asgi, 1 worker (one process: uWebSockets + its libuv loop)",
            available=peer("socketify"),
        )
    specs["gunicorn"] = ServerSpec(
        "gunicorn",
        lambda p: [py, "-m", "gunicorn", "-k", "asgi", "-w", "1", "-b", f"127.0.0.1:{p}",
                   "--chdir", str(APPS_DIR), "--asgi-loop", "uvloop", "--log-level", "warning",
                   *(["--protocol", "uwsgi"] if uwsgi_proto else []), f"{mod}:app"],
        sc.protocol,
        note="-k asgi (gunicorn's own asyncio ASGI worker), 1 worker under the arbiter, "
             "--asgi-loop uvloop" + (", --protocol uwsgi" if uwsgi_proto else ""),
        available=peer("gunicorn"),
        master=True,
    )
    return specs


def build_wsload() -> tuple[Optional[Path], Optional[str]]:
    """Compile bench/wsload.c (no dependencies) into a temp dir, once per source change;
    returns (binary, None) or (None, why not)."""
    if not shutil.which("gcc"):
        return None, "`gcc` not found (apt-get install -y gcc): ws-echo needs bench/wsload.c built"
    digest = hashlib.sha256(WSLOAD_SRC.read_bytes()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / "uwsgipy-bench" / f"wsload-{digest}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", str(out), str(WSLOAD_SRC)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f"building bench/wsload.c failed:\n{proc.stderr}"
    return out, None


# --------------------------------------------------------------------------
# Processes, ports, readiness
# --------------------------------------------------------------------------

def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the kernel picks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu: int, argv: list[str]) -> list[str]:
    """`taskset` execs the command, so the pid we get is the server's."""
    return ["taskset", "-c", str(cpu), *argv]


def _read_http_response(sock: socket.socket) -> tuple[int, bytes]:
    """Read one response framed by Content-Length (or by close)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before end of head: {buf[:200]!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    m = re.match(rb"HTTP/1\.[01] (\d{3})", status_line)
    if not m:
        raise ConnectionError(f"bad status line {status_line[:100]!r}")
    clen = None
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            clen = int(v.strip())
    while clen is None or len(body) < clen:
        chunk = sock.recv(65536)
        if not chunk:
            if clen is None:
                break
            raise ConnectionError("closed before end of body")
        body += chunk
    return int(m.group(1)), body


def _uwsgi_packet(port: int, path: str = "/") -> bytes:
    """A uwsgi protocol request (modifier1 0) for GET `path`, as nginx sends it."""
    env = {
        "REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path,
        "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(port),
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "1", "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "", "CONTENT_LENGTH": "",
    }
    body = b"".join(
        len(k).to_bytes(2, "little") + k.encode() + len(v).to_bytes(2, "little") + v.encode()
        for k, v in env.items()
    )
    return b"\x00" + len(body).to_bytes(2, "little") + b"\x00" + body


def _cgi_vars(port: int, path: str) -> dict[str, str]:
    """The CGI vars of GET `path`, as nginx's fastcgi_params / scgi_params give them
    (the subset an app server reads)."""
    return {
        "REQUEST_METHOD": "GET", "REQUEST_URI": path, "DOCUMENT_URI": path,
        "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_SCHEME": "http",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(port), "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "1", "HTTP_HOST": "127.0.0.1", "CONTENT_TYPE": "",
        "CONTENT_LENGTH": "",
    }


# FastCGI 1.0 (the specification's names): record types, the responder role, the flag.
FCGI_VERSION_1 = 1
FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6
FCGI_RESPONDER = 1
FCGI_KEEP_CONN = 1


def _fcgi_record(rtype: int, content: bytes, request_id: int = 1) -> bytes:
    """One record: the 8-byte header, the content, padding to a multiple of 8 (as nginx
    pads)."""
    pad = -len(content) % 8
    return (bytes((FCGI_VERSION_1, rtype)) + request_id.to_bytes(2, "big")
            + len(content).to_bytes(2, "big") + bytes((pad, 0)) + content + bytes(pad))


def _fcgi_length(n: int) -> bytes:
    """A name-value pair length: one byte below 128, else four with the top bit set."""
    return bytes((n,)) if n < 128 else (n | 0x80000000).to_bytes(4, "big")


def fastcgi_request(port: int, path: str = "/", keep_conn: bool = False) -> bytes:
    """A whole responder request for GET `path`, as nginx sends it: BEGIN_REQUEST,
    PARAMS, the empty PARAMS, the empty STDIN (no body)."""
    params = b"".join(_fcgi_length(len(k)) + _fcgi_length(len(v)) + k + v
                      for k, v in ((k.encode(), v.encode())
                                   for k, v in _cgi_vars(port, path).items()))
    begin = (FCGI_RESPONDER.to_bytes(2, "big")
             + bytes((FCGI_KEEP_CONN if keep_conn else 0,)) + bytes(5))
    return (_fcgi_record(FCGI_BEGIN_REQUEST, begin) + _fcgi_record(FCGI_PARAMS, params)
            + _fcgi_record(FCGI_PARAMS, b"") + _fcgi_record(FCGI_STDIN, b""))


def read_fastcgi_response(sock: socket.socket) -> tuple[int, bytes, int]:
    """Read records up to END_REQUEST: (status, body, appStatus) from the STDOUT stream
    in CGI form."""
    buf, stdout = b"", b""
    while True:
        while len(buf) >= 8:
            clen, pad = int.from_bytes(buf[4:6], "big"), buf[6]
            if len(buf) < 8 + clen + pad:
                break
            rtype, content = buf[1], buf[8:8 + clen]
            buf = buf[8 + clen + pad:]
            if rtype == FCGI_STDOUT:
                stdout += content
            elif rtype == FCGI_END_REQUEST:
                status, body = parse_cgi_response(stdout)
                return status, body, int.from_bytes(content[:4], "big")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before END_REQUEST ({len(stdout)} bytes of STDOUT)")
        buf += chunk


def scgi_request(port: int, path: str = "/") -> bytes:
    """GET `path` over SCGI: the netstring of NUL-separated vars, CONTENT_LENGTH first and
    SCGI=1, as nginx sends it (no body)."""
    cgi = _cgi_vars(port, path)
    del cgi["CONTENT_LENGTH"]
    env = {"CONTENT_LENGTH": "0", "SCGI": "1", **cgi}
    head = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in env.items())
    return str(len(head)).encode() + b":" + head + b","


def parse_cgi_response(data: bytes) -> tuple[int, bytes]:
    """A CGI-form response (FastCGI's STDOUT, SCGI's reply): a "Status: 200 OK" field
    (200 when absent, RFC 3875 §6.3.3), fields, a blank line, the body (cut at
    Content-Length when there is one)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"no end of head in the CGI response: {data[:200]!r}")
    status, clen = 200, None
    for line in head.split(b"\r\n"):
        k, _, v = line.partition(b":")
        name = k.strip().lower()
        if name == b"status":
            status = int(v.split()[0])
        elif name == b"content-length":
            clen = int(v.strip())
    return status, (body if clen is None else body[:clen])


def probe(port: int, protocol: str, timeout: float = 2.0, path: str = "/") -> tuple[int, bytes]:
    """One real request; returns (status, body).  Closes the connection at
    once: uWSGI's http11 core would otherwise stay parked on it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if protocol == "http":
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Connection: close\r\n\r\n".encode())
        elif protocol == "fastcgi":
            s.sendall(fastcgi_request(port, path))
            return read_fastcgi_response(s)[:2]
        elif protocol == "scgi":
            s.sendall(scgi_request(port, path))
            data = b""
            while True:  # SCGI: the server closes after the response
                chunk = s.recv(65536)
                if not chunk:
                    return parse_cgi_response(data)
                data += chunk
        else:
            s.sendall(_uwsgi_packet(port, path))
        return _read_http_response(s)


def head_content_length(port: int, path: str, timeout: float = 2.0) -> tuple[int, Optional[int]]:
    """HEAD `path` over HTTP: (status, Content-Length or None).  Checks that
    a static scenario's big file is what the server would send, without
    reading 100 MiB."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Connection: close\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    head = buf.partition(b"\r\n\r\n")[0].split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head[0])
    status = int(m.group(1)) if m else 0
    for line in head[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length" and v.strip().isdigit():
            return status, int(v)
    return status, None


class Proc:
    """A child process we started, with its log file; stopped by pid only."""

    def __init__(self, name: str, argv: list[str], log_path: Path,
                 stop_signal: int = signal.SIGTERM, cwd: Optional[Path] = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.stop_signal = stop_signal
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            cwd=str(cwd or REPO_DIR),
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self) -> Optional[int]:
        """Signal our pid, wait, then SIGKILL it and any descendants left
        (all of them started by this process, found through /proc)."""
        if self.alive():
            descendants = tree_pids(self.pid)[1:]
            try:
                os.kill(self.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait()
            for pid in descendants:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()
        return self.popen.returncode


def wait_ready(proc: Proc, port: int, protocol: str,
               timeout: float = READY_TIMEOUT_S, path: str = "/",
               expect: bytes = EXPECTED_BODY) -> Optional[str]:
    """Poll with real requests for `path` until a 200 with the body `expect`
    (the hello body, or a static scenario's 1 KiB file: the app would answer
    a missed static path with the hello body, so that cannot pass); returns
    an error string if the server died or never answered."""
    deadline = time.monotonic() + timeout
    last_err = "no attempt"
    while time.monotonic() < deadline:
        if not proc.alive():
            return (f"{proc.name} exited with {proc.popen.returncode} before "
                    f"answering:\n{proc.log_tail()}")
        try:
            status, body = probe(port, protocol, path=path)
            if status == 200 and body == expect:
                return None
            last_err = f"status {status}, body {body[:80]!r}"
        except OSError as e:
            last_err = repr(e)
        time.sleep(POLL_INTERVAL_S)
    return f"{proc.name} did not answer within {timeout}s (last: {last_err}):\n{proc.log_tail()}"


# --------------------------------------------------------------------------
# CPU accounting from /proc
# --------------------------------------------------------------------------

def _stat_fields(pid: int) -> Optional[list[str]]:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def tree_pids(root: int) -> list[int]:
    """root followed by all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        f = _stat_fields(int(entry))
        if f:
            children.setdefault(int(f[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_split(root: int, skip_root: bool = False) -> tuple[float, float]:
    """(user, system) seconds of the tree's live processes, each including
    what they already reaped (cutime, cstime).  Fields 14-17 of proc(5),
    0-based 11-14 here.  skip_root: the descendants only (a master's workers)."""
    user = system = 0
    for pid in tree_pids(root)[1 if skip_root else 0:]:
        f = _stat_fields(pid)
        if f:
            user += int(f[11]) + int(f[13])
            system += int(f[12]) + int(f[14])
    return user / CLK_TCK, system / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    return sum(tree_cpu_split(root))


def machine_busy_seconds() -> float:
    """CPU-seconds all CPUs spent in user, nice and system (/proc/stat).
    irq/softirq are left out: loopback TCP work lands there and is ours."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system = (int(x) for x in fields[1:4])
    return (user + nice + system) / CLK_TCK


def wait_for_quiet(threshold: float, max_wait: float) -> tuple[float, float]:
    """Before a measurement, wait (bounded) for a 0.5 s window in which the
    machine's busy CPU is below `threshold` cores: other work on this 2-CPU
    box (builds, tests) shows up directly in req/s.  Returns (seconds
    waited, busy cores in the last window)."""
    start = time.monotonic()
    while True:
        b0, t0 = machine_busy_seconds(), time.monotonic()
        time.sleep(0.5)
        load = (machine_busy_seconds() - b0) / (time.monotonic() - t0)
        waited = time.monotonic() - start
        if load < threshold or waited >= max_wait:
            return waited, load


def machine_steal_seconds() -> float:
    """CPU-seconds the hypervisor took from this VM (steal, /proc/stat)."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8]) / CLK_TCK


def children_cpu_seconds() -> float:
    """utime+stime of our reaped children so far (wrk, after it exits)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# How long `perf stat` gets to attach and answer a control command.
PERF_ATTACH_TIMEOUT_S = 5.0


@dataclass
class TaskClock:
    """A `perf stat -e task-clock` attached to the worker, counting between the
    "enable" and "disable" it acknowledged on its control fifos."""

    proc: Proc
    ctl: int  # our write end of its control fifo
    ack: int  # our read end of its ack fifo
    out: Path


def _perf_command(tc: "TaskClock", command: bytes) -> bool:
    """Send perf a control command and wait (bounded) for its "ack"."""
    os.write(tc.ctl, command + b"\n")
    deadline = time.monotonic() + PERF_ATTACH_TIMEOUT_S
    got = b""
    while time.monotonic() < deadline and tc.proc.alive():
        try:
            got += os.read(tc.ack, 64)
        except BlockingIOError:
            pass
        if b"ack" in got:
            return True
        time.sleep(0.001)
    return False


def start_task_clock(args: argparse.Namespace, tmp: Path, pids: list[int]) -> Optional[TaskClock]:
    """`perf stat -e task-clock -p PIDS` (the worker process(es) and their threads, perf
    pinned to the client CPU), started with its counter off (-D -1) and switched on
    through its control fifo, so the count starts when this returns, not when perf got
    round to attaching.  None when it could not (the figure is then left out)."""
    ctl_path, ack_path, out = tmp / "perf-ctl.fifo", tmp / "perf-ack.fifo", tmp / "perf-stat.txt"
    for f in (ctl_path, ack_path):
        f.unlink(missing_ok=True)
        os.mkfifo(f)
    # Both ends non-blocking on our side: opening the ack fifo to read never waits; the
    # control fifo opens for writing once perf opened it to read (ENXIO until then).
    ack = os.open(ack_path, os.O_RDONLY | os.O_NONBLOCK)
    proc = Proc("perf", pinned(args.client_cpu, [
        args.perf, "stat", "-e", "task-clock", "-x", ",", "-o", str(out), "-D", "-1",
        "--control", f"fifo:{ctl_path},{ack_path}", "-p", ",".join(map(str, pids))]),
        tmp / "perf.log", signal.SIGINT)
    deadline = time.monotonic() + PERF_ATTACH_TIMEOUT_S
    ctl = -1
    while ctl < 0 and time.monotonic() < deadline and proc.alive():
        try:
            ctl = os.open(ctl_path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(POLL_INTERVAL_S)
    if ctl >= 0:
        tc = TaskClock(proc, ctl, ack, out)
        if _perf_command(tc, b"enable"):
            return tc
        os.close(ctl)
    os.close(ack)
    proc.stop()
    return None


def stop_task_clock(tc: TaskClock) -> Optional[float]:
    """Switch the counter off (acknowledged), then SIGINT perf, which writes its count
    and exits; the task-clock in ms, or None."""
    stopped = _perf_command(tc, b"disable")
    os.close(tc.ctl)
    os.close(tc.ack)
    tc.proc.stop()
    text = tc.out.read_text(errors="replace") if tc.out.exists() else ""
    m = re.search(r"^([\d.]+),msec,task-clock,", text, re.M)
    return float(m.group(1)) if m and stopped else None


# --------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------

_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _to_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unparsed wrk latency {text!r}")
    return float(m.group(1)) * _UNITS_US[m.group(2)]


def duration_seconds(text: str) -> float:
    """wrk's -d syntax: a number with an optional s/m/h suffix (seconds)."""
    m = re.fullmatch(r"([\d.]+)([smh]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (e.g. 10s, 1m)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_wrk(out: str) -> dict:
    """Pick req/s, percentiles, totals and error counts from `wrk --latency`."""
    res: dict = {"non2xx": 0, "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    res["rps"] = float(m.group(1)) if m else None
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)([KMGT]?)B read",
                  out, re.M)
    if m:
        res["requests"] = int(m.group(1))
        res["elapsed_s"] = _to_us(m.group(2) + m.group(3)) / 1e6
        # wrk prints binary units (units.c: 1 KB = 1024 B), 3 significant digits.
        res["bytes_read"] = float(m.group(4)) * 1024 ** ("KMGT".find(m.group(5)) + 1
                                                          if m.group(5) else 0)
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+(?:us|ms|s|m))", out, re.M)
        res[f"p{pct}_us"] = _to_us(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, m.groups())))
    return res


def parse_wsload(out: str) -> dict:
    """Pick messages/s, percentiles, totals and errors from bench/wsload.c's
    "key: value" lines, under the names parse_wrk uses (a message is a request)."""
    kv = dict(re.findall(r"^([\w./]+): (\S+)$", out, re.M))
    res: dict = {"non2xx": 0, "socket_errors": {"ws": int(kv.get("errors", 0))}}
    res["rps"] = float(kv["Messages/sec"]) if "Messages/sec" in kv else None
    if "messages" in kv:
        res["requests"] = int(kv["messages"])
        res["elapsed_s"] = float(kv["elapsed_s"])
    for pct in ("50", "75", "90", "99"):
        v = kv.get(f"latency_p{pct}_us")
        res[f"p{pct}_us"] = float(v) if v is not None else None
    return res


def scenario_connections(args: argparse.Namespace, scenario: str) -> int:
    """wrk -c (wsload -c): the option, else the scenario's own default."""
    if args.connections is not None:
        return args.connections
    if scenario in ASGI_SCENARIOS:
        return ASGI_SCENARIOS[scenario].connections
    return STATIC_SCENARIOS[scenario].connections if scenario in STATIC_SCENARIOS else 50


def scenario_path(scenario: str) -> str:
    """The URL path wrk fetches."""
    if scenario in STATIC_SCENARIOS:
        return f"{STATIC_PREFIX}/{STATIC_SCENARIOS[scenario].name}"
    return "/"


def uses_wsload(scenario: str) -> bool:
    return scenario in ASGI_SCENARIOS and ASGI_SCENARIOS[scenario].client == "wsload"


def wrk_argv(args: argparse.Namespace, scenario: str, port: int, duration: str) -> list[str]:
    """The load generator's command line: wrk, or bench/wsload.c for WebSocket echo."""
    if uses_wsload(scenario):
        return pinned(args.client_cpu, [
            str(args.wsload), "-c", str(scenario_connections(args, scenario)),
            "-d", f"{duration_seconds(duration):g}", "-s", str(args.ws_message_size),
            "-p", scenario_path(scenario), "127.0.0.1", str(port),
        ])
    return pinned(args.client_cpu, [
        "wrk", f"-t{args.wrk_threads}", f"-c{scenario_connections(args, scenario)}",
        f"-d{duration}", "--latency", f"http://127.0.0.1:{port}{scenario_path(scenario)}",
    ])


# --------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------

NGINX_CONF_HEAD = """\
# Generated by bench/run.py for one measurement; deleted afterwards.
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
"""

# nginx as the static server of the static scenarios: the same directory as
# the others, the file's stat for headers, sendfile for the body.
NGINX_STATIC_CONF = NGINX_CONF_HEAD + """\
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port};
        location {prefix}/ {{
            alias {root}/;
        }}
    }}
}}
"""

NGINX_CONF = NGINX_CONF_HEAD + """\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            uwsgi_param QUERY_STRING $query_string;
            uwsgi_param REQUEST_METHOD $request_method;
            uwsgi_param CONTENT_TYPE $content_type;
            uwsgi_param CONTENT_LENGTH $content_length;
            uwsgi_param REQUEST_URI $request_uri;
            uwsgi_param PATH_INFO $document_uri;
            uwsgi_param DOCUMENT_ROOT $document_root;
            uwsgi_param SERVER_PROTOCOL $server_protocol;
            uwsgi_param REQUEST_SCHEME $scheme;
            uwsgi_param HTTPS $https if_not_empty;
            uwsgi_param REMOTE_ADDR $remote_addr;
            uwsgi_param REMOTE_PORT $remote_port;
            uwsgi_param SERVER_PORT $server_port;
            uwsgi_param SERVER_NAME $server_name;
            uwsgi_param HTTP_HOST $host;
            uwsgi_pass 127.0.0.1:{upstream};
        }}
    }}
}}
"""


# fastcgi-nginx with keep_conn: idle upstream connections nginx's worker keeps (upstream
# `keepalive`); more than wrk's 50 connections can have in flight, so none is closed for
# lack of room.  `keepalive_requests` there: nginx's default (1000, since 1.15.3) would
# close every upstream connection after 1000 requests, a reconnect the scenario is not about.
NGINX_UPSTREAM_KEEPALIVE = 64

# Debian's /etc/nginx/fastcgi_params and scgi_params (nginx 1.22.1), inlined as the
# uwsgi_params above: what `include fastcgi_params;` gives, with HTTP_HOST as $host; then
# the lines nginx-conf/fastcgi-tcp.conf and scgi-tcp.conf add for a WSGI app at /
# (SCRIPT_NAME "", the last one sent wins; PATH_INFO).
NGINX_FASTCGI_PARAMS = """\
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param DOCUMENT_ROOT $document_root;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param REQUEST_SCHEME $scheme;
            fastcgi_param HTTPS $https if_not_empty;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_PORT $remote_port;
            fastcgi_param REMOTE_USER $remote_user;
            fastcgi_param SERVER_ADDR $server_addr;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param REDIRECT_STATUS 200;
            fastcgi_param HTTP_HOST $host;
            fastcgi_param SCRIPT_NAME "";
            fastcgi_param PATH_INFO $document_uri;
"""
NGINX_SCGI_PARAMS = """\
            scgi_param REQUEST_METHOD $request_method;
            scgi_param REQUEST_URI $request_uri;
            scgi_param QUERY_STRING $query_string;
            scgi_param CONTENT_TYPE $content_type;
            scgi_param DOCUMENT_URI $document_uri;
            scgi_param DOCUMENT_ROOT $document_root;
            scgi_param SCGI 1;
            scgi_param SERVER_PROTOCOL $server_protocol;
            scgi_param REQUEST_SCHEME $scheme;
            scgi_param HTTPS $https if_not_empty;
            scgi_param REMOTE_ADDR $remote_addr;
            scgi_param REMOTE_PORT $remote_port;
            scgi_param SERVER_PORT $server_port;
            scgi_param SERVER_NAME $server_name;
            scgi_param HTTP_HOST $host;
            scgi_param PATH_INFO $document_uri;
"""


def nginx_cgi_conf(protocol: str, tmp: Path, port: int, upstream: int,
                   keep_conn: bool) -> str:
    """nginx in front of a FastCGI or SCGI listener: the Debian params, fastcgi_pass or
    scgi_pass; for FastCGI with keep_conn, an upstream block with a keepalive pool and
    `fastcgi_keep_conn on` (nginx sets FCGI_KEEP_CONN and reuses the connection)."""
    params = NGINX_FASTCGI_PARAMS if protocol == "fastcgi" else NGINX_SCGI_PARAMS
    if keep_conn:
        upstream_block = (f"    upstream app {{\n        server 127.0.0.1:{upstream};\n"
                          f"        keepalive {NGINX_UPSTREAM_KEEPALIVE};\n"
                          "        keepalive_requests 100000000;\n    }\n")
        passing = f"            {protocol}_pass app;\n            fastcgi_keep_conn on;\n"
    else:
        upstream_block = ""
        passing = f"            {protocol}_pass 127.0.0.1:{upstream};\n"
    return (NGINX_CONF_HEAD.format(tmp=tmp) + upstream_block
            + f"    server {{\n        listen 127.0.0.1:{port};\n        location / {{\n"
            + params + passing + "        }\n    }\n}\n")


# An nginx error-log line at level error or worse.
NGINX_ERROR_LINE = re.compile(rb"^\S+ \S+ \[(?:error|crit|alert|emerg)\]", re.M)


def make_static_root() -> Path:
    """A temp dir with every static scenario's file (random bytes, so no
    layer can shortcut a run of zeros), readable by nginx's `nobody` worker.
    The caller removes it."""
    root = Path(tempfile.mkdtemp(prefix="bench-static-"))
    os.chmod(root, 0o755)
    block = os.urandom(1024 * 1024)
    for f in STATIC_SCENARIOS.values():
        with open(root / f.name, "wb") as out:
            left = f.size
            while left:
                n = min(left, len(block))
                out.write(block[:n])
                left -= n
        os.chmod(root / f.name, 0o644)
    return root


def nginx_static_argv(args: argparse.Namespace, tmp: Path, port: int) -> list[str]:
    """Writes the static scenarios' nginx config into `tmp`; nginx's argv."""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_STATIC_CONF.format(tmp=tmp, port=port, prefix=STATIC_PREFIX,
                                             root=args.static_root))
    # nginx running as root switches its worker to `nobody`; let it in.
    os.chmod(tmp, 0o755)
    return [args.nginx, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "nginx-error.log")]


def start_nginx(args: argparse.Namespace, tmp: Path, upstream: int, protocol: str = "uwsgi",
                keep_conn: bool = False) -> tuple[Proc, int, Optional[str]]:
    """nginx in front of the app server's `protocol` listener at `upstream` (uwsgi_pass,
    fastcgi_pass, scgi_pass); returns (nginx, its HTTP port, error or None)."""
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, upstream=upstream)
                    if protocol == "uwsgi"
                    else nginx_cgi_conf(protocol, tmp, port, upstream, keep_conn))
    # nginx running as root switches its worker to `nobody`; let it in.
    os.chmod(tmp, 0o755)
    argv = pinned(args.nginx_cpu, [args.nginx, "-p", str(tmp), "-c", str(conf),
                                   "-e", str(tmp / "nginx-error.log")])
    proc = Proc("nginx", argv, tmp / "nginx.log", signal.SIGTERM)
    err = wait_ready(proc, port, "http")
    return proc, port, err


# --------------------------------------------------------------------------
# One measurement
# --------------------------------------------------------------------------

@dataclass
class Measurement:
    scenario: str
    server: str
    round: int
    ok: bool
    error: str = ""
    server_argv: list[str] = field(default_factory=list)
    wrk_argv: list[str] = field(default_factory=list)
    rps: Optional[float] = None
    requests: Optional[int] = None
    elapsed_s: Optional[float] = None
    p50_us: Optional[float] = None
    p75_us: Optional[float] = None
    p90_us: Optional[float] = None
    p99_us: Optional[float] = None
    non2xx: int = 0
    socket_errors: dict = field(default_factory=dict)
    bytes_read: Optional[float] = None  # wrk's "N read" (3 significant digits)
    gb_per_s: Optional[float] = None  # static-100m: requests x file size / elapsed, 1e9 B/s
    server_cpu_s: Optional[float] = None
    server_cpu_us_per_req: Optional[float] = None
    server_user_us_per_req: Optional[float] = None
    server_sys_us_per_req: Optional[float] = None
    server_cpu_util: Optional[float] = None  # fraction of one core
    client_cpu_util: Optional[float] = None  # wrk's CPU over the run, fraction of one core
    nginx_cpu_us_per_req: Optional[float] = None
    # Lines at level error or worse nginx logged during the wrk run (upstream resets,
    # premature closes: nginx may retry them and still answer 200, so wrk does not see them).
    nginx_errors: int = 0
    # --perf-task-clock: `perf stat -e task-clock` on the worker process(es) over the wrk
    # run (a software counter in ns: no 10 ms ticks), per request.
    task_clock_us_per_req: Optional[float] = None
    # The worker process(es) only: the tree less a master (ServerSpec.master), else the
    # same as server_cpu_us_per_req.
    worker_cpu_us_per_req: Optional[float] = None
    # CPU-seconds per second of wall time used on the machine by processes
    # other than the server, nginx and wrk: noise from whatever else runs.
    other_cpu_util: Optional[float] = None
    steal_util: Optional[float] = None  # cores taken by the hypervisor
    quiet_wait_s: Optional[float] = None
    uwsgipy_core: str = ""
    load_before: Optional[float] = None  # busy cores just before the start
    server_alive_after: Optional[bool] = None
    server_log_tail: str = ""
    nginx_log_tail: str = ""
    wrk_output: str = ""


def measure(args: argparse.Namespace, scenario: str, spec: ServerSpec, rnd: int) -> Measurement:
    m = Measurement(scenario, spec.name, rnd, ok=False)
    if spec.name == "uwsgipy":
        m.uwsgipy_core = uwsgipy_core_id(args.python)
    if args.quiet_wait > 0:
        m.quiet_wait_s, m.load_before = wait_for_quiet(args.quiet_threshold, args.quiet_wait)
    with tempfile.TemporaryDirectory(prefix=f"bench-{spec.name}-") as tmpdir:
        tmp = Path(tmpdir)
        port = free_port()
        m.server_argv = pinned(args.server_cpu, spec.argv_in(port, tmp) if spec.argv_in
                               else spec.argv(port))
        server = Proc(spec.name, m.server_argv, tmp / "server.log", spec.stop_signal,
                      cwd=spec.cwd)
        nginx: Optional[Proc] = None
        static = STATIC_SCENARIOS.get(scenario)
        try:
            if static:
                # Ready = the 1 KiB file comes back byte for byte (not the
                # app's hello body); then the file wrk fetches has its size.
                err = wait_ready(server, port, spec.protocol,
                                 path=f"{STATIC_PREFIX}/{STATIC_SCENARIOS['static-1k'].name}",
                                 expect=(args.static_root / STATIC_SCENARIOS["static-1k"].name)
                                 .read_bytes())
                if not err:
                    status, length = head_content_length(port, scenario_path(scenario))
                    if (status, length) != (200, static.size):
                        err = (f"HEAD {scenario_path(scenario)}: status {status}, "
                               f"Content-Length {length}, expected 200 and {static.size}")
            else:
                err = wait_ready(server, port, spec.protocol)
            if err:
                m.error = err
                return m
            target = port
            if scenario in NGINX_SCENARIOS:
                nginx, target, err = start_nginx(args, tmp, port, spec.protocol,
                                                 spec.nginx_keep_conn)
                if err:
                    errlog = tmp / "nginx-error.log"
                    tail = errlog.read_text(errors="replace")[-2000:] if errlog.exists() else ""
                    m.error = f"nginx: {err}\n{tail}"
                    return m
            if args.warmup > 0:
                subprocess.run(wrk_argv(args, scenario, target, f"{args.warmup}s"),
                               capture_output=True, text=True, timeout=args.warmup + WRK_GRACE_S)
                if not server.alive():
                    m.error = f"{spec.name} died during warm-up:\n{server.log_tail()}"
                    return m
            m.wrk_argv = wrk_argv(args, scenario, target, args.duration)
            split0 = tree_cpu_split(server.pid)
            cpu0 = sum(split0)
            work0 = sum(tree_cpu_split(server.pid, skip_root=True)) if spec.master else cpu0
            ng0 = tree_cpu_seconds(nginx.pid) if nginx else 0.0
            errlog = tmp / "nginx-error.log"
            errlog_at = errlog.stat().st_size if nginx and errlog.exists() else 0
            perf = (start_task_clock(args, tmp, tree_pids(server.pid)[1 if spec.master else 0:])
                    if args.perf_task_clock else None)
            busy0, kids0 = machine_busy_seconds(), children_cpu_seconds()
            steal0 = machine_steal_seconds()
            t0 = time.monotonic()
            wrk = subprocess.run(m.wrk_argv, capture_output=True, text=True,
                                 timeout=duration_seconds(args.duration) + WRK_GRACE_S)
            wall = time.monotonic() - t0
            task_clock_ms = stop_task_clock(perf) if perf else None
            split1 = tree_cpu_split(server.pid)
            cpu1 = sum(split1)
            work1 = sum(tree_cpu_split(server.pid, skip_root=True)) if spec.master else cpu1
            ng1 = tree_cpu_seconds(nginx.pid) if nginx else 0.0
            busy1, kids1 = machine_busy_seconds(), children_cpu_seconds()
            if nginx and errlog.exists():
                with open(errlog, "rb") as f:
                    f.seek(errlog_at)
                    m.nginx_errors = len(NGINX_ERROR_LINE.findall(f.read()))
            m.steal_util = (machine_steal_seconds() - steal0) / wall
            ours = (cpu1 - cpu0) + (ng1 - ng0) + (kids1 - kids0)
            m.client_cpu_util = (kids1 - kids0) / wall
            m.other_cpu_util = max(0.0, (busy1 - busy0) - ours) / wall
            m.wrk_output = wrk.stdout + wrk.stderr
            m.server_alive_after = server.alive()
            client = "wsload" if uses_wsload(scenario) else "wrk"
            if wrk.returncode != 0:
                m.error = f"{client} exited {wrk.returncode}: {m.wrk_output[-2000:]}"
                return m
            parse = parse_wsload if uses_wsload(scenario) else parse_wrk
            for k, v in parse(wrk.stdout).items():
                setattr(m, k, v)
            m.server_cpu_s = cpu1 - cpu0
            m.server_cpu_util = m.server_cpu_s / wall
            if static and m.requests and m.elapsed_s:
                # Completed responses x file size: wrk's "read" has 3 digits only.
                m.gb_per_s = m.requests * static.size / m.elapsed_s / 1e9
            if m.requests:
                m.server_cpu_us_per_req = m.server_cpu_s * 1e6 / m.requests
                m.server_user_us_per_req = (split1[0] - split0[0]) * 1e6 / m.requests
                m.server_sys_us_per_req = (split1[1] - split0[1]) * 1e6 / m.requests
                m.worker_cpu_us_per_req = (work1 - work0) * 1e6 / m.requests
                if task_clock_ms is not None:
                    m.task_clock_us_per_req = task_clock_ms * 1e3 / m.requests
                if nginx:
                    m.nginx_cpu_us_per_req = (ng1 - ng0) * 1e6 / m.requests
            if not m.server_alive_after:
                m.error = (f"{spec.name} exited during the run (rc {server.popen.returncode}); "
                           f"wrk saw non-2xx {m.non2xx}, socket errors {m.socket_errors}:\n"
                           f"{server.log_tail()}")
            m.ok = m.rps is not None and m.server_alive_after
            return m
        finally:
            if nginx:
                nginx.stop()
                errlog = tmp / "nginx-error.log"
                if errlog.exists():
                    m.nginx_log_tail = "\n".join(errlog.read_text(errors="replace").splitlines()[-30:])
            server.stop()
            m.server_log_tail = server.log_tail(30)


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def _median(values: list) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarise(ms: list[Measurement]) -> dict:
    ok = [m for m in ms if m.ok]
    errs = {"non2xx": sum(m.non2xx for m in ok)}
    for k in ("connect", "read", "write", "timeout", "ws"):
        errs[k] = sum(m.socket_errors.get(k, 0) for m in ok)
    errs["nginx error log"] = sum(m.nginx_errors for m in ok)
    return {
        "rounds_ok": len(ok),
        "rounds": len(ms),
        "rps": _median([m.rps for m in ok]),
        "rps_best": max((m.rps for m in ok if m.rps is not None), default=None),
        "p50_us": _median([m.p50_us for m in ok]),
        "p99_us": _median([m.p99_us for m in ok]),
        "cpu_us_per_req": _median([m.server_cpu_us_per_req for m in ok]),
        "cpu_util": _median([m.server_cpu_util for m in ok]),
        "client_cpu_util": _median([m.client_cpu_util for m in ok]),
        "user_us_per_req": _median([m.server_user_us_per_req for m in ok]),
        "sys_us_per_req": _median([m.server_sys_us_per_req for m in ok]),
        "nginx_cpu_us_per_req": _median([m.nginx_cpu_us_per_req for m in ok]),
        "worker_cpu_us_per_req": _median([m.worker_cpu_us_per_req for m in ok]),
        "task_clock_us_per_req": _median([m.task_clock_us_per_req for m in ok]),
        "gb_per_s": _median([m.gb_per_s for m in ok]),
        "other_cpu_util_max": max((m.other_cpu_util or 0.0 for m in ok), default=None),
        "rps_rounds": [m.rps for m in ok],
        "errors": errs,
        "failures": [m.error for m in ms if not m.ok],
    }


def _fmt_us(us: Optional[float]) -> str:
    if us is None:
        return "-"
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def _fmt(v: Optional[float], spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render_table(scenario: str, summary: dict, baseline: str) -> str:
    base = summary.get(baseline, {})
    b_rps, b_cpu = base.get("rps"), base.get("cpu_us_per_req")
    nginx = scenario in NGINX_SCENARIOS
    bulk = scenario == "static-100m"
    asgi = scenario in ASGI_SCENARIOS
    b_gbs = base.get("gb_per_s")
    rate = "msg/s" if uses_wsload(scenario) else "req/s"
    unit = "msg" if uses_wsload(scenario) else "req"
    head = ["server", rate, f"{rate} best", "p50", "p99", f"CPU µs/{unit}", "user+sys µs"]
    if asgi:
        # Without a master (gunicorn's arbiter, granian's main process): the same figure.
        head.append(f"worker CPU µs/{unit}")
    task_clock = any(s.get("task_clock_us_per_req") for s in summary.values())
    if task_clock:
        head.append(f"task-clock µs/{unit}")
    head.append("server CPU %")
    if nginx:
        head.append(f"nginx CPU µs/{unit}")
    static = scenario in STATIC_SCENARIOS
    if static or asgi:
        # Near 100: the load generator (wrk's copy of every byte, its reconnects; wsload)
        # was the ceiling.
        head.append("wsload CPU %" if uses_wsload(scenario) else "wrk CPU %")
    if bulk:
        head += ["GB/s", f"GB/s vs {baseline}"]
    head += [f"{rate} vs {baseline}", f"CPU/{unit} vs {baseline}", "errors",
             "other load % (max)", "rounds ok"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summary.items():
        if "skipped" in s:
            row = [name] + ["-"] * (len(head) - 2) + [f"skipped: {s['skipped']}"]
            row[-2] = "-"
            rows.append("| " + " | ".join(row) + " |")
            continue
        e = s["errors"]
        err = ", ".join(f"{k} {v}" for k, v in e.items() if v) or "0"
        rps_ratio = f"{s['rps'] / b_rps:.2f}×" if s["rps"] and b_rps else "n/a"
        cpu_ratio = (f"{s['cpu_us_per_req'] / b_cpu:.2f}×"
                     if s["cpu_us_per_req"] and b_cpu else "n/a")
        row = [name, _fmt(s["rps"], ",.0f"), _fmt(s["rps_best"], ",.0f"), _fmt_us(s["p50_us"]), _fmt_us(s["p99_us"]),
               _fmt(s["cpu_us_per_req"], ".1f"),
               ("-" if s["user_us_per_req"] is None else
                f"{s['user_us_per_req']:.1f}+{s['sys_us_per_req']:.1f}")]
        if asgi:
            row.append(_fmt(s.get("worker_cpu_us_per_req"), ".1f"))
        if task_clock:
            row.append(_fmt(s.get("task_clock_us_per_req"), ".1f"))
        row.append(_fmt(None if s["cpu_util"] is None else s["cpu_util"] * 100, ".0f"))
        if nginx:
            row.append(_fmt(s["nginx_cpu_us_per_req"], ".1f"))
        if static or asgi:
            row.append(_fmt(None if s.get("client_cpu_util") is None
                            else s["client_cpu_util"] * 100, ".0f"))
        if bulk:
            row += [_fmt(s["gb_per_s"], ".2f"),
                    f"{s['gb_per_s'] / b_gbs:.2f}×" if s["gb_per_s"] and b_gbs else "n/a"]
        other = s.get("other_cpu_util_max")
        row += [rps_ratio, cpu_ratio, err, _fmt(None if other is None else other * 100, ".0f"),
                f"{s['rounds_ok']}/{s['rounds']}"]
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


# The issues' speed goals: (scenario, metric, numerator, denominators, goal, direction).
# Several denominators: the best of them (the highest rate, the lowest CPU) that ran.
# Issue 9 (static) and issue 10 (ASGI).
GOALS = (
    ("static-1k", "rps", "uwsgipy", ("nginx",), 0.9, ">="),
    ("static-1k", "rps", "uwsgipy", ("uwsgi",), 2.0, ">="),
    ("static-100m", "gb_per_s", "uwsgipy", ("nginx",), 0.95, ">="),
    ("asgi-hello", "rps", "uwsgipy", ("uvicorn", "granian", "socketify"), 2.0, ">="),
    ("starlette-hello", "rps", "uwsgipy", ("uvicorn",), 1.5, ">="),
    ("ws-echo", "rps", "uwsgipy", ("uvicorn",), 2.0, ">="),
    ("asgi-nginx-uwsgi", "worker_cpu_us_per_req", "uwsgipy", ("gunicorn",), 0.25, "<="),
    # Issue 12: behind fastcgi_pass, uwsgipy's worker CPU/request ≤ 0.75× uWSGI's
    # --fastcgi-socket (keep_conn off against off; on against uWSGI's leanest, since
    # uWSGI 2.0 closes after every response whatever FCGI_KEEP_CONN says), and
    # keep_conn on cheaper than off.
    # Every row is one process: CPU µs/req is the worker's.
    ("fastcgi-nginx", "cpu_us_per_req", "uwsgipy", ("uwsgi",), 0.75, "<="),
    ("fastcgi-nginx", "cpu_us_per_req", "uwsgipy-keepconn", ("uwsgi", "uwsgi-keepconn"),
     0.75, "<="),
    ("fastcgi-nginx", "cpu_us_per_req", "uwsgipy-keepconn", ("uwsgipy",), 1.0, "<"),
)


def baseline_lines(summary: dict, tolerance: float) -> list[str]:
    """This tree's uwsgipy against uwsgipy-base (--baseline-tree), same run: new ÷ old for
    req/s and CPU µs/request (and perf's task-clock when measured), and whether
    CPU/request stayed within the tolerance."""
    new, old = summary.get("uwsgipy", {}), summary["uwsgipy-base"]
    if not new.get("rps") or not new.get("cpu_us_per_req") or not old.get("cpu_us_per_req"):
        return ["uwsgipy ÷ uwsgipy-base: n/a (no figure for uwsgipy: skipped or failed)"]
    out = []
    for key, what in (("cpu_us_per_req", "CPU µs/req"), ("task_clock_us_per_req",
                                                          "task-clock µs/req")):
        if not new.get(key) or not old.get(key):
            continue
        r = new[key] / old[key]
        out.append(f"uwsgipy ÷ uwsgipy-base (new ÷ old core): req/s "
                   f"{new['rps'] / old['rps']:.3f}×, {what} {r:.3f}× ({new[key]:.1f} vs "
                   f"{old[key]:.1f}; no regression if ≤ {1 + tolerance:.2f}×: "
                   f"{'met' if r <= 1 + tolerance else 'NOT met'})")
    return out


def goal_lines(scenario: str, summary: dict, tolerance: float = 0.05) -> list[str]:
    """The issue's ratios (uwsgipy ÷ peer, from this run's medians) against
    their goals, plus CPU per request side by side."""
    out = []
    goals = [g for g in GOALS if g[0] == scenario]
    if any(s.get("task_clock_us_per_req") for s in summary.values()):
        # The same CPU goals again on perf's task-clock (--perf-task-clock).
        goals += [(g[0], "task_clock_us_per_req", *g[2:]) for g in goals
                  if g[1] == "cpu_us_per_req"]
    for scen, metric, num, dens, goal, direction in goals:
        a = summary.get(num, {}).get(metric)
        peers = [(summary[d][metric], d) for d in dens if summary.get(d, {}).get(metric)]
        label = (f"fastest of {', '.join(dens)}" if direction == ">="
                 else f"leanest of {', '.join(dens)}")
        if a and peers:
            b, den = max(peers) if direction == ">=" else min(peers)
            met = {">=": a / b >= goal, "<=": a / b <= goal, "<": a / b < goal}[direction]
            which = f" ({label})" if len(dens) > 1 else ""
            sign = {">=": "≥", "<=": "≤", "<": "<"}[direction]
            out.append(f"{num} ÷ {den}{which} {metric}: {a / b:.2f}× "
                       f"(goal {sign} {goal}×: {'met' if met else 'NOT met'})")
        else:
            missing = [n for n in (num, *dens) if not summary.get(n, {}).get(metric)]
            out.append(f"{num} ÷ {'/'.join(dens)} {metric}: n/a (no figure for "
                       f"{', '.join(missing)}: skipped or failed)")
    if scenario in BASELINE_TREE_SCENARIOS and summary.get("uwsgipy-base", {}).get("rps"):
        out.extend(baseline_lines(summary, tolerance))
    if scenario in STATIC_SCENARIOS or scenario in ASGI_SCENARIOS or scenario in CGI_SCENARIOS:
        key = "worker_cpu_us_per_req" if scenario in ASGI_SCENARIOS else "cpu_us_per_req"
        what = ("worker CPU µs/message" if uses_wsload(scenario)
                else "worker CPU µs/request" if scenario in ASGI_SCENARIOS
                else "server CPU µs/request")
        cpu = [f"{n} {s[key]:.1f}" for n, s in summary.items() if s.get(key)]
        if cpu:
            out.append(f"{what}: " + ", ".join(cpu))
    return out


def uwsgipy_core_id(python: str, tree: Optional[Path] = None) -> str:
    """sha256 prefix and mtime of the uwsgipy._core binary (of this checkout, or of
    another `tree`): the tree may be rebuilt while a run goes on, and a changed binary is
    a different server."""
    p = subprocess.run([python, "-c", "import uwsgipy._core as c; print(c.__file__)"],
                       capture_output=True, text=True, cwd=str(tree or REPO_DIR),
                       env={**os.environ, "PYTHONPATH": str(tree)} if tree else None)
    if p.returncode != 0:
        return "not importable"
    path = Path(p.stdout.strip())
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        mtime = _dt.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
    except OSError as e:
        return f"unreadable: {e}"
    return f"{digest} ({mtime})"


def _version(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not found"


def _py_dist_version(python: str, dist: str) -> str:
    p = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else "not installed"


# The ASGI rows' packages, whose versions the results record (from args.asgi_python).
ASGI_DISTS = ("uvicorn", "uvloop", "httptools", "websockets", "granian", "socketify",
              "gunicorn", "starlette")


def environment(args: argparse.Namespace) -> dict:
    env = _environment(args)
    if args.baseline_tree:
        env["baseline_tree"] = f"{args.baseline_tree} (git {args.baseline_tree_rev})"
        env["baseline_tree_core"] = uwsgipy_core_id(args.python, args.baseline_tree)
    if any(s in ASGI_SCENARIOS for s in args.scenario):
        env["asgi_python"] = f"{args.asgi_python} ({_version([args.asgi_python, '--version'])})"
        env["uwsgipy_core_asgi"] = uwsgipy_core_id(args.asgi_python)
        for dist in ASGI_DISTS:
            env[dist] = _py_dist_version(args.asgi_python, dist)
    return env


def _environment(args: argparse.Namespace) -> dict:
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": _version([args.python, "--version"]),
        "uwsgipy": _py_dist_version(args.python, "uwsgipy"),
        "uwsgipy_core": uwsgipy_core_id(args.python),
        "uwsgi": _version([args.uwsgi, "--version"]),
        "bjoern": _py_dist_version(args.python, "bjoern"),
        "nginx": _version([args.nginx, "-v"]),
        "wrk": _version(["wrk", "-v"]),
        "git_head": _version(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"]),
        "git_dirty_files": len(subprocess.run(
            ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "csrc", "uwsgipy"],
            capture_output=True, text=True).stdout.splitlines()),
    }


def write_results(args: argparse.Namespace, scenario: str, env: dict, specs: dict,
                  summary: dict, measurements: list[Measurement], table: str,
                  discarded: list[Measurement]) -> Path:
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{_dt.date.today().isoformat()}-{scenario}"
    md = args.results_dir / f"{stem}.md"
    raw = args.results_dir / f"{stem}.json"
    cmd = " ".join(["python", "bench/run.py", *sys.argv[1:]])
    if uses_wsload(scenario):
        client = (f"wsload (bench/wsload.c): `-c {scenario_connections(args, scenario)} "
                  f"-d {duration_seconds(args.duration):g} -s {args.ws_message_size} "
                  f"-p {scenario_path(scenario)} 127.0.0.1 PORT` (each connection: the "
                  "upgrade handshake, then one masked text message in flight at a time, "
                  "each echo checked byte for byte)")
    else:
        client = (f"wrk: `-t{args.wrk_threads} -c{scenario_connections(args, scenario)} "
                  f"-d{args.duration} --latency http://127.0.0.1:PORT{scenario_path(scenario)}`")
    asgi_notes = []
    if scenario in ASGI_SCENARIOS:
        asgi_notes = [
            f"App: `bench/apps/{ASGI_SCENARIOS[scenario].module}.py`, the same module for "
            f"every server, all run by `{env.get('asgi_python')}` (uwsgipy imported from this "
            "checkout). worker CPU: the worker process(es) only, without a master "
            "(gunicorn's arbiter, granian's main process); for single-process servers the "
            "same as CPU. " + ("A message is one echo round trip (sent and received back); "
                               "CPU per message is per round trip. "
                               if uses_wsload(scenario) else ""),
            "",
        ]
    if scenario in CGI_SCENARIOS:
        asgi_notes = [
            f"nginx (on the server CPU) `{CGI_SCENARIOS[scenario]}_pass` to the app server's "
            f"{CGI_SCENARIOS[scenario]} listener, Debian's {CGI_SCENARIOS[scenario]}_params "
            "inlined, then PATH_INFO $document_uri"
            + (' and SCRIPT_NAME ""' if scenario == "fastcgi-nginx" else "")
            + f" as in nginx-conf/{CGI_SCENARIOS[scenario]}-tcp.conf. "
            + ("`-keepconn` rows: `fastcgi_keep_conn on` with an upstream `keepalive "
               f"{NGINX_UPSTREAM_KEEPALIVE}` pool (FCGI_KEEP_CONN set, the connection "
               "reused); the others: one upstream connection per request. "
               "uWSGI 2.0 closes the connection after END_REQUEST whatever FCGI_KEEP_CONN "
               "says (checked), so its -keepconn row is nginx trying to reuse and "
               "reconnecting. " if scenario == "fastcgi-nginx" else
               "SCGI has no keep-alive: one upstream connection per request. ")
            + "Every row is one process: CPU µs/req is the worker's.",
            "",
        ]
    lines = [
        f"# {scenario} — {env['date']}",
        "",
        f"Command: `{cmd}`  ",
        f"{client}, "
        f"warm-up {args.warmup}s, {args.rounds} rounds interleaved, medians shown.  ",
        f"Pinning: server CPU {args.server_cpu}, "
        f"{'wsload' if uses_wsload(scenario) else 'wrk'} CPU {args.client_cpu}"
        + (f", nginx CPU {args.nginx_cpu}" if scenario in NGINX_SCENARIOS else "") + ".  ",
        "req/s is the median over rounds, req/s best the best round (least disturbed). "
        "CPU µs/req: the app server's whole process tree (utime+stime, /proc) over the "
        "wrk run divided by requests completed. server CPU %: of one core. "
        "Ratios are server ÷ baseline (req/s: >1 means faster than baseline; "
        "CPU/req: >1 means more CPU than baseline). other load: CPU used during "
        "the run by anything but the server, nginx and wrk, in % of one core "
        "(worst round); above ~10% the req/s figures are disturbed.",
        *([f"Static: `{scenario_path(scenario)}`, a {STATIC_SCENARIOS[scenario].size:,}-byte "
            f"file in a temp dir every server maps at `{STATIC_PREFIX}` (page cache warm). "
            "GB/s: completed responses × file size ÷ wrk's elapsed time (10^9 B/s)."]
          if scenario in STATIC_SCENARIOS else []),
        "",
        *asgi_notes,
        table,
        "",
        *[f"- {line}" for line in goal_lines(scenario, summary, args.regression_tolerance)],
        *([""] if goal_lines(scenario, summary, args.regression_tolerance) else []),
        "Versions: " + ", ".join(f"{k} `{env[k]}`" for k in
                                  ("python", "uwsgipy", "uwsgipy_core", "git_head", "uwsgi",
                                   "bjoern", "nginx", "wrk",
                                   *(("baseline_tree", "baseline_tree_core")
                                     if "baseline_tree" in env else ())))
        + f"; uncommitted files in csrc/ and uwsgipy/: {env['git_dirty_files']}",
        *(["", "ASGI peers: " + ", ".join(f"{k} `{env[k]}`" for k in
                                          ("asgi_python", "uwsgipy_core_asgi", *ASGI_DISTS))]
          if scenario in ASGI_SCENARIOS else []),
        "",
        "Server command lines (port varies per run):",
        "",
    ]
    for name in summary:
        argv = next((m.server_argv for m in measurements if m.server == name and m.server_argv), None)
        note = specs[name].note if name in specs else ""
        if argv:
            lines.append(f"- {name}: `{' '.join(argv)}`" + (f" — {note}" if note else ""))
    if summary.get("uwsgipy", {}).get("core_changed"):
        lines += ["", "**uwsgipy._core was rebuilt during this run**: "
                  + ", ".join(summary["uwsgipy"]["core_changed"])]
    failures = [(n, f) for n, s in summary.items() for f in s.get("failures", [])]
    if failures:
        lines += ["", "Failures:", ""]
        for n, f in failures:
            lines.append(f"- {n}: " + f.strip().splitlines()[0] if f.strip() else f"- {n}: (no message)")
    md.write_text("\n".join(lines) + "\n")
    raw.write_text(json.dumps({
        "scenario": scenario, "environment": env, "args": {k: str(v) for k, v in vars(args).items()},
        "summary": summary, "measurements": [asdict(m) for m in measurements],
        "discarded_noisy": [asdict(m) for m in discarded],
    }, indent=2))
    return md


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark uwsgipy side by side with uWSGI and bjoern, and (ASGI "
                    "scenarios) uvicorn, granian, socketify and gunicorn (127.0.0.1 only).")
    p.add_argument("--scenario", action="append", choices=SCENARIOS,
                   help="scenario to run; repeatable (default: all)")
    p.add_argument("--servers", default=None,
                   help="comma-separated servers (default: " + ",".join(DEFAULT_SERVERS)
                        + "; for the static scenarios " + ",".join(STATIC_DEFAULT_SERVERS)
                        + "; for the ASGI ones " + ",".join(ASGI_DEFAULT_SERVERS)
                        + "; fastcgi-nginx: " + ",".join(CGI_DEFAULT_SERVERS["fastcgi-nginx"])
                        + "; scgi-nginx: " + ",".join(CGI_DEFAULT_SERVERS["scgi-nginx"])
                        + "; http-keepalive also knows uwsgi-http11, uwsgi-router, "
                          "uwsgi-close, static ones uwsgi-http11, ASGI HTTP ones "
                          "uvicorn-sansio, asgi-hello uwsgipy-wsgi; with --baseline-tree "
                          "http-keepalive and nginx-uwsgi uwsgipy-base)")
    p.add_argument("--baseline", default="uwsgipy", help="server the ratios divide by")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", "-d", default="10s", help="wrk -d per measurement")
    p.add_argument("--connections", "-c", type=int, default=None,
                   help="wrk -c (default: 50; static-100m: "
                        f"{STATIC_SCENARIOS['static-100m'].connections})")
    p.add_argument("--wrk-threads", "-t", type=int, default=1, help="wrk -t")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (0: none)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1, help="CPU for wrk")
    p.add_argument("--nginx-cpu", type=int, default=None,
                   help="CPU for nginx (default: the server CPU: nginx and the app "
                        "server are the serving side, wrk alone is the client)")
    p.add_argument("--uwsgi-http-mode", choices=("http11", "router", "close"), default="http11",
                   help="how `uwsgi` does HTTP in http-keepalive (default: %(default)s)")
    p.add_argument("--uwsgipy-arg", action="append", metavar="ARG",
                   help="extra argument for uwsgipy; repeatable (use --uwsgipy-arg=--x)")
    p.add_argument("--quiet-threshold", type=float, default=0.15,
                   help="busy cores below which the machine counts as quiet (default: %(default)s)")
    p.add_argument("--quiet-wait", type=float, default=120.0,
                   help="max seconds to wait for a quiet machine before each "
                        "measurement; 0 disables (default: %(default)s)")
    p.add_argument("--max-other-load", type=float, default=0.10,
                   help="a run during which other processes used more than this many "
                        "cores is measured again (default: %(default)s)")
    p.add_argument("--noisy-retries", type=int, default=2,
                   help="how many times a noisy run is measured again (default: %(default)s)")
    p.add_argument("--python", default=sys.executable, help="interpreter for uwsgipy/bjoern")
    p.add_argument("--asgi-python", default=DEFAULT_ASGI_PYTHON,
                   help="interpreter of the ASGI scenarios, every row (uwsgipy from this "
                        "checkout, uvicorn, granian, socketify, gunicorn): a venv with the "
                        "peers (bench/README.md; default: $BENCH_ASGI_PYTHON, else "
                        "/tmp/benchvenv/bin/python when it exists; now %(default)s)")
    p.add_argument("--ws-message-size", type=int, default=16,
                   help="ws-echo: bytes of each text message (default: %(default)s)")
    p.add_argument("--ref-python", default=None, metavar="PY",
                   help="adds server uwsgipy-ref: uwsgipy as PY imports it (e.g. a script "
                        "that cds into a checkout of an older commit with its extension "
                        "built in place), to compare builds side by side")
    p.add_argument("--baseline-tree", type=Path, default=None, metavar="DIR",
                   help="adds server uwsgipy-base to http-keepalive, nginx-uwsgi and the ASGI "
                        "hellos: uwsgipy from another checkout DIR (e.g. `git worktree add DIR COMMIT`, then "
                        "`python setup.py build_ext --inplace` there), run by --python from "
                        "DIR, beside this tree's uwsgipy; prints new ÷ old ratios")
    p.add_argument("--regression-tolerance", type=float, default=0.05, metavar="F",
                   help="with --baseline-tree: uwsgipy's CPU/request may exceed "
                        "uwsgipy-base's by this fraction (default: %(default)s)")
    p.add_argument("--uwsgi", default=default_uwsgi(),
                   help="the uWSGI binary (default: on PATH, else beside this Python; "
                        "now %(default)s)")
    p.add_argument("--perf-task-clock", action="store_true",
                   help="also measure the worker's CPU with `perf stat -e task-clock -p PID` "
                        "over each wrk run (ns resolution, not /proc's 10 ms ticks): a "
                        "task-clock µs/req column, and the CPU goals on it too")
    p.add_argument("--perf", default=shutil.which("perf") or "perf", help="the perf binary")
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--app", type=Path, default=HELLO_APP)
    p.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    p.add_argument("--no-write", action="store_true", help="print only, write no results")
    a = p.parse_args(argv)
    a.scenario = a.scenario or list(SCENARIOS)
    if a.nginx_cpu is None:
        a.nginx_cpu = a.server_cpu
    a.servers = (None if a.servers is None
                 else [s.strip() for s in a.servers.split(",") if s.strip()])
    a.baseline_tree_rev = ""
    if a.baseline_tree:
        a.baseline_tree = a.baseline_tree.resolve()
        if not (a.baseline_tree / "uwsgipy").is_dir():
            p.error(f"--baseline-tree {a.baseline_tree}: no uwsgipy/ package there")
        a.baseline_tree_rev = _version(["git", "-C", str(a.baseline_tree), "rev-parse",
                                        "--short", "HEAD"])
    try:
        duration_seconds(a.duration)
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    return a


def preflight(args: argparse.Namespace) -> Optional[str]:
    for exe in ("wrk", "taskset"):
        if not shutil.which(exe):
            return f"`{exe}` is required (apt-get install -y wrk util-linux)"
    if args.perf_task_clock and _exe_reason(args.perf):
        return f"--perf-task-clock: {_exe_reason(args.perf)} (apt-get install -y linux-perf)"
    ncpu = os.cpu_count() or 1
    for cpu in {args.server_cpu, args.client_cpu, args.nginx_cpu}:
        if cpu >= ncpu:
            return f"CPU {cpu} does not exist on this {ncpu}-CPU machine"
    if any(s in NGINX_SCENARIOS for s in args.scenario) and not os.path.exists(args.nginx):
        return "nginx-uwsgi needs nginx (apt-get install -y nginx); or pass --scenario http-keepalive"
    args.wsload = None
    if any(uses_wsload(s) for s in args.scenario):
        args.wsload, err = build_wsload()
        if err:
            return err
    return None


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    err = preflight(args)
    if err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    env = environment(args)
    print("environment: " + json.dumps(env))
    args.static_root = (make_static_root() if any(s in STATIC_SCENARIOS for s in args.scenario)
                        else None)
    try:
        return run_scenarios(args, env)
    finally:
        if args.static_root:
            shutil.rmtree(args.static_root, ignore_errors=True)


def run_scenarios(args: argparse.Namespace, env: dict) -> int:
    exit_code = 0
    for scenario in args.scenario:
        specs = server_specs(args, scenario)
        runnable: list[ServerSpec] = []
        summary: dict[str, dict] = {}
        names = list(args.servers or (
            STATIC_DEFAULT_SERVERS if scenario in STATIC_SCENARIOS
            else ASGI_DEFAULT_SERVERS if scenario in ASGI_SCENARIOS
            else CGI_DEFAULT_SERVERS[scenario] if scenario in CGI_SCENARIOS
            else DEFAULT_SERVERS))
        if (args.baseline_tree and not args.servers and scenario in BASELINE_TREE_SCENARIOS):
            names.insert(1, "uwsgipy-base")  # beside uwsgipy, unless --servers picks
        main_servers = (ASGI_MAIN_SERVERS if scenario in ASGI_SCENARIOS
                        else CGI_DEFAULT_SERVERS[scenario] if scenario in CGI_SCENARIOS
                        else MAIN_SERVERS)
        for name in names:
            spec = specs.get(name)
            if spec is None and name not in main_servers:
                print(f"[{scenario}] {name} is not defined for this scenario; ignored")
                continue
            reason = (f"unknown server for {scenario}" if spec is None else spec.available())
            if reason:
                print(f"[{scenario}] skipping {name}: {reason}")
                summary[name] = {"skipped": reason}
            else:
                runnable.append(spec)
                summary[name] = {}
        measurements: list[Measurement] = []
        discarded: list[Measurement] = []
        for rnd in range(args.rounds):
            # Rotate the order each round so no server always runs first.
            order = runnable[rnd % len(runnable):] + runnable[:rnd % len(runnable)] if runnable else []
            for spec in order:
                for attempt in range(args.noisy_retries + 1):
                    m = measure(args, scenario, spec, rnd)
                    noisy = m.ok and (m.other_cpu_util or 0) > args.max_other_load
                    if not noisy or attempt == args.noisy_retries:
                        break
                    print(f"[{scenario}] round {rnd + 1} {spec.name}: other load "
                          f"{m.other_cpu_util * 100:.0f}% during the run; measuring again", flush=True)
                    discarded.append(m)
                measurements.append(m)
                if m.ok:
                    errs = {k: v for k, v in m.socket_errors.items() if v}
                    unit = "msg" if uses_wsload(scenario) else "req"
                    print(f"[{scenario}] round {rnd + 1}/{args.rounds} {spec.name}: "
                          f"{m.rps:,.0f} {unit}/s, p50 {_fmt_us(m.p50_us)}, p99 {_fmt_us(m.p99_us)}, "
                          f"{_fmt(m.server_cpu_us_per_req, '.1f')} CPU µs/{unit}, "
                          f"CPU {_fmt((m.server_cpu_util or 0) * 100, '.0f')}%, "
                          f"other load {_fmt((m.other_cpu_util or 0) * 100, '.0f')}%, "
                          f"steal {_fmt((m.steal_util or 0) * 100, '.0f')}%"
                          + (f", non-2xx {m.non2xx}" if m.non2xx else "")
                          + (f", socket errors {errs}" if errs else "")
                          + (f", nginx error log {m.nginx_errors} lines" if m.nginx_errors
                             else ""), flush=True)
                else:
                    exit_code = 1
                    print(f"[{scenario}] round {rnd + 1}/{args.rounds} {spec.name}: FAILED: "
                          f"{m.error}", flush=True)
        for spec in runnable:
            summary[spec.name] = summarise([m for m in measurements if m.server == spec.name])
        cores = {m.uwsgipy_core for m in measurements if m.uwsgipy_core}
        if len(cores) > 1:
            print(f"WARNING [{scenario}]: uwsgipy._core changed during the run: {sorted(cores)}")
            summary.setdefault("uwsgipy", {})["core_changed"] = sorted(cores)
        table = render_table(scenario, summary, args.baseline)
        print(f"\n## {scenario}\n\n{table}\n")
        for line in goal_lines(scenario, summary, args.regression_tolerance):
            print(line)
        if not args.no_write:
            path = write_results(args, scenario, env, specs, summary, measurements, table,
                                 discarded)
            print(f"wrote {path} and {path.with_suffix('.json')}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
