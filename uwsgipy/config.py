"""Settings table and command line for uwsgipy.

One declarative table, ``SETTINGS``, drives everything: the argparse parser
(``build_parser``), ``UWSGI_*`` environment variables, ini files and the
reference page (``render_docs`` -> docs/configuration.md).

uwsgipy.ini reads the environment, the command line and the ini files into
uWSGI's exported options, with uWSGI 2.0's config language; ``load`` maps
them onto the table.  Precedence, lowest first: defaults < environment and
ini files, in uWSGI's reading order (a repeated scalar keeps the value read
last, a list option collects every value) < command line, which replaces a
list as a whole (so ``--http-socket :8080`` replaces the ini file's
sockets).  Deliberate deviations from uWSGI are marked DEVIATION.

Regenerate the docs with ``python -m uwsgipy.config > docs/configuration.md``.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, NoReturn, Optional, Sequence, Tuple

from uwsgipy import __version__
from uwsgipy import ini as _ini

__all__ = [
    "ConfigError",
    "Setting",
    "SETTINGS",
    "Config",
    "load",
    "build_parser",
    "render_docs",
]


class ConfigError(Exception):
    """A configuration mistake, worded for the user.

    The message names where the value came from ("app.ini:7",
    "env UWSGI_PROCESSES", "command line") and the option concerned.
    """


KINDS = ("str", "int", "bool", "list")


@dataclass(frozen=True)
class Setting:
    """One option, declared once; CLI, env, ini and docs derive from it."""

    name: str  # the uWSGI option name, e.g. "http-socket"
    kind: str  # one of KINDS
    default: Any
    help: str  # for unimplemented settings: the hint shown when refusing
    short: Optional[str] = None  # e.g. "-s"
    aliases: Tuple[str, ...] = ()
    metavar: Optional[str] = None
    section: str = "Other"
    implemented: bool = True
    validator: Optional[Callable[[Any], None]] = None  # raises ValueError
    uwsgi_ref: str = ""  # which uWSGI option this mirrors, and how it differs
    # Value used when the option is given bare (``--chmod-socket``, or a
    # ``chmod-socket`` ini line without '='); None means a value is required.
    const: Optional[str] = None
    # Accepted without its effect, where serving is right without it: one warning line at
    # start-up names the option and says this (e.g. cron: "the jobs are not run").
    warning: str = ""

    @property
    def attr(self) -> str:
        """Attribute name on Config: '-' becomes '_'."""
        return self.name.replace("-", "_")

    @property
    def names(self) -> Tuple[str, ...]:
        return (self.name,) + self.aliases

    @property
    def env_vars(self) -> Tuple[str, ...]:
        return tuple(_env_var(n) for n in self.names)


def _env_var(name: str) -> str:
    return "UWSGI_" + name.upper().replace("-", "_")


# --------------------------------------------------------------------------
# Validators: each takes the converted value and raises ValueError(message).
# --------------------------------------------------------------------------


def _logger_spec(value: str) -> None:
    from .log import parse_logger
    parse_logger(value)


def _log_route_spec(value: str) -> None:
    from .log import parse_log_route
    parse_log_route(value)


def _route_spec(value: str) -> None:
    from .routes import parse_route
    parse_route(value)


def _at_least(low: int) -> Callable[[Any], None]:
    def check(value: int) -> None:
        if value < low:
            raise ValueError(f"must be at least {low}, got {value}")

    return check


def _between(low: int, high: int) -> Callable[[Any], None]:
    def check(value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")

    return check


def _probe_path(value: str) -> None:
    """liveness-path / readiness-path: what the C core compares requests with."""
    if not value.startswith("/") or "?" in value or len(value.encode("utf-8")) > 127 \
            or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError(f"expected a path starting with '/', without '?' or spaces, at most "
                         f"127 bytes (e.g. /healthz), got {value!r}")


def _address(value: str) -> None:
    """HOST:PORT, :PORT, [IPv6]:PORT, or a unix socket path.

    uWSGI's rule: a value with a ':' (and no '/') is TCP, anything else is a
    unix socket path.
    """
    if not value:
        raise ValueError("empty address")
    if "/" in value or ":" not in value:
        return  # unix socket path
    host, _, port = value.rpartition(":")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"invalid address {value!r} (IPv6 hosts are written [::1]:PORT)")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"invalid address {value!r}: port must be a number from 0 to 65535 "
            "(use HOST:PORT, :PORT for all interfaces, or a unix socket path)"
        )


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _module_spec(value: str) -> None:
    module, sep, attr = value.partition(":")
    if module.endswith(".py") or "/" in module:
        raise ValueError(f"{value!r} looks like a file path; use wsgi-file for files")
    if not _DOTTED.match(module):
        raise ValueError(f"invalid module name {module!r} (expected 'pkg.module' or 'pkg.module:callable')")
    if sep and not _DOTTED.match(attr[:-2] if attr.endswith("()") else attr):
        raise ValueError(f"invalid callable name {attr!r} in {value!r}")


# uWSGI's protocol names (uwsgi_protocols_register() in core/socket.c) that `protocol`
# can name: those uwsgipy serves, and those it refuses with a reason.
PROTOCOLS = ("uwsgi", "http", "http11", "fastcgi", "fastcgi-nph", "scgi", "scgi-nph")
_PROTOCOLS_REFUSED = {
    "puwsgi": "persistent uwsgi is not served: use socket (uwsgi) or http-socket",
    "suwsgi": "uwsgipy has no TLS; terminate TLS in nginx or a load balancer",
    "https": "uwsgipy has no TLS; terminate TLS in nginx or a load balancer",
    "raw": "raw sockets are not served",
}


def _protocol(value: str) -> None:
    if value in PROTOCOLS:
        return
    if value in _PROTOCOLS_REFUSED:
        raise ValueError(f"protocol {value!r} is not supported by uwsgipy: "
                         f"{_PROTOCOLS_REFUSED[value]}")
    raise ValueError(f"must be one of {', '.join(PROTOCOLS)}, not {value!r}")


def _choice(*allowed: str) -> Callable[[Any], None]:
    def check(value: str) -> None:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, not {value!r}")
    return check


def _identifier(value: str) -> None:
    """A callable name; NAME() (uWSGI's call of a factory) too."""
    if not _DOTTED.match(value[:-2] if value.endswith("()") else value):
        raise ValueError(f"invalid callable name {value!r}")


def _key_value(value: str) -> None:
    key, sep, _ = value.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {value!r}")


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


def _header_line(value: str) -> None:
    """'Name: value' (RFC 9110 §5: a token, a colon, a value without CR, LF or NUL)."""
    name, sep, val = value.partition(":")
    if not sep or not _TOKEN.match(name.strip()) or name != name.strip():
        raise ValueError(f"expected 'Name: value' with a header name, got {value!r}")
    if any(c in val for c in "\r\n\0"):
        raise ValueError(f"a header value cannot hold CR, LF or NUL: {value!r}")


def _octal_mode(value: str) -> None:
    if not re.fullmatch(r"[0-7]{3,4}", value):
        raise ValueError(f"expected an octal mode such as 660, got {value!r}")


def _static_map(value: str) -> None:
    from .static import parse_map
    parse_map(value)


def _static_expires(value: str) -> None:
    from .static import parse_expires
    parse_expires(value)


def _static_expires_type(value: str) -> None:
    from .static import parse_expires_type
    parse_expires_type(value)


def _static_gzip(value: str) -> None:
    from .static import gzip_regex_suffixes
    gzip_regex_suffixes(value)


def _log_encoder(value: str) -> None:
    from .log import parse_encoder
    parse_encoder(value)


def _log_json_field(value: str) -> None:
    key, eq, _ = value.partition("=")
    if not eq or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {value!r}")


def _header_name(value: str) -> None:
    import re
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
        raise ValueError(f"expected a header name such as X-Request-ID, got {value!r}")


def _not_empty(value: str) -> None:
    if not value.strip():
        raise ValueError("empty value")


def _file_name(value: str) -> None:
    """static-index: a name relative to the directory (index.html, or sub/index.html as
    uWSGI appends it), never absolute or climbing out."""
    name = value.strip()
    if not name or name.startswith("/") or ".." in name.split("/") or "\0" in name:
        raise ValueError(f"expected a file name such as index.html (relative, no '..'), "
                         f"got {value!r}")


def _mount(value: str) -> None:
    from .app import parse_mount
    parse_mount(value)


# The python plugin is built in; uWSGI ini files from distributions load it
# explicitly (``plugins = python3``), so those names are accepted silently.
_PYTHON_PLUGIN = re.compile(r"(?:\d+:)?python[0-9.]*\Z")


def _plugins(value: str) -> None:
    for name in (part.strip() for part in value.split(",")):
        if name and not _PYTHON_PLUGIN.match(name):
            raise ValueError(
                f"plugin {name!r} is not supported by uwsgipy "
                "(only the built-in python plugin exists; python, python3, python311 ... are accepted)"
            )


# --------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------

SECTIONS: Tuple[str, ...] = (
    "Config files",
    "Sockets",
    "Application",
    "Requests and timeouts",
    "Static files",
    "Processes",
    "ASGI and WebSockets",
    "Adaptive workers (cheaper)",
    "Attached daemons",
    "Worker recycling and reloading",
    "Logging",
    "Privileges and daemon",
    "Stats",
    "uWSGI compatibility",
)
UNSUPPORTED_SECTION = "Not supported yet"


def _s(name: str, kind: str, default: Any, help: str, **kw: Any) -> Setting:
    return Setting(name=name, kind=kind, default=default, help=help, **kw)


def _no(name: str, hint: str = "", kind: str = "str", **kw: Any) -> Setting:
    """A uWSGI option uwsgipy recognises but refuses (see Setting.help)."""
    return Setting(name=name, kind=kind, default=None if kind != "list" else (),
                   help=hint, implemented=False, section=UNSUPPORTED_SECTION, **kw)


def _daemon_validator(option: str) -> Callable[[Any], None]:
    def check(value: str) -> None:
        from .daemons import parse_daemon
        parse_daemon(option, value)

    return check


def _pre_app_hook(value: str) -> None:
    action, sep, arg = value.partition(":")
    if not sep or action.strip() not in ("exec", "safeexec") or not arg.strip():
        raise ValueError("only the exec:COMMAND and safeexec:COMMAND actions are supported; "
                         "run other hooks from your service manager")


def _umask(value: str) -> None:
    if not re.fullmatch(r"[0-7]{1,4}", value.strip()) or int(value, 8) > 0o777:
        raise ValueError(f"invalid umask {value!r} (an octal mode such as 022)")


HOOK_MASTER_START_SIGTERM = "unix_signal:15 gracefully_kill_them_all"


def _hook_master_start(value: str) -> None:
    if " ".join(value.split()) != HOOK_MASTER_START_SIGTERM:
        raise ValueError(f"only '{HOOK_MASTER_START_SIGTERM}' is supported (SIGTERM is "
                         "uwsgipy's graceful stop already); run other commands from your "
                         "service manager")


_NO_TLS = "uwsgipy has no TLS; terminate TLS in nginx or a load balancer"
_NO_HOOKS = "run the command from your service manager instead"

SETTINGS: Tuple[Setting, ...] = (
    # -- Config files ------------------------------------------------------
    _s("ini", "list", (),
       "Read options from the [uwsgi] section of FILE, or from [SECTION] with "
       "FILE:SECTION. Repeatable; files are read in order. `uwsgipy app.ini` is "
       "shorthand for `--ini app.ini`, read after every other option, as uWSGI does. "
       "Inside a file, `ini = other.ini` reads another file at that point. UWSGI_INI "
       "is read too, first.",
       metavar="FILE[:SECTION]", section="Config files",
       uwsgi_ref="uWSGI --ini. Only local files (no http://, fd:// or exec:// sources); "
                 "a relative include not found in the current directory is also looked "
                 "for beside the including file."),
    _s("set-placeholder", "list", (),
       "Define the placeholder NAME, usable as %(NAME) in any value; unlike a plain "
       "`NAME = VALUE` line it can never be taken for an option, and strict allows it.",
       aliases=("set-ph",), metavar="NAME=VALUE", section="Config files",
       validator=_key_value,
       uwsgi_ref="uWSGI --set-placeholder / --set-ph, same rules: the value is not "
                 "expanded, and an option's name is refused."),
    _s("set", "list", (),
       "Set the option or placeholder NAME to VALUE, as a `NAME = VALUE` line would.",
       short="-S", metavar="NAME=VALUE", section="Config files", validator=_key_value,
       uwsgi_ref="uWSGI --set (-S)."),
    _s("show-config", "bool", False,
       "Log the resolved configuration (every option, after expansion) in uWSGI's "
       "ini format, then go on starting.",
       section="Config files", uwsgi_ref="uWSGI --show-config, same format."),
    _s("print", "list", (),
       "Write TEXT to stdout once the configuration is read (after expansion). "
       "Repeatable; in order.",
       metavar="TEXT", section="Config files", uwsgi_ref="uWSGI --print."),
    _s("strict", "bool", False,
       "Make keys that are not options errors (also those used as placeholders; "
       "declare placeholders with set-placeholder). The other configuration warnings "
       "(unset $(VAR), unknown %(name), '; comments' after values) stay warnings.",
       section="Config files",
       uwsgi_ref="uWSGI --strict, which refuses only keys that are not options."),
    # -- Sockets -----------------------------------------------------------
    _s("socket", "list", (),
       "Listen for the uwsgi protocol (what nginx's uwsgi_pass speaks) on ADDR: "
       "HOST:PORT, :PORT for all interfaces, [IPv6]:PORT, or a unix socket path. "
       "Repeatable. protocol = http, fastcgi or scgi serves that protocol on them instead.",
       short="-s", aliases=("uwsgi-socket",), metavar="ADDR", section="Sockets",
       validator=_address,
       uwsgi_ref="uWSGI --socket / --uwsgi-socket (-s). protocol sets the protocol of "
                 "these listeners, as uWSGI's does for --socket (its default sockets); "
                 "DEVIATION: uWSGI's --uwsgi-socket is always uwsgi, uwsgipy's is the "
                 "same option as --socket and follows protocol too."),
    _s("http-socket", "list", (),
       "Serve HTTP/1.1 directly on ADDR (same forms as socket), for running behind "
       "a proxy or load balancer. Repeatable.",
       aliases=("http11-socket",), metavar="ADDR", section="Sockets", validator=_address,
       uwsgi_ref="uWSGI --http-socket. Keep-alive is handled here too (see http-keepalive), "
                 "so uWSGI's --http11-socket (its keep-alive variant) is the same option."),
    _s("http", "list", (),
       "Serve HTTP/1.1 on ADDR (same forms as socket). Repeatable. uWSGI starts a "
       "separate HTTP router process for this, proxying to the workers over the "
       "uwsgi protocol; uwsgipy's workers serve it themselves, with the http-* "
       "options below, so the client sees the same server with one hop less.",
       metavar="ADDR", section="Sockets", validator=_address,
       uwsgi_ref="uWSGI --http (its router). No router process: http-processes is "
                 "accepted and has no effect; http-to (forwarding elsewhere) is refused."),
    _s("http-timeout", "int", 60,
       "For http listeners: how long, in seconds, a client may stall (what "
       "socket-timeout is for the others).",
       metavar="SECONDS", section="Sockets", validator=_at_least(1),
       uwsgi_ref="uWSGI --http-timeout, same default."),
    _s("http-processes", "int", 1,
       "Accepted for uWSGI ini files, no effect: uwsgipy has no HTTP router process; "
       "the workers (processes) serve http listeners.",
       aliases=("http-workers",), metavar="N", section="Sockets", validator=_at_least(1),
       uwsgi_ref="uWSGI --http-processes / --http-workers."),
    _s("http-auto-chunked", "bool", False,
       "Accepted, no effect: a response without Content-Length is always sent chunked "
       "to an HTTP/1.1 client that keeps the connection alive.",
       section="Sockets", uwsgi_ref="uWSGI --http-auto-chunked (what uwsgipy always does)."),
    _s("protocol", "str", "uwsgi",
       "The protocol of the socket listeners: uwsgi (what nginx's uwsgi_pass speaks), "
       "http (served as http-socket is), fastcgi (as fastcgi-socket) or scgi (as "
       "scgi-socket). Other listeners keep their own protocol.",
       aliases=("socket-protocol",), metavar="uwsgi|http|fastcgi|scgi", section="Sockets",
       validator=_protocol,
       uwsgi_ref="uWSGI --protocol / --socket-protocol, for socket listeners only, as in "
                 "uWSGI (checked with uWSGI 2.0.31). http11 is taken as http; fastcgi-nph and "
                 "scgi-nph are served as fastcgi-nph-socket and scgi-nph-socket are. "
                 "uWSGI's puwsgi, suwsgi, https and raw are refused. DEVIATION: uWSGI's "
                 "stats report such a socket as uwsgi; uwsgipy's report the protocol served."),
    _s("fastcgi-socket", "list", (),
       "Serve FastCGI 1.0 (responder role) on ADDR (same forms as socket), for nginx's "
       "fastcgi_pass, lighttpd's mod_fastcgi or Apache's mod_proxy_fcgi. The connection "
       "stays open for the next request when the client asks (FCGI_KEEP_CONN: nginx's "
       "fastcgi_keep_conn on). One request at a time per connection (FCGI_MPXS_CONNS is 0). "
       "Repeatable. See docs/fastcgi.md.",
       metavar="ADDR", section="Sockets", validator=_address,
       uwsgi_ref="uWSGI --fastcgi-socket, same response (a 'Status:' line, headers, body). "
                 "It goes out in FCGI_STDOUT records, then FCGI_END_REQUEST, as uWSGI's; "
                 "DEVIATION: records are padded to a multiple of 8 bytes, as the FastCGI "
                 "spec recommends (uWSGI does not pad). ASGI apps are refused on it."),
    _s("fastcgi-nph-socket", "list", (),
       "Serve FastCGI on ADDR as fastcgi-socket does, with non-parsed headers (nph): the "
       "response starts with an HTTP status line ('HTTP/1.1 200 OK') instead of the CGI "
       "'Status:' line. Repeatable.",
       metavar="ADDR", section="Sockets", validator=_address,
       uwsgi_ref="uWSGI --fastcgi-nph-socket, same response (an 'HTTP/1.1 200 OK' line, "
                 "headers, body; checked with uWSGI 2.0.31). DEVIATION: the FCGI_STDOUT "
                 "records are padded, as on fastcgi-socket. ASGI apps are refused on it."),
    _s("scgi-socket", "list", (),
       "Serve SCGI on ADDR (same forms as socket), for nginx's scgi_pass or lighttpd's "
       "mod_scgi. One request per connection: the connection is closed after the "
       "response, as the protocol says. Repeatable. See docs/fastcgi.md.",
       metavar="ADDR", section="Sockets", validator=_address,
       uwsgi_ref="uWSGI --scgi-socket, same response (a 'Status:' line, headers, body, "
                 "then close). ASGI apps are refused on it."),
    _s("scgi-nph-socket", "list", (),
       "Serve SCGI on ADDR as scgi-socket does, with non-parsed headers (nph): the "
       "response starts with an HTTP status line ('HTTP/1.1 200 OK') instead of the CGI "
       "'Status:' line. Repeatable.",
       metavar="ADDR", section="Sockets", validator=_address,
       uwsgi_ref="uWSGI --scgi-nph-socket, same response (an 'HTTP/1.1 200 OK' line, "
                 "headers, body, then close; checked with uWSGI 2.0.31). ASGI apps are "
                 "refused on it."),
    _s("enable-proxy-protocol", "bool", False,
       "On http-socket (and socket with protocol http) listeners, read the PROXY "
       "protocol header (version 1 or 2) a load balancer sends first, and take "
       "REMOTE_ADDR and REMOTE_PORT from it. A connection without one is served as "
       "plain HTTP, as in uWSGI; a malformed one is closed.",
       section="Sockets",
       uwsgi_ref="uWSGI --enable-proxy-protocol (version 1 only in uWSGI 2.0; uWSGI "
                 "serves a request after a malformed header with the socket's address)."),
    _s("http-enable-proxy-protocol", "bool", False,
       "The same for http listeners.",
       section="Sockets", uwsgi_ref="uWSGI --http-enable-proxy-protocol."),
    _s("listen", "int", 100,
       "Backlog of each listening socket: connections the kernel queues while every "
       "worker is busy. Linux silently caps it at net.core.somaxconn.",
       short="-l", metavar="N", section="Sockets", validator=_at_least(1),
       uwsgi_ref="uWSGI --listen (-l), same default."),
    _s("reuse-port", "bool", False,
       "Set SO_REUSEPORT on TCP listeners, so that several servers can bind the same "
       "address (the kernel spreads connections over them).",
       section="Sockets", uwsgi_ref="uWSGI --reuse-port."),
    _s("so-keepalive", "bool", False,
       "Enable TCP keep-alive probes (SO_KEEPALIVE) on connections, to notice peers "
       "that vanished without closing.",
       section="Sockets", uwsgi_ref="uWSGI --so-keepalive."),
    _s("tcp-nodelay", "bool", False,
       "Accepted, no effect: TCP_NODELAY is always set (responses are written whole).",
       section="Sockets", uwsgi_ref="uWSGI --tcp-nodelay (what uwsgipy always does)."),
    _s("thunder-lock", "bool", False,
       "Accepted, no effect: uwsgipy already wakes one worker per connection "
       "(EPOLLEXCLUSIVE, one accept per wake-up), which is what thunder-lock's "
       "serialised accept is for.",
       section="Sockets", uwsgi_ref="uWSGI --thunder-lock."),
    _s("offload-threads", "int", 0,
       "Accepted, no effect: responses a client is slow to take are parked and resumed "
       "by the worker's event loop, and static files (static-map) and file_wrapper bodies "
       "go out with sendfile from it without blocking, which is what uWSGI's offload "
       "threads are for.",
       aliases=("offload-thread",), metavar="N", section="Sockets", validator=_at_least(0),
       uwsgi_ref="uWSGI --offload-threads / --offload-thread (uWSGI's static-map needs them "
                 "not to block a worker on a slow client; uwsgipy's loop never blocks)."),
    _s("chmod-socket", "str", None,
       "Permissions of unix sockets, in octal (e.g. 660). Given without a value it "
       "means 666.",
       short="-C", aliases=("chmod",), metavar="MODE", section="Sockets",
       validator=_octal_mode, const="666",
       uwsgi_ref="uWSGI --chmod-socket / --chmod (-C), same bare-flag meaning."),
    _s("chown-socket", "str", None,
       "Owner of unix sockets, as USER or USER:GROUP (names or numbers).",
       metavar="USER[:GROUP]", section="Sockets", uwsgi_ref="uWSGI --chown-socket."),
    _s("vacuum", "bool", False,
       "Remove the unix socket files and the pidfile on exit.",
       section="Sockets", uwsgi_ref="uWSGI --vacuum."),
    # -- Application -------------------------------------------------------
    _s("wsgi-file", "str", None,
       "Load the WSGI application from a Python file; the object named by "
       "callable is used.",
       aliases=("file",), metavar="FILE", section="Application",
       uwsgi_ref="uWSGI --wsgi-file / --file."),
    _s("module", "str", None,
       "Import the WSGI application from a module: 'pkg.mod:name', or 'pkg.mod' to "
       "use the object named by callable. 'pkg.mod:make_app()' calls make_app with no "
       "arguments and serves what it returns. Given with wsgi-file, module is the "
       "application and the file is not run (one warning), as in uWSGI.",
       short="-w", aliases=("wsgi",), metavar="MODULE[:CALLABLE]", section="Application",
       validator=_module_spec,
       uwsgi_ref="uWSGI --module / --wsgi (-w), with its NAME() call and its precedence "
                 "over wsgi-file (uWSGI loads module first and skips the file: 'mountpoint "
                 "already configured')."),
    _s("callable", "str", "application",
       "Name of the WSGI callable looked up in wsgi-file, or in a module given "
       "without ':name'; with module, NAME() calls NAME and serves what it returns.",
       metavar="NAME", section="Application", validator=_identifier,
       uwsgi_ref="uWSGI --callable, same default."),
    _s("chdir", "str", None,
       "Change to DIR before loading the application.",
       metavar="DIR", section="Application", uwsgi_ref="uWSGI --chdir."),
    _s("pythonpath", "list", (),
       "Add DIR to sys.path before loading the application. Repeatable.",
       aliases=("python-path", "pp"), metavar="DIR", section="Application",
       uwsgi_ref="uWSGI --pythonpath / --python-path / --pp (no glob expansion)."),
    _s("virtualenv", "str", None,
       "Load the application from the virtualenv DIR: its site-packages (and what its "
       ".pth files add) come before every other site-packages directory on sys.path, "
       "sys.prefix is DIR, and VIRTUAL_ENV=DIR is set with DIR/bin first on PATH, for "
       "subprocesses. The virtualenv must be of the Python running uwsgipy: one of "
       "another version (or a directory without lib/pythonX.Y/site-packages) stops "
       "start-up with one line naming both versions; run the uwsgipy installed in "
       "that virtualenv instead.",
       short="-H", aliases=("venv", "home", "pyhome"), metavar="DIR", section="Application",
       uwsgi_ref="uWSGI --home / --virtualenv / --venv / --pyhome (-H). uWSGI starts its "
                 "interpreter from DIR (PYTHONHOME, or DIR/bin/python for a PEP 405 venv), "
                 "so the site-packages of the Python it was built with are absent; uwsgipy "
                 "keeps them after the virtualenv's (the virtualenv's copy of a package "
                 "wins). uWSGI does not set VIRTUAL_ENV or PATH."),
    _s("pyimport", "list", (),
       "Import the module MODULE before the application is loaded (after chdir and "
       "pythonpath; in the master before the fork, or in each worker with lazy-apps). "
       "A value containing '/' or ending in .py is a file, run as a module named after "
       "its path ('.' and '/' as '_', without .py). A module that fails to import is "
       "logged with its traceback and skipped, as uWSGI does. Repeatable.",
       aliases=("python-import",), metavar="MODULE", section="Application",
       uwsgi_ref="uWSGI --pyimport / --python-import: same order, naming and failure "
                 "handling; no sym://, http:// or data:// sources."),
    _s("wsgi-disable-file-wrapper", "bool", False,
       "Leave wsgi.file_wrapper out of the environ, so the app sends files itself.",
       section="Application", uwsgi_ref="uWSGI --wsgi-disable-file-wrapper."),
    _s("py-call-osafterfork", "bool", False,
       "A no-op by design: uwsgipy forks its workers with os.fork(), which already runs "
       "Python's after-fork handling (PyOS_AfterFork_Child), so signal handlers an app "
       "installs with the signal module work in every worker.",
       section="Application",
       uwsgi_ref="uWSGI --py-call-osafterfork, which makes uWSGI's C fork call "
                 "PyOS_AfterFork_Child so Python signal handlers run in the workers; "
                 "uwsgipy always does."),
    _s("env", "list", (),
       "Set the environment variable KEY to VALUE before loading the application. "
       "Repeatable.",
       metavar="KEY=VALUE", section="Application", validator=_key_value,
       uwsgi_ref="uWSGI --env."),
    _s("mount", "list", (),
       "Serve another application under the URL prefix PREFIX: `mount = /blog=blog/wsgi.py` "
       "(a Python file, its callable named by callable), `mount = /api=api.wsgi:app` (a "
       "module and callable; `:make_app()` calls a factory) or `mount = /api=api.wsgi` (the "
       "module's callable). Mounted apps are loaded after the main app, in order, the same "
       "way (in the master, or in each worker with lazy-apps); one that fails to load stops "
       "start-up with its traceback. With manage-script-name the app is chosen by the longest "
       "prefix of the path at a '/' boundary (/a serves /a, /a/ and /a/x, not /ab) and gets "
       "SCRIPT_NAME = PREFIX and PATH_INFO = the rest (PEP 3333); without it, by the "
       "SCRIPT_NAME the request carries (nginx's `uwsgi_param SCRIPT_NAME /api;`), which "
       "must equal PREFIX. Other requests go to the default app: the main app (wsgi-file or "
       "module), or, with none, the first mount, as in uWSGI; 404 when there is none "
       "(no-default-app). A trailing '/' of PREFIX is ignored; `mount = /=FILE` is the "
       "default app.",
       metavar="PREFIX=APP", section="Application", validator=_mount,
       uwsgi_ref="uWSGI --mount, same forms, also the segment-boundary match (uWSGI 2.0.31 "
                 "checks it too). Differences: `PREFIX=pkg.mod` (no ':') is mounted (uWSGI "
                 "logs 'mounting' and mounts nothing); a module that fails to import stops "
                 "start-up (uWSGI goes on without it; it stops for a file); paste .ini apps "
                 "are not supported; ASGI apps are not supported yet (called as WSGI)."),
    _s("manage-script-name", "bool", False,
       "Choose the mounted app by the longest mount prefix of PATH_INFO and split it: "
       "SCRIPT_NAME = the prefix, PATH_INFO = the rest (`/a/x` under `mount = /a=...` is "
       "SCRIPT_NAME /a, PATH_INFO /x; `/a` itself is PATH_INFO ''), so frameworks build "
       "prefixed URLs (Flask's url_for, Django's reverse). Over the uwsgi protocol this "
       "replaces the SCRIPT_NAME nginx sent. A path under no prefix keeps SCRIPT_NAME as it "
       "came ('' over HTTP).",
       section="Application",
       uwsgi_ref="uWSGI --manage-script-name, same split. uWSGI leaves SCRIPT_NAME out of "
                 "the environ for '/'; uwsgipy always sets it ('' there)."),
    _s("no-default-app", "bool", False,
       "Do not fall back to a default app: a request no mount takes (see mount) gets 404, "
       "and without wsgi-file or module the first mount is not the default app. A request "
       "with an empty SCRIPT_NAME still reaches the main app.",
       section="Application",
       uwsgi_ref="uWSGI --no-default-app; uWSGI answers 500 ('no python application "
                 "found') where uwsgipy answers 404."),
    # -- Requests and timeouts ----------------------------------------------
    _s("buffer-size", "int", 65535,
       "Largest request head accepted, in bytes: the uwsgi vars block behind nginx, "
       "or the request line plus headers on http-socket. Larger requests are "
       "rejected. nginx never sends a vars block above 65535 bytes, hence the "
       "maximum.",
       short="-b", metavar="BYTES", section="Requests and timeouts",
       validator=_between(1024, 65535),
       uwsgi_ref="uWSGI --buffer-size (-b). uWSGI defaults to 4096, which rejects requests "
                 "with large cookies; uwsgipy defaults to the protocol maximum."),
    _s("post-buffering", "int", 1048576,
       "Request bodies up to this many bytes are held in memory; larger ones are "
       "written to a temporary file before the application runs (so 0 sends every "
       "non-empty body to a file).",
       metavar="BYTES", section="Requests and timeouts", validator=_at_least(0),
       uwsgi_ref="uWSGI --post-buffering. uWSGI defaults to 0 (no buffering: the "
                 "application reads from the socket); uwsgipy always buffers."),
    _s("limit-post", "int", 0,
       "Refuse request bodies larger than this many bytes; 0 means no limit.",
       metavar="BYTES", section="Requests and timeouts", validator=_at_least(0),
       uwsgi_ref="uWSGI --limit-post."),
    _s("socket-timeout", "int", 4,
       "How long, in seconds, a client may stall while sending its request or "
       "receiving the response before the connection is dropped.",
       short="-z", metavar="SECONDS", section="Requests and timeouts",
       validator=_at_least(1), uwsgi_ref="uWSGI --socket-timeout (-z), same default."),
    _s("http-keepalive", "int", 5,
       "How long, in seconds, an idle HTTP/1.1 connection on http-socket or http is "
       "kept open waiting for the next request; 0 closes it after each response; 1 "
       "(or the bare option) means on, with the listener's stall timeout "
       "(socket-timeout, or http-timeout for http) as the idle timeout.",
       metavar="SECONDS", section="Requests and timeouts", validator=_at_least(0),
       const="1",
       uwsgi_ref="uWSGI --http-keepalive (its router's option, same meaning of 1 and "
                 "N > 1). uWSGI's router defaults to no keep-alive; uwsgipy to 5 s."),
    _s("header-timeout", "int", 30,
       "How long, in seconds, a client may take to send a whole request head (the "
       "request line and headers, or the uwsgi vars block), counted from its first "
       "byte (from accept for a new connection). Past it the client gets 408 and the "
       "connection is closed, however steadily it trickles bytes; 0 disables.",
       metavar="SECONDS", section="Requests and timeouts", validator=_at_least(0),
       uwsgi_ref="uwsgipy's own (uWSGI has none): nginx's client_header_timeout, "
                 "counted over the whole head. socket-timeout still bounds each stall."),
    _s("body-timeout", "int", 30,
       "How long, in seconds, a client may take to send a request body, plus one "
       "second for every body-min-rate bytes it has sent (so a large upload at a "
       "decent rate is never cut off, and a trickle is). Past it: 408 and close; "
       "0 disables.",
       metavar="SECONDS", section="Requests and timeouts", validator=_at_least(0),
       uwsgi_ref="uwsgipy's own (uWSGI has none): nginx's client_body_timeout with "
                 "Apache mod_reqtimeout's MinRate extension."),
    _s("body-min-rate", "int", 1024,
       "The rate, in bytes per second, that earns a body one more second beyond "
       "body-timeout; 0 means the whole body must arrive within body-timeout.",
       metavar="BYTES", section="Requests and timeouts", validator=_at_least(0),
       uwsgi_ref="uwsgipy's own: Apache mod_reqtimeout's MinRate."),
    _s("limit-request-line", "int", 8190,
       "Longest HTTP request line accepted, in bytes (method, target and version); "
       "longer gets 414. 0 leaves only buffer-size as the bound.",
       metavar="BYTES", section="Requests and timeouts", validator=_between(0, 65535),
       uwsgi_ref="gunicorn's --limit-request-line, same default (uWSGI has none; "
                 "nginx's large_client_header_buffers is 8k). http-socket only."),
    _s("limit-request-fields", "int", 100,
       "Most HTTP header fields accepted in one request; more gets 431.",
       metavar="N", section="Requests and timeouts", validator=_between(1, 32768),
       uwsgi_ref="gunicorn's --limit-request-fields, same default (uWSGI has none). "
                 "Behind nginx (socket) the packet may carry 64 vars more, for nginx's "
                 "own."),
    _s("limit-request-field-size", "int", 8190,
       "Longest HTTP header field line accepted, in bytes (name, colon and value); "
       "longer gets 431. 0 leaves only buffer-size as the bound.",
       metavar="BYTES", section="Requests and timeouts", validator=_between(0, 65535),
       uwsgi_ref="gunicorn's --limit-request-field_size, same default (uWSGI has none). "
                 "http-socket only."),
    _s("harakiri", "int", 0,
       "Kill and replace a worker whose current request has run longer than this "
       "many seconds; 0 disables.",
       short="-t", metavar="SECONDS", section="Requests and timeouts",
       validator=_at_least(0), uwsgi_ref="uWSGI --harakiri (-t)."),
    _s("harakiri-verbose", "bool", False,
       "On harakiri, also log what the worker was doing in the kernel: its current "
       "system call and wait channel (/proc/PID/syscall and /proc/PID/wchan, Linux).",
       section="Requests and timeouts",
       uwsgi_ref="uWSGI --harakiri-verbose (same two /proc files)."),
    # -- Static files -------------------------------------------------------
    _s("static-map", "list", (),
       "Serve files for URLs under PREFIX from DIR: `static-map = /static=/srv/app/static` "
       "serves /static/css/a.css from /srv/app/static/css/a.css (the prefix is removed). "
       "TARGET may be a file (`static-map = /favicon.ico=/srv/app/favicon.ico`). A relative "
       "target is relative to chdir (the directory the workers run in). A missing file, a "
       "directory without static-index, a FIFO or device fall through to the next map, then "
       "the app. Files are served by the C core without entering Python, on every listener "
       "(http-socket, http, socket behind nginx): GET and HEAD (other methods 405), ETag, "
       "Last-Modified, conditional requests (304, 412), a single Range (206, 416), "
       "Content-Type from the mime table, precompressed siblings (static-gzip-*), "
       "sendfile(2). Never a file outside DIR: '..' above it is refused (400), and a symlink "
       "out of it 403 unless static-safe names the target's directory. Repeatable; check-static roots are "
       "tried first, then the static-map lines in order, then static-map2 (uWSGI's order).",
       metavar="PREFIX=DIR", section="Static files", validator=_static_map,
       uwsgi_ref="uWSGI --static-map, served without Python; deliberate differences: the "
                 "prefix matches at a '/' boundary "
                 "(uWSGI's /static also takes /staticx); a symlink or '..' out of DIR is "
                 "403/400 (uWSGI logs a security error and calls the app); other methods on "
                 "an existing file are 405 (uWSGI calls the app); uWSGI has no ETag, "
                 "If-None-Match or If-Range, and honours Range only with honour-range."),
    _s("static-map2", "list", (),
       "As static-map, but the whole URL path is appended to DIR: `static-map2 = "
       "/static=/srv/app` serves /static/a.css from /srv/app/static/a.css.",
       metavar="PREFIX=DIR", section="Static files", validator=_static_map,
       uwsgi_ref="uWSGI --static-map2 (same differences as static-map)."),
    _s("check-static", "list", (),
       "Serve a file for any URL whose path names a file under DIR (`check-static = "
       "/srv/app/public` serves /robots.txt from /srv/app/public/robots.txt); other requests "
       "go to the app. Tried before static-map and static-map2, as in uWSGI. Repeatable.",
       aliases=("static-check",), metavar="DIR", section="Static files",
       validator=_not_empty,
       uwsgi_ref="uWSGI --check-static / --static-check (same differences as static-map)."),
    _s("static-index", "list", (),
       "For a URL that names a directory, serve the first of these files it holds "
       "(`static-index = index.html`); a directory without one goes to the app. Repeatable.",
       metavar="NAME", section="Static files", validator=_file_name,
       uwsgi_ref="uWSGI --static-index (also without a trailing '/': no redirect)."),
    _s("static-skip-ext", "list", (),
       "Never serve a file whose name ends with SUFFIX (`static-skip-ext = .php`): the "
       "request goes to the app. Repeatable.",
       metavar="SUFFIX", section="Static files", validator=_not_empty,
       uwsgi_ref="uWSGI --static-skip-ext (a plain suffix of the name, as uWSGI)."),
    _s("static-safe", "list", (),
       "Allow files whose real path is under DIR even when a symlink in a mapped directory "
       "leads there (otherwise 403). Repeatable.",
       metavar="DIR", section="Static files", validator=_not_empty,
       uwsgi_ref="uWSGI --static-safe (DIR is made absolute and symlink-free first)."),
    _s("static-expires", "list", (),
       "Send `Expires: now + SECONDS` and `Cache-Control: max-age=SECONDS` for static files "
       "whose resolved file name matches REGEX: `static-expires = /srv/app/static/.*\\.css$ "
       "86400`. REGEX is uWSGI's PCRE; uwsgipy runs it as a POSIX extended regular "
       "expression (\\d \\w \\s and (?:...) are converted; lookarounds, lazy quantifiers and "
       "backreferences are refused at start-up). The first matching expires rule wins, "
       "checked in uWSGI's order: static-expires, static-expires-path-info, "
       "static-expires-uri, static-expires-type, each before its -mtime form. Repeatable.",
       metavar="'REGEX SECONDS'", section="Static files", validator=_static_expires,
       uwsgi_ref="uWSGI --static-expires (PCRE builds only), as ERE; uWSGI sends one Expires per "
                 "matching option and no Cache-Control; uwsgipy one Expires (the first match) "
                 "and Cache-Control: max-age."),
    _s("static-expires-mtime", "list", (),
       "As static-expires, with `Expires: file mtime + SECONDS` (max-age counts from now to "
       "then, at least 0).",
       metavar="'REGEX SECONDS'", section="Static files", validator=_static_expires,
       uwsgi_ref="uWSGI --static-expires-mtime."),
    _s("static-expires-uri", "list", (),
       "As static-expires, the REGEX matched against REQUEST_URI (the query string "
       "included): `static-expires-uri = \\.[0-9a-f]{12}\\.(css|js)$ 31536000`.",
       metavar="'REGEX SECONDS'", section="Static files", validator=_static_expires,
       uwsgi_ref="uWSGI --static-expires-uri."),
    _s("static-expires-uri-mtime", "list", (),
       "As static-expires-uri, counting from the file's mtime.",
       metavar="'REGEX SECONDS'", section="Static files", validator=_static_expires,
       uwsgi_ref="uWSGI --static-expires-uri-mtime."),
    _s("static-expires-path-info", "list", (),
       "As static-expires, the REGEX matched against PATH_INFO (the whole decoded path, the "
       "map's prefix included).",
       metavar="'REGEX SECONDS'", section="Static files", validator=_static_expires,
       uwsgi_ref="uWSGI --static-expires-path-info."),
    _s("static-expires-path-info-mtime", "list", (),
       "As static-expires-path-info, counting from the file's mtime.",
       metavar="'REGEX SECONDS'", section="Static files", validator=_static_expires,
       uwsgi_ref="uWSGI --static-expires-path-info-mtime."),
    _s("static-expires-type", "list", (),
       "Expires and Cache-Control for static files of Content-Type TYPE (without "
       "parameters): `static-expires-type = text/css=86400`.",
       metavar="TYPE=SECONDS", section="Static files", validator=_static_expires_type,
       uwsgi_ref="uWSGI --static-expires-type, same TYPE=SECONDS syntax."),
    _s("static-expires-type-mtime", "list", (),
       "As static-expires-type, counting from the file's mtime.",
       metavar="TYPE=SECONDS", section="Static files", validator=_static_expires_type,
       uwsgi_ref="uWSGI --static-expires-type-mtime."),
    _s("static-gzip-all", "bool", False,
       "For every static file, serve FILE.br (Content-Encoding: br) or FILE.gz "
       "(Content-Encoding: gzip) when it exists and the client's Accept-Encoding allows it "
       "(br first); its 200, 206 and 304 responses, compressed or not, carry Vary: Accept-Encoding.",
       section="Static files",
       uwsgi_ref="uWSGI --static-gzip-all. uWSGI tests Accept-Encoding for the substrings "
                 "'br' and 'gzip', so 'gzip;q=0' still gets gzip; uwsgipy honours q=0. uWSGI "
                 "sends no Vary."),
    _s("static-gzip-dir", "list", (),
       "As static-gzip-all, for files whose resolved path starts with DIR (a plain prefix, as "
       "in uWSGI: write DIR/ for the directory only). Repeatable.",
       aliases=("static-gzip-prefix",), metavar="DIR", section="Static files",
       validator=_not_empty,
       uwsgi_ref="uWSGI --static-gzip-dir / --static-gzip-prefix (DIR is made absolute)."),
    _s("static-gzip-ext", "list", (),
       "As static-gzip-all, for files whose name ends with SUFFIX (`static-gzip-ext = .css`). "
       "Repeatable.",
       aliases=("static-gzip-suffix",), metavar="SUFFIX", section="Static files",
       validator=_not_empty,
       uwsgi_ref="uWSGI --static-gzip-ext / --static-gzip-suffix."),
    _s("static-gzip", "list", (),
       "As static-gzip-ext, given as uWSGI's regex on the file name; only the "
       "file-extension forms are supported (`\\.css$`, `.*\\.(css|js)$`), anything else is "
       "refused at start-up (use static-gzip-ext or static-gzip-dir).",
       metavar="REGEX", section="Static files", validator=_static_gzip,
       uwsgi_ref="uWSGI --static-gzip (PCRE builds), its extension-suffix forms only."),
    _s("mimefile", "list", (),
       "Read Content-Types for static files from FILE (mime.types format: `type ext ext`). "
       "Repeatable; the first entry for an extension wins. Default: /etc/mime.types. "
       "Extensions no file lists get Python's built-in mimetypes table, then "
       "application/octet-stream. Text types are sent with `; charset=utf-8`.",
       aliases=("mime-file",), metavar="FILE", section="Static files", validator=_not_empty,
       uwsgi_ref="uWSGI --mimefile / --mime-file, same default. uWSGI's given files replace "
                 "the table and unknown types get no Content-Type at all; uWSGI sends no "
                 "charset."),
    _s("honour-range", "bool", False,
       "Accepted, no effect: single Range requests on static files are always honoured "
       "(206, 416).",
       section="Static files", uwsgi_ref="uWSGI --honour-range (off by default there)."),
    # -- Processes ---------------------------------------------------------
    _s("master", "bool", False,
       "Run a master process that spawns, supervises and respawns the workers.",
       short="-M", section="Processes", uwsgi_ref="uWSGI --master (-M)."),
    _s("processes", "int", 1,
       "Number of worker processes.",
       short="-p", aliases=("workers",), metavar="N", section="Processes",
       validator=_at_least(1), uwsgi_ref="uWSGI --processes / --workers (-p)."),
    _s("threads", "int", 1,
       "App threads per worker process. Each worker has one event loop that accepts, "
       "reads whole requests and writes responses; with N > 1 it hands each complete "
       "request to a pool of N threads that run the app (a slow request holds one "
       "thread, never another connection), with 1 the loop thread runs the app itself. "
       "wsgi.multithread is true for N > 1. Not with gevent.",
       metavar="N", section="Processes", validator=_at_least(1),
       uwsgi_ref="uWSGI --threads; no --enable-threads needed. uWSGI's threads each accept "
                 "and serve their own connections; here the loop owns them all and the "
                 "threads only run the app, as in gunicorn's gthread worker."),
    _s("gevent", "int", 0,
       "Run the app in gevent greenlets, up to N requests at once per worker; 0 is off. "
       "gevent's hub drives the worker's event loop (which still accepts, reads whole "
       "requests and writes responses), and each complete request runs in a greenlet; "
       "requests beyond N wait for a free one. The app must not block without yielding "
       "to gevent: use gevent-monkey-patch (or gevent-early-monkey-patch), or gevent's "
       "own modules. Needs the gevent package (pip install gevent) and the epoll poller "
       "(Linux); not with threads > 1. wsgi.multithread is true.",
       metavar="N", section="Processes", validator=_at_least(0),
       uwsgi_ref="uWSGI --gevent (its gevent loop engine with N async cores). uWSGI also "
                 "raises socket-timeout to 30 s; uwsgipy does not, as its loop, not the "
                 "greenlet, reads the request and writes what the socket does not take at "
                 "once. uWSGI 2.0 crashes when threads is set too (segfault at the first "
                 "request); uwsgipy refuses it. DEVIATION: wsgi.multithread is true (other "
                 "greenlets run the app at the same time, as gunicorn's gevent worker says); "
                 "uWSGI says false. uWSGI needs N >= 2; 1 works here."),
    _s("gevent-monkey-patch", "bool", False,
       "With gevent: call gevent.monkey.patch_all() in each worker once the app is "
       "loaded, just before the worker starts serving, so the standard library's "
       "blocking calls (sockets, time.sleep, threading, subprocess, ...) yield to other "
       "greenlets. Modules the app imported before may keep unpatched references: "
       "gevent-early-monkey-patch patches before the app is loaded.",
       section="Processes",
       uwsgi_ref="uWSGI --gevent-monkey-patch, at the same point (uWSGI calls patch_all() "
                 "when its gevent loop starts in the worker, after the app is loaded). "
                 "Refused without gevent, where uWSGI ignores it."),
    _s("gevent-early-monkey-patch", "bool", False,
       "With gevent: call gevent.monkey.patch_all() once at start-up, before "
       "hook-pre-app, pyimport and the app are loaded: in the master (which the workers "
       "inherit it from), or in the only process without one. What gevent recommends: "
       "every module the app imports sees the patched standard library.",
       section="Processes",
       uwsgi_ref="uWSGI --gevent-early-monkey-patch, at the same point (its preinit_apps "
                 "hook, in the master before the apps are loaded, also with lazy-apps). "
                 "Refused without gevent, where uWSGI patches a process that runs no "
                 "greenlets."),
    # -- ASGI and WebSockets ---------------------------------------------------
    _s("asgi", "str", "auto",
       "Serve the app as an ASGI 3.0 app (HTTP and WebSocket scopes, lifespan) on an "
       "asyncio event loop in each worker. auto: ASGI when the loaded callable is an "
       "`async def` function (or a functools.partial of one) or an object whose `__call__` "
       "is `async def` (FastAPI, Starlette, Django's get_asgi_application()), else WSGI; "
       "true: ASGI whatever the callable looks like (a sync `__call__` that returns a "
       "coroutine, some middleware); false: WSGI. The C core still accepts, parses and "
       "writes; the app runs as one asyncio task per request or WebSocket. Not with "
       "gevent; threads do not apply (one warning line). See docs/asgi.md.",
       metavar="auto|true|false", section="ASGI and WebSockets", const="true",
       validator=_choice("auto", "true", "false"),
       uwsgi_ref="uwsgipy only: uWSGI has no ASGI (its asyncio loop engine runs WSGI apps "
                 "in greenlets). The detection is uvicorn's (an async def function, or an "
                 "object with an async def __call__); ASGI 2 classes are not served."),
    _s("loop", "str", "auto",
       "The asyncio event loop that runs an ASGI app: uvloop (uvloop.new_event_loop()), "
       "asyncio (the standard library's), or auto: uvloop when it can be imported, else "
       "asyncio. `loop = uvloop` without the uvloop package stops start-up with one line. "
       "No effect on a WSGI app.",
       metavar="auto|asyncio|uvloop", section="ASGI and WebSockets",
       validator=_choice("auto", "asyncio", "uvloop"),
       uwsgi_ref="uWSGI --loop names one of its loop engines (asyncio is one of those "
                 "names, with asyncio = N); here it picks the asyncio implementation for ASGI "
                 "apps, as uvicorn's --loop does. uWSGI's other engine names (gevent, "
                 "ugreen, ...) are refused: use gevent = N."),
    _s("lifespan", "str", "auto",
       "The ASGI lifespan protocol (asgiref spec, Lifespan 2.0), once per worker before it "
       "serves: lifespan.startup, then lifespan.shutdown after its last request. The "
       "`state` dict the app fills at startup is given to every request as a shallow copy "
       "(scope[\"state\"]). auto: an app that raises on the lifespan scope before receiving "
       "its first event does not support it (one info line, serving goes on); on: that "
       "is fatal; off: no lifespan scope. A startup that fails (lifespan.startup.failed, "
       "or an exception after the startup event) stops the worker with the app's message "
       "or traceback and exit code 4, as an app that fails to import: the master stops "
       "instead of respawning.",
       metavar="auto|on|off", section="ASGI and WebSockets",
       validator=_choice("auto", "on", "off"),
       uwsgi_ref="uwsgipy only (uWSGI has no ASGI); uvicorn's --lifespan, same values and "
                 "default."),
    _s("websockets-max-size", "int", 1024,
       "The largest WebSocket message the server takes from a client, in KiB (1024 KiB = "
       "1 MiB). A bigger one closes the connection with 1009 (message too big, RFC 6455 "
       "§7.4.1).",
       aliases=("websocket-max-size",), metavar="KIB", section="ASGI and WebSockets",
       validator=_at_least(1),
       uwsgi_ref="uWSGI --websockets-max-size / --websocket-max-size, same unit and "
                 "default. DEVIATION: uWSGI bounds each frame's payload (a fragmented message "
                 "is not bounded as a whole) and drops the connection without a close frame; "
                 "here the whole message is bounded and the client gets close 1009."),
    _s("websockets-ping-freq", "int", 30,
       "Seconds a WebSocket may stay idle (no frame from the client) before the server "
       "sends a ping. 0 sends none. Pings from the client are always answered by the C "
       "core.",
       aliases=("websocket-ping-freq",), metavar="SECONDS", section="ASGI and WebSockets",
       validator=_at_least(0),
       uwsgi_ref="uWSGI --websockets-ping-freq / --websocket-ping-freq, same default. "
                 "DEVIATION: uWSGI pings only while the app waits in uwsgi.websocket_recv(); "
                 "here the loop pings any idle WebSocket, whatever the app is doing."),
    _s("websockets-pong-tolerance", "int", 3,
       "Seconds the server waits for the pong after its ping; without one the WebSocket "
       "is closed and the app gets websocket.disconnect.",
       aliases=("websocket-pong-tolerance",), metavar="SECONDS",
       section="ASGI and WebSockets", validator=_at_least(1),
       uwsgi_ref="uWSGI --websockets-pong-tolerance / --websocket-pong-tolerance, same "
                 "default (uWSGI drops the connection without a close frame)."),
    _s("lazy-apps", "bool", False,
       "Load the application in each worker after fork, instead of once in the "
       "master before forking.",
       aliases=("lazy",), section="Processes",
       uwsgi_ref="uWSGI --lazy-apps; uWSGI's older --lazy is taken as lazy-apps."),
    _s("no-orphans", "bool", False,
       "Accepted, no effect: workers always stop when the master dies "
       "(PR_SET_PDEATHSIG on Linux).",
       section="Processes", uwsgi_ref="uWSGI --no-orphans (what uwsgipy always does)."),
    _s("reload-mercy", "int", 60,
       "On reload or shutdown, how many seconds the master waits for the workers "
       "to finish before killing them.",
       metavar="SECONDS", section="Processes", validator=_at_least(0),
       uwsgi_ref="uWSGI --reload-mercy."),
    _s("worker-reload-mercy", "int", 60,
       "How many seconds a single worker being recycled may take to finish before "
       "it is killed.",
       metavar="SECONDS", section="Processes", validator=_at_least(0),
       uwsgi_ref="uWSGI --worker-reload-mercy, same default."),
    _s("die-on-term", "bool", False,
       "Accepted, no effect: SIGTERM always stops uwsgipy.",
       section="Processes",
       uwsgi_ref="uWSGI --die-on-term (uWSGI 2.0 reloads on SIGTERM unless it is set)."),
    # -- Adaptive workers (cheaper) -------------------------------------------------
    _s("cheaper", "str", None,
       "Adaptive workers: run at least N workers and at most processes, adding workers "
       "when requests are many and retiring idle ones (gracefully) when few, as "
       "cheaper-algo decides once a second. Must be lower than processes; 0 disables. "
       "Read as C's atoi, as uWSGI does: `cheaper = true` is 0, off (with a warning).",
       metavar="N", section="Adaptive workers (cheaper)",
       uwsgi_ref="uWSGI --cheaper (the same check: lower than processes)."),
    _s("idle", "int", 0,
       "After N seconds without a request, stop every worker (\"cheap mode\"); the next "
       "connection waits in the listen queue while the master forks them again. 0 "
       "disables.",
       metavar="SECONDS", section="Adaptive workers (cheaper)", validator=_at_least(0),
       uwsgi_ref="uWSGI --idle (the same check: no worker busy and no request counted "
                 "for N s)."),
    _s("die-on-idle", "bool", False,
       "With idle: stop uwsgipy (exit 0) instead of going cheap.",
       section="Adaptive workers (cheaper)", uwsgi_ref="uWSGI --die-on-idle."),
    _s("cheaper-initial", "int", 0,
       "Workers started with cheaper (default: cheaper); kept between cheaper and "
       "processes (a value outside is replaced, with a warning, as uWSGI does).",
       metavar="N", section="Adaptive workers (cheaper)", validator=_at_least(0),
       uwsgi_ref="uWSGI --cheaper-initial."),
    _s("cheaper-step", "int", 1,
       "Workers added at once when the algorithm asks for more.",
       metavar="N", section="Adaptive workers (cheaper)", validator=_at_least(1),
       uwsgi_ref="uWSGI --cheaper-step."),
    _s("cheaper-algo", "str", "spare",
       "spare (workers all busy for cheaper-overload seconds: add; idle: retire), "
       "spare2 (keep cheaper idle workers), backlog (listen queue above "
       "cheaper-overload: add), busyness (share of time in requests), manual. An unknown "
       "name falls back to spare with a warning, as in uWSGI. See docs/operations.md.",
       metavar="NAME", section="Adaptive workers (cheaper)",
       uwsgi_ref="uWSGI --cheaper-algo (spare, backlog, manual, and the busyness plugin; "
                 "spare2 is uWSGI 2.1's, which 2.0 lacks)."),
    _s("cheaper-overload", "int", 3,
       "spare, spare2 and busyness: the number of one-second cycles (the busyness "
       "window); backlog: the queued connections that mean overload.",
       metavar="N", section="Adaptive workers (cheaper)", validator=_at_least(1),
       uwsgi_ref="uWSGI --cheaper-overload, same default."),
    _s("cheaper-busyness-max", "int", 50,
       "busyness: above this average percent of time in requests, add workers.",
       metavar="PERCENT", section="Adaptive workers (cheaper)", validator=_between(0, 100),
       uwsgi_ref="uWSGI --cheaper-busyness-max, same default."),
    _s("cheaper-busyness-min", "int", 25,
       "busyness: below this average percent, a worker may be retired.",
       metavar="PERCENT", section="Adaptive workers (cheaper)", validator=_between(0, 100),
       uwsgi_ref="uWSGI --cheaper-busyness-min, same default."),
    _s("cheaper-busyness-multiplier", "int", 10,
       "busyness: workers must be idle for cheaper-overload x this many seconds before "
       "one is retired.",
       metavar="N", section="Adaptive workers (cheaper)", validator=_at_least(1),
       uwsgi_ref="uWSGI --cheaper-busyness-multiplier, same default."),
    _s("cheaper-busyness-penalty", "int", 2,
       "busyness: added to the multiplier when a worker retired is needed again soon.",
       metavar="N", section="Adaptive workers (cheaper)", validator=_at_least(0),
       uwsgi_ref="uWSGI --cheaper-busyness-penalty, same default."),
    _s("cheaper-busyness-verbose", "bool", False,
       "busyness: log each cycle's measure and decision.",
       section="Adaptive workers (cheaper)", uwsgi_ref="uWSGI --cheaper-busyness-verbose."),
    _s("cheaper-busyness-backlog-alert", "int", 33,
       "busyness: more connections than this queued in the listeners adds emergency "
       "workers at once.",
       metavar="N", section="Adaptive workers (cheaper)", validator=_at_least(0),
       uwsgi_ref="uWSGI --cheaper-busyness-backlog-alert, same default."),
    _s("cheaper-busyness-backlog-multiplier", "int", 3,
       "busyness: the multiplier used while emergency workers run.",
       metavar="N", section="Adaptive workers (cheaper)", validator=_at_least(1),
       uwsgi_ref="uWSGI --cheaper-busyness-backlog-multiplier, same default."),
    _s("cheaper-busyness-backlog-step", "int", 1,
       "busyness: emergency workers added at once.",
       metavar="N", section="Adaptive workers (cheaper)", validator=_at_least(1),
       uwsgi_ref="uWSGI --cheaper-busyness-backlog-step, same default."),
    _s("cheaper-busyness-backlog-nonzero", "int", 60,
       "busyness: a backlog above zero for this many seconds adds emergency workers.",
       metavar="SECONDS", section="Adaptive workers (cheaper)", validator=_at_least(1),
       uwsgi_ref="uWSGI --cheaper-busyness-backlog-nonzero, same default."),
    # -- Attached daemons --------------------------------------------------------------
    _s("attach-daemon", "list", (),
       "Run COMMAND (with /bin/sh -c) beside the workers and supervise it: respawned when "
       "it exits (with uWSGI's back-off when it dies within 3 s), stopped with the master "
       "(SIGTERM, then SIGKILL after reload-mercy) and restarted around a graceful "
       "reload; its output goes to uwsgipy's log. It must stay in the foreground (e.g. "
       "`celery -A proj worker`). Repeatable. See docs/operations.md.",
       metavar="COMMAND", section="Attached daemons", validator=_daemon_validator("attach-daemon"),
       uwsgi_ref="uWSGI --attach-daemon (same respawn throttle and stop sequence)."),
    _s("attach-control-daemon", "list", (),
       "As attach-daemon; when COMMAND exits, the master stops gracefully.",
       metavar="COMMAND", section="Attached daemons",
       validator=_daemon_validator("attach-control-daemon"),
       uwsgi_ref="uWSGI --attach-control-daemon."),
    _s("smart-attach-daemon", "list", (),
       "PIDFILE[,FREQ] COMMAND: COMMAND daemonizes itself and writes PIDFILE; the master "
       "adopts a live pid found there, checks it every second and respawns COMMAND when "
       "it is gone (after FREQ checks, default 10, for a start that wrote no pid). Left "
       "running when the master stops or reloads, as in uWSGI.",
       metavar="PIDFILE COMMAND", section="Attached daemons",
       validator=_daemon_validator("smart-attach-daemon"),
       uwsgi_ref="uWSGI --smart-attach-daemon."),
    _s("smart-attach-daemon2", "list", (),
       "As smart-attach-daemon for a COMMAND that stays in the foreground: the master "
       "daemonizes it and writes PIDFILE.",
       metavar="PIDFILE COMMAND", section="Attached daemons",
       validator=_daemon_validator("smart-attach-daemon2"),
       uwsgi_ref="uWSGI --smart-attach-daemon2."),
    _s("attach-daemon2", "list", (),
       "uWSGI's key=value form, comma separated: cmd (or command, exec; required), "
       "pidfile, freq, daemonize, control, stopsignal, reloadsignal (numbers or names), "
       "touch (files, ';' separated: touching one restarts the daemon), uid, gid, chdir, "
       "stdin, max_throttle, notifypid.",
       metavar="KEY=VALUE,...", section="Attached daemons", validator=_daemon_validator("attach-daemon2"),
       uwsgi_ref="uWSGI --attach-daemon2 (no legion or ns_pid keys)."),
    # -- Worker recycling and reloading -------------------------------------
    _s("max-requests", "int", 0,
       "Recycle a worker after it has served this many requests; 0 disables.",
       short="-R", metavar="N", section="Worker recycling and reloading",
       validator=_at_least(0), uwsgi_ref="uWSGI --max-requests (-R)."),
    _s("max-requests-delta", "int", 0,
       "Add worker id x N to max-requests for each worker, so the workers do not "
       "all recycle at the same moment.",
       metavar="N", section="Worker recycling and reloading", validator=_at_least(0),
       uwsgi_ref="uWSGI --max-requests-delta."),
    _s("reload-on-rss", "int", 0,
       "Recycle a worker once its resident memory exceeds this many megabytes after "
       "a request; 0 disables.",
       metavar="MB", section="Worker recycling and reloading", validator=_at_least(0),
       uwsgi_ref="uWSGI --reload-on-rss."),
    _s("max-worker-lifetime", "int", 0,
       "Recycle a worker after it has run this many seconds; 0 disables.",
       metavar="SECONDS", section="Worker recycling and reloading", validator=_at_least(0),
       uwsgi_ref="uWSGI --max-worker-lifetime."),
    _s("max-worker-lifetime-delta", "int", 0,
       "Add (worker id - 1) x N seconds to max-worker-lifetime for each worker, so the "
       "workers do not all recycle at the same moment.",
       metavar="N", section="Worker recycling and reloading", validator=_at_least(0),
       uwsgi_ref="uWSGI --max-worker-lifetime-delta (the same (id - 1) x N)."),
    _s("min-worker-lifetime", "int", 10,
       "A worker younger than this many seconds is not recycled for max-requests, "
       "reload-on-rss or reload-on-as; must be lower than max-worker-lifetime when both "
       "are given.",
       metavar="SECONDS", section="Worker recycling and reloading", validator=_at_least(0),
       uwsgi_ref="uWSGI --min-worker-lifetime, same default (10), same three limits."),
    _s("reload-on-as", "int", 0,
       "Recycle a worker gracefully (it finishes its requests) once its address space "
       "(virtual size) reaches this many megabytes; checked by the master every second; "
       "0 disables.",
       metavar="MB", section="Worker recycling and reloading", validator=_at_least(0),
       uwsgi_ref="uWSGI --reload-on-as (uWSGI's worker checks after each request; here "
                 "the master checks every second and retires it the same graceful way)."),
    _s("evil-reload-on-rss", "int", 0,
       "Kill (SIGKILL) and replace a worker whose resident memory reaches this many "
       "megabytes, even in the middle of a request; checked by the master every second; "
       "0 disables.",
       metavar="MB", section="Worker recycling and reloading", validator=_at_least(0),
       uwsgi_ref="uWSGI --evil-reload-on-rss (its master also sends SIGKILL)."),
    _s("limit-as", "int", 0,
       "Limit the address space (RLIMIT_AS) of the master and the workers to this many "
       "megabytes: an allocation past it fails with MemoryError; 0 leaves it unlimited.",
       metavar="MB", section="Worker recycling and reloading", validator=_at_least(0),
       uwsgi_ref="uWSGI --limit-as (setrlimit RLIMIT_AS at start-up, soft and hard)."),
    _s("touch-workers-reload", "list", (),
       "When FILE's modification time changes, replace the workers only (the master "
       "stays): each old worker finishes its requests while a new one serves. Without "
       "lazy-apps the new workers are forked from the master's copy of the app. "
       "Repeatable.",
       metavar="FILE", section="Worker recycling and reloading",
       uwsgi_ref="uWSGI --touch-workers-reload."),
    _s("touch-chain-reload", "list", (),
       "When FILE's modification time changes, replace the workers one at a time: the "
       "next old worker is retired only once the previous replacement serves. Best with "
       "lazy-apps (each new worker loads the code afresh). Repeatable.",
       metavar="FILE", section="Worker recycling and reloading",
       uwsgi_ref="uWSGI --touch-chain-reload."),
    _s("touch-reload", "list", (),
       "Gracefully reload the workers when FILE's modification time changes. "
       "Repeatable.",
       metavar="FILE", section="Worker recycling and reloading",
       uwsgi_ref="uWSGI --touch-reload."),
    _s("py-autoreload", "int", 0,
       "Development aid: every N seconds, check the loaded Python modules and reload "
       "when one has changed; 0 disables.",
       aliases=("python-autoreload",), metavar="SECONDS",
       section="Worker recycling and reloading", validator=_at_least(0),
       uwsgi_ref="uWSGI --py-autoreload / --python-autoreload."),
    # -- Logging -----------------------------------------------------------
    _s("logto", "str", None,
       "Write the log to FILE instead of stderr.",
       metavar="FILE", section="Logging", uwsgi_ref="uWSGI --logto (files only)."),
    _s("disable-logging", "bool", False,
       "Do not log requests; errors are still logged.",
       short="-L", section="Logging", uwsgi_ref="uWSGI --disable-logging (-L)."),
    _s("log-format", "str", None,
       "Format of request log lines, with uWSGI's %(var) variables such as "
       "%(addr), %(method), %(uri), %(status), %(msecs). In ini files, %(var) "
       "names that are not options or placeholders are left for the logger.",
       aliases=("logformat",), metavar="FORMAT", section="Logging",
       uwsgi_ref="uWSGI --log-format / --logformat."),
    _s("log-x-forwarded-for", "bool", False,
       "Log the client address from X-Forwarded-For instead of the peer address.",
       section="Logging", uwsgi_ref="uWSGI --log-x-forwarded-for."),
    _s("log-4xx", "bool", False,
       "Log requests answered with a 4xx status even when disable-logging is set.",
       section="Logging", uwsgi_ref="uWSGI --log-4xx."),
    _s("log-5xx", "bool", False,
       "Log requests answered with a 5xx status even when disable-logging is set.",
       section="Logging", uwsgi_ref="uWSGI --log-5xx."),
    _s("logger", "list", (),
       "Send the log to a logger instead of stderr / logto: file:PATH (or "
       "file:logfile=PATH,maxsize=BYTES,backupname=NAME), fd:N, stdio (stderr, or the "
       "logto file) or syslog[:IDENT[,FACILITY]] (IDENT default uwsgi, FACILITY default "
       "daemon, each line at LOG_INFO on /dev/log). Repeatable: every line goes to every "
       "logger. A first word and a space name the logger (`logger = app file:/x`). With a "
       "logger the logto file receives nothing, as in uWSGI. Lines pass through the log "
       "pipe the master reads (see log-master).",
       metavar="[NAME ]KIND[:ARG]", section="Logging", validator=_logger_spec,
       uwsgi_ref="uWSGI --logger with its file, fd, stdio and syslog plugins; other "
                 "logger plugins (socket, zeromq, redis…) are refused by name."),
    _s("req-logger", "list", (),
       "Send the request (access) log lines to these loggers (same forms as logger); "
       "everything else goes where logger or logto say.",
       aliases=("logger-req",), metavar="[NAME ]KIND[:ARG]", section="Logging",
       validator=_logger_spec, uwsgi_ref="uWSGI --req-logger / --logger-req."),
    _s("log-master", "bool", False,
       "Workers' output and log lines go through a pipe that a thread of the master "
       "reads and writes to the log (implied by logger, req-logger and log-maxsize). "
       "Without it each process appends to the log itself (whole lines, O_APPEND), "
       "which is equally safe for a plain file.",
       section="Logging", uwsgi_ref="uWSGI --log-master."),
    _s("log-date", "str", None,
       "Prefix uwsgipy's own log lines with the date: bare (or true) is uWSGI's "
       "`Tue Dec  1 22:43:24 2026 - `, any other value a strftime format followed by "
       "` - `. Request lines and the app's output are not prefixed, as in uWSGI. In an "
       "ini file write %%Y, %%d…: %Y, %d… are uWSGI's magic variables there.",
       aliases=("logdate",), metavar="[FORMAT]", const="true", section="Logging",
       uwsgi_ref="uWSGI --log-date / --logdate, byte for byte."),
    _s("log-maxsize", "int", 0,
       "Rotate the logto file when it grows past BYTES: it is renamed to "
       "log-backupname (or FILE.<unix time>) and a new one started, between two whole "
       "lines (the master's log pipe writes the file; implies log-master), right after "
       "the write that passes BYTES (uWSGI checks once per master cycle, so its files "
       "run over). 0: never.",
       metavar="BYTES", section="Logging", validator=_at_least(0),
       uwsgi_ref="uWSGI --log-maxsize, same message and backup names."),
    _s("log-backupname", "str", None,
       "Name of the rotated log file (log-maxsize); each rotation replaces it.",
       metavar="FILE", section="Logging", uwsgi_ref="uWSGI --log-backupname."),
    _s("log-reopen", "bool", False,
       "No-op by design: uwsgipy reopens the logto file at every start, graceful "
       "reloads included (uWSGI keeps it open across reloads unless log-reopen).",
       section="Logging", uwsgi_ref="uWSGI --log-reopen (always on in uwsgipy)."),
    _s("logfile-chown", "bool", False,
       "Give the logto file to uid/gid (before privileges are dropped), so a reopen "
       "or rotation as that user works. Nothing without uid or gid.",
       section="Logging", uwsgi_ref="uWSGI --logfile-chown (the logto file only)."),
    _s("log-slow", "str", None,
       "With disable-logging, still log requests that took at least MS milliseconds. "
       "Read as C's atoi, as uWSGI does: `log-slow = true` is 0, off (with a warning).",
       metavar="MS", section="Logging",
       uwsgi_ref="uWSGI --log-slow (like uWSGI, it matters only with disable-logging)."),
    _s("log-route", "list", (),
       "`NAME REGEXP`: log lines matching REGEXP go to the logger named NAME "
       "(`logger = NAME KIND:ARG`) instead of the unnamed loggers. Named loggers get "
       "only routed lines, as in uWSGI; matched per line (uWSGI matches each read).",
       metavar="NAME REGEXP", section="Logging", validator=_log_route_spec,
       uwsgi_ref="uWSGI --log-route (Python re instead of PCRE)."),
    _s("log-encoder", "list", (),
       "Encode uwsgipy's own log lines (not the app's output, nor request lines): "
       "`json` writes each as one JSON object {\"time\", \"level\", \"role\", "
       "\"msg\"}; `json TEMPLATE` is uWSGI's form, TEMPLATE with ${msg} (the line, "
       "JSON-escaped), ${msgnl}, ${unix}, ${micros}, ${millis}, ${strftime:FORMAT}; "
       "`format TEMPLATE` the same unescaped; `nl` is accepted (lines end in a newline "
       "anyway). Other encoders (gzip, compress, prefix, suffix) and uWSGI's "
       "`ENCODER:LOGGER` routing are not applied, with a warning.",
       metavar="ENCODER", section="Logging", validator=_log_encoder,
       uwsgi_ref="uWSGI --log-encoder (json, format and nl)."),
    _s("log-req-encoder", "list", (),
       "`json`: one JSON object per request line, written by the C core: the "
       "log-format variables as typed fields, or without log-format the fields time, "
       "addr, method, uri, proto, status, size, msecs, micros, worker, pid, "
       "request_id (with request-id), host, uagent, referer (when sent); extra "
       "fields from log-json-field. Strings are escaped per RFC 8259, invalid UTF-8 "
       "as U+FFFD. Without `json`, uWSGI's `format TEMPLATE` / `json TEMPLATE` "
       "(${msg}: the plain or log-format line, escaped by json; ${msgnl}, ${unix}, "
       "${micros}, ${millis}, ${strftime:FORMAT}) wraps each request line; one "
       "template, and `nl` is accepted (lines end in a newline anyway).",
       metavar="ENCODER", section="Logging", validator=_log_encoder,
       uwsgi_ref="uWSGI --log-req-encoder (json, format and nl; bare json is uwsgipy's "
                 "structured encoder)."),
    _s("log-json-field", "list", (),
       "`KEY=VALUE`: a constant string field added to every JSON request line (with "
       "log-req-encoder = json) and JSON server line (log-encoder = json), e.g. "
       "`service=shop`. Repeatable; 4 KiB in all.",
       metavar="KEY=VALUE", section="Logging", validator=_log_json_field,
       uwsgi_ref="uwsgipy's own (uWSGI puts constant fields in its json encoder's "
                 "template)."),
    _s("request-id", "bool", False,
       "Give every request an id: the incoming request-id-header when it is sane "
       "(1-128 visible ASCII bytes), else 32 new random hex digits. It is "
       "environ['uwsgipy.request_id'] (the header stays in the environ as received, "
       "e.g. HTTP_X_REQUEST_ID), %(request_id) in log-format, the request_id field "
       "of JSON lines, and a response header unless the app sets one. Off by default, "
       "as uWSGI: on, every response gains a header.",
       section="Logging",
       uwsgi_ref="uwsgipy's own (uWSGI logs %(var.HTTP_X_REQUEST_ID) only)."),
    _s("request-id-header", "str", "X-Request-ID",
       "The header request-id reads and sends (nginx's $request_id is usually passed "
       "as X-Request-ID).",
       metavar="NAME", section="Logging", validator=_header_name,
       uwsgi_ref="uwsgipy's own."),
    _s("log-req-route", "list", (),
       "Like log-route, for request lines and the req-logger names.",
       metavar="NAME REGEXP", section="Logging", validator=_log_route_spec,
       uwsgi_ref="uWSGI --log-req-route."),
    _s("log-zero", "bool", False,
       "With disable-logging, still log responses without a body (0 bytes sent).",
       section="Logging", uwsgi_ref="uWSGI --log-zero (only with disable-logging)."),
    _s("log-micros", "bool", False,
       "The default request line gives the time in whole microseconds (`1234us`) "
       "instead of milliseconds with 3 decimals.",
       section="Logging", uwsgi_ref="uWSGI --log-micros (uwsgipy's default line differs "
                                     "from uWSGI's)."),
    _s("route", "list", (),
       "A route on PATH_INFO: `REGEXP ACTION:ARG`, e.g. `route = ^/health donotlog:`. "
       "Actions: donotlog: (keep the request out of the access log), log:TEXT (log a "
       "line; $1..$9 groups, ${VAR} environ variables), last: / continue: (stop "
       "routing), break:STATUS (answer STATUS, e.g. 403 Forbidden, without calling the "
       "app). Other actions are refused by name. Routes run only when configured (no "
       "cost otherwise).",
       metavar="REGEXP ACTION:ARG", section="Logging", validator=_route_spec,
       uwsgi_ref="uWSGI --route (internal routing): the logging actions and break; "
                 "Python re instead of PCRE; a bare break: (no response) is refused."),
    _s("route-uri", "list", (),
       "Like route, matched against REQUEST_URI (path and query string); run after "
       "the route ones.",
       metavar="REGEXP ACTION:ARG", section="Logging", validator=_route_spec,
       uwsgi_ref="uWSGI --route-uri, logging actions only."),
    # -- Privileges and daemon -----------------------------------------------
    _s("pidfile", "str", None,
       "Write the pid of the master (or of the single process) to FILE, before "
       "dropping privileges.",
       metavar="FILE", section="Privileges and daemon", uwsgi_ref="uWSGI --pidfile."),
    _s("uid", "str", None,
       "Switch to this user (name or number) once the sockets are bound and chowned "
       "and the pidfile is written, before the app is loaded, with or without master. "
       "Without gid, also to the user's primary group and supplementary groups "
       "(initgroups, as nginx does).",
       metavar="USER", section="Privileges and daemon",
       uwsgi_ref="uWSGI --uid. Deliberate difference: uWSGI with uid alone keeps gid 0 "
                 "(root), which leaves the process root's group rights."),
    _s("gid", "str", None,
       "Switch to this group (name or number). With uid, the user's supplementary "
       "groups are set too (initgroups); without uid, none (as uWSGI).",
       metavar="GROUP", section="Privileges and daemon", uwsgi_ref="uWSGI --gid."),
    _s("daemonize", "str", None,
       "Detach from the terminal and write the log to LOGFILE.",
       short="-d", metavar="LOGFILE", section="Privileges and daemon",
       uwsgi_ref="uWSGI --daemonize (-d)."),
    _s("procname-prefix", "str", None,
       "Prefix the process titles shown by ps with PREFIX.",
       metavar="PREFIX", section="Privileges and daemon",
       uwsgi_ref="uWSGI --procname-prefix. DEVIATION: alone it prefixes uwsgipy's own "
                 "titles (\"PREFIXuwsgipy master\"); uWSGI's titles (\"uWSGI master\") "
                 "come with auto-procname, procname or procname-master."),
    _s("procname-prefix-spaced", "str", None,
       "As procname-prefix, with a space after PREFIX.",
       metavar="PREFIX", section="Privileges and daemon",
       uwsgi_ref="uWSGI --procname-prefix-spaced."),
    _s("auto-procname", "bool", False,
       "Give the processes uWSGI's titles: \"uWSGI master\" and \"uWSGI worker N\" "
       "(after procname-prefix), so scripts that look for them find them.",
       section="Privileges and daemon", uwsgi_ref="uWSGI --auto-procname, same titles."),
    _s("procname", "str", None,
       "Title of every process (master and workers), after procname-prefix; implies "
       "auto-procname.",
       metavar="NAME", section="Privileges and daemon",
       uwsgi_ref="uWSGI --procname (workers and master alike, as there)."),
    _s("procname-master", "str", None,
       "Title of the master process (before procname), after procname-prefix; implies "
       "auto-procname.",
       metavar="NAME", section="Privileges and daemon", uwsgi_ref="uWSGI --procname-master."),
    _s("umask", "str", None,
       "Set the process umask (octal, e.g. 022) before the sockets are bound and any file "
       "is written; workers and attached daemons inherit it.",
       metavar="MODE", section="Privileges and daemon", validator=_umask,
       uwsgi_ref="uWSGI --umask (applied while the options are read, before binding)."),
    _s("max-fd", "int", 0,
       "Set the open files limit (RLIMIT_NOFILE, soft and hard) to N at start-up. Raising "
       "the hard limit needs root; if it cannot be set, one warning line and the soft "
       "limit goes as high as the hard one allows. 0 keeps the inherited limit.",
       metavar="N", section="Privileges and daemon", validator=_at_least(0),
       uwsgi_ref="uWSGI --max-fd (uWSGI also logs the failure and goes on)."),
    _s("master-fifo", "list", (),
       "Create the named pipe FILE (mode 0600) and obey uWSGI's one-letter commands "
       "written to it: r R (reload), q Q (stop), w W (reload the workers), c (chain "
       "reload), C (go cheap), + - (workers), l L (logs), s (status), f, P, and 0-9 to "
       "switch to the Nth master-fifo. See docs/operations.md. Repeatable.",
       metavar="FILE", section="Processes",
       uwsgi_ref="uWSGI --master-fifo (the same letters; f is uwsgipy's graceful reload; "
                 "p, S, B, E are not supported)."),
    _s("hook-pre-app", "list", (),
       "`exec:COMMAND` runs COMMAND (/bin/sh -c, in chdir) before the app is loaded: in "
       "the master, or in each worker with lazy-apps; a non-zero exit stops start-up as "
       "an app that cannot load. `safeexec:COMMAND` only logs a failure. Other actions "
       "are refused. Repeatable; e.g. `hook-pre-app = exec:./manage.py migrate`.",
       metavar="ACTION:ARG", section="Application", validator=_pre_app_hook,
       uwsgi_ref="uWSGI --hook-pre-app (the exec and safeexec actions)."),
    _s("exec-pre-app", "list", (),
       "As `hook-pre-app = exec:COMMAND`.",
       metavar="COMMAND", section="Application", uwsgi_ref="uWSGI --exec-pre-app."),
    _s("hook-master-start", "list", (),
       "Accepted in exactly one form, `unix_signal:15 gracefully_kill_them_all`, which "
       "uWSGI 2.0 deployments use to make SIGTERM a graceful stop: it is uwsgipy's "
       "SIGTERM already. Any other hook is refused.",
       metavar="ACTION", section="Processes", validator=_hook_master_start,
       uwsgi_ref="uWSGI --hook-master-start (only this action)."),
    _s("memory-report", "bool", False,
       "Accepted with one warning at start-up: the per-request memory line of uWSGI "
       "is not written (the stats server shows each worker's requests).",
       short="-m", section="Logging", uwsgi_ref="uWSGI --memory-report (-m)."),
    _s("liveness-path", "str", None,
       "Answer GET/HEAD of exactly PATH (e.g. /healthz) with 200 \"ok\" from the C core, "
       "without calling the app, on every listener: a liveness probe that succeeds while the "
       "worker's loop runs, even when every app thread is busy (with threads = 2 or more; "
       "with one thread the app runs on the loop's thread, and a probe waits for the "
       "request in progress). Not logged, not counted in "
       "the request stats. The path is compared as sent (no query, no percent-decoding).",
       metavar="PATH", section="Stats", validator=_probe_path,
       uwsgi_ref="uwsgipy only (uWSGI has no built-in probe; it is usually routed to the app)."),
    _s("readiness-path", "str", None,
       "Answer GET/HEAD of exactly PATH (e.g. /readyz) from the C core: 200 \"ok\" when the "
       "app is loaded and the worker is not stopping, else 503 (\"draining\", or "
       "\"overloaded\" with readiness-max-queue). A graceful stop (SIGTERM) turns it to 503 "
       "first; with readiness-drain the listeners stay open meanwhile, so a load balancer "
       "takes the server out before connections are refused. Not logged, not counted.",
       metavar="PATH", section="Stats", validator=_probe_path,
       uwsgi_ref="uwsgipy only."),
    _s("readiness-max-queue", "int", 0,
       "readiness-path answers 503 \"overloaded\" while N or more requests wait: for an app "
       "thread of the worker answering (threads = 2 or more: its loop accepts while the "
       "threads are busy), or in a TCP listener's accept queue (Linux, TCP_INFO); 0: no "
       "such check.",
       metavar="N", section="Stats", validator=_at_least(0), uwsgi_ref="uwsgipy only."),
    _s("readiness-drain", "int", 0,
       "On a graceful stop (SIGTERM), answer readiness-path with 503 for SECONDS while still "
       "serving and accepting, then stop as usual: the time a load balancer needs to see "
       "the probe fail (Kubernetes: periodSeconds x failureThreshold). The drain counts "
       "toward the master's mercy (worker-reload-mercy, reload-mercy). A second SIGTERM "
       "ends it at once. 0: no drain.",
       metavar="SECONDS", section="Stats", validator=_at_least(0), uwsgi_ref="uwsgipy only."),
    # -- Stats -------------------------------------------------------------
    _s("stats", "str", None,
       "Serve a JSON document of server and worker statistics on ADDR (HOST:PORT or "
       "a unix socket path).",
       aliases=("stats-server",), metavar="ADDR", section="Stats", validator=_address,
       uwsgi_ref="uWSGI --stats / --stats-server."),
    _s("stats-http", "bool", False,
       "Wrap the stats document in an HTTP response, so it can be fetched with curl.",
       section="Stats", uwsgi_ref="uWSGI --stats-http."),
    _s("metrics-socket", "str", None,
       "Serve Prometheus metrics over HTTP on ADDR (HOST:PORT or a unix socket path), "
       "answered by the master from the scoreboard, on every path: the text format "
       "0.0.4, or OpenMetrics 1.0.0 when the scraper's Accept asks for it. With "
       "`stats-http` the stats server also answers GET /metrics. Request durations "
       "are a histogram with buckets 5 ms, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5 "
       "and 10 s; the metric list is in uwsgipy/metrics.py.",
       metavar="ADDR", section="Stats", validator=_address,
       uwsgi_ref="uwsgipy's own (uWSGI has none: its stats are JSON, which "
                 "uwsgi_exporter converts)."),
    # -- uWSGI compatibility -------------------------------------------------
    _s("plugins", "list", (),
       "Accepted so uWSGI ini files keep working: the python plugin (python, "
       "python3, python311 ...) is built in, so naming it has no effect; any other "
       "plugin is refused.",
       aliases=("plugin", "need-plugin", "need-plugins"), metavar="NAME[,NAME]",
       section="uWSGI compatibility", validator=_plugins,
       uwsgi_ref="uWSGI --plugins / --plugin / --need-plugin."),
    _s("plugins-dir", "list", (),
       "Accepted, no effect: the python plugin is built in, so there is no plugin to look "
       "for.",
       aliases=("plugin-dir",), metavar="DIR", section="uWSGI compatibility",
       uwsgi_ref="uWSGI --plugins-dir / --plugin-dir."),
    _s("enable-threads", "bool", False,
       "Accepted, no effect: threads always work.",
       short="-T", section="uWSGI compatibility", uwsgi_ref="uWSGI --enable-threads (-T)."),
    _s("gevent-wait-for-hub", "bool", False,
       "Accepted, no effect: a gevent worker exits once its event loop has stopped "
       "(requests in flight finished or the mercy over), whatever other greenlets the "
       "app left on gevent's hub.",
       section="uWSGI compatibility",
       uwsgi_ref="uWSGI --gevent-wait-for-hub (wait for the hub's end rather than uWSGI's "
                 "control greenlet)."),
    _s("single-interpreter", "bool", False,
       "Accepted, no effect: uwsgipy always runs one interpreter.",
       short="-i", section="uWSGI compatibility",
       uwsgi_ref="uWSGI --single-interpreter (-i)."),
    _s("need-app", "bool", True,
       "Accepted, no effect: uwsgipy always exits when the application cannot be "
       "loaded.",
       section="uWSGI compatibility", uwsgi_ref="uWSGI --need-app."),
    _s("ignore-sigpipe", "bool", False,
       "Accepted, no effect: uwsgipy never dies of SIGPIPE (sockets are written "
       "with MSG_NOSIGNAL and Python ignores the signal).",
       section="uWSGI compatibility", uwsgi_ref="uWSGI --ignore-sigpipe."),
    _s("ignore-write-errors", "bool", False,
       "Accepted, no effect: a client that goes away mid-response is not logged as "
       "an error (the response is abandoned and its close() called).",
       section="uWSGI compatibility", uwsgi_ref="uWSGI --ignore-write-errors."),
    _s("add-header", "list", (),
       "Add this header ('Name: value') to every response the application makes. "
       "Repeatable.",
       metavar="'NAME: VALUE'", section="uWSGI compatibility", validator=_header_line,
       uwsgi_ref="uWSGI --add-header: added as given, also when the app sent the same name."),
    _s("disable-write-exception", "bool", False,
       "write() returns quietly instead of raising OSError when the client has "
       "gone away.",
       section="uWSGI compatibility", uwsgi_ref="uWSGI --disable-write-exception."),
    # -- Recognised uWSGI options that are refused ---------------------------
    _no("https", _NO_TLS),
    _no("http-to", "uWSGI's HTTP router forwarding to other uwsgi nodes; uwsgipy's "
        "workers serve http themselves: put nginx or a load balancer in front", kind="list"),
    _no("https-socket", _NO_TLS, kind="list"),
    _no("ssl-socket", _NO_TLS, kind="list"),
    _no("suwsgi-socket", _NO_TLS, kind="list"),
    _no("shared-socket", "uWSGI's pre-bound sockets for jails and the emperor; bind with socket or http-socket", kind="list"),
    _no("abstract-socket", "give the address as @name (the Linux abstract namespace) instead", kind="bool"),
    _no("py-tracebacker", "not implemented; py-spy dump --pid PID shows every thread's stack"),
    _no("check-static-docroot", "name the directory with check-static DIR", kind="bool"),
    _no("static-cache-paths", "not needed: the C core resolves paths with openat2 per request, "
        "without the uWSGI cache"),
    _no("static-cache-paths-name", "uwsgipy has no uWSGI cache; static paths are not cached"),
    _no("post-buffering-bufsize", "not a knob here: bodies are read in 64 KiB pieces; set post-buffering only"),
    _no("route-host", "only route and route-uri (donotlog, log, last, break, continue) are implemented", kind="list"),
    _no("route-run", "only route and route-uri (donotlog, log, last, break, continue) are implemented", kind="list"),
    _no("cheaper-rss-limit-soft", "not implemented; reload-on-rss bounds a worker's memory"),
    _no("cheaper-rss-limit-hard", "not implemented; reload-on-rss bounds a worker's memory"),
    _no("fs-reload", "use touch-reload (or py-autoreload)", kind="list"),
    _no("emperor", "run one uwsgipy per application under your service manager", kind="list"),
    _no("async", "uWSGI's async mode needs a suspend engine uwsgipy does not have: use gevent = N"),
    _no("asyncio", "uWSGI's asyncio loop engine runs WSGI apps in greenlets, which uwsgipy does not do: serve an async app as ASGI (asgi, loop = asyncio; docs/asgi.md), or use gevent = N"),
    _no("greenlet", "uWSGI's greenlet suspend engine for async mode: use gevent = N", kind="bool"),
    _no("ugreen", "uWSGI's ucontext suspend engine for async mode: use gevent = N", kind="bool"),
    _s("ksm", "str", None,
       "Accepted with one warning at start-up: Linux KSM page merging is not done "
       "(serving does not depend on it).",
       metavar="N", section="uWSGI compatibility", const="10",
       warning="Linux KSM page merging is not done", uwsgi_ref="uWSGI --ksm."),
    _no("spooler", "uwsgipy has no spooler, so tasks the app enqueues would never run: use a task queue (Celery, RQ)", short="-Q", kind="list"),
    _no("spooler-processes", "uwsgipy has no spooler: use a task queue (Celery, RQ)"),
    _no("mule", "uwsgipy has no mules: run background work as its own service (or attach-daemon)", kind="list"),
    _no("mules", "uwsgipy has no mules: run background work as its own service (or attach-daemon)"),
    _no("farm", "uwsgipy has no mules or farms", kind="list"),
    _s("cron", "list", (),
       "Accepted with one warning at start-up: the jobs are not run (use a systemd timer "
       "or cron); serving does not depend on them.",
       metavar="MIN HOUR DAY MONTH WEEKDAY CMD", section="uWSGI compatibility",
       warning="the jobs are not run; use a systemd timer or cron", uwsgi_ref="uWSGI --cron."),
    _s("unique-cron", "list", (),
       "Accepted with one warning at start-up, as cron.",
       metavar="MIN HOUR DAY MONTH WEEKDAY CMD", section="uWSGI compatibility",
       warning="the jobs are not run; use a systemd timer or cron",
       uwsgi_ref="uWSGI --unique-cron."),
    _no("cache", "uwsgipy has no shared cache, so the app's uwsgi.cache_* calls would fail: use Redis or memcached"),
    _no("cache2", "uwsgipy has no shared cache, so the app's uwsgi.cache_* calls would fail: use Redis or memcached", kind="list"),
    _no("sharedarea", "uwsgipy has no sharedarea: use shared memory from the app (multiprocessing.shared_memory)", short="-A", kind="list"),
    _no("hook-asap", _NO_HOOKS, kind="list"),
    _no("hook-pre-jail", _NO_HOOKS, kind="list"),
    _no("hook-post-jail", _NO_HOOKS, kind="list"),
    _no("hook-in-jail", _NO_HOOKS, kind="list"),
    _no("hook-as-root", _NO_HOOKS, kind="list"),
    _no("hook-as-user", _NO_HOOKS, kind="list"),
    _no("hook-as-user-atexit", _NO_HOOKS, kind="list"),
    _no("hook-post-app", _NO_HOOKS, kind="list"),
    _no("hook-post-fork", _NO_HOOKS, kind="list"),
    _no("hook-accepting", _NO_HOOKS, kind="list"),
    _no("hook-accepting1", _NO_HOOKS, kind="list"),
    _no("hook-accepting-once", _NO_HOOKS, kind="list"),
    _no("hook-accepting1-once", _NO_HOOKS, kind="list"),
    _no("hook-master-stop", _NO_HOOKS, kind="list"),
    _no("hook-touch", _NO_HOOKS, kind="list"),
    _no("exec-asap", _NO_HOOKS, kind="list"),
    _no("exec-as-root", _NO_HOOKS, kind="list"),
    _no("exec-as-user", _NO_HOOKS, kind="list"),
    _no("pidfile2", "use pidfile"),
    _no("safe-pidfile", "use pidfile"),
    _no("chroot", "not implemented: use a container, or systemd's RootDirectory="),
    _no("cpu-affinity", "not implemented: use taskset, or systemd's CPUAffinity="),
    _no("inherit", "use ini = FILE", kind="list"),
    _no("xml", "only ini files are supported", aliases=("xmlconfig",)),
    _no("yaml", "only ini files are supported"),
    _no("json", "only ini files are supported"),
)

# Every spelling (canonical names and aliases) -> its Setting.
_BY_NAME: Dict[str, Setting] = {}
for _setting in SETTINGS:
    assert _setting.kind in KINDS, _setting
    for _n in _setting.names:
        assert _n not in _BY_NAME, f"duplicate option name {_n!r}"
        _BY_NAME[_n] = _setting
_BY_ENV: Dict[str, Setting] = {v: s for s in SETTINGS for v in s.env_vars}
_IMPLEMENTED: Tuple[Setting, ...] = tuple(s for s in SETTINGS if s.implemented)


# --------------------------------------------------------------------------
# The result.
# --------------------------------------------------------------------------


class Config:
    """The effective configuration: one attribute per implemented setting.

    ``sources`` maps each setting's uWSGI name ("http-socket") to where its
    value came from: "default", "command line", "env UWSGI_PROCESSES", or the
    ini lines that set it ("app.ini:12"; list options that several lines
    fed read "app.ini:3, app.ini:4").
    """

    # Config files
    ini: List[str]  # every ini file read, includes too, in reading order
    set_placeholder: List[str]
    set: List[str]
    show_config: bool
    print: List[str]
    strict: bool
    # Sockets
    socket: List[str]
    http_socket: List[str]
    fastcgi_socket: List[str]
    fastcgi_nph_socket: List[str]
    scgi_socket: List[str]
    scgi_nph_socket: List[str]
    listen: int
    chmod_socket: Optional[str]
    chown_socket: Optional[str]
    vacuum: bool
    # Application
    wsgi_file: Optional[str]
    module: Optional[str]
    callable: str
    chdir: Optional[str]
    pythonpath: List[str]
    virtualenv: Optional[str]
    pyimport: List[str]
    wsgi_disable_file_wrapper: bool
    py_call_osafterfork: bool
    env: List[str]
    mount: List[str]
    manage_script_name: bool
    no_default_app: bool
    # Static files
    static_map: List[str]
    static_map2: List[str]
    check_static: List[str]
    static_index: List[str]
    static_skip_ext: List[str]
    static_safe: List[str]
    static_expires: List[str]
    static_expires_mtime: List[str]
    static_expires_uri: List[str]
    static_expires_uri_mtime: List[str]
    static_expires_path_info: List[str]
    static_expires_path_info_mtime: List[str]
    static_expires_type: List[str]
    static_expires_type_mtime: List[str]
    static_gzip_all: bool
    static_gzip_dir: List[str]
    static_gzip_ext: List[str]
    static_gzip: List[str]
    mimefile: List[str]
    honour_range: bool
    # Requests and timeouts
    buffer_size: int
    post_buffering: int
    limit_post: int
    socket_timeout: int
    http_keepalive: int
    header_timeout: int
    body_timeout: int
    body_min_rate: int
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    http: List[str]
    http_timeout: int
    http_processes: int
    http_auto_chunked: bool
    protocol: str
    enable_proxy_protocol: bool
    http_enable_proxy_protocol: bool
    reuse_port: bool
    so_keepalive: bool
    tcp_nodelay: bool
    thunder_lock: bool
    offload_threads: int
    no_orphans: bool
    harakiri: int
    harakiri_verbose: bool
    # Processes
    master: bool
    processes: int
    threads: int
    gevent: int
    gevent_monkey_patch: bool
    gevent_early_monkey_patch: bool
    lazy_apps: bool
    # ASGI and WebSockets
    asgi: str
    loop: str
    lifespan: str
    websockets_max_size: int
    websockets_ping_freq: int
    websockets_pong_tolerance: int
    reload_mercy: int
    worker_reload_mercy: int
    die_on_term: bool
    # Adaptive workers (cheaper)
    cheaper: Optional[str]
    cheaper_initial: int
    idle: int
    die_on_idle: bool
    cheaper_step: int
    cheaper_algo: str
    cheaper_overload: int
    cheaper_busyness_max: int
    cheaper_busyness_min: int
    cheaper_busyness_multiplier: int
    cheaper_busyness_penalty: int
    cheaper_busyness_verbose: bool
    cheaper_busyness_backlog_alert: int
    cheaper_busyness_backlog_multiplier: int
    cheaper_busyness_backlog_step: int
    cheaper_busyness_backlog_nonzero: int
    # Attached daemons
    attach_daemon: List[str]
    attach_control_daemon: List[str]
    smart_attach_daemon: List[str]
    smart_attach_daemon2: List[str]
    attach_daemon2: List[str]
    # Worker recycling and reloading
    max_requests: int
    max_requests_delta: int
    reload_on_rss: int
    max_worker_lifetime: int
    max_worker_lifetime_delta: int
    min_worker_lifetime: int
    reload_on_as: int
    evil_reload_on_rss: int
    limit_as: int
    touch_workers_reload: List[str]
    touch_chain_reload: List[str]
    touch_reload: List[str]
    py_autoreload: int
    # Logging
    logto: Optional[str]
    disable_logging: bool
    log_format: Optional[str]
    log_x_forwarded_for: bool
    log_4xx: bool
    log_5xx: bool
    logger: List[str]
    req_logger: List[str]
    log_master: bool
    log_date: Optional[str]
    log_maxsize: int
    log_backupname: Optional[str]
    log_reopen: bool
    logfile_chown: bool
    log_slow: Optional[str]
    log_route: List[str]
    log_req_route: List[str]
    log_encoder: List[str]
    log_req_encoder: List[str]
    log_json_field: List[str]
    request_id: bool
    request_id_header: str
    log_zero: bool
    log_micros: bool
    route: List[str]
    route_uri: List[str]
    # Privileges and daemon
    pidfile: Optional[str]
    uid: Optional[str]
    gid: Optional[str]
    daemonize: Optional[str]
    procname_prefix: Optional[str]
    procname_prefix_spaced: Optional[str]
    auto_procname: bool
    procname: Optional[str]
    procname_master: Optional[str]
    umask: Optional[str]
    max_fd: int
    hook_master_start: List[str]
    hook_pre_app: List[str]
    exec_pre_app: List[str]
    master_fifo: List[str]
    memory_report: bool
    add_header: List[str]
    plugins_dir: List[str]
    ksm: Optional[str]
    cron: List[str]
    unique_cron: List[str]
    # Stats
    liveness_path: Optional[str]
    readiness_path: Optional[str]
    readiness_max_queue: int
    readiness_drain: int
    stats: Optional[str]
    stats_http: bool
    metrics_socket: Optional[str]
    # uWSGI compatibility
    plugins: List[str]
    enable_threads: bool
    gevent_wait_for_hub: bool
    single_interpreter: bool
    need_app: bool
    ignore_sigpipe: bool
    ignore_write_errors: bool
    disable_write_exception: bool

    sources: Dict[str, str]
    # Configuration warnings, one line each with its origin, for the caller
    # to log (ini.report_config); uWSGI's exported options after expansion,
    # in its order, for show-config.
    warnings: List[str]
    exported: List[Tuple[str, Optional[str]]]

    def __init__(self, values: Optional[Mapping[str, Any]] = None,
                 sources: Optional[Mapping[str, str]] = None) -> None:
        """Defaults, overridden by ``values`` (keyed by uWSGI option name)."""
        values = dict(values or {})
        sources = dict(sources or {})
        self.sources = {}
        self.warnings = []
        self.exported = []
        for s in _IMPLEMENTED:
            if s.name in values:
                value = values.pop(s.name)
                self.sources[s.name] = sources.get(s.name, "code")
            else:
                value = s.default
                self.sources[s.name] = "default"
            setattr(self, s.attr, list(value) if s.kind == "list" else value)
        if values:
            raise ValueError(f"not implemented settings: {sorted(values)}")

    def __repr__(self) -> str:
        changed = ", ".join(
            f"{s.attr}={getattr(self, s.attr)!r}"
            for s in _IMPLEMENTED if self.sources[s.name] != "default"
        )
        return f"Config({changed})"


# --------------------------------------------------------------------------
# Conversion.
# --------------------------------------------------------------------------

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_INT = re.compile(r"[+-]?[0-9]+\Z")


def _convert(setting: Setting, raw: Any) -> Any:
    """Convert one raw value (str, or True for a bare flag); ValueError if bad.

    For list settings this converts one item.
    """
    if setting.kind == "bool":
        if isinstance(raw, bool):
            return raw
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"invalid bool value {raw!r} (use true/false, yes/no, on/off or 1/0)")
    if setting.kind == "int":
        if not _INT.match(raw.strip()):
            raise ValueError(f"invalid int value {raw!r}")
        value: Any = int(raw)
    else:
        value = raw
    if setting.validator is not None:
        setting.validator(value)
    return value


def _refusal(setting: Setting, spelled: str) -> str:
    msg = f"option '{spelled}' is not supported by uwsgipy yet"
    return f"{msg}: {setting.help}" if setting.help else msg


def _suggest(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Layer:
    """Values from one source (env, ini or command line) with their origins."""

    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}
        self.origins: Dict[str, List[str]] = {}

    def set(self, setting: Setting, value: Any, origin: str) -> None:
        if setting.kind == "list":
            self.values.setdefault(setting.name, []).append(value)
            origins = self.origins.setdefault(setting.name, [])
            if origin not in origins:
                origins.append(origin)
        else:
            self.values[setting.name] = value
            self.origins[setting.name] = [origin]


# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------

_SPILL = "_uwsgipy_positional"
_UNSUPPORTED = "_uwsgipy_unsupported"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Add "did you mean" to argparse's "unrecognized arguments" message.
        if message.startswith("unrecognized arguments: "):
            words = message[len("unrecognized arguments: "):].split()
            options = [w.split("=", 1)[0] for w in words if w.startswith("-")]
            if options:
                hint = _suggest(options[0], self._option_names())
                message = f"unrecognized option '{options[0]}'{hint}"
        super().error(message)

    def _option_names(self) -> List[str]:
        return [o for a in self._actions for o in a.option_strings if o.startswith("--")]


class _HelpFormatter(argparse.HelpFormatter):
    """Shows the metavar once: ``-w, --module, --wsgi MODULE[:CALLABLE]``."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        metavar = self._metavar_formatter(action, action.dest.upper())(1)[0]
        if action.nargs == "?":
            metavar = f"[{metavar}]"
        return f"{', '.join(action.option_strings)} {metavar}"


class _OptionalValue(argparse.Action):
    """``--chmod-socket [MODE]``: a following ini file is not taken as MODE."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        if isinstance(values, str) and _looks_like_ini(values):
            setattr(namespace, _SPILL, getattr(namespace, _SPILL, []) + [values])
            values = self.const
        setattr(namespace, self.dest, values)


class _Refuse(argparse.Action):
    """Records a recognised-but-unsupported option; load() reports it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        recorded = getattr(namespace, _UNSUPPORTED, [])
        setattr(namespace, _UNSUPPORTED, recorded + [(self.dest, option_string)])


def _looks_like_ini(arg: str) -> bool:
    return not arg.startswith("-") and _ini.split_spec(arg)[0].endswith(".ini")


def _describe_default(setting: Setting) -> str:
    d = setting.default
    if setting.kind == "bool":
        return "on" if d else ""
    if d is None or d == () or d == "":
        return ""
    return str(d)



def version_text() -> str:
    """What ``uwsgipy --version`` prints: the version (one source: ``uwsgipy.__version__``,
    which the package metadata reads too), how the C core was built (poller, sendfile,
    openat2, compiler, the CPython and libc it was built for) and the Python running it.
    A core that does not import is reported, not raised: --version must work to diagnose it."""
    import platform
    lines = [f"uwsgipy {__version__}"]
    try:
        from uwsgipy import _core
        b = _core.BUILD
        features = ", ".join(f for f in ("sendfile", "openat2") if b.get(f)) or "no sendfile, no openat2"
        lines.append(f"C core: {b['poller']} poller, {features}; built with {b['compiler'].strip()} "
                     f"for CPython {b['python']} ({b['libc']})")
    except Exception as exc:  # ImportError, or an older core without BUILD
        lines.append(f"C core: cannot be imported: {exc}")
    lines.append(f"running on {platform.python_implementation()} {platform.python_version()} "
                 f"({sys.executable}), {platform.system()} {platform.machine()}")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """--version: version_text() on stdout, exit 0 (argparse's own action takes a fixed string)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit(0)

def build_parser() -> argparse.ArgumentParser:
    """The argparse parser, generated from SETTINGS and grouped by section."""
    parser = _Parser(
        prog="uwsgipy",
        usage="uwsgipy [FILE.ini[:SECTION]] [options]",
        description="A WSGI server with a C core, configured like uWSGI: every option "
                    "below can also be set in an ini file ([uwsgi] section) or as an "
                    "UWSGI_<NAME> environment variable. Precedence: environment < ini "
                    "files < command line.",
        epilog="The full entry of one option: uwsgipy --help-option NAME. The whole "
               "reference, with the uWSGI options that uwsgipy recognises but does not "
               "support yet: uwsgipy --help-option all.",
        formatter_class=_HelpFormatter,
        allow_abbrev=False,  # uWSGI has no abbreviations; they would break on new options
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        help="show the version, how the C core was built, and exit")
    parser.set_defaults(**{_SPILL: [], _UNSUPPORTED: []})
    groups = {name: parser.add_argument_group(name) for name in SECTIONS}
    for s in SETTINGS:
        flags = ([s.short] if s.short else []) + [f"--{n}" for n in s.names]
        if not s.implemented:
            parser.add_argument(*flags, dest=s.name, action=_Refuse,
                                nargs=0 if s.kind == "bool" else "?",
                                default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            continue
        help_text = s.help
        default = _describe_default(s)
        if s.kind == "list":
            help_text += "" if "Repeatable" in help_text else " Repeatable."
        if default:
            help_text += f" (default: {default})"
        kw: Dict[str, Any] = dict(dest=s.attr, default=argparse.SUPPRESS,
                                  help=help_text.replace("%", "%%"))
        if s.kind == "bool":
            kw["action"] = "store_true"
        else:
            kw["metavar"] = s.metavar or "VALUE"
            if s.kind == "list":
                kw["action"] = "append"
            elif s.const is not None:
                kw.update(action=_OptionalValue, nargs="?", const=s.const)
        groups[s.section].add_argument(*flags, **kw)
    return parser


# --------------------------------------------------------------------------
# load()
# --------------------------------------------------------------------------


class _Recorder(argparse.Namespace):
    """An argparse namespace that remembers the order options were given
    in, for uWSGI's order of exported options."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            self.__dict__.setdefault("_events", []).append((name, value))
        super().__setattr__(name, value)


_BY_ATTR: Dict[str, Setting] = {s.attr: s for s in _IMPLEMENTED}


def _cli_options(ns: _Recorder, argv: Sequence[str]) -> List[Tuple[str, Optional[str]]]:
    """(key as spelled, value) per option given, in argv order; a flag's
    value is None (uWSGI's NULL)."""
    options: List[Tuple[str, Optional[str]]] = []
    cursor = 0
    for attr, value in ns.__dict__.get("_events", []):
        s = _BY_ATTR.get(attr)
        if s is None:
            continue
        spelled = s.name
        for i in range(cursor, len(argv)):
            token = argv[i]
            long_flag = next((n for n in s.names
                              if token == f"--{n}" or token.startswith(f"--{n}=")), None)
            if long_flag or (s.short and token.startswith(s.short) and not token.startswith("--")):
                spelled = long_flag or s.name
                cursor = i + 1
                break
        if s.kind == "bool":
            options.append((spelled, None))
        else:
            options.append((spelled, value[-1] if s.kind == "list" else value))
    return options


def _with_inline_comment(s: Setting, key: str, value: str, origin: str,
                         warnings: List[str]) -> Any:
    """uWSGI has no inline comments: what its C code makes of
    ``value ; comment``, and a warning saying so."""
    cut = _ini.inline_comment(value)
    if cut is None:
        return value
    head, tail = value[:cut].rstrip(), value[cut:].strip()
    where = f"{origin}: option '{key}'"
    if s.kind == "int" and _INT.match(head):
        warnings.append(f"{where}: '{tail}' is not a comment (uWSGI ini files have none); "
                        f"{head} is used, as uWSGI reads the leading number")
        return head
    if s.kind == "bool":
        warnings.append(f"{where}: uWSGI ini files have no inline comments and uWSGI reads "
                        f"'{value}' as true; so does uwsgipy (remove '{tail}')")
        return True
    if s.validator is _address and ":" in head and "/" not in head:
        warnings.append(f"{where}: '{tail}' is not a comment (uWSGI ini files have none); "
                        f"{head} is used, as uWSGI reads the port's leading digits")
        return head
    warnings.append(f"{where}: '{tail}' is part of the value (uWSGI ini files have no "
                    "inline comments)")
    return value


def load(argv: Sequence[str], environ: Mapping[str, str] = os.environ, *,
         out: Optional[Callable[[str], None]] = None) -> Config:
    """Build the Config from the command line (without the program name),
    the environment and the ini files they name.

    The sources are read in uWSGI's order into its exported options
    (uwsgipy.ini): UWSGI_* variables, then the command line (``--ini`` files
    where they stand), then config files named without ``--ini``; then
    $(VAR), @(FILE) and %(name) are expanded.  Precedence, lowest first:
    defaults < environment and ini files, in reading order (a list option
    collects every value) < command line (which replaces a list).

    ``print`` lines go to ``out`` (default: stdout).  Raises ConfigError for
    configuration mistakes; argparse exits (status 2) for unknown
    command-line options, and (status 0) for --help/--version.
    """
    parser = build_parser()
    ns, extras = parser.parse_known_args(list(argv), namespace=_Recorder())
    for extra in extras:
        if extra.startswith("-") and extra != "-":
            parser.error(f"unrecognized arguments: {extra}")
    positional = list(getattr(ns, _SPILL)) + list(extras)
    for arg in positional:
        if not _looks_like_ini(arg):
            parser.error(
                f"unexpected argument '{arg}' (ini files must end in .ini; the application "
                "is given with --wsgi-file or --module)"
            )
    for name, flag in getattr(ns, _UNSUPPORTED):
        spelled = flag[2:] if flag.startswith("--") else name
        raise ConfigError(f"command line: {_refusal(_BY_NAME[name], spelled)}")

    reader = _ini.Reader(environ, _BY_NAME, out=out)
    cli_layer, file_layer = _Layer(), _Layer()
    try:
        reader.read_environ()
        for key, value in _cli_options(ns, list(argv)):
            reader.add(key, value, "command line", "cli")
        for spec in positional:
            reader.read_file(spec, "command line")
        reader.finish()
        reader.check_unknown()
        for entry in reader.entries:
            s = _BY_NAME.get(entry.key)
            if entry.placeholder or s is None or s.name == "ini":
                continue
            if not s.implemented:
                raise ConfigError(f"{entry.origin}: {_refusal(s, entry.key)}")
            raw: Any = entry.value
            if entry.source == "env" and raw == "":
                continue  # DEVIATION: an empty variable counts as unset
            if raw is None or raw == "":  # a flag, a bare ini key, or "key ="
                if s.kind == "bool":
                    raw = True
                elif s.const is not None:
                    raw = s.const
                else:
                    raise ConfigError(f"{entry.origin}: option '{entry.key}' needs a value "
                                      f"({entry.key} = ...)")
            elif entry.source == "ini":
                raw = _with_inline_comment(s, entry.key, raw, entry.origin, reader.warnings)
            try:
                converted = _convert(s, raw)
            except ValueError as exc:
                raise ConfigError(f"{entry.origin}: option '{entry.key}': {exc}") from None
            (cli_layer if entry.source == "cli" else file_layer).set(s, converted, entry.origin)
        reader.check_strict()
    except _ini.IniError as exc:
        raise ConfigError(str(exc)) from None

    values: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    for s in _IMPLEMENTED:
        for layer in (cli_layer, file_layer):
            if s.name in layer.values:
                values[s.name] = layer.values[s.name]
                sources[s.name] = ", ".join(layer.origins[s.name])
                break
    if reader.files_read:
        values["ini"] = reader.files_read
        top = [e.origin for e in reader.entries if e.key == "ini" and e.source != "ini"]
        sources["ini"] = ", ".join(dict.fromkeys(top + ["command line"] * bool(positional)))
    cfg = Config(values, sources)
    cfg.warnings = reader.warnings
    for s in _IMPLEMENTED:
        if s.warning and s.name in sources and values.get(s.name):
            cfg.warnings.append(f"{sources[s.name]}: option '{s.name}' is accepted without "
                                f"effect: {s.warning}")
    cfg.exported = [(e.key, e.value) for e in reader.entries]
    return cfg


def report_config(cfg: Config, log: Any = None) -> None:
    """Log cfg's configuration warnings (one line each) and, with
    show-config, the resolved configuration; call once logging is set up."""
    _ini.report_config(cfg, log)


# --------------------------------------------------------------------------
# Documentation.
# --------------------------------------------------------------------------

_DOCS_INTRO = """\
# Configuration

<!-- Generated from uwsgipy/config.py by render_docs(); do not edit by hand.
     Regenerate: python -m uwsgipy.config > docs/configuration.md -->

uwsgipy takes uWSGI's option names, so most `[uwsgi]` ini files and command
lines work unchanged. Every option can be given three ways:

| where | form |
|---|---|
| command line | `--http-socket :8080`, `--http-socket=:8080`; short flags as in uWSGI (`-p 4`); boolean options take no value (`--master`); list options are repeated |
| ini file | `http-socket = :8080` in the `[uwsgi]` section; `uwsgipy app.ini` is shorthand for `uwsgipy --ini app.ini` |
| environment | `UWSGI_HTTP_SOCKET=:8080` (the name upper-cased, `-` as `_`); an empty variable counts as unset |

**Precedence**, lowest first: defaults < environment and ini files < command
line. The environment and the ini files are read in uWSGI's order
(`UWSGI_*` variables, `UWSGI_INI`, `--ini` files, then files named without
`--ini`) and combine as in uWSGI: a single-valued option keeps the value
read last, a list option (such as `socket`) collects every value. The
command line has the last word whatever its position, and replaces a list
as a whole: `uwsgipy app.ini --http-socket :9090` listens on :9090 only,
whatever sockets `app.ini` lists (DEVIATION: uWSGI applies options in the
order read, so a file named after an option overrides it, and lists always
add up).

Unknown command-line options are errors with a suggestion. In ini files and
`UWSGI_*` variables an unknown key is a placeholder, as in uWSGI, with a
warning when nothing uses it (an error with `strict`). uWSGI options that
uwsgipy recognises but does not implement yet are refused with `option X is
not supported by uwsgipy yet` (listed at the end of this page); a few are
accepted with no effect (see *uWSGI compatibility*).
"""


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _render_setting(s: Setting) -> List[str]:
    cli = ", ".join(
        f"`{flag}`" if s.kind == "bool" else f"`{flag} {s.metavar or 'VALUE'}`"
        for flag in ([s.short] if s.short else []) + [f"--{n}" for n in s.names]
    )
    if s.const is not None:
        cli += f" (bare: `{s.const}`)"
    ini = ", ".join(f"`{n}`" for n in s.names)
    env = ", ".join(f"`{v}`" for v in s.env_vars)
    default = _describe_default(s) or ("off" if s.kind == "bool" else "none")
    kind = {"str": "string", "int": "integer", "bool": "boolean",
            "list": "list (repeatable)"}[s.kind]
    lines = [
        f"### `{s.name}`",
        "",
        s.help,
        "",
        f"- command line: {cli}",
        f"- ini key: {ini}; environment: {env}",
        f"- type: {kind}; default: `{default}`" if default != "none" else f"- type: {kind}; default: none",
    ]
    if s.uwsgi_ref:
        lines.append(f"- compared with uWSGI: {s.uwsgi_ref}")
    lines.append("")
    return lines


def render_docs() -> str:
    """docs/configuration.md, generated from SETTINGS."""
    out = [_DOCS_INTRO, _ini.DOCS]
    out.append("## Contents\n")
    for section in SECTIONS:
        names = ", ".join(f"`{s.name}`" for s in _IMPLEMENTED if s.section == section)
        out.append(f"- **{section}**: {names}")
    out.append(f"- **{UNSUPPORTED_SECTION}**\n")
    for section in SECTIONS:
        out.append(f"## {section}\n")
        for s in _IMPLEMENTED:
            if s.section == section:
                out.extend(_render_setting(s))
    out.append(f"## {UNSUPPORTED_SECTION}\n")
    out.append("These uWSGI options are recognised and refused with a clear message, "
               "rather than reported as unknown.\n")
    out.append("| option | note |")
    out.append("|---|---|")
    for s in SETTINGS:
        if not s.implemented:
            names = ", ".join(f"`{n}`" for n in s.names)
            if s.short:
                names = f"`{s.short}`, {names}"
            out.append(f"| {names} | {_md_escape(s.help)} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_docs())
