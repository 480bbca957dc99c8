"""Chaos: seeded runs over varied graph shapes, each with a random worker killed at a random moment.

Every run builds one graph shape at a random size, starts the compute on the default engine
configuration (a real redis-server, warm worker processes), and from another thread sends
``SIGKILL`` to a random worker process after a random delay. Then it checks:

- the result is exact (against dask's synchronous scheduler on the same graph);
- the compute ended within its bound (no hang);
- the store's bookkeeping is sound: every committed output decodes, and every fan-in count
  equals the number of distinct marks delivered for it, never more than the task's inputs.

The seed of the job and each run's schedule (shape, size, delay, victim) are printed with every
failure, so a failure replays: ``python -m tests.chaos --runs 1 --seed <seed of that run>``.
The unit tests run 100 of these (``tests/test_chaos.py``); the 1,000-run job is::

    python -m tests.chaos --runs 1000 [--seed S] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import add
from typing import Any

import dask
import dask.array as da
import dask.bag as db
import numpy as np
import redis
from dask import delayed

import daskless
from daskless.run import RunClient
from daskless.worker_runtime import keys
from daskless.worker_runtime.redis_server import RedisServer, free_port

BOUND_S = 60.0


def inc(x: int) -> int:
    time.sleep(0.004)  # long enough for a kill to land mid-run
    return x + 1


def tree(rng: random.Random) -> Any:
    xs = [delayed(inc)(i) for i in range(rng.choice([16, 32, 64, 128]))]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
    return xs[0]


def fan_out_in(rng: random.Random) -> Any:
    source = delayed(inc)(rng.randrange(100))
    return delayed(sum)([delayed(add)(source, i) for i in range(rng.choice([16, 64, 128]))])


def gemm(rng: random.Random) -> Any:
    n = rng.choice([200, 400])
    x = da.random.RandomState(rng.randrange(1000)).random((n, n), chunks=100)
    return (x @ x.T).sum()


def bag_groupby(rng: random.Random) -> Any:
    items = db.from_sequence(range(rng.choice([200, 1000])), npartitions=rng.choice([4, 8]))
    return items.map(lambda v: (v % 7, v)).foldby(lambda kv: kv[0], lambda a, kv: a + kv[1], 0,
                                                  add, 0)


def chain(rng: random.Random) -> Any:
    x = delayed(inc)(0)
    for _ in range(rng.choice([20, 50])):
        x = delayed(inc)(x)
    return x


SHAPES: dict[str, Callable[[random.Random], Any]] = {
    "tree": tree, "fan-out-in": fan_out_in, "gemm": gemm, "bag-groupby": bag_groupby,
    "chain": chain,
}


@dataclass
class Outcome:
    seed: int
    shape: str
    delay_s: float
    victim: int | None = None
    seconds: float = 0.0
    recoveries: int = 0
    landed: bool = False  # the kill came before the compute ended
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"seed {self.seed}: {self.shape}, kill after {self.delay_s:.3f} s of pid "
                f"{self.victim}{'' if self.landed else ' (after the run)'}, "
                f"{self.seconds:.2f} s, {self.recoveries} recoveries"
                + (f", PROBLEMS: {'; '.join(self.problems)}" if self.problems else ""))


@contextmanager
def checked_store(client: redis.Redis, outcome: Outcome) -> Iterator[None]:
    """Read a run's bookkeeping back just before the client deletes its keys."""
    original = RunClient.delete

    def inspecting(run: RunClient) -> None:
        outcome.recoveries = len(run.recoveries)
        outcome.problems.extend(store_problems(client, run))
        original(run)

    RunClient.delete = inspecting  # type: ignore[method-assign]
    try:
        yield
    finally:
        RunClient.delete = original  # type: ignore[method-assign]


def store_problems(client: redis.Redis, run: RunClient) -> list[str]:
    problems = []
    fanin = {k.decode(): int(v) for k, v in client.hgetall(keys.run_key(run.run_id, "fanin"))
             .items() if k != b"_"}
    edges: dict[str, int] = {}
    for name in fanin:
        if ":" in name:
            task = name.split(":")[0]
            edges[task] = edges.get(task, 0) + 1
    for task, count in fanin.items():
        if ":" in task:
            continue
        if count != edges.get(task, 0):
            problems.append(f"fan-in of {task} counts {count}, {edges.get(task, 0)} marks")
        if count > len(run.plan.task(int(task)).deps):
            problems.append(f"fan-in of {task} counts {count} > its inputs")
    committed = run.store.committed(run.run_id)
    for task, data in zip(committed, run.store.fetch(run.run_id, committed)):
        try:
            run.tier.load(data or b"", run.plan.keys[task])
        except Exception as exc:  # a value a worker never finished writing, say
            problems.append(f"output {task} does not load: {type(exc).__name__}: {exc}")
    return problems


def one_run(engine: daskless.Engine, seed: int, client: redis.Redis) -> Outcome:
    rng = random.Random(seed)
    shape = rng.choice(sorted(SHAPES))
    collection = SHAPES[shape](rng)
    expected = dask.compute(collection, scheduler="sync")[0]
    outcome = Outcome(seed, shape, rng.uniform(0.0, 0.25))
    (resources,) = engine._resources.values()
    pids = resources.invoker.pids()  # type: ignore[attr-defined]
    outcome.victim = rng.choice(pids)

    killed_at: list[float] = []

    def kill() -> None:
        time.sleep(outcome.delay_s)
        with contextlib.suppress(ProcessLookupError):  # it was replaced already
            os.kill(outcome.victim or 0, signal.SIGKILL)
            killed_at.append(time.monotonic())

    killer = threading.Thread(target=kill, daemon=True)
    result: list[Any] = []
    errors: list[BaseException] = []

    ended: list[float] = []

    def compute() -> None:
        try:
            result.append(dask.compute(collection, scheduler=engine.get)[0])
        except BaseException as exc:
            errors.append(exc)
        ended.append(time.monotonic())

    # Should anything outside the bounded wait hang, every thread's stack goes to stderr.
    faulthandler.dump_traceback_later(BOUND_S * 2)
    start = time.monotonic()
    with checked_store(client, outcome):
        worker = threading.Thread(target=compute, daemon=True)
        worker.start()
        killer.start()
        worker.join(BOUND_S)
        killer.join(5)
    faulthandler.cancel_dump_traceback_later()
    outcome.seconds = (ended[0] if ended else time.monotonic()) - start
    outcome.landed = bool(killed_at) and killed_at[0] - start < outcome.seconds
    if worker.is_alive():
        outcome.problems.append(f"no result within {BOUND_S:g} s (a hang)")
    elif errors:
        outcome.problems.append(f"raised {type(errors[0]).__name__}: {errors[0]}")
    elif not same(result[0], expected):
        outcome.problems.append(f"wrong result {result[0]!r}, expected {expected!r}")
    return outcome


def same(got: Any, expected: Any) -> bool:
    if isinstance(expected, np.ndarray | np.generic | float):
        return bool(np.allclose(got, expected))
    return bool(got == expected)


def run_job(runs: int, seed: int, workers: int, report: Callable[[Outcome], None]
            ) -> list[Outcome]:
    outcomes = []
    with RedisServer(port=free_port()) as server, \
            daskless.Engine(store=server.url, invoker="processes", workers=workers) as engine:
        engine.get({"x": 1}, "x")  # start the pool
        client = redis.Redis.from_url(server.url)
        for i in range(runs):
            outcome = one_run(engine, seed + i, client)
            report(outcome)
            outcomes.append(outcome)
            if any("hang" in p for p in outcome.problems):
                break  # a hung compute keeps its thread: nothing after it would mean much
        client.close()
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"chaos: {args.runs} runs, seed {args.seed}, {args.workers} workers", flush=True)
    started = time.monotonic()

    def report(outcome: Outcome) -> None:
        if outcome.problems:
            print("FAILED", outcome.describe(), flush=True)

    outcomes = run_job(args.runs, args.seed, args.workers, report)
    failed = [o for o in outcomes if o.problems]
    recovered = sum(1 for o in outcomes if o.recoveries)
    landed = sum(o.landed for o in outcomes)
    times = sorted(o.seconds for o in outcomes)
    print(f"{len(outcomes) - len(failed)}/{len(outcomes)} exact; {landed} kills landed mid-run, "
          f"{recovered} runs recovered from one; median {times[len(times) // 2]:.2f} s, "
          f"max {times[-1]:.2f} s, {time.monotonic() - started:.0f} s in all (seed {args.seed})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
