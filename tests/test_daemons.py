"""Attached daemons (attach-daemon and its family, uwsgipy/daemons.py) under a real master.

Each test starts `python -m uwsgipy --master` with the operations app and a daemon command
of its own (a shell or Python one-liner that writes its pid to a file in a temporary
directory), then kills, touches or stops things and watches the process tree through /proc.
Every wait is bounded; only processes started here (the master, and the daemons whose pids
the test read from its own files) are signalled.
"""
from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import List

import pytest

from ops_helpers import APPS, OpsServer, alive, http_get, poll, stop_and_report

OPS_APP = APPS / "ops_app.py"


@pytest.fixture
def server(request):
    started: List[OpsServer] = []

    def start(*args, ready=True) -> OpsServer:
        srv = OpsServer(["--master", "--http-socket", "127.0.0.1:0", "--wsgi-file", str(OPS_APP),
                         *args])
        started.append(srv)
        return srv.start(wait_ready=ready)

    yield start
    stop_and_report(request, started)


@pytest.fixture
def reaper():
    """Pids the test started indirectly (smart daemons outlive the master): killed at the
    end."""
    pids: List[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def sleeper(pidfile: Path, marker: str = "daemon") -> str:
    """A foreground daemon: prints a line, writes its pid, sleeps."""
    return f"echo {marker} says hello; echo $$ > {shlex.quote(str(pidfile))}; exec sleep 300"


def read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def test_daemon_respawned_after_kill9_and_stops_with_the_master(server, tmp_path):
    pidfile = tmp_path / "d.pid"
    srv = server("--attach-daemon", sleeper(pidfile))
    first = poll(lambda: read_pid(pidfile), 10, "the daemon's pid")
    srv.wait_line(r"^daemon says hello$", 10)  # its output is in our log
    assert first in srv.workers()  # a child of the master
    os.kill(first, signal.SIGKILL)
    srv.wait_line(rf'daemon ".*" \(pid {first}\) killed by SIGKILL.*respawning', 10)
    second = poll(lambda: (p := read_pid(pidfile)) != first and alive(p) and p, 10,
                  "the respawned daemon")
    assert http_get(srv.port).ok
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(15) == 0
    assert not alive(second), "the daemon outlived the master"
    assert srv.find(rf'daemon ".*" \(pid {second}\) killed by SIGTERM')


def test_daemon_dying_at_once_is_respawned_with_back_off(server, tmp_path):
    count = tmp_path / "count"
    srv = server("--attach-daemon", f"echo x >> {shlex.quote(str(count))}; exit 3")
    m = srv.wait_line(r'daemon ".*" \(pid \d+\) exited with code 3: respawning in (\d+)s', 10)
    delays = [int(m.group(1))]
    mark = srv.mark()
    m = srv.wait_line(r'exited with code 3: respawning in (\d+)s', 10, since=mark)
    delays.append(int(m.group(1)))
    assert delays[0] >= 1 and delays[1] >= delays[0], delays
    assert http_get(srv.port).ok  # the workers serve on


def test_control_daemon_exit_stops_the_master(server):
    srv = server("--attach-control-daemon", "sleep 1")
    srv.wait_line(r'control daemon "sleep 1" \(pid \d+\) exited with code 0: stopping', 10)
    assert srv.wait_exit(15) == 0


def test_attach_daemon2_stopsignal_and_touch(server, tmp_path):
    pidfile, stopped, touch = tmp_path / "d.pid", tmp_path / "stopped", tmp_path / "restart"
    touch.write_text("")
    code = ("import os, signal, sys, time\n"
            f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
            "def bye(*a):\n"
            f"    open({str(stopped)!r}, 'a').write('INT\\n'); sys.exit(0)\n"
            "signal.signal(signal.SIGINT, bye)\n"
            "time.sleep(300)\n")
    script = tmp_path / "d.py"
    script.write_text(code)
    srv = server("--attach-daemon2",
                 f"cmd={sys.executable} {script},stopsignal=2,touch={touch}")
    first = poll(lambda: read_pid(pidfile), 10, "the daemon's pid")
    os.utime(touch, (time.time() + 5, time.time() + 5))
    srv.wait_line(r"touched: restarting", 10)
    second = poll(lambda: (p := read_pid(pidfile)) != first and alive(p) and p, 10,
                  "the restarted daemon")
    assert stopped.read_text() == "INT\n"  # stopped with its stopsignal
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(15) == 0
    assert not alive(second)
    assert stopped.read_text() == "INT\nINT\n"


def test_daemon_restarted_around_a_graceful_reload(server, tmp_path):
    pidfile = tmp_path / "d.pid"
    srv = server("--attach-daemon", sleeper(pidfile))
    first = poll(lambda: read_pid(pidfile), 10, "the daemon's pid")
    mark = srv.mark()
    srv.signal(signal.SIGHUP)
    srv.wait_line(r"reload: new workers serving", 15, since=mark)
    second = poll(lambda: (p := read_pid(pidfile)) != first and alive(p) and p, 10,
                  "the daemon started by the new master")
    assert not alive(first)
    assert len(srv.find(r"exec sleep 300.*started \(pid")) == 2


def test_smart_attach_daemon2_is_watched_through_its_pidfile(server, tmp_path, reaper):
    pidfile = tmp_path / "smart.pid"
    srv = server("--smart-attach-daemon2", f"{pidfile} exec sleep 300")
    first = poll(lambda: (p := read_pid(pidfile)) and alive(p) and p, 10, "the pidfile")
    reaper.append(first)
    os.kill(first, signal.SIGKILL)
    second = poll(lambda: (p := read_pid(pidfile)) != first and alive(p) and p, 10,
                  "the respawned smart daemon")
    reaper.append(second)
    srv.wait_line(r"no live pid in .*smart.pid: respawning", 5)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(15) == 0
    assert alive(second), "uWSGI leaves pidfile daemons running when the master stops"


def test_smart_attach_daemon_adopts_a_running_pid(server, tmp_path, reaper):
    pidfile = tmp_path / "smart.pid"
    import subprocess
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    reaper.append(proc.pid)
    pidfile.write_text(f"{proc.pid}\n")
    srv = server("--smart-attach-daemon", f"{pidfile} sleep 300 &")
    srv.wait_line(rf'found running with pid {proc.pid}', 10)
    assert not srv.find(r"started \(pid")
    proc.kill()
    proc.wait(5)


@pytest.mark.parametrize("option, value, why", [
    ("attach-daemon2", "freq=3", "needs a 'cmd'"),
    ("attach-daemon2", "cmd=sleep 1,colour=red", "invalid key=value item 'colour=red'"),
    ("attach-daemon2", "cmd=sleep 1,stopsignal=NOPE", "is not a signal"),
    ("smart-attach-daemon", "/tmp/only-a-pidfile", "expected 'PIDFILE COMMAND'"),
])
def test_bad_daemon_lines_are_one_line(server, tmp_path, option, value, why):
    ini = tmp_path / "app.ini"
    ini.write_text(f"[uwsgi]\n{option} = {value}\n")
    srv = server("--ini", str(ini), ready=False)
    assert srv.wait_exit(10) == 2
    lines = srv.output().strip().splitlines()
    assert len(lines) == 1 and f"{ini}:2" in lines[0] and why in lines[0], lines
