"""What a worker knows about its surroundings, and how a task finds it.

A :class:`WorkerContext` bundles the store, the invoker used for fan-out, the worker's id and a
cache of sub-DAGs. While a task runs, :func:`current` returns the context so that a compute
nested inside a task reuses the worker's store instead of starting a new one.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, cast, runtime_checkable

from daskless.worker_runtime import serialization, values
from daskless.worker_runtime.protocol import Invocation, SubDAG
from daskless.worker_runtime.store.base import Store
from daskless.worker_runtime.values import registry


class Invoker(Protocol):
    """Starts workers for invocations; how depends on the platform."""

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        """Hand invocations over without waiting for them to run."""
        ...


@runtime_checkable
class ReleasesRuns(Protocol):
    """An invoker whose workers keep run data in their own memory (see ``values``)."""

    def release_run(self, run_id: str) -> None:
        """Have every worker call ``WorkerContext.release_run``; never blocks for long."""
        ...


class SpecCache:
    """Recently used sub-DAGs of a worker, so warm workers skip fetching and unpickling."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._specs: OrderedDict[tuple[str, int, int], SubDAG] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Store, run_id: str, partition: int, inline: bytes | None = None,
            epoch: int = 1) -> SubDAG:
        """A partition's sub-DAG in an epoch (a run that recovered has new ones)."""
        key = (run_id, epoch, partition)
        with self._lock:
            if key in self._specs:
                self._specs.move_to_end(key)
                return self._specs[key]
        data = inline if inline is not None else store.load_spec(run_id, partition, epoch)
        # In-memory runs store a reference token instead of the pickled sub-DAG.
        loaded = registry.get(data) if registry.is_reference(data) else serialization.loads(data)
        spec = cast(SubDAG, loaded)
        with self._lock:
            self._specs[key] = spec
            while len(self._specs) > self._size:
                self._specs.popitem(last=False)
        return spec

    def forget(self, run_id: str) -> None:
        """Drop the sub-DAGs of a run that ended (their objects need not outlive it)."""
        with self._lock:
            for key in [k for k in self._specs if k[0] == run_id]:
                del self._specs[key]


def worker_id_for(pid: int) -> str:
    """Host and process id: what a platform monitor can tell about a dead worker too."""
    return f"{socket.gethostname()}-{pid}"


def default_worker_id() -> str:
    """The id of the calling process as a worker."""
    return worker_id_for(os.getpid())


@dataclass
class WorkerContext:
    """Everything an invocation needs besides its payload."""

    store: Store
    invoker: Invoker
    worker_id: str = field(default_factory=default_worker_id)
    specs: SpecCache = field(default_factory=SpecCache)
    # Workers in other processes record the warnings tasks raise and send them to the client.
    forward_warnings: bool = False
    # How the platform hears of a failure the store could not take (see ``worker.handle``);
    # by default it goes to this worker's log (standard error).
    on_undeliverable: Callable[[Invocation, BaseException], None] | None = None
    # Told the id of the task starting (-1 between tasks), where the platform can use it to
    # blame a worker's death on the task it ran (the process pool's shared slot).
    on_task: Callable[[int], None] | None = None

    def undeliverable(self, invocation: Invocation, exc: BaseException) -> None:
        """An invocation failed and even its failure could not be written to the store."""
        if self.on_undeliverable is not None:
            self.on_undeliverable(invocation, exc)
            return
        print(f"daskless worker {self.worker_id}: invocation of run {invocation.run_id} "
              f"partition {invocation.partition} failed and could not report it:",
              file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)

    def release_run(self, run_id: str) -> None:
        """The run ended: drop its values and sub-DAGs kept in this process."""
        values.release_run(run_id)
        self.specs.forget(run_id)


_current = threading.local()


def current() -> WorkerContext | None:
    """The context of the worker running the calling task, if any."""
    return cast("WorkerContext | None", getattr(_current, "context", None))


@contextmanager
def running_in(context: WorkerContext) -> Iterator[None]:
    """Make ``context`` visible to :func:`current` for the duration of a task."""
    previous = current()
    _current.context = context
    try:
        yield
    finally:
        _current.context = previous
