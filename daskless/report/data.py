"""A run's metrics as objects: read the records of one run's metrics stream and join them.

Workers write compact records that refer to tasks by id and to workers by invocation
(``daskless.worker_runtime.metrics``); the client's ``run`` record holds the plan (key,
partition and inputs of every task; tasks are named here, by dask's key prefix).
:func:`load_run` reads them all and :class:`RunMetrics` joins them into per-task,
per-invocation and per-run facts. Readers (the HTML report, the dashboard, ``daskless runs``)
only use this module's view.

A run's metrics may still be arriving when it is read: workers upload their last batch when
their invocation ends, which can be just after the client got its results. :func:`load_run`
therefore keeps reading (blocking reads, no polling) until every task and every invocation is
accounted for, a lost worker's invocations excepted, or until ``settle_s`` passes. What is still
absent then is reported as missing, never invented.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dask.utils import key_split

from daskless.observe import EXECUTION_PHASES
from daskless.scheduler.simulation import billed_gb_s
from daskless.worker_runtime import metrics
from daskless.worker_runtime.store.base import Store


@dataclass
class TaskMetrics:
    """What is known about one task of the plan (``start`` is None if no record arrived)."""

    id: int
    key: str
    prefix: str
    """dask's key prefix (``key_split``): how dask's own dashboard groups and names tasks."""
    partition: int
    deps: list[int]
    inv: str | None = None
    worker: str | None = None
    start: float | None = None
    end: float | None = None
    erred: bool = False
    runs: int = 0
    # Inputs read from the store: input id -> (bytes, seconds of the fetch that read them).
    downloads: dict[int, tuple[int, float]] = field(default_factory=dict)
    output_bytes: int | None = None
    """Bytes of the output as stored (only outputs that went through the store)."""
    nbytes: int | None = None
    """Size of the output in memory (``dask.sizeof``), known for every task that ran."""
    upload_s: float = 0.0
    fanin_s: float = 0.0

    @property
    def duration(self) -> float:
        return (self.end - self.start) if self.start is not None and self.end is not None else 0.0


@dataclass(frozen=True)
class TaskError:
    """One failed attempt of a task, as its worker recorded it."""

    task: int
    key: str
    worker: str | None
    attempt: int
    type: str
    message: str
    traceback: str
    t: float


@dataclass
class InvocationMetrics:
    """One worker invocation: where it ran, whether it was a cold start, how it ended."""

    inv: str
    worker: str
    partition: int
    entries: int
    start: float
    cold: bool
    startup_s: float | None
    spec_s: float
    spec_inline: bool
    end: float | None = None
    tasks: int = 0
    dropped: int = 0
    memory_mb: int = 0
    cpu_period_s: float = 0.0
    """The CPU bandwidth period the worker ran under (0: none)."""

    @property
    def billed_gb_s(self) -> float:
        """GB-seconds billed for it: start to end, rounded up to the millisecond, at its
        worker's memory (0 while it has not ended, or for records without a size)."""
        if self.end is None:
            return 0.0
        return billed_gb_s(max(self.end - self.start, 0.0), self.memory_mb)


@dataclass
class RunMetrics:
    """Everything recorded about one run."""

    run_id: str
    started: float = 0.0
    tasks: list[TaskMetrics] = field(default_factory=list)
    requested: list[int] = field(default_factory=list)
    partitions: int = 0
    strategy: str = ""
    invocations: dict[str, InvocationMetrics] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    status: str | None = None
    ended: float | None = None
    lost_workers: list[str] = field(default_factory=list)
    expected_invocations: int = 0
    predicted_makespan_s: float | None = None
    planning: dict[str, Any] | None = None
    """What the planner decided and predicted (``daskless.planner.record``), if it planned."""
    errors: list[TaskError] = field(default_factory=list)
    recoveries: list[str] = field(default_factory=list)
    records: int = 0
    _early: list[list[Any]] = field(default_factory=list, repr=False)

    # -- reading records ---------------------------------------------------------------------

    def add(self, records: Iterable[list[Any]]) -> None:
        """Fold records in (in stream order; workers' records may precede the plan)."""
        for record in metrics.expand(records):
            self.records += 1
            if not self.tasks and record[0] not in ("run", "run-end"):
                self._early.append(record)
                continue
            handler = getattr(self, "_on_" + str(record[0]).replace("-", "_"), None)
            if handler is not None:
                handler(*record[1:])

    def _on_run(self, body: dict[str, Any]) -> None:
        early, self._early = self._early, []
        self.started = float(body["t"])
        self.partitions = int(body["partitions"])
        self.requested = list(body["requested"])
        self.strategy = str(body.get("strategy", ""))
        # Plans recorded before prefixes were read from keys also carried function names;
        # the keys alone are enough for those too.
        columns = zip(body["keys"], body["partition"], body["deps"])
        self.tasks = [TaskMetrics(i, key, key_split(key), part, list(deps))
                      for i, (key, part, deps) in enumerate(columns)]
        self.records -= len(early)
        self.add(early)

    def _on_run_end(self, body: dict[str, Any]) -> None:
        self.ended = float(body["t"])
        self.status = str(body["status"])
        self.timings = {str(k): float(v) for k, v in body["timings"].items()}
        self.lost_workers = list(body.get("lost", []))
        self.expected_invocations = int(body.get("invocations", 0))
        self.recoveries = [str(r) for r in body.get("recoveries", [])]
        predicted = body.get("predicted_makespan_s")
        self.predicted_makespan_s = float(predicted) if predicted is not None else None
        self.planning = body.get("planning")

    def _on_inv(self, inv: str, worker: str, partition: int, entries: int, t: float,
                cold: bool, startup_s: float | None, spec_s: float, inline: bool,
                memory_mb: int = 0, cpu_period_s: float = 0.0) -> None:
        self.invocations[inv] = InvocationMetrics(inv, worker, partition, entries, t, cold,
                                                  startup_s, spec_s, inline,
                                                  memory_mb=memory_mb, cpu_period_s=cpu_period_s)

    def _on_end(self, inv: str, t: float, tasks: int, dropped: int) -> None:
        found = self.invocations.get(inv)
        if found is not None:
            found.end, found.tasks, found.dropped = t, tasks, dropped

    def _task(self, task_id: int) -> TaskMetrics | None:
        return self.tasks[task_id] if 0 <= task_id < len(self.tasks) else None

    def _ran(self, inv: str, task_id: int, start: float, end: float,
             erred: bool) -> TaskMetrics | None:
        """One attempt of a task (the last one read is what the task shows)."""
        task = self._task(task_id)
        if task is None:
            return None
        task.inv, task.start, task.end, task.erred = inv, start, end, erred
        task.runs += 1
        found = self.invocations.get(inv)
        task.worker = found.worker if found is not None else None
        return task

    def _on_task(self, inv: str, task_id: int, start: float, end: float,
                 inputs: list[list[Any]], nbytes: int | None = None) -> None:
        task = self._ran(inv, task_id, start, end, erred=False)
        if task is not None:
            task.downloads = {int(d): (int(n), float(s)) for d, n, s in inputs}
            task.nbytes = nbytes

    def _on_err(self, inv: str, task_id: int, start: float, end: float, attempt: int = 1,
                kind: str = "", message: str = "", frames: str = "") -> None:
        task = self._ran(inv, task_id, start, end, erred=True)
        if task is not None:
            self.errors.append(TaskError(task_id, task.key, task.worker, int(attempt), kind,
                                         message, frames, end))

    def _on_flush(self, inv: str, start: float, end: float, sizes: list[list[int]],
                  producers: list[int]) -> None:
        seconds = end - start
        for task_id, nbytes in sizes:
            task = self._task(task_id)
            if task is not None:
                task.output_bytes, task.upload_s = nbytes, seconds
        if producers:
            share = seconds / len(producers)
            for task_id in producers:
                task = self._task(task_id)
                if task is not None:
                    task.fanin_s += share

    # -- what readers ask --------------------------------------------------------------------

    @property
    def has_plan(self) -> bool:
        return bool(self.tasks)

    @property
    def missing_tasks(self) -> list[int]:
        """Tasks of the plan for which no record arrived (lost, unflushed or never run)."""
        return [t.id for t in self.tasks if t.start is None]

    @property
    def makespan_s(self) -> float | None:
        """From submitting the run to having its results, as its client measured it."""
        if self.status is None:
            return None
        return sum(self.timings.get(phase, 0.0) for phase in EXECUTION_PHASES)

    @property
    def billed_gb_s(self) -> float:
        """GB-seconds billed for the run: every invocation's, each rounded on its own."""
        return sum(i.billed_gb_s for i in self.invocations.values())

    def cost_usd(self, per_gb_s: float, per_request: float) -> float:
        """What the run cost at these prices."""
        return self.billed_gb_s * per_gb_s + len(self.invocations) * per_request

    @property
    def complete(self) -> bool:
        """All tasks recorded and every invocation ended (a lost worker's ones excepted)."""
        if self.status is None or not self.has_plan:
            return False
        lost = set(self.lost_workers)
        kept = [i for i in self.invocations.values() if i.worker not in lost]
        if len(kept) < self.expected_invocations:  # some have not uploaded their metrics yet
            return False
        open_invs = [i for i in kept if i.end is None]
        return not open_invs and (not self.missing_tasks or self.status != "ok")

    @property
    def span(self) -> tuple[float, float]:
        """First start and last end among recorded tasks (the run's start if none)."""
        starts = [t.start for t in self.tasks if t.start is not None]
        ends = [t.end for t in self.tasks if t.end is not None]
        if not starts:
            return self.started, self.ended or self.started
        return min(starts), max(ends)

    def summary(self) -> str:
        """One line: outcome, tasks, and what is missing from the metrics."""
        done = len(self.tasks) - len(self.missing_tasks)
        status = self.status or "running"
        text = f"run {self.run_id}: {status}, {done}/{len(self.tasks)} tasks recorded"
        if self.missing_tasks:
            text += f"; metrics missing for {len(self.missing_tasks)} tasks"
        if self.lost_workers:
            text += f" (lost workers: {', '.join(self.lost_workers)})"
        return text


def load_run(store: Store, run_id: str, settle_s: float = 5.0) -> RunMetrics:
    """Read a run's metrics; wait up to ``settle_s`` for late batches (see the module doc)."""
    run = RunMetrics(run_id)
    cursor, records = store.read_metrics(run_id, "0", timeout_s=0)
    run.add(records)
    deadline = time.monotonic() + settle_s
    while not run.complete:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        cursor, records = store.read_metrics(run_id, cursor, timeout_s=min(left, 1.0))
        run.add(records)
    return run
