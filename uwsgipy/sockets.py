"""Listening sockets: parsing uWSGI addresses, binding, unix socket care.

The master (or the single process) binds every listener before serving;
the C core only accepts on the fds it is given.

Address forms (uWSGI's): ``host:port``, ``:port`` (all IPv4 interfaces),
``[v6addr]:port``, a filesystem path for a unix socket (anything without
``:``), ``@name`` for a Linux abstract unix socket.

Each listener has a kind (the option that made it) and a protocol, named as
uWSGI names them in its stats (``proto``): the kind decides it, except that
``protocol =`` sets it for ``socket`` listeners (uWSGI's "default sockets").
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from . import _core

__all__ = ["Listener", "parse_address", "bind_listener", "close_listeners", "somaxconn",
           "configured_addresses", "listener_options", "KINDS", "protocol_name", "protocol_code"]

log = logging.getLogger("uwsgipy")

# The listener options, in the order configured_addresses() binds them, and the
# protocol each one serves (uWSGI's protocol names: uwsgi_register_protocol() in
# core/socket.c; its stats report them as a socket's "proto").
KINDS = {
    "socket": "uwsgi",  # or cfg.protocol: see protocol_name()
    "http-socket": "http",
    "http": "http",
    "fastcgi-socket": "fastcgi",
    "fastcgi-nph-socket": "fastcgi-nph",
    "scgi-socket": "scgi",
    "scgi-nph-socket": "scgi-nph",
}

# Protocol name -> the name of the C core's listener protocol constant (_core.PROTO_*),
# read when a listener is handed to the core.  The nph variants are the same protocols
# but for the response's first line: HTTP/1.1 200 OK instead of CGI's Status: 200 OK,
# as uWSGI's (checked with uWSGI 2.0.31).
_PROTOCOL_CONST = {
    "uwsgi": "PROTO_UWSGI",
    "http": "PROTO_HTTP",
    "http11": "PROTO_HTTP",
    "fastcgi": "PROTO_FASTCGI",
    "fastcgi-nph": "PROTO_FASTCGI_NPH",
    "scgi": "PROTO_SCGI",
    "scgi-nph": "PROTO_SCGI_NPH",
}


def protocol_code(name: str) -> int:
    """The C core's constant for a protocol name (a key of _PROTOCOL_CONST)."""
    return getattr(_core, _PROTOCOL_CONST[name])


def protocol_name(kind: str, cfg: Any = None) -> str:
    """The protocol a listener of this kind serves, by uWSGI's name ("uwsgi", "http",
    "fastcgi", "fastcgi-nph", "scgi", "scgi-nph").  ``protocol`` applies to socket
    listeners only, as in uWSGI (checked with uWSGI 2.0.31: http-socket and
    uwsgi-socket keep theirs; uwsgipy's uwsgi-socket is socket's alias, so it
    follows protocol too: DEVIATION); http11 is reported as http."""
    if kind == "socket" and cfg is not None:
        name = getattr(cfg, "protocol", "uwsgi")
        return "http" if name == "http11" else name
    return KINDS.get(kind, "uwsgi")


@dataclass
class Listener:
    """One bound, listening socket.

    kind: the option that made it, a key of KINDS: "socket" (the uwsgi protocol,
    or the one protocol = names), "http-socket" or "http" (HTTP), "fastcgi-socket"
    and "fastcgi-nph-socket" (FastCGI), "scgi-socket" and "scgi-nph-socket" (SCGI).
    """
    sock: socket.socket
    kind: str
    address: str             # as configured
    bound: str               # as bound (port 0 resolved)
    unix_path: Optional[str]  # filesystem path of a unix socket, for vacuum
    systemd: bool = False     # passed by systemd (LISTEN_FDS): never shut on stop

    @property
    def proto(self) -> int:
        """The protocol by kind alone (socket: uwsgi); see core_spec()."""
        return protocol_code(protocol_name(self.kind))

    def proto_name(self, cfg: Any = None) -> str:
        """The protocol's name, as uWSGI's stats report it (see protocol_name)."""
        return protocol_name(self.kind, cfg)

    def proto_note(self, cfg: Any = None) -> str:
        """" (fastcgi)" and the like for a socket listener that protocol = made other
        than uwsgi, else "": what the log adds after the listener's name, where its
        kind does not say its protocol."""
        name = self.proto_name(cfg)
        return f" ({name})" if self.kind == "socket" and name != "uwsgi" else ""

    def server_name_port(self) -> Tuple[str, str]:
        """SERVER_NAME and SERVER_PORT for the environ (PEP 3333)."""
        if self.sock.family in (socket.AF_INET, socket.AF_INET6):
            host, port = self.sock.getsockname()[:2]
            if host in ("0.0.0.0", "::"):
                host = socket.gethostname()
            return host, str(port)
        return "localhost", ""

    def core_spec(self, cfg: Any = None) -> tuple:
        """The tuple _core.Server takes for this listener:
        (fd, proto, SERVER_NAME, SERVER_PORT, log name, close_on_stop,
        proxy_protocol, socket_timeout, keepalive_timeout).

        close_on_stop lets a final stop shut the listener once its backlog is
        served; systemd's sockets stay open (systemd queues connections for
        the next start).  With a config: ``protocol`` sets the protocol of
        socket listeners (http, fastcgi, scgi); enable-proxy-protocol
        (http-socket, HTTP sockets) and http-enable-proxy-protocol (http) turn
        on the PROXY header; http listeners take http-timeout as their stall
        timeout.  Timeouts of -1 mean the server's.  The log name is the kind
        and address, with the protocol added where protocol = changed it
        ("socket 127.0.0.1:9000 (fastcgi)")."""
        name, port = self.server_name_port()
        proto, proxy, stall = self.proto, False, -1.0
        log_name = f"{self.kind} {self.bound}{self.proto_note(cfg)}"
        if cfg is not None:
            proto = protocol_code(self.proto_name(cfg))
            if self.kind == "http":
                proxy, stall = cfg.http_enable_proxy_protocol, float(cfg.http_timeout)
            elif proto == _core.PROTO_HTTP:
                proxy = cfg.enable_proxy_protocol
        idle = -1.0
        if cfg is not None and cfg.http_keepalive == 1:
            # uWSGI's meaning of 1: on, idle as long as a stall may last
            idle = stall if stall > 0 else float(cfg.socket_timeout)
        return (self.sock.fileno(), proto, name, port, log_name,
                not self.systemd, proxy, stall, idle)


def configured_addresses(cfg: Any) -> List[Tuple[str, str]]:
    """(kind, address) for every listener the config asks for, in the order
    they are bound: socket, http-socket, http, fastcgi-socket,
    fastcgi-nph-socket, scgi-socket, scgi-nph-socket (KINDS' order)."""
    return [(kind, a) for kind in KINDS for a in getattr(cfg, kind.replace("-", "_"), ())]


def parse_address(address: str) -> Tuple[int, object]:
    """Return (family, sockaddr) for a uWSGI address string.
    Raises ValueError with a message naming the address."""
    if ":" not in address or address.startswith(("/", ".", "@")):
        if address.startswith("@"):
            return socket.AF_UNIX, "\0" + address[1:]
        if not address:
            raise ValueError("empty address")
        return socket.AF_UNIX, address
    host, _, port_text = address.rpartition(":")
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ValueError(f"invalid port {port_text!r} in address {address!r}") from None
    if host.startswith("[") and host.endswith("]"):
        return socket.AF_INET6, (host[1:-1], port)
    if host in ("", "*"):
        host = "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r} in address {address!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def somaxconn() -> Optional[int]:
    """The kernel's listen backlog cap (Linux), or None when unknown."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _unix_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def listener_options(cfg: Any) -> dict:
    """bind_listener's keywords from the config: listen, chmod-socket,
    reuse-port, so-keepalive."""
    return dict(backlog=cfg.listen, chmod=cfg.chmod_socket, reuse_port=cfg.reuse_port,
                so_keepalive=cfg.so_keepalive)


def bind_listener(kind: str, address: str, *, backlog: int = 100,
                  chmod: Optional[str] = None, reuse_port: bool = False,
                  so_keepalive: bool = False) -> Listener:
    """Bind and listen.  kind: a key of KINDS ("socket", "http-socket", ...).

    A stale unix socket file (nobody accepting on it) is replaced; a live
    one is an error.  chmod (octal text, uWSGI chmod-socket) applies to
    unix sockets.  TCP only: reuse_port sets SO_REUSEPORT (uWSGI reuse-port:
    several servers may bind the same address), so_keepalive SO_KEEPALIVE
    (inherited by accepted connections; uWSGI so-keepalive).  Raises
    OSError/ValueError with the address in the message.
    """
    family, sockaddr = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    unix_path = None
    try:
        sock.set_inheritable(True)  # workers and re-exec'd masters keep it
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Inherited by accepted sockets on Linux (the C core sets it per
            # connection elsewhere): responses are written whole, never
            # worth Nagle's delay.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if so_keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        elif isinstance(sockaddr, str) and not sockaddr.startswith("\0"):
            unix_path = os.path.abspath(sockaddr)
            try:
                st = os.stat(unix_path)
            except FileNotFoundError:
                st = None
            if st is not None:
                if not stat.S_ISSOCK(st.st_mode):
                    raise OSError(errno.EEXIST, f"{kind} {address}: exists and is not a socket")
                if _unix_in_use(unix_path):
                    raise OSError(errno.EADDRINUSE, f"{kind} {address}: another process is listening on it")
                os.unlink(unix_path)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            raise OSError(exc.errno, f"{kind} {address}: cannot bind: {exc.strerror}") from None
        if unix_path and chmod:
            os.chmod(unix_path, int(chmod, 8))
        cap = somaxconn()
        if cap is not None and backlog > cap:
            log.warning("listen %d is above the kernel's net.core.somaxconn %d; "
                        "the kernel caps the backlog at %d", backlog, cap, cap)
        sock.listen(backlog)
        sock.setblocking(False)
        if kind not in ("http-socket", "http") and family in (socket.AF_INET, socket.AF_INET6) \
                and hasattr(socket, "TCP_DEFER_ACCEPT"):
            # uwsgi, FastCGI and SCGI clients (nginx) send the request at once: wake us
            # only then.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    except BaseException:
        sock.close()
        raise
    if family in (socket.AF_INET, socket.AF_INET6):
        host, port = sock.getsockname()[:2]
        bound = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    else:
        bound = address
    return Listener(sock=sock, kind=kind, address=address, bound=bound, unix_path=unix_path)


def close_listeners(listeners: List[Listener], *, vacuum: bool) -> None:
    """Close the sockets; with vacuum (uWSGI's option) remove unix socket
    files."""
    for lst in listeners:
        lst.sock.close()
        if vacuum and lst.unix_path:
            try:
                os.unlink(lst.unix_path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # e.g. a root-owned directory after uid
                log.warning("vacuum: cannot remove %s: %s (running as uid %d)",
                            lst.unix_path, exc.strerror, os.getuid())


def listener_from_fd(fd: int, kind: str, address: str) -> Listener:
    """Wrap an inherited listening fd (a re-executed master's, or systemd
    socket activation's).  The Listener owns the fd afterwards."""
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(True)
    sock.setblocking(False)
    unix_path = None
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host, port = sock.getsockname()[:2]
        bound = f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
    else:
        name = sock.getsockname()
        if isinstance(name, str) and name:
            unix_path = os.path.abspath(name)
        bound = name if isinstance(name, str) else address
    return Listener(sock=sock, kind=kind, address=address, bound=bound, unix_path=unix_path)


def same_address(sock_name: object, family: int, address: str) -> bool:
    """Does a bound socket's getsockname() match a configured address?"""
    try:
        want_family, want = parse_address(address)
    except ValueError:
        return False
    if want_family != family:
        return False
    if family == socket.AF_UNIX:
        return isinstance(sock_name, str) and isinstance(want, str) and \
            os.path.abspath(sock_name) == os.path.abspath(want)
    return tuple(sock_name)[:2] == tuple(want)[:2]  # type: ignore[arg-type]
