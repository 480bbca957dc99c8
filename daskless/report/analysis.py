"""Derived views of a run's metrics: DAG layout, critical path, transfers and summaries.

Pure functions of :class:`RunMetrics`, shared by the HTML report and the dashboard (whose
browser code only draws what these compute).

- **Layout.** Tasks are placed in layers by their depth (longest path from a source); within a
  layer they are ordered by partition, then id, so a partition's tasks sit together.
- **Critical path.** The chain of dependent tasks whose summed execution time is largest: the
  lower bound of the run's duration on unlimited workers.
- **Transfers.** Every edge is either *local* (the consumer found the value in its worker's
  memory: nothing serialized or moved) or *via store* (the consumer read it from the store; its
  size and the fetch time are recorded).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from daskless.report.data import RunMetrics, TaskMetrics


def topological_order(tasks: list[TaskMetrics]) -> list[int]:
    """Task ids, every task after its inputs (Kahn's algorithm, iterative)."""
    waiting = [len(t.deps) for t in tasks]
    dependents: list[list[int]] = [[] for _ in tasks]
    for task in tasks:
        for dep in task.deps:
            dependents[dep].append(task.id)
    ready = [t.id for t in tasks if not t.deps]
    order: list[int] = []
    while ready:
        task_id = ready.pop()
        order.append(task_id)
        for nxt in dependents[task_id]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    return order


def depths(tasks: list[TaskMetrics], order: list[int]) -> list[int]:
    depth = [0] * len(tasks)
    for task_id in order:
        for dep in tasks[task_id].deps:
            depth[task_id] = max(depth[task_id], depth[dep] + 1)
    return depth


def layout(tasks: list[TaskMetrics]) -> dict[int, tuple[float, float]]:
    """Position of each task in the unit square: x by depth, y by rank within its layer."""
    order = topological_order(tasks)
    depth = depths(tasks, order)
    layers: dict[int, list[int]] = defaultdict(list)
    for task in tasks:
        layers[depth[task.id]].append(task.id)
    n_layers = max(layers) + 1 if layers else 1
    positions: dict[int, tuple[float, float]] = {}
    for level, members in layers.items():
        members.sort(key=lambda t: (tasks[t].partition, t))
        for rank, task_id in enumerate(members):
            x = (level + 0.5) / n_layers
            y = (rank + 0.5) / len(members)
            positions[task_id] = (x, y)
    return positions


def critical_path(tasks: list[TaskMetrics]) -> list[int]:
    """The chain of tasks with the largest total execution time, source first."""
    if not tasks:
        return []
    best = [0.0] * len(tasks)
    via: list[int | None] = [None] * len(tasks)
    for task_id in topological_order(tasks):
        task = tasks[task_id]
        before = max(task.deps, key=lambda d: best[d], default=None)
        best[task_id] = task.duration + (best[before] if before is not None else 0.0)
        via[task_id] = before
    node: int | None = max(range(len(tasks)), key=lambda t: best[t])
    path: list[int] = []
    while node is not None:
        path.append(node)
        node = via[node]
    return path[::-1]


@dataclass
class EdgeTotals:
    """Edges of one kind, with the bytes they carried and the time spent on them."""

    edges: int = 0
    bytes: int = 0
    seconds: float = 0.0


def transfers(run: RunMetrics) -> dict[str, EdgeTotals]:
    """Edge totals by kind: ``local`` (in memory), ``via store`` (read from the store), and
    ``uploads`` (outputs written to the store, once per producer and flush)."""
    totals = {"local": EdgeTotals(), "via store": EdgeTotals(), "uploads": EdgeTotals()}
    for task in run.tasks:
        if task.start is None:
            continue
        for dep in task.deps:
            kind = "via store" if dep in task.downloads else "local"
            totals[kind].edges += 1
            if dep in task.downloads:
                nbytes, seconds = task.downloads[dep]
                totals[kind].bytes += nbytes
                totals[kind].seconds += seconds
        if task.output_bytes is not None:
            totals["uploads"].edges += 1
            totals["uploads"].bytes += task.output_bytes
            totals["uploads"].seconds += task.upload_s
    return totals


@dataclass
class PrefixSummary:
    name: str
    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0
    output_bytes: int = 0
    erred: int = 0

    @property
    def mean_s(self) -> float:
        return self.total_s / self.count if self.count else 0.0


def by_prefix(run: RunMetrics) -> list[PrefixSummary]:
    """Per key prefix counts and times of the recorded tasks, slowest total first."""
    summaries: dict[str, PrefixSummary] = {}
    for task in run.tasks:
        if task.start is None:
            continue
        summary = summaries.setdefault(task.prefix, PrefixSummary(task.prefix))
        summary.count += 1
        summary.total_s += task.duration
        summary.max_s = max(summary.max_s, task.duration)
        summary.output_bytes += task.output_bytes or 0
        summary.erred += task.erred
    return sorted(summaries.values(), key=lambda s: s.total_s, reverse=True)


def workers(run: RunMetrics) -> list[str]:
    """Worker lanes in order of their first invocation."""
    seen: dict[str, float] = {}
    for inv in run.invocations.values():
        seen[inv.worker] = min(seen.get(inv.worker, inv.start), inv.start)
    for task in run.tasks:
        if task.worker is not None and task.worker not in seen:
            seen[task.worker] = task.start or 0.0
    return sorted(seen, key=lambda w: seen[w])


def plan_view(run: RunMetrics) -> dict[str, Any]:
    """What the dashboard's browser code needs to draw a run's DAG (JSON-able)."""
    positions = layout(run.tasks)
    return {
        "run_id": run.run_id,
        "started": run.started,
        "tasks": [
            {"id": t.id, "key": t.key, "prefix": t.prefix, "partition": t.partition,
             "deps": t.deps, "x": round(positions[t.id][0], 5), "y": round(positions[t.id][1], 5)}
            for t in run.tasks
        ],
    }


@dataclass
class PlannedPrefix:
    """One key prefix: the planner's predicted time for its tasks against the measured one."""

    name: str
    count: int
    predicted_s: float
    measured_s: float
    mdape: float | None
    """Median of |predicted - measured| / measured over its tasks, as a fraction."""


def planned_by_prefix(run: RunMetrics) -> list[PlannedPrefix]:
    """Per prefix, planned against measured task times (empty if the run was not planned)."""
    predicted = (run.planning or {}).get("durations") or []
    if len(predicted) != len(run.tasks):
        return []
    groups: dict[str, list[tuple[float, float]]] = {}
    for task in run.tasks:
        if task.start is not None and task.end is not None:
            groups.setdefault(task.prefix, []).append((predicted[task.id], task.duration))
    out = []
    for name, pairs in sorted(groups.items(), key=lambda kv: -sum(m for _, m in kv[1])):
        errors = sorted(abs(p - m) / m for p, m in pairs if m > 0)
        out.append(PlannedPrefix(name, len(pairs), sum(p for p, _ in pairs),
                                 sum(m for _, m in pairs),
                                 errors[len(errors) // 2] if errors else None))
    return out

