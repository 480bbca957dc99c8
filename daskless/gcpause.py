"""Hold Python's cyclic garbage collector off while the client runs a compute.

Converting and planning a graph of thousands of tasks allocates hundreds of thousands of small
objects (task specs, tuples, named tuples), and so does handling one event per task while the
run goes on. Every few hundred allocations the collector walks the young objects, and its full
collections walk everything the process holds, dask's graph and the plan included: on a
10000-task graph that was about a third of the client's time. Nothing a compute allocates needs
cycles reclaimed before it ends (reference counting still frees everything else at once), so
collection waits until ``get`` returns, like a pause in a long-lived server's request.

Pauses nest and may overlap across threads (several computes at once): the collector is
re-enabled when the last pause ends, and only if it was enabled when the first began. The pause
is process-wide: reference cycles other threads make meanwhile wait until the compute ends.
That is why it is a setting (``daskless.tuning.gc-pause``, on by default; the README gives
what it saves).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused(active: bool = True) -> Iterator[None]:
    """Hold the collector off inside the block; ``active=False`` (``daskless.tuning.gc-pause``
    off) leaves it alone."""
    global _depth, _was_enabled
    if not active:
        yield
        return
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
