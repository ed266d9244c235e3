"""Logging setup: the ``uwsgipy`` logger, ``logto``, ``disable-logging``.

Server messages go through :mod:`logging` to stderr, formatted
``uwsgipy: message`` (``uwsgipy: WARNING: ...`` above INFO).  With
``logto`` (uWSGI's option) the file is opened for appending and put on
fds 1 and 2, so the access log (written by the C core to fd 2), tracebacks,
``wsgi.errors`` and stray prints all land in it; :func:`reopen` does it
again (SIGUSR1, for logrotate).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from typing import Optional, Tuple, Union

__all__ = ["setup_logging", "reopen", "set_role", "compile_log_format", "log"]

log = logging.getLogger("uwsgipy")


_role = ""


def set_role(role: str) -> None:
    """Name this process in every message ("worker 2"); "" for the master
    or a single process."""
    global _role
    _role = f"{role}: " if role else ""


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname}: "
        prefix = f"uwsgipy: {_role}{level}"
        text = prefix + record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


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


def setup_logging(logto: Optional[str] = None) -> None:
    """Install the handler; redirect fds 1 and 2 to ``logto`` when given.
    Raises OSError naming the file when it cannot be opened."""
    global _logto
    if logto:
        try:
            _redirect(logto)
        except OSError as exc:
            raise OSError(exc.errno, f"logto: cannot open {logto!r}: {exc.strerror}") from None
        _logto = logto
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def reopen() -> None:
    """Reopen the ``logto`` file (after logrotate moved it)."""
    if _logto:
        _redirect(_logto)


_LOG_VAR = re.compile(r"%\(([a-z0-9_]+)\)")


def compile_log_format(fmt: str) -> Tuple[Union[str, int], ...]:
    """Compile uWSGI's ``log-format`` (``%(addr) %(method) %(uri)...``) to
    the tuple of literal strings and variable codes the C core fills in.
    Variables: the keys of ``_core.LOG_VARS`` (addr, method, uri, proto,
    status, size, msecs, micros, time, ctime, uagent, referer, host, pid,
    wid).  Raises ValueError naming an unknown variable."""
    from . import _core
    parts: list = []
    pos = 0
    for m in _LOG_VAR.finditer(fmt):
        if m.start() > pos:
            parts.append(fmt[pos:m.start()])
        name = m.group(1)
        if name not in _core.LOG_VARS:
            raise ValueError(f"log-format: unknown variable %({name}); known: "
                             + ", ".join(sorted(_core.LOG_VARS)))
        parts.append(_core.LOG_VARS[name])
        pos = m.end()
    if pos < len(fmt):
        parts.append(fmt[pos:])
    return tuple(parts)
