"""Garbage collection paced for a sync's allocation pattern.

A sync allocates a few container objects per record (decoded documents, rows) that live until
their batch commits and then die by reference counting: none of them is in a cycle, yet at
CPython's default threshold (a young collection every 700 allocations) they survive young
collections, are promoted, and are traversed again by older ones. Measured on a listing with
states (`bench/inventory_cpu.py`), that is ~25 % of the CPU of decoding, building rows and
observing shapes. While any sync runs in the process, a young collection comes every 20,000
allocations instead; cyclic garbage is still collected, a little later.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: gc thresholds while a sync runs (CPython's defaults are 700, 10, 10)
SYNC_GC_THRESHOLD = (20_000, 50, 100)

_lock = threading.Lock()
_running = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def sync_gc_pacing() -> Iterator[None]:
    """Raise the thresholds for the block; the last of concurrent syncs puts them back."""
    global _running, _saved
    with _lock:
        if _running == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(*SYNC_GC_THRESHOLD)
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
