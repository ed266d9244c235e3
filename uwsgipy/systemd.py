"""systemd integration: sd_notify(3) and socket activation (sd_listen_fds).

Both follow the documented protocols: ``NOTIFY_SOCKET`` is a unix datagram
socket (``@`` = abstract namespace) that takes ``READY=1``,
``STOPPING=1``, ``RELOADING=1``, ``STATUS=...``, ``MAINPID=...``;
``LISTEN_PID``/``LISTEN_FDS`` pass listening sockets starting at fd 3.
"""
from __future__ import annotations

import os
import socket
from typing import List

__all__ = ["notify", "listen_fds"]

SD_LISTEN_FDS_START = 3


def notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1") to systemd; False when not under a
    Type=notify unit or the send fails (never raises)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError:
        return False


def listen_fds(unset: bool = True) -> List[int]:
    """The fds passed by socket activation, or [] when they are not for
    this process.  With unset, the variables are removed so workers and
    re-executions do not take them again."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if unset:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    if pid != os.getpid() or count <= 0:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))
