"""Operations options not covered by test_master.py: py-autoreload,
procname-prefix, uid/gid with chown-socket and chmod-socket, daemonize.
Real masters on 127.0.0.1, bounded waits, only our own pids signalled."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path

import pytest

from ops_helpers import APPS, OpsServer, alive, children_of, http_get, poll
from test_master import OPS_APP, master, set_version  # noqa: F401  (fixture)


@pytest.fixture
def world_dir():
    """A directory every user can read (pytest's tmp dirs are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="upyops", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_py_autoreload_reloads_on_a_module_change(master, world_dir):
    app = world_dir / "app.py"
    shutil.copy(OPS_APP, app)
    srv = master("--py-autoreload", "1", app=app)
    first = http_get(srv.port)
    assert first.ok and first.version == "v1"
    time.sleep(1.1)  # a different mtime: file systems keep whole seconds at worst
    set_version(app, "v2")
    reply = poll(lambda: (r := http_get(srv.port)).ok and r.version == "v2" and r, 20,
                 "a reply from the reloaded code")
    assert reply.pid != first.pid
    assert srv.find("py-autoreload")


def _title(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    with open(f"/proc/{pid}/comm") as f:
        return cmdline + " | " + f.read()


def test_procname_prefix_names_master_and_workers(master):
    srv = master("--procname-prefix", "shop-", processes=2)
    workers = srv.wait_workers(lambda w: len(w) == 2, 10, "two workers")
    assert "shop-uwsgipy master" in _title(srv.pid) or "shop-uwsgipy m" in _title(srv.pid)
    for pid in workers:  # a worker names itself just after fork: poll
        poll(lambda: "shop-uwsgipy w" in _title(pid), 10, f"the title of worker {pid}")


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_uid_gid_drop_privileges_after_binding(master, world_dir):
    nobody = pwd.getpwnam("nobody")
    app = world_dir / "app.py"
    shutil.copy(OPS_APP, app)
    app.chmod(0o644)
    sock = world_dir / "u.sock"
    srv = master("--uid", "nobody", "--gid", str(nobody.pw_gid), "--socket", str(sock),
                 "--chown-socket", f"nobody:{nobody.pw_gid}", "--chmod-socket=660", app=app)
    st = sock.stat()
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o660
    workers = srv.wait_workers(lambda w: len(w) == 1, 10, "one worker")
    for pid in [srv.pid, *workers]:
        with open(f"/proc/{pid}/status") as f:
            uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
        assert set(uids) == {str(nobody.pw_uid)}, (pid, uids)
    assert http_get(srv.port).ok


def test_daemonize_detaches_and_logs_to_the_file(world_dir):
    log = world_dir / "daemon.log"
    pidfile = world_dir / "daemon.pid"
    srv = OpsServer(["--master", "--http-socket", "127.0.0.1:0", "--wsgi-file", str(OPS_APP),
                     "--daemonize", str(log), "--pidfile", str(pidfile), "--vacuum"])
    srv.start(wait_ready=False)
    assert srv.wait_exit(10) == 0, srv.output()  # the launching process returns at once
    poll(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the pidfile")
    pid = int(pidfile.read_text())
    try:
        assert pid != srv.pid and alive(pid)
        line = poll(lambda: next((l for l in log.read_text().splitlines()
                                  if "listening on http-socket" in l), None), 10, "the listening line")
        port = int(line.split()[4].rsplit(":", 1)[1])
        assert http_get(port).ok
        assert os.getsid(pid) != os.getsid(0), "a daemon runs in a session of its own"
    finally:
        os.kill(pid, signal.SIGTERM)
    poll(lambda: not alive(pid), 15, "the daemon to stop")
    assert not pidfile.exists(), "vacuum removes the pidfile"
