"""The client side of one run: submit it, listen to its events, collect its results.

After :meth:`RunClient.submit` the client makes no scheduling decision: it stores the sub-DAGs
once, invokes a worker for each entry group, and from then on only reads events (blocking reads
on the run's stream, plus what a local platform tells it directly through :meth:`notify`).

It never waits forever. :meth:`RunClient.wait` ends when every requested task has finished, or
with a named error: a task's own exception (its type and remote frames), an invocation that
failed (the worker and the cause), a lost worker, a run whose keys are gone, a run that can no
longer make progress (every invocation made for it has ended, yet requested tasks never ran:
:class:`RunStalledError`), or invocations that no worker takes over within ``start-timeout``
while nothing runs. Progress is told by counting invocations: the client made the entry ones,
and each worker says at its end how many it made (``InvocationEnded.invoked``).

In every case the caller deletes the run (:meth:`RunClient.delete`), which releases its values
through the run's value tier, the one release path for client and workers.
"""

from __future__ import annotations

import queue
import time
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from daskless.callbacks import CallbackDriver
from daskless.plan import Plan
from daskless.scheduler.errors import DasklessError
from daskless.worker_runtime import serialization, values
from daskless.worker_runtime.context import Invoker, ReleasesRuns
from daskless.worker_runtime.errors import (
    InvocationError,
    RunGoneError,
    RunStalledError,
    SerializationError,
    WorkerLostError,
)
from daskless.worker_runtime.events import (
    Event,
    InvocationEnded,
    InvocationFailed,
    InvocationStarted,
    RunCreated,
    TaskErred,
    TasksFinished,
    TaskWarned,
    WorkerLost,
)
from daskless.worker_runtime.keys import key_name
from daskless.worker_runtime.protocol import Invocation, SubDAG
from daskless.worker_runtime.store.base import Store
from daskless.worker_runtime.values import registry

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
        self.tier = values.tier_for(plan.options.tier)
        # Invocations: made (entries + what workers said they made), started, ended.
        self.expected = len(plan.entries)
        self.started = 0
        self.ended = 0
        self.active: Counter[str] = Counter()
        self.lost: set[str] = set()
        self.finished = 0
        self._inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            TasksFinished: self._tasks_finished,
            TaskErred: self._task_erred,
            TaskWarned: self._task_warned,
            InvocationStarted: self._invocation_started,
            InvocationEnded: self._invocation_ended,
            InvocationFailed: self._invocation_failed,
            WorkerLost: self._worker_lost,
            RunCreated: lambda _event: None,
        }

    def submit(self) -> None:
        if self.plan.options.tier.kind == "reference":
            blobs = {p: registry.put(self.run_id, f"spec-{p}", spec)
                     for p, spec in self.plan.specs.items()}
        else:
            blobs = {p: _dumps_spec(spec) for p, spec in self.plan.specs.items()}
        self.store.create_run(self.run_id, blobs, self.ttl_s)
        self.invoker.invoke([
            Invocation(self.run_id, p, entries,
                       blobs[p] if len(blobs[p]) <= self.inline_limit else None)
            for p, entries in self.plan.entries
        ])

    def notify(self, event: Event) -> None:
        """An event from a platform in this process (the pool saw a worker die); thread-safe."""
        self._inbox.put(event)

    # -- following the run -----------------------------------------------------------------

    def wait(self, start_timeout_s: float) -> None:
        """Consume events until every requested task has finished; see the module docstring."""
        cursor = "0"
        quiet_since = time.monotonic()
        while self.remaining:
            cursor, events = self.store.read_events(self.run_id, cursor, READ_TIMEOUT_S)
            while not self._inbox.empty():
                events.append(self._inbox.get())
            for event in events:
                self._handlers[type(event)](event)
            if events:
                quiet_since = time.monotonic()
            elif self.remaining:
                self._check_progress(time.monotonic() - quiet_since, start_timeout_s)

    def _check_progress(self, quiet_s: float, start_timeout_s: float) -> None:
        """Nothing arrived for a while: is the run still alive, and can it still progress?"""
        if not self.store.run_alive(self.run_id):
            raise RunGoneError(
                f"the keys of run {self.run_id} are gone from the store: it expired "
                "(daskless.run-ttl), the store was restarted, or another client deleted it"
            )
        running = self.started - self.ended
        if running or (self.started < self.expected and quiet_s < start_timeout_s):
            return
        if self.started >= self.expected:
            raise RunStalledError(
                f"run {self.run_id} can no longer make progress: all {self.ended} invocations "
                f"made for it have ended, yet {len(self.remaining)} requested task(s) never "
                f"finished (first: {self._first_remaining()!r})"
            )
        raise InvocationError(
            f"{self.expected - self.started} invocation(s) of run {self.run_id} were not taken "
            f"over by any worker within {start_timeout_s:g} s while none ran; check that "
            "workers can start and reach the store"
        )

    def _first_remaining(self) -> Hashable:
        return self.plan.keys[min(self.remaining)]

    def _tasks_finished(self, event: TasksFinished) -> None:
        self.remaining.difference_update(event.tasks)
        self.finished += len(event.tasks)
        if self.driver.active:
            for task_id in event.tasks:
                self.driver.task_finished(self.plan.keys[task_id], event.worker)

    def _task_erred(self, event: TaskErred) -> None:
        raise TaskFailed(event.task, _task_error(event))

    @staticmethod
    def _task_warned(event: TaskWarned) -> None:
        warnings.warn_explicit(event.message, event.category, event.filename, event.lineno)

    def _invocation_started(self, event: InvocationStarted) -> None:
        self.started += 1
        self.active[event.worker] += 1

    def _invocation_ended(self, event: InvocationEnded) -> None:
        self.ended += 1
        self.expected += event.invoked
        self.active[event.worker] -= 1

    def _invocation_failed(self, event: InvocationFailed) -> None:
        raise TaskFailed(-1, invocation_error(event))

    def _worker_lost(self, event: WorkerLost) -> None:
        was_running = self.active[event.worker] > 0
        if was_running:
            self.active[event.worker] -= 1
            self.ended += 1
        if event.retried:  # the platform runs the invocation again: a new start will come
            self.expected += was_running
            return
        self.lost.add(event.worker)  # its buffered metrics are gone too (see observe)
        when = "while running" if was_running else "before it started"
        raise WorkerLostError(
            f"worker {event.worker} was lost {when} its part (partition {event.partition}) of "
            f"run {self.run_id}: {event.reason}"
        )

    # -- results ---------------------------------------------------------------------------

    def results(self, keys: Sequence[Hashable]) -> dict[Hashable, object]:
        """Values of requested keys: run outputs and persisted data."""
        ids = self.plan.ids
        inside = [k for k in keys if k in ids]
        data = self.store.fetch(self.run_id, [ids[k] for k in inside])
        found = {k: self.tier.load(_present(k, d), k) for k, d in zip(inside, data)}
        found.update(fetch_persisted(self.store, [k for k in keys if k not in ids]))
        return found

    def inputs_of(self, task_id: int) -> dict[Hashable, object]:
        """Inputs of a failed task that its worker left in the store (for a local rerun)."""
        info = self.plan.specs[self.plan.parts.assignment[self.plan.keys[task_id]]].tasks[task_id]
        data = self.store.fetch(self.run_id, list(info.deps))
        found = {k: self.tier.load(_present(k, d), k) for k, d in zip(info.dep_keys, data)}
        found.update(fetch_persisted(self.store, list(info.external)))
        return found

    def delete(self) -> None:
        """Remove the run's keys and release its values, here and in local workers."""
        try:
            self.store.delete_run(self.run_id)
        finally:
            self.tier.release_run(self.run_id)
            if isinstance(self.invoker, ReleasesRuns):
                self.invoker.release_run(self.run_id)


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
    data = store.fetch_persisted([key_name(k) for k in keys])
    return {k: serialization.loads(_present(k, d)) for k, d in zip(keys, data)}


def _present(key: Hashable, data: bytes | None) -> bytes:
    if data is None:
        raise DasklessError(f"the value of {key!r} is missing from the store")
    return data


def _task_error(event: TaskErred) -> BaseException:
    """The task's exception as its own type, its traceback the task's frames."""
    try:
        return serialization.loads_error(event.error)
    except Exception:  # its class does not exist here: the text is all there is
        return RuntimeError(f"task failed on worker {event.worker}:\n{event.text}")


def invocation_error(event: InvocationFailed) -> BaseException:
    """What the caller sees of an invocation that failed: the runtime's own errors as they
    are, anything else as an ``InvocationError`` naming the worker and the cause."""
    try:
        cause = serialization.loads_error(event.error)
    except Exception:
        cause = RuntimeError(event.text)
    if isinstance(cause, DasklessError):
        return cause
    hint = ""
    if isinstance(cause, ImportError) and cause.name:
        hint = f" (is {cause.name!r} installed where workers run?)"
    error = InvocationError(
        f"worker {event.worker} could not run its part (partition {event.partition}) of the "
        f"run: {type(cause).__name__}: {cause}{hint}"
    )
    error.__cause__ = cause
    return error
