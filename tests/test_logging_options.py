"""uWSGI's logging options on a real uwsgipy: logger / req-logger (file, stdio, syslog, named,
several), log-date (checked against the real uWSGI), log-master, log-maxsize + log-backupname
(rotation without losing lines), log-reopen (SIGUSR1 and reloads), log-slow, log-zero,
log-micros, and route / route-uri with donotlog:, log:, last:, continue:."""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import (ACCESS_RE, ServerProcess, child_env, http_request, short_tmpdir, uwsgi_binary,
                     wait_until)

UWSGI = uwsgi_binary()

APP = '''
import sys, time
def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(int(environ["QUERY_STRING"] or "0") / 1000)
    if path == "/print":
        print("app-stdout-line", flush=True)
        sys.stderr.write("app-stderr-line\\n"); sys.stderr.flush()
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
'''

CTIME_PREFIX = re.compile(r"^((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
                          r"Sep|Oct|Nov|Dec) [ 0-9]\d \d\d:\d\d:\d\d \d{4}) - ")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    p = tmp_path / "app.py"
    p.write_text(APP)
    return p


def _ini(tmp_path: Path, app: Path, body: str, master: bool = True) -> Path:
    ini = tmp_path / "t.ini"
    ini.write_text("[uwsgi]\nhttp-socket = 127.0.0.1:0\n"
                   f"wsgi-file = {app}\n" + ("master = true\nprocesses = 2\n" if master else "")
                   + body)
    return ini


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _wait_file(path: Path, pattern: str, timeout: float = 10.0) -> str:
    rx = re.compile(pattern, re.M)
    wait_until(lambda: rx.search(_read(path)), timeout, what=f"{pattern!r} in {path}")
    return _read(path)


def test_logger_and_req_logger_split_the_lines_and_logto_gets_nothing(tmp_path, app):
    """uWSGI 2.0.31, checked by hand: with logto + logger + req-logger, logto stays empty,
    request lines go only to req-logger, the rest (own messages, app output) to logger."""
    main, req, logto = tmp_path / "main.log", tmp_path / "req.log", tmp_path / "logto.log"
    ini = _ini(tmp_path, app, f"logto = {logto}\nlogger = file:{main}\nreq-logger = file:{req}\n")
    srv = ServerProcess([ini], logto=main).start()
    try:
        for path in ("/a", "/print", "/b?x=1"):
            assert http_request(srv.http_addr, target=path).status == 200
        # two workers: a line is written after its response, so their order may differ
        wait_until(lambda: len(ACCESS_RE.findall(_read(req))) >= 3, 10, what="3 request lines")
        text = _read(req)
        _wait_file(main, "app-stderr-line")
    finally:
        assert srv.stop() == 0
    assert sorted(m.group("uri") for m in map(ACCESS_RE.search, text.splitlines())) == \
        ["/a", "/b?x=1", "/print"]
    main_text = _read(main)
    assert "uwsgipy: ready" in main_text and "app-stdout-line" in main_text
    assert not ACCESS_RE.search(main_text), main_text
    assert _read(logto) == ""
    # the master's last lines (after the workers were reaped) reach the logger too
    assert re.search(r"worker \d .*exit", main_text), main_text


def test_several_loggers_get_every_line(tmp_path, app):
    one, two = tmp_path / "one.log", tmp_path / "two.log"
    ini = _ini(tmp_path, app, f"logger = file:{one}\nlogger = file:logfile={two}\n")
    srv = ServerProcess([ini], logto=one).start()
    try:
        http_request(srv.http_addr, target="/seen")
        _wait_file(one, r'"GET /seen ')
        _wait_file(two, r'"GET /seen ')
    finally:
        srv.stop()
    assert "uwsgipy: ready" in _read(two)


def test_named_loggers_get_only_their_log_route_lines(tmp_path, app):
    """uWSGI's uwsgi_master_log(): a line matching a log-route goes only to that named logger;
    the others go to the unnamed loggers; named loggers get nothing else (docker-mailman's
    shape: req-logger, named loggers with log-route, one unnamed logger for the rest)."""
    req, routed, rest = tmp_path / "req.log", tmp_path / "routed.log", tmp_path / "rest.log"
    ini = _ini(tmp_path, app, f"req-logger = file:{req}\n"
                              f"logger = app file:{routed}\n"
                              "log-route = app app-std(out|err)-line\n"
                              "log-route = nosuch ready\n"
                              f"logger = file:{rest}\n")
    srv = ServerProcess([ini], logto=rest).start()
    try:
        http_request(srv.http_addr, target="/print")
        _wait_file(req, r'"GET /print ')
        _wait_file(routed, "app-stderr-line")
    finally:
        srv.stop()
    assert _read(routed).splitlines() == ["app-stdout-line", "app-stderr-line"]
    rest_text = _read(rest)
    assert "uwsgipy: ready" in rest_text and "app-std" not in rest_text
    assert "no logger named 'nosuch'" in rest_text


def test_only_named_loggers_leave_lines_in_logto(tmp_path, app):
    named, logto = tmp_path / "named.log", tmp_path / "logto.log"
    ini = _ini(tmp_path, app, f"logto = {logto}\nlogger = quiet file:{named}\n")
    srv = ServerProcess([ini], logto=logto).start()
    try:
        http_request(srv.http_addr, target="/x")
        _wait_file(logto, r'"GET /x ')
    finally:
        srv.stop()
    assert _read(named) == ""


def test_stdio_logger_writes_to_stderr(tmp_path, app):
    ini = _ini(tmp_path, app, "logger = stdio\n", master=False)
    srv = ServerProcess([ini]).start()
    try:
        http_request(srv.http_addr, target="/stdio")
        srv.wait_for(lambda l: '"GET /stdio ' in l)
    finally:
        srv.stop()


def test_syslog_logger_ident_and_facility(tmp_path, app):
    """uWSGI's syslog logger: openlog(ident, 0, facility) then syslog(LOG_INFO) per line;
    default ident uwsgi and facility daemon (<30>), local0 + info is <134>."""
    d = short_tmpdir()
    addr = os.path.join(d, "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(addr)
    sock.settimeout(10)
    try:
        ini = _ini(tmp_path, app, "logger = syslog\nreq-logger = syslog:myapp,local0\n")
        srv = ServerProcess([ini], env={"UWSGIPY_SYSLOG_ADDRESS": addr}).start(wait_ready=False)
        try:
            got = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(b"uwsgipy: ready" in g for g in got):
                got.append(sock.recv(65536))
            ready = [g for g in got if b"uwsgipy: ready" in g]
            assert ready and ready[0].startswith(b"<30>uwsgi: "), got
            port = int(re.search(rb"listening on http-socket 127\.0\.0\.1:(\d+)",
                                 b"\n".join(got)).group(1))
            http_request(("127.0.0.1", port), target="/via-syslog")
            for _ in range(50):
                g = sock.recv(65536)
                if b"/via-syslog" in g:
                    break
            assert g.startswith(b'<134>myapp: 127.0.0.1 "GET /via-syslog HTTP/1.1" 200 5 '), g
        finally:
            srv.stop()
    finally:
        sock.close()
        shutil.rmtree(d, ignore_errors=True)


def test_unknown_logger_and_route_action_are_one_line_errors(tmp_path, app):
    for line, word in (("logger = zeromq:tcp://127.0.0.1:1", "unknown logger 'zeromq'"),
                       ("route = ^/x break:", "give break a status"),
                       ("route = ^/x rewrite:/y", "route action 'rewrite'"),
                       ("route = nospace", "invalid route syntax")):
        ini = _ini(tmp_path, app, line + "\n")
        r = subprocess.run([sys.executable, "-m", "uwsgipy", str(ini)], capture_output=True,
                           text=True, timeout=30, env=child_env())
        assert r.returncode == 2, r.stderr
        assert word in r.stderr and f"{ini}:" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.skipif(UWSGI is None, reason="real uWSGI not installed")
@pytest.mark.parametrize("value, strf", [("true", None), ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"),
                                         ("[%d/%b/%Y %H:%M:%S]", "[%d/%b/%Y %H:%M:%S]")])
def test_log_date_prefix_as_real_uwsgi(tmp_path, app, value, strf):
    """Both servers' first log line with the same log-date, compared by shape and by re-rendering
    the parsed time (so the bytes are what ctime/strftime give, with uWSGI's ' - ')."""
    # on the command line: in an ini file %Y, %d... are uWSGI magic variables (write %%Y there)
    r = subprocess.run([UWSGI, f"--log-date={value}"], capture_output=True, text=True, timeout=20)
    uw = (r.stdout + r.stderr).splitlines()[0]
    assert "Starting uWSGI" in uw, uw
    srv = ServerProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                         f"--log-date={value}"]).start()
    try:
        ours = srv.output().splitlines()[0]
        http_request(srv.http_addr, target="/undated")
        line = srv.wait_for(lambda l: "/undated" in l)
    finally:
        srv.stop()
    assert ACCESS_RE.match(line), line   # request lines carry no date, as in uWSGI
    for text in (uw, ours):
        if strf is None:
            m = CTIME_PREFIX.match(text)
            assert m, text
            assert time.ctime(time.mktime(time.strptime(m.group(1), "%a %b %d %H:%M:%S %Y"))) \
                == m.group(1)
        else:
            stamp, sep, _ = text.partition(" - ")
            assert sep, text
            assert time.strftime(strf, time.strptime(stamp, strf)) == stamp
    assert ours.split(" - ", 1)[1].startswith("uwsgipy: ")


def test_log_maxsize_rotates_without_losing_lines(tmp_path, app):
    logfile = tmp_path / "app.log"
    ini = _ini(tmp_path, app, f"logto = {logfile}\nlog-maxsize = 3000\n")
    srv = ServerProcess([ini], logto=logfile).start()
    sent = 0
    try:
        for _ in range(200):
            http_request(srv.http_addr, target=f"/r{sent}")
            sent += 1
            if glob.glob(f"{logfile}.*"):
                break
        for _ in range(10):
            http_request(srv.http_addr, target=f"/r{sent}")
            sent += 1
        def lines_seen() -> int:
            files = [logfile] + [Path(b) for b in glob.glob(f"{logfile}.*")]
            return sum(len(ACCESS_RE.findall(_read(f))) for f in files)
        wait_until(lambda: lines_seen() >= sent, 10, what=f"{sent} request lines")
    finally:
        srv.stop()
    backups = glob.glob(f"{logfile}.*")
    assert len(backups) == 1 and re.fullmatch(r".*\.log\.\d{9,}", backups[0]), backups
    old = Path(backups[0]).read_text()
    # real uWSGI 2.0.31: "Tue Dec  1 23:12:51 2026 - logsize: 8505, triggering rotation to
    # /tmp/lg/rot.log.1796166771...", the last line of the old file
    last = old.splitlines()[-1]
    m = CTIME_PREFIX.match(last)
    assert m and re.fullmatch(r"logsize: \d+, triggering rotation to " + re.escape(backups[0])
                              + r"\.\.\.", last[m.end():]), last
    uris = [m.group("uri") for m in map(ACCESS_RE.search, (old + _read(logfile)).splitlines()) if m]
    # every line once (two workers: their lines may interleave in any order)
    assert sorted(uris) == sorted(f"/r{i}" for i in range(sent))


def test_log_backupname_and_sigusr1_reopen(tmp_path, app):
    logfile, backup = tmp_path / "app.log", tmp_path / "app.old"
    moved = tmp_path / "moved.log"
    ini = _ini(tmp_path, app, f"logto = {logfile}\nlog-maxsize = 1500\nlog-backupname = {backup}\n")
    srv = ServerProcess([ini], logto=logfile).start()
    try:
        for i in range(100):
            http_request(srv.http_addr, target=f"/b{i}")
            if backup.exists():
                break
        assert backup.exists()
        os.rename(logfile, moved)          # logrotate
        srv.signal(signal.SIGUSR1)
        wait_until(lambda: logfile.exists(), 10, what="reopened log")
        http_request(srv.http_addr, target="/after-reopen")
        _wait_file(logfile, r'"GET /after-reopen ')
    finally:
        srv.stop()
    assert "/after-reopen" not in _read(moved)


def test_log_master_survives_a_graceful_reload(tmp_path, app):
    main = tmp_path / "main.log"
    ini = _ini(tmp_path, app, f"log-master = true\nlogto = {main}\n")
    srv = ServerProcess([ini], logto=main).start()
    try:
        http_request(srv.http_addr, target="/before")
        mark = srv.mark()
        srv.signal(signal.SIGHUP)
        srv.wait_for("new workers serving", start=mark, timeout=20)
        wait_until(lambda: http_request(srv.http_addr, target="/after").status == 200, 10)
        _wait_file(main, r'"GET /after ')
    finally:
        assert srv.stop() == 0
    assert '"GET /before ' in _read(main)


def test_conditional_logging_with_disable_logging(tmp_path, app):
    """uWSGI's log_request(): with disable-logging, log-slow / log-zero / log-4xx still log."""
    ini = _ini(tmp_path, app, "disable-logging = true\nlog-slow = 200\nlog-zero = true\n"
                              "log-4xx = true\n", master=False)
    srv = ServerProcess([ini]).start()
    try:
        for target in ("/fast", "/sleep?300", "/empty", "/missing", "/sleep?0", "/end-marker"):
            http_request(srv.http_addr, target=target)
        http_request(srv.http_addr, target="/missing?last")
        srv.wait_for(lambda l: "/missing?last" in l)
    finally:
        srv.stop()
    assert [m.group("uri") for m in srv.access_lines()] == \
        ["/sleep?300", "/empty", "/missing", "/missing?last"]


def test_log_slow_true_is_atoi_zero_with_a_warning(tmp_path, app):
    """A published config (log-slow = true): uWSGI's atoi makes it 0, off; it starts."""
    ini = _ini(tmp_path, app, "disable-logging = true\nlog-slow = true\n", master=False)
    srv = ServerProcess([ini]).start()
    try:
        srv.wait_for(lambda l: "log-slow = 'true' is not a number" in l and f"{ini}:" in l)
        http_request(srv.http_addr, target="/sleep?50")
        http_request(srv.http_addr, target="/missing")
    finally:
        srv.stop()
    assert srv.access_lines() == []


def test_logfile_chown(tmp_path, app):
    import pwd
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    nobody = pwd.getpwnam("nobody")
    d = Path(short_tmpdir())               # readable by nobody, unlike pytest's tmp_path
    try:
        os.chmod(d, 0o755)
        (d / "app.py").write_text(APP)
        os.chmod(d / "app.py", 0o644)
        logto = d / "own.log"
        ini = _ini(d, d / "app.py", f"logto = {logto}\nlogfile-chown = true\nuid = nobody\n"
                                    f"gid = {nobody.pw_gid}\n", master=False)
        srv = ServerProcess([ini], logto=logto, cwd=d).start()
        try:
            st = os.stat(logto)
        finally:
            srv.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)


def test_log_encoder_json_template_encodes_server_lines_only(tmp_path, app):
    # uWSGI's json template encoder applies to uwsgipy's own lines (tests/test_json_logs.py
    # has the rest); request lines stay plain without log-req-encoder
    ini = _ini(tmp_path, app, "log-encoder = json {\"msg\": \"${msg}\"}\nlog-encoder = nl\n",
               master=False)
    srv = ServerProcess([ini]).start()
    try:
        http_request(srv.http_addr, target="/plain")
        line = srv.wait_for(lambda l: "/plain" in l)
    finally:
        srv.stop()
    assert ACCESS_RE.match(line)
    assert json.loads(next(l for l in srv.lines if "ready (pid" in l))["msg"].startswith(
        "uwsgipy: ready (pid ")
    assert not [l for l in srv.lines if "not applied" in l]


def test_loggers_with_daemonize_warn_and_log_to_the_daemonize_file(tmp_path, app):
    dlog, named = tmp_path / "d.log", tmp_path / "b.log"
    pidfile = tmp_path / "d.pid"
    r = subprocess.run([sys.executable, "-m", "uwsgipy", "--http-socket", "127.0.0.1:0",
                        "--wsgi-file", str(app), "--daemonize", str(dlog), "--pidfile", str(pidfile),
                        "--logger", f"file:{named}"], capture_output=True, text=True, timeout=30,
                       env=child_env())
    assert r.returncode == 0 and "with daemonize: not used" in r.stderr, r.stderr
    try:
        text = _wait_file(dlog, "uwsgipy: ready")
    finally:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, what="pidfile")
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)   # the daemon this test started
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 15, what="daemon exit")
    assert "uwsgipy: ready" in text and not named.exists()


def test_log_micros(tmp_path, app):
    srv = ServerProcess([_ini(tmp_path, app, "log-micros = true\n", master=False)]).start()
    try:
        http_request(srv.http_addr, target="/sleep?20")
        line = srv.wait_for(lambda l: "/sleep?20" in l)
    finally:
        srv.stop()
    m = re.search(r'"GET /sleep\?20 HTTP/1.1" 200 5 (\d+)us$', line)
    assert m and int(m.group(1)) >= 20000, line


def test_routes_donotlog_log_last(tmp_path, app):
    ini = _ini(tmp_path, app,
               "route = ^/health donotlog:\n"
               "route = ^/keep last:\n"
               "route = ^/keep donotlog:\n"
               "route = ^/say/(\\w+) log:said $1 for ${REMOTE_ADDR}\n"
               "route-uri = \\?quiet donotlog:\n"
               "log-date = %%Y\n", master=False)
    srv = ServerProcess([ini]).start()
    try:
        for target in ("/health", "/healthz", "/keep", "/say/hi", "/a?quiet=1", "/end"):
            assert http_request(srv.http_addr, target=target).status == 200
        srv.wait_for(lambda l: '"GET /end ' in l)
    finally:
        srv.stop()
    assert [m.group("uri") for m in srv.access_lines()] == ["/keep", "/say/hi", "/end"]
    year = time.strftime("%Y")
    assert srv.find(lambda l: l == f"{year} - said hi for 127.0.0.1"), srv.output()


def test_no_python_matcher_without_routes():
    """The hot path: without routes the C core gets no callable (log_format None or ints)."""
    from uwsgipy import config
    from uwsgipy.log import access_log_options
    cfg = config.load(["--wsgi-file", "x.py"], {})
    assert access_log_options(cfg)["log_format"] is None
    cfg = config.load(["--wsgi-file", "x.py", "--log-micros"], {})
    assert all(isinstance(x, int) for x in access_log_options(cfg)["log_format"])
    cfg = config.load(["--wsgi-file", "x.py", "--route", "^/h donotlog:"], {})
    assert callable(access_log_options(cfg)["log_format"][0])


def test_route_break_answers_its_status_without_the_app(server_factory, tmp_path):
    """uWSGI's break:STATUS (core/routing.c uwsgi_router_break_func): the status, Connection:
    close, no body, and the app is not called; routes stop at the first last/continue/break."""
    app = tmp_path / "countapp.py"
    app.write_text(
        "import sys\n"
        "def application(environ, start_response):\n"
        "    sys.stderr.write('APP-CALLED %s\\n' % environ['PATH_INFO']); sys.stderr.flush()\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'app']\n")
    ini = tmp_path / "break.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {app}\n"
                   "route = ^/open last:\n"
                   "route = ^/admin break:403 Forbidden\n"
                   "route = ^/open break:404 Not Found\n")
    srv = server_factory(str(ini))
    r = http_request(srv.http_addr, "GET", "/admin/x")
    assert r.status == 403 and r.body == b"" and r.header("Connection") == "close"
    assert not srv.find("APP-CALLED /admin/x")
    r = http_request(srv.http_addr, "GET", "/open/y")   # last: stops before the break
    assert r.status == 200 and r.body == b"app"
    srv.wait_for("APP-CALLED /open/y", 5)
