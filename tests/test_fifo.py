"""The master fifo (master-fifo, uwsgipy/fifo.py): uWSGI's one-letter commands written to a
real named pipe of a real `python -m uwsgipy --master`, checked through its log, its process
tree and real HTTP requests.  Every wait is bounded; only the master started here is
signalled (by the harness, at the end).
"""
from __future__ import annotations

import os
import signal
import stat
import threading
from pathlib import Path
from typing import List

import pytest

from ops_helpers import APPS, Load, OpsServer, http_get, poll, stop_and_report

OPS_APP = APPS / "ops_app.py"


@pytest.fixture
def fifo_dir():
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="upyfifo", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def server(request, fifo_dir):
    started: List[OpsServer] = []

    def start(*args, processes: int = 2, ready: bool = True, fifos: int = 1) -> OpsServer:
        paths = [fifo_dir / f"m{i}.fifo" for i in range(fifos)]
        srv = OpsServer(["--master", "--processes", str(processes), "--http-socket",
                         "127.0.0.1:0", "--wsgi-file", str(OPS_APP), "--disable-logging",
                         *[a for p in paths for a in ("--master-fifo", str(p))], *args])
        srv.fifo = paths[0]  # type: ignore[attr-defined]
        srv.fifos = paths  # type: ignore[attr-defined]
        started.append(srv)
        return srv.start(wait_ready=ready)

    yield start
    stop_and_report(request, started)


def send(path: Path, text: str) -> None:
    """Write to the fifo as `echo X > fifo` does (non-blocking: the master always has it
    open)."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def test_fifo_is_created_mode_0600(server):
    srv = server()
    st = srv.fifo.stat()
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


def test_q_graceful_stop(server):
    srv = server()
    send(srv.fifo, "q\n")
    srv.wait_line(r"master-fifo: 'q' \(graceful stop\)", 10)
    assert srv.wait_exit(15) == 0


def test_Q_quick_stop(server):
    srv = server()
    send(srv.fifo, "Q")
    srv.wait_line(r"master-fifo Q: quick stop", 10)
    assert srv.wait_exit(15) == 0


@pytest.mark.parametrize("letter", ["r", "f"])
def test_r_and_f_reload_gracefully(server, letter):
    srv = server()
    old = srv.wait_workers(lambda w: len(w) == 2, 10, "two workers")
    t_reply: List = []
    t = threading.Thread(target=lambda: t_reply.append(http_get(srv.port, "/slow?s=1")))
    t.start()
    srv.wait_line(r"ops_app: slow start", 10)
    send(srv.fifo, letter)
    srv.wait_line(r"graceful reload: re-executing the master", 10)
    srv.wait_line(r"reload: new workers serving", 15)
    t.join(10)
    assert t_reply and t_reply[0].ok, t_reply  # the request in flight is answered
    srv.wait_workers(lambda w: len(w) == 2 and not (w & old), 15, "two new workers")
    assert srv.proc.poll() is None
    assert http_get(srv.port).ok
    # the fifo works after the re-execution too
    send(srv.fifo, "s")
    srv.wait_line(r"status: master \d+", 10)


def test_R_brutal_reload(server):
    srv = server()
    old = srv.wait_workers(lambda w: len(w) == 2, 10, "two workers")
    send(srv.fifo, "R")
    srv.wait_line(r"brutal reload: re-executing the master", 10)
    srv.wait_workers(lambda w: len(w) == 2 and not (w & old), 15, "two new workers")
    assert http_get(srv.port).ok


def test_w_reloads_the_workers_only_without_failing_a_request(server):
    srv = server()
    old = srv.wait_workers(lambda w: len(w) == 2, 10, "two workers")
    with Load(srv.port, clients=4, path="/sleep?s=0.01") as load:
        poll(lambda: load.count_ok() >= 20, 10, "20 replies")
        send(srv.fifo, "w")
        srv.wait_workers(lambda w: len(w) == 2 and not (w & old), 10, "two new workers")
        n = load.count_ok()
        poll(lambda: load.count_ok() >= n + 20, 10, "20 more replies")
    assert not load.failures()
    assert not srv.find("re-executing")


def test_W_reloads_the_workers_at_once(server):
    srv = server()
    old = srv.wait_workers(lambda w: len(w) == 2, 10, "two workers")
    send(srv.fifo, "W")
    srv.wait_line(r"brutal reload of the workers", 10)
    srv.wait_workers(lambda w: len(w) == 2 and not (w & old), 10, "two new workers")
    assert http_get(srv.port).ok


def test_c_chain_reload(server):
    srv = server(processes=3)
    old = srv.wait_workers(lambda w: len(w) == 3, 10, "three workers")
    send(srv.fifo, "c")
    for wid in (1, 2, 3):
        srv.wait_line(rf"chain reload: worker {wid} \(pid \d+\) retiring", 10)
    srv.wait_workers(lambda w: len(w) == 3 and not (w & old), 10, "three new workers")


def test_C_goes_cheap_until_a_connection_arrives(server):
    srv = server()
    send(srv.fifo, "C")
    srv.wait_line(r"cheap mode: no worker until a connection arrives", 10)
    poll(lambda: not srv.workers(), 10, "no worker")
    reply = http_get(srv.port)  # queued in the listener, then served by a new worker
    assert reply.ok, reply
    srv.wait_line(r"leaving cheap mode, 2 worker\(s\)", 5)
    srv.wait_workers(lambda w: len(w) == 2, 10, "two workers again")


def test_plus_and_minus_change_the_worker_count(server):
    srv = server(processes=1)
    srv.wait_workers(lambda w: len(w) == 1, 10, "one worker")
    send(srv.fifo, "+")
    srv.wait_workers(lambda w: len(w) == 2, 10, "two workers")
    send(srv.fifo, "-")
    srv.wait_workers(lambda w: len(w) == 1, 10, "one worker again")


def test_l_and_L_reopen_the_log(server, fifo_dir):
    logfile = fifo_dir / "app.log"
    srv = server("--logto", str(logfile), ready=False)
    poll(lambda: logfile.exists() and "ready (pid" in logfile.read_text(), 10, "ready in the log")
    moved = fifo_dir / "app.log.1"
    logfile.rename(moved)
    send(srv.fifo, "l")
    poll(lambda: logfile.exists() and "log files reopened" in logfile.read_text(), 10,
         "the reopened log")
    send(srv.fifo, "L")
    poll(lambda: "master-fifo L: uwsgipy rotates" in logfile.read_text(), 10, "L's warning")


def test_s_logs_the_status(server):
    srv = server()
    srv.wait_workers(lambda w: len(w) == 2, 10, "two workers")
    send(srv.fifo, "s")
    srv.wait_line(r"status: master \d+, 2 worker\(s\) wanted, 2 running", 10)
    srv.wait_line(r"status: worker 2 \(pid \d+\) (serving|starting)", 10)


def test_P_writes_the_pidfile_again(server, fifo_dir):
    pidfile = fifo_dir / "app.pid"
    srv = server("--pidfile", str(pidfile))
    pidfile.unlink()
    send(srv.fifo, "P")
    poll(lambda: pidfile.exists() and pidfile.read_text().strip() == str(srv.pid), 10,
         "the pidfile rewritten")


def test_digit_switches_the_active_fifo(server):
    srv = server(fifos=2)
    first, second = srv.fifos
    send(first, "1")
    srv.wait_line(rf"the active fifo is now {second}", 10)
    send(second, "q")
    assert srv.wait_exit(15) == 0


def test_removed_fifo_is_created_again(server):
    srv = server()
    srv.fifo.unlink()
    poll(lambda: srv.fifo.exists() and stat.S_ISFIFO(srv.fifo.stat().st_mode), 10,
         "the fifo again")
    send(srv.fifo, "q")
    assert srv.wait_exit(15) == 0


def test_unknown_command_is_one_warning(server):
    srv = server()
    send(srv.fifo, "z\n")
    srv.wait_line(r"WARNING: master-fifo: command 'z' is not supported", 10)
    assert http_get(srv.port).ok


def test_fifo_in_a_missing_directory_is_one_line(server, fifo_dir):
    srv = OpsServer(["--master", "--http-socket", "127.0.0.1:0", "--wsgi-file", str(OPS_APP),
                     "--master-fifo", str(fifo_dir / "no" / "such.fifo")])
    srv.start(wait_ready=False)
    try:
        assert srv.wait_exit(10) == 2
        errors = [l for l in srv.output().splitlines() if "ERROR" in l]
        assert len(errors) == 1 and "master-fifo" in errors[0] and "such.fifo" in errors[0]
        assert "Traceback" not in srv.output()
    finally:
        srv.stop()
