"""What one lost worker costs: a run with a worker killed mid-way, next to the same run without.

The workload is a tree reduction over 128 tasks of 20 ms each (busy CPU), on the default
configuration (embedded redis-server, warm worker processes). Fault-free runs and runs in which
one worker process is killed (``SIGKILL``, a random one, seeded) at half the fault-free time
alternate. For each killed run it records the total time, the detection time (from the kill to
the moment the client decided to recover: ``RunClient.recovered_at``) and the lost work: the
task time run a second time, read from the run's metrics (tasks recorded more than once).

Reported: medians over the runs, and the killed run against the bound the design aims at,
fault-free time + detection + lost work + 1 s.

    python -m benchmarks.recovery [--repeat 9] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import threading
import time
from operator import add
from typing import Any

import dask
from dask import delayed

import daskless
from benchmarks.report import save_json
from daskless.report.data import load_run
from daskless.run import RunClient

TASK_S = 0.02


def busy(x: int) -> int:
    until = time.perf_counter() + TASK_S
    while time.perf_counter() < until:
        pass
    return x + 1


def workload(n: int = 128) -> tuple[Any, int]:
    xs = [delayed(busy)(i) for i in range(n)]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
    return xs[0], sum(range(1, n + 1))


def killed_run(engine: daskless.Engine, collection: Any, expected: int, after_s: float,
               rng: random.Random) -> dict[str, float]:
    (resources,) = engine._resources.values()
    victim = rng.choice(resources.invoker.pids())  # type: ignore[attr-defined]
    clients: list[RunClient] = []
    original = RunClient.delete

    def keep(run: RunClient) -> None:
        clients.append(run)
        original(run)

    killed_at: list[float] = []

    def kill() -> None:
        time.sleep(after_s)
        killed_at.append(time.time())
        os.kill(victim, signal.SIGKILL)

    RunClient.delete = keep  # type: ignore[method-assign]
    try:
        killer = threading.Thread(target=kill)
        start = time.perf_counter()
        killer.start()
        assert dask.compute(collection, scheduler=engine.get)[0] == expected
        total = time.perf_counter() - start
        killer.join()
    finally:
        RunClient.delete = original  # type: ignore[method-assign]
    (client,) = clients
    detection = client.recovered_at[0] - killed_at[0] if client.recovered_at else float("nan")
    assert engine.last_run is not None
    run = load_run(resources.store, engine.last_run.run_id, settle_s=10)
    again = sum(t.duration for t in run.tasks if t.runs > 1)
    return {"total_s": total, "detection_s": detection, "lost_work_s": again,
            "recoveries": float(len(client.recoveries))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    collection, expected = workload()
    free: list[float] = []
    killed: list[dict[str, float]] = []
    with daskless.Engine() as engine:
        dask.compute(collection, scheduler=engine.get)  # warm-up
        for _ in range(args.repeat):
            start = time.perf_counter()
            assert dask.compute(collection, scheduler=engine.get)[0] == expected
            free.append(time.perf_counter() - start)
            killed.append(killed_run(engine, collection, expected, statistics.median(free) / 2,
                                     rng))
    median = {k: statistics.median(r[k] for r in killed) for k in killed[0]}
    fault_free = statistics.median(free)
    bound = fault_free + median["detection_s"] + median["lost_work_s"] + 1.0
    result = {"command": f"python -m benchmarks.recovery --repeat {args.repeat} --seed "
                         f"{args.seed}", "fault_free_s": free, "killed": killed,
              "median_fault_free_s": fault_free, "median_killed": median, "bound_s": bound}
    print(f"fault-free {fault_free:.3f} s (spread {min(free):.3f}-{max(free):.3f}); one worker "
          f"killed {median['total_s']:.3f} s: detection {median['detection_s']:.3f} s, lost "
          f"work {median['lost_work_s']:.3f} s; bound (fault-free + detection + lost work + "
          f"1 s) {bound:.3f} s (seed {args.seed})")
    print(f"written to {save_json('recovery', result)}")


if __name__ == "__main__":
    main()
