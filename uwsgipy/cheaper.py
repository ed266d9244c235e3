"""Adaptive workers (uWSGI's "cheaper" subsystem): how many workers to run.

With ``cheaper = N`` the master starts ``cheaper-initial`` workers (default
N) and, once a second (uWSGI's master cycle), asks the configured
algorithm for a decision from a :class:`Sample` of the scoreboard: ``+k``
(fork k more, at most up to ``processes``), ``-1`` (retire the oldest idle
worker, never below ``cheaper``) or ``0``.  The algorithms here are pure:
state in (the object's counters and the sample), decision out; nothing
here forks or reads /proc, so each can be tested alone (tests/test_cheaper.py).

A worker is *busy* when one of its scoreboard slots has a request running
(``request_started != 0``), uWSGI's ``uwsgi_worker_is_busy``.  The listen
backlog (``backlog`` and ``busyness`` algorithms) is the number of
connections waiting in the TCP listeners' accept queues, read by the
master from each listener's TCP_INFO (``tcpi_unacked`` of a listening
socket is its accept queue length on Linux): the same source as uWSGI's
own on Linux.  Unix-socket listeners count 0 (uWSGI reads them the same
way only for TCP).

Algorithms (``cheaper-algo``), after uWSGI 2.0's core/master_utils.c and
plugins/cheaper_busyness:

spare     (default) every worker busy for more than ``cheaper-overload``
          cycles in a row: fork ``cheaper-step``; no worker busy for
          ``cheaper-overload`` cycles (more than one spare): retire one.
backlog   more than ``cheaper-overload`` connections queued: fork
          ``cheaper-step``; fewer: retire one.
busyness  the average share of time the workers spent in requests over
          each ``cheaper-overload`` seconds: above ``cheaper-busyness-max``
          % fork ``cheaper-step``; below ``cheaper-busyness-min`` % for
          ``cheaper-overload`` x ``cheaper-busyness-multiplier`` seconds
          retire one (the multiplier grows by ``cheaper-busyness-penalty``
          when a retired worker is needed again soon); a backlog above
          ``cheaper-busyness-backlog-alert`` forks
          ``cheaper-busyness-backlog-step`` emergency workers at once.
spare2    uWSGI 2.1's algorithm (uWSGI 2.0 has none by that name and falls
          back to spare): keep ``cheaper`` idle workers; fewer idle: fork
          up to ``cheaper-step`` at once; more idle for
          ``cheaper-overload`` cycles in a row: retire one.  Never fewer
          than ``cheaper-initial`` workers.
manual    never changes the count itself (SIGTTIN/SIGTTOU do).

An unknown name falls back to spare with one warning line, as uWSGI does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

__all__ = ["ALGORITHMS", "Params", "Sample", "WorkerSample", "make_algorithm",
           "Spare", "Spare2", "Backlog", "Busyness", "Manual", "listen_queue"]


@dataclass
class Params:
    """The cheaper options (uWSGI's names and defaults)."""
    cheaper: int                 # fewest workers (spare2: idle workers to keep)
    processes: int               # most workers
    initial: int = 0             # cheaper-initial (0: cheaper)
    step: int = 1                # cheaper-step
    overload: int = 3            # cheaper-overload: cycles (seconds), or queued connections
    busyness_max: int = 50       # percent
    busyness_min: int = 25       # percent
    busyness_multiplier: int = 10
    busyness_penalty: int = 2
    backlog_alert: int = 33
    backlog_multiplier: int = 3
    backlog_step: int = 1
    backlog_nonzero: int = 60    # seconds
    verbose: bool = False

    def __post_init__(self) -> None:
        if not self.initial:
            self.initial = self.cheaper
        self.step = max(1, self.step)
        self.overload = max(1, self.overload)


@dataclass
class WorkerSample:
    """One active worker at one check."""
    key: int                # its pid
    busy: bool              # a request is running in one of its slots
    running_us: int = 0     # total time spent in requests so far (scoreboard)


@dataclass
class Sample:
    """What the master sees once a cycle."""
    now: float                                   # seconds, monotonic
    workers: List[WorkerSample] = field(default_factory=list)  # active ones only
    backlog: int = 0                             # connections queued in the listeners

    @property
    def active(self) -> int:
        return len(self.workers)

    @property
    def busy(self) -> int:
        return sum(1 for w in self.workers if w.busy)


class Algorithm:
    """decide(sample) -> +k (fork k), -1 (retire one idle worker) or 0.
    The result is already clamped to [cheaper, processes]."""
    name = ""

    def __init__(self, params: Params) -> None:
        self.p = params
        self.notes: List[str] = []  # why, for the verbose log

    def decide(self, sample: Sample) -> int:
        raw = self._decide(sample)
        return self.clamp(raw, sample.active)

    def clamp(self, raw: int, active: int) -> int:
        if raw > 0:
            return max(0, min(raw, self.p.processes - active))
        if raw < 0:
            return -1 if active > self.floor() else 0
        return 0

    def floor(self) -> int:
        return self.p.cheaper

    def _decide(self, sample: Sample) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


class Spare(Algorithm):
    """uWSGI 2.0's default: overload and idle cycle counters."""
    name = "spare"

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.overload_count = 0
        self.idle_count = 0

    def _decide(self, s: Sample) -> int:
        if s.active and s.busy == s.active:
            self.overload_count += 1
            self.idle_count = 0
        elif self.overload_count > 0:
            self.overload_count -= 1
        if self.overload_count > self.p.overload:
            self.overload_count = 0
            return self.p.step  # clamped to processes
        if self.overload_count == 0:
            if s.active - s.busy == 1:
                return 0  # stable: exactly one spare worker
            self.idle_count += 1
            if s.active > self.p.cheaper and self.idle_count % self.p.overload == 0:
                return -1
        return 0


class Spare2(Algorithm):
    """uWSGI 2.1's spare2: keep ``cheaper`` idle workers."""
    name = "spare2"

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.idle_count = 0

    def floor(self) -> int:
        return self.p.initial

    def _decide(self, s: Sample) -> int:
        idle = s.active - s.busy
        if idle < self.p.cheaper:
            self.idle_count = 0
            return min(self.p.step, self.p.cheaper - idle)
        if idle > self.p.cheaper:
            self.idle_count += 1
            if self.idle_count >= self.p.overload:
                self.idle_count = 0
                return -1
        else:
            self.idle_count = 0
        return 0


class Backlog(Algorithm):
    """uWSGI 2.0's backlog: the listen queue against cheaper-overload."""
    name = "backlog"

    def _decide(self, s: Sample) -> int:
        if s.backlog > self.p.overload:
            return self.p.step
        if s.backlog < self.p.overload:
            return -1
        return 0


class Busyness(Algorithm):
    """uWSGI's busyness plugin: the share of time spent in requests."""
    name = "busyness"

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.multi = params.busyness_multiplier
        self.tcheck: Optional[float] = None
        self.last_running: Dict[int, int] = {}
        self.was_busy: Dict[int, int] = {}
        self.next_cheap = 0.0
        self.last_cheaped = -1e18
        self.last_action = 0      # 1 spawned, 2 retired
        self.tolerance = 0
        self.emergency = 0
        self.backlog_since: Optional[float] = None

    def _cheap_delay(self) -> float:
        multi = self.p.backlog_multiplier if self.emergency > 0 else self.multi
        return float(self.p.overload * multi)

    def _emergency(self, s: Sample) -> int:
        self.multi = self.p.busyness_multiplier
        self.last_action = 1
        self.next_cheap = s.now + self._cheap_delay()
        n = self.clamp(self.p.backlog_step, s.active)
        self.emergency += n
        self.notes.append(f"backlog {s.backlog}: {n} emergency worker(s)")
        return n

    def _decide(self, s: Sample) -> int:
        p = self.p
        if self.tcheck is None:
            self.tcheck = s.now
            self.next_cheap = s.now + self._cheap_delay()
        keys = {w.key for w in s.workers}
        for w in s.workers:
            self.was_busy[w.key] = self.was_busy.get(w.key, 0) + int(w.busy)
            self.last_running.setdefault(w.key, w.running_us)
        for gone in set(self.was_busy) - keys:
            self.was_busy.pop(gone, None)
            self.last_running.pop(gone, None)
        window = float(p.overload)
        if s.now - self.tcheck >= window:
            self.tcheck = s.now
            total = 0
            for w in s.workers:
                delta = w.running_us - self.last_running[w.key]
                percent = min(100, int(delta * 100 / (window * 1e6)))
                if delta == 0 and self.was_busy.get(w.key, 0) > 0:
                    percent = 100  # one request longer than the whole window
                total += percent
                self.was_busy[w.key] = 0
                self.last_running[w.key] = w.running_us
            avg = total // s.active if s.active else 0
            self.notes.append(f"busyness {avg}% over {p.overload}s, {s.active} worker(s)")
            if avg > p.busyness_max:
                self.tolerance = 0
                if s.active >= p.processes:
                    return 0
                self.last_action = 1
                if (s.now - self.last_cheaped) / p.overload <= self.multi:
                    self.multi += p.busyness_penalty  # retired too early: wait longer next time
                elif self.multi > p.busyness_multiplier:
                    self.multi -= 1
                self.next_cheap = s.now + self._cheap_delay()
                return p.step
            if s.backlog > p.backlog_alert and s.active < p.processes:
                return self._emergency(s)
            if avg < p.busyness_min:
                if s.active == 1:
                    return 0
                self.tolerance = 0
                if s.active > self.floor() and s.now >= self.next_cheap:
                    if self.last_action == 2 and self.multi > p.busyness_multiplier:
                        self.multi -= 1
                    self.next_cheap = s.now + self._cheap_delay()
                    self.last_cheaped = s.now
                    self.last_action = 2
                    if self.emergency > 0:
                        self.emergency -= 1
                    return -1
                return 0
            if s.active == 1:
                return 0
            if self.emergency > 0:
                self.emergency -= 1
            self.tolerance += 1
            if self.tolerance >= 3:
                self.next_cheap = s.now + self._cheap_delay()
            else:
                self.next_cheap += p.overload
            return 0
        if s.backlog > p.backlog_alert and s.active < p.processes:
            return self._emergency(s)
        if s.backlog > 0:
            if self.backlog_since is None:
                self.backlog_since = s.now
            elif s.now - self.backlog_since >= p.backlog_nonzero:
                self.backlog_since = s.now
                return self._emergency(s)
        else:
            self.backlog_since = None
        return 0


class Manual(Algorithm):
    """uWSGI's manual: never changes the count by itself (the master
    fifo's '+' and '-', SIGTTIN and SIGTTOU do)."""
    name = "manual"

    def _decide(self, s: Sample) -> int:
        return 0


ALGORITHMS = {cls.name: cls for cls in (Spare, Spare2, Backlog, Busyness, Manual)}


def make_algorithm(name: str, params: Params) -> Algorithm:
    """The algorithm called ``name`` (cheaper-algo); KeyError if unknown."""
    return ALGORITHMS[name](params)


def listen_queue(sock) -> int:
    """Connections waiting in a listening TCP socket's accept queue
    (Linux TCP_INFO: tcpi_unacked of a LISTEN socket is sk_ack_backlog);
    0 for other sockets or when it cannot be read."""
    import socket
    import struct
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return 0
    if len(info) < 28:
        return 0
    # struct tcp_info: 8 bytes of u8 fields, then u32 rto, ato, snd_mss,
    # rcv_mss, unacked (offset 24)
    return struct.unpack_from("I", info, 24)[0]
