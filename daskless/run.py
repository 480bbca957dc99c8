"""The client side of one run: submit it, listen to its events, collect its results.

After :meth:`RunClient.submit` the client makes no scheduling decision: it stores the sub-DAGs
once, invokes a worker for each partition that has source tasks, and from then on only reads
events (blocking reads on the run's stream). It ends when every requested task has finished, a
task has failed, or a worker running part of the run was lost; in every case the run's keys are
deleted before it returns.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

from dask.multiprocessing import remote_exception

from daskless.callbacks import CallbackDriver
from daskless.plan import Plan
from daskless.scheduler.errors import DasklessError
from daskless.worker_runtime import references, serialization
from daskless.worker_runtime.blobs import open_blobs
from daskless.worker_runtime.context import Invoker, ReleasesRuns
from daskless.worker_runtime.errors import InvocationError, SerializationError, WorkerLostError
from daskless.worker_runtime.keys import key_name
from daskless.worker_runtime.protocol import Event, Invocation, SubDAG
from daskless.worker_runtime.store.base import Store

READ_TIMEOUT_S = 1.0


class TaskFailed(Exception):
    """Carries a failed task's exception out of the event loop."""

    def __init__(self, task_id: int, error: BaseException) -> None:
        super().__init__(task_id, error)
        self.task_id = task_id
        self.error = error


class RunClient:
    """Submits one planned run and follows it to its end."""

    def __init__(self, run_id: str, plan: Plan, store: Store, invoker: Invoker,
                 driver: CallbackDriver, wanted: Sequence[Hashable], inline_limit: int,
                 ttl_s: float) -> None:
        self.run_id = run_id
        self.plan = plan
        self.store = store
        self.invoker = invoker
        self.driver = driver
        self.inline_limit = inline_limit
        self.ttl_s = ttl_s
        self.remaining = {plan.ids[k] for k in wanted if k in plan.ids}
        self.blobs = open_blobs(plan.options)
        self.active: Counter[str] = Counter()
        self.started = False
        self.lost: set[str] = set()
        self.timeline: list[tuple[Hashable, float, float, str]] = []

    def submit(self) -> None:
        if self.plan.options.by_reference:
            blobs = {p: references.put(self.run_id, f"spec-{p}", spec)
                     for p, spec in self.plan.specs.items()}
        else:
            blobs = {p: _dumps_spec(spec) for p, spec in self.plan.specs.items()}
        self.store.create_run(self.run_id, blobs, self.ttl_s)
        self.invoker.invoke([
            Invocation(self.run_id, p, entries,
                       blobs[p] if len(blobs[p]) <= self.inline_limit else None)
            for p, entries in self.plan.entries
        ])

    def wait(self, start_timeout_s: float) -> None:
        """Consume events until every requested task has finished.

        If no worker has started within ``start_timeout_s`` (a platform that cannot start
        workers), the run fails with :class:`InvocationError` instead of waiting forever.
        """
        cursor = "0"
        deadline = time.monotonic() + start_timeout_s
        while self.remaining:
            cursor, events = self.store.read_events(self.run_id, cursor, READ_TIMEOUT_S)
            for event in events:
                self._on_event(event)
            if not self.started and time.monotonic() > deadline:
                raise InvocationError(
                    f"no worker started on run {self.run_id} within {start_timeout_s:g} s; "
                    "check that workers can start and reach the store"
                )

    def _on_event(self, event: Event) -> None:
        kind = event[0]
        if kind == "fin":
            _, task_id, start, end, worker = event
            self.remaining.discard(task_id)
            self.timeline.append((self.plan.keys[task_id], start, end, worker))
            if self.driver.active:
                self.driver.task_finished(self.plan.keys[task_id], worker)
        elif kind == "err":
            _, task_id, blob, text, _worker = event
            raise TaskFailed(task_id, _rebuild_error(blob, text))
        elif kind == "warn":
            _, _task_id, category, message, filename, lineno = event
            warnings.warn_explicit(message, category, filename, lineno)
        elif kind == "start":
            self.started = True
            self.active[event[1]] += 1
        elif kind == "done":
            self.active[event[1]] -= 1
        elif kind == "lost" and self.active[event[1]] > 0:
            self.lost.add(event[1])  # its buffered metrics are gone too (see observe)
            raise WorkerLostError(
                f"worker {event[1]} was lost while running part of run {self.run_id}: {event[2]}"
            )

    def results(self, keys: Sequence[Hashable]) -> dict[Hashable, object]:
        """Values of requested keys: run outputs and persisted data."""
        ids = self.plan.ids
        inside = [k for k in keys if k in ids]
        blobs = self.store.fetch(self.run_id, [ids[k] for k in inside])
        values = self._loaded(inside, blobs)
        outside = [k for k in keys if k not in ids]
        values.update(fetch_persisted(self.store, outside))
        return values

    def inputs_of(self, task_id: int) -> dict[Hashable, object]:
        """Inputs of a failed task that its worker left in the store (for a local rerun)."""
        info = self.plan.specs[self.plan.parts.assignment[self.plan.keys[task_id]]].tasks[task_id]
        blobs = self.store.fetch(self.run_id, list(info.deps))
        values = self._loaded(info.dep_keys, blobs)
        values.update(fetch_persisted(self.store, list(info.external)))
        return values

    def _loaded(
        self, keys: Sequence[Hashable], blobs: Sequence[bytes | None]
    ) -> dict[Hashable, object]:
        if self.blobs is None:
            return _loaded(keys, blobs)
        return {k: self.blobs.loads(_present(k, b)) for k, b in zip(keys, blobs)}

    def delete(self) -> None:
        """Remove the run's keys and its large outputs."""
        try:
            self.store.delete_run(self.run_id)
        finally:
            references.drop_run(self.run_id)
            if isinstance(self.invoker, ReleasesRuns):
                self.invoker.release_run(self.run_id)
            if self.blobs is not None:
                self.blobs.delete_run(self.run_id, wait=False)


def _dumps_spec(spec: SubDAG) -> bytes:
    """A serialized sub-DAG; if that fails, name the first task that cannot be sent."""
    try:
        return serialization.dumps(spec)
    except Exception as exc:
        for info in spec.tasks.values():
            try:
                serialization.dumps(info.node)
            except Exception as task_exc:
                raise SerializationError(
                    info.key, f"{type(task_exc).__name__}: {task_exc}", what="task"
                ) from task_exc
        raise SerializationError(f"partition {spec.partition}", str(exc), what="sub-DAG") from exc


def fetch_persisted(store: Store, keys: Sequence[Hashable]) -> dict[Hashable, object]:
    return _loaded(keys, store.fetch_persisted([key_name(k) for k in keys]))


def _loaded(keys: Sequence[Hashable], blobs: Sequence[bytes | None]) -> dict[Hashable, object]:
    return {k: serialization.loads(_present(k, b)) for k, b in zip(keys, blobs)}


def _present(key: Hashable, blob: bytes | None) -> bytes:
    if blob is None:
        raise DasklessError(f"the value of {key!r} is missing from the store")
    return blob


def _rebuild_error(blob: bytes, text: str) -> BaseException:
    """The task's exception as its own type, with the remote traceback in its message."""
    exc: Any = serialization.loads(blob)
    if isinstance(exc, DasklessError):
        return exc  # the runtime's own errors already say what happened
    return remote_exception(exc, text)
