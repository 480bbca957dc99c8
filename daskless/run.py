"""The client side of one run: submit it, listen to its events, recover it, collect results.

After :meth:`RunClient.submit` the client makes no scheduling decision while the run goes well:
it stores the sub-DAGs once, invokes a worker for each entry group, and from then on only reads
events (blocking reads on the run's stream, plus what a local platform tells it directly
through :meth:`notify`).

When work is lost (a worker died, an invocation was dropped, a lease lapsed, an output died
with its worker, or every invocation ended with requested tasks left), the client starts a new
epoch of the run with what is left (:mod:`daskless.recovery`); when that is hopeless it ends
with a named error. It never waits forever: :meth:`RunClient.wait` ends when every requested
task has finished, or with a task's own exception (its type and remote frames), an invocation
that failed (the worker and the cause), ``KilledWorker`` (a task whose workers kept dying), a
run whose keys are gone or whose store restarted, work lost again and again without progress
(:class:`RunStalledError`), or invocations that no worker takes over within ``start-timeout``
while nothing runs. Progress is told by the invocations of the current epoch: the client made
the entry ones, and each worker says at its end which ones it made (``InvocationEnded``).

In every case the caller deletes the run (:meth:`RunClient.delete`), which releases its values
through the run's value tier, the one release path for client and workers.
"""

from __future__ import annotations

import queue
import time
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from daskless import recovery
from daskless.callbacks import CallbackDriver
from daskless.plan import Plan, Retries, recovery_plan
from daskless.recovery import Attempt, Blame
from daskless.scheduler.errors import DasklessError
from daskless.worker_runtime import serialization, values
from daskless.worker_runtime.context import Invoker, ReleasesRuns
from daskless.worker_runtime.errors import (
    InvocationError,
    RunGoneError,
    RunStalledError,
    SerializationError,
    StoreUnavailableError,
    WorkerLostError,
)
from daskless.worker_runtime.events import (
    Event,
    InvocationEnded,
    InvocationFailed,
    InvocationStarted,
    RunCreated,
    RunRecovered,
    TaskErred,
    TasksFinished,
    TaskWarned,
    WorkerLost,
)
from daskless.worker_runtime.keys import key_name
from daskless.worker_runtime.protocol import Invocation, SubDAG
from daskless.worker_runtime.store.base import Store
from daskless.worker_runtime.store.urls import masked
from daskless.worker_runtime.values import registry

READ_TIMEOUT_S = 1.0
#: Recoveries in a row without a task finishing before the run is given up (at least as many
#: as the deaths ``allowed-failures`` lets one task cause, so that those end in KilledWorker).
MAX_FRUITLESS_RECOVERIES = 3


@dataclass(frozen=True)
class Following:
    """How a client follows its run: its timeouts, and what recovery needs."""

    start_timeout_s: float = 60.0
    lease_s: float = 10.0
    allowed_failures: int = 3
    parallelism: int = 1
    workers: int = 1
    retries: Retries = field(default_factory=Retries)


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
                 ttl_s: float, following: Following | None = None) -> None:
        self.run_id = run_id
        self.plan = plan
        self.store = store
        self.invoker = invoker
        self.driver = driver
        self.inline_limit = inline_limit
        self.ttl_s = ttl_s
        self.following = following or Following()
        self.wanted = {plan.ids[k] for k in wanted if k in plan.ids}
        self.remaining = set(self.wanted)
        self.tier = values.tier_for(plan.options.tier)
        self.attempt = Attempt(1, plan)
        self.awaiting: int | None = None  # an epoch started whose marker is not read yet
        self.blame = Blame(self.following.allowed_failures)
        self.recoveries: list[str] = []
        self.recovered_at: list[float] = []  # when each recovery began (time.time())
        self.fruitless = 0
        self.started = 0  # invocations taken over, in every epoch
        self.takers: Counter[str] = Counter()  # and by which workers
        self.lost: set[str] = set()
        self.finished = 0
        self.instance = ""
        self._inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            TasksFinished: self._tasks_finished,
            TaskErred: self._task_erred,
            TaskWarned: self._task_warned,
            InvocationStarted: self._invocation_started,
            InvocationEnded: self._invocation_ended,
            InvocationFailed: self._invocation_failed,
            WorkerLost: self._worker_lost,
            RunRecovered: self._run_recovered,
            RunCreated: lambda _event: None,
        }

    @property
    def epoch(self) -> int:
        return self.attempt.epoch

    def submit(self) -> None:
        self.instance = self.store.instance()
        specs = self._serialized(self.plan, 1)
        self.store.create_run(self.run_id, specs, self.ttl_s)
        self._invoke(self.plan, specs)

    def _serialized(self, plan: Plan, epoch: int) -> dict[int, bytes]:
        if plan.options.tier.kind == "reference":
            return {p: registry.put(self.run_id, f"spec-{epoch}-{p}", spec)
                    for p, spec in plan.specs.items()}
        return {p: _dumps_spec(spec) for p, spec in plan.specs.items()}

    def _invoke(self, plan: Plan, specs: dict[int, bytes]) -> None:
        invocations = [
            Invocation(self.run_id, p, entries,
                       specs[p] if len(specs[p]) <= self.inline_limit else None,
                       epoch=self.epoch, memory_mb=plan.options.requested_size(p))
            for p, entries in plan.entries
        ]
        self.attempt.made(invocations)
        self.invoker.invoke(invocations)

    def notify(self, event: Event) -> None:
        """An event from a platform in this process (the pool saw a worker die); thread-safe."""
        self._inbox.put(event)

    # -- following the run -----------------------------------------------------------------

    def wait(self) -> None:
        """Consume events until every requested task has finished; see the module docstring."""
        cursor = "0"
        while self.remaining:
            cursor, events = self.store.read_events(self.run_id, cursor, READ_TIMEOUT_S)
            for event in events:
                # Until the new epoch's marker, the stream holds the old epoch's events only.
                if self.awaiting is None or isinstance(event, RunRecovered):
                    self._handlers[type(event)](event)
            notices = 0
            while not self._inbox.empty():  # they say which epoch they are about
                self._handlers[type(event := self._inbox.get())](event)
                notices += 1
            if not events and not notices and self.remaining and self.awaiting is None:
                self._check_progress()

    def _check_progress(self) -> None:
        """Nothing arrived for a while: is the run alive, and is its work still under way?"""
        self._check_alive()
        leases = self.store.leases(self.run_id, self.attempt.running())
        lapsed = [self._blame(inv, lease.task, "its lease lapsed: the worker vanished")
                  for inv, lease in leases.items() if lease.lapsed]
        if lapsed:  # one new epoch for all of them: each lapse is not a recovery of its own
            self._recover("; ".join(dict.fromkeys(lapsed)))
            return
        _made, started, ended = self.attempt.counts
        if started > ended:
            return
        waited = [seconds for _, seconds in self.attempt.waiting()]
        if not waited:
            self._recover(f"every invocation of epoch {self.epoch} ended, yet "
                          f"{len(self.remaining)} requested task(s) never ran", stalled=True)
        elif time.monotonic() - self.attempt.idle_since() > self.following.start_timeout_s:
            raise InvocationError(
                f"{len(waited)} invocation(s) of run {self.run_id} were not taken over by any "
                f"worker within {self.following.start_timeout_s:g} s while none ran; check "
                "that workers can start and reach the store"
            )
        elif max(waited) > self.following.lease_s:
            # Dropped, or queued behind other work: invoking again is no lost progress, and
            # the start timeout (whose clock goes on) still ends a platform that takes none.
            self._recover(f"{len(waited)} invocation(s) not taken over within "
                          f"{self.following.lease_s:g} s (dropped?)", stalled=True,
                          unserved_since=self.attempt.idle_since())

    def _check_alive(self) -> None:
        if self.store.run_alive(self.run_id):
            return
        if self.store.instance() != self.instance:
            raise StoreUnavailableError(masked(self.store.url),
                                        "the store restarted and forgot the run")
        raise RunGoneError(
            f"the keys of run {self.run_id} are gone from the store: it expired "
            "(daskless.run-ttl), or another client deleted it"
        )

    def _tasks_finished(self, event: TasksFinished) -> None:
        self.remaining.difference_update(event.tasks)
        self.finished += len(event.tasks)
        self.fruitless = 0
        if self.driver.active:
            for task_id in event.tasks:
                self.driver.task_finished(self.plan.keys[task_id], event.worker)

    def _task_erred(self, event: TaskErred) -> None:
        raise TaskFailed(event.task, _task_error(event))

    @staticmethod
    def _task_warned(event: TaskWarned) -> None:
        warnings.warn_explicit(event.message, event.category, event.filename, event.lineno)

    def _invocation_started(self, event: InvocationStarted) -> None:
        if event.epoch == self.epoch:
            self.attempt.started(event.inv, event.partition, event.worker)
            self.started += 1
            self.takers[event.worker] += 1

    def recorded_invocations(self) -> int:
        """Invocations whose metrics are to be expected: those taken over by workers that were
        not lost (a lost worker's buffered metrics died with it)."""
        return sum(n for worker, n in self.takers.items() if worker not in self.lost)

    def _invocation_ended(self, event: InvocationEnded) -> None:
        self.attempt.ended(event.inv)
        self.attempt.made_ids(event.invoked)

    def _invocation_failed(self, event: InvocationFailed) -> None:
        if event.epoch != self.epoch:
            return
        error = invocation_error(event)
        if isinstance(error, WorkerLostError):  # an input died with the worker that held it
            self._recover(f"worker {event.worker} found an input gone: {error}")
            return
        raise TaskFailed(-1, error)

    def _worker_lost(self, event: WorkerLost) -> None:
        if event.epoch != self.epoch:
            return
        self.lost.add(event.worker)  # its buffered metrics are gone too (see observe)
        if self.attempt.has_ended(event.inv):  # it died after its invocation: what it kept?
            self._recover_outputs(f"worker {event.worker} died after its invocation")
        elif event.retried and not self.attempt.is_running(event.inv):
            return  # it never started, and the platform runs it again
        else:
            self._lost_running(event.inv, event.task, event.reason, event.worker)

    def _lost_running(self, inv: str, task: int, reason: str, worker: str = "") -> None:
        """A worker died (or vanished) while it ran ``task`` of invocation ``inv``."""
        self._recover(self._blame(inv, task, reason, worker))

    def _blame(self, inv: str, task: int, reason: str, worker: str = "") -> str:
        """Count the death against the task it ran (``KilledWorker`` if too many); returns the
        reason to recover with."""
        known = self.attempt.invocations.get(inv)
        worker = worker or (known.worker if known is not None else None) or "unknown"
        if task < 0:  # the platform does not know: the worker's last lease renewal may
            lease = self.store.leases(self.run_id, [inv]).get(inv)
            task = lease.task if lease is not None else -1
        if worker != "unknown":
            self.lost.add(worker)
        if 0 <= task < len(self.plan.keys):
            self.blame.death(task, worker, self.plan.keys[task], reason)
        return f"worker {worker} was lost: {reason}"

    def _run_recovered(self, event: RunRecovered) -> None:
        if event.epoch == self.awaiting:
            self.awaiting = None

    # -- recovery --------------------------------------------------------------------------

    def _recover_outputs(self, reason: str) -> None:
        """A worker died between invocations: recover only if an output it kept is needed."""
        available, lost = self._surviving_outputs()
        if lost and recovery.needed_tasks(self.plan, available, self.remaining):
            self._recover(reason, (available, lost))

    def _recover(self, reason: str, outputs: tuple[set[int], list[int]] | None = None,
                 stalled: bool = False, unserved_since: float | None = None) -> None:
        """Start a new epoch of the run with the work that is left (see ``recovery``);
        ``unserved_since``: it is started because nothing was taken over since then."""
        noticed = time.time()
        self.fruitless += unserved_since is None
        limit = max(MAX_FRUITLESS_RECOVERIES, self.following.allowed_failures)
        if self.fruitless > limit:
            error = RunStalledError if stalled else WorkerLostError
            recent = [*self.recoveries[-limit:], reason]
            causes = "; ".join(dict.fromkeys(recent))
            raise error(f"run {self.run_id} can no longer make progress: work was lost "
                        f"{self.fruitless} times in a row without a task finishing: {causes}")
        available, lost = outputs or self._surviving_outputs()
        self.remaining = self.wanted - available
        needed = recovery.needed_tasks(self.plan, available, self.remaining)
        epoch = self.epoch + 1
        follow = self.following
        plan = recovery_plan(self.plan, self.run_id, {self.plan.keys[t] for t in needed},
                             recovery.stored_inputs(self.plan, needed, available),
                             follow.parallelism, follow.workers, follow.retries)
        specs = self._serialized(plan, epoch) if needed else {}
        self.store.recover(self.run_id, self.epoch, epoch, specs, lost,
                           RunRecovered(epoch, reason))
        self.recoveries.append(reason)
        self.recovered_at.append(noticed)
        self.attempt = Attempt(epoch, plan, unserved_since=unserved_since)
        self.awaiting = epoch
        if needed:
            self._invoke(plan, specs)

    def _surviving_outputs(self) -> tuple[set[int], list[int]]:
        """Outputs that can still be read (with results already persisted), and lost ones."""
        available, lost = recovery.surviving_outputs(
            self.store, self.run_id, self.plan.options.tier.kind == "peer")
        return available | recovery.persisted_results(self.store, self.plan, self.wanted), lost

    # -- results ---------------------------------------------------------------------------

    def collect(self, keys: Sequence[Hashable]) -> dict[Hashable, object]:
        """The requested values; one that died with the worker that kept it is computed
        again (as any lost output is) before it is returned."""
        while True:
            try:
                return self.results(keys)
            except WorkerLostError as exc:
                self._recover(f"a result died with its worker: {exc}")
                self.wait()

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
        info = self.plan.task(task_id)
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
