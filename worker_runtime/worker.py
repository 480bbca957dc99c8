"""The worker loop's I/O shell: run one invocation, talking to the store and the invoker.

Every platform (thread pool, process pool, HTTP worker, Lambda) calls :func:`handle` with an
:class:`~daskless.worker_runtime.protocol.Invocation` and a
:class:`~daskless.worker_runtime.context.WorkerContext`. :class:`Execution` does the I/O (load
sub-DAGs, fetch inputs, run tasks, serialize through the run's value tier, deliver to the store,
invoke workers, record metrics); every decision (what runs next, what is marked, uploaded, handed
off, released, when to flush, which partition to become and which to invoke) is made by the
sans-I/O core, :class:`~daskless.worker_runtime.loop.InvocationState`.

What the client hears, always: an ``InvocationStarted`` event before anything else (so that it
knows this worker took the invocation over), then ``TasksFinished`` batches with each delivery,
and ``InvocationEnded`` (with how many invocations it made) at the end. Failures never pass
silently: a task's exception goes out as ``TaskErred`` with its frames; anything else that stops
the invocation (its sub-DAG cannot be loaded because a module is missing where workers run, the
store refused a write, an input is gone) goes out as ``InvocationFailed`` naming this worker and
the cause. Only when the store itself cannot take that event does :func:`handle` hand the failure
to the platform (``WorkerContext.undeliverable``), which has its own channel to the client.
"""

from __future__ import annotations

import contextlib
import pickle
import time
import traceback
import warnings
from collections.abc import Hashable, Iterator, Sequence
from types import TracebackType
from typing import NoReturn

from daskless.worker_runtime import faults, leases, metrics, serialization, values
from daskless.worker_runtime.context import WorkerContext, running_in
from daskless.worker_runtime.errors import RunGoneError, SerializationError
from daskless.worker_runtime.events import (
    Event,
    InvocationEnded,
    InvocationFailed,
    InvocationStarted,
    TaskErred,
    TaskWarned,
)
from daskless.worker_runtime.keys import key_name
from daskless.worker_runtime.loop import Dispatch, InvocationState
from daskless.worker_runtime.protocol import Invocation, RunOptions, SubDAG, TaskInfo
from daskless.worker_runtime.store.base import Claim


class _Abort(Exception):
    """The invocation stops: its run failed (and the client was told) or is gone."""


class Execution:
    """One invocation on one worker; see the module docstring."""

    def __init__(self, context: WorkerContext, invocation: Invocation) -> None:
        self.ctx = context
        self.invocation = invocation
        self.run_id = invocation.run_id
        self.epoch = invocation.epoch
        self.invoked: list[str] = []
        self.current_task = -1
        self.metrics: metrics.MetricsRecorder = metrics.NoRecorder()
        self._state: InvocationState | None = None

    @property
    def state(self) -> InvocationState:
        assert self._state is not None, "the invocation has not started"
        return self._state

    # -- driving ---------------------------------------------------------------------------

    def run(self) -> None:
        """Run until no work is left; every failure is reported to the client, not raised."""
        faults.kill_point("before-start")
        try:
            spec = self._load_spec()
            self._claim(spec.options.lease_ms)
        except RunGoneError:  # gone, recovered without this attempt, or a duplicate delivery
            return
        except Exception as exc:  # its sub-DAG cannot be loaded here (a module is missing...)
            self._report_failure(exc)
            return
        faults.kill_point("after-claim")
        held = leases.keeper(spec.options.lease_ms).holding(
            self.ctx.store, self.run_id, self.epoch, self.invocation.id, lambda: self.current_task)
        with held:
            try:
                self._start(spec)
                self._loop()
            except (_Abort, RunGoneError):
                pass
            except Exception as exc:
                self._report_failure(exc)
            finally:
                self.metrics.finish()
                left = self._state.take_events() if self._state is not None else []
                ended = InvocationEnded(self.ctx.worker_id, time.time(), self.invocation.id,
                                        tuple(self.invoked))
                self._send([*left, ended])

    def _load_spec(self) -> SubDAG:
        inv, ctx = self.invocation, self.ctx
        loading = time.perf_counter()
        spec = ctx.specs.get(ctx.store, self.run_id, inv.partition, inv.inline_spec, inv.epoch)
        self._spec_s = time.perf_counter() - loading
        return spec

    def _claim(self, lease_ms: int) -> None:
        """Take the invocation over, or learn that another worker did (a duplicate delivery):
        the claim, the first lease and the start event go in one atomic write."""
        inv, worker = self.invocation, self.ctx.worker_id
        started = InvocationStarted(worker, inv.partition, len(inv.entries), time.time(), inv.id,
                                    inv.epoch)
        self.ctx.store.deliver(self.run_id, events=[started], epoch=self.epoch,
                               claim=Claim(inv.id, worker, lease_ms))

    def _start(self, spec: SubDAG) -> None:
        inv, ctx = self.invocation, self.ctx
        self.options: RunOptions = spec.options
        self.tier = values.tier_for(spec.options.tier)
        self.metrics = metrics.recorder_for(ctx.store, ctx.worker_id, inv, spec.options.metrics,
                                            self._spec_s,
                                            spec.options.memory_of(inv.partition))
        self._state = InvocationState(spec, ctx.worker_id)
        self._enter(inv.partition, inv.entries)

    def _loop(self) -> None:
        state = self.state
        while True:
            info = state.next_task()
            if info is not None:
                self._execute(info)
            elif not state.outbox.pending():
                return
            if state.flush_due():
                dispatch = self._flush()
                if dispatch.become is not None:
                    self._become(*dispatch.become)

    def _enter(self, partition: int, entries: Sequence[int]) -> None:
        """Start from tasks whose inputs are all available, fetching what is not held."""
        missing = self.state.enter(partition, entries)
        if missing:
            fetched = self.metrics.fetch(self.ctx.store, self.run_id, [d for d, _ in missing])
            for (dep, key), data in zip(missing, fetched):
                self.state.provide(dep, self._load(dep, key, data))

    def _become(self, partition: int, tasks: Sequence[int]) -> None:
        faults.kill_point("in-become")
        if not self.state.has_spec(partition):
            spec = self.ctx.specs.get(self.ctx.store, self.run_id, partition, epoch=self.epoch)
            self.state.add_spec(spec)
        self._enter(partition, tasks)

    # -- tasks -----------------------------------------------------------------------------

    def _execute(self, info: TaskInfo) -> None:
        inputs = self._inputs(info)
        self._running(info.id)
        try:  # the slot outlives the invocation: a failed task must not stay blamed in it
            faults.kill_point("mid-task")
            value, start = self._attempts(info, inputs)
        finally:
            self._running(-1)
        self.metrics.task(info, start, time.time(), value)
        self.state.finished(info, value)
        faults.kill_point("after-task")

    def _attempts(self, info: TaskInfo, inputs: dict[Hashable, object]) -> tuple[object, float]:
        """Run the task, again after an exception as ``retries`` allows; returns its value and
        when its last attempt started."""
        for attempt in range(1, info.retries + 2):
            start = time.time()
            try:
                with running_in(self.ctx), self._warnings_of(info):
                    return info.node(inputs), start
            except BaseException as exc:
                self.metrics.failed(info.id, start, attempt, exc)
                # Exceptions are retried as the task allows; leaving the process is not.
                if attempt > info.retries or not isinstance(exc, Exception):
                    self._fail(info, inputs, exc, attempt)
        raise AssertionError("unreachable: the last attempt returns or fails")

    def _running(self, task_id: int) -> None:
        """Which task runs now: renewed leases and the platform blame a death on it."""
        self.current_task = task_id
        if self.ctx.on_task is not None:
            self.ctx.on_task(task_id)

    def _inputs(self, info: TaskInfo) -> dict[Hashable, object]:
        inputs, absent = self.state.take_inputs(info)
        if absent:
            fetched = self.metrics.fetch(self.ctx.store, self.run_id, [d for d, _ in absent])
            for (dep, key), data in zip(absent, fetched):
                inputs[key] = self._load(dep, key, data)
        if info.external:
            stored = self.ctx.store.fetch_persisted([key_name(k) for k in info.external])
            for key, data in zip(info.external, stored):
                if data is None:
                    raise RunGoneError(f"persisted input {key!r} is gone")
                inputs[key] = serialization.loads(data)
        return inputs

    def _load(self, dep: int, key: Hashable, data: bytes | None) -> object:
        if data is None:
            raise RunGoneError(f"input {key!r} ({dep}) of run {self.run_id} is not in the store")
        return self.tier.load(data, key)

    @contextlib.contextmanager
    def _warnings_of(self, info: TaskInfo) -> Iterator[None]:
        """Record the task's warnings for the client, whose filters then decide what to do."""
        if not self.ctx.forward_warnings:
            yield
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            self.state.event(TaskWarned(info.id, _picklable(w.category), str(w.message),
                                        w.filename, w.lineno))

    # -- the store -------------------------------------------------------------------------

    def _flush(self) -> Dispatch:
        flush = self.state.take_flush()
        outputs, persisted = self._serialize(flush.outputs)
        started = time.time()
        completed = self.ctx.store.deliver(
            self.run_id, outputs=outputs, marks=flush.marks, events=flush.events,
            persisted=persisted, persist_ttl_ms=self.options.persist_ttl_ms, epoch=self.epoch,
        )
        self.metrics.flushed(started, outputs, flush.marks)
        faults.kill_point("after-deliver")
        dispatch = self.state.delivered(flush, completed)
        if dispatch.invoke:
            self._invoke([Invocation(self.run_id, part, tasks, epoch=self.epoch,
                                     memory_mb=self.options.requested_size(part))
                          for part, tasks in dispatch.invoke])
        return dispatch

    def _invoke(self, invocations: list[Invocation]) -> None:
        """Fan out; the client learns of these invocations from the end event and expects them."""
        self.invoked.extend(i.id for i in invocations)
        if len(invocations) > 1 and faults.armed("mid-fan-out"):
            self.ctx.invoker.invoke(invocations[:1])
            faults.kill_point("mid-fan-out")
            invocations = invocations[1:]
        self.ctx.invoker.invoke(invocations)

    def _serialize(self, task_ids: list[int]) -> tuple[dict[int, bytes], dict[str, bytes]]:
        outputs: dict[int, bytes] = {}
        persisted: dict[str, bytes] = {}
        for task_id in task_ids:
            info, value = self.state.task(task_id), self.state.held[task_id]
            persist = info.wanted and self.options.persist
            try:
                if persist:
                    persisted[key_name(info.key)] = serialization.dumps_output(info.key, value)
                if not persist or info.successors:
                    outputs[task_id] = self.tier.dump(self.run_id, task_id, info.key, value,
                                                      result=info.wanted)
            except SerializationError as exc:
                self._report_task_error(task_id, exc, None)
                raise _Abort from exc
        return outputs, persisted

    def _send(self, events: list[Event]) -> None:
        with contextlib.suppress(RunGoneError):
            self.ctx.store.deliver(self.run_id, events=events, epoch=self.epoch)

    # -- failures --------------------------------------------------------------------------

    def _fail(self, info: TaskInfo, inputs: dict[Hashable, object], exc: BaseException,
              attempts: int) -> NoReturn:
        if self.options.rerun_locally:
            # The client runs the task again itself, from inputs it reads in the store.
            kept = {dep: self.tier.dump(self.run_id, dep, key, inputs[key])
                    for dep, key in zip(info.deps, info.dep_keys)}
            self.ctx.store.deliver(self.run_id, outputs=kept, epoch=self.epoch)
        # The frames from the task down: this shell's own frame is not the user's business.
        frames = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        self._report_task_error(info.id, exc, frames, attempts)
        raise _Abort from exc

    def _report_task_error(self, task_id: int, exc: BaseException,
                           frames: TracebackType | None, attempts: int = 1) -> None:
        text = "".join(traceback.format_exception(type(exc), exc, frames))
        error = serialization.dumps_error(exc, frames)
        events = self.state.take_events()
        erred = TaskErred(task_id, self.ctx.worker_id, error, text, attempts)
        self._send([*events, erred])

    def _report_failure(self, exc: BaseException) -> None:
        """The invocation itself failed (not a task): tell the client which worker and why."""
        self._send([failure_event(self.ctx.worker_id, self.invocation, exc)])


def failure_event(worker: str, invocation: Invocation, exc: BaseException) -> InvocationFailed:
    """``InvocationFailed`` for an exception, with its frames (workers and platforms alike)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return InvocationFailed(worker, invocation.partition,
                            serialization.dumps_error(exc, exc.__traceback__), text,
                            invocation.id, invocation.epoch)


def _picklable(category: type[Warning]) -> type[Warning]:
    try:
        pickle.dumps(category)
    except Exception:
        return UserWarning
    return category


def handle(invocation: Invocation, context: WorkerContext) -> None:
    """Entry point of every platform: run one invocation to its end.

    Failures are reported through the store. When the store cannot take that report either (it
    is unreachable, or refuses writes), the platform hears of it through
    ``context.undeliverable``.
    """
    try:
        Execution(context, invocation).run()
    except RunGoneError:
        return
    except Exception as exc:
        context.undeliverable(invocation, exc)
