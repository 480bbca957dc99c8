"""Where a daskless run spends its time, for one benchmark case.

``python -m benchmarks profile CASE [--quick] [--py-spy SECONDS]`` warms a default engine up,
then times one run and reads its task timeline (``Engine.last_run.timeline``: start and end of
every task, per worker) to split the wall time into phases:

- client, until the first task starts: materialize, plan, submit, invoke, worker wake-up;
- the span from the first task's start to the last task's end, with the time workers spent
  inside tasks (utilization = task time / (workers x span));
- after the last task: events, fetching results, deleting the run.

A second run shows the client side under pyinstrument. For comparison the same case runs on
dask's threaded scheduler with task callbacks, which gives its task time. With ``--py-spy``
the worker processes are sampled (``py-spy record``) while the case runs repeatedly, and the
functions they spend the most time in are listed.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dask
from dask.callbacks import Callback

import daskless
from benchmarks.schedulers import DasklessScheduler
from benchmarks.workflows import Case, cases


def find_case(name: str, tier: str) -> Case:
    by_name = {c.name: c for c in cases(tier)}
    if name not in by_name:
        raise SystemExit(f"no case {name!r} in tier {tier}; choose from {', '.join(by_name)}")
    return by_name[name]


def threads_task_time(collection: Any) -> tuple[float, float]:
    """Wall time and summed task time on dask's threaded scheduler."""
    starts: dict[Any, float] = {}
    total = [0.0]

    def pretask(key: Any, dsk: Any, state: Any) -> None:
        starts[key] = time.perf_counter()

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        total[0] += time.perf_counter() - starts.pop(key)

    dask.compute(collection, scheduler="threads")  # warm-up
    with Callback(pretask=pretask, posttask=posttask):
        start = time.perf_counter()
        dask.compute(collection, scheduler="threads")
        return time.perf_counter() - start, total[0]


def client_profile(engine: daskless.Engine, collection: Any) -> str:
    """The client side of one run under pyinstrument (which slows Python-heavy code down, so
    the phases are measured in a separate run without it)."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    dask.compute(collection, scheduler=engine.get)
    profiler.stop()
    return str(profiler.output_text(unicode=False, color=False))


def daskless_phases(engine: daskless.Engine, collection: Any) -> dict[str, Any]:
    """Wall time of one run split into client, execution and collection phases."""
    began = time.time()
    dask.compute(collection, scheduler=engine.get)
    ended = time.time()
    summary = engine.last_run
    assert summary is not None
    timeline = summary.timeline
    first = min(start for _, start, _, _ in timeline)
    last = max(end for _, _, end, _ in timeline)
    per_worker: dict[str, float] = collections.defaultdict(float)
    for _, start, end, worker in timeline:
        per_worker[worker] += end - start
    return {"wall": ended - began, "before_first_task": first - began, "span": last - first,
            "after_last_task": ended - last, "task_time": sum(per_worker.values()),
            "per_worker": dict(per_worker), "tasks": summary.tasks,
            "partitions": summary.partitions, "cross_edges": summary.cross_edges}


def sample_workers(scheduler: DasklessScheduler, collection: Any, seconds: float) -> str:
    """Top functions of the worker processes, sampled while the case runs repeatedly."""
    folder = Path(tempfile.mkdtemp(prefix="daskless-profile-"))
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    spies = [subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration",
                               str(int(seconds)), "--rate", "250", "--format", "raw",
                               "--output", str(folder / f"{pid}.txt"), "--nonblocking"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for pid in scheduler.worker_pids()]
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        scheduler.compute(collection)
        runs += 1
    for spy in spies:
        spy.wait()
    return _top_functions(sorted(folder.glob("*.txt")), runs)


def _top_functions(files: list[Path], runs: int, top: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for path in files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            frames = [f.rsplit(":", 1)[0] for f in stack.split(";")]
            n = int(count)
            total += n
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    lines = [f"{runs} runs, {total} samples over {len(files)} worker(s)", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["including callees:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


def profile(name: str, tier: str, py_spy_seconds: float = 0.0) -> None:
    case = find_case(name, tier)
    collection = case.build()
    threads_wall, threads_tasks = threads_task_time(collection)
    scheduler = DasklessScheduler("daskless")
    try:
        scheduler.compute(collection)  # warm-up: starts Redis and the worker pool
        phases = daskless_phases(scheduler.engine, collection)
        print(f"{case.name}: {phases['tasks']} tasks in {phases['partitions']} partitions, "
              f"{phases['cross_edges']} cross edges")
        print(f"dask threads: wall {threads_wall:.3f} s, task time {threads_tasks:.3f} s")
        print(f"daskless: wall {phases['wall']:.3f} s = before first task "
              f"{phases['before_first_task']:.3f} + span {phases['span']:.3f} + after last "
              f"task {phases['after_last_task']:.3f}; task time {phases['task_time']:.3f} s "
              f"({', '.join(f'{w}: {t:.3f}' for w, t in phases['per_worker'].items())})")
        print(client_profile(scheduler.engine, collection))
        if py_spy_seconds:
            print(sample_workers(scheduler, collection, py_spy_seconds))
    finally:
        scheduler.close()
