"""Prometheus metrics (uwsgipy/metrics.py): /metrics on the stats HTTP server and on a
metrics-socket, parsed with prometheus_client's parsers (text 0.0.4 and OpenMetrics 1.0.0) and
checked against a known number of requests, an exception, a harakiri kill; and the listen queue
(TCP_INFO for TCP, sock_diag for unix sockets) with every worker held busy."""
from __future__ import annotations

import os
import re
import socket
import textwrap
import threading
import time
from typing import Dict, FrozenSet, List, Tuple

import pytest

from helpers import IO_TIMEOUT, http_request, parse_addr, short_tmpdir, wait_until

from uwsgipy.metrics import (DURATION_BOUNDS, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE,
                             wants_openmetrics)

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

STATS_RE = re.compile(r"uwsgipy: stats server on (\S+)")
METRICS_RE = re.compile(r"uwsgipy: metrics server on (\S+)")
OM_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

APP = textwrap.dedent("""
    import os, time

    def application(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/boom":
            raise RuntimeError("boom (expected by test_metrics)")
        if path == "/missing":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no"]
        if path == "/block":
            # held until the flag file exists (bounded: a harakiri test never creates it)
            flag = environ["QUERY_STRING"]
            deadline = time.monotonic() + 10
            while not os.path.exists(flag) and time.monotonic() < deadline:
                time.sleep(0.01)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]
""")

Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]


@pytest.fixture(scope="module")
def app_file(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("metrics_app") / "app.py"
    p.write_text(APP)
    return str(p)


def scrape(addr, path: str = "/metrics", accept: str = "") -> Tuple[str, str]:
    headers = [("Accept", accept)] if accept else []
    r = http_request(addr, "GET", path, headers=headers)
    assert r.status == 200
    return r.header("Content-Type"), r.body.decode()


def samples(text: str, openmetrics: bool = False) -> Samples:
    parse = om_parse if openmetrics else text_string_to_metric_families
    out: Samples = {}
    for family in parse(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(s: Samples, name: str, **labels: str) -> float:
    return s[(name, frozenset(labels.items()))]


def metrics_of(addr) -> Samples:
    ctype, text = scrape(addr)
    assert ctype == TEXT_CONTENT_TYPE
    return samples(text)


def start(server_factory, app_file: str, *extra: str, processes: int = 2):
    srv = server_factory("--master", "--processes", str(processes), "--http-socket", "127.0.0.1:0",
                         "--wsgi-file", app_file, "--stats", "127.0.0.1:0", "--stats-http",
                         "--metrics-socket", "127.0.0.1:0", *extra)
    stats = parse_addr(STATS_RE.search(srv.wait_for(STATS_RE)).group(1))
    metrics = parse_addr(METRICS_RE.search(srv.wait_for(METRICS_RE)).group(1))
    wait_until(lambda: all(w["accepting"] for w in http_request(stats).json()["workers"]), 5,
               what="every worker accepting")
    return srv, stats, metrics


def requests_total(s: Samples) -> float:
    return sum(value(s, "uwsgipy_requests_total", status=c)
               for c in ("1xx", "2xx", "3xx", "4xx", "5xx"))


def test_accept_negotiation_unit():
    assert wants_openmetrics(OM_ACCEPT)
    assert wants_openmetrics("application/openmetrics-text")
    assert not wants_openmetrics("application/openmetrics-text;q=0,text/plain")
    assert not wants_openmetrics("text/plain;version=0.0.4")
    assert not wants_openmetrics("")


def test_metrics_count_requests_statuses_and_exceptions(server_factory, app_file):
    srv, stats, metrics = start(server_factory, app_file)
    http = srv.http_addr
    for _ in range(5):
        assert http_request(http, "GET", "/").status == 200
    assert http_request(http, "GET", "/missing").status == 404
    assert http_request(http, "GET", "/missing").status == 404
    assert http_request(http, "GET", "/boom").status == 500
    # a worker counts a request just after sending its response
    s = wait_until(lambda: (lambda s: requests_total(s) == 8 and s)(metrics_of(metrics)), 5,
                   what="8 requests in /metrics")
    assert value(s, "uwsgipy_requests_total", status="2xx") == 5
    assert value(s, "uwsgipy_requests_total", status="4xx") == 2
    assert value(s, "uwsgipy_requests_total", status="5xx") == 1
    assert value(s, "uwsgipy_exceptions_total") == 1
    assert value(s, "uwsgipy_request_duration_seconds_count") == 8
    assert value(s, "uwsgipy_request_duration_seconds_bucket", le="+Inf") == 8
    buckets = [value(s, "uwsgipy_request_duration_seconds_bucket", le=repr(b))
               for b in DURATION_BOUNDS]
    assert buckets == sorted(buckets) and buckets[-1] == 8  # cumulative; all under 10 s
    assert 0 < value(s, "uwsgipy_request_duration_seconds_sum") < 8 * 10
    # 5 x "hello", 2 x "no" and the 500's body
    assert value(s, "uwsgipy_tx_bytes_total") > 5 * len(b"hello") + 2 * len(b"no")
    assert value(s, "uwsgipy_workers") == 2
    assert value(s, "uwsgipy_cores", state="idle") == 2
    assert value(s, "uwsgipy_cores", state="busy") == 0
    assert value(s, "uwsgipy_requests_in_flight") == 0
    assert value(s, "uwsgipy_rss_bytes") > 0
    assert value(s, "uwsgipy_harakiri_total") == 0
    # per worker: the totals again, split by worker id
    per_worker = sum(value(s, "uwsgipy_worker_requests_total", worker=w, status=c)
                     for w in ("1", "2") for c in ("2xx", "4xx", "5xx"))
    assert per_worker == 8
    assert sum(value(s, "uwsgipy_worker_exceptions_total", worker=w) for w in ("1", "2")) == 1
    assert all(value(s, "uwsgipy_worker_rss_bytes", worker=w) > 0 for w in ("1", "2"))
    # the metrics-socket serves the same families on any path, /metrics included
    ctype, text = scrape(metrics, "/")
    assert ctype == TEXT_CONTENT_TYPE
    assert value(samples(text), "uwsgipy_requests_total", status="2xx") == 5
    # the stats server's other paths are the JSON document, as before
    doc = http_request(stats, "GET", "/").json()
    assert sum(w["requests"] for w in doc["workers"]) == 8
    assert sum(w["exceptions"] for w in doc["workers"]) == 1


def test_openmetrics_negotiation(server_factory, app_file):
    srv, stats, metrics = start(server_factory, app_file, processes=1)
    assert http_request(srv.http_addr, "GET", "/").status == 200
    for addr in (stats, metrics):
        ctype, text = scrape(addr, accept=OM_ACCEPT)
        assert ctype == OPENMETRICS_CONTENT_TYPE
        assert text.endswith("# EOF\n")
        s = wait_until(lambda: (lambda s: value(s, "uwsgipy_requests_total", status="2xx") == 1
                                and s)(samples(scrape(addr, accept=OM_ACCEPT)[1], True)),
                       5, what="1 request in the OpenMetrics exposition")
        families = {f.name: f.type for f in om_parse(scrape(addr, accept=OM_ACCEPT)[1])}
        # OpenMetrics names counter families without _total
        assert families["uwsgipy_requests"] == "counter"
        assert families["uwsgipy_request_duration_seconds"] == "histogram"
        assert families["uwsgipy_listen_queue"] == "gauge"
        assert value(s, "uwsgipy_request_duration_seconds_count") == 1
        # plain text for a scraper that asks for nothing in particular
        ctype, text = scrape(addr)
        assert ctype == TEXT_CONTENT_TYPE and "# EOF" not in text


def test_harakiri_and_respawn_cause_in_metrics(server_factory, app_file, tmp_path):
    srv, stats, metrics = start(server_factory, app_file, "--harakiri", "1", processes=1)
    http = srv.http_addr
    for _ in range(3):
        assert http_request(http, "GET", "/").status == 200
    wait_until(lambda: requests_total(metrics_of(metrics)) == 3, 5, what="3 requests counted")
    flag = str(tmp_path / "never")
    try:
        http_request(http, "GET", f"/block?{flag}", timeout=8)
    except (OSError, AssertionError):
        pass  # the connection dies with the worker (IncompleteResponse)
    s = wait_until(lambda: (lambda s: value(s, "uwsgipy_worker_respawns_total",
                                            cause="harakiri") == 1 and s)(metrics_of(metrics)),
                   10, what="a harakiri respawn in /metrics")
    assert value(s, "uwsgipy_harakiri_total") == 1
    assert value(s, "uwsgipy_worker_harakiri_total", worker="1") == 1
    # the requests of the killed worker stay in the totals
    assert value(s, "uwsgipy_requests_total", status="2xx") == 3
    doc = http_request(stats).json()
    assert doc["workers"][0]["harakiri_count"] == 1
    wait_until(lambda: http_request(stats).json()["workers"][0]["accepting"], 10,
               what="a new worker")
    assert http_request(http, "GET", "/").status == 200
    s = wait_until(lambda: (lambda s: value(s, "uwsgipy_requests_total", status="2xx") == 4
                            and s)(metrics_of(metrics)), 5, what="4 requests after the respawn")
    assert value(s, "uwsgipy_worker_requests_total", worker="1", status="2xx") == 1


def _hold(addr, path: str, out: List[object]) -> None:
    try:
        out.append(http_request(addr, "GET", path, timeout=15))
    except OSError as exc:
        out.append(exc)


N_QUEUED = 5


def test_listen_queue_tcp_and_unix(server_factory, app_file, tmp_path):
    d = short_tmpdir()
    unix_path = os.path.join(d, "app.sock")
    flag = str(tmp_path / "release")
    srv, stats, metrics = start(server_factory, app_file, "--socket", unix_path, processes=1)
    held: List[object] = []
    clients: List[socket.socket] = []
    t = threading.Thread(target=_hold, args=(srv.http_addr, f"/block?{flag}", held), daemon=True)
    try:
        t.start()
        # the only worker is in the app: its loop accepts nothing more
        wait_until(lambda: http_request(stats).json()["workers"][0]["status"] == "busy", 5,
                   what="the worker busy")
        tcp = srv.http_addr
        for _ in range(N_QUEUED):
            clients.append(socket.create_connection(tcp, timeout=IO_TIMEOUT))
        for _ in range(N_QUEUED):
            u = socket.socket(socket.AF_UNIX)
            u.settimeout(IO_TIMEOUT)
            u.connect(unix_path)
            clients.append(u)
        tcp_name = f"{tcp[0]}:{tcp[1]}"

        def queues():
            doc = http_request(stats).json()
            by_name = {s["name"]: s for s in doc["sockets"]}
            return doc, by_name
        doc, by_name = wait_until(
            lambda: (lambda r: abs(r[1][tcp_name]["queue"] - N_QUEUED) <= 1
                     and abs(r[1][unix_path]["queue"] - N_QUEUED) <= 1 and r)(queues()),
            5, what=f"{N_QUEUED} connections queued on both listeners")
        assert by_name[tcp_name]["max_queue"] == 100 and by_name[unix_path]["max_queue"] == 100
        assert abs(doc["listen_queue"] - N_QUEUED) <= 1
        s = metrics_of(metrics)
        for name in (tcp_name, unix_path):
            assert abs(value(s, "uwsgipy_listen_queue", listener=name) - N_QUEUED) <= 1
            assert value(s, "uwsgipy_listen_queue_backlog", listener=name) == 100
            assert value(s, "uwsgipy_listen_queue_errors_total", listener=name) == 0
        assert value(s, "uwsgipy_requests_in_flight") == 1
        assert value(s, "uwsgipy_cores", state="busy") == 1
    finally:
        open(flag, "w").close()
        t.join(15)
        for c in clients:
            c.close()
    assert held and getattr(held[0], "status", None) == 200
    wait_until(lambda: all(s["queue"] == 0 for s in http_request(stats).json()["sockets"]), 5,
               what="the queues drained")


def test_listen_queue_errors_when_the_backlog_is_full(server_factory, app_file, tmp_path):
    d = short_tmpdir()
    unix_path = os.path.join(d, "app.sock")
    flag = str(tmp_path / "release")
    srv, stats, metrics = start(server_factory, app_file, "--socket", unix_path, "--listen", "2",
                                processes=1)
    held: List[object] = []
    clients: List[socket.socket] = []
    t = threading.Thread(target=_hold, args=(srv.http_addr, f"/block?{flag}", held), daemon=True)
    try:
        t.start()
        wait_until(lambda: http_request(stats).json()["workers"][0]["status"] == "busy", 5,
                   what="the worker busy")
        for _ in range(2):
            u = socket.socket(socket.AF_UNIX)
            u.settimeout(IO_TIMEOUT)
            u.connect(unix_path)
            clients.append(u)
        # the master samples once a second: at least one sample sees the queue full
        s = wait_until(lambda: (lambda s: value(s, "uwsgipy_listen_queue_errors_total",
                                                listener=unix_path) >= 1 and s)(metrics_of(metrics)),
                       5, what="a listen queue error counted")
        assert value(s, "uwsgipy_listen_queue", listener=unix_path) == 2
        assert value(s, "uwsgipy_listen_queue_backlog", listener=unix_path) == 2
        assert http_request(stats).json()["listen_queue_errors"] >= 1
    finally:
        open(flag, "w").close()
        t.join(15)
        for c in clients:
            c.close()


def test_max_requests_respawn_keeps_the_totals(server_factory, app_file):
    srv, stats, metrics = start(server_factory, app_file, "--max-requests", "3",
                                "--min-worker-lifetime", "0", processes=1)
    for _ in range(3):
        assert http_request(srv.http_addr, "GET", "/").status == 200
    s = wait_until(lambda: (lambda s: value(s, "uwsgipy_worker_respawns_total",
                                            cause="max-requests") == 1 and s)(metrics_of(metrics)),
                   10, what="a max-requests respawn in /metrics")
    assert value(s, "uwsgipy_requests_total", status="2xx") == 3
    assert value(s, "uwsgipy_request_duration_seconds_count") == 3
    assert value(s, "uwsgipy_worker_respawns_total", cause="exit") == 0


def _ended(**cfg):
    """Tally._cause for a worker that ended with no slots written."""
    from types import SimpleNamespace
    from uwsgipy.metrics import Tally
    config = SimpleNamespace(max_requests=0, max_requests_delta=0, reload_on_rss=0)
    config.__dict__.update(cfg)
    arb = SimpleNamespace(cfg=config, scoreboard=None, stopping=False)
    return lambda w, status: Tally()._cause(arb, w, status)


def test_respawn_causes_from_the_exit_status():
    from types import SimpleNamespace
    w = SimpleNamespace(wid=1, slot=0, pid=1, stopping=False)
    cause = _ended()
    assert cause(w, 9) == "signal"            # WIFSIGNALED: SIGKILL
    assert cause(w, 1 << 8) == "exit"         # exit code 1
    assert cause(w, 0) == "exit"              # a clean exit nobody asked for
    assert _ended(reload_on_rss=100)(w, 0) == "reload-on-rss"
    assert cause(SimpleNamespace(wid=1, slot=0, pid=1, stopping=True), 0) == "reload"
