"""The worker loop: run an invocation's tasks, continue locally, fan out and fan in via the store.

An :class:`Execution` is one invocation. It starts from entry tasks whose inputs are available
and runs tasks from a local stack:

* A finished task's *local* successors (same partition, only local inputs) are counted down in
  memory and run here when complete: no store traffic at all inside a partition's local region.
* Any other successor either has all its inputs computed by this execution (then it is ready
  here), or the edge is *marked* in the store; the atomic mark reports whether it delivered the
  successor's last input, and whoever delivers it owns the successor.
* A ready successor in the partition being run stays on the local stack; one in another
  partition is handed off. When local work runs out, the worker *becomes* one handed-off group
  (continues with it) and invokes a new worker for every other group: fan-out.

Outputs cross the store only when a successor may run elsewhere or the client asked for them,
and an output is always uploaded in the same atomic delivery as the marks that depend on it, and
before any invocation that reads it.
"""

from __future__ import annotations

import contextlib
import pickle
import time
import traceback
import warnings
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, NoReturn

from daskless.worker_runtime import metrics, references, serialization
from daskless.worker_runtime.blobs import is_reference, open_blobs
from daskless.worker_runtime.context import WorkerContext, running_in
from daskless.worker_runtime.errors import RunGoneError, SerializationError
from daskless.worker_runtime.keys import key_name
from daskless.worker_runtime.outbox import Outbox
from daskless.worker_runtime.protocol import Invocation, SubDAG, Successor, TaskInfo

_MISSING: Any = object()


class _Abort(Exception):
    """The invocation stops: its run failed or is gone."""


class Execution:
    """One invocation on one worker; see the module docstring."""

    def __init__(self, context: WorkerContext, invocation: Invocation) -> None:
        self.ctx = context
        self.run_id = invocation.run_id
        spec_start = time.perf_counter()
        spec = context.specs.get(
            context.store, self.run_id, invocation.partition, invocation.inline_spec
        )
        self.options = spec.options
        self.metrics = metrics.recorder_for(context.store, context.worker_id, invocation,
                                            spec.options.metrics, time.perf_counter() - spec_start)
        self.blobs = open_blobs(spec.options)
        self.parts: dict[int, SubDAG] = {spec.partition: spec}
        self.current = spec.partition
        self.held: dict[int, object] = {}
        self.uses: dict[int, int] = {}
        self.pending: dict[int, int] = {}
        self.inputs_here: dict[int, int] = {}
        self.fetched: dict[int, object] = {}
        self.ready: list[int] = []
        self.outbox = Outbox(self.options.event_interval_s)
        self._enter(invocation.entries)

    # -- driving ---------------------------------------------------------------------------

    def run(self) -> None:
        """Run until no local work is left; report failures instead of raising."""
        # Sent at once: if this worker dies, the client must know it was running part of the run.
        self._send_events(
            [("start", self.ctx.worker_id, self.current, len(self.ready), time.time())]
        )
        try:
            while self.ready:
                self._drain()
                if self.outbox.due(has_local_work=False):
                    self._flush(final=True)
        except (_Abort, RunGoneError):
            pass
        except Exception as exc:  # a bug or a store failure: tell the client, then stop
            self._report_failure(-1, exc)
        finally:
            self.metrics.finish()
            self._send_events([("done", self.ctx.worker_id, time.time())])

    def _drain(self) -> None:
        while self.ready:
            self._execute(self.task(self.ready.pop()))
            if self.outbox.due(bool(self.ready)):
                self._flush(final=not self.ready)

    def _enter(self, entries: Iterable[int]) -> None:
        """Start from tasks whose inputs are all available, fetching what is not held."""
        tasks = [self.task(t) for t in entries]
        missing = sorted({d for t in tasks for d in t.deps if d not in self.held})
        if missing:
            for dep, data in zip(missing, self.metrics.fetch(self.ctx.store, self.run_id, missing)):
                self.fetched[dep] = self._load_input(dep, data)
        self.ready.extend(reversed([t.id for t in tasks]))

    # -- tasks -----------------------------------------------------------------------------

    def task(self, task_id: int) -> TaskInfo:
        spec = self.parts[self.current]
        info = spec.tasks.get(task_id)
        if info is not None:
            return info
        for part in self.parts.values():
            if task_id in part.tasks:
                return part.tasks[task_id]
        raise KeyError(task_id)

    def _execute(self, info: TaskInfo) -> None:
        values = self._inputs(info)
        start = time.time()
        try:
            with running_in(self.ctx), self._warnings_of(info):
                value = info.node(values)
        except BaseException as exc:
            self.metrics.failed(info.id, start)
            self._fail(info, values, exc)
        end = time.time()
        self.metrics.task(info, start, end)
        self.held[info.id] = value
        self.uses[info.id] = len(info.successors)
        self.outbox.events.append(("fin", info.id, start, end, self.ctx.worker_id))
        if info.wanted:
            self.outbox.upload(info.id)
        for successor in info.successors:
            self._hand_over(info, successor)
        self._release_if_unused(info.id)

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
            self.outbox.events.append(
                ("warn", info.id, _picklable(w.category), str(w.message), w.filename, w.lineno)
            )

    def _hand_over(self, producer: TaskInfo, successor: Successor) -> None:
        if successor.local and producer.local and successor.partition == producer.partition:
            left = self.pending.get(successor.id, successor.n_deps) - 1
            if left:
                self.pending[successor.id] = left
            else:
                self.pending.pop(successor.id, None)
                self.ready.append(successor.id)
            return
        here = self.inputs_here.get(successor.id, 0) + 1
        if here == successor.n_deps:
            self.inputs_here.pop(successor.id, None)
            self.outbox.forget_marks(successor.id)
            self._route(producer.id, successor)
        else:
            self.inputs_here[successor.id] = here
            self.outbox.mark(producer.id, successor)
            self.outbox.upload(producer.id)
            self._use(producer.id)

    def _route(self, producer: int | None, successor: Successor) -> None:
        """``successor`` is ours to run: here if it is in the partition we run, else hand off."""
        if successor.partition == self.current:
            self.ready.append(successor.id)
            return
        if producer is not None:
            self.outbox.upload(producer)
            self._use(producer)
        self.outbox.hand_off(successor.partition, successor.id)

    def _inputs(self, info: TaskInfo) -> dict[Hashable, object]:
        values: dict[Hashable, object] = {}
        absent = []
        for dep, key in zip(info.deps, info.dep_keys):
            value = self.held.get(dep, _MISSING)
            if value is not _MISSING:
                self._use(dep)
            else:
                value = self.fetched.get(dep, _MISSING)
            if value is _MISSING:
                absent.append((dep, key))
            else:
                values[key] = value
        if absent:
            data = self.metrics.fetch(self.ctx.store, self.run_id, [d for d, _ in absent])
            for (dep, key), blob in zip(absent, data):
                values[key] = self._load_input(dep, blob)
        if info.external:
            names = [key_name(k) for k in info.external]
            blobs = self.ctx.store.fetch_persisted(names)
            for key, blob in zip(info.external, blobs):
                if blob is None:
                    raise RunGoneError(f"persisted input {key!r} is gone")
                values[key] = serialization.loads(blob)
        return values

    def _load_input(self, dep: int, data: bytes | None) -> object:
        if data is None:
            raise RunGoneError(f"input {dep} of run {self.run_id} is not in the store")
        if self.blobs is not None:
            return self.blobs.loads(data)
        return serialization.loads(data)

    # -- memory ----------------------------------------------------------------------------

    def _use(self, task_id: int) -> None:
        if task_id in self.uses:
            self.uses[task_id] -= 1
            self._release_if_unused(task_id)

    def _release_if_unused(self, task_id: int) -> None:
        if self.uses.get(task_id, 1) <= 0 and task_id not in self.outbox.outputs:
            self.held.pop(task_id, None)
            del self.uses[task_id]

    # -- the store -------------------------------------------------------------------------

    def _flush(self, final: bool) -> None:
        outbox = self.outbox
        outputs, persisted = self._serialize_outputs()
        marks = list(outbox.all_marks())
        successors = {m.task: s for m, s in marks}
        delivery_start = time.time()
        completed = self.ctx.store.deliver(
            self.run_id,
            outputs=outputs,
            marks=[m for m, _ in marks],
            events=outbox.events,
            persisted=persisted,
            persist_ttl_ms=self.options.persist_ttl_ms,
        )
        self.metrics.flushed(delivery_start, outputs, [m for m, _ in marks])
        uploaded = list(outbox.outputs)
        handoffs = outbox.handoffs
        outbox.clear()
        for task_id in uploaded:
            self._release_if_unused(task_id)
        for task_id in completed:
            self._route(None, successors[task_id])
        self._dispatch(handoffs, final)

    def _serialize_outputs(self) -> tuple[dict[int, bytes], dict[str, bytes]]:
        outputs: dict[int, bytes] = {}
        persisted: dict[str, bytes] = {}
        for task_id in self.outbox.outputs:
            info = self.task(task_id)
            persist = info.wanted and self.options.persist
            try:
                if persist:
                    persisted[key_name(info.key)] = serialization.dumps_output(
                        info.key, self.held[task_id]
                    )
                if not persist or info.successors:
                    outputs[task_id] = data = self._dumps(task_id, info.key)
                    # By reference the original itself is shared, and lives until the run ends.
                    # Large outputs went to the blob tier (``data`` is then a file reference).
                    small = len(data) < self.options.blob_threshold and not is_reference(data)
                    if small and not self.options.by_reference:
                        self.ctx.keepalive.keep(self.run_id, self.held[task_id])
            except SerializationError as exc:
                self._report_failure(task_id, exc)
                raise _Abort from exc
        return outputs, persisted

    def _dumps(self, task_id: int, key: Hashable) -> bytes:
        value = self.held[task_id]
        if self.options.by_reference:
            if self.task(task_id).wanted:
                # Results must be storable anywhere, even when this backend never copies them.
                serialization.dumps_output(key, value)
            return references.put(self.run_id, str(task_id), value)
        if self.blobs is not None:
            return self.blobs.dumps(self.run_id, task_id, key, self.held[task_id])
        return serialization.dumps_output(key, self.held[task_id])

    def _dispatch(self, handoffs: dict[int, list[int]], final: bool) -> None:
        """Continue with one handed-off group if idle, invoke workers for the others."""
        groups = list(handoffs.items())
        if final and not self.ready and groups:
            partition, tasks = groups.pop(0)
            self._become(partition, tasks)
        if groups:
            self.ctx.invoker.invoke(
                [Invocation(self.run_id, part, tuple(tasks)) for part, tasks in groups]
            )

    def _become(self, partition: int, tasks: list[int]) -> None:
        if partition not in self.parts:
            self.parts[partition] = self.ctx.specs.get(self.ctx.store, self.run_id, partition)
        self.current = partition
        self._enter(tasks)

    # -- failures --------------------------------------------------------------------------

    def _fail(
        self, info: TaskInfo, values: dict[Hashable, object], exc: BaseException
    ) -> NoReturn:
        if self.options.rerun_locally:
            # The client runs the task again itself, from inputs it reads in the store.
            outputs = {
                dep: references.put(self.run_id, str(dep), values[key])
                if self.options.by_reference else serialization.dumps(values[key])
                for dep, key in zip(info.deps, info.dep_keys)
            }
            self.ctx.store.deliver(self.run_id, outputs=outputs)
        self._report_failure(info.id, exc)
        raise _Abort from exc

    def _report_failure(self, task_id: int, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            blob = serialization.dumps(exc)
            serialization.loads(blob)
        except Exception:
            blob = serialization.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
        self._send_events([("err", task_id, blob, text, self.ctx.worker_id)])

    def _send_events(self, events: list[Any]) -> None:
        with contextlib.suppress(RunGoneError):
            self.ctx.store.deliver(self.run_id, events=self.outbox.events + events)
        self.outbox.events.clear()


def _picklable(category: type[Warning]) -> type[Warning]:
    try:
        pickle.dumps(category)
    except Exception:
        return UserWarning
    return category


def handle(invocation: Invocation, context: WorkerContext) -> None:
    """Entry point of every platform: run one invocation to its end."""
    try:
        Execution(context, invocation).run()
    except RunGoneError:
        return
    except Exception:
        # The store itself failed; the client sees the same failure on its side.
        traceback.print_exc()
