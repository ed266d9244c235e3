"""The master fifo (uWSGI's ``master-fifo``): one-letter commands written to
a named pipe, e.g. ``echo r > /run/app.fifo``.

The master creates each fifo (mode 0600, after dropping privileges, as
uWSGI) and reads the active one without blocking from its loop: its fd is
in the same select() as the signal wake-up pipe, and each command byte is
queued and dispatched like a signal.  The master holds a write end of its
own, so the fifo never reads as end-of-file when a writer goes away; a
fifo deleted or replaced on disk is created again within a second.

Commands (uWSGI 2.0's core/fifo.c table; the others are logged as not
supported, blanks and newlines ignored):

====  =================================================================
r     graceful reload (as SIGHUP)
R     brutal reload: the workers are stopped at once, then as r
q     graceful stop (as SIGTERM)
Q     quick stop (as SIGINT)
w     reload the workers only, gracefully (the master stays)
W     reload the workers only, at once (requests in flight are dropped)
c     chain reload: the workers replaced one at a time
C     go cheap: stop every worker; they come back at the next connection
\\+    one more worker (as SIGTTIN)
\\-    one fewer worker (as SIGTTOU)
l     reopen the log files (as SIGUSR1)
L     rotate the log: uwsgipy reopens it (rotate with logrotate or
      log-maxsize), with one warning line
s     log the workers' status
f     re-execute the master: uwsgipy's graceful reload (DEVIATION: uWSGI
      forks a second master that re-executes; uwsgipy's reload already
      keeps the pid and the listeners)
P     write the pidfile again
0-9   make the Nth master-fifo the active one (it is created then)
====  =================================================================
"""
from __future__ import annotations

import logging
import os
import stat
from typing import List

__all__ = ["COMMANDS", "MasterFifo"]

log = logging.getLogger("uwsgipy")

COMMANDS = "rRqQwWcC+-lLsfP0123456789"


class MasterFifo:
    """The configured fifo paths (slot 0 first); ``fileno()`` for select,
    ``read()`` the command letters waiting, ``check()`` once a second,
    ``close()`` at the end."""

    def __init__(self, paths: List[str]) -> None:
        self.paths = list(paths)
        self.slot = 0
        self.rfd = self.wfd = -1
        self._ino = 0

    @property
    def path(self) -> str:
        return self.paths[self.slot]

    def open(self) -> None:
        """(Re)create the active fifo: unlink what is there, mkfifo 0600,
        open both ends non-blocking.  OSError names the path."""
        self.close_fds()
        path = self.path
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OSError(exc.errno, f"master-fifo {path}: cannot remove it: {exc.strerror}") \
                from None
        try:
            os.mkfifo(path, 0o600)
            self.rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self.wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self.close_fds()
            raise OSError(exc.errno, f"master-fifo {path}: {exc.strerror}") from None
        self._ino = os.fstat(self.rfd).st_ino
        log.info("master-fifo: %s", path)

    def fileno(self) -> int:
        return self.rfd

    def read(self) -> str:
        """The command letters waiting (non-blocking)."""
        out = []
        while self.rfd >= 0:
            try:
                chunk = os.read(self.rfd, 256)
            except BlockingIOError:
                break
            except OSError:
                break
            if not chunk:
                break
            out.append(chunk.decode("latin-1"))
        return "".join(out)

    def switch(self, slot: int) -> bool:
        """Make slot N active (a digit command); False if there is none."""
        if not 0 <= slot < len(self.paths):
            log.warning("master-fifo: no fifo number %d (%d configured)", slot, len(self.paths))
            return False
        self.slot = slot
        try:
            self.open()
        except OSError as exc:
            log.error("%s", exc.strerror)
            return False
        log.info("master-fifo: the active fifo is now %s", self.path)
        return True

    def check(self) -> None:
        """Recreate the fifo if it was deleted or replaced on disk."""
        try:
            st = os.stat(self.path)
            same = stat.S_ISFIFO(st.st_mode) and st.st_ino == self._ino
        except OSError:
            same = False
        if not same:
            log.warning("master-fifo: %s was removed or replaced: creating it again", self.path)
            try:
                self.open()
            except OSError as exc:
                log.error("%s", exc.strerror)

    def close_fds(self) -> None:
        for fd in (self.rfd, self.wfd):
            if fd >= 0:
                os.close(fd)
        self.rfd = self.wfd = -1

    def close(self, unlink: bool) -> None:
        self.close_fds()
        if unlink:
            try:
                os.unlink(self.path)
            except OSError:
                pass
