"""What a worker knows about its surroundings, and how a task finds it.

A :class:`WorkerContext` bundles the store, the invoker used for fan-out, the worker's id and a
cache of sub-DAGs. While a task runs, :func:`current` returns the context so that a compute
nested inside a task reuses the worker's store instead of starting a new one.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, cast, runtime_checkable

from daskless.worker_runtime import serialization
from daskless.worker_runtime.protocol import Invocation, SubDAG
from daskless.worker_runtime.store.base import Store


class Invoker(Protocol):
    """Starts workers for invocations; how depends on the platform."""

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        """Hand invocations over without waiting for them to run."""
        ...


@runtime_checkable
class ReleasesRuns(Protocol):
    """An invoker whose workers keep run data in their own memory (see ``peer_memory``)."""

    def release_run(self, run_id: str) -> None:
        """Tell every worker to drop what it keeps for ``run_id``; never blocks for long."""
        ...


class SpecCache:
    """Recently used sub-DAGs of a worker, so warm workers skip fetching and unpickling."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._specs: OrderedDict[tuple[str, int], SubDAG] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Store, run_id: str, partition: int, inline: bytes | None = None) -> SubDAG:
        key = (run_id, partition)
        with self._lock:
            if key in self._specs:
                self._specs.move_to_end(key)
                return self._specs[key]
        data = inline if inline is not None else store.load_spec(run_id, partition)
        spec = cast(SubDAG, serialization.loads(data))
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


class Keepalive:
    """The originals of small outputs this worker shipped, kept while their run may need them.

    Some objects act on the world when they are garbage collected: ``partd.File()`` deletes its
    directory, which holds data that the copies other tasks received keep appending to. A worker
    that dropped such an original as soon as its output was stored would destroy shared data
    mid-run. Originals of small outputs are therefore kept for as long as their run may go on:
    until the run is released (:meth:`release`: the process pool and the thread invoker tell
    their workers when a run ended) or, where nobody tells (HTTP and Lambda instances), for
    ``min_age_s`` seconds after the run's last original was kept. A count of recent runs alone
    was not enough: an instance shared by busy clients saw 8 other runs within a second and
    dropped a disk shuffle's ``partd`` folder while the run's other writers still appended to
    it. Ended runs (released, or past that age) stay among the ``runs`` most recent, as a
    process pool keeps its objects for a while after a compute. Large outputs (array blocks)
    are not kept.
    """

    def __init__(self, runs: int = 8, min_age_s: float = 300.0) -> None:
        self._runs = runs
        self._min_age_s = min_age_s
        # Runs that may still be going on, by when their last original was kept.
        self._active: OrderedDict[str, tuple[float, list[object]]] = OrderedDict()
        self._ended: OrderedDict[str, list[object]] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, run_id: str, value: object) -> None:
        now = time.monotonic()
        with self._lock:
            if run_id in self._ended:
                self._ended[run_id].append(value)
                self._ended.move_to_end(run_id)
            else:
                _, values = self._active.pop(run_id, (now, []))
                values.append(value)
                self._active[run_id] = (now, values)
            dropped = self._evict(now)
        # Dropped originals may delete files when collected: not while holding the lock.
        del dropped

    def release(self, run_id: str) -> None:
        """The run ended: its originals may go once ``runs`` newer runs have come."""
        with self._lock:
            entry = self._active.pop(run_id, None)
            if entry is not None:
                self._ended[run_id] = entry[1]
            dropped = self._evict(time.monotonic())
        del dropped

    def runs(self) -> list[str]:
        """The runs whose originals are kept: ended ones first, then those still going on."""
        with self._lock:
            return [*self._ended, *self._active]

    def _evict(self, now: float) -> list[object]:
        dropped: list[object] = []
        while len(self._ended) + len(self._active) > self._runs:
            if self._ended:
                dropped.append(self._ended.popitem(last=False))
                continue
            oldest = next(iter(self._active.values()))
            if now - oldest[0] < self._min_age_s:
                break
            dropped.append(self._active.popitem(last=False))
        return dropped


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
    keepalive: Keepalive = field(default_factory=Keepalive)
    # Workers in other processes record the warnings tasks raise and send them to the client.
    forward_warnings: bool = False


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
