"""Prometheus metrics: ``/metrics`` on the stats HTTP server and on a
``metrics-socket`` of its own.

The master answers from what the stats document uses: the shared-memory
scoreboard (``upy_slot``, written by the C core where a request ends) and
the arbiter's worker table; a scrape reads memory only and never waits for
a worker.  The exposition is written here (it is small): the Prometheus
text format 0.0.4, or OpenMetrics 1.0.0 when the scraper's ``Accept``
asks for ``application/openmetrics-text`` (``# EOF``, counter families
named without ``_total``).

Families (labels are bounded: worker ids, status class, listener address,
respawn cause).  Totals have no ``worker`` label; the per-worker families
are the ``uwsgipy_worker_*`` ones, so ``sum()`` over a family never counts
a request twice.

======================================= ========= =========================
name                                    type      labels
======================================= ========= =========================
uwsgipy_requests_total                  counter   status (1xx..5xx)
uwsgipy_exceptions_total                counter
uwsgipy_static_requests_total           counter
uwsgipy_tx_bytes_total                  counter
uwsgipy_request_duration_seconds        histogram le (DURATION_BOUNDS)
uwsgipy_requests_in_flight              gauge
uwsgipy_cores                           gauge     state (busy, idle)
uwsgipy_workers                         gauge
uwsgipy_rss_bytes                       gauge
uwsgipy_harakiri_total                  counter
uwsgipy_worker_respawns_total           counter   cause (RESPAWN_CAUSES)
uwsgipy_listen_queue                    gauge     listener
uwsgipy_listen_queue_backlog            gauge     listener
uwsgipy_listen_queue_errors_total       counter   listener
uwsgipy_host_listen_overflows           gauge     (the kernel's ListenOverflows)
uwsgipy_worker_requests_total           counter   worker, status
uwsgipy_worker_exceptions_total         counter   worker
uwsgipy_worker_tx_bytes_total           counter   worker
uwsgipy_worker_busy_cores               gauge     worker
uwsgipy_worker_rss_bytes                gauge     worker
uwsgipy_worker_harakiri_total           counter   worker
======================================= ========= =========================

The totals add the counts of workers that have ended (kept by
:class:`Tally` when the master reaps them) to the live workers' slots, so
they only go down when the master restarts.  Per-worker counters restart
with each new process of the worker id (a counter reset to Prometheus).

The request duration is measured by the C core from the call of the app
(or the start of a static file) to the end of the response; buckets
(seconds) are :data:`DURATION_BOUNDS`: Prometheus' default buckets from
5 ms to 10 s.  ``_sum`` is the scoreboard's ``running_us`` (app requests;
static files are counted in the buckets only).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["DURATION_BOUNDS", "RESPAWN_CAUSES", "Tally", "exposition", "render",
           "TEXT_CONTENT_TYPE", "OPENMETRICS_CONTENT_TYPE"]

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# Upper bounds (s) of the duration buckets: UPY_DURATION_BOUNDS_US in
# csrc/upy_core.h, whose upy_slot.duration has one more (past 10 s).
DURATION_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

# Why a worker process ended while the server went on (uwsgipy_worker_respawns_total):
RESPAWN_CAUSES = (
    "harakiri",             # the master killed it (harakiri)
    "max-requests",         # it stopped itself after max-requests
    "reload-on-rss",        # it stopped itself above reload-on-rss
    "evil-reload-on-rss",   # the master killed it above evil-reload-on-rss
    "reload-on-as",         # the master retired it above reload-on-as
    "max-worker-lifetime",  # the master retired it (max-worker-lifetime)
    "reload",               # the master retired it (reload, chain reload, fewer workers)
    "signal",               # killed by a signal nobody in uwsgipy sent
    "exit",                 # exited on its own, with an error or unexpectedly
)


class Tally:
    """The master's own counters for /metrics and the stats document:
    harakiri kills per worker id, ended workers by cause, and the scoreboard
    counts of ended workers (so totals survive respawns).  Written by the
    master loop, read by the stats threads (plain ints and dicts: each
    update is atomic under the GIL)."""

    def __init__(self) -> None:
        self.harakiri: Dict[int, int] = {}
        self.causes: Dict[str, int] = {c: 0 for c in RESPAWN_CAUSES}
        self.lock = threading.RLock()  # the arbiter's reap and render(): one consistent view
        self.requests = [0] * 5
        self.duration = [0] * (len(DURATION_BOUNDS) + 1)
        self.exceptions = 0
        self.static_requests = 0
        self.tx = 0
        self.running_us = 0

    def harakiri_kill(self, wid: int) -> None:
        self.harakiri[wid] = self.harakiri.get(wid, 0) + 1

    def worker_ended(self, arbiter: Any, w: Any, status: int, cause: str = "") -> str:
        """A reaped worker: add its slots to the totals and count why it
        ended (returned; "" when the whole server is stopping)."""
        sb = arbiter.scoreboard
        if sb is not None and getattr(w, "slot", 0):
            for core in sb.cores(w.slot):
                if core.pid and core.pid != w.pid:
                    continue  # never written by this process
                for i in range(5):
                    self.requests[i] += int(core.status_class[i])
                for i in range(len(self.duration)):
                    self.duration[i] += int(core.duration[i])
                self.exceptions += int(core.exceptions)
                self.static_requests += int(core.static_requests)
                self.tx += int(core.tx)
                self.running_us += int(core.running_us)
        if arbiter.stopping:
            return ""
        if not cause:
            cause = self._cause(arbiter, w, status)
        self.causes[cause] = self.causes.get(cause, 0) + 1
        return cause

    @staticmethod
    def _cause(arbiter: Any, w: Any, status: int) -> str:
        if w.stopping:
            return "reload"
        if os.WIFSIGNALED(status):
            return "signal"
        if os.WEXITSTATUS(status) != 0:
            return "exit"
        # A clean exit nobody asked for: the worker's own max-requests or
        # reload-on-rss (csrc/upy_server.c check_limits).
        cfg = arbiter.cfg
        if cfg.max_requests:
            limit = cfg.max_requests + w.wid * cfg.max_requests_delta
            sb = arbiter.scoreboard
            done = sum(int(c.requests) for c in sb.cores(w.slot)) if sb is not None else 0
            if done >= limit:
                return "max-requests"
        if cfg.reload_on_rss:
            return "reload-on-rss"
        return "exit"


# ----------------------------------------------------------------------
# the exposition
# ----------------------------------------------------------------------

def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[Tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _num(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


class _Writer:
    def __init__(self, openmetrics: bool) -> None:
        self.om = openmetrics
        self.lines: List[str] = []

    def family(self, name: str, kind: str, help: str,
               samples: Sequence[Tuple[Sequence[Tuple[str, str]], float]]) -> None:
        """name: the sample name (counters end in _total)."""
        fam = name[:-len("_total")] if kind == "counter" and self.om else name
        self.lines.append(f"# HELP {fam} {help}")
        self.lines.append(f"# TYPE {fam} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_num(value)}")

    def histogram(self, name: str, help: str, buckets: Sequence[int], total_sum: float) -> None:
        self.lines.append(f"# HELP {name} {help}")
        self.lines.append(f"# TYPE {name} histogram")
        running = 0
        for bound, n in zip(DURATION_BOUNDS, buckets):
            running += n
            self.lines.append(f'{name}_bucket{{le="{bound!r}"}} {running}')
        running += buckets[len(DURATION_BOUNDS)]
        self.lines.append(f'{name}_bucket{{le="+Inf"}} {running}')
        self.lines.append(f"{name}_count {running}")
        self.lines.append(f"{name}_sum {_num(float(total_sum))}")

    def text(self) -> bytes:
        if self.om:
            self.lines.append("# EOF")
        return ("\n".join(self.lines) + "\n").encode()


def _host_listen_overflows(path: str = "/proc/net/netstat") -> Optional[int]:
    """TcpExt ListenOverflows (host-wide, since boot), None if unknown."""
    try:
        with open(path) as f:
            rows = [line.split() for line in f if line.startswith("TcpExt:")]
    except OSError:
        return None
    if len(rows) < 2:
        return None
    names, values = rows[0], rows[1]
    try:
        return int(values[names.index("ListenOverflows")])
    except (ValueError, IndexError):
        return None


def _own_slots(slots: Any, pid: int) -> List[Any]:
    """The slots a process has written (its pid in them, or not yet set)."""
    return [c for c in slots if not c.pid or c.pid == pid]


def render(arbiter: Any, openmetrics: bool = False) -> bytes:
    """The exposition of ``arbiter``'s state (read-only, from any thread)."""
    from .stats import _memory, listen_queue, worker_blocks
    tally: Tally = getattr(arbiter, "tally", None) or Tally()
    with tally.lock:
        requests = list(tally.requests)
        duration = list(tally.duration)
        exceptions, static, tx, running_us = (tally.exceptions, tally.static_requests, tally.tx,
                                              tally.running_us)
        # Totals: every worker process, those being recycled included (a
        # retiring worker's counts must not drop out while it finishes).
        busy = idle = workers = rss_total = 0
        sb = arbiter.scoreboard
        for w in list(arbiter.workers.values()):
            if sb is None or not getattr(w, "slot", 0):
                continue
            workers += 1
            rss_total += _memory(w.pid)[0]
            for slot in _own_slots(sb.cores(w.slot), w.pid):
                for i in range(5):
                    requests[i] += int(slot.status_class[i])
                for i in range(len(duration)):
                    duration[i] += int(slot.duration[i])
                exceptions += int(slot.exceptions)
                tx += int(slot.tx)
                static += int(slot.static_requests)
                running_us += int(slot.running_us)
                if slot.request_started:
                    busy += 1
                else:
                    idle += 1
    # Per worker id: its serving process (stats.worker_blocks).
    w_requests, w_exc, w_tx, w_busy, w_rss, w_hara = [], [], [], [], [], []
    for wid, info, slots in worker_blocks(arbiter):
        label = (("worker", str(wid)),)
        own = _own_slots(slots, info.pid) if info is not None else []
        for i in range(5):
            w_requests.append((label + (("status", STATUS_CLASSES[i]),),
                               sum(int(c.status_class[i]) for c in own)))
        w_exc.append((label, sum(int(c.exceptions) for c in own)))
        w_tx.append((label, sum(int(c.tx) for c in own)))
        w_busy.append((label, sum(1 for c in own if c.request_started)))
        w_hara.append((label, tally.harakiri.get(wid, 0)))
        w_rss.append((label, _memory(info.pid)[0] if info is not None else 0))

    out = _Writer(openmetrics)
    out.family("uwsgipy_requests_total", "counter",
               "Requests finished, by status class (all workers, ended ones included).",
               [((("status", c),), n) for c, n in zip(STATUS_CLASSES, requests)])
    out.family("uwsgipy_exceptions_total", "counter", "Requests whose app raised.",
               [((), exceptions)])
    out.family("uwsgipy_static_requests_total", "counter", "Requests served by static-map.",
               [((), static)])
    out.family("uwsgipy_tx_bytes_total", "counter", "Response body bytes sent.", [((), tx)])
    out.histogram("uwsgipy_request_duration_seconds",
                  "Server-side request duration, from the call of the app to the last byte.",
                  duration, running_us / 1e6)
    out.family("uwsgipy_requests_in_flight", "gauge", "Requests being served now.",
               [((), busy)])
    out.family("uwsgipy_cores", "gauge", "Cores (threads, greenlet slots) by state.",
               [((("state", "busy"),), busy), ((("state", "idle"),), idle)])
    out.family("uwsgipy_workers", "gauge", "Worker processes.", [((), workers)])
    out.family("uwsgipy_rss_bytes", "gauge", "Resident memory of the workers.",
               [((), rss_total)])
    out.family("uwsgipy_harakiri_total", "counter", "Workers killed by harakiri.",
               [((), sum(tally.harakiri.values()))])
    out.family("uwsgipy_worker_respawns_total", "counter",
               "Worker processes that ended while the server went on, by cause.",
               [((("cause", c),), n) for c, n in sorted(tally.causes.items())])
    queues, backlogs, errors = [], [], []
    sampler = getattr(arbiter, "queue_sampler", None)
    errs = dict(sampler.errors) if sampler is not None else {}
    for lst in list(arbiter.listeners):
        queue, backlog = listen_queue(lst.sock)
        label = (("listener", lst.bound),)
        queues.append((label, queue))
        backlogs.append((label, backlog or int(arbiter.cfg.listen)))
        errors.append((label, errs.get(lst.bound, 0)))
    out.family("uwsgipy_listen_queue", "gauge",
               "Connections waiting in the listener's accept queue.", queues)
    out.family("uwsgipy_listen_queue_backlog", "gauge", "The listener's accept queue size.",
               backlogs)
    out.family("uwsgipy_listen_queue_errors_total", "counter",
               "Samples (one a second) that found the accept queue full.", errors)
    overflows = _host_listen_overflows()
    if overflows is not None:
        out.family("uwsgipy_host_listen_overflows", "gauge",
                   "The kernel's TcpExt ListenOverflows (host-wide, since boot).",
                   [((), overflows)])
    out.family("uwsgipy_worker_requests_total", "counter",
               "Requests finished by this worker process, by status class.", w_requests)
    out.family("uwsgipy_worker_exceptions_total", "counter",
               "Requests of this worker process whose app raised.", w_exc)
    out.family("uwsgipy_worker_tx_bytes_total", "counter",
               "Response body bytes sent by this worker process.", w_tx)
    out.family("uwsgipy_worker_busy_cores", "gauge", "The worker's cores serving a request.",
               w_busy)
    out.family("uwsgipy_worker_rss_bytes", "gauge", "The worker's resident memory.", w_rss)
    out.family("uwsgipy_worker_harakiri_total", "counter",
               "Processes of this worker id killed by harakiri.", w_hara)
    return out.text()


def wants_openmetrics(accept: str) -> bool:
    """Does an Accept header ask for OpenMetrics (as Prometheus sends:
    ``application/openmetrics-text;version=1.0.0,text/plain;q=0.5``)?"""
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        if parts[0].lower() != "application/openmetrics-text":
            continue
        q = 1.0
        for p in parts[1:]:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            return True
    return False


def exposition(arbiter: Any, accept: str = "") -> Tuple[bytes, str]:
    """(body, Content-Type) for a scrape with this Accept header."""
    if wants_openmetrics(accept):
        return render(arbiter, openmetrics=True), OPENMETRICS_CONTENT_TYPE
    return render(arbiter), TEXT_CONTENT_TYPE
