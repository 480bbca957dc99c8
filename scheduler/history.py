"""What past runs of a graph teach the planner, and the predictions drawn from it.

A run's metrics (per task: duration, output size in memory, worker size; per fetch: bytes and
seconds) are folded into a :class:`History`, one per *structure*: the shape of the graph with
its task prefixes, hashed by :func:`structure_key` so that a graph rebuilt with new keys (new
tokens, as every ``dask.array`` call makes) still finds the history of its earlier builds. A
:class:`Predictor` then answers, for a task of a new run, from the most specific knowledge
there is:

1. the prefix's models fitted on this structure's history (``prediction.fit_duration`` and
   ``fit_output``: duration as a function of input bytes and worker size, with a fixed term;
   output size as a function of input bytes), kept with their spread for the simulator;
2. else the prefix's running average over every structure seen (``Averages``), scaled to the
   worker size as CPU work;
3. else ``prediction.DEFAULT_DURATION_S`` and outputs as big as their inputs.

It also learns how outputs move between workers (a :class:`~simulation.Link` fitted on the
fetches: latency plus bytes over bandwidth), the worker's own time per task (``engine_cpu_s``:
the median gap between consecutive tasks of an invocation, in CPU seconds at one vCPU: reading,
deserialising, serialising and delivering values runs under the worker's CPU share as its
tasks do, so it scales with the size like CPU work) and what the simulation still leaves out
(the run's overhead: the measured makespan minus the makespan simulated with the tasks'
*measured* durations, i.e. client submission, invocation, cold starts and result fetching).
Cold starts are told apart (``History.starts``): a run in which some invocation started cold
(a new worker process: loading Python and the tasks' libraries, under the worker's CPU share)
took longer beyond its simulation than the warm runs did. How often the last runs at a size
had one, and by how much, predicts the next run's.

Everything here is pure and serialisable to JSON (``to_json`` / ``from_json``): the client
reads and writes it in the store, next to the metrics it came from.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from daskless.scheduler.prediction import (
    DEFAULT_DURATION_S,
    VCPU_MB,
    DurationModel,
    OutputModel,
    Sample,
    fit_duration,
    fit_output,
    vcpus,
)
from daskless.scheduler.simulation import DIRECT, Link

__all__ = [
    "MAX_SAMPLES",
    "Averages",
    "History",
    "Observation",
    "Predictor",
    "structure_key",
]

#: Samples kept per prefix (the most recent): enough to fit and to sample the spread from.
MAX_SAMPLES = 512
#: Fetch samples kept, for the link model.
MAX_TRANSFERS = 512
#: Observations kept per node of a structure.
NODE_SAMPLES = 3
#: A node's own durations are used only when they differ from its prefix's by this factor.
NODE_NOISE = 1.5
#: Runs remembered per structure (their ids: a run is folded in once).
MAX_RUNS = 64
#: CPUs a task may use, tried when fitting a prefix seen at several sizes above one vCPU.
PARALLELISM_CANDIDATES = (1.0, 2.0, 4.0, 6.0)
#: Runs per size whose share of cold starts predicts the next run's (platforms keep
#: instances warm for minutes: recent runs say more than old ones).
COLD_WINDOW = 5
#: Run overheads more than this many median absolute deviations above the median are left
#: out of a percentile's draws (see ``Predictor.overhead_spread``).
SPREAD_LIMIT = 5.0


def structure_key(prefixes: Sequence[str], deps: Sequence[Sequence[int]], backend: str) -> str:
    """A name for the shape of a graph that does not depend on its keys.

    Task ``i`` has prefix ``prefixes[i]`` and reads ``deps[i]``. Three rounds of label
    refinement (each task's label becomes a hash of its label and its inputs' labels, as in the
    Weisfeiler-Lehman graph hash) and the multiset of final labels give a hash that is the same
    for any numbering of the same graph; ``backend`` (the invoker) is part of it, as durations
    and transfers differ between backends.
    """
    return structure(prefixes, deps, backend)[0]


def structure(prefixes: Sequence[str], deps: Sequence[Sequence[int]],
              backend: str) -> tuple[str, list[int]]:
    """:func:`structure_key` and every task's *node*: its rank among the tasks ordered by
    final label, then by their order in the plan. A graph rebuilt with new keys is planned in
    the same order, so a node names the same task in every build, and its own history (what
    its prefix's model cannot tell apart, such as which half of a tuple a ``getitem`` takes)
    can follow it."""
    names = {p: int(_digest(p), 16) for p in set(prefixes)}
    labels = [names[p] for p in prefixes]
    for _ in range(3):
        # ``hash`` of a tuple of ints is the same in every process (only str and bytes hashes
        # are salted; other Python versions may differ, and then share no history), and
        # several times cheaper than a digest per task.
        labels = [hash((labels[i], *sorted([labels[d] for d in deps[i]])))
                  for i in range(len(labels))]
    counts = sorted(Counter(labels).items())
    order = sorted(range(len(labels)), key=lambda i: (labels[i], i))
    nodes = [0] * len(labels)
    for rank, task in enumerate(order):
        nodes[task] = rank
    return _digest(f"{backend}|{len(labels)}|{counts}"), nodes


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Observation:
    """One task of a past run."""

    prefix: str
    seconds: float
    input_bytes: float
    memory_mb: float
    output_bytes: float
    node: int = -1
    """The task's node in its structure (see :func:`structure`); -1: unknown."""


@dataclass
class History:
    """The folded metrics of one structure's runs (see the module docstring)."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)
    transfers: list[tuple[float, float]] = field(default_factory=list)
    overheads_s: list[float] = field(default_factory=list)
    makespans_s: list[float] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    engine_cpu_s: list[float] = field(default_factory=list)
    nodes: dict[int, list[list[float]]] = field(default_factory=dict)
    """Per node, its last ``NODE_SAMPLES`` observations: seconds, worker MB, input and output
    bytes."""
    cpu_period_s: float = 0.0
    """The CPU bandwidth period the workers of the last run reported (0: none; see
    ``prediction``)."""
    starts: list[list[float]] = field(default_factory=list)
    """Per run: ``[worker MB, share of its invocations that started cold, its overhead]``."""

    def add_run(self, run_id: str, observations: Sequence[Observation],
                transfers: Sequence[tuple[float, float]], makespan_s: float | None,
                overhead_s: float | None, engine_cpu_s: float | None = None,
                cpu_period_s: float = 0.0,
                starts: tuple[float, float, float] | None = None) -> None:
        """Fold one run in (once: a run already folded is ignored)."""
        if run_id in self.runs:
            return
        self.cpu_period_s = cpu_period_s
        if starts is not None:
            self.starts = [*self.starts, list(starts)][-MAX_RUNS:]
        self.runs = [*self.runs, run_id][-MAX_RUNS:]
        for o in observations:
            kept = self.samples.setdefault(o.prefix, [])
            kept.append(Sample(o.seconds, o.input_bytes, o.memory_mb, o.output_bytes))
            del kept[:-MAX_SAMPLES]
            if o.node >= 0:
                seen = self.nodes.setdefault(o.node, [])
                seen.append([round(o.seconds, 7), o.memory_mb, o.input_bytes, o.output_bytes])
                del seen[:-NODE_SAMPLES]
        self.transfers = [*self.transfers, *transfers][-MAX_TRANSFERS:]
        if makespan_s is not None:
            self.makespans_s = [*self.makespans_s, makespan_s][-MAX_RUNS:]
        if overhead_s is not None:
            self.overheads_s = [*self.overheads_s, overhead_s][-MAX_RUNS:]
        if engine_cpu_s is not None:
            self.engine_cpu_s = [*self.engine_cpu_s, engine_cpu_s][-MAX_RUNS:]

    def to_json(self) -> str:
        return json.dumps({
            "samples": {p: [[s.seconds, s.input_bytes, s.memory_mb, s.output_bytes] for s in ss]
                        for p, ss in self.samples.items()},
            "transfers": self.transfers, "overheads": self.overheads_s,
            "makespans": self.makespans_s, "runs": self.runs, "engine": self.engine_cpu_s,
            "nodes": self.nodes, "period": self.cpu_period_s, "starts": self.starts,
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> History:
        body: dict[str, Any] = json.loads(text)
        return cls(
            {p: [Sample(*row) for row in rows] for p, rows in body["samples"].items()},
            [(float(b), float(s)) for b, s in body["transfers"]],
            [float(x) for x in body["overheads"]], [float(x) for x in body["makespans"]],
            [str(r) for r in body["runs"]], [float(x) for x in body.get("engine", [])],
            {int(n): rows for n, rows in body.get("nodes", {}).items()},
            float(body.get("period", 0.0)),
            [[float(x) for x in row] for row in body.get("starts", [])],
        )


@dataclass
class Averages:
    """Per prefix, over every structure: a running mean of CPU seconds (seconds times the
    vCPUs of the worker) and of output bytes, for prefixes a structure has no history of."""

    cpu_s: dict[str, tuple[int, float]] = field(default_factory=dict)
    output_bytes: dict[str, tuple[int, float]] = field(default_factory=dict)

    def add(self, observations: Sequence[Observation]) -> None:
        for o in observations:
            _running(self.cpu_s, o.prefix, o.seconds * min(vcpus(o.memory_mb), 1.0))
            _running(self.output_bytes, o.prefix, o.output_bytes)

    def to_json(self) -> str:
        return json.dumps({"cpu_s": self.cpu_s, "output_bytes": self.output_bytes})

    @classmethod
    def from_json(cls, text: str | bytes) -> Averages:
        body = json.loads(text)
        return cls({p: (int(n), float(m)) for p, (n, m) in body["cpu_s"].items()},
                   {p: (int(n), float(m)) for p, (n, m) in body["output_bytes"].items()})


def _running(means: dict[str, tuple[int, float]], prefix: str, value: float) -> None:
    n, mean = means.get(prefix, (0, 0.0))
    means[prefix] = (n + 1, mean + (value - mean) / (n + 1))


class Predictor:
    """Predictions for the tasks of a run (see the module docstring for where they come from)."""

    def __init__(self, history: History | None = None, averages: Averages | None = None) -> None:
        self.history = history or History()
        self.averages = averages or Averages()
        self._durations: dict[str, DurationModel] = {}
        self._outputs: dict[str, OutputModel] = {}
        self._overheads: DurationModel | None = None

    @property
    def informed(self) -> bool:
        """Whether anything was learnt (without, planners keep to today's behaviour)."""
        return bool(self.history.samples or self.averages.cpu_s)

    def knows(self, prefix: str) -> bool:
        return prefix in self.history.samples or prefix in self.averages.cpu_s

    def duration_model(self, prefix: str) -> DurationModel:
        model = self._durations.get(prefix)
        if model is None:
            model = self._durations[prefix] = self._fit_duration(prefix)
        return model

    def output_model(self, prefix: str) -> OutputModel:
        model = self._outputs.get(prefix)
        if model is None:
            model = self._outputs[prefix] = self._fit_output(prefix)
        return model

    def duration(self, prefix: str, input_bytes: float, memory_mb: float,
                 rng: random.Random | None = None) -> float:
        model = self.duration_model(prefix)
        if rng is None:
            return model.predict(input_bytes, memory_mb)
        return model.sample(rng, input_bytes, memory_mb)

    def typical(self, prefix: str, input_bytes: float, memory_mb: float) -> float:
        """A task's most likely duration (the median, where ``duration`` gives the mean)."""
        return self.duration_model(prefix).typical(input_bytes, memory_mb)

    def output_bytes(self, prefix: str, input_bytes: float, node: int = -1) -> float:
        """Output size: the node's own median when it has history, else its prefix's model."""
        seen = self.history.nodes.get(node)
        if seen:
            return statistics.median(row[3] for row in seen)
        return max(0.0, self.output_model(prefix).predict(input_bytes))

    def node_factor(self, prefix: str, node: int) -> float | None:
        """How the node's own durations compare with its prefix's typical ones (the median
        ratio; the node's mean is its prefix's mean times as much), or None where the node
        has no history or is within ``NODE_NOISE`` of its prefix: a few samples of one node
        are noisier than a prefix's many, and only a node that its prefix's model cannot
        describe (a transpose that copies among ones that do not) is worth its own
        number."""
        seen = self.history.nodes.get(node)
        if not seen:
            return None
        model = self.duration_model(prefix)
        ratios = [row[0] / p for row in seen if (p := model.typical(row[2], row[1])) > 0]
        if not ratios:
            return None
        factor = statistics.median(ratios)
        return factor if not 1 / NODE_NOISE <= factor <= NODE_NOISE else None

    def link(self) -> Link:
        """Transfers between workers, fitted on past fetches (free with none)."""
        transfers = self.history.transfers
        if len(transfers) < 3:
            return DIRECT
        # At one vCPU the duration model is latency (``cpu_s``) plus seconds per byte.
        model = fit_duration([Sample(s, b, VCPU_MB) for b, s in transfers])
        bandwidth = 1 / model.per_byte_s if model.per_byte_s > 0 else float("inf")
        return Link(model.fixed_s + model.cpu_s, bandwidth)

    def engine_s(self, memory_mb: float) -> float:
        """The worker's own time per task at ``memory_mb`` (median of past runs; 0 without)."""
        engine = self.history.engine_cpu_s
        if not engine:
            return 0.0
        return statistics.median(engine) / min(vcpus(memory_mb), 1.0)

    def overhead_s(self, memory_mb: float = VCPU_MB) -> float:
        """What a warm run at ``memory_mb`` takes beyond its simulation (0 without history).
        Part of it is the workers' work outside tasks (starting and ending invocations,
        under their CPU share), part is not (the client's submission and result fetching):
        fitted as ``fixed + cpu / vcpus`` on the warm runs (``prediction.fit_duration``),
        so runs at a small size, whose overhead is larger, do not inflate a large one's."""
        model = self._overhead_model()
        return max(model.curve(0.0, memory_mb), 0.0) if model is not None else 0.0

    def overhead_spread(self) -> list[float]:
        """How past warm runs' overheads fell around the fit (seconds, for percentiles),
        without the runs far outside it (``robust_spread``): a run that waited out a lost
        worker's lease or a pause of the whole machine is not what a plan is judged on."""
        model = self._overhead_model()
        if model is None:
            return []
        return robust_spread([o - model.curve(0.0, m) for m, o in self._warm_overheads()])

    def _overhead_model(self) -> DurationModel | None:
        if self._overheads is None:
            runs = self._warm_overheads()
            self._overheads = (fit_duration([Sample(max(o, 0.0), 0.0, m) for m, o in runs])
                               if runs else None)
        return self._overheads

    def _warm_overheads(self) -> list[tuple[float, float]]:
        """``(worker MB, overhead)`` of the runs without a cold start (all runs' overheads,
        at one vCPU, where none says whether it had one)."""
        warm = [(m, o) for m, share, o in self.history.starts if share == 0]
        return warm or [(VCPU_MB, o) for o in self.history.overheads_s]

    def cold_start(self, memory_mb: float) -> tuple[float, float]:
        """The chance that a run at ``memory_mb`` meets a cold start, and the seconds it then
        adds: the share of the last ``COLD_WINDOW`` runs at that size with one (a platform
        keeps instances warm per size; at a size not run yet, the last runs at any), and the
        median of what cold runs took beyond the warm runs' overhead, as CPU time at the
        size's share."""
        runs = self.history.starts
        extra = [max(o - self.overhead_s(m), 0.0) * min(vcpus(m), 1.0)
                 for m, share, o in runs if share > 0]
        recent = [r for r in runs if r[0] == memory_mb][-COLD_WINDOW:] or runs[-COLD_WINDOW:]
        if not extra or not recent:
            return 0.0, 0.0
        chance = sum(1 for r in recent if r[1] > 0) / len(recent)
        return chance, statistics.median(extra) / min(vcpus(memory_mb), 1.0)

    def _fit_duration(self, prefix: str) -> DurationModel:
        samples = self.history.samples.get(prefix)
        if samples:
            return _best_parallelism(samples, self.history.cpu_period_s)
        if prefix in self.averages.cpu_s:
            return DurationModel(0.0, self.averages.cpu_s[prefix][1], 0.0)
        return DurationModel(DEFAULT_DURATION_S, 0.0, 0.0)

    def _fit_output(self, prefix: str) -> OutputModel:
        samples = self.history.samples.get(prefix)
        if samples:
            return fit_output(samples)
        if prefix in self.averages.output_bytes:
            return OutputModel(self.averages.output_bytes[prefix][1], 0.0)
        return OutputModel(0.0, 1.0)


def robust_spread(values: Sequence[float]) -> list[float]:
    """``values`` without those more than ``SPREAD_LIMIT`` median absolute deviations above
    their median (the deviation at least a tenth of the median, or a millisecond)."""
    if len(values) < 3:
        return list(values)
    middle = statistics.median(values)
    deviation = max(statistics.median(abs(v - middle) for v in values), 0.1 * abs(middle), 1e-3)
    return [v for v in values if v <= middle + SPREAD_LIMIT * deviation]


def _best_parallelism(samples: Sequence[Sample], period_s: float = 0.0) -> DurationModel:
    """The duration model with the parallelism that fits best, when the samples span sizes
    above one vCPU (below, every candidate predicts the same)."""
    sizes = {s.memory_mb for s in samples}
    spans = len(sizes) > 1 and any(vcpus(m) > 1.0 for m in sizes)
    candidates = PARALLELISM_CANDIDATES if spans else (1.0,)
    fits = [fit_duration(samples, p, period_s) for p in candidates]
    return min(fits, key=lambda m: _squared_error(m, samples))


def _squared_error(model: DurationModel, samples: Sequence[Sample]) -> float:
    return sum((model.curve(s.input_bytes, s.memory_mb) - s.seconds) ** 2 for s in samples)

