"""Privileges and daemon mode: ``uid``, ``gid``, ``chown-socket``,
``pidfile``, ``daemonize`` (uWSGI's options), for the master and the
single process alike.

Order, as in uWSGI: ``daemonize`` detaches first; then the listeners are
bound (privileged ports need root), unix sockets chowned, the pidfile
written (in a root-owned directory such as /run), privileges dropped, and
only then is the application imported, so app code never runs as root.
Names are resolved before anything else (:func:`resolve`), so an unknown
user or group is one line and exit 2 with nothing bound.

Groups after the switch:

=============  ===================  ==========================  ==========
configured     group (gid)          supplementary groups        as
=============  ===================  ==========================  ==========
uid            the user's primary   the user's (initgroups)     nginx
uid + gid      gid                  the user's (initgroups)     uWSGI, nginx
gid            gid                  none                        uWSGI
=============  ===================  ==========================  ==========

DEVIATION: uWSGI 2.0 with ``uid`` alone keeps gid 0 (root) and the
supplementary groups it had; uwsgipy takes the user's primary group and
supplementary groups, as nginx's ``user`` and su(1) do, so a worker never
keeps group root by accident.  A numeric ``uid`` without a passwd entry
needs ``gid`` (its primary group is unknown).  When not running as root the
switch is impossible; as nginx and uWSGI do, uwsgipy then warns and runs on
as the current user (no warning when it already is that user and group).
"""
from __future__ import annotations

import grp
import logging
import os
import pwd
import sys
from dataclasses import dataclass
from typing import Any, Optional, Tuple

__all__ = ["PrivilegeError", "Identity", "resolve", "resolve_owner", "chown_socket", "drop",
           "write_pidfile", "remove_pidfile", "daemonize", "apply_process_limits"]

log = logging.getLogger("uwsgipy")


class PrivilegeError(Exception):
    """A ``uid``/``gid``/``chown-socket`` value that names no user or
    group, worded as one line naming the option, the value and where it was
    set ("command line", "app.ini:4")."""


@dataclass(frozen=True)
class Identity:
    """Who the process becomes: all None for "stay as is".

    ``groups`` is the supplementary group list to set (None: leave it);
    ``user`` is the name for the log line.
    """
    uid: Optional[int] = None
    gid: Optional[int] = None
    groups: Optional[Tuple[int, ...]] = None
    user: Optional[str] = None

    def __bool__(self) -> bool:
        return self.uid is not None or self.gid is not None


def _where(cfg: Any, option: str) -> str:
    sources = getattr(cfg, "sources", {}) or {}
    return sources.get(option, "command line")


def _user(value: str, option: str, where: str) -> Tuple[int, Optional[pwd.struct_passwd]]:
    """(uid, passwd entry or None) for a name or a number."""
    try:
        entry = pwd.getpwuid(int(value)) if value.isdigit() else pwd.getpwnam(value)
    except KeyError:
        if value.isdigit():
            return int(value), None
        raise PrivilegeError(f"{where}: option '{option}': no such user {value!r}") from None
    return entry.pw_uid, entry


def _group(value: str, option: str, where: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise PrivilegeError(f"{where}: option '{option}': no such group {value!r}") from None


def _supplementary(name: str, gid: int) -> Tuple[int, ...]:
    """What initgroups(3) would set: ``gid`` and every group listing
    ``name`` as a member (from the group database, as getgrouplist(3))."""
    groups = [gid]
    try:
        groups += [g for g in os.getgrouplist(name, gid) if g not in groups]
    except OSError:
        pass
    return tuple(groups)


def resolve(cfg: Any) -> Identity:
    """The Identity that ``uid`` and ``gid`` ask for.  Raises
    PrivilegeError for an unknown name (also checks ``chown-socket``)."""
    if cfg.chown_socket:
        resolve_owner(cfg.chown_socket, _where(cfg, "chown-socket"))
    uid = gid = None
    entry = None
    if cfg.gid:
        gid = _group(cfg.gid, "gid", _where(cfg, "gid"))
    if cfg.uid:
        uid, entry = _user(cfg.uid, "uid", _where(cfg, "uid"))
        if gid is None:
            if entry is None:
                raise PrivilegeError(
                    f"{_where(cfg, 'uid')}: option 'uid': uid {uid} has no passwd entry, so its "
                    "group is unknown: set gid too")
            gid = entry.pw_gid
    if uid is None and gid is None:
        return Identity()
    if entry is not None:
        assert gid is not None
        groups: Tuple[int, ...] = _supplementary(entry.pw_name, gid)
    elif uid is not None:
        groups = (gid,)  # type: ignore[assignment]
    else:
        groups = ()      # gid alone: no supplementary groups, as uWSGI
    return Identity(uid=uid, gid=gid, groups=groups, user=entry.pw_name if entry else None)


def resolve_owner(spec: str, where: str = "command line") -> Tuple[int, int]:
    """(uid, gid) for uWSGI's ``chown-socket USER[:GROUP]``; gid -1
    (unchanged) without a group, as uWSGI.  Raises PrivilegeError."""
    user, _, group = spec.partition(":")
    if not user:
        raise PrivilegeError(f"{where}: option 'chown-socket': {spec!r} names no user "
                             "(USER or USER:GROUP)")
    uid, _ = _user(user, "chown-socket", where)
    gid = _group(group, "chown-socket", where) if group else -1
    return uid, gid


def chown_socket(path: str, spec: str) -> None:
    """chown a unix socket file.  Raises OSError naming the file."""
    uid, gid = resolve_owner(spec)
    try:
        os.chown(path, uid, gid)
    except OSError as exc:
        raise OSError(exc.errno, f"chown-socket: cannot chown {path}: {exc.strerror}") from None


def drop(identity: Identity) -> None:
    """Switch to ``identity``: supplementary groups, gid, then uid (the
    order setuid(2) requires).  Not root: a warning, unless already there."""
    if not identity:
        return
    want_uid = os.geteuid() if identity.uid is None else identity.uid
    want_gid = os.getegid() if identity.gid is None else identity.gid
    if os.geteuid() != 0:
        if (os.getuid(), os.geteuid()) != (want_uid, want_uid) or \
                (os.getgid(), os.getegid()) != (want_gid, want_gid):
            log.warning("uid/gid: not running as root, so cannot switch to uid %d gid %d: "
                        "running on as uid %d gid %d", want_uid, want_gid, os.geteuid(),
                        os.getegid())
        return
    if identity.groups is not None:
        os.setgroups(list(identity.groups))
    if identity.gid is not None:
        os.setgid(identity.gid)
    if identity.uid is not None:
        os.setuid(identity.uid)
    log.info("running as uid %d%s, gid %d, groups %s", os.getuid(),
             f" ({identity.user})" if identity.user else "", os.getgid(),
             ",".join(str(g) for g in os.getgroups()) or "none")


def write_pidfile(path: str, pid: int) -> None:
    """uWSGI's ``pidfile``.  Raises OSError naming the file."""
    try:
        with open(path, "w") as f:
            f.write(f"{pid}\n")
    except OSError as exc:
        raise OSError(exc.errno, f"pidfile: cannot write {path}: {exc.strerror}") from None


def remove_pidfile(path: str) -> None:
    """``vacuum``: remove the pidfile; a failure (privileges dropped, so the
    directory is not writable any more) is one warning."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("vacuum: cannot remove the pidfile %s: %s", path, exc.strerror)


def daemonize(logfile: str) -> None:
    """uWSGI's ``daemonize LOGFILE``: fork twice and start a session (the
    launching process exits 0 at once), stdin from /dev/null, stdout and
    stderr appended to ``logfile``.  Raises OSError naming the file (before
    forking)."""
    try:
        fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise OSError(exc.errno, f"daemonize: cannot open {logfile}: {exc.strerror}") from None
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)


def apply_process_limits(cfg: Any) -> None:
    """``umask``, ``max-fd`` and ``limit-as``, applied to this process
    before any socket is bound (the workers and attached daemons inherit
    them), as uWSGI does (it applies ``umask`` while parsing, the rlimits
    at start-up).  A limit that cannot be set is one warning line and the
    server goes on, as in uWSGI (which logs setrlimit()'s error).

    umask: an octal string ("022"); max-fd: RLIMIT_NOFILE soft and hard
    limit, raising the hard limit needs root (without it the soft limit is
    raised as far as the hard one allows); limit-as: RLIMIT_AS in MB."""
    import resource
    if getattr(cfg, "umask", None):
        os.umask(int(cfg.umask, 8))
    max_fd = getattr(cfg, "max_fd", 0)
    if max_fd:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_fd, max_fd))
        except (ValueError, OSError):
            usable = max_fd if hard == resource.RLIM_INFINITY else min(max_fd, hard)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (usable, hard))
                soft = usable
            except (ValueError, OSError):
                pass
            log.warning("max-fd %d: cannot set the open files limit (RLIMIT_NOFILE) to %d "
                        "(the hard limit is %s; raising it needs root): running with %d",
                        max_fd, max_fd, "unlimited" if hard == resource.RLIM_INFINITY else hard,
                        soft)
        else:
            log.info("max-fd: open files limit (RLIMIT_NOFILE) is %d", max_fd)
    limit_as = getattr(cfg, "limit_as", 0)
    if limit_as:
        size = limit_as * 1024 * 1024
        try:
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        except (ValueError, OSError):
            log.warning("limit-as %d: cannot lower the address space limit (RLIMIT_AS) to %d "
                        "MB: running without it", limit_as, limit_as)
        else:
            log.info("limit-as: the address space limit (RLIMIT_AS) is %d MB", limit_as)
