"""The scoreboard: per-worker-thread counters in shared memory.

An anonymous ``MAP_SHARED`` mapping made by the master before it forks;
each worker thread's C loop writes its own slot (layout: ``upy_slot`` in
csrc/upy_core.h, mirrored by :class:`Slot`), the master reads them for
harakiri and the stats server.  No locks: each slot has one writer and
8-byte aligned fields.
"""
from __future__ import annotations

import ctypes
import mmap
from typing import Iterator

from . import _core

__all__ = ["Slot", "Scoreboard"]


class Slot(ctypes.Structure):
    """One worker thread ("core" in uWSGI's stats)."""
    _fields_ = [
        ("request_started", ctypes.c_double),  # CLOCK_MONOTONIC s, 0 idle
        ("avg_rt", ctypes.c_double),           # running average, us
        ("requests", ctypes.c_uint64),
        ("exceptions", ctypes.c_uint64),
        ("tx", ctypes.c_uint64),               # body bytes sent
        ("running_us", ctypes.c_uint64),       # time spent in requests
        ("pid", ctypes.c_uint64),
        ("method", ctypes.c_char * 16),
        ("uri", ctypes.c_char * 96),
    ]


assert ctypes.sizeof(Slot) == _core.SLOT_SIZE, "Slot does not match upy_slot"


class Scoreboard:
    """``workers`` blocks of ``threads`` slots, numbered from 1.  The master
    gives each worker process a free block (not its worker id), so a worker
    being recycled and its replacement never share slots."""

    def __init__(self, workers: int, threads: int) -> None:
        self.workers = workers
        self.threads = threads
        self.map = mmap.mmap(-1, max(1, workers * threads) * _core.SLOT_SIZE,
                             flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.slots = (Slot * (workers * threads)).from_buffer(self.map)

    def worker_view(self, block: int) -> memoryview:
        """The writable slice of a block's slots, for _core.Server."""
        start = (block - 1) * self.threads * _core.SLOT_SIZE
        return memoryview(self.map)[start:start + self.threads * _core.SLOT_SIZE]

    def cores(self, block: int) -> Iterator[Slot]:
        base = (block - 1) * self.threads
        for i in range(self.threads):
            yield self.slots[base + i]

    def reset(self, block: int) -> None:
        for slot in self.cores(block):
            ctypes.memset(ctypes.addressof(slot), 0, ctypes.sizeof(Slot))
