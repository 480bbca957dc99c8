"""The decisions of one invocation, with no I/O: the worker loop's core.

An :class:`InvocationState` is told what happened (entries arrived, an input was fetched, a task
finished, a flush was delivered) and answers with what to do next (which task runs, which inputs
to fetch, what to deliver, which partition to become and which to invoke). It never touches the
store, an invoker, a clock it was not given, or a task's value beyond holding it: the I/O shell
(:class:`daskless.worker_runtime.worker.Execution`) does all of that, and unit tests drive this
core directly, with no store and no processes.

The rules, WUKONG's, as this core applies them:

* A finished task's *local* successors (same partition, only local inputs) are counted down in
  memory and become ready here when complete: no store traffic inside a partition's local region.
* Any other successor either has all its inputs produced by this invocation (then it is ours
  without a mark), or the edge is *marked* in the store; the atomic mark reports whether it
  delivered the successor's last input, and whoever delivers it owns the successor.
* An owned successor in the partition being run goes onto the ready stack; one in another
  partition is handed off. When local work runs out, the worker *becomes* one handed-off group
  (continues with it) and invokes a new worker for every other group: fan-out. It becomes only
  a group planned at its own worker size (``RunOptions.sizes_mb``): the planner's sizes hold
  even where work moves between workers. Successors that a
  flush's own marks completed are routed into that same flush's dispatch, so a cross-partition
  fan-in costs no extra round trip.
* Outputs cross the store only when a successor may run elsewhere or the client asked for them,
  always in the same atomic delivery as the marks that make someone read them.
* Memory: a held value is dropped once every consumer has been served and no upload of it is
  pending; entry inputs fetched from the store are dropped once the entered tasks used them.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from daskless.worker_runtime.events import Event, TasksFinished
from daskless.worker_runtime.outbox import Clock, Outbox
from daskless.worker_runtime.protocol import SubDAG, Successor, TaskInfo
from daskless.worker_runtime.store.base import Mark

_MISSING: object = object()


@dataclass
class Flush:
    """One delivery to make: store ``outputs`` (their values are held), ``marks`` and events."""

    outputs: list[int]
    marks: list[Mark]
    events: list[Event]
    handoffs: dict[int, list[int]]
    successors: dict[int, Successor] = field(default_factory=dict)
    final: bool = False


@dataclass(frozen=True)
class Dispatch:
    """After a delivery: the group to continue with here, and the groups to invoke."""

    become: tuple[int, tuple[int, ...]] | None
    invoke: list[tuple[int, tuple[int, ...]]]


class InvocationState:
    """What one invocation knows and decides; see the module docstring."""

    def __init__(self, spec: SubDAG, worker: str, clock: Clock = time.monotonic) -> None:
        self.worker = worker
        self.parts: dict[int, SubDAG] = {spec.partition: spec}
        self.current = spec.partition
        self.held: dict[int, object] = {}
        self.uses: dict[int, int] = {}
        self.pending: dict[int, int] = {}
        self.inputs_here: dict[int, int] = {}
        self.ready: list[int] = []
        self.outbox = Outbox(spec.options.event_interval_s, clock)
        self.options = spec.options
        self._own_size = spec.options.requested_size(spec.partition)
        self._consumers: dict[int, int] = {}  # entered tasks still to use each fetched input

    # -- entering a partition --------------------------------------------------------------

    def add_spec(self, spec: SubDAG) -> None:
        self.parts[spec.partition] = spec

    def has_spec(self, partition: int) -> bool:
        return partition in self.parts

    def enter(self, partition: int, entries: Iterable[int]) -> list[tuple[int, Hashable]]:
        """Run ``entries`` of ``partition`` next; returns (id, key) of the inputs to fetch."""
        self.current = partition
        tasks = [self.task(t) for t in entries]
        consumers: dict[int, int] = {}
        keys: dict[int, Hashable] = {}
        for info in tasks:
            for dep, key in zip(info.deps, info.dep_keys):
                if dep not in self.held:
                    consumers[dep] = consumers.get(dep, 0) + 1
                    keys[dep] = key
        self._consumers = consumers
        self.ready.extend(reversed([t.id for t in tasks]))
        return sorted(keys.items())

    def provide(self, dep: int, value: object) -> None:
        """A fetched entry input: held until the entered tasks that need it have used it."""
        self.held[dep] = value
        self.uses[dep] = self._consumers.pop(dep, 1)

    # -- running ---------------------------------------------------------------------------

    def task(self, task_id: int) -> TaskInfo:
        info = self.parts[self.current].tasks.get(task_id)
        if info is not None:
            return info
        for part in self.parts.values():
            if task_id in part.tasks:
                return part.tasks[task_id]
        raise KeyError(task_id)

    def next_task(self) -> TaskInfo | None:
        return self.task(self.ready.pop()) if self.ready else None

    def take_inputs(
        self, info: TaskInfo
    ) -> tuple[dict[Hashable, object], list[tuple[int, Hashable]]]:
        """The task's in-graph inputs held here, and (id, key) of those to read from the store."""
        values: dict[Hashable, object] = {}
        absent: list[tuple[int, Hashable]] = []
        for dep, key in zip(info.deps, info.dep_keys):
            value = self.held.get(dep, _MISSING)
            if value is _MISSING:
                absent.append((dep, key))
            else:
                values[key] = value
                self._use(dep)
        return values, absent

    def finished(self, info: TaskInfo, value: object) -> None:
        """Hold the output and hand it over to every successor."""
        self.held[info.id] = value
        self.uses[info.id] = len(info.successors)
        self.outbox.finished.append(info.id)
        if info.wanted:
            self.outbox.upload(info.id)
        for successor in info.successors:
            self._hand_over(info, successor)
        self._release_if_unused(info.id)

    def event(self, event: Event) -> None:
        """An event for the client, sent with the next delivery."""
        self.outbox.events.append(event)

    def take_events(self) -> list[Event]:
        """Every event not yet delivered, finished tasks included (for a delivery of its own)."""
        events = self.outbox.events
        if self.outbox.finished:
            events.append(TasksFinished(self.worker, tuple(self.outbox.finished)))
            self.outbox.finished = []
        self.outbox.events = []
        return events

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

    def _route(self, producer: int, successor: Successor) -> None:
        """``successor`` is ours to run: here if it is in the partition we run, else hand off."""
        if successor.partition == self.current:
            self.ready.append(successor.id)
            return
        self.outbox.upload(producer)
        self._use(producer)
        self.outbox.hand_off(successor.partition, successor.id)

    # -- memory ----------------------------------------------------------------------------

    def _use(self, task_id: int) -> None:
        if task_id in self.uses:
            self.uses[task_id] -= 1
            self._release_if_unused(task_id)

    def _release_if_unused(self, task_id: int) -> None:
        if self.uses.get(task_id, 1) <= 0 and task_id not in self.outbox.outputs:
            self.held.pop(task_id, None)
            del self.uses[task_id]

    # -- flushing --------------------------------------------------------------------------

    def flush_due(self) -> bool:
        return self.outbox.due(has_local_work=bool(self.ready))

    def take_flush(self) -> Flush:
        """Everything the next delivery carries; the outbox starts a new batch."""
        outbox = self.outbox
        marks = list(outbox.all_marks())
        flush = Flush(
            outputs=list(outbox.outputs),
            marks=[m for m, _ in marks],
            events=self.take_events(),
            handoffs=outbox.handoffs,
            successors={m.task: s for m, s in marks},
            final=not self.ready,
        )
        outbox.clear()
        return flush

    def delivered(self, flush: Flush, completed: Iterable[int]) -> Dispatch:
        """The store took ``flush``; its marks completed ``completed``: route and dispatch."""
        for task_id in flush.outputs:
            self._release_if_unused(task_id)
        handoffs = flush.handoffs
        for task_id in completed:
            successor = flush.successors[task_id]
            if successor.partition == self.current:
                self.ready.append(task_id)
            else:  # its input went up with this very delivery: invoke it now
                handoffs.setdefault(successor.partition, []).append(task_id)
        groups = [(p, tuple(tasks)) for p, tasks in handoffs.items()]
        become = None
        if flush.final and not self.ready and groups:
            # Continue only with work planned at this worker's own size: a sub-DAG sized
            # otherwise gets a worker of its size.
            same = [i for i, (p, _) in enumerate(groups) if self._size(p) == self._own_size]
            if same:
                become = groups.pop(same[0])
        return Dispatch(become, groups)

    def _size(self, partition: int) -> int:
        return self.options.requested_size(partition)
