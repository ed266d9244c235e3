"""The stats server (uWSGI ``--stats ADDR``, ``--stats-http``).

Every connection to ADDR gets one JSON document describing the master, its
listeners and its workers, and is then closed (uWSGI's raw mode: no
request is read).  With ``stats-http`` the connection must send an HTTP
request and gets the document in an ``HTTP/1.0 200`` response instead.

The document has the shape of uWSGI 2.0's (``uwsgi_master_generate_stats``
in core/master_utils.c), so ``uwsgitop``, Telegraf's ``inputs.uwsgi``,
Metricbeat and netdata read it unchanged.  Every number is a JSON integer,
as in uWSGI.  What uwsgitop reads: ``version``, ``listen_queue``, ``cwd``,
``uid``, ``gid``, ``pid`` and, per worker, ``id``, ``pid``, ``requests``,
``exceptions``, ``signals``, ``status``, ``avg_rt``, ``rss``, ``vsz``,
``tx``, ``respawn_count``, ``harakiri_count``, ``running_time``,
``last_spawn`` and the ``cores`` (``id``, ``requests``, ``in_request``).

Deliberate deviations from uWSGI:

- ``avg_rt`` is an exponentially weighted average (the last ~10 requests
  weigh most), not uWSGI's plain mean; ``running_time`` is exact (the C
  core adds up every request's time, in µs).
- ``listen_queue`` and each socket's ``queue`` / ``max_queue`` come from
  ``TCP_INFO`` on the listening socket (Linux: ``tcpi_unacked`` is the
  accept queue length, ``tcpi_sacked`` the effective backlog), one system
  call per listener instead of a scan of /proc/net/tcp, whose size grows
  with every connection on the host.  Unix sockets are asked through
  sock_diag (a netlink ``unix_diag_req`` for the socket's inode with
  ``UDIAG_SHOW_RQLEN``: ``udiag_rqueue`` is the accept queue length,
  ``udiag_wqueue`` the backlog).  Elsewhere than Linux both are 0 and
  ``max_queue`` is the configured ``listen``.
- ``listen_queue_errors`` counts, as uWSGI's, the samples that found a
  listener's queue at its backlog; the master samples every second
  (:class:`QueueSampler`, running while a stats or metrics server does).
- Counters uwsgipy does not have (signals, routed/offloaded requests,
  read/write errors, locks) are 0 or empty.
- Workers are listed by worker id, as in uWSGI; an id without a process
  (between a death and its respawn) has pid 0 and status ``cheap``.  While
  a worker id is being recycled its replacement is the one shown.

The server is :mod:`socketserver` (one daemon thread accepting, one
short-lived daemon thread per connection) on a socket bound by
:func:`uwsgipy.sockets.bind_listener`, so the address forms and the stale
unix socket handling are the listeners'.  It runs in the master only: the
document is built from the arbiter's worker table and the shared-memory
scoreboard, which are read, never written, from the stats threads.
"""
from __future__ import annotations

import http.server
import json
import logging
import os
import socket
import socketserver
import struct
import sys
import threading
import time
from typing import Any, Dict, Iterable, List, Tuple

from . import __version__
from .scoreboard import Slot
from .sockets import Listener, bind_listener

__all__ = ["snapshot", "start_stats_server", "start_metrics_server", "listen_queue",
           "QueueSampler", "StatsServer"]

log = logging.getLogger("uwsgipy")

IO_TIMEOUT = 5.0      # s a stats client may take to send its request / read the document
POLL_INTERVAL = 0.2   # s: serve_forever's shutdown check, bounds the master's stop/reload delay
STATS_BACKLOG = 64    # listen backlog of the stats socket (monitoring clients only)

# struct tcp_info (linux/tcp.h): 8 one-byte fields, then u32 rto, ato, snd_mss,
# rcv_mss, unacked, sacked.  For a socket in LISTEN state the kernel reports
# the accept queue length as tcpi_unacked and the backlog as tcpi_sacked.
_TCP_INFO_QUEUE = struct.Struct("=II")
_TCP_INFO_QUEUE_OFFSET = 24
_TCP_INFO_LEN = 104


# sock_diag (linux/sock_diag.h, linux/unix_diag.h): one request for one
# unix socket by inode, answered with its unix_diag_msg and attributes.
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_UDIAG_SHOW_RQLEN = 0x10
_UNIX_DIAG_RQLEN = 4
_NLMSGHDR = struct.Struct("=IHHII")           # len, type, flags, seq, pid
_UNIX_DIAG_REQ = struct.Struct("=BBHIIIII")   # family, protocol, pad, states, ino, show, cookie[2]
_UNIX_DIAG_MSG_LEN = 16                       # family, type, state, pad, ino, cookie[2]
_RTATTR = struct.Struct("=HH")                # len, type
_NO_COOKIE = 0xFFFFFFFF                       # INET_DIAG_NOCOOKIE: match by inode alone
_TCP_LISTEN = 10                              # udiag_state of a listening socket
_NETLINK_SOCK_DIAG = 4                        # linux/netlink.h (not in the socket module)


def _unix_queue(sock: socket.socket) -> Tuple[int, int]:
    """(accept queue length, backlog) of a listening unix socket from
    sock_diag; (0, 0) when the kernel cannot tell (not Linux, no
    CONFIG_UNIX_DIAG)."""
    netlink = getattr(socket, "AF_NETLINK", None)
    if netlink is None:
        return 0, 0
    try:
        ino = os.fstat(sock.fileno()).st_ino
        req = _UNIX_DIAG_REQ.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, ino & 0xFFFFFFFF,
                                  _UDIAG_SHOW_RQLEN, _NO_COOKIE, _NO_COOKIE)
        msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(req), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST,
                             1, 0) + req
        with socket.socket(netlink, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(1.0)
            nl.send(msg)
            data = nl.recv(8192)
    except OSError:
        return 0, 0
    pos = 0
    while pos + _NLMSGHDR.size <= len(data):
        length, kind = _NLMSGHDR.unpack_from(data, pos)[:2]
        if length < _NLMSGHDR.size or kind == _NLMSG_ERROR:
            return 0, 0
        if kind == _SOCK_DIAG_BY_FAMILY:
            if data[pos + _NLMSGHDR.size + 2] != _TCP_LISTEN:
                return 0, 0  # udiag_state: a connected socket's queues are bytes
            attr = pos + _NLMSGHDR.size + _UNIX_DIAG_MSG_LEN
            end = pos + length
            while attr + _RTATTR.size <= end:
                alen, atype = _RTATTR.unpack_from(data, attr)
                if alen < _RTATTR.size:
                    break
                if atype == _UNIX_DIAG_RQLEN and alen >= _RTATTR.size + 8:
                    rqueue, wqueue = struct.unpack_from("=II", data, attr + _RTATTR.size)
                    return rqueue, wqueue
                attr += (alen + 3) & ~3
        pos += (length + 3) & ~3
    return 0, 0


def listen_queue(sock: socket.socket) -> Tuple[int, int]:
    """(connections waiting in the accept queue, backlog) of a listening TCP
    or unix socket; (0, 0) when unknown (closed socket, not Linux)."""
    if sock.family == getattr(socket, "AF_UNIX", None):
        return _unix_queue(sock)
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(socket, "TCP_INFO"):
        return 0, 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return 0, 0
    if len(info) < _TCP_INFO_QUEUE_OFFSET + _TCP_INFO_QUEUE.size:
        return 0, 0
    queue, backlog = _TCP_INFO_QUEUE.unpack_from(info, _TCP_INFO_QUEUE_OFFSET)
    return queue, backlog


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _memory(pid: int) -> Tuple[int, int]:
    """(rss, vsz) in bytes from /proc/PID/statm; (0, 0) when unknown (uWSGI
    also reports 0 when it does not measure)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            fields = f.read().split()
        return int(fields[1]) * _PAGE_SIZE, int(fields[0]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0, 0


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1")


def _core(index: int, slot: Any, alive: bool, now_mono: float, now_wall: float) -> Dict[str, Any]:
    """One uWSGI "core" (an app thread, a greenlet slot, or the loop thread
    with threads = 1) from its scoreboard slot."""
    # Each field is read once: the worker keeps writing the slot.
    started = slot.request_started if alive else 0.0
    doc: Dict[str, Any] = {
        "id": index,
        "requests": int(slot.requests),
        "static_requests": int(slot.static_requests),
        "routed_requests": 0,
        "offloaded_requests": 0,
        "write_errors": 0,
        "read_errors": 0,
        "in_request": 1 if started else 0,
        "vars": [],
        "req_info": {},
    }
    if started:
        # uWSGI lists the request's vars; the scoreboard has these two.
        doc["vars"] = [f"REQUEST_METHOD={_text(slot.method)}", f"REQUEST_URI={_text(slot.uri)}"]
        doc["req_info"] = {"request_start": int(now_wall - (now_mono - started))}
    return doc


def _worker(wid: int, info: Any, slots: Iterable[Any], chdir: str, respawns: int,
            now_mono: float, now_wall: float, harakiri: int = 0) -> Dict[str, Any]:
    """One uWSGI worker entry.  info: the arbiter's WorkerInfo, None when the
    worker id has no process."""
    alive = info is not None
    cores: List[Dict[str, Any]] = []
    requests = exceptions = tx = running_us = 0
    weighted_rt = 0.0
    serving = False
    for index, slot in enumerate(slots):
        core = _core(index, slot, alive, now_mono, now_wall)
        cores.append(core)
        n = core["requests"]
        requests += n
        exceptions += int(slot.exceptions)
        tx += int(slot.tx)
        running_us += int(slot.running_us)
        weighted_rt += float(slot.avg_rt) * n
        if alive and slot.pid == info.pid:
            serving = True
    if not alive:
        status = "cheap"
    elif any(c["in_request"] for c in cores):
        status = "busy"
    else:
        status = "idle"
    rss, vsz = _memory(info.pid) if alive else (0, 0)
    return {
        "id": wid,
        "pid": info.pid if alive else 0,
        "accepting": 1 if alive and serving and not info.stopping else 0,
        "requests": requests,
        # uWSGI: requests since the last max-requests reset; ours reset at spawn.
        "delta_requests": requests,
        "exceptions": exceptions,
        "harakiri_count": harakiri,
        "signals": 0,
        "signal_queue": 0,
        "status": status,
        "rss": rss,
        "vsz": vsz,
        "running_time": running_us,
        "last_spawn": int(info.spawned_wall) if alive else 0,
        # uWSGI counts the first spawn too.
        "respawn_count": info.respawns + 1 if alive else respawns,
        "tx": tx,
        "avg_rt": int(weighted_rt / requests) if requests else 0,
        "apps": [{
            "id": 0,
            "modifier1": 0,
            "mountpoint": "",
            "startup_time": 0,
            "requests": requests,
            "exceptions": exceptions,
            "chdir": chdir,
        }] if alive else [],
        "cores": cores,
    }


def worker_blocks(arbiter: Any) -> List[Tuple[int, Any, List[Any]]]:
    """(worker id, WorkerInfo or None, its scoreboard slots) for every
    worker id, in order: the serving process of each id rather than one
    being recycled; zeroed slots for an id without a process.  Read-only,
    safe from the stats threads (the worker table is copied first:
    ``list()`` of a dict is atomic under the GIL)."""
    by_wid: Dict[int, Any] = {}
    for w in sorted(list(arbiter.workers.values()), key=lambda w: (w.stopping, -w.spawned)):
        by_wid.setdefault(w.wid, w)
    scoreboard = arbiter.scoreboard
    out = []
    for wid in sorted(set(range(1, arbiter.num_workers + 1)) | set(by_wid)):
        slots: List[Any] = []
        info = by_wid.get(wid)
        if scoreboard is not None and info is not None and getattr(info, "slot", 0):
            slots = list(scoreboard.cores(info.slot))
        elif scoreboard is not None:
            slots = [Slot() for _ in range(scoreboard.cores_per_worker)]
        out.append((wid, info, slots))
    return out


def snapshot(arbiter: Any) -> Dict[str, Any]:
    """The stats document for ``arbiter`` (see the module docstring).

    Called from the stats threads while the master loop runs: the worker
    table is copied first (``list()`` of a dict is atomic under the GIL) and
    nothing of the arbiter is modified.
    """
    now_mono = time.monotonic()
    now_wall = time.time()
    cfg = arbiter.cfg
    sampler = getattr(arbiter, "queue_sampler", None)
    queue_errors = dict(sampler.errors) if sampler is not None else {}
    tally = getattr(arbiter, "tally", None)
    harakiri = dict(tally.harakiri) if tally is not None else {}
    sockets = []
    for lst in list(arbiter.listeners):
        queue, max_queue = listen_queue(lst.sock)
        sockets.append({
            "name": lst.bound,
            "proto": lst.proto_name(cfg),
            "queue": queue,
            "max_queue": max_queue or int(cfg.listen),
            "shared": 0,
            "can_offload": 0,
        })
    respawn_counts = dict(getattr(arbiter, "respawn_counts", {}))
    chdir = cfg.chdir or ""
    workers = [_worker(wid, info, slots, chdir, respawn_counts.get(wid, 0), now_mono, now_wall,
                       harakiri.get(wid, 0))
               for wid, info, slots in worker_blocks(arbiter)]
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    queue = max((s["queue"] for s in sockets), default=0)
    return {
        "version": __version__,
        # uWSGI: the fullest socket's accept queue; "load" is set to the same.
        "listen_queue": queue,
        "listen_queue_errors": sum(queue_errors.values()),
        "signal_queue": 0,
        "load": queue,
        "pid": arbiter.pid,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cwd": cwd,
        "locks": [],
        "sockets": sockets,
        "workers": workers,
    }


# ----------------------------------------------------------------------
# the server
# ----------------------------------------------------------------------

class _RawHandler(socketserver.StreamRequestHandler):
    """uWSGI's raw stats protocol: the document, then close."""
    timeout = IO_TIMEOUT

    def handle(self) -> None:
        self.wfile.write(self.server.document())  # type: ignore[attr-defined]


class _HTTPHandler(http.server.BaseHTTPRequestHandler):
    """uWSGI --stats-http: any GET path gets the document, but /metrics the
    Prometheus exposition (uwsgipy/metrics.py); on a metrics-socket every
    path gets the exposition."""
    timeout = IO_TIMEOUT
    protocol_version = "HTTP/1.0"
    server_version = f"uwsgipy/{__version__}"

    def do_GET(self) -> None:
        server: Any = self.server
        if server.metrics_only or self.path.split("?", 1)[0] == "/metrics":
            from .metrics import exposition
            body, ctype = exposition(server.arbiter, self.headers.get("Accept", ""))
        else:
            body, ctype = server.document(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # monitoring polls are not access-logged


class StatsServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A threading socketserver on an already bound :class:`Listener` (TCP
    or unix).  ``server_close()`` also removes the unix socket file."""

    daemon_threads = True       # a stuck client never delays the master's exit
    block_on_close = False

    def __init__(self, listener: Listener, arbiter: Any, *, http: bool,
                 metrics_only: bool = False) -> None:
        # TCPServer.__init__ would create and bind its own socket: skip it.
        socketserver.BaseServer.__init__(self, listener.sock.getsockname(),
                                         _HTTPHandler if http else _RawHandler)
        self.socket = listener.sock
        self.listener = listener
        self.arbiter = arbiter
        self.metrics_only = metrics_only

    def document(self) -> bytes:
        return json.dumps(snapshot(self.arbiter), separators=(",", ":")).encode()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # the client went away or timed out
        log.exception("stats: error serving a client")

    def server_close(self) -> None:
        super().server_close()
        if self.listener.unix_path:
            try:
                os.unlink(self.listener.unix_path)
            except FileNotFoundError:
                pass


def start_stats_server(address: str, arbiter: Any, *, http: bool = False,
                       metrics_only: bool = False) -> StatsServer:
    """Bind ``address`` (a uWSGI address: ``host:port``, ``:port``, a unix
    socket path or ``@abstract``) and serve the stats document from a daemon
    thread (metrics_only: the Prometheus exposition, over HTTP).  Stop with
    ``shutdown()`` then ``server_close()``.  Raises OSError/ValueError naming
    the address when it cannot be bound.  Also starts the arbiter's
    :class:`QueueSampler` if it has none yet."""
    kind = "metrics" if metrics_only else "stats"
    listener = bind_listener(kind, address, backlog=STATS_BACKLOG)
    # bind_listener makes listeners inheritable for the workers and a
    # re-executed master; the stats socket is the master's alone.
    listener.sock.set_inheritable(False)
    server = StatsServer(listener, arbiter, http=http or metrics_only, metrics_only=metrics_only)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
                              name=f"uwsgipy-{kind}", daemon=True)
    thread.start()
    if getattr(arbiter, "queue_sampler", None) is None:
        arbiter.queue_sampler = QueueSampler(arbiter)
        arbiter.queue_sampler.start()
    log.info("%s server on %s%s", kind, listener.bound,
             " (http)" if http and not metrics_only else "")
    return server


def start_metrics_server(address: str, arbiter: Any) -> StatsServer:
    """metrics-socket: the Prometheus exposition on every path of ADDR."""
    return start_stats_server(address, arbiter, metrics_only=True)


class QueueSampler(threading.Thread):
    """The master's listen queue sampler: every ``interval`` seconds, each
    listener whose accept queue is at its backlog counts one
    ``listen_queue_errors`` (uWSGI's master counts the same way, once per
    cycle).  ``errors`` maps the listener's bound address to its count."""

    def __init__(self, arbiter: Any, interval: float = 1.0) -> None:
        super().__init__(name="uwsgipy-queue-sampler", daemon=True)
        self.arbiter = arbiter
        self.interval = interval
        self.errors: Dict[str, int] = {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        for lst in list(self.arbiter.listeners):
            queue, backlog = listen_queue(lst.sock)
            self.errors.setdefault(lst.bound, 0)
            if backlog and queue >= backlog:
                self.errors[lst.bound] += 1

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.sample()
            except Exception:  # a listener closed under us (reload): next time
                pass

    def stop(self) -> None:
        self._stop_event.set()
