"""What recording metrics costs: the 4096-leaf delayed tree with metrics on and off.

Runs come in pairs on one engine with the default configuration (embedded redis-server, warm
worker processes) after one warm-up each; pairs alternate their order (off-on, on-off, ...) so
that neither setting always runs second. The target is an overhead of at most 5 % with the
default upload strategy. Other strategies can be measured with ``--strategy``.

Two figures are reported: wall-clock time, and CPU time summed over this process and its
children (worker processes and the embedded redis-server). Each is given as the ratio of the
medians and as the median of the per-pair ratios. On a small virtual machine the speed of the
whole machine drifts by tens of percent within a minute; the paired figure compares runs made
seconds apart and is the one to read there.

    python -m benchmarks.metrics_overhead [--repeat 41] [--leaves 4096] [--strategy interval]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Any

import dask
import psutil

import daskless
from benchmarks.report import save_json
from benchmarks.workflows import tree_delayed


def cpu_seconds() -> float:
    """CPU time of this process and all its children so far."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a child that just exited
            total += sum(child.cpu_times()[:2])
    return total


def timed(engine: daskless.Engine, graph: Any, settings: dict[str, Any]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one compute."""
    with dask.config.set({"daskless.metrics": settings}):
        cpu, start = cpu_seconds(), time.perf_counter()
        dask.compute(graph, scheduler=engine.get)
        return time.perf_counter() - start, cpu_seconds() - cpu


def measure(repeat: int, leaves: int, strategy: str) -> dict[str, Any]:
    graph = tree_delayed(leaves)
    off = {"enabled": False}
    on = {"enabled": True, "strategy": strategy}
    wall: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    with daskless.Engine() as engine:
        timed(engine, graph, off)
        timed(engine, graph, on)
        for pair in range(repeat):
            order = (("off", off), ("on", on)) if pair % 2 == 0 else (("on", on), ("off", off))
            for name, settings in order:
                w, c = timed(engine, graph, settings)
                wall[name].append(w)
                cpu[name].append(c)
    result: dict[str, Any] = {"workload": f"tree-{leaves}-delayed", "strategy": strategy,
                              "repeat": repeat, "wall_s": wall, "cpu_s": cpu}
    for kind, samples in (("wall", wall), ("cpu", cpu)):
        off_m, on_m = statistics.median(samples["off"]), statistics.median(samples["on"])
        result[f"{kind}_median_off_s"] = off_m
        result[f"{kind}_median_on_s"] = on_m
        result[f"{kind}_overhead_pct"] = 100 * (on_m / off_m - 1)
        paired = statistics.median(b / a for a, b in zip(samples["off"], samples["on"]))
        result[f"{kind}_paired_overhead_pct"] = 100 * (paired - 1)
    result["load_average"] = psutil.getloadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=41)
    parser.add_argument("--leaves", type=int, default=4096)
    parser.add_argument("--strategy", default="interval",
                        choices=["task", "batch", "interval", "exit"])
    args = parser.parse_args()
    result = measure(args.repeat, args.leaves, args.strategy)
    print(f"{result['workload']}, strategy {args.strategy}, {args.repeat} interleaved pairs")
    for kind in ("wall", "cpu"):
        print(f"  {kind:4}: off {result[f'{kind}_median_off_s']:.3f} s, "
              f"on {result[f'{kind}_median_on_s']:.3f} s, "
              f"overhead {result[f'{kind}_overhead_pct']:+.1f} %, "
              f"paired {result[f'{kind}_paired_overhead_pct']:+.1f} % (target <= 5 %)")
    print(f"  load average at the end: {result['load_average'][0]:.1f}")
    print(f"  written to {save_json(f'metrics-overhead-{args.strategy}', result)}")


if __name__ == "__main__":
    main()
