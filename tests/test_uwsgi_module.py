"""The `uwsgi` module (and `uwsgidecorators`) inside a real uwsgipy, as uWSGI provides them.

A probe app imports both, registers @postfork hooks and reports what it sees over HTTP; the
values must be the real ones: worker_id() the worker's number, numproc the configured
processes, masterpid() the master's pid, opt the resolved options as bytes (compared with real
uWSGI's where it is installed), post-fork hooks run in each worker, reload() makes the master
reload. Outside a serving uwsgipy `import uwsgi` fails, as it does outside uWSGI.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, ServerProcess, child_env, free_port, http_request, real_uwsgi, wait_until

PROBE = '''\
import json, os
import uwsgi
from uwsgidecorators import postfork, thread

RAN = []

@postfork
def record():
    RAN.append([os.getpid(), uwsgi.worker_id()])

@postfork(2)
def only_two():
    RAN.append(["only-two", uwsgi.worker_id()])

def jsonable(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/reload":
        out = {"reload": uwsgi.reload()}
    elif path == "/missing":
        try:
            uwsgi.cache_get("k")
            out = {"error": None}
        except AttributeError as exc:
            out = {"error": str(exc), "hasattr": hasattr(uwsgi, "cache_get")}
        try:
            import uwsgidecorators
            uwsgidecorators.timer(3)
        except NotImplementedError as exc:
            out["timer"] = str(exc)
    else:
        if "sleep" in environ["QUERY_STRING"]:
            import time
            time.sleep(0.3)  # holds this worker while another request comes in
        uwsgi.log("probe says hello")
        uwsgi.set_logvar("user", "alice")
        out = {"pid": os.getpid(), "worker_id": uwsgi.worker_id(), "numproc": uwsgi.numproc,
               "masterpid": uwsgi.masterpid(), "mule_id": uwsgi.mule_id(),
               "opt": {k: jsonable(v) for k, v in uwsgi.opt.items()},
               "version": uwsgi.version.decode(), "started_on": uwsgi.started_on,
               "ran": RAN, "logvar": uwsgi.get_logvar("user")}
    body = json.dumps(jsonable(out)).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''


@pytest.fixture
def probe(tmp_path) -> Path:
    path = tmp_path / "probe.py"
    path.write_text(PROBE)
    return path


def _get(addr, path="/") -> dict:
    resp = http_request(addr, "GET", path)
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


def _all_workers(addr, n) -> dict:
    """Requests n at a time, each holding its worker for 0.3 s, until all n
    single-threaded workers have answered."""
    from concurrent.futures import ThreadPoolExecutor
    seen = {}
    with ThreadPoolExecutor(n) as pool:
        for _ in range(20):
            for r in pool.map(lambda _: _get(addr, "/?sleep"), range(n)):
                seen[r["worker_id"]] = r
            if len(seen) == n:
                return seen
    raise AssertionError(f"only workers {sorted(seen)} answered")


def test_values_in_master_mode_are_real(probe, tmp_path):
    port = free_port()
    srv = ServerProcess(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", probe, "--master",
                         "--processes", "2", "--env", "A=1", "--env", "B=2"]).start()
    try:
        seen = _all_workers(srv.http_addr, 2)
        assert sorted(seen) == [1, 2]
        for wid, r in seen.items():
            assert r["numproc"] == 2
            assert r["masterpid"] == srv.pid
            assert r["pid"] != srv.pid
            assert r["mule_id"] == 0
            # the post-fork hooks ran in this very worker, with its number
            assert [r["pid"], wid] in r["ran"]
            assert (["only-two", 2] in r["ran"]) == (wid == 2)
            assert r["opt"] == {"http-socket": f"127.0.0.1:{port}", "wsgi-file": str(probe),
                                "master": True, "processes": "2", "env": "B=2"}
            assert r["logvar"] == "alice"
        assert srv.find("probe says hello")
        assert len([l for l in srv.output().splitlines() if "set_logvar" in l]) <= 2
    finally:
        assert srv.stop() == 0


def test_opt_and_ids_same_as_real_uwsgi(probe):
    port = free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(probe), "--master",
            "--processes", "2", "--env", "A=1", "--env", "B=2"]
    with real_uwsgi(args) as (addr, their_master):
        theirs = _all_workers(addr, 2)
    srv = ServerProcess(args).start()
    try:
        ours = _all_workers(srv.http_addr, 2)
    finally:
        srv.stop()
    assert sorted(theirs) == sorted(ours) == [1, 2]
    for wid in (1, 2):
        assert ours[wid]["opt"] == theirs[wid]["opt"]
        assert ours[wid]["numproc"] == theirs[wid]["numproc"] == 2
        assert (["only-two", 2] in ours[wid]["ran"]) == (["only-two", 2] in theirs[wid]["ran"])
        assert len(ours[wid]["ran"]) == len(theirs[wid]["ran"])
    assert theirs[1]["masterpid"] == their_master and ours[1]["masterpid"] == srv.pid


def test_single_process(probe):
    srv = ServerProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", probe]).start()
    try:
        r = _get(srv.http_addr)
        assert (r["worker_id"], r["masterpid"], r["numproc"]) == (1, 0, 1)
        assert r["pid"] == srv.pid
        assert r["ran"] == [[srv.pid, 1]]  # hooks ran once, before serving
        assert _get(srv.http_addr, "/reload") == {"reload": False}
        assert srv.wait_for(lambda l: "uwsgi.reload(): no master process" in l)
    finally:
        assert srv.stop() == 0


def test_missing_functions_are_named(probe):
    srv = ServerProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", probe]).start()
    try:
        r = _get(srv.http_addr, "/missing")
        assert r == {"error": "uwsgipy does not provide uwsgi.cache_get", "hasattr": False,
                     "timer": "uwsgipy does not provide uwsgidecorators.timer"}
    finally:
        assert srv.stop() == 0


def test_reload_asks_the_master(probe):
    srv = ServerProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", probe, "--master",
                         "--processes", "1"]).start()
    try:
        before = _get(srv.http_addr)
        mark = srv.mark()
        assert _get(srv.http_addr, "/reload") == {"reload": True}
        srv.wait_for("graceful reload", start=mark)

        def new_worker():
            r = _get(srv.http_addr)
            return r if r["pid"] != before["pid"] else None
        after = wait_until(new_worker, 20, what="a new worker after uwsgi.reload()")
        assert after["masterpid"] == srv.pid and after["worker_id"] == 1
        assert [after["pid"], 1] in after["ran"]
    finally:
        assert srv.stop() == 0


def test_import_uwsgi_fails_outside_a_serving_process():
    code = ("import uwsgipy.cli, uwsgipy.uwsgi_api\n"
            "try:\n    import uwsgi\nexcept ImportError:\n    print('no uwsgi')\n"
            "try:\n    import uwsgidecorators\nexcept ImportError:\n    print('no decorators')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60, env=child_env())
    assert out.stdout.split() == ["no", "uwsgi", "no", "decorators"], out.stderr
