"""py-autoreload (uWSGI's option, for development): a thread in worker 1
polls the files of every loaded module and asks the master for a graceful
reload (SIGHUP) when one changes."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Dict

__all__ = ["start_autoreloader"]

log = logging.getLogger("uwsgipy")


def _module_files() -> Dict[str, float]:
    files: Dict[str, float] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        try:
            files[path] = os.stat(path).st_mtime
        except OSError:
            continue
    return files


def start_autoreloader(interval: int, master_pid: int) -> threading.Thread:
    """Poll every ``interval`` seconds; SIGHUP ``master_pid`` once on a
    change.  The thread is a daemon: it ends with the worker."""
    def run() -> None:
        seen = _module_files()
        stop = threading.Event()
        while not stop.wait(interval):
            now = _module_files()
            changed = [p for p, m in now.items() if seen.get(p, m) != m]
            if changed:
                log.info("py-autoreload: %s changed: reloading", changed[0])
                os.kill(master_pid, signal.SIGHUP)
                return
            seen.update(now)

    thread = threading.Thread(target=run, name="uwsgipy-autoreload", daemon=True)
    thread.start()
    return thread
