"""What each speed setting of ``daskless.tuning`` buys: the cases it affects, with it on and off.

The four settings change behaviour beyond one compute (the client's garbage collector, the
worker heap, the worker allocator, reads of other processes' memory), so each is a setting,
and this measures what each is worth. For each setting, two engines with the default
configuration (embedded redis-server, warm worker processes) compute the same collection, one
with the setting on and one with it off; the pool-level settings apply when a pool starts, so
each engine has its own workers, and the setting stays in force around every compute. dask's
threaded scheduler runs alongside as a yardstick. After a warm-up each, the three run in
rounds whose starting point rotates, and every result is checked against the case's
reference.

Reported per setting and case: the median wall time with the setting on and off, the median of
the per-round ratios off/on (above 1: the setting saves time), its spread (max/min of those
ratios), and both configurations' ratio to threads. On a small virtual machine the speed of the
whole machine drifts by tens of percent within a minute; the per-round ratio compares runs
made seconds apart and is the figure to read.

    python -m benchmarks.tuning [--repeat 7] [--settings gc-pause warm-malloc ...]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # as in ``python -m benchmarks``: before numpy is imported

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import dask  # noqa: E402

import daskless  # noqa: E402
from benchmarks.workflows import Case, cases  # noqa: E402

RESULTS = Path(__file__).with_name("results")
#: The cases each setting can change: the client-bound ones for the collector pause and the
#: heap freeze, the array-heavy ones for the allocator and peer reads.
SETTINGS: dict[str, tuple[str, ...]] = {
    "gc-pause": ("tree-delayed-4096", "fan-out-10000"),
    "freeze-worker-heap": ("tree-delayed-4096", "fan-out-10000"),
    "warm-malloc": ("gemm-4000", "image-64x512"),
    "peer-reads": ("gemm-4000", "svd2-5000", "image-64x512"),
}


def case_named(name: str) -> Case:
    found = [c for c in cases("full") if c.name == name]
    if not found:
        raise ValueError(f"no benchmark case {name!r}")
    return found[0]


@contextlib.contextmanager
def setting(name: str, on: bool) -> Iterator[None]:
    with dask.config.set({f"daskless.tuning.{name}": on}):
        yield


def timed(compute: Callable[[Any], Any], collection: Any, reference: Any, case: Case) -> float:
    start = time.perf_counter()
    result = compute(collection)
    seconds = time.perf_counter() - start
    if not case.workflow.matches(result, reference):
        raise AssertionError(f"{case.name}: a wrong result")
    return seconds


def measure(name: str, case: Case, repeat: int) -> dict[str, Any]:
    collection, reference = case.build(), case.reference()
    samples: dict[str, list[float]] = {"on": [], "off": [], "threads": []}
    with daskless.Engine() as on_engine, daskless.Engine() as off_engine:
        runners: dict[str, Callable[[Any], Any]] = {
            "threads": lambda c: dask.compute(c, scheduler="threads")[0],
        }
        for label, engine, value in (("on", on_engine, True), ("off", off_engine, False)):
            def run(c: Any, engine: daskless.Engine = engine, value: bool = value) -> Any:
                with setting(name, value):
                    return dask.compute(c, scheduler=engine.get)[0]
            runners[label] = run
        order = list(runners)
        for label in order:  # warm-up: starts each engine's store and pool under its setting
            timed(runners[label], collection, reference, case)
        for round_ in range(repeat):
            rotated = order[round_ % 3:] + order[:round_ % 3]
            for label in rotated:
                samples[label].append(timed(runners[label], collection, reference, case))
    ratios = [off / on for on, off in zip(samples["on"], samples["off"])]
    median = {label: statistics.median(values) for label, values in samples.items()}
    return {
        "setting": name, "case": case.name, "repeat": repeat, "samples": samples,
        "median_on_s": median["on"], "median_off_s": median["off"],
        "median_threads_s": median["threads"],
        "off_over_on": statistics.median(ratios), "spread": max(ratios) / min(ratios),
        "on_over_threads": median["on"] / median["threads"],
        "off_over_threads": median["off"] / median["threads"],
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| setting | case | on (s) | off (s) | off / on (median of rounds) | spread | "
             "on / threads | off / threads |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| `{r['setting']}` | {r['case']} | {r['median_on_s']:.3f} | "
            f"{r['median_off_s']:.3f} | {r['off_over_on']:.2f} | {r['spread']:.2f} | "
            f"{r['on_over_threads']:.2f} | {r['off_over_threads']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args()
    started = time.time()
    results = []
    for name in args.settings:
        for case_name in SETTINGS[name]:
            result = measure(name, case_named(case_name), args.repeat)
            print(f"{name:20} {case_name:20} off/on {result['off_over_on']:.2f} "
                  f"(spread {result['spread']:.2f})", flush=True)
            results.append(result)
    command = "python -m benchmarks.tuning " + " ".join(
        [f"--repeat {args.repeat}", "--settings", *args.settings])
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"tuning-{time.strftime('%Y-%m-%d')}"
    stem.with_suffix(".json").write_text(json.dumps(
        {"command": command, "elapsed_s": time.time() - started, "results": results}, indent=2))
    stem.with_suffix(".md").write_text(f"`{command}`\n\n{table(results)}\n")
    print(table(results))
    print(f"written to {stem}.json and .md")


if __name__ == "__main__":
    main()
