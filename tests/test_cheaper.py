"""Adaptive workers (cheaper): the algorithms' decisions alone (uwsgipy/cheaper.py, no fork),
then a real master under a load ramp.

The ramp test starts `python -m uwsgipy --master --processes 4 --cheaper 1` with the operations
app, sends many slow requests from a few client threads (one connection per request, so a
failure counts one request) until the master has forked every worker, then keeps one client
going while the others stop, until the master has retired the idle workers down to cheaper.
Worker counts over time come from the master's log lines and the process tree; every wait is
bounded; only the master started here is signalled.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import List, Tuple

import pytest

from ops_helpers import APPS, Load, OpsServer, http_get, poll, record_figure, stop_and_report
from uwsgipy.cheaper import (Backlog, Busyness, Manual, Params, Sample, Spare, Spare2,
                             WorkerSample, listen_queue)

OPS_APP = APPS / "ops_app.py"


def sample(now: float, busy: List[bool], backlog: int = 0, running=None) -> Sample:
    running = running or [0] * len(busy)
    return Sample(now, [WorkerSample(i + 1, b, r) for i, (b, r) in enumerate(zip(busy, running))],
                  backlog)


# ----------------------------------------------------------------------------------------------
# spare (uWSGI 2.0's default)
# ----------------------------------------------------------------------------------------------

def test_spare_adds_a_step_after_overload_busy_cycles():
    algo = Spare(Params(cheaper=1, processes=5, step=2, overload=3))
    decisions = [algo.decide(sample(t, [True, True])) for t in range(4)]
    assert decisions == [0, 0, 0, 2]  # overload_count must exceed cheaper-overload


def test_spare_one_free_worker_is_stable():
    algo = Spare(Params(cheaper=1, processes=5, overload=1))
    assert {algo.decide(sample(t, [True, True, False])) for t in range(20)} == {0}


def test_spare_retires_idle_workers_every_overload_cycles_down_to_cheaper():
    algo = Spare(Params(cheaper=2, processes=6, overload=3))
    active, seen = 5, []
    for t in range(40):
        d = algo.decide(sample(t, [False] * active))
        seen.append(d)
        active += d
        assert 2 <= active <= 6
    assert active == 2
    assert seen[:3] == [0, 0, -1]  # the third idle cycle


def test_spare_never_goes_above_processes():
    algo = Spare(Params(cheaper=1, processes=3, step=5, overload=1))
    active = 1
    for t in range(20):
        active += algo.decide(sample(t, [True] * active))
        assert active <= 3
    assert active == 3


# ----------------------------------------------------------------------------------------------
# spare2, backlog, manual
# ----------------------------------------------------------------------------------------------

def test_spare2_keeps_cheaper_idle_workers():
    algo = Spare2(Params(cheaper=2, processes=8, initial=2, step=3, overload=2))
    assert algo.decide(sample(0, [True, True, False])) == 1   # 1 idle of 2 wanted
    assert algo.decide(sample(1, [True] * 4)) == 2            # none idle: min(step, 2)
    assert algo.decide(sample(2, [True, False, False])) == 0  # exactly 2 idle
    # more idle than cheaper: retire one after cheaper-overload cycles, never below initial
    assert [algo.decide(sample(3 + t, [False] * 5)) for t in range(2)] == [0, -1]
    assert algo.decide(sample(9, [False, False])) == 0
    assert algo.decide(sample(10, [False, False])) == 0


def test_backlog_follows_the_listen_queue():
    algo = Backlog(Params(cheaper=1, processes=4, step=2, overload=3))
    assert algo.decide(sample(0, [True], backlog=4)) == 2
    assert algo.decide(sample(1, [True, True, True], backlog=10)) == 1  # clamped to processes
    assert algo.decide(sample(2, [True, True], backlog=3)) == 0         # equal: keep
    assert algo.decide(sample(3, [False, False], backlog=0)) == -1
    assert algo.decide(sample(4, [False], backlog=0)) == 0              # at cheaper


def test_manual_never_changes_the_count():
    algo = Manual(Params(cheaper=1, processes=4))
    assert {algo.decide(sample(t, [True] * 2, backlog=100)) for t in range(5)} == {0}


# ----------------------------------------------------------------------------------------------
# busyness (uWSGI's plugin)
# ----------------------------------------------------------------------------------------------

def test_busyness_adds_workers_above_max_percent():
    algo = Busyness(Params(cheaper=1, processes=4, step=1, overload=2))
    assert algo.decide(sample(0.0, [False, False], running=[0, 0])) == 0
    # 2 s window, each worker 1.6 s in requests: 80 % > 50 %
    assert algo.decide(sample(1.0, [True, True], running=[800_000, 800_000])) == 0
    assert algo.decide(sample(2.0, [True, True], running=[1_600_000, 1_600_000])) == 1


def test_busyness_long_request_counts_as_busy():
    algo = Busyness(Params(cheaper=1, processes=4, overload=2))
    algo.decide(sample(0.0, [True, True]))
    algo.decide(sample(1.0, [True, True]))  # running time unchanged, but busy all along
    assert algo.decide(sample(2.0, [True, True])) == 1


def test_busyness_retires_only_after_overload_times_multiplier_idle_seconds():
    algo = Busyness(Params(cheaper=1, processes=4, overload=1, busyness_multiplier=5))
    decisions = [(t, algo.decide(sample(float(t), [False, False, False]))) for t in range(12)]
    retired = [t for t, d in decisions if d == -1]
    assert retired and retired[0] == 5, decisions  # 1 s cycles x multiplier 5
    assert retired[1] - retired[0] == 5


def test_busyness_penalty_when_a_retired_worker_is_needed_again_soon():
    algo = Busyness(Params(cheaper=1, processes=4, overload=1, busyness_multiplier=2,
                           busyness_penalty=3))
    t = 0.0
    while algo.decide(sample(t, [False, False])) != -1:
        t += 1
        assert t < 20
    t += 1  # busy right after: the multiplier grows by the penalty
    assert algo.decide(sample(t, [True], running=[10_000_000])) == 1
    assert algo.multi == 5


def test_busyness_backlog_alert_adds_emergency_workers():
    algo = Busyness(Params(cheaper=1, processes=4, overload=10, backlog_alert=5,
                           backlog_step=2))
    assert algo.decide(sample(0.0, [False], backlog=6)) == 2
    assert algo.emergency == 2


def test_busyness_nonzero_backlog_for_long_adds_a_worker():
    algo = Busyness(Params(cheaper=1, processes=4, overload=100, backlog_nonzero=3))
    got = [algo.decide(sample(float(t), [False], backlog=1)) for t in range(5)]
    assert got == [0, 0, 0, 1, 0]


def test_listen_queue_counts_connections_not_accepted():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    clients = []
    try:
        assert listen_queue(lst) == 0
        for _ in range(3):
            c = socket.create_connection(lst.getsockname())
            clients.append(c)
        poll(lambda: listen_queue(lst) == 3, 5, "3 connections queued")
        conn, _ = lst.accept()
        conn.close()
        assert listen_queue(lst) == 2
    finally:
        for c in clients:
            c.close()
        lst.close()


# ----------------------------------------------------------------------------------------------
# a real master
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def server(request):
    started: List[OpsServer] = []

    def start(*args, ready=True) -> OpsServer:
        srv = OpsServer(["--master", "--http-socket", "127.0.0.1:0", "--wsgi-file", str(OPS_APP),
                         "--disable-logging", *args])
        started.append(srv)
        return srv.start(wait_ready=ready)

    yield start
    stop_and_report(request, started)


def _counts(srv: OpsServer) -> List[int]:
    """The worker counts the master logged, in order."""
    return [int(m.group(1)) for m in srv.find(r"(?:cheaper \(\w+\): busy|cheaped: busy) .*: "
                                              r"(\d+) worker\(s\)$")]


def test_load_ramp_raises_the_count_and_idling_lowers_it(server):
    srv = server("--processes", "4", "--cheaper", "1", "--cheaper-overload", "1")
    t0 = time.monotonic()
    timeline: List[Tuple[float, int]] = []
    stop_watch = threading.Event()

    def watch() -> None:  # the process tree, every 100 ms
        deadline = time.monotonic() + 60
        while not stop_watch.is_set() and time.monotonic() < deadline:
            timeline.append((round(time.monotonic() - t0, 1), len(srv.workers())))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert srv.wait_workers(lambda w: len(w) == 1, 5, "one worker at start")
    trickle = Load(srv.port, clients=1, path="/sleep?s=0.02", max_seconds=40).__enter__()
    try:
        with Load(srv.port, clients=6, path="/sleep?s=0.2", max_seconds=30) as ramp:
            srv.wait_line(r"cheaper \(spare\): .*: 4 worker\(s\)", 20)
            t_full = time.monotonic() - t0
            n = ramp.count_ok()
            poll(lambda: ramp.count_ok() >= n + 20, 10, "20 replies at 4 workers")
        t_idle = time.monotonic() - t0
        # the trickle client keeps one worker busy now and then: spare keeps one spare
        # worker beside a busy one, so 2 workers while it runs, then 1 once it stops
        srv.wait_line(r"cheaped: .*: 2 worker\(s\)", 20)
        n = trickle.count_ok()
        poll(lambda: trickle.count_ok() >= n + 10, 10, "10 replies at 2 workers")
        trickle.stop()
        srv.wait_line(r"cheaped: .*: 1 worker\(s\)", 20)
        t_low = time.monotonic() - t0
        srv.wait_workers(lambda w: len(w) == 1, 10, "one worker left")
        assert http_get(srv.port).ok
    finally:
        trickle.stop()
        stop_watch.set()
        watcher.join(5)
    failures = ramp.failures() + trickle.failures()
    counts = _counts(srv)
    assert counts[:3] == [2, 3, 4] and counts[-3:] == [3, 2, 1], counts
    assert all(1 <= c <= 4 for c in counts)
    assert all(1 <= k <= 4 for _, k in timeline[1:]), timeline
    assert not failures, "; ".join(sorted({r.error or str(r.status) for r in failures}))
    # the workers over time, for the report: (seconds, workers) when the count changed
    changes = [timeline[0]] + [b for a, b in zip(timeline, timeline[1:]) if a[1] != b[1]]
    record_figure("cheaper_ramp_worker_counts", changes, "(s, workers)",
                  "processes 4, cheaper 1, cheaper-overload 1: 6 clients on /sleep?s=0.2 "
                  f"until 4 workers (at {t_full:.1f}s), then 1 client on /sleep?s=0.02 (from "
                  f"{t_idle:.1f}s) while they are retired, then none: 1 worker at {t_low:.1f}s")
    record_figure("cheaper_ramp_failed_requests", len(failures), "requests",
                  f"of {len(ramp.snapshot()) + len(trickle.snapshot())}")


def test_cheaper_initial_is_the_starting_count(server):
    srv = server("--processes", "4", "--cheaper", "1", "--cheaper-initial", "3")
    assert srv.wait_workers(lambda w: len(w) == 3, 10, "three workers at start")
    # idle: spare retires them (cheaper-overload 3 cycles each) down to cheaper
    srv.wait_line(r"cheaped: .*: 2 worker\(s\)", 10)


def test_backlog_algo_adds_workers_for_queued_connections(server):
    srv = server("--processes", "3", "--cheaper", "1", "--cheaper-algo", "backlog",
                 "--cheaper-overload", "2")
    with Load(srv.port, clients=8, path="/sleep?s=0.3", max_seconds=30) as load:
        srv.wait_line(r"cheaper \(backlog\): .*: 3 worker\(s\)", 15)
    assert not load.failures()
    srv.wait_line(r"cheaped: .*: 1 worker\(s\)", 15)


def test_cheaper_not_below_processes_is_one_line(server):
    srv = server("--processes", "2", "--cheaper", "2", ready=False)
    assert srv.wait_exit(10) == 2
    lines = srv.output().strip().splitlines()
    assert len(lines) == 1 and "cheaper (2, command line) must be lower than processes (2)" \
        in lines[0], lines


def test_unknown_algo_falls_back_to_spare_with_a_warning(server):
    # uWSGI 2.0.31: "unable to find requested cheaper algorithm, falling back to spare"
    srv = server("--processes", "2", "--cheaper", "1", "--cheaper-algo", "nope")
    assert len(srv.find(r"WARNING: cheaper-algo 'nope' .* falling back to spare")) == 1
    assert srv.find(r"cheaper \(spare\): 1 worker\(s\) to start")


def test_idle_goes_cheap_and_a_connection_brings_the_workers_back(server):
    srv = server("--processes", "2", "--idle", "1")
    assert srv.wait_workers(lambda w: len(w) == 2, 10, "two workers")
    assert http_get(srv.port).ok
    srv.wait_line(r"workers have been inactive for more than 1 seconds", 10)
    poll(lambda: not srv.workers(), 10, "no worker")
    reply = http_get(srv.port)  # waits in the listen queue while the workers are forked
    assert reply.ok, reply
    srv.wait_workers(lambda w: len(w) == 2, 10, "two workers again")


def test_die_on_idle_stops_the_server(server):
    srv = server("--processes", "2", "--idle", "1", "--die-on-idle")
    srv.wait_line(r"workers have been inactive for more than 1 seconds", 10)
    assert srv.wait_exit(10) == 0


def test_requests_keep_idle_from_going_cheap(server):
    srv = server("--processes", "2", "--idle", "3")
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:  # a request every 0.3 s for 4 s: never idle for 3 s
        assert http_get(srv.port, "/sleep?s=0.3").ok
    assert not srv.find("inactive")


def test_cheaper_true_is_atoi_zero_as_in_uwsgi(server):
    # label-studio's uwsgi.ini says `cheaper = true`; uWSGI reads int options with atoi
    srv = server("--processes", "2", "--cheaper", "true")
    assert len(srv.find(r"WARNING: .*cheaper = 'true' is not a number of workers: uWSGI reads "
                        r"it as 0 \(atoi\), so does uwsgipy \(adaptive workers off\)")) == 1
    assert srv.wait_workers(lambda w: len(w) == 2, 10, "two workers")
    assert not srv.find(r"cheaper \(")
