"""uWSGI's internal routing, the part that concerns logging: ``route`` and
``route-uri`` with the ``donotlog``, ``log``, ``last``, ``continue``
actions.

A route is ``REGEXP ACTION:ARG`` (split at the first space, the action at
its first colon; uWSGI's uwsgi_opt_add_route).  ``route`` matches the
regexp against PATH_INFO, ``route-uri`` against REQUEST_URI; routes run in
the order given (``route`` ones, then ``route-uri`` ones: uWSGI keeps one
list in option order; uwsgipy's settings keep one list per option, so
mixing both with ``last:`` between them may differ).  Regexps are Python's
:mod:`re` with ``search`` (PCRE's unanchored match; the usual syntax is
the same).

Actions (core/routing.c):

- ``donotlog:`` the request is not in the access log (also with log-4xx…);
  routing goes on.
- ``log:TEXT`` writes TEXT as a log line (``$1``..``$9`` the regexp's
  groups, ``${VAR}`` an environ variable such as ``${REQUEST_URI}``);
  routing goes on.
- ``last:`` / ``continue:`` stop routing; the request goes to the app.
- ``break:STATUS`` (e.g. ``break:403 Forbidden``) stops routing and answers
  STATUS with ``Connection: close`` and no body, without calling the app
  (uWSGI's uwsgi_router_break_func).  A bare ``break:`` (uWSGI closes the
  connection with no response at all) is refused: a WSGI server always
  answers.

Everything else is refused at start-up naming the action: ``return:``,
``rewrite:``, ``redirect:``, ``addheader:``… change the response in ways
uwsgipy's routes do not.

uwsgipy runs the routes after the response (the C core calls the compiled
matcher from the access log, and only when routes are configured), which
for these actions gives uWSGI's result; a ``log:`` line is written when
the request ends rather than when it starts.
"""
from __future__ import annotations

import re
from typing import Any, Callable, List, Optional, Sequence, Tuple

__all__ = ["parse_route", "compile_routes", "wrap_app", "ACTIONS"]

ACTIONS = ("donotlog", "log", "last", "continue", "break")
_STOP = ("last", "continue", "break")
_REFUSED_WHY = {
    "return": "it answers instead of the app",
    "break-with-status": "it answers instead of the app",
    "goto": "labels are not supported",
}

_VAR = re.compile(r"\$\{([A-Za-z0-9_.]+)\}|\$([0-9])")


def parse_route(value: str) -> Tuple["re.Pattern[str]", str, str]:
    """(compiled regexp, action, arg) of one ``route`` value.  Raises
    ValueError naming the problem (uWSGI: "invalid route syntax",
    "unable to register route")."""
    regexp, space, command = value.partition(" ")
    if not space or not regexp:
        raise ValueError(f"invalid route syntax {value!r}: expected 'REGEXP ACTION:ARG'")
    command = command.lstrip(" ")
    action, colon, arg = command.partition(":")
    if not colon:
        raise ValueError(f"invalid route syntax {value!r}: the action needs a colon "
                         f"({action}:)")
    if action not in ACTIONS:
        why = _REFUSED_WHY.get(action, "uwsgipy's routes only control logging")
        raise ValueError(f"route action {action!r} is not supported ({why}); supported: "
                         + ", ".join(a + ":" for a in ACTIONS))
    if action == "break" and not re.match(r"[1-5][0-9][0-9] \S", arg):
        raise ValueError(f"route {value!r}: give break a status, e.g. 'break:403 Forbidden' "
                         "(a bare break closes the connection without a response in uWSGI; "
                         "uwsgipy always answers)")
    try:
        pattern = re.compile(regexp)
    except re.error as exc:
        raise ValueError(f"route regexp {regexp!r}: {exc}") from None
    return pattern, action, arg


def _translate(text: str, match: "re.Match[str]", environ: dict) -> str:
    def sub(m: "re.Match[str]") -> str:
        if m.group(1) is not None:
            v = environ.get(m.group(1))
            return "" if v is None else str(v)
        n = int(m.group(2))
        if n > (match.re.groups or 0):
            return ""
        return match.group(n) or ""
    return _VAR.sub(sub, text)


def compile_routes(route: Sequence[str], route_uri: Sequence[str],
                   write: Callable[[str], None]) -> Optional[Callable[[dict], bool]]:
    """The matcher the C access log calls: ``matcher(environ) -> bool``
    (False: do not log this request).  ``write`` receives ``log:`` lines.
    None when there are no routes.  Raises ValueError for a bad route."""
    table: List[Tuple[Any, str, str, str]] = []
    for key, values in (("PATH_INFO", route), ("REQUEST_URI", route_uri)):
        for value in values:
            pattern, action, arg = parse_route(value)
            table.append((pattern.search, key, action, arg))
    if not table:
        return None
    rows = tuple(table)

    def matcher(environ: dict) -> bool:
        log_it = True
        for search, key, action, arg in rows:
            m = search(environ.get(key, ""))
            if m is None:
                continue
            if action == "donotlog":
                log_it = False
            elif action == "log":
                write(_translate(arg, m, environ))
            else:   # last, continue, break
                break
        return log_it

    return matcher


def wrap_app(app: Callable, route: Sequence[str], route_uri: Sequence[str]) -> Callable:
    """The app itself, or, when a ``break:`` route exists, a WSGI wrapper
    that runs the routes before the app (in order, stopping at the first
    matching last/continue/break) and answers a matching break's status
    instead of calling the app.  Raises ValueError for a bad route."""
    rows = []
    for key, values in (("PATH_INFO", route), ("REQUEST_URI", route_uri)):
        for value in values:
            pattern, action, arg = parse_route(value)
            rows.append((pattern.search, key, action, arg))
    if not any(action == "break" for _, _, action, _ in rows):
        return app

    def application(environ: dict, start_response: Callable) -> Any:
        for search, key, action, arg in rows:
            if action not in _STOP or search(environ.get(key, "")) is None:
                continue
            if action == "break":
                start_response(arg, [("Content-Type", "text/plain"), ("Connection", "close"),
                                     ("Content-Length", "0")])
                return [b""]
            break
        return app(environ, start_response)

    application.__wrapped__ = app  # type: ignore[attr-defined]
    return application
