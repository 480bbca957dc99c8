"""Worker sizes per sub-DAG: the cheapest plan whose makespan holds a target.

A sub-DAG's size is its worker's memory (MB), with CPU in proportion. Bigger workers finish
CPU-bound work sooner but cost more per second; on the critical path the extra speed shortens
the run, elsewhere it is money for nothing. The planners here decide sizes from an
:class:`Evaluator` (a simulation of the plan at given sizes, see ``simulation``) and nothing
else, so they are pure and can be compared on equal terms:

- :func:`uniform`: the cheapest single size for every sub-DAG whose makespan holds the bound.
- :func:`non_uniform`, in three steps (Parrotfish's and Orion's approach, relaxing the seed
  system's "the critical path must stay exactly the same"):

  1. each sub-DAG at its own cheapest size (the size at which its work costs least);
  2. while the makespan is over the bound, upgrade the sub-DAG on the critical path, to the
     bigger size, that buys a second of makespan for the least extra cost;
  3. downgrade sub-DAGs, most expensive first, as long as the bound still holds;

  and, as greedy steps can end in a local optimum, it never returns a plan worse than
  :func:`uniform`'s.

- :func:`seed_non_uniform`: the seed system's rule, kept as a baseline: every sub-DAG at its
  fastest size, then sub-DAGs off the critical path downgraded only while the critical path
  stays exactly the same.
- :func:`oracle`: exhaustive search over every assignment of a size ladder (small plans only),
  the yardstick the other two are measured against.

The bound is a makespan in seconds; which makespan (the mean scenario's, or a percentile of
sampled whole runs) is the evaluator's business.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from daskless.scheduler.simulation import (
    DIRECT,
    Link,
    Scenario,
    SimGraph,
    billed_gb_s,
    percentile,
    simulate,
)

__all__ = [
    "SIZE_LADDER_MB",
    "Duration",
    "Evaluation",
    "Evaluator",
    "SimulatedPlan",
    "non_uniform",
    "oracle",
    "seed_non_uniform",
    "uniform",
]

#: Sizes a planner chooses from: Lambda's whole and half vCPU steps and its limits.
SIZE_LADDER_MB = (512, 1024, 1769, 2048, 3008, 3538, 5307, 7076, 8845, 10240)
#: Plans the oracle is willing to enumerate (ladder size ** sub-DAGs).
ORACLE_LIMIT = 200_000
#: Work costs within this share of the least count as equal (see ``_cheapest``).
COST_TIE = 0.02


@dataclass(frozen=True)
class Evaluation:
    """A plan at some sizes: its makespan, its cost, and the sub-DAGs its critical path
    runs through."""

    makespan_s: float
    cost_gb_s: float
    critical: frozenset[int]


class Evaluator(Protocol):
    """Judges a plan at ``sizes[p]`` MB for sub-DAG ``p``; also prices one sub-DAG alone."""

    @property
    def partitions(self) -> int: ...

    def __call__(self, sizes: Sequence[int]) -> Evaluation: ...

    def work_cost(self, partition: int, size: int) -> float:
        """GB-seconds of the sub-DAG's own tasks at ``size`` (no waiting)."""
        ...

    def busy_s(self, partition: int, size: int) -> float:
        """Seconds the sub-DAG's own tasks take at ``size``."""
        ...


def uniform(evaluate: Evaluator, bound_s: float,
            ladder: Sequence[int] = SIZE_LADDER_MB) -> tuple[int, ...]:
    """The cheapest one-size plan that holds ``bound_s``; the fastest one if none does."""
    plans = [(size,) * evaluate.partitions for size in ladder]
    judged = [(evaluate(plan), plan) for plan in plans]
    holding = [(e.cost_gb_s, plan) for e, plan in judged if e.makespan_s <= bound_s]
    if holding:
        return min(holding)[1]
    return min(judged, key=lambda j: (j[0].makespan_s, j[0].cost_gb_s))[1]


def non_uniform(evaluate: Evaluator, bound_s: float,
                ladder: Sequence[int] = SIZE_LADDER_MB) -> tuple[int, ...]:
    """Sizes per sub-DAG: cheapest first, critical path upgraded, the rest downgraded."""
    ordered = sorted(ladder)
    sizes = [_cheapest(evaluate, p, ordered) for p in range(evaluate.partitions)]
    sizes = _upgrade(evaluate, sizes, bound_s, ordered)
    planned = tuple(_downgrade(evaluate, sizes, bound_s, ordered))
    # The greedy steps can end in a local optimum: never settle for worse than one size.
    one_size = uniform(evaluate, bound_s, ordered)
    return min((planned, one_size), key=lambda plan: _rank(evaluate(plan), bound_s))


def _rank(judged: Evaluation, bound_s: float) -> tuple[bool, float, float]:
    """Plans that hold the bound first, then the cheaper, then the faster."""
    return (judged.makespan_s > bound_s, judged.cost_gb_s, judged.makespan_s)


def _cheapest(evaluate: Evaluator, partition: int, ladder: list[int]) -> int:
    """The smallest size at which the sub-DAG's own work costs least, give or take
    ``COST_TIE``: below one vCPU, CPU work costs the same at every size, and what the
    history's noise makes of that is a tie."""
    costs = {size: evaluate.work_cost(partition, size) for size in ladder}
    least = min(costs.values())
    return min(size for size, cost in costs.items() if cost <= least * (1 + COST_TIE))


def _upgrade(evaluate: Evaluator, sizes: list[int], bound_s: float,
             ladder: list[int]) -> list[int]:
    current = evaluate(sizes)
    while current.makespan_s > bound_s:
        best: tuple[float, list[int], Evaluation] | None = None
        for part in sorted(current.critical):
            for bigger in _faster_sizes(evaluate, part, sizes[part], ladder):
                trial = [*sizes[:part], bigger, *sizes[part + 1:]]
                judged = evaluate(trial)
                saved = current.makespan_s - judged.makespan_s
                if saved <= 0:
                    continue
                price = (judged.cost_gb_s - current.cost_gb_s) / saved
                if best is None or price < best[0]:
                    best = (price, trial, judged)
        if best is None:  # no upgrade on the critical path helps: the bound is out of reach
            return sizes
        _, sizes, current = best
    return sizes


def _faster_sizes(evaluate: Evaluator, part: int, size: int, ladder: list[int]) -> list[int]:
    """The bigger sizes at which the sub-DAG runs faster than at every smaller one: past the
    CPUs its tasks can use, more memory only costs more, and trying it costs a simulation."""
    faster, best = [], evaluate.busy_s(part, size)
    for bigger in (m for m in ladder if m > size):
        busy = evaluate.busy_s(part, bigger)
        if busy < best * (1 - 1e-9):
            faster.append(bigger)
            best = busy
    return faster


def _downgrade(evaluate: Evaluator, sizes: list[int], bound_s: float,
               ladder: list[int]) -> list[int]:
    current = evaluate(sizes)
    limit = max(bound_s, current.makespan_s)  # an unreachable bound: do not get slower
    changed = True
    while changed:
        changed = False
        order = sorted(range(len(sizes)), key=lambda p: -evaluate.work_cost(p, sizes[p]))
        for part in order:
            smaller = [m for m in ladder if m < sizes[part]]
            if not smaller:
                continue
            trial = [*sizes[:part], smaller[-1], *sizes[part + 1:]]
            judged = evaluate(trial)
            if judged.makespan_s <= limit and judged.cost_gb_s < current.cost_gb_s:
                sizes, current, changed = trial, judged, True
    return sizes


def seed_non_uniform(evaluate: Evaluator, ladder: Sequence[int]) -> tuple[int, ...]:
    """The seed system's non-uniform plan (see the module docstring)."""
    ordered = sorted(ladder)
    sizes = [_fastest(evaluate, p, ordered) for p in range(evaluate.partitions)]
    critical = evaluate(sizes).critical
    for part in range(evaluate.partitions):
        if part in critical:
            continue
        for smaller in reversed([m for m in ordered if m < sizes[part]]):
            trial = [*sizes[:part], smaller, *sizes[part + 1:]]
            if evaluate(trial).critical != critical:
                break
            sizes = trial
    return tuple(sizes)


def _fastest(evaluate: Evaluator, partition: int, ladder: list[int]) -> int:
    """The size at which the sub-DAG's own work is done soonest (the smaller one on a tie)."""
    return min(ladder, key=lambda size: (evaluate.busy_s(partition, size), size))


def oracle(evaluate: Evaluator, bound_s: float, ladder: Sequence[int]) -> tuple[int, ...]:
    """The cheapest plan over every assignment of ``ladder`` that holds ``bound_s`` (the
    fastest one if none does); refuses plans too large to enumerate."""
    plans = len(ladder) ** evaluate.partitions
    if plans > ORACLE_LIMIT:
        raise ValueError(f"{plans} assignments of {len(ladder)} sizes to "
                         f"{evaluate.partitions} sub-DAGs are too many to enumerate")
    best_holding: tuple[float, tuple[int, ...]] | None = None
    fastest: tuple[float, float, tuple[int, ...]] | None = None
    for plan in itertools.product(ladder, repeat=evaluate.partitions):
        judged = evaluate(plan)
        if judged.makespan_s <= bound_s and (best_holding is None
                                             or judged.cost_gb_s < best_holding[0]):
            best_holding = (judged.cost_gb_s, plan)
        key = (judged.makespan_s, judged.cost_gb_s, plan)
        if fastest is None or key < fastest:
            fastest = key
    if best_holding is not None:
        return best_holding[1]
    assert fastest is not None
    return fastest[2]


class Duration(Protocol):
    """A task's duration in seconds on a worker of ``size`` MB; with ``rng``, one drawn from
    its spread (the mean without)."""

    def __call__(self, task: int, size: int, rng: random.Random | None = None) -> float: ...


class SimulatedPlan:
    """An :class:`Evaluator` that simulates the plan (``simulation.simulate``).

    With ``sla_percentile`` set, the makespan is that percentile of ``draws`` whole-run scenarios
    (durations drawn together, from the same seed for every plan judged, so that two plans
    are compared on the same luck); otherwise it is the makespan of the mean durations. The
    cost and the critical path are always those of the mean durations.
    """

    def __init__(self, graph: SimGraph, duration: Duration, start_s: Sequence[float],
                 link: Link = DIRECT, sla_percentile: float | None = None,
                 draws: int = 200, seed: int = 0) -> None:
        self.graph, self.duration, self.start_s, self.link = graph, duration, start_s, link
        self.q, self.draws, self.seed = sla_percentile, draws, seed
        self._members = [[t for t, p in enumerate(graph.partition) if p == part]
                         for part in range(graph.partitions)]

    @property
    def partitions(self) -> int:
        return self.graph.partitions

    def __call__(self, sizes: Sequence[int]) -> Evaluation:
        at = [sizes[p] for p in self.graph.partition]
        mean = Scenario([self.duration(t, at[t]) for t in range(len(at))], self.start_s)
        outcome = simulate(self.graph, mean, sizes, self.link)
        makespan = outcome.makespan_s
        if self.q is not None:
            rng = random.Random(self.seed)
            makespans = sorted(
                simulate(self.graph, Scenario([self.duration(t, at[t], rng)
                                               for t in range(len(at))], self.start_s),
                         sizes, self.link).makespan_s
                for _ in range(self.draws))
            makespan = percentile(makespans, self.q)
        critical = frozenset(self.graph.partition[t] for t in outcome.critical_path)
        return Evaluation(makespan, outcome.cost_gb_s, critical)

    def work_cost(self, partition: int, size: int) -> float:
        return billed_gb_s(self.busy_s(partition, size), size)

    def busy_s(self, partition: int, size: int) -> float:
        return sum(self.duration(t, size) for t in self._members[partition])
