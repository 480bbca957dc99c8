"""What every worker program does around its invocations, whatever starts it.

The process pool's workers, the gateway's HTTP instances, ``daskless worker`` and Lambda
instances share these pieces:

- :func:`die_with_parent`: a child of a pool or gateway stops when its parent dies.
- :func:`follow_parent`: commands from the parent on standard input (``release <run>``: drop a
  run's values and sub-DAGs; ``probe <pid> <address>``: try reading a sibling's memory), and exit
  when standard input closes (the parent is gone).
- :func:`configure_nested_computes`: a compute inside a task reuses the worker's store with
  thread workers instead of starting a new backend, and settings the parent passed apply.
- :class:`InvocationGate`: the long-lived heap is frozen after invocations that imported modules
  (see :mod:`.heap`), but only when no other invocation of the process is running, so that
  nothing a running task uses is ever frozen.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TextIO

from daskless.worker_runtime.heap import ImportFreezer
from daskless.worker_runtime.values import peer

RELEASE_COMMAND = "release"
"""A pool writes ``release <run id>`` to a worker's standard input when a run ends."""
PROBE_COMMAND = "probe"
"""``probe <pid> <address>``: read a sibling's probe bytes and answer on the control pipe."""


def die_with_parent() -> None:
    """Ask Linux to stop this process when its parent dies (no-op elsewhere)."""
    if sys.platform != "linux":
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def follow_parent(release: Callable[[str], None] | None = None,
                  control: TextIO | None = None) -> None:
    """Act on the parent's commands on standard input, and exit when it closes."""

    def watch() -> None:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == RELEASE_COMMAND and release is not None:
                release(argument)
            elif command == PROBE_COMMAND and control is not None:
                pid, address = (int(x) for x in argument.split())
                refusal = peer.probe(pid, address)
                answer = "ok" if refusal is None else refusal.replace("\n", " ")
                control.write(f"probed {pid} {answer}\n")
                control.flush()
        os._exit(0)

    threading.Thread(target=watch, name="daskless-parent-watch", daemon=True).start()


def configure_nested_computes(store_url: str, settings: Mapping[str, object]) -> None:
    """A compute inside a task reuses this store with thread workers instead of a new pool,
    and ``settings`` (dask config the parent passed on) apply in this process."""
    import dask.config

    dask.config.set({"daskless.store": store_url, "daskless.invoker": "threads", **settings})


class InvocationGate:
    """Counts the invocations running in this process, and freezes the heap when none is.

    ``gc.freeze`` moves every live object into the permanent generation; an object a running
    task holds would then never have its reference cycles collected. Freezing therefore waits
    until the last running invocation ends (``daskless.tuning.freeze-worker-heap``).
    """

    def __init__(self, freeze: bool) -> None:
        self._freezer = ImportFreezer() if freeze else None
        self._running = 0
        self._lock = threading.Lock()

    @contextmanager
    def invocation(self) -> Iterator[None]:
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                idle = self._running == 0
                if idle and self._freezer is not None:
                    self._freezer.after_invocation()

    @property
    def running(self) -> int:
        return self._running


def tuning(name: str) -> bool:
    """One ``daskless.tuning`` switch (its default is in ``daskless.yaml``)."""
    import dask.config

    return bool(dask.config.get(f"daskless.tuning.{name}"))


def line_buffered_output() -> None:
    """Task output reaches the parent (and the user) line by line, not in 8 KiB blocks."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
