"""Engine speed against dask's threaded scheduler, warm, interleaved, in one process.

``python -m benchmarks.engine_speed [--repeat N] [--distributed]`` runs each workload with the
default daskless configuration (embedded Redis, warm worker processes) and with
``dask.threaded``, alternating between them after one warm-up each, with BLAS threads pinned to 1,
and reports medians and the daskless/threads ratio next to its target. With ``--distributed`` it
also times the tree on a distributed ``LocalCluster`` (processes=False), for the per-task
overhead comparison.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from dask.base import compute  # noqa: E402

import daskless  # noqa: E402
from benchmarks import workflows  # noqa: E402

RESULTS = pathlib.Path(__file__).with_name("results")

# (name, builder, target ratio daskless/threads, "<=" means at most, ">=" at least this speed-up)
WORKLOADS: list[tuple[str, Callable[[], Any], str, float]] = [
    ("tree-4096-delayed", workflows.tree_delayed, "<=", 1.0),
    ("gemm-4000", workflows.gemm, "<=", 1.3),
    ("svd-200000x100", workflows.svd_tall_skinny, "<=", 1.3),
    ("gil-bound-24", workflows.gil_bound, ">=", 1.6),
]


def timed(collection: Any, scheduler: Any) -> float:
    start = time.perf_counter()
    compute(collection, scheduler=scheduler)
    return time.perf_counter() - start


def measure(collection: Any, repeat: int) -> dict[str, list[float]]:
    schedulers = {"daskless": daskless.get, "threads": "threads"}
    times: dict[str, list[float]] = {name: [] for name in schedulers}
    for scheduler in schedulers.values():
        timed(collection, scheduler)  # warm-up
    for _ in range(repeat):
        for name, scheduler in schedulers.items():
            times[name].append(timed(collection, scheduler))
    return times


def distributed_tree(repeat: int) -> float:
    """Median tree time on a distributed ``LocalCluster``, measured in a fresh interpreter."""
    code = (
        "from benchmarks.engine_speed import _distributed_tree; "
        f"print(_distributed_tree({repeat}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=pathlib.Path(__file__).parents[1]).stdout
    return float(out.strip().splitlines()[-1])


def _distributed_tree(repeat: int) -> float:
    from distributed import Client, LocalCluster

    collection = workflows.tree_delayed()
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2) as cluster, \
            Client(cluster) as client:
        timed(collection, client)
        return statistics.median(timed(collection, client) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--distributed", action="store_true")
    args = parser.parse_args()
    rows = []
    for name, build, sense, target in WORKLOADS:
        times = measure(build(), args.repeat)
        ours, theirs = (statistics.median(times[k]) for k in ("daskless", "threads"))
        ratio = ours / theirs
        met = ratio <= target if sense == "<=" else theirs / ours >= target
        rows.append({"workload": name, "daskless_s": ours, "threads_s": theirs,
                     "ratio": ratio, "target": f"{sense} {target}", "met": met, "times": times})
        print(f"{name:18s} daskless {ours:7.3f} s  threads {theirs:7.3f} s  "
              f"ratio {ratio:5.2f}  target {sense} {target}  {'met' if met else 'MISSED'}",
              flush=True)
    report: dict[str, Any] = {"date": datetime.date.today().isoformat(), "rows": rows}
    if args.distributed:
        dist = distributed_tree(args.repeat)
        ours = next(r["daskless_s"] for r in rows if r["workload"] == "tree-4096-delayed")
        report["distributed_tree_s"] = dist
        print(f"tree-4096 on distributed LocalCluster {dist:.3f} s: daskless is "
              f"{dist / ours:.1f}x faster")
    write(report)


def write(report: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"engine-speed-{report['date']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = ["| workload | daskless (s) | dask threads (s) | ratio | target | met |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['workload']} | {r['daskless_s']:.3f} | {r['threads_s']:.3f} | "
              f"{r['ratio']:.2f} | {r['target']} | {'yes' if r['met'] else 'no'} |"
              for r in report["rows"]]
    if "distributed_tree_s" in report:
        dist = report["distributed_tree_s"]
        ours = next(r["daskless_s"] for r in report["rows"] if r["workload"] == "tree-4096-delayed")
        lines += ["", f"tree-4096-delayed on distributed `LocalCluster(processes=False)`: "
                      f"{dist:.3f} s, {dist / ours:.0f}x the daskless time."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
