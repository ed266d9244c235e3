"""Compatibility suite: uWSGI ini files in the shapes real deployments use, run unchanged.

Each file in tests/compat/ was written here (none is copied from a project) after the shapes
found in public deployments: Django and Flask behind nginx `uwsgi_pass` (TCP and unix
sockets), behind `proxy_pass`, Docker images configured by `UWSGI_*` variables, systemd units,
tutorials' "quick start" files.  Its header says how it is served and what it must print:

    ; serve: nginx-uwsgi-tcp | nginx-uwsgi-unix | nginx-proxy | http
    ; expect: PATH STATUS BODY-SUBSTRING
    ; warn: REGEX        (one per warning line it must print; no other warning is allowed)
    ; env: KEY=VALUE     (the environment the deployment supplies, e.g. a Dockerfile's ENV)
    ; args: ARG ...      (what the deployment's command line adds)

and it may use {PORT} {PORT2} {SOCK} {DIR} {APPS} for what differs per machine (listen
addresses, the scratch directory, this suite's apps).  A test starts a real uwsgipy on the
rendered file, serves the request through real nginx or straight over HTTP, and checks the
status, the body and the warning lines.
"""
from __future__ import annotations

import re
import shlex
import socket
from pathlib import Path
from typing import Dict, List

import pytest

from helpers import APPS, REPO, NginxProcess, ServerProcess, LIVE_SERVERS, free_port, http_request, \
    short_tmpdir, wait_until

COMPAT = Path(__file__).resolve().parent / "compat"
FILES = sorted(COMPAT.glob("*.ini"))
SERVE = {"nginx-uwsgi-tcp": "uwsgi-tcp.conf", "nginx-uwsgi-unix": "uwsgi-unix.conf",
         "nginx-proxy": "http-proxy.conf"}
WARNING_RE = re.compile(r"uwsgipy: WARNING: (.*)")


def header(text: str) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for line in text.splitlines():
        m = re.match(r"[;#]\s*(serve|expect|warn|env|args):\s*(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2).strip())
    return out


def test_there_are_at_least_40():
    assert len(FILES) >= 40, len(FILES)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_compat_ini(path, tmp_path, request):
    text = path.read_text()
    meta = header(text)
    assert meta.get("serve") and meta.get("expect"), f"{path.name}: header incomplete"
    serve = meta["serve"][0]
    port, port2 = free_port(), free_port()
    sdir = short_tmpdir("compat")
    values = {"{PORT}": str(port), "{PORT2}": str(port2), "{SOCK}": f"{sdir}/app.sock",
              "{DIR}": str(tmp_path), "{APPS}": str(APPS)}

    def render(s: str) -> str:
        for k, v in values.items():
            s = s.replace(k, v)
        return s

    ini = tmp_path / path.name
    ini.write_text(render(text))
    env = {}
    for item in meta.get("env", []):
        k, _, v = render(item).partition("=")
        env[k] = v
    args = [render(a) for a in shlex.split(" ".join(meta.get("args", [])))]
    # `args` naming an ini (file:section) replace the plain `uwsgipy FILE`
    argv = args if any(a.startswith("--ini") for a in args) else [str(ini), *args]
    # where the log goes when the file says so (logto, or a file: logger)
    m = re.search(r"^(?:logto|logger)\s*=\s*(?:file:)?(\S+)\s*$", ini.read_text(), re.M)
    logto = m.group(1) if m else None
    if logto and "%" in logto:
        logto = str(tmp_path / f"{path.stem}.log")  # %n: the file's own name
    srv = ServerProcess(argv, cwd=tmp_path, env=env, logto=logto)
    LIVE_SERVERS.append(srv)
    ngx = None
    try:
        srv.start()
        if serve in SERVE:
            upstream = values["{SOCK}"] if serve == "nginx-uwsgi-unix" else ("127.0.0.1", port)
            nginx_bin = request.getfixturevalue("nginx_bin")
            ngx = NginxProcess(nginx_bin, SERVE[serve], upstream, tmp_path / "nginx").start()
            target = ("127.0.0.1", ngx.port)
        else:
            target = ("127.0.0.1", port)
        for exp in meta["expect"]:
            want_path, want_status, want_body = (exp.split(None, 2) + [""])[:3]

            def ask():
                try:
                    r = http_request(target, "GET", want_path, headers=[("Host", "compat.test")])
                except OSError:
                    return None
                return r if r.status not in (502, 503, 504) else None
            r = wait_until(ask, 15, what=f"{want_path} through {serve}")
            assert r.status == int(want_status), (r.status, r.body[:300], srv.output()[-3000:])
            assert want_body.encode() in r.body, (r.body[:300], srv.output()[-3000:])
        warnings = [m.group(1) for m in map(WARNING_RE.search, srv.lines) if m]
        expected = [re.compile(w) for w in meta.get("warn", [])]
        unexpected = [w for w in warnings if not any(e.search(w) for e in expected)]
        missing = [e.pattern for e in expected if not any(e.search(w) for w in warnings)]
        assert not unexpected and not missing, \
            f"unexpected warnings: {unexpected}; expected but missing: {missing}"
        assert "Traceback" not in srv.output()
    finally:
        if ngx is not None:
            ngx.stop()
        rc = srv.stop()
        LIVE_SERVERS.remove(srv)
    assert rc == 0, srv.output()[-3000:]
