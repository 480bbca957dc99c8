"""The client's side of planning: learn from the store what earlier runs did, then size a plan.

``daskless.scheduler.planning`` decides, purely; this module does the I/O around it:

1. **Recognise the graph.** Each run's structure (``history.structure_key`` of its task
   prefixes and edges, and the invoker kind) names its history, so a graph rebuilt with new
   keys finds the runs of its earlier builds.
2. **Learn.** The store keeps, per structure, the folded :class:`~history.History` and the
   runs noted since (:meth:`Store.note_history_run`, written when a run with metrics ends
   well). Planning folds the noted runs whose metrics are complete (read from their metrics
   streams with :func:`daskless.report.data.load_run`), and per-prefix running averages across
   structures, then saves both back: each run is read once, by the next plan that needs it.
   A run whose last metrics are still arriving is left for a later plan.
3. **Plan.** The planner named by ``daskless.planner`` sizes the sub-DAGs from the sizes the
   platform can start (``daskless.sizes`` for a gateway, the sizes of
   ``daskless.lambda.functions`` for Lambda; one size, ``daskless.worker-memory``, for the
   local pool) and predicts the makespan.

``wukong`` neither reads nor notes history: the default path costs what it cost before the
planner existed. Runs planned by ``uniform`` or ``non-uniform`` are noted (with metrics on), and
until their structure has history those planners plan exactly as ``wukong`` does.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from dask.utils import key_split

from daskless.config import PlannerSettings
from daskless.observe import metrics_settings
from daskless.plan import Plan
from daskless.report.data import RunMetrics, load_run
from daskless.scheduler.history import Averages, History, Observation, Predictor
from daskless.scheduler.history import structure as shape_of
from daskless.scheduler.planning import Decision, plan_sizes, predict_tasks
from daskless.scheduler.prediction import vcpus
from daskless.scheduler.simulation import Link, Scenario, SimGraph, simulate
from daskless.worker_runtime.store.base import Store

#: The history record of per-prefix averages over every structure.
AVERAGES = "averages"
#: Seconds after which a noted run is folded even if some of its metrics never arrived.
INCOMPLETE_AFTER_S = 60.0
#: Seconds a history is kept when metrics (and their retention setting) are off.
DEFAULT_RETENTION_S = 7 * 86400.0
#: Structures whose fitted predictor this process keeps, for plans with nothing new to learn.
MAX_CACHED = 32
_learnt: dict[tuple[str, str], tuple[tuple[bytes | None, bytes | None], Predictor]] = {}


@dataclass(frozen=True)
class Planned:
    """A plan with its sizes, what the planner predicted, and how long planning took."""

    plan: Plan
    structure: str
    decision: Decision
    seconds: float
    learnt_runs: int


def plan_run(store: Store, plan: Plan, kind: str, sizes: tuple[int, ...] | None,
             settings: PlannerSettings, default_mb: int) -> Planned:
    """Plan ``plan``'s sizes from history (see the module docstring)."""
    started = time.perf_counter()
    if settings.planner == "wukong":
        decision = Decision("wukong", (default_mb,) * len(plan.specs), None, None, (), (), None)
        return Planned(plan, "", decision, 0.0, 0)
    prefixes, deps, partition = _shape(plan)
    structure, nodes = shape_of(prefixes, deps, kind)
    predictor = learn(store, structure)
    predictions = predict_tasks(deps, prefixes, predictor, nodes)
    graph = SimGraph(deps, partition, predictions.output_bytes)
    ladder = sizes or (default_mb,)
    decision = plan_sizes(graph, predictions, settings.planner, settings.target, default_mb,
                          ladder)
    # On a platform of several sizes every sub-DAG asks for its size, the default one too,
    # so that runs with and without history are measured alike.
    sized_plan = with_sizes(plan, decision.sizes) if sizes else plan
    return Planned(sized_plan, structure, decision, time.perf_counter() - started,
                   len(predictor.history.runs))


def _shape(plan: Plan) -> tuple[list[str], list[tuple[int, ...]], list[int]]:
    """Prefix, inputs and sub-DAG of every task, by task id."""
    n = len(plan.keys)
    deps: list[tuple[int, ...]] = [()] * n
    partition = [0] * n
    for part, spec in plan.specs.items():
        for task_id, info in spec.tasks.items():
            deps[task_id], partition[task_id] = info.deps, part
    return [key_split(k) for k in plan.keys], deps, partition


def with_sizes(plan: Plan, sizes: Sequence[int]) -> Plan:
    """``plan`` with every sub-DAG's worker size set (``RunOptions.sizes_mb``)."""
    options = replace(plan.options, sizes_mb=tuple(sizes))
    specs = {p: replace(spec, options=options) for p, spec in plan.specs.items()}
    return replace(plan, specs=specs, options=options)


def note_run(store: Store, structure: str, run_id: str, retention_s: float) -> None:
    """A run of ``structure`` ended well: the next plan of it folds its metrics in."""
    # A plan without history is still a plan: metrics are never worth failing a run.
    with contextlib.suppress(Exception):
        store.note_history_run(structure, run_id, retention_s)


def learn(store: Store, structure: str) -> Predictor:
    """The structure's history with every complete noted run folded in (saved back)."""
    blob, noted = store.history(structure)
    averages_blob, _ = store.history(AVERAGES)
    cache_key = (store.url, structure)
    cached = _learnt.get(cache_key)
    if cached is not None and not noted and cached[0] == (blob, averages_blob):
        return cached[1]  # nothing new: the models fitted last time still hold
    history = History.from_json(blob) if blob else History()
    averages = Averages.from_json(averages_blob) if averages_blob else Averages()
    folded = [run_id for run_id in noted if _fold(store, run_id, history, averages)]
    if folded:
        settings = metrics_settings()
        retention = settings.retention_s if settings is not None else DEFAULT_RETENTION_S
        blob, averages_blob = history.to_json().encode(), averages.to_json().encode()
        store.save_history(structure, blob, folded, retention)
        store.save_history(AVERAGES, averages_blob, (), retention)
    predictor = Predictor(history, averages)
    if len(_learnt) >= MAX_CACHED:
        _learnt.pop(next(iter(_learnt)))
    _learnt[cache_key] = ((blob, averages_blob), predictor)
    return predictor


def _fold(store: Store, run_id: str, history: History, averages: Averages) -> bool:
    """Fold a noted run's metrics in; False if they are still arriving (fold it later)."""
    run = load_run(store, run_id, settle_s=0.0)
    if not run.complete and time.time() - run.started < INCOMPLETE_AFTER_S:
        return False
    if run.tasks and run.status == "ok":
        observed = observations(run)
        engine = engine_cpu_s(run)
        period = max((m.cpu_period_s for m in run.invocations.values()), default=0.0)
        overhead = overhead_s(run, Predictor(history).link(), engine)
        history.add_run(run_id, observed, transfers(run), run.makespan_s, overhead, engine,
                        period, cold_starts(run, overhead))
        averages.add(observed)
    return True


def observations(run: RunMetrics) -> list[Observation]:
    """Every task that ran once and well: its prefix, time, input and output sizes, size."""
    memory = {inv: m.memory_mb for inv, m in run.invocations.items()}
    sizes = [t.nbytes if t.nbytes is not None else t.output_bytes for t in run.tasks]
    # The backend is not part of a node: any name gives the same nodes.
    _, nodes = shape_of([t.prefix for t in run.tasks], [t.deps for t in run.tasks], "")
    found = []
    for task in run.tasks:
        if task.start is None or task.end is None or task.erred or task.runs != 1:
            continue
        size = sizes[task.id]
        inputs = [sizes[d] for d in task.deps]
        if size is None or any(i is None for i in inputs) or not memory.get(task.inv or ""):
            continue
        found.append(Observation(task.prefix, task.duration, float(sum(i or 0 for i in inputs)),
                                 float(memory[task.inv or ""]), float(size), nodes[task.id]))
    return found


def transfers(run: RunMetrics) -> list[tuple[float, float]]:
    """``(bytes, seconds)`` of the fetches the run's workers made from the store."""
    return [(float(n), float(s)) for t in run.tasks for n, s in t.downloads.values()]


def engine_cpu_s(run: RunMetrics) -> float | None:
    """The workers' own time per task, in CPU seconds at one vCPU: the median gap between
    one task's end and the next one's start in the same invocation (see ``history``). A gap
    in which the worker waited for another worker's output is far longer than the usual one
    and the median leaves it out: such waits are what the simulation itself models."""
    memory = {inv: m.memory_mb for inv, m in run.invocations.items() if m.memory_mb}
    spans: dict[str, list[tuple[float, float]]] = {}
    for t in run.tasks:
        if t.inv in memory and t.start is not None and t.end is not None:
            spans.setdefault(t.inv, []).append((t.start, t.end))
    gaps = []
    for inv, ran in spans.items():
        ran.sort()
        share = min(vcpus(memory[inv]), 1.0)
        gaps += [max(0.0, after[0] - before[1]) * share for before, after in pairwise(ran)]
    return statistics.median(gaps) if gaps else None


def cold_starts(run: RunMetrics,
                overhead: float | None) -> tuple[float, float, float] | None:
    """``(worker MB, share of its invocations that started cold, overhead)`` of a run
    (``History.starts``); None without invocations or an overhead."""
    invocations = [m for m in run.invocations.values() if m.memory_mb]
    if not invocations or overhead is None:
        return None
    memory = Counter(m.memory_mb for m in invocations).most_common(1)[0][0]
    cold = sum(1 for m in invocations if m.cold)
    return float(memory), cold / len(invocations), overhead


def overhead_s(run: RunMetrics, link: Link, engine_cpu: float | None) -> float | None:
    """The run's makespan minus its simulation with the tasks' measured times (and the
    workers' own time per task): what the simulation does not model (submission, cold
    starts, events, result fetching)."""
    if run.makespan_s is None or any(t.start is None for t in run.tasks):
        return None
    memory = {inv: m.memory_mb for inv, m in run.invocations.items()}
    parts = max((t.partition for t in run.tasks), default=-1) + 1
    sizes = [1769] * parts
    for t in run.tasks:
        size = memory.get(t.inv or "")
        if size:
            sizes[t.partition] = size
    graph = SimGraph([t.deps for t in run.tasks], [t.partition for t in run.tasks],
                     [float(t.nbytes or t.output_bytes or 0) for t in run.tasks])
    engine = engine_cpu or 0.0
    busy = [t.duration + engine / min(vcpus(sizes[t.partition]), 1.0) for t in run.tasks]
    scenario = Scenario(busy, [0.0] * parts)
    return run.makespan_s - simulate(graph, scenario, sizes, link).makespan_s


def record(planned: Planned) -> dict[str, Any]:
    """What the run-end metrics record keeps of the planning (for reports)."""
    d = planned.decision
    return {
        "planner": d.planner, "structure": planned.structure, "sizes": list(d.sizes),
        "predicted_p50_s": d.predicted_p50_s, "critical_path": list(d.critical_path),
        "durations": [round(x, 6) for x in d.durations], "cost_gb_s": d.cost_gb_s,
        "outputs": [round(x) for x in d.output_bytes],
        "seconds": planned.seconds, "learnt_runs": planned.learnt_runs,
    }
