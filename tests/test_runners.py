"""The app runners (issue 8): one event loop per worker owns every connection and hands complete
requests to the app inline (threads = 1), to a pool of app threads (threads = N) or to greenlets
(gevent = N).

What must hold: a slow request never holds another connection (directly and behind nginx's
keep-alive `proxy_pass`); N threads serve N times the requests of one; gevent serves many
sleeping requests at once, and with `gevent-monkey-patch` an app's outbound `requests` calls
yield; wsgi.multithread / wsgi.multiprocess say what the runner is; harakiri, the stats server's
cores and max-requests work per app thread / greenlet; a response parked on a client that does
not read frees its thread or greenlet.

Real servers on 127.0.0.1 port 0, real sockets; readiness and state are polled, every loop is
bounded.  The app is tests/apps/runner_app.py.
"""
from __future__ import annotations

import http.client
import http.server
import json
import re
import signal
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from helpers import (APPS, IO_TIMEOUT, RUNNERS, Conn, build_request, connect, http_request, parse_addr,
                     pattern_sha256, process_tree, sha256, wait_until)

APP = str(APPS / "runner_app.py")
STATS_RE = re.compile(r"uwsgipy: stats server on (\S+)")
CORES = {"threads1": 1, "threads4": 4, "gevent8": 8}

# head-of-line: what "answers at once" means while another request is busy
FAST = 0.050  # seconds, per request (the bound; gunicorn's gthread answers in ~1 ms)


def start(factory, *args: str, **kw):
    """An HTTP server with runner_app (kw: the factory's, e.g. expect_rc)."""
    return factory("--http-socket", "127.0.0.1:0", "--wsgi-file", APP, *args, **kw)


def exchange(c: Conn, path: str, expect: bytes = b"hello") -> float:
    """One keep-alive request on c; seconds until its response was read whole."""
    t0 = time.monotonic()
    c.send(build_request("GET", path))
    r = c.read_response()
    took = time.monotonic() - t0
    assert r.status == 200 and r.body == expect, r
    return took


def round_of(conns: List[Conn], path: str = "/hello") -> List[float]:
    """One request on each connection, all sent before any is read; each one's latency from
    the moment it was sent to the moment its response was read (an upper bound)."""
    sent = []
    for c in conns:
        sent.append(time.monotonic())
        c.send(build_request("GET", path))
    out = []
    for c, t0 in zip(conns, sent):
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello", r
        out.append(time.monotonic() - t0)
    return out


def in_thread(fn, *args) -> Tuple[threading.Thread, Dict[str, object]]:
    """Run fn(*args) in a daemon thread; holder["result"] or holder["error"] once it ends."""
    holder: Dict[str, object] = {}

    def run():
        try:
            holder["result"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            holder["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, holder


def result_of(t: threading.Thread, holder: Dict[str, object], timeout: float):
    t.join(timeout)
    assert not t.is_alive(), f"client thread still running after {timeout}s"
    if "error" in holder:
        raise holder["error"]  # type: ignore[misc]
    return holder["result"]


# ----------------------------------------------------------------------------------------------
# head-of-line blocking
# ----------------------------------------------------------------------------------------------

def test_slow_request_holds_no_other_keepalive_connection(server_factory):
    """1 worker x 4 threads, 8 keep-alive connections, a 3 s request on one of them: every
    request on the other seven, in rounds across the 3 s (one at a time and all seven at once),
    answers in < 50 ms, and so does one on each of the eight afterwards.  (The old
    loop-per-thread code held the connections its thread had accepted: 2.8 s.)"""
    s = start(server_factory, "--threads", "4")
    conns = [Conn(s.http_addr) for _ in range(8)]
    try:
        for c in conns:  # all eight open and served once: from here on the loop owns them
            exchange(c, "/hello")
        mark = s.mark()
        t_slow = time.monotonic()
        conns[0].send(build_request("GET", "/sleep?s=3&token=hol"))
        s.wait_for("runner_app: sleep-start hol", 5, start=mark)
        latencies: List[Tuple[float, str, int]] = []
        rounds = 0
        while rounds < 12 and time.monotonic() - t_slow < 2.2:
            if rounds % 2 == 0:
                latencies += [(exchange(c, "/hello"), f"round {rounds} one at a time", i)
                              for i, c in enumerate(conns[1:], 1)]
            else:
                latencies += [(t, f"round {rounds} all at once", i)
                              for i, t in enumerate(round_of(conns[1:]), 1)]
            rounds += 1
            if rounds % 2 == 0:
                time.sleep(0.2)  # pacing: spread the rounds over the slow request's 3 s
        in_flight = time.monotonic() - t_slow
        slowest = max(latencies)
        print(f"\nhead-of-line: {len(latencies)} requests in {rounds} rounds beside a 3 s request, "
              f"slowest {slowest[0] * 1000:.1f} ms")
        assert slowest[0] < FAST, (
            f"connection {slowest[2]} ({slowest[1]}) waited {slowest[0] * 1000:.0f} ms while "
            f"connection 0 ran a 3 s request; over 50 ms: "
            f"{sorted(((round(t * 1000), w, i) for t, w, i in latencies if t >= FAST), reverse=True)[:10]}")
        assert rounds >= 4 and in_flight < 3.0, (rounds, in_flight)
        r = conns[0].read_response()
        assert r.status == 200 and r.body == b"slept", r
        assert time.monotonic() - t_slow >= 2.9
        after = round_of(conns)
        assert max(after) < FAST, [round(t * 1000) for t in after]
    finally:
        for c in conns:
            c.close()


def test_slow_request_holds_no_other_connection_behind_nginx_keepalive(server_factory, module_nginx_factory):
    """nginx-conf/http-proxy.conf (proxy_pass with upstream keep-alive) in front of 1 worker x 4
    threads: 4 parallel 1 s requests finish in < 1.3 s in every round, also once nginx reuses its
    upstream connections.  (Loop-per-thread: an upstream connection stayed on the thread that
    accepted it, two of them often on one thread: 2.0 s in every round.)"""
    s = start(server_factory, "--threads", "4")
    ngx = module_nginx_factory("http-proxy.conf", s.http_addr)

    def one(barrier: threading.Barrier) -> Tuple[float, int, bytes]:
        barrier.wait(10)
        c = http.client.HTTPConnection(*ngx.addr, timeout=IO_TIMEOUT)
        try:
            c.request("GET", "/sleep?s=1")
            r = c.getresponse()
            return time.monotonic(), r.status, r.read()
        finally:
            c.close()

    rounds = []
    for n in range(4):
        barrier = threading.Barrier(5)
        clients = [in_thread(one, barrier) for _ in range(4)]
        barrier.wait(10)
        t0 = time.monotonic()
        results = [result_of(t, h, 15) for t, h in clients]
        assert all(st == 200 and body == b"slept" for _, st, body in results), (results, ngx.logs())
        rounds.append(max(t for t, _, _ in results) - t0)
    print(f"\nbehind nginx: 4 parallel 1 s requests, rounds {[round(r, 3) for r in rounds]} s")
    # nginx keeps the upstream connections of round 0 (keepalive 16) and reuses them after
    assert max(rounds) < 1.3, f"4 parallel 1 s requests on 4 threads took {[round(r, 2) for r in rounds]} s"


# ----------------------------------------------------------------------------------------------
# thread pool throughput
# ----------------------------------------------------------------------------------------------

def completions(addr, clients: int, path: str, warmup: float, window: float) -> int:
    """Closed-loop load: `clients` keep-alive connections, each sending its next request as soon
    as the previous response is read.  Returns the responses completed within [warmup,
    warmup + window] seconds after the start (every client has requests queued by then)."""
    stop = threading.Event()
    done: List[float] = []
    errors: List[str] = []
    lock = threading.Lock()

    def client():
        try:
            with Conn(addr) as c:
                while not stop.is_set():
                    c.send(build_request("GET", path))
                    r = c.read_response()
                    if r.status != 200:
                        errors.append(repr(r))
                        return
                    with lock:
                        done.append(time.monotonic())
        except OSError as e:
            if not stop.is_set():
                errors.append(repr(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    wait_until(lambda: time.monotonic() - t0 >= warmup + window, warmup + window + 1, interval=0.05,
               what="the end of the measuring window")
    stop.set()
    for t in threads:
        t.join(IO_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "load clients still running"
    assert not errors, errors[:5]
    with lock:
        return sum(1 for t in done if t0 + warmup <= t <= t0 + warmup + window)


def test_eight_threads_serve_seven_times_one(server_factory):
    """A 50 ms app (time.sleep: the GIL is free meanwhile) under 16 concurrent keep-alive
    clients: 8 threads complete >= 7x the requests of 1 thread in the same 2 s (ideal 8x)."""
    counts = {}
    for threads in (1, 8):
        s = start(server_factory, "--threads", str(threads), "--disable-logging")
        counts[threads] = completions(s.http_addr, 16, "/sleep?s=0.05", warmup=0.5, window=2.0)
        assert s.stop() == 0
    print(f"\n50 ms app, 16 clients, 2 s: 1 thread {counts[1]}, 8 threads {counts[8]} requests "
          f"({counts[8] / max(counts[1], 1):.2f}x)")
    assert counts[1] >= 25, counts  # ~40 at 20 requests/s: the measurement itself works
    assert counts[8] >= 7 * counts[1], f"8 threads served {counts[8]}, 1 thread {counts[1]}: " \
                                       f"{counts[8] / counts[1]:.2f}x"


# ----------------------------------------------------------------------------------------------
# gevent
# ----------------------------------------------------------------------------------------------

def concurrent_gets(addr, paths: List[str], timeout: float = IO_TIMEOUT) -> Tuple[float, List[bytes]]:
    """Open one connection per path (connected before the clock starts), send every request at
    once, read every response.  (seconds from the first send to the last response, bodies)."""
    conns = [Conn(addr, timeout) for _ in paths]
    try:
        t0 = time.monotonic()
        for c, p in zip(conns, paths):
            c.send(build_request("GET", p, [("Connection", "close")]))
        bodies = []
        for c in conns:
            r = c.read_response()
            assert r.status == 200, r
            bodies.append(r.body)
        return time.monotonic() - t0, bodies
    finally:
        for c in conns:
            c.close()


def test_gevent_100_sleeping_requests_at_once(server_factory):
    """1 worker, gevent = 100, an app that sleeps 1 s with gevent.sleep: 100 concurrent
    requests all finish in < 1.5 s (one at a time would be 100 s)."""
    s = start(server_factory, "--gevent", "100", "--disable-logging")
    took, bodies = concurrent_gets(s.http_addr, ["/gsleep?s=1"] * 100, timeout=30)
    assert bodies == [b"gslept"] * 100
    assert took < 1.5, f"100 concurrent 1 s gevent.sleep requests took {took:.2f} s"


class SlowBackend:
    """A local HTTP server the app calls: each GET waits `delay` seconds, then answers
    "backend PATH"."""

    def __init__(self, delay: float):
        delay_ = delay

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's name
                time.sleep(delay_)
                body = b"backend " + self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self) -> "SlowBackend":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.mark.parametrize("patch_option", ["--gevent-monkey-patch", "--gevent-early-monkey-patch"])
def test_gevent_monkey_patched_outbound_calls(server_factory, patch_option):
    """gevent = 20 with monkey patching: the app's `requests` and urllib calls to a local server
    work, and they yield: 20 requests whose backend takes 0.5 s each finish together in well
    under the 10 s they would take one after the other."""
    s = start(server_factory, "--gevent", "20", patch_option)
    env = http_request(s.http_addr, "GET", "/env").json()
    assert "socket" in env["patched"] and "time" in env["patched"], env
    with SlowBackend(0.5) as backend:
        from urllib.parse import quote
        for lib in ("requests", "urllib"):
            r = http_request(s.http_addr, "GET", f"/fetch?lib={lib}&url={quote(backend.url + '/one')}")
            assert r.status == 200 and r.body == b"200 backend /one", (lib, r)
        paths = [f"/fetch?lib={'requests' if i % 2 else 'urllib'}&url={quote(f'{backend.url}/n{i}')}"
                 for i in range(20)]
        took, bodies = concurrent_gets(s.http_addr, paths, timeout=30)
    assert bodies == [b"200 backend /n%d" % i for i in range(20)]
    assert took < 3.0, f"20 monkey-patched fetches of a 0.5 s backend took {took:.2f} s (serial: 10 s)"


# ----------------------------------------------------------------------------------------------
# PEP 3333 flags
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, multithread, multiprocess, where", [
    ([], False, False, "main thread"),
    (["--threads", "1"], False, False, "main thread"),
    (["--threads", "4"], True, False, "app thread"),
    (["--gevent", "8"], True, False, "greenlet"),
    (["--master", "--processes", "2"], False, True, "main thread"),
    (["--master", "--processes", "2", "--threads", "4"], True, True, "app thread"),
    (["--master", "--processes", "2", "--gevent", "8"], True, True, "greenlet"),
], ids=["default", "threads1", "threads4", "gevent8", "processes2", "processes2-threads4",
        "processes2-gevent8"])
def test_wsgi_multithread_and_multiprocess_true_to_the_runner(server_factory, args, multithread,
                                                              multiprocess, where):
    s = start(server_factory, *args)
    env = http_request(s.http_addr, "GET", "/env").json()
    assert (env["wsgi.multithread"], env["wsgi.multiprocess"], env["wsgi.run_once"]) == \
        (multithread, multiprocess, False), env
    if where == "greenlet":
        assert env["greenlet"], f"the gevent runner ran the app outside a greenlet: {env}"
    elif where == "app thread":
        assert env["thread"] != "MainThread" and not env["greenlet"], env
    else:
        assert env["thread"] == "MainThread" and not env["greenlet"], env


# ----------------------------------------------------------------------------------------------
# harakiri, stats, max-requests per app thread / greenlet
# ----------------------------------------------------------------------------------------------

def stats_of(addr) -> dict:
    """The stats server's JSON document (raw mode: it writes it and closes)."""
    with connect(addr) as sock:
        data = bytearray()
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    return json.loads(bytes(data))


def start_master(factory, kind: str, *extra: str):
    """--master, 1 worker under runner `kind` (a key of RUNNERS), runner_app; (server, stats
    address) when --stats is among `extra`, else (server, None)."""
    s = start(factory, "--master", "--processes", "1", *RUNNERS[kind], *extra)
    stats = None
    if "--stats" in extra:
        stats = parse_addr(STATS_RE.search(s.wait_for(STATS_RE)).group(1))
    return s, stats


def hold(addr, flag: str, timeout: float = 20):
    """GET /hold?flag=FLAG in a thread (the app waits until the file exists)."""
    return in_thread(lambda: http_request(addr, "GET", f"/hold?flag={flag}", timeout=timeout))


@pytest.mark.parametrize("kind", ["threads4", "gevent8"])
def test_stats_lists_every_core_and_what_it_runs(server_factory, kind, unix_dir):
    """The stats server lists one core per app thread / greenlet, and the cores running a
    request show it (vars, in_request) while the others serve on."""
    s, stats = start_master(server_factory, kind, "--stats", "127.0.0.1:0")
    n = CORES[kind]
    doc = wait_until(lambda: (lambda d: d["workers"] and d["workers"][0]["accepting"] and d)(stats_of(stats)),
                     5, what="the worker accepting")
    (w,) = doc["workers"]
    assert len(w["cores"]) == n, f"{kind}: {len(w['cores'])} cores in the stats, expected {n}"
    assert [c["id"] for c in w["cores"]] == list(range(n)), w["cores"]

    # short paths (the scoreboard keeps 95 bytes of a URI), one pair per test (unix_dir is the module's)
    flags = [Path(unix_dir) / f"release-{kind}-{i}" for i in range(2)]
    assert not any(f.exists() for f in flags)
    holders = [hold(s.http_addr, str(f)) for f in flags]
    try:
        def two_busy():
            d = stats_of(stats)
            busy = [c for c in d["workers"][0]["cores"] if c["in_request"]]
            return len(busy) == 2 and d
        doc = wait_until(two_busy, 5, what="two cores in a request")
        (w,) = doc["workers"]
        assert w["status"] == "busy" and len(w["cores"]) == n
        busy = [c for c in w["cores"] if c["in_request"]]
        assert sorted(c["vars"][1] for c in busy) == sorted(f"REQUEST_URI=/hold?flag={f}" for f in flags), busy
        assert all(c["vars"][0] == "REQUEST_METHOD=GET" for c in busy), busy
        assert all(abs(c["req_info"]["request_start"] - time.time()) < 10 for c in busy), busy
        # the other cores go on serving while two are held
        for _ in range(5):
            assert http_request(s.http_addr, "GET", "/hello", timeout=5).body == b"hello"
    finally:
        for f in flags:
            f.write_text("go")
        results = [result_of(t, h, 20) for t, h in holders]
    assert all(r.status == 200 and r.body == b"released" for r in results), results

    def idle_and_counted():
        d = stats_of(stats)
        w = d["workers"][0]
        return (not any(c["in_request"] for c in w["cores"]) and w["requests"] == 7
                and w["requests"] == sum(c["requests"] for c in w["cores"]) and d)
    doc = wait_until(idle_and_counted, 5, what="all cores idle, 7 requests counted")
    assert doc["workers"][0]["status"] == "idle"


@pytest.mark.parametrize("kind", ["threads4", "gevent8"])
def test_harakiri_fires_for_one_stuck_core_while_the_others_serve(server_factory, kind, tmp_path):
    """harakiri 1 s: one app thread / greenlet stuck on a request is killed within ~1 s even
    though the worker's other cores keep finishing requests meanwhile (their requests must not
    reset the stuck core's clock); the master then forks a replacement that serves."""
    s, _ = start_master(server_factory, kind, "--harakiri", "1")
    workers = wait_until(lambda: set(process_tree(s.pid)) - {s.pid}, 5, what="the worker")
    mark = s.mark()
    t0 = time.monotonic()
    t, holder = hold(s.http_addr, str(tmp_path / "never"), timeout=10)
    served = 0
    line = None
    while line is None and time.monotonic() - t0 < 5:
        line = s.find(r"harakiri: worker 1 \(pid \d+\) killed after", start=mark)
        if line is None:
            try:
                if http_request(s.http_addr, "GET", "/hello", timeout=3).body == b"hello":
                    served += 1
            except (OSError, AssertionError):
                pass  # the harakiri may hit this request too
            time.sleep(0.05)
    assert line is not None, f"no harakiri within 5 s; {served} other requests served meanwhile"
    m = re.search(r"killed after ([\d.]+)s on GET /hold\S* \(harakiri 1s\)", line)
    assert m, line
    assert 1.0 <= float(m.group(1)) < 2.5, line
    assert served >= 5, f"only {served} requests served by the other cores before the harakiri"
    t.join(12)
    new = wait_until(lambda: (set(process_tree(s.pid)) - {s.pid} - workers) or None, 5,
                     what="a replacement worker")
    r = wait_until(lambda: http_request(s.http_addr, "GET", "/env", timeout=5), 5, what="a reply")
    assert r.json()["pid"] in new


@pytest.mark.parametrize("kind", ["threads4", "gevent8"])
def test_max_requests_recycles_a_pooled_worker_without_failures(server_factory, kind):
    """max-requests 5 with 4 app threads / 8 greenlets and 4 concurrent clients: the worker is
    recycled again and again, and no request fails."""
    s, _ = start_master(server_factory, kind, "--max-requests", "5", "--min-worker-lifetime", "0")
    pids: List[int] = []
    took: List[float] = []
    errors: List[str] = []
    lock = threading.Lock()

    def client():
        for _ in range(15):
            try:
                t0 = time.monotonic()
                r = http_request(s.http_addr, "GET", "/env", timeout=10)
                assert r.status == 200, r
                with lock:
                    took.append(time.monotonic() - t0)
                    pids.append(r.json()["pid"])
            except (OSError, AssertionError) as e:
                with lock:
                    errors.append(repr(e))
    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:5]
    per_pid = {p: pids.count(p) for p in set(pids)}
    assert len(pids) == 60 and len(per_pid) >= 4, per_pid
    s.wait_for(r"worker 1 \(pid \d+\): max-requests reached after \d+ requests: recycling", 5)
    # a recycle costs a fork: the retiring worker exits as soon as its last request is done
    assert max(took) < 0.5, f"slowest request {max(took):.2f} s across {len(per_pid)} recycles"


@pytest.mark.parametrize("kind", list(RUNNERS))
def test_graceful_stop_exits_once_the_last_request_is_done(server_factory, kind):
    """SIGTERM with a request in flight: the request finishes, and the process exits at once
    after it (not at the loop's next timeout sweep); with nothing in flight it exits at once."""
    s = start(server_factory, *RUNNERS[kind], expect_rc=None)
    with Conn(s.http_addr) as c:
        mark = s.mark()
        c.send(build_request("GET", "/sleep?s=0.5&token=stop"))
        s.wait_for("runner_app: sleep-start stop", 5, start=mark)
        s.signal(signal.SIGTERM)
        r = c.read_response()
        answered = time.monotonic()
        assert r.status == 200 and r.body == b"slept", r
        assert s.wait_exit(10) == 0, s.output()
    assert time.monotonic() - answered < 0.5, f"exited {time.monotonic() - answered:.2f} s after the last response"
    idle = start(server_factory, *RUNNERS[kind], expect_rc=None)
    with Conn(idle.http_addr) as c:
        exchange(c, "/hello")
    t0 = time.monotonic()
    idle.signal(signal.SIGTERM)
    assert idle.wait_exit(10) == 0, idle.output()
    assert time.monotonic() - t0 < 0.5, f"idle: exited {time.monotonic() - t0:.2f} s after SIGTERM"


# ----------------------------------------------------------------------------------------------
# parked responses
# ----------------------------------------------------------------------------------------------

def stalled_download(addr, path: str) -> Conn:
    """A connection with a small receive buffer that sends GET path, reads the response head,
    and then reads nothing until the test says so."""
    c = Conn(addr, rcvbuf=65536)
    c.send(build_request("GET", path))
    c.read_until(b"\r\n\r\n")
    return c


@pytest.mark.parametrize("kind, path, stalled", [
    ("threads1", "/big", 2),
    ("threads4", "/big", 5),
    ("gevent8", "/big", 9),
    ("threads4", "/write_big", 3),
    ("gevent8", "/write_big", 7),
], ids=["threads1-generator", "threads4-generator", "gevent8-generator", "threads4-write",
        "gevent8-write"])
def test_parked_responses_block_no_other_connection(server_factory, kind, path, stalled):
    """Clients that stop reading a 25 MiB streamed response: a generator's output is parked
    on the loop and frees its core, so more stalled clients than cores block nobody; the
    imperative write() must wait (PEP 3333) but holds only its own thread, and under gevent
    yields to the hub.  Four other keep-alive connections answer in < 0.5 s meanwhile; then every
    stalled download completes intact."""
    blocks = 400
    s = start(server_factory, *RUNNERS[kind], "--socket-timeout", "30", "--disable-logging")
    others = [Conn(s.http_addr, timeout=5) for _ in range(4)]
    downloads: List[Conn] = []
    try:
        for c in others:
            exchange(c, "/hello")
        # each response has begun and its client reads no more: the server has a response
        # blocked on every one of them
        downloads = [stalled_download(s.http_addr, f"{path}?blocks={blocks}") for _ in range(stalled)]
        worst = 0.0
        for _ in range(3):
            worst = max([worst, *round_of(others)])
        assert worst < 0.5, f"{stalled} stalled downloads of {path} held the other connections {worst:.2f} s"
        digest = pattern_sha256(blocks)
        for c in downloads:
            c.sock.settimeout(30)
            assert sha256(c.read_exact(blocks * 65536)) == digest
        for c in others:
            assert exchange(c, "/hello") < 0.5
    finally:
        for c in [*others, *downloads]:
            c.close()
