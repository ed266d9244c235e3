"""Issue 7, the master's side: one request can no longer stop the server (item 3), privileges
in both modes (item 4), and the signal a worker gets when it is retired (item 6).

Real `python -m uwsgipy` processes on 127.0.0.1:0, real clients, the process tree and
/proc/PID/status read directly.  Readiness and recovery are polled (no sleeps); every wait is
bounded; only the processes started here are signalled.  The privilege tests need root and
create a throw-away user (and groups) for the session, removed at the end.
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import pytest

from helpers import child_env
from ops_helpers import Load, OpsServer, alive, http_get, poll
from test_master import BROKEN_APP, OPS_APP, master  # noqa: F401  (fixture)

# An app whose /exit?code=N calls os._exit(N) in the middle of a request, and whose / answers
# with the serving process's pid and its /proc/self/status credentials.
CRASH_APP = '''\
import os  # only modules uwsgipy has already imported: after a uid switch a Python installed
           # under /root (pyenv) cannot read the rest of its standard library

def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/exit":
        os._exit(int(environ.get("QUERY_STRING", "code=4").split("=")[1]))
    with open("/proc/self/status") as f:
        creds = ", ".join('"%s": [%s]' % (k, ", ".join('"%s"' % x for x in v.split()))
                          for k, _, v in (l.partition(":") for l in f)
                          if k in ("Uid", "Gid", "Groups"))
    body = ('{"version": "crash", "pid": %d, "creds": {%s}}\\n' % (os.getpid(), creds)).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.fixture
def world_dir():
    """A directory every user can traverse and read (pytest's tmp dirs are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="upyhm", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def crash_app(world_dir) -> Path:
    app = world_dir / "crash_app.py"
    app.write_text(CRASH_APP)
    app.chmod(0o644)
    return app


def served(port: int, timeout: float = 10.0):
    """The first successful reply to GET /, polled."""
    return poll(lambda: (r := http_get(port, "/", timeout=timeout)).ok and r, timeout,
                "a successful reply")


# ----------------------------------------------------------------------------------------------
# item 3: exit code 4 means "cannot load the app" only before the worker is ready
# ----------------------------------------------------------------------------------------------

def test_exit_4_in_a_request_is_a_crash_and_the_worker_is_respawned(master, crash_app):
    srv = master(app=crash_app)
    first = served(srv.port)
    mark = srv.mark()
    crashed = http_get(srv.port, "/exit?code=4")
    assert not crashed.ok  # the worker died mid-request: the connection closed without reply
    reply = served(srv.port)
    assert reply.pid != first.pid, "the reply came from the worker that exited"
    assert srv.proc.poll() is None, f"the master exited {srv.proc.returncode}:\n{srv.output()}"
    srv.wait_line(r"worker 1 \(pid %d\) exited with code 4 after [\d.]+s: respawning" % first.pid,
                  5, since=mark)
    assert not srv.find(r"failed to load|quick stop", since=mark), srv.output()


@pytest.mark.parametrize("code", [4, 1])
def test_six_crashing_requests_in_a_row_leave_no_gap(master, crash_app, code):
    """Before: the 4th death within 2 s of a spawn set a 1 s respawn back-off, the 5th 2 s, the
    6th 4 s, during which the service had no worker (exit code 4 even stopped the master)."""
    srv = master(app=crash_app)
    served(srv.port)
    gaps: List[float] = []
    for _ in range(6):
        assert not http_get(srv.port, f"/exit?code={code}").ok
        t0 = time.monotonic()
        reply = served(srv.port)
        gaps.append(reply.ended - t0)
    print(f"\n[hardening figure] exit code {code}: crash -> next reply, 6 in a row: "
          + ", ".join(f"{g * 1000:.0f} ms" for g in gaps))
    assert srv.proc.poll() is None, srv.output()
    assert max(gaps) < 1.0, f"gaps {gaps}: a respawn back-off after crashes in requests"
    assert not srv.find(r"die at start-up|failed to load"), srv.output()


def test_deaths_before_ready_still_back_off(master, world_dir):
    """The back-off still protects against a worker that cannot start (here: lazy-apps and an
    app that exits 3 while it is imported)."""
    app = world_dir / "dies.py"
    app.write_text("import os\nos._exit(3)\n")
    srv = master("--lazy-apps", app=app, ready=False)
    srv.wait_line(r"workers die at start-up \(3 in a row\): next respawn in 1s", 10)
    assert srv.find(r"exited with code 3 before it was ready")
    assert srv.proc.poll() is None


@pytest.mark.parametrize("lazy", [False, True], ids=["preload", "lazy-apps"])
def test_broken_import_still_stops_the_master_with_4(master, world_dir, lazy):
    args = ["--lazy-apps"] if lazy else []
    srv = master(*args, app=BROKEN_APP, ready=False, processes=2)
    assert srv.wait_exit(10) == 4, srv.output()
    assert "cannot load the application" in srv.output()
    # exit code 4 from a worker that never got ready is still a load failure, even without an
    # AppLoadError (an app calling os._exit(4) while it is imported)
    app = world_dir / "exit4.py"
    app.write_text("import os\nos._exit(4)\n")
    srv = master("--lazy-apps", app=app, ready=False)
    assert srv.wait_exit(10) == 4, srv.output()
    assert srv.find(r"exited with code 4 \(the app failed to load\)")


# ----------------------------------------------------------------------------------------------
# item 4: privileges, with and without --master
# ----------------------------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@pytest.fixture(scope="session")
def test_user():
    """A user `upytPID` whose primary group is `upytPID` and who is also a member of `upyxPID`
    (created with useradd for this session, removed afterwards)."""
    if os.geteuid() != 0:
        pytest.skip("creating a test user needs root")
    if not (shutil.which("useradd") or os.path.exists("/usr/sbin/useradd")):
        pytest.skip("useradd not available")
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    name, extra = f"upyt{os.getpid()}", f"upyx{os.getpid()}"
    subprocess.run(["groupadd", extra], check=True, env=env)
    try:
        subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", "-G", extra, name],
                       check=True, env=env)
        try:
            entry = pwd.getpwnam(name)
            yield {"name": name, "uid": entry.pw_uid, "gid": entry.pw_gid,
                   "extra": extra, "extra_gid": grp.getgrnam(extra).gr_gid}
        finally:
            subprocess.run(["userdel", name], env=env)
            subprocess.run(["groupdel", name], env=env, stderr=subprocess.DEVNULL)
    finally:
        subprocess.run(["groupdel", extra], env=env)


def proc_status(pid: int) -> Dict[str, List[str]]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.split() for k, _, v in (l.partition(":") for l in f)
                if k in ("Uid", "Gid", "Groups")}


def start(args, mode: str, app: Path, ready: bool = True, **kw) -> OpsServer:
    extra = ["--master"] if mode == "master" else []
    srv = OpsServer([*extra, "--http-socket", "127.0.0.1:0", "--wsgi-file", str(app), *args], **kw)
    return srv.start(wait_ready=ready)


@pytest.fixture
def servers():
    started: List[OpsServer] = []
    yield started
    for srv in started:
        srv.stop()


MODES = ["master", "single"]


@needs_root
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["uid", "uid+gid", "gid"])
def test_uid_and_gid_set_user_group_and_supplementary_groups(servers, test_user, crash_app, mode,
                                                             how):
    """uid alone: the user's primary group and supplementary groups (initgroups, as nginx);
    uid + gid: that gid and the user's groups (initgroups, as uWSGI and nginx); gid alone: that
    gid, no supplementary groups (as uWSGI).  Before: uid alone kept group root, and without
    --master nothing changed at all."""
    u = test_user
    args = {"uid": ["--uid", u["name"]],
            "uid+gid": ["--uid", u["name"], "--gid", u["name"]],
            "gid": ["--gid", u["extra"]]}[how]
    uid, gid, groups = {"uid": (u["uid"], u["gid"], {u["gid"], u["extra_gid"]}),
                        "uid+gid": (u["uid"], u["gid"], {u["gid"], u["extra_gid"]}),
                        "gid": (0, u["extra_gid"], set())}[how]
    srv = start(args, mode, crash_app)
    servers.append(srv)
    reply = served(srv.port)
    creds = reply.doc["creds"]  # the serving process's own /proc/self/status
    pids = [reply.pid] + ([srv.pid] if mode == "master" else [])
    for pid, status in [(reply.pid, creds)] + [(p, proc_status(p)) for p in pids[1:]]:
        assert set(status["Uid"]) == {str(uid)}, (pid, status)
        assert set(status["Gid"]) == {str(gid)}, (pid, status)
        assert {int(g) for g in status["Groups"]} == groups, (pid, status)
    if mode == "single":
        assert reply.pid == srv.pid


@needs_root
def test_single_process_applies_chown_socket_and_pidfile(servers, test_user, crash_app, world_dir):
    """Before: without --master, uid, gid, chown-socket and pidfile were silently ignored."""
    u = test_user
    sock = world_dir / "app.sock"
    pidfile = world_dir / "app.pid"
    srv = start(["--uid", u["name"], "--socket", str(sock), "--chown-socket",
                 f"{u['name']}:{u['extra']}", "--chmod-socket=660", "--pidfile", str(pidfile)],
                "single", crash_app)
    servers.append(srv)
    st = sock.stat()
    assert (st.st_uid, st.st_gid) == (u["uid"], u["extra_gid"])
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert pidfile.read_text().strip() == str(srv.pid)
    assert pidfile.stat().st_uid == 0, "the pidfile is written before privileges are dropped"
    assert set(proc_status(srv.pid)["Uid"]) == {str(u["uid"])}
    assert srv.find(r"running as uid %d \(%s\), gid %d" % (u["uid"], u["name"], u["gid"]))
    assert served(srv.port).ok


def test_single_process_daemonize(world_dir, crash_app):
    log = world_dir / "daemon.log"
    pidfile = world_dir / "daemon.pid"
    srv = OpsServer(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(crash_app),
                     "--daemonize", str(log), "--pidfile", str(pidfile), "--vacuum"])
    srv.start(wait_ready=False)
    assert srv.wait_exit(10) == 0, srv.output()  # the launching process returns at once
    pid = int(poll(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the pidfile"))
    try:
        assert pid != srv.pid and alive(pid)
        line = poll(lambda: next((l for l in log.read_text().splitlines()
                                  if "listening on http-socket" in l), None), 10, "the log line")
        port = int(line.split()[4].rsplit(":", 1)[1])
        reply = served(port)
        assert reply.pid == pid, "the daemon serves itself (no master)"
        assert os.getsid(pid) != os.getsid(0), "a daemon runs in a session of its own"
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    poll(lambda: not alive(pid), 15, "the daemon to stop")
    assert not pidfile.exists(), "vacuum removes the pidfile"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("option,value,message", [
    ("uid", "no-such-user-x", "option 'uid': no such user 'no-such-user-x'"),
    ("gid", "no-such-group-x", "option 'gid': no such group 'no-such-group-x'"),
    ("chown-socket", "no-such-user-x:root", "option 'chown-socket': no such user 'no-such-user-x'"),
    ("chown-socket", "root:no-such-group-x",
     "option 'chown-socket': no such group 'no-such-group-x'"),
])
def test_unknown_user_or_group_is_one_line_and_exit_2(crash_app, mode, option, value, message):
    """Before: a KeyError traceback from the master, nothing at all without --master."""
    srv = start([f"--{option}", value], mode, crash_app, ready=False)
    assert srv.wait_exit(10) == 2, srv.output()
    lines = srv.output().strip().splitlines()
    assert lines == [f"uwsgipy: ERROR: command line: {message}"], lines


def test_unknown_user_in_an_ini_file_names_the_line(crash_app, world_dir):
    ini = world_dir / "app.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {crash_app}\n"
                   "uid = no-such-user-x\n")
    srv = OpsServer([str(ini)]).start(wait_ready=False)
    assert srv.wait_exit(10) == 2
    assert srv.output().strip() == \
        f"uwsgipy: ERROR: {ini}:4: option 'uid': no such user 'no-such-user-x'"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ["mode-000", "directory", "missing"])
def test_unreadable_app_file_is_one_line_and_exit_4(world_dir, mode, case):
    """Before: uwsgipy's own traceback (importlib's and app.py's frames) came first, for a file
    the dropped user cannot read; a directory was reported as 'no such file'."""
    args: List[str] = []
    if case == "mode-000":
        app = world_dir / "app.py"
        app.write_text(CRASH_APP)
        app.chmod(0)
        if os.geteuid() == 0:  # root reads any file: drop to nobody, as a deployment would
            args = ["--uid", "nobody"]
        expect = f"cannot read '{app}': Permission denied (running as user "
    elif case == "directory":
        app = world_dir / "appdir"
        app.mkdir()
        expect = f"'{app}' is a directory, not a Python file"
    else:
        app = world_dir / "nope.py"
        expect = f"no such file '{app}'"
    srv = start(args, mode, app, ready=False)
    assert srv.wait_exit(10) == 4, srv.output()
    out = srv.output()
    assert "Traceback" not in out, out
    errors = [l for l in out.splitlines() if "ERROR" in l]
    assert len(errors) == 1 and "cannot load the application: wsgi-file: " in errors[0] \
        and expect in errors[0], out


# ----------------------------------------------------------------------------------------------
# item 6, the master's side: retiring a worker leaves the shared listeners alone
# ----------------------------------------------------------------------------------------------

def test_retired_worker_leaves_the_listener_open(master):
    """SIGTTOU retires one of two workers while a client keeps connecting: the retired worker
    must not shut the listener it shares with the one that stays (a final stop would), so no
    connection is refused or reset and the remaining worker serves on."""
    srv = master(processes=2)
    workers = srv.wait_workers(lambda k: len(k) == 2, 5, "2 workers")
    with Load(srv.port, clients=3, path="/sleep?s=0.01") as load:
        poll(lambda: {r.pid for r in load.snapshot() if r.ok} >= workers, 10,
             "replies from both workers")
        srv.signal(signal.SIGTTOU)
        left = srv.wait_workers(lambda k: len(k) == 1, 10, "one worker left")
        t_left = time.monotonic()
        n = len(load.snapshot())
        poll(lambda: len(load.snapshot()) >= n + 30, 10, "30 more replies after the retire")
        with_load = load.snapshot()
    failures = [r for r in with_load if not r.ok]
    assert not failures, sorted({r.error for r in failures})
    # requests started once the retired worker was gone (one recorded just after the count
    # dropped may have been answered by it before it exited)
    assert {r.pid for r in with_load if r.started > t_left} <= left
    # and the listener still takes new connections
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5):
        pass
    assert http_get(srv.port).ok


def test_sigterm_sent_to_one_worker_retires_it_and_the_service_goes_on(master):
    """SIGTERM from the master is a final stop (serve the backlog, shut the listeners); the same
    signal sent by hand to one worker must not shut the listeners the other workers serve: the
    worker retires and the master replaces it.  Before (with the final stop): every later
    connect was refused, with the master and a fresh worker still running."""
    srv = master(processes=2)
    workers = srv.wait_workers(lambda k: len(k) == 2, 5, "2 workers")
    victim = min(workers)
    with Load(srv.port, clients=3, path="/sleep?s=0.01") as load:
        poll(lambda: {r.pid for r in load.snapshot() if r.ok} >= workers, 10,
             "replies from both workers")
        os.kill(victim, signal.SIGTERM)
        now = srv.wait_workers(lambda k: len(k) == 2 and victim not in k, 10,
                               "the worker replaced")
        n = len(load.snapshot())
        poll(lambda: len({r.pid for r in load.snapshot()[n:] if r.ok} & now) == 2, 10,
             "replies from both current workers")
    failures = load.failures()
    assert not failures, sorted({r.error for r in failures})
    assert srv.find(r"SIGTERM from outside the master: retiring this worker")
    assert http_get(srv.port).ok
    # and the master's own SIGTERM is still the final stop, exit 0
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0


def _python_usable_by(user: dict) -> bool:
    """Can this Python start as `user`?  (A Python installed under /root, such as pyenv's,
    cannot: the re-executed master of a reload needs to.)"""
    probe = ("import os; os.setgroups([]); os.setgid(%d); os.setuid(%d); "
             "import subprocess; raise SystemExit(subprocess.run([%r, '-c', "
             "'import json, http.server, uwsgipy']).returncode)"
             % (user["gid"], user["uid"], sys.executable))
    return subprocess.run([sys.executable, "-c", probe], env=child_env(), cwd="/",
                          capture_output=True).returncode == 0


@needs_root
def test_reload_after_dropping_privileges(test_user, crash_app, world_dir):
    """SIGHUP re-executes the master as the user it switched to: it must neither try to switch
    again (setgroups needs root) nor rewrite the pidfile in a directory only root may write.
    Before: the re-executed master died with a PermissionError traceback, and its workers with
    it."""
    if not _python_usable_by(test_user):
        pytest.skip(f"{sys.executable} is not usable by an unprivileged user (installed under "
                    "/root?)")
    pidfile = world_dir / "app.pid"
    srv = OpsServer(["--master", "--processes", "2", "--http-socket", "127.0.0.1:0",
                     "--wsgi-file", str(crash_app), "--uid", test_user["name"],
                     "--pidfile", str(pidfile)], cwd=world_dir)
    srv.start()
    try:
        old = srv.wait_workers(lambda k: len(k) == 2, 10, "2 workers")
        mark = srv.mark()
        srv.signal(signal.SIGHUP)
        srv.wait_line(r"reload: new workers serving", 20, since=mark)
        new = srv.wait_workers(lambda k: len(k) == 2 and not (k & old), 10, "2 new workers")
        reply = served(srv.port)
        assert reply.pid in new
        assert set(proc_status(srv.pid)["Uid"]) == {str(test_user["uid"])}
        assert pidfile.read_text().strip() == str(srv.pid)
        assert "Traceback" not in srv.output(), srv.output()
    finally:
        srv.stop()
