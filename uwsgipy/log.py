"""Logging setup: the ``uwsgipy`` logger, ``logto``, ``disable-logging``.

Server messages go through :mod:`logging` to stderr, formatted
``uwsgipy: message`` (``uwsgipy: WARNING: ...`` above INFO).  With
``logto`` (uWSGI's option) the file is opened for appending and put on
fds 1 and 2, so the access log (written by the C core to fd 2), tracebacks,
``wsgi.errors`` and stray prints all land in it; :func:`reopen` does it
again (SIGUSR1, for logrotate).

**The log pipe** (uWSGI's log master).  With ``logger``, ``req-logger``,
``log-master`` or ``log-maxsize``, fds 1 and 2 of every process (and the C
core's access log with ``req-logger``) go into a pipe that one thread of
the master (of the single process without ``--master``) reads and hands,
line by line, to the loggers: ``file:PATH`` (or uWSGI's
``file:logfile=PATH,maxsize=N,backupname=NAME``), ``fd:N``, ``stdio`` (what
stderr was, or the ``logto`` file) and ``syslog[:IDENT[,FACILITY]]``
(:class:`logging.handlers.SysLogHandler` on ``/dev/log``, or
``$UWSGIPY_SYSLOG_ADDRESS``; uWSGI's ``openlog``/``syslog(LOG_INFO)``).  As in
uWSGI, with a ``logger`` the ``logto`` file receives nothing, request lines
go to the ``req-logger`` ones when there are some, else with the rest.
Since only the reader writes the files, ``log-maxsize`` rotates between
two whole lines: no line is lost or split (uWSGI's message and names: the
backup is ``log-backupname`` or ``FILE.<unix time>``).  The pipe survives a
graceful reload (its fds are passed in ``UWSGIPY_LOG_PIPE``).

**Encoders** (uWSGI's ``log-encoder`` / ``log-req-encoder``, syntax
``ENCODER[:LOGGER][ ARGS]``).  ``log-req-encoder = json`` makes the C core
write each request line as one JSON object (csrc/upy_response.c, escaping
in csrc/upy_log.c: RFC 8259, invalid UTF-8 as U+FFFD, typed numbers; the
fields are log-format's variables, or the default set); ``log-encoder =
json`` does the same for uwsgipy's own lines here, and ``json TEMPLATE`` /
``format TEMPLATE`` are uWSGI's template encoders for them (``${msg}``,
``${msgnl}``, ``${unix}``, ``${micros}``, ``${millis}``,
``${strftime:FMT}``).  ``log-json-field = KEY=VALUE`` adds constant fields.

``log-date`` prefixes uwsgipy's own lines (not the request lines nor the
app's output, as uWSGI) with ``ctime`` (``Tue Dec  1 22:43:24 2026 - ``) or
a strftime format.
"""
from __future__ import annotations

import atexit
import errno
import fcntl
import json
import logging
import logging.handlers
import os
import re
import select
import stat
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

__all__ = ["setup_logging", "reopen", "set_role", "compile_log_format", "log",
           "parse_logger", "LoggerSpec", "access_log_options", "date_prefix",
           "parse_log_date", "parse_encoder", "EncoderSpec", "json_extra_fields",
           "set_access_log"]

log = logging.getLogger("uwsgipy")


_role = ""


def set_role(role: str) -> None:
    """Name this process in every message ("worker 2"); "" for the master
    or a single process."""
    global _role
    _role = f"{role}: " if role else ""


_TRUE = ("true", "1", "on", "yes")
_log_date: Optional[str] = None   # None: off; "": ctime; else a strftime format


def parse_log_date(value: Any) -> Optional[str]:
    """``log-date`` / ``logdate``'s value as uWSGI reads it: absent or
    false-ish is off (None), bare or true/1/on/yes is ctime (""), anything
    else a strftime format (uWSGI's uwsgi_opt_log_date)."""
    if value is None or value is False or value == "":
        return None
    if value is True or str(value).lower() in _TRUE:
        return ""
    return str(value)


def date_prefix() -> str:
    """The ``log-date`` prefix for a line uwsgipy writes now, as uWSGI's
    uwsgi_log(): ``ctime() - `` (24 characters), or the strftime result
    and `` - `` (empty when it is 64 bytes or more, as C's strftime into
    uWSGI's 64-byte buffer)."""
    if _log_date is None:
        return ""
    now = time.time()
    if not _log_date:
        return time.ctime(now) + " - "
    text = time.strftime(_log_date, time.localtime(now))
    if len(text.encode()) >= 64:
        text = ""
    return text + " - "


# --------------------------------------------------------------------------
# Encoders (uWSGI's log-encoder / log-req-encoder).
# --------------------------------------------------------------------------

ENCODERS = ("json", "format", "nl", "prefix", "suffix", "gzip", "compress")


@dataclass(frozen=True)
class EncoderSpec:
    """One ``log-encoder`` value: ``ENCODER[:LOGGER][ ARGS]`` (uWSGI's
    uwsgi_opt_add_log_encoder: the args follow a single space)."""
    name: str
    logger: Optional[str]
    args: Optional[str]


def parse_encoder(value: str) -> EncoderSpec:
    """Parse a ``log-encoder`` / ``log-req-encoder`` value.  Raises
    ValueError for an encoder uWSGI does not have."""
    head, space, args = value.partition(" ")
    name, colon, logger = head.partition(":")
    if name not in ENCODERS:
        raise ValueError(f"unknown log encoder {name!r} (uWSGI's are {', '.join(ENCODERS)})")
    return EncoderSpec(name, logger or None, args if space else None)


_TEMPLATE_VAR = re.compile(r"\$\{([^}]*)\}")


def _template(args: str, escape: bool) -> Callable[[str], str]:
    """uWSGI's format / json encoder: TEMPLATE with ${msg} (the line without
    its newline), ${msgnl}, ${unix}, ${micros}, ${millis},
    ${strftime:FMT}; json escapes msg, msgnl and strftime's result."""
    def esc(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)[1:-1] if escape else text

    def render(msg: str) -> str:
        now = time.time()

        def var(m: "re.Match[str]") -> str:
            name = m.group(1)
            if name == "msg":
                return esc(msg)
            if name == "msgnl":
                return esc(msg + "\n")
            if name == "unix":
                return str(int(now))
            if name == "micros":
                return str(int(now * 1e6))
            if name == "millis":
                return str(int(now * 1e3))
            if name.startswith("strftime:"):
                return esc(time.strftime(name[9:], time.localtime(now)))
            return ""   # unknown: nothing, as uWSGI
        return _TEMPLATE_VAR.sub(var, args)
    return render


def json_extra_fields(values: List[str]) -> Dict[str, str]:
    """``log-json-field = KEY=VALUE`` items, in order (a later KEY wins)."""
    out: Dict[str, str] = {}
    for item in values:
        key, _, val = item.partition("=")
        out[key.strip()] = val
    return out


# (record, message, plain line) -> the encoded line
_encode: Optional[Callable[[logging.LogRecord, str, str], str]] = None


def _setup_encoder(cfg: Any) -> List[str]:
    """Choose how uwsgipy's own lines are encoded; returns warnings."""
    global _encode
    _encode = None
    warnings: List[str] = []
    chain: List[Callable[[logging.LogRecord, str, str], str]] = []
    extra = json_extra_fields(list(getattr(cfg, "log_json_field", ()) or ()))
    for value in getattr(cfg, "log_encoder", ()) or ():
        spec = parse_encoder(value)
        if spec.logger:
            warnings.append(f"log-encoder {value!r}: per-logger encoders (:{spec.logger}) are "
                            "not supported: applied to every line")
        if spec.name == "nl":
            continue
        if spec.name == "json" and not spec.args:
            def enc(record: logging.LogRecord, text: str, line: str) -> str:
                obj: Dict[str, Any] = {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                            + f".{int(record.msecs):03d}Z",
                    "level": record.levelname.lower(),
                    "role": _role[:-2] or "master",
                    "pid": os.getpid(),
                    "msg": text,
                }
                obj.update(extra)
                return json.dumps(obj, ensure_ascii=False)
            chain.append(enc)
        elif spec.name in ("json", "format") and spec.args:
            render = _template(spec.args, escape=spec.name == "json")
            chain.append(lambda record, text, line, render=render: render(line))
        else:
            warnings.append(f"log-encoder {value!r} ({cfg.sources.get('log-encoder', '?')}): "
                            "not applied, lines are logged as they are")
    if chain:
        def run(record: logging.LogRecord, text: str, line: str) -> str:
            for step in chain:   # each step's output is the next one's line
                line = step(record, text, line)
                text = line
            return line
        _encode = run
    return warnings


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname}: "
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if _encode is not None:
            # json: one line whatever the message holds (newlines escaped)
            return _encode(record, text, f"uwsgipy: {_role}{level}{text}")
        return f"{date_prefix()}uwsgipy: {_role}{level}" + text


_logto: Optional[str] = None


def _redirect(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# Loggers (uWSGI's logger / req-logger) and the log pipe.
# --------------------------------------------------------------------------

LOGGER_KINDS = ("file", "fd", "stdio", "syslog")
SYSLOG_FACILITIES = logging.handlers.SysLogHandler.facility_names
ENV_LOG_PIPE = "UWSGIPY_LOG_PIPE"   # "orig,main_r,main_w,req_r,req_w" (-1: none)


@dataclass(frozen=True)
class LoggerSpec:
    """One ``logger`` / ``req-logger`` value: ``[NAME ]KIND[:ARG]``.
    ``name`` is uWSGI's logger id (alphanumeric, for log-route), or None."""
    name: Optional[str]
    kind: str
    arg: Optional[str]


def parse_logger(value: str) -> LoggerSpec:
    """Parse ``logger`` / ``req-logger`` as uWSGI's setup_choosen_logger:
    an alphanumeric word and a space first names the logger; then
    ``KIND[:ARG]`` (an empty ARG is none).  Raises ValueError naming an
    unknown kind or a missing file."""
    name: Optional[str] = None
    rest = value
    head, sep, tail = value.partition(" ")
    if sep and head.isalnum() and head.isascii():
        name, rest = head, tail
    kind, colon, arg = rest.partition(":")
    if kind not in LOGGER_KINDS:
        raise ValueError(f"unknown logger {kind!r} (uwsgipy has {', '.join(LOGGER_KINDS)}; "
                         "uWSGI's other logger plugins are not available)")
    spec = LoggerSpec(name, kind, arg or None)
    if kind == "file":
        _file_logger_args(spec)
    elif kind == "fd" and not (spec.arg or "").isdigit():
        raise ValueError(f"fd logger needs a file descriptor number, got {spec.arg!r}")
    return spec


def parse_log_route(value: str) -> Tuple[str, "re.Pattern[str]"]:
    """``log-route`` / ``log-req-route``: ``NAME REGEXP`` (split at the
    first space, uWSGI's uwsgi_opt_add_regexp_custom_list).  Raises
    ValueError."""
    name, space, regexp = value.partition(" ")
    if not space or not name or not regexp:
        raise ValueError(f"invalid log route {value!r}: must be 'NAME REGEXP'")
    try:
        return name, re.compile(regexp)
    except re.error as exc:
        raise ValueError(f"log route regexp {regexp!r}: {exc}") from None


def atoi(value: Any) -> int:
    """C's atoi, as uWSGI reads int options: leading blanks, a sign, the
    leading digits; 0 when there are none (``log-slow = true`` is 0)."""
    m = re.match(r"\s*([-+]?\d+)", str(value or ""))
    return int(m.group(1)) if m else 0


def _file_logger_args(spec: LoggerSpec) -> Tuple[str, int, Optional[str]]:
    """(path, maxsize, backupname) of a file logger: ``file:PATH`` or
    uWSGI's ``file:logfile=PATH,maxsize=BYTES,backupname=NAME``."""
    arg = spec.arg or ""
    if "=" not in arg:
        if not arg:
            raise ValueError("file logger needs a path (file:PATH)")
        return arg, 0, None
    kv: Dict[str, str] = {}
    for item in arg.split(","):
        key, eq, val = item.partition("=")
        if not eq or key not in ("logfile", "maxsize", "backupname"):
            raise ValueError(f"file logger: bad item {item!r} (logfile=, maxsize=, backupname=)")
        kv[key] = val
    if not kv.get("logfile"):
        raise ValueError("file logger: missing logfile key")
    size = kv.get("maxsize", "0")
    if not size.isdigit():
        raise ValueError(f"file logger: maxsize must be a number of bytes, got {size!r}")
    return kv["logfile"], int(size), kv.get("backupname") or None


def _open_append(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)


class _FileSink:
    """A file written only by the pipe reader: appends, rotates past
    ``maxsize`` between lines (uWSGI's uwsgi_log_do_rotate), reopens."""

    def __init__(self, path: str, maxsize: int = 0, backupname: Optional[str] = None,
                 fd: Optional[int] = None) -> None:
        self.path, self.maxsize, self.backupname = path, maxsize, backupname
        self.fd = fd if fd is not None else _open_append(path)

    def write(self, data: bytes) -> None:
        _write_all(self.fd, data)
        if self.maxsize > 0:
            size = os.lseek(self.fd, 0, os.SEEK_END)
            if size > self.maxsize:
                self.rotate(size)

    def rotate(self, size: int) -> None:
        target = self.backupname or f"{self.path}.{int(time.time())}"
        # uWSGI's uwsgi_logfile_write(): always a ctime prefix
        _write_all(self.fd, f"{time.ctime()} - logsize: {size}, triggering rotation to "
                            f"{target}...\n".encode())
        try:
            os.rename(self.path, target)
        except OSError as exc:
            _write_all(self.fd, f"unable to rotate log: rename(): {exc.strerror}\n".encode())
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
                     | os.O_CLOEXEC, 0o640)
        os.dup2(fd, self.fd, inheritable=False)
        os.close(fd)

    def reopen(self) -> None:
        fd = _open_append(self.path)
        os.dup2(fd, self.fd, inheritable=False)
        os.close(fd)


class _FdSink:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        _write_all(self.fd, data)

    def reopen(self) -> None:
        pass


class _SyslogSink:
    """uWSGI's syslog logger: ident (default "uwsgi"), facility (default
    daemon; an unknown name is daemon too, as uWSGI, with a warning),
    each line at LOG_INFO."""

    def __init__(self, arg: Optional[str]) -> None:
        ident, _, facility = (arg or "uwsgi").partition(",")
        code = SYSLOG_FACILITIES.get(facility or "daemon")
        if code is None:
            _deferred.append(f"syslog logger: unknown facility {facility!r}: using daemon, "
                             "as uWSGI")
            code = logging.handlers.SysLogHandler.LOG_DAEMON
        self.address = os.environ.get("UWSGIPY_SYSLOG_ADDRESS", "/dev/log")
        self.handler = logging.handlers.SysLogHandler(address=self.address, facility=code)
        self.handler.ident = f"{ident}: "
        self.handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            record = logging.makeLogRecord({"msg": line, "levelno": logging.INFO,
                                            "levelname": "INFO", "args": None})
            self.handler.handle(record)

    def reopen(self) -> None:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return   # a log sink failing must not stop the reader
        view = view[n:]


class _Pipe:
    """One log pipe and where its lines go: ``routes`` (regexp, sink)
    first (a line matching one goes only to the matching routes' sinks),
    else ``sinks`` (the unnamed loggers, or the original fd when there are
    none), as uWSGI's uwsgi_master_log()."""

    def __init__(self, rfd: int, wfd: int, sinks: List[Any],
                 routes: Tuple[Tuple[Any, Any], ...] = ()) -> None:
        self.rfd, self.wfd, self.sinks, self.routes = rfd, wfd, sinks, routes
        self.tail = b""

    def _route(self, data: bytes) -> None:
        plain: List[bytes] = []
        for line in data.splitlines(keepends=True):
            text = line.decode("utf-8", "replace")
            hit = False
            for pattern, sink in self.routes:
                if pattern.search(text):
                    hit = True
                    _safe_write(sink, line)
            if not hit:
                plain.append(line)
        if plain:
            out = b"".join(plain)
            for sink in self.sinks:
                _safe_write(sink, out)

    def feed(self, data: bytes, flush: bool = False) -> None:
        data = self.tail + data
        cut = data.rfind(b"\n") + 1
        if flush or len(data) - cut > 65536:
            cut = len(data)
        self.tail = data[cut:]
        if not cut:
            return
        if self.routes:
            self._route(data[:cut])
            return
        for sink in self.sinks:
            _safe_write(sink, data[:cut])


def _safe_write(sink: Any, data: bytes) -> None:
    try:
        sink.write(data)
    except Exception:   # noqa: BLE001 - one broken sink loses its own lines only
        pass


class _LogMaster:
    """The pipe reader: a daemon thread in the master (uWSGI's log master)."""

    def __init__(self, pipes: List[_Pipe], owned: List[Any]) -> None:
        self.pipes = pipes
        self.owned = owned     # sinks to reopen on SIGUSR1
        self.lock = threading.Lock()
        self.pid = os.getpid()
        for p in pipes:
            os.set_blocking(p.rfd, False)
        self.thread = threading.Thread(target=self._run, name="uwsgipy-log", daemon=True)
        self.thread.start()
        atexit.register(self.drain)

    def _read(self, flush_idle: bool) -> bool:
        """Read what is there from every pipe; returns True if data came."""
        got = False
        for p in self.pipes:
            while True:
                try:
                    data = os.read(p.rfd, 65536)
                except BlockingIOError:
                    break
                except InterruptedError:
                    continue
                if not data:
                    break
                got = True
                p.feed(data)
            if flush_idle and p.tail:
                p.feed(b"", flush=True)
        return got

    def _run(self) -> None:
        fds = [p.rfd for p in self.pipes]
        while True:
            try:
                ready, _, _ = select.select(fds, [], [], 0.5)
            except InterruptedError:
                continue
            except OSError:
                return
            with self.lock:
                self._read(flush_idle=not ready)

    def drain(self) -> None:
        """At exit: what the workers (already reaped) and this process
        wrote last."""
        if os.getpid() != self.pid:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        with self.lock:
            self._read(flush_idle=True)

    def reopen(self) -> None:
        with self.lock:
            for sink in self.owned:
                try:
                    sink.reopen()
                except OSError as exc:
                    log.error("cannot reopen %s: %s", getattr(sink, "path", "?"), exc.strerror)


_master: Optional[_LogMaster] = None
_deferred: List[str] = []   # warnings found while the log pipe is being set up
_req_fd = 2   # where the C core writes request lines


def _make_sinks(specs: List[LoggerSpec], orig_fd: int) -> List[Tuple[LoggerSpec, Any]]:
    sinks: List[Tuple[LoggerSpec, Any]] = []
    for spec in specs:
        if spec.kind == "file":
            path, maxsize, backup = _file_logger_args(spec)
            try:
                sinks.append((spec, _FileSink(path, maxsize, backup)))
            except OSError as exc:
                raise OSError(exc.errno, f"logger {spec.kind}:{spec.arg}: cannot open "
                                         f"{path!r}: {exc.strerror}") from None
        elif spec.kind == "fd":
            sinks.append((spec, _FdSink(int(spec.arg or "-1"))))
        elif spec.kind == "stdio":
            sinks.append((spec, _FdSink(orig_fd)))
        else:
            try:
                sinks.append((spec, _SyslogSink(spec.arg)))
            except OSError as exc:
                _deferred.append("syslog logger: cannot reach "
                                 f"{os.environ.get('UWSGIPY_SYSLOG_ADDRESS', '/dev/log')} "
                                 f"({exc.strerror}): its lines are lost")
    return sinks


def _dispatch(made: List[Tuple[LoggerSpec, Any]], orig_sink: Any, routes: List[str],
              option: str) -> Tuple[List[Any], Tuple[Tuple[Any, Any], ...]]:
    """(unnamed sinks or [orig_sink], (regexp, named sink) routes)."""
    plain = [sink for spec, sink in made if spec.name is None] or [orig_sink]
    named = {spec.name: sink for spec, sink in made if spec.name is not None}
    table = []
    for value in routes:
        name, pattern = parse_log_route(value)
        if name not in named:
            _deferred.append(f"{option} {value!r}: no logger named {name!r}: ignored, "
                             "as uWSGI does")
            continue
        table.append((pattern, named[name]))
    return plain, tuple(table)


def _inherited_pipes() -> Optional[List[int]]:
    """The log pipe of the master this one re-executed (graceful reload)."""
    if os.environ.get("UWSGIPY_REEXEC") != "1":
        return None
    try:
        fds = [int(x) for x in os.environ.get(ENV_LOG_PIPE, "").split(",")]
    except ValueError:
        return None
    if len(fds) != 5:
        return None
    try:
        for fd in fds[1:]:
            if fd >= 0 and not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return None
        os.fstat(fds[0])
    except OSError:
        return None
    return fds


def _pipe() -> Tuple[int, int]:
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (OSError, AttributeError):
        pass
    return r, w


def _close_read_ends() -> None:
    """In a forked child: only the master reads the pipe (a worker that
    held a read end would block forever once the master is gone)."""
    global _master
    if _master is not None:
        for p in _master.pipes:
            try:
                os.close(p.rfd)
            except OSError:
                pass
        _master = None


os.register_at_fork(after_in_child=_close_read_ends)


def _setup_pipe(logto: Optional[str], cfg: Any) -> None:
    global _master, _req_fd
    loggers = [parse_logger(v) for v in cfg.logger]
    req_loggers = [parse_logger(v) for v in cfg.req_logger]
    inherited = _inherited_pipes()
    if inherited is not None:
        orig, mr, mw, rr, rw = inherited
        if logto:                       # re-opened at every start, as log-reopen
            fd = _open_append(logto)
            os.dup2(fd, orig)
            os.close(fd)
    else:
        if logto:
            orig = _open_append(logto)
        else:
            orig = os.dup(2)
        mr, mw = _pipe()
        rr, rw = _pipe() if req_loggers else (-1, -1)
    for fd in (orig, mr, mw, rr, rw):
        if fd >= 0:
            os.set_inheritable(fd, True)   # kept across a graceful reload's exec
    os.environ[ENV_LOG_PIPE] = f"{orig},{mr},{mw},{rr},{rw}"
    if logto:
        orig_sink: Any = _FileSink(logto, int(cfg.log_maxsize or 0), cfg.log_backupname,
                                   fd=orig)
    else:
        orig_sink = _FdSink(orig)
    main = _make_sinks(loggers, orig)
    pipes = [_Pipe(mr, mw, *_dispatch(main, orig_sink, cfg.log_route, "log-route"))]
    owned = [sink for _, sink in main if isinstance(sink, _FileSink)]
    if req_loggers:
        req = _make_sinks(req_loggers, orig)
        pipes.append(_Pipe(rr, rw, *_dispatch(req, orig_sink, cfg.log_req_route,
                                              "log-req-route")))
        owned += [sink for _, sink in req if isinstance(sink, _FileSink)]
        _req_fd = rw
    if isinstance(orig_sink, _FileSink) and orig_sink not in owned:
        owned.append(orig_sink)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(mw, 1)
    os.dup2(mw, 2)
    _master = _LogMaster(pipes, owned)
    for message in _deferred:      # now they go where the logs go
        log.warning("%s", message)
    del _deferred[:]


def _uses_pipe(cfg: Any) -> bool:
    return bool(cfg.logger or cfg.req_logger or cfg.log_master or cfg.log_maxsize)


def _chown_logfile(path: str, cfg: Any) -> None:
    """logfile-chown: the logto file to uid/gid (uWSGI fchowns fd 2 before
    dropping privileges)."""
    from . import privileges
    try:
        ident = privileges.resolve(cfg)
    except Exception:   # noqa: BLE001 - check_config reports a bad uid/gid
        return
    if ident.uid is None and ident.gid is None:
        return
    uid = -1 if ident.uid is None else ident.uid
    gid = -1 if ident.gid is None else ident.gid
    try:
        os.chown(path, uid, gid)
    except OSError as exc:
        raise OSError(exc.errno, f"logfile-chown: cannot chown {path!r}: {exc.strerror}") \
            from None


def setup_logging(logto: Optional[str] = None, cfg: Any = None) -> None:
    """Install the handler; redirect fds 1 and 2 to ``logto`` when given,
    or into the log pipe (see the module docstring) when ``cfg`` asks for
    loggers.  Raises OSError naming the file when one cannot be opened."""
    global _logto, _log_date
    handler = logging.StreamHandler(sys.stderr)   # fd 2, whatever it is made below
    handler.setFormatter(_Formatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    if cfg is not None:
        _log_date = parse_log_date(getattr(cfg, "log_date", None))
    if cfg is not None and _uses_pipe(cfg) and getattr(cfg, "daemonize", None) \
            and os.environ.get("UWSGIPY_REEXEC") != "1":
        # daemonize forks after this and points fds 1 and 2 at its file: the
        # reader thread would not survive the fork (a uwsgipy limitation).
        _deferred.append("logger / req-logger / log-master / log-maxsize with daemonize: not "
                         f"used, everything goes to the daemonize file {cfg.daemonize} "
                         "(run under a service manager, or use logto, for loggers)")
    elif cfg is not None and _uses_pipe(cfg):
        try:
            _setup_pipe(logto, cfg)
        except OSError as exc:
            if logto and not str(exc.strerror).startswith("logger"):
                raise OSError(exc.errno, f"logto: cannot open {logto!r}: {exc.strerror}") \
                    from None
            raise
    elif logto:
        try:
            _redirect(logto)
        except OSError as exc:
            raise OSError(exc.errno, f"logto: cannot open {logto!r}: {exc.strerror}") from None
        _logto = logto
    if cfg is not None and logto and cfg.logfile_chown:
        _chown_logfile(logto, cfg)
    for message in _deferred:
        log.warning("%s", message)
    del _deferred[:]
    if cfg is not None and cfg.log_slow is not None and not re.match(r"\s*[-+]?\d", cfg.log_slow):
        log.warning("%s: log-slow = %r is not a number of milliseconds: uWSGI reads it as %d "
                    "(atoi), so does uwsgipy", cfg.sources.get("log-slow", "?"), cfg.log_slow,
                    atoi(cfg.log_slow))
    if cfg is not None:
        for message in _setup_encoder(cfg):
            log.warning("%s", message)
        applied = req_template(cfg)
        for value in cfg.log_req_encoder:
            spec = parse_encoder(value)
            if spec.name == "nl" or (spec.name == "json" and not spec.args) or spec == applied:
                continue
            log.warning("log-req-encoder %r (%s): not applied (uwsgipy applies `json`, `nl` "
                        "and one format/json TEMPLATE, not with `json`, to request lines)",
                        value, cfg.sources.get("log-req-encoder", "?"))
    if cfg is not None and not _uses_pipe(cfg) and (cfg.log_route or cfg.log_req_route):
        log.warning("log-route / log-req-route without logger or req-logger: ignored, "
                    "as uWSGI does")


def reopen() -> None:
    """Reopen the ``logto`` file (after logrotate moved it); with the log
    pipe, the master reopens the files its reader writes."""
    if _master is not None:
        _master.reopen()
    elif _logto:
        _redirect(_logto)


# --------------------------------------------------------------------------
# The access log: the C core's keywords.
# --------------------------------------------------------------------------

# Values shared with csrc/upy_response.c (the access log's own defines).
LOG_ZERO = 4
LOG_SLOW_SHIFT = 8
LV_DEFAULT = 100
LV_DEFAULT_MICROS = 101


def access_log_options(cfg: Any) -> Dict[str, Any]:
    """disable-logging, log-4xx, log-5xx, log-zero, log-slow, log-micros,
    log-format, log-x-forwarded-for, req-logger and route/route-uri as
    _core.Server keywords (access_log_fd, log_filter, log_format, log_xff).
    As uWSGI's log_request(), the conditions log a request only when
    disable-logging is set; routes' ``donotlog:`` wins over all.  Without
    routes no Python code runs per request.  Raises ValueError for a bad
    log-format or route."""
    from . import _core
    log_filter = 0
    if cfg.disable_logging:
        log_filter = ((_core.LOG_4XX if cfg.log_4xx else 0)
                      | (_core.LOG_5XX if cfg.log_5xx else 0)
                      | (LOG_ZERO if cfg.log_zero else 0)
                      | (max(0, min(atoi(cfg.log_slow), (1 << 23) - 1)) << LOG_SLOW_SHIFT))
    enabled = not cfg.disable_logging or log_filter
    fmt: Optional[Tuple[Any, ...]] = None
    if cfg.log_format:
        fmt = compile_log_format(cfg.log_format, json_fields=req_json(cfg))
    elif cfg.log_micros:
        fmt = (LV_DEFAULT_MICROS,)
    routes = list(cfg.route) + list(cfg.route_uri)
    if routes and enabled:
        from .routes import compile_routes
        matcher = compile_routes(cfg.route, cfg.route_uri, write=_write_route_log)
        if matcher is not None:
            fmt = (matcher,) + (fmt or (LV_DEFAULT,))
    return dict(access_log_fd=_req_fd if enabled else -1, log_filter=log_filter,
                log_format=fmt, log_xff=cfg.log_x_forwarded_for)


def req_json(cfg: Any) -> bool:
    """log-req-encoder = json: the C core writes JSON request lines."""
    return any(parse_encoder(v).name == "json" and not parse_encoder(v).args
               for v in (getattr(cfg, "log_req_encoder", ()) or ()))


# log-json-field: at most this much JSON in all (every line carries it)
JSON_EXTRA_MAX = 4096


# ${var} codes of a compiled request-line template (csrc/upy_response.c's
# UPY_TPL_*): "\0" + the code; strftime's format follows, closed by "\0".
_TPL_CODES = {"msg": 1, "msgnl": 2, "unix": 3, "micros": 4, "millis": 5}
_TPL_STRFTIME = 6


def compile_req_template(template: str) -> bytes:
    """uWSGI's format / json encoder TEMPLATE for request lines, as the C
    core reads it.  An unknown ${var} gives nothing, as uWSGI."""
    out = bytearray()
    pos = 0
    for m in _TEMPLATE_VAR.finditer(template):
        out += template[pos:m.start()].encode()
        name = m.group(1)
        if name in _TPL_CODES:
            out += bytes((0, _TPL_CODES[name]))
        elif name.startswith("strftime:"):
            out += bytes((0, _TPL_STRFTIME)) + name[9:].encode().replace(b"\0", b"") + b"\0"
        pos = m.end()
    out += template[pos:].encode()
    return bytes(out)


def req_template(cfg: Any) -> Optional[EncoderSpec]:
    """The log-req-encoder template applied to request lines: the first
    format / json TEMPLATE, unless the structured json encoder is on."""
    if req_json(cfg):
        return None
    for value in getattr(cfg, "log_req_encoder", ()) or ():
        spec = parse_encoder(value)
        if spec.name in ("format", "json") and spec.args:
            return spec
    return None


def set_access_log(server: Any, cfg: Any) -> None:
    """Configure the JSON request lines, the request-line template and
    request ids of a _core.Server (_core.set_access_log).  Nothing to do,
    nothing called."""
    from . import _core
    use_json = req_json(cfg)
    rid = cfg.request_id_header if getattr(cfg, "request_id", False) else None
    tpl = req_template(cfg)
    if not use_json and rid is None and tpl is None:
        return
    extra = b"".join(json.dumps(k, ensure_ascii=False).encode() + b":"
                     + json.dumps(v, ensure_ascii=False).encode() + b","
                     for k, v in json_extra_fields(list(cfg.log_json_field)).items())
    if len(extra) > JSON_EXTRA_MAX:
        raise ValueError(f"log-json-field: {len(extra)} bytes of JSON, at most "
                         f"{JSON_EXTRA_MAX}")
    _core.set_access_log(server, json=use_json, json_extra=extra or None, request_id=rid,
                         template=compile_req_template(tpl.args or "") if tpl else None,
                         template_json=bool(tpl and tpl.name == "json"))


def _write_route_log(text: str) -> None:
    """A route's ``log:`` line, raw as uWSGI's uwsgi_log (log-date too)."""
    _write_all(2, (date_prefix() + text + "\n").encode("utf-8", "replace"))


_LOG_VAR = re.compile(r"%\(([a-z0-9_]+|var\.[A-Za-z0-9_.-]+)\)")
# Variables that are environ values, filled like %(var.NAME) (empty when absent, as uWSGI)
_ENVIRON_LOG_VARS = {"user": "REMOTE_USER"}


def compile_log_format(fmt: str, json_fields: bool = False
                       ) -> Tuple[Union[str, int, Tuple[str]], ...]:
    """Compile uWSGI's ``log-format`` (``%(addr) %(method) %(uri)...``) to
    the tuple of literal strings and variable codes the C core fills in.
    Variables: the keys of ``_core.LOG_VARS`` (addr, method, uri, proto,
    status, size, msecs, micros, time, ctime, uagent, referer, host, pid,
    wid, user, ltime, epoch, secs, cl, request_id) and ``var.NAME`` (the
    environ's NAME, compiled to a 1-tuple).  With ``json_fields`` (JSON
    request lines) the text between variables is dropped and each variable
    is preceded by its field name (the variable's name as written; a
    repeated one once).  Raises ValueError naming an unknown variable."""
    from . import _core
    parts: list = []
    pos = 0
    seen = set()
    for m in _LOG_VAR.finditer(fmt):
        if json_fields:
            if m.group(1) in seen:
                continue
            seen.add(m.group(1))
            parts.append(m.group(1))
        elif m.start() > pos:
            parts.append(fmt[pos:m.start()])
        name = m.group(1)
        key = name[4:] if name.startswith("var.") else _ENVIRON_LOG_VARS.get(name)
        if key is not None:
            parts.append((key,))  # the environ's value, as uWSGI's %(var.NAME)
        elif name in _core.LOG_VARS:
            parts.append(_core.LOG_VARS[name])
        else:
            raise ValueError(f"log-format: unknown variable %({name}); known: "
                             + ", ".join(sorted({*_core.LOG_VARS, *_ENVIRON_LOG_VARS})))
        pos = m.end()
    if pos < len(fmt) and not json_fields:
        parts.append(fmt[pos:])
    return tuple(parts)
