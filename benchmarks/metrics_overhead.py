"""What recording metrics costs: the 4096-leaf delayed tree with metrics on and off.

Runs alternate (off, on, off, on, ...) on one engine with the default configuration (embedded
redis-server, warm worker processes) after one warm-up each, and the medians are compared. The
target is an overhead of at most 5 % with the default upload strategy. Other strategies can be
measured with ``--strategy``.

    python -m benchmarks.metrics_overhead [--repeat 9] [--leaves 4096] [--strategy interval]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time
from typing import Any

import dask

import daskless
from benchmarks.workflows import tree_delayed

RESULTS = pathlib.Path(__file__).with_name("results")


def timed(engine: daskless.Engine, graph: Any, settings: dict[str, Any]) -> float:
    with dask.config.set({"daskless.metrics": settings}):
        start = time.perf_counter()
        dask.compute(graph, scheduler=engine.get)
        return time.perf_counter() - start


def measure(repeat: int, leaves: int, strategy: str) -> dict[str, Any]:
    graph = tree_delayed(leaves)
    off = {"enabled": False}
    on = {"enabled": True, "strategy": strategy}
    times: dict[str, list[float]] = {"off": [], "on": []}
    with daskless.Engine() as engine:
        timed(engine, graph, off)
        timed(engine, graph, on)
        for _ in range(repeat):
            times["off"].append(timed(engine, graph, off))
            times["on"].append(timed(engine, graph, on))
    med_off, med_on = statistics.median(times["off"]), statistics.median(times["on"])
    return {
        "workload": f"tree-{leaves}-delayed", "strategy": strategy, "repeat": repeat,
        "median_off_s": med_off, "median_on_s": med_on,
        "overhead_pct": 100 * (med_on / med_off - 1), "times": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--leaves", type=int, default=4096)
    parser.add_argument("--strategy", default="interval",
                        choices=["task", "batch", "interval", "exit"])
    args = parser.parse_args()
    result = measure(args.repeat, args.leaves, args.strategy)
    print(f"{result['workload']}, strategy {args.strategy}, {args.repeat} interleaved pairs")
    print(f"  metrics off: median {result['median_off_s']:.3f} s")
    print(f"  metrics on:  median {result['median_on_s']:.3f} s")
    print(f"  overhead:    {result['overhead_pct']:+.1f} % (target <= 5 %)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"metrics-overhead-{args.strategy}-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"  written to {out}")


if __name__ == "__main__":
    main()
