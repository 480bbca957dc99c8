"""The planner: from a partitioned graph and what past runs predict, a size per sub-DAG and
what the run will take.

Three planners (``daskless.planner``):

- ``wukong``: every sub-DAG at the configured size and no prediction: the engine as it ran
  before it learnt from history.
- ``uniform``: the cheapest single size (of the ladder) that holds the target.
- ``non-uniform``: a size per sub-DAG (``sizing.non_uniform``: cheapest first, critical path
  upgraded by least extra cost per second saved, the rest downgraded while the target holds).

Three more are yardsticks for comparisons (``python -m benchmarks planner``): ``seed-uniform``
(every sub-DAG at 2,048 MB, the seed system's Uniform planner), ``seed-non-uniform`` (its
NonUniform rule, ``sizing.seed_non_uniform``) and ``oracle`` (exhaustive search in the
simulator, ``sizing.oracle``; plans of more than ``ORACLE_LIMIT`` assignments get
``non-uniform`` instead).

The target (``daskless.sla``) is the mean makespan (``average``) or a percentile of it
(``p50`` ... ``p99``), at most an optional bound in seconds; without a bound, the makespan the
configured size would give: as fast as before, for less. Until every task prefix of the graph
has been seen in some run, every planner plans as ``wukong`` does and predicts nothing.

Cost: the search judges plans on a coarse model, one node per sub-DAG (its tasks' predicted
durations summed, transfers between sub-DAGs at the largest output crossing), which is
microseconds per plan however many tasks there are; the chosen plan is then simulated task by
task once for the prediction and the critical path. Percentiles sample whole runs (every
sub-DAG's time drawn at once, the tasks' own spread summed, a normal approximation once a
sub-DAG has many tasks), each with a run overhead drawn from those of past warm runs and a
cold start as often as recent runs at its sizes met one, never by adding per-task
percentiles.
"""

from __future__ import annotations

import math
import random
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from daskless.scheduler.history import Predictor
from daskless.scheduler.prediction import DurationModel
from daskless.scheduler.simulation import (
    Link,
    Scenario,
    SimGraph,
    billed_gb_s,
    percentile,
    simulate,
)
from daskless.scheduler.sizing import (
    ORACLE_LIMIT,
    SIZE_LADDER_MB,
    Evaluation,
    non_uniform,
    oracle,
    seed_non_uniform,
    uniform,
)

__all__ = [
    "PLANNERS",
    "Decision",
    "Target",
    "TaskPredictions",
    "parse_sla",
    "plan_sizes",
    "predict_tasks",
]

PLANNERS = ("wukong", "uniform", "non-uniform", "seed-uniform", "seed-non-uniform", "oracle")
#: The seed system's one size.
SEED_UNIFORM_MB = 2048
#: Whole-run scenarios drawn for a percentile target.
DRAWS = 200
#: Sub-DAGs with more tasks than this draw their time from a normal approximation.
EXACT_DRAW_TASKS = 16


@dataclass(frozen=True)
class Target:
    """What the plan must hold: the mean makespan (``percentile`` None) or a percentile, at
    most ``bound_s`` (None: what the configured size would give)."""

    percentile: float | None = None
    bound_s: float | None = None

    @property
    def label(self) -> str:
        return "average" if self.percentile is None else f"p{self.percentile:g}"


def parse_sla(text: str, bound_s: float | None = None) -> Target:
    """``average`` or ``p50`` ... ``p99``; ``ValueError`` for anything else."""
    text = str(text).strip().lower()
    if bound_s is not None and not (isinstance(bound_s, (int, float)) and bound_s > 0):
        raise ValueError(f"a makespan bound is a positive number of seconds, not {bound_s!r}")
    if text in ("average", "mean"):
        return Target(None, bound_s)
    match = re.fullmatch(r"p(\d{2})", text)
    if match and 50 <= int(match.group(1)) <= 99:
        return Target(float(match.group(1)), bound_s)
    raise ValueError(f"an SLA is 'average' or a percentile p50 to p99, not {text!r}")


@dataclass(frozen=True)
class TaskPredictions:
    """Per task: its prefix, predicted input and output bytes, and duration at any size."""

    prefixes: Sequence[str]
    input_bytes: Sequence[float]
    output_bytes: Sequence[float]
    predictor: Predictor
    factors: Sequence[float | None] = ()
    """Per task, its node's own median ratio to its prefix's typical time (None: none
    known)."""

    def duration(self, task: int, size: float, rng: random.Random | None = None) -> float:
        """The task's own time (what a task's metrics measure)."""
        mean = self.predictor.duration(self.prefixes[task], self.input_bytes[task], size, rng)
        return mean + self.node_shift(task, size)

    def node_shift(self, task: int, size: float) -> float:
        """How much longer the task's node takes than its prefix's typical task (0 without
        a factor). Added, not multiplied into the prefix's mean: that mean already counts the
        prefix's rare long tasks, and a node that is usually one of them would count them
        twice."""
        factor = self.factors[task] if self.factors else None
        if factor is None:
            return 0.0
        return self.predictor.typical(self.prefixes[task], self.input_bytes[task], size) \
            * (factor - 1)

    def typical(self, task: int, size: float) -> float:
        """The task's most likely time: its node's median where known, else its prefix's."""
        factor = self.factors[task] if self.factors else None
        prefix, inputs = self.prefixes[task], self.input_bytes[task]
        typical = self.predictor.typical(prefix, inputs, size)
        return typical * factor if factor is not None else typical

    def busy(self, task: int, size: float, rng: random.Random | None = None) -> float:
        """The worker's time for the task: its own time and the worker's per-task work."""
        return self.duration(task, size, rng) + self.predictor.engine_s(size)


def predict_tasks(deps: Sequence[Sequence[int]], prefixes: Sequence[str],
                  predictor: Predictor, nodes: Sequence[int] = ()) -> TaskPredictions:
    """Input and output sizes, producers first (inputs are the predicted outputs of deps);
    ``nodes`` (``history.structure``) lets tasks use their own node's history."""
    n = len(deps)
    nodes = nodes or [-1] * n
    inputs, outputs = [0.0] * n, [0.0] * n
    for task in _topological(deps):
        inputs[task] = sum(outputs[d] for d in deps[task])
        outputs[task] = predictor.output_bytes(prefixes[task], inputs[task], nodes[task])
    factors = [predictor.node_factor(prefixes[t], nodes[t]) for t in range(n)]
    return TaskPredictions(prefixes, inputs, outputs, predictor, factors)


def _topological(deps: Sequence[Sequence[int]]) -> list[int]:
    if all(d < task for task, ds in enumerate(deps) for d in ds):
        return list(range(len(deps)))  # plans list producers first: the common case
    dependents: list[list[int]] = [[] for _ in deps]
    waiting = [len(ds) for ds in deps]
    for task, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(task)
    order = [t for t, w in enumerate(waiting) if w == 0]
    for task in order:
        for succ in dependents[task]:
            waiting[succ] -= 1
            if waiting[succ] == 0:
                order.append(succ)
    return order


@dataclass(frozen=True)
class Decision:
    """What the planner decided and predicts."""

    planner: str
    sizes: tuple[int, ...]
    """Worker memory (MB) per sub-DAG."""
    predicted_makespan_s: float | None
    """The target's makespan (mean or percentile), with the run overhead; None: no history."""
    predicted_p50_s: float | None
    critical_path: tuple[int, ...]
    """Tasks of the predicted critical path, first to last."""
    durations: tuple[float, ...]
    """Predicted (median) duration of every task at its sub-DAG's size."""
    cost_gb_s: float | None
    output_bytes: tuple[float, ...] = ()
    """Predicted output size of every task."""


def plan_sizes(graph: SimGraph, predictions: TaskPredictions, planner: str, target: Target,
               default_mb: int, ladder: Sequence[int] = SIZE_LADDER_MB,
               seed: int = 0) -> Decision:
    """Sizes per sub-DAG and the prediction for them (see the module docstring)."""
    if planner not in PLANNERS:
        raise ValueError(f"unknown planner {planner!r}; expected one of {', '.join(PLANNERS)}")
    parts = graph.partitions
    default = (default_mb,) * parts
    predictor = predictions.predictor
    if not all(predictor.knows(p) for p in set(predictions.prefixes)):
        # A prefix never seen would be guessed (dask's 0.5 s): plan as without history.
        return Decision(planner, default, None, None, (), (), None)
    link = predictor.link()
    coarse = CoarsePlan(graph, predictions, sorted({*ladder, default_mb}), link, target, seed)
    coarse.calibrate(default)
    bound = (target.bound_s - predictor.overhead_s(default_mb) if target.bound_s is not None
             else coarse(default).makespan_s)
    sizes = _choose(planner, coarse, bound, default)
    return _predict(graph, predictions, sizes, coarse, planner, link)


def _choose(planner: str, coarse: CoarsePlan, bound: float,
            default: tuple[int, ...]) -> tuple[int, ...]:
    ladder = coarse.ladder
    if planner == "wukong":
        return default
    if planner == "seed-uniform":
        return (SEED_UNIFORM_MB,) * coarse.partitions
    if planner == "seed-non-uniform":
        return seed_non_uniform(coarse, ladder)
    if planner == "uniform":
        return uniform(coarse, bound, ladder)
    if planner == "oracle" and len(ladder) ** coarse.partitions <= ORACLE_LIMIT:
        return oracle(coarse, bound, ladder)
    return non_uniform(coarse, bound, ladder)


def _predict(graph: SimGraph, predictions: TaskPredictions, sizes: tuple[int, ...],
             coarse: CoarsePlan, planner: str, link: Link) -> Decision:
    """The chosen plan simulated task by task: its mean makespan and critical path; the
    target's percentile scaled from the coarse model's draws."""
    at = [sizes[p] for p in graph.partition]
    predictor = predictions.predictor
    means = [predictions.duration(t, at[t]) for t in range(len(at))]
    engine = {size: predictor.engine_s(size) for size in set(sizes)}
    busy = [d + engine[at[t]] for t, d in enumerate(means)]
    # Reported per task: the most likely duration (a task's own median, not the mean a
    # makespan adds up).
    durations = tuple(predictions.typical(t, at[t]) for t in range(len(at)))
    outcome = simulate(graph, Scenario(busy, [0.0] * graph.partitions), sizes, link)
    overhead = statistics.fmean(predictor.overhead_s(size) for size in sizes)
    mean = outcome.makespan_s
    coarse_mean = coarse.mean_makespan(sizes)
    scale = mean / coarse_mean if coarse_mean > 0 else 1.0
    cold = coarse.cold_start(sizes)
    draws = with_overheads(coarse.sampled(sizes), scale,
                           [overhead + r for r in predictor.overhead_spread()], cold, coarse.seed)
    p50 = percentile(draws, 50)
    predicted = max(mean + overhead + cold[0] * cold[1], 0.0)
    if coarse.target.percentile is not None:
        predicted = percentile(draws, coarse.target.percentile)
    return Decision(planner, sizes, predicted, p50, outcome.critical_path, durations,
                    outcome.cost_gb_s, tuple(predictions.output_bytes))


def with_overheads(makespans: Sequence[float], scale: float, overheads: Sequence[float],
                   cold: tuple[float, float], seed: int) -> list[float]:
    """Simulated makespans (scaled to the task-by-task simulation) each with a run overhead
    drawn from past warm runs (none: 0) and, with ``cold``'s chance, its cold start's
    seconds, sorted: a run's overhead varies from run to run, and on a short run its spread
    is most of the makespan's."""
    rng = random.Random(seed)
    extra = list(overheads) or [0.0]
    chance, seconds = cold
    return sorted(max(m * scale + rng.choice(extra)
                      + (seconds if rng.random() < chance else 0.0), 0.0) for m in makespans)


class CoarsePlan:
    """An ``sizing.Evaluator`` on one node per sub-DAG (see the module docstring)."""

    def __init__(self, graph: SimGraph, predictions: TaskPredictions, ladder: Sequence[int],
                 link: Link, target: Target, seed: int) -> None:
        self.ladder = list(ladder)
        self.link, self.target, self.seed = link, target, seed
        self.graph = _coarse_graph(graph)
        parts = graph.partitions
        members: list[list[int]] = [[] for _ in range(parts)]
        for task, part in enumerate(graph.partition):
            members[part].append(task)
        self.members = members
        self.predictions = predictions
        self._spreads: dict[str, tuple[DurationModel, float]] = {}
        # Mean and variance of each sub-DAG's time at each size (tasks' spreads summed).
        self.mean: dict[int, list[float]] = {}
        self.var: dict[int, list[float]] = {}
        for size in self.ladder:
            self._moments(size)
        self._cache: dict[tuple[int, ...], Evaluation] = {}
        self.spread = 1.0

    def calibrate(self, sizes: Sequence[int]) -> None:
        """Judge plans at the target's percentile from now on: their mean makespan times the
        ratio of percentile to mean that whole-run draws give at ``sizes`` (drawing for every
        plan the search looks at would cost a hundred times more)."""
        if self.target.percentile is None:
            return
        mean = self.mean_makespan(sizes)
        if mean > 0:
            self.spread = percentile(self.sampled(sizes), self.target.percentile) / mean
        self._cache.clear()

    @property
    def partitions(self) -> int:
        return len(self.members)

    def _moments(self, size: int) -> None:
        means, variances = [], []
        predictions = self.predictions
        engine = predictions.predictor.engine_s(size)
        for tasks in self.members:
            mean, var = engine * len(tasks), 0.0
            for t in tasks:
                model, v = self._spread(predictions.prefixes[t])
                predicted = model.predict(predictions.input_bytes[t], size)
                mean += predicted + predictions.node_shift(t, size)
                var += predicted * predicted * v
            means.append(mean)
            variances.append(var)
        self.mean[size], self.var[size] = means, variances

    def _spread(self, prefix: str) -> tuple[DurationModel, float]:
        """A prefix's model, and the variance of its durations relative to their mean."""
        found = self._spreads.get(prefix)
        if found is None:
            model = self.predictions.predictor.duration_model(prefix)
            residuals = model.residuals
            mean = statistics.fmean(residuals)
            variance = statistics.pvariance(residuals) if len(residuals) > 1 else 0.0
            found = self._spreads[prefix] = (model, variance / (mean * mean) if mean else 0.0)
        return found

    def _durations(self, sizes: Sequence[int]) -> list[float]:
        for size in set(sizes) - self.mean.keys():
            self._moments(size)
        return [self.mean[s][p] for p, s in enumerate(sizes)]

    def mean_makespan(self, sizes: Sequence[int]) -> float:
        scenario = Scenario(self._durations(sizes), [0.0] * self.partitions)
        return simulate(self.graph, scenario, sizes, self.link).makespan_s

    def cold_start(self, sizes: Sequence[int]) -> tuple[float, float]:
        """The chance that a run of the plan meets a cold start, and the seconds it adds
        (``Predictor.cold_start`` at the plan's least favourable size)."""
        colds = [self.predictions.predictor.cold_start(s) for s in set(sizes)]
        return max(c for c, _ in colds), max(s for _, s in colds)

    def __call__(self, sizes: Sequence[int]) -> Evaluation:
        key = tuple(sizes)
        found = self._cache.get(key)
        if found is not None:
            return found
        scenario = Scenario(self._durations(sizes), [0.0] * self.partitions)
        outcome = simulate(self.graph, scenario, sizes, self.link)
        chance, seconds = self.cold_start(sizes)
        judged = Evaluation(outcome.makespan_s * self.spread + chance * seconds,
                            outcome.cost_gb_s,
                            frozenset(outcome.critical_path))
        self._cache[key] = judged
        return judged

    def work_cost(self, partition: int, size: int) -> float:
        return billed_gb_s(self.busy_s(partition, size), size)

    def busy_s(self, partition: int, size: int) -> float:
        if size not in self.mean:
            self._moments(size)
        return self.mean[size][partition]

    def sampled(self, sizes: Sequence[int]) -> list[float]:
        """Makespans of ``DRAWS`` whole-run scenarios at ``sizes`` (same seed for every plan,
        so that plans are compared on the same luck), sorted."""
        self._durations(sizes)
        rng = random.Random(self.seed)
        makespans = []
        for _ in range(DRAWS):
            durations = [self._draw(rng, p, s) for p, s in enumerate(sizes)]
            scenario = Scenario(durations, [0.0] * self.partitions)
            makespans.append(simulate(self.graph, scenario, sizes, self.link).makespan_s)
        return sorted(makespans)

    def _draw(self, rng: random.Random, part: int, size: int) -> float:
        tasks = self.members[part]
        if len(tasks) <= EXACT_DRAW_TASKS:
            return sum(self.predictions.busy(t, size, rng) for t in tasks)
        return max(0.0, rng.gauss(self.mean[size][part], math.sqrt(self.var[size][part])))


def _coarse_graph(graph: SimGraph) -> SimGraph:
    """One node per sub-DAG; an edge where any task edge crosses; a sub-DAG's output is the
    most it sends any one other sub-DAG."""
    parts = graph.partitions
    deps: list[set[int]] = [set() for _ in range(parts)]
    sent: dict[tuple[int, int], float] = {}
    for task, inputs in enumerate(graph.deps):
        consumer = graph.partition[task]
        for d in inputs:
            producer = graph.partition[d]
            if producer != consumer:
                deps[consumer].add(producer)
                sent[producer, consumer] = sent.get((producer, consumer), 0.0) \
                    + graph.output_bytes[d]
    out = [0.0] * parts
    for (producer, _), size in sent.items():
        out[producer] = max(out[producer], size)
    return SimGraph([sorted(d) for d in deps], list(range(parts)), out)
