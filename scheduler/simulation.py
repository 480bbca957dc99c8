"""Discrete-event simulation of a plan: how long a run takes, what bounds it, what it costs.

The planner asks "what if": what makespan and cost would this partitioning, with these worker
sizes, give, if tasks take about what they took before? This module answers with the engine's
own execution model (docs/architecture.md, §3), and nothing else: it is pure (no store, no
clock, no randomness of its own), so a plan is judged the same way in a test, in a benchmark
and in the planner.

The model:

- Each sub-DAG (partition) runs in one invocation on one worker. The invocation is made when
  the first of its tasks is ready, and its worker can run tasks ``start_s`` later (a cold or
  a warm start).
- A worker runs its tasks one at a time, the earliest ready first (ties by task id), as the
  worker loop does.
- A task is ready when every input is there: an input of the same sub-DAG as soon as it is
  computed, one of another sub-DAG after the time its transfer takes (:class:`Link`: latency
  plus bytes over bandwidth; through the store, one write and one read).
- An invocation is billed from when it was made to its last task's end, rounded up to the
  millisecond (as Lambda bills), times its worker's memory in GB.

:func:`simulate` runs one scenario (one duration per task). Percentiles of the makespan come
from :func:`sample_makespans`, which simulates whole-run scenarios drawn by the caller: a
percentile of the run is read off the simulated makespans, never built by summing per-task
percentiles along a path (a sum of p90s is not the p90 of the sum).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "DIRECT",
    "Link",
    "Outcome",
    "Scenario",
    "SimGraph",
    "billed_gb_s",
    "percentile",
    "sample_makespans",
    "simulate",
]

#: Lambda rounds billed duration up to this many seconds.
BILLING_QUANTUM_S = 0.001


@dataclass(frozen=True)
class SimGraph:
    """The shape of a plan: ``deps[i]`` are the indices task ``i`` reads, ``partition[i]`` the
    sub-DAG that runs it, ``output_bytes[i]`` the size of what it returns."""

    deps: Sequence[Sequence[int]]
    partition: Sequence[int]
    output_bytes: Sequence[float]

    def __post_init__(self) -> None:
        n = len(self.deps)
        if len(self.partition) != n or len(self.output_bytes) != n:
            raise ValueError(f"a plan of {n} tasks needs {n} partitions and output sizes, "
                             f"got {len(self.partition)} and {len(self.output_bytes)}")

    @property
    def partitions(self) -> int:
        return max(self.partition, default=-1) + 1


@dataclass(frozen=True)
class Link:
    """What moving an output from one worker to another costs: ``latency_s`` per transfer and
    ``bandwidth_bps`` bytes per second."""

    latency_s: float = 0.0
    bandwidth_bps: float = math.inf

    def seconds(self, size: float) -> float:
        return self.latency_s + size / self.bandwidth_bps


#: Outputs that move for free (a plan with no transfer costs, or all in one place).
DIRECT = Link()


@dataclass(frozen=True)
class Scenario:
    """One way a run could go: each task's duration (at the size its sub-DAG runs at) and each
    sub-DAG's start latency, in seconds."""

    durations: Sequence[float]
    start_s: Sequence[float]


@dataclass(frozen=True)
class Outcome:
    """What a simulated run did.

    ``critical_path`` is the chain of tasks that decided the makespan, first to last: each
    one started when the one before it ended (on the same worker, or after its transfer).
    ``busy_s`` and ``billed_s`` are per sub-DAG: time running tasks, and billed time.
    """

    makespan_s: float
    starts: tuple[float, ...]
    ends: tuple[float, ...]
    critical_path: tuple[int, ...]
    busy_s: tuple[float, ...]
    billed_s: tuple[float, ...]
    cost_gb_s: float


def billed_gb_s(seconds: float, memory_mb: float) -> float:
    """GB-seconds billed for an invocation of ``seconds`` on a worker of ``memory_mb``."""
    # The small tolerance keeps 0.003 s from becoming 4 quanta through float error.
    quanta = math.ceil(seconds / BILLING_QUANTUM_S - 1e-9)
    return max(quanta, 0) * BILLING_QUANTUM_S * memory_mb / 1024


def simulate(graph: SimGraph, scenario: Scenario, sizes_mb: Sequence[float],
             link: Link = DIRECT) -> Outcome:
    """Run the plan once under ``scenario``; ``sizes_mb[p]`` is sub-DAG ``p``'s worker size."""
    n, parts = len(graph.deps), graph.partitions
    _check_lengths(graph, scenario, sizes_mb)
    dependents: list[list[int]] = [[] for _ in range(n)]
    waiting = [len(d) for d in graph.deps]
    for task, deps in enumerate(graph.deps):
        for dep in deps:
            dependents[dep].append(task)
    ready_at = [0.0] * n
    cause = [-1] * n  # the task whose end (or transfer) made this one wait last
    starts, ends = [0.0] * n, [0.0] * n
    made = [math.inf] * parts  # when each sub-DAG's invocation was made
    free = [math.inf] * parts  # when its worker can take the next task
    last = [-1] * parts  # the task its worker ran last
    heap = [(0.0, t) for t in range(n) if waiting[t] == 0]
    heapq.heapify(heap)
    done = 0
    while heap:
        ready, task = heapq.heappop(heap)
        part = graph.partition[task]
        if made[part] == math.inf:
            made[part] = ready
            free[part] = ready + scenario.start_s[part]
        start = max(ready, free[part])
        if free[part] > ready and last[part] >= 0:
            cause[task] = last[part]  # it queued behind the worker's previous task
        starts[task], ends[task] = start, start + scenario.durations[task]
        free[part], last[part] = ends[task], task
        done += 1
        for succ in dependents[task]:
            arrival = ends[task]
            if graph.partition[succ] != part:
                arrival += link.seconds(graph.output_bytes[task])
            if arrival >= ready_at[succ]:
                ready_at[succ], cause[succ] = arrival, task
            waiting[succ] -= 1
            if waiting[succ] == 0:
                heapq.heappush(heap, (ready_at[succ], succ))
    if done != n:
        raise ValueError(f"the plan has a cycle: {n - done} of {n} tasks never became ready")
    return _outcome(graph, sizes_mb, starts, ends, made, cause, scenario)


def _check_lengths(graph: SimGraph, scenario: Scenario, sizes_mb: Sequence[float]) -> None:
    n, parts = len(graph.deps), graph.partitions
    if len(scenario.durations) != n:
        raise ValueError(f"{len(scenario.durations)} durations for {n} tasks")
    if len(scenario.start_s) < parts or len(sizes_mb) < parts:
        raise ValueError(f"{parts} sub-DAGs need as many start latencies and sizes, got "
                         f"{len(scenario.start_s)} and {len(sizes_mb)}")


def _outcome(graph: SimGraph, sizes_mb: Sequence[float], starts: list[float], ends: list[float],
             made: list[float], cause: list[int], scenario: Scenario) -> Outcome:
    parts = graph.partitions
    busy, last_end = [0.0] * parts, [0.0] * parts
    for task, part in enumerate(graph.partition):
        busy[part] += scenario.durations[task]
        last_end[part] = max(last_end[part], ends[task])
    billed = [last_end[p] - made[p] if made[p] != math.inf else 0.0 for p in range(parts)]
    cost = sum(billed_gb_s(billed[p], sizes_mb[p]) for p in range(parts))
    final = max(range(len(ends)), key=ends.__getitem__, default=-1)
    return Outcome(
        makespan_s=ends[final] if final >= 0 else 0.0,
        starts=tuple(starts), ends=tuple(ends),
        critical_path=_walk_back(final, cause),
        busy_s=tuple(busy), billed_s=tuple(billed), cost_gb_s=cost,
    )


def _walk_back(final: int, cause: list[int]) -> tuple[int, ...]:
    path = []
    task = final
    while task >= 0:
        path.append(task)
        task = cause[task]
    return tuple(reversed(path))


def sample_makespans(graph: SimGraph, sizes_mb: Sequence[float],
                     draw: Callable[[random.Random], Scenario], draws: int, seed: int,
                     link: Link = DIRECT) -> list[float]:
    """Makespans of ``draws`` whole-run scenarios from ``draw`` (seeded), sorted."""
    rng = random.Random(seed)
    return sorted(simulate(graph, draw(rng), sizes_mb, link).makespan_s for _ in range(draws))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values, linearly interpolated."""
    if not sorted_values:
        raise ValueError("no values to take a percentile of")
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile is between 0 and 100, not {q}")
    pos = (len(sorted_values) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)
