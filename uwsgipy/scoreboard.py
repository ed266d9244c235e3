"""The scoreboard: per-core counters in shared memory.

A core is what runs one request at a time in a worker (uWSGI's word): the
loop thread (``threads = 1``), one app thread (``threads = N``) or one
greenlet slot (``gevent = N``); a worker has that many slots.

An anonymous ``MAP_SHARED`` mapping made by the master before it forks;
the C core writes each core's slot while that core runs a request (layout:
``upy_slot`` in csrc/upy_core.h, mirrored by :class:`Slot`), the master
reads them for harakiri, cheaper and the stats server.  No locks: each
slot has one writer at a time and 8-byte aligned fields.
"""
from __future__ import annotations

import ctypes
import mmap
from typing import Iterator

from . import _core

__all__ = ["Slot", "Scoreboard"]


class Slot(ctypes.Structure):
    """One core (uWSGI's stats word): an app thread, a greenlet slot, or the loop thread."""
    _fields_ = [
        ("request_started", ctypes.c_double),  # CLOCK_MONOTONIC s, 0 idle
        ("avg_rt", ctypes.c_double),           # running average, us
        ("requests", ctypes.c_uint64),
        ("exceptions", ctypes.c_uint64),
        ("tx", ctypes.c_uint64),               # body bytes sent
        ("running_us", ctypes.c_uint64),       # time spent in requests
        ("pid", ctypes.c_uint64),
        ("method", ctypes.c_char * 16),
        ("uri", ctypes.c_char * 88),
        ("static_requests", ctypes.c_uint64),  # of requests: static files
        # for /metrics: requests by status class 1xx..5xx, and by duration
        # bucket (metrics.DURATION_BOUNDS, then one past the last bound)
        ("status_class", ctypes.c_uint64 * 5),
        ("duration", ctypes.c_uint64 * 12),
    ]


assert ctypes.sizeof(Slot) == _core.SLOT_SIZE, "Slot does not match upy_slot"


class Scoreboard:
    """``workers`` blocks of ``cores`` slots (the runner's cores: threads or
    gevent), numbered from 1.  The master gives each worker process a free
    block (not its worker id), so a worker being recycled and its
    replacement never share slots."""

    def __init__(self, workers: int, cores: int) -> None:
        self.workers = workers
        self.cores_per_worker = cores
        self.map = mmap.mmap(-1, max(1, workers * cores) * _core.SLOT_SIZE,
                             flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.slots = (Slot * (workers * cores)).from_buffer(self.map)

    def worker_view(self, block: int) -> memoryview:
        """The writable slice of a block's slots, for _core.Server."""
        size = self.cores_per_worker * _core.SLOT_SIZE
        start = (block - 1) * size
        return memoryview(self.map)[start:start + size]

    def cores(self, block: int) -> Iterator[Slot]:
        """A block's slots, core 0 first."""
        base = (block - 1) * self.cores_per_worker
        for i in range(self.cores_per_worker):
            yield self.slots[base + i]

    def reset(self, block: int) -> None:
        for slot in self.cores(block):
            ctypes.memset(ctypes.addressof(slot), 0, ctypes.sizeof(Slot))
