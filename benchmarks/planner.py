"""``python -m benchmarks planner``: how well the planner predicts, and what its plans cost.

Starts a redis-server and a ``daskless gateway`` program (``--instances`` workers at most),
whose instances run under their size's CPU share (cgroups; 1,769 MB is one vCPU). The size
ladder is scaled to the machine (``--sizes``, default 256, 512, 768 and 1024 MB: four sub-DAGs
at the largest use about two cores), and every run plans ``--partitions`` sub-DAGs, each
started by one invocation (the engine has one worker, so partitions are not split into entry
groups: the simulator's one worker per sub-DAG is what runs). Every size is warmed up first
by runs that record no metrics (so they teach the planner nothing), so that measured runs
seldom pay cold starts (those that do teach the planner how often, and how long, they are).
For each seed workflow (tree, GEMM, word count, image, SVD1, SVD2 at their quick sizes):

1. **History**: five runs, two at 512 MB and three at 1024 MB (every sub-DAG at one size).
2. **Prediction accuracy**: a run at a size seen (1024 MB) and runs at sizes not seen (256 and
   768 MB). Per task, the planner's predicted duration and output size against the measured
   ones: median absolute percentage error (MdAPE).
3. **Makespan**: ``--repeat`` runs at 1024 MB; the predicted p50 against the measured median.
4. **Plans at a p95 target**: the bound is 1.25 times the measured median of step 3 (1024 MB).
   Interleaved, ``--repeat`` rounds of: every single size of the ladder; the planners
   ``uniform``, ``non-uniform``; the seed system's ``seed-uniform`` (2048 MB) and
   ``seed-non-uniform``; the ``oracle``. Per plan: median makespan, share of runs within the
   bound (SLA attainment), share within the plan's own predicted p95 (calibration), median
   billed GB-seconds.
5. ``non-uniform``'s GB-seconds against the cheapest single size whose attainment is at least
   as high.

Planning time is reported per run (and against the makespan), and once for a 10,000-task
graph. Results go to ``benchmarks/results/planner-<date>.json`` and ``.md``. Everything here
is measured on one machine: the sizes are CPU shares of 2 shared cores, not Lambda's hardware.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Any  # noqa: E402

import dask  # noqa: E402
from dask.base import compute  # noqa: E402

import daskless  # noqa: E402
from benchmarks.http_speed import RESULTS, gateway  # noqa: E402
from benchmarks.workflows import WORKFLOWS, Case  # noqa: E402
from daskless.report.data import RunMetrics, load_run  # noqa: E402
from daskless.scheduler.planning import SEED_UNIFORM_MB  # noqa: E402
from daskless.worker_runtime.auth import generate_secret  # noqa: E402
from daskless.worker_runtime.redis_server import RedisServer, free_port  # noqa: E402

SEED_WORKFLOWS = ("tree-delayed", "gemm", "wordcount", "image", "svd1", "svd2")
HISTORY_SIZES = (512, 512, 1024, 1024, 1024)
SEEN, UNSEEN = (1024,), (256, 768)
BOUND_FACTOR = 1.25
#: Runs per size before any is measured: a run with metrics keeps its workers busy longer
#: than one without, and may need an instance more.
WARM_UPS = 2
#: Tasks at least this long are also reported apart: shorter ones are mostly timer and
#: interpreter noise.
LONG_TASK_S = 0.001
PLANNERS = ("uniform", "non-uniform", "seed-uniform", "seed-non-uniform", "oracle")


@dataclass
class Run:
    """One measured run."""

    workflow: str
    phase: str
    plan: str
    makespan_s: float
    predicted_s: float | None
    predicted_p50_s: float | None
    gb_s: float
    planning_s: float
    sizes: list[int]
    duration_errors: list[float]
    output_errors: list[float]
    long_errors: list[float]
    """``duration_errors`` of the tasks that took at least ``LONG_TASK_S``."""


def settings_for(plan: str, sizes: Sequence[int], bound_s: float | None) -> dict[str, Any]:
    """The config of one plan: a single size (``"512"``) or a planner at a p95 target."""
    if plan.isdigit():
        return {"daskless.planner": "uniform", "daskless.sizes": [int(plan)],
                "daskless.worker-memory": int(plan), "daskless.sla": "average",
                "daskless.sla-bound": None}
    return {"daskless.planner": plan, "daskless.sizes": list(sizes),
            "daskless.worker-memory": max(sizes), "daskless.sla": "p95",
            "daskless.sla-bound": bound_s}


def measured(engine: daskless.Engine, workflow: str, phase: str, plan: str) -> Run:
    """The last run's figures and, per task, the relative errors of the predictions."""
    summary = engine.last_run
    assert summary is not None and summary.store is not None
    metrics = load_run(summary.store, summary.run_id, settle_s=10.0)
    planning = metrics.planning or {}
    durations, outputs, long = _errors(metrics, planning)
    return Run(workflow, phase, plan, summary.makespan_s or float("nan"),
               summary.predicted_makespan_s, planning.get("predicted_p50_s"),
               metrics.billed_gb_s, float(planning.get("seconds", 0.0)),
               list(planning.get("sizes", [])), durations, outputs, long)


def _errors(metrics: RunMetrics,
            planning: dict[str, Any]) -> tuple[list[float], list[float], list[float]]:
    if planning.get("learnt_runs", 0) == 0:
        return [], [], []  # no history: nothing was predicted
    predicted, outputs = planning.get("durations", []), planning.get("outputs", [])
    durations, sizes, long = [], [], []
    for task in metrics.tasks:
        if task.start is None or task.end is None or task.id >= len(predicted):
            continue
        if task.duration > 0:
            error = abs(predicted[task.id] - task.duration) / task.duration
            durations.append(error)
            if task.duration >= LONG_TASK_S:
                long.append(error)
        if task.nbytes:
            sizes.append(abs(outputs[task.id] - task.nbytes) / task.nbytes)
    return durations, sizes, long


def run_once(engine: daskless.Engine, case: Case, config: dict[str, Any], phase: str,
             plan: str) -> Run:
    with dask.config.set(config):
        compute(case.build(), scheduler=engine.get)
    return measured(engine, case.workflow.name, phase, plan)


def mdape(errors: Sequence[float]) -> float | None:
    return 100 * statistics.median(errors) if errors else None


def bench_workflow(engine: daskless.Engine, case: Case, sizes: Sequence[int],
                   repeat: int, log: Callable[[str], None]) -> list[Run]:
    runs: list[Run] = []

    def once(plan: str, phase: str, bound_s: float | None = None) -> Run:
        run = run_once(engine, case, settings_for(plan, sizes, bound_s), phase, plan)
        runs.append(run)
        log(f"  {phase:9} {plan:17} {run.makespan_s:7.3f} s  predicted "
            f"{_fmt(run.predicted_s)}  GB-s {run.gb_s:.3f}  sizes {run.sizes}")
        return run

    for size in sorted({*sizes, SEED_UNIFORM_MB}):
        with dask.config.set({**settings_for(str(size), sizes, None),
                              "daskless.metrics.enabled": False}):
            for _ in range(WARM_UPS):  # starts instances of size
                compute(case.build(), scheduler=engine.get)
    for size in HISTORY_SIZES:
        once(str(size), "history")
    for size in (*SEEN, *UNSEEN):
        once(str(size), "seen" if size in SEEN else "unseen")
    makespans = [once("1024", "makespan").makespan_s for _ in range(repeat)]
    bound = BOUND_FACTOR * statistics.median(makespans)
    log(f"  bound {bound:.3f} s")
    for _ in range(repeat):
        for plan in (*(str(s) for s in sizes), *PLANNERS):
            once(plan, "target", bound)
    return runs


def _compact(run: Run) -> dict[str, Any]:
    """A run for the JSON file: its per-task errors as their count and median."""
    record = asdict(run)
    for name in ("duration_errors", "output_errors", "long_errors"):
        errors = record.pop(name)
        record[name.replace("errors", "mdape")] = mdape(errors)
        record[name.replace("errors", "count")] = len(errors)
    return record


def _fmt(value: float | None) -> str:
    return "   -   " if value is None else f"{value:7.3f}"


def summarise(runs: list[Run], bound: dict[str, float]) -> dict[str, Any]:
    """Per workflow and overall: the accuracy figures and the plan table."""
    out: dict[str, Any] = {"workflows": {}}
    for workflow in dict.fromkeys(r.workflow for r in runs):
        mine = [r for r in runs if r.workflow == workflow]
        out["workflows"][workflow] = _summary(mine, bound[workflow])
    out["overall"] = _accuracy(runs)
    return out


def _accuracy(runs: list[Run]) -> dict[str, float | None]:
    """Median absolute percentage errors of the runs at sizes seen and not seen."""
    def pooled(phases: tuple[str, ...], errors: str) -> float | None:
        return mdape([e for r in runs if r.phase in phases for e in getattr(r, errors)])

    return {
        "duration_mdape_seen": pooled(("seen",), "duration_errors"),
        "duration_mdape_unseen": pooled(("unseen",), "duration_errors"),
        "long_mdape_seen": pooled(("seen",), "long_errors"),
        "long_mdape_unseen": pooled(("unseen",), "long_errors"),
        "output_mdape": pooled(("seen", "unseen"), "output_errors"),
    }


def _summary(runs: list[Run], bound: float) -> dict[str, Any]:
    makespan = [r for r in runs if r.phase == "makespan"]
    measured_median = statistics.median(r.makespan_s for r in makespan)
    predicted_p50 = statistics.median(r.predicted_p50_s for r in makespan
                                      if r.predicted_p50_s is not None)
    plans: dict[str, Any] = {}
    for plan in dict.fromkeys(r.plan for r in runs if r.phase == "target"):
        mine = [r for r in runs if r.phase == "target" and r.plan == plan]
        within_own = [r.makespan_s <= r.predicted_s for r in mine if r.predicted_s is not None]
        plans[plan] = {
            "makespan_s": statistics.median(r.makespan_s for r in mine),
            "makespan_spread_s": [min(r.makespan_s for r in mine),
                                  max(r.makespan_s for r in mine)],
            "attainment": sum(r.makespan_s <= bound for r in mine) / len(mine),
            "within_predicted_p95": (sum(within_own) / len(within_own)) if within_own else None,
            "gb_s": statistics.median(r.gb_s for r in mine),
            "sizes": mine[-1].sizes,
            "planning_s": statistics.median(r.planning_s for r in mine),
        }
    return {
        "bound_s": bound,
        **_accuracy(runs),
        "measured_median_s": measured_median,
        "predicted_p50_s": predicted_p50,
        "p50_error": abs(predicted_p50 - measured_median) / measured_median,
        "plans": plans,
        "non_uniform_saving": _saving(plans),
        "planning_share": statistics.median(r.planning_s / r.makespan_s for r in runs
                                            if r.makespan_s > 0),
    }


def _saving(plans: dict[str, Any]) -> dict[str, Any] | None:
    """``non-uniform`` against the cheapest single size at least as often within the bound."""
    ours = plans.get("non-uniform")
    if ours is None:
        return None
    singles = [(p["gb_s"], name) for name, p in plans.items()
               if name.isdigit() and p["attainment"] >= ours["attainment"]]
    if not singles:
        return {"against": None, "saving": None}
    gb_s, name = min(singles)
    return {"against": name, "saving": 1 - ours["gb_s"] / gb_s}


def planning_cost(engine: daskless.Engine, sizes: Sequence[int], leaves: int) -> dict[str, Any]:
    """Planning time for a tree of ``leaves`` leaves (about ``2 * leaves`` tasks)."""
    from benchmarks.workflows import tree_delayed

    config = settings_for("non-uniform", sizes, None)
    runs = []
    with dask.config.set(config):
        for _ in range(3):
            compute(tree_delayed(leaves=leaves), scheduler=engine.get)
            summary = engine.last_run
            assert summary is not None and summary.store is not None
            planning = load_run(summary.store, summary.run_id, settle_s=10.0).planning or {}
            runs.append((summary.tasks, float(planning.get("seconds", 0.0)),
                         summary.makespan_s or 0.0))
    tasks, seconds, makespan = runs[-1]
    return {"tasks": tasks, "planning_s": seconds, "makespan_s": makespan,
            "all": runs}


@contextmanager
def serverless(instances: int) -> Iterator[tuple[str, str]]:
    secret = generate_secret()
    with RedisServer(port=free_port()) as redis, gateway(redis.url, secret, instances) as url, \
            dask.config.set({"daskless.auth.secret": secret}):
        yield redis.url, url


def markdown(record: dict[str, Any]) -> str:
    lines = [
        f"# Planner benchmark, {record['date']}",
        "",
        f"{record['cpus']} CPUs, gateway with {record['instances']} instances, sizes "
        f"{record['sizes']} MB (CPU share by cgroup), {record['partitions']} sub-DAGs per run, "
        f"{record['repeat']} interleaved rounds per plan. Bound: "
        f"{BOUND_FACTOR}x the median at 1024 MB; target p95.",
        "",
        "| workflow | duration MdAPE seen | unseen | tasks >= 1 ms: seen | unseen | output "
        "MdAPE | predicted p50 | measured median | p50 error | non-uniform GB-s saving (vs) | "
        "planning / makespan |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, w in record["summary"]["workflows"].items():
        saving = w["non_uniform_saving"] or {}
        save = ("-" if saving.get("saving") is None
                else f"{100 * saving['saving']:.0f} % ({saving['against']} MB)")
        lines.append(
            f"| {name} | {_pct(w['duration_mdape_seen'])} | {_pct(w['duration_mdape_unseen'])} "
            f"| {_pct(w['long_mdape_seen'])} | {_pct(w['long_mdape_unseen'])} "
            f"| {_pct(w['output_mdape'])} | {w['predicted_p50_s']:.3f} s | "
            f"{w['measured_median_s']:.3f} s | {100 * w['p50_error']:.1f} % | {save} | "
            f"{100 * w['planning_share']:.1f} % |")
    overall = record["summary"]["overall"]
    lines += ["", f"Overall MdAPE: durations {_pct(overall['duration_mdape_seen'])} at sizes "
              f"seen, {_pct(overall['duration_mdape_unseen'])} at sizes not seen (tasks of at "
              f"least 1 ms: {_pct(overall['long_mdape_seen'])} and "
              f"{_pct(overall['long_mdape_unseen'])}); outputs "
              f"{_pct(overall['output_mdape'])}.", ""]
    for name, w in record["summary"]["workflows"].items():
        lines += [f"## {name} (bound {w['bound_s']:.3f} s)", "",
                  "| plan | sizes | median makespan (min-max) | within bound | within own "
                  "p95 | median GB-s |", "|---|---|---|---|---|---|"]
        for plan, p in w["plans"].items():
            own = "-" if p["within_predicted_p95"] is None \
                else f"{100 * p['within_predicted_p95']:.0f} %"
            lines.append(
                f"| {plan} | {p['sizes']} | {p['makespan_s']:.3f} s "
                f"({p['makespan_spread_s'][0]:.3f}-{p['makespan_spread_s'][1]:.3f}) | "
                f"{100 * p['attainment']:.0f} % | {own} | {p['gb_s']:.3f} |")
        lines.append("")
    cost = record["planning_cost"]
    lines.append(f"Planning a {cost['tasks']}-task tree: {cost['planning_s']:.3f} s "
                 f"({100 * cost['planning_s'] / max(cost['makespan_s'], 1e-9):.1f} % of its "
                 f"{cost['makespan_s']:.2f} s makespan).")
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks planner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs per plan (default 5)")
    parser.add_argument("--instances", type=int, default=48,
                        help="gateway instances at most (default 48: instances of every size "
                             "stay warm)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 768, 1024])
    parser.add_argument("--workflows", nargs="+", default=list(SEED_WORKFLOWS),
                        choices=[w.name for w in WORKFLOWS])
    parser.add_argument("--planning-leaves", type=int, default=5000,
                        help="leaves of the tree whose planning is timed (default 5000: "
                             "about 10,000 tasks)")
    args = parser.parse_args(argv)
    started = time.time()
    by_name = {w.name: w for w in WORKFLOWS}
    runs: list[Run] = []
    bounds: dict[str, float] = {}
    with serverless(args.instances) as (store, url), \
            dask.config.set({"daskless.partitions-per-worker": args.partitions}), \
            daskless.Engine(store=store, invoker=url, workers=1) as engine:
        for name in args.workflows:
            case = by_name[name].cases("quick")[0]
            print(f"{case.name}:", flush=True)
            mine = bench_workflow(engine, case, args.sizes, args.repeat,
                                  lambda line: print(line, flush=True))
            runs += mine
            bounds[name] = BOUND_FACTOR * statistics.median(
                r.makespan_s for r in mine if r.phase == "makespan")
        cost = planning_cost(engine, args.sizes, args.planning_leaves)
    today = datetime.date.today().isoformat()
    record = {
        "date": today, "cpus": os.cpu_count(), "instances": args.instances,
        "partitions": args.partitions, "sizes": args.sizes, "repeat": args.repeat,
        "seconds": time.time() - started, "summary": summarise(runs, bounds),
        "planning_cost": cost, "runs": [_compact(r) for r in runs],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"planner-{today}.json").write_text(json.dumps(record, indent=1) + "\n")
    text = markdown(record)
    (RESULTS / f"planner-{today}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
