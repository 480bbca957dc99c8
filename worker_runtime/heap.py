"""Keeping the cyclic garbage collector cheap in long-lived worker processes.

A warm worker imports dask, numpy and its tasks' libraries during its first invocations: a few
hundred thousand objects that live as long as the process. Python's full collections walk every
one of them, and a run whose sub-DAGs hold a few thousand tasks allocates enough to trigger about
one full collection per run: measured on the 4096-leaf tree, 100-110 ms per worker and run,
more than the tasks themselves took.

:class:`ImportFreezer` moves the objects alive after an invocation into the collector's permanent
generation (``gc.freeze``), which collections skip, whenever that invocation imported modules; in
steady state (no new imports) it does nothing. It collects first, so that no garbage is frozen.
Frozen objects are still freed by reference counting as usual; only a reference cycle among them
would wait for the process to end. What a run leaves behind (its sub-DAGs, its kept outputs) is
dropped when the run is released, so the objects collections do walk stay few.
"""

from __future__ import annotations

import gc
import sys
import threading


class ImportFreezer:
    """Freezes the long-lived heap after invocations that imported modules."""

    def __init__(self) -> None:
        self._modules = 0
        self._lock = threading.Lock()

    def after_invocation(self) -> None:
        """Call when an invocation ends (from any thread)."""
        if len(sys.modules) == self._modules:
            return
        with self._lock:
            if len(sys.modules) == self._modules:
                return
            self._modules = len(sys.modules)
            gc.collect()  # garbage frozen now would never be collected
            gc.freeze()
