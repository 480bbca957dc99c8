"""Runs survive lost workers: every kill point of the worker loop, three graph shapes, two backends.

A worker process (of the pool) or instance (of the local gateway) is killed with ``SIGKILL`` at a
named point of its invocation (``worker_runtime.faults``): after taking the invocation, mid-task,
after a task before delivering it, after delivering fan-in marks before running or invoking the
successors, mid fan-out, while becoming another partition, and after its invocation ended while
others still read outputs from its memory. Each run must end with the exact result, the death
noticed and the lost work run again. Retries of task exceptions, workers dying on a task every
time (``KilledWorker``) and what a failed run keeps in its metrics are checked here too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from operator import add
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
from dask import delayed

import daskless
from daskless.exceptions import KilledWorker, WorkerLostError
from daskless.report.data import load_run
from daskless.worker_runtime import faults
from tests.http_servers import SECRET, serving
from tests.test_gateway import gateway

KILL_POINTS = ["before-start", "after-claim", "mid-task", "after-task", "after-deliver",
               "mid-fan-out", "in-become", "after-end"]
#: Points a run meets only with a plan that fans out to several partitions at once, or that
#: continues with another partition: a shape may not reach them.
SOMETIMES = {"mid-fan-out", "in-become"}


def slow_inc(x: int) -> int:
    time.sleep(0.005)
    return x + 1


def tree() -> tuple[Any, int]:
    xs = [delayed(slow_inc)(i) for i in range(64)]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
    return xs[0], sum(range(1, 65))


def fan_out_in() -> tuple[Any, int]:
    source = delayed(slow_inc)(0)
    return delayed(sum)([delayed(add)(source, i) for i in range(48)]), 48 + sum(range(48))


def gemm() -> tuple[Any, float]:
    a = np.arange(400 * 400, dtype=float).reshape(400, 400) % 7
    x = da.from_array(a, chunks=100)
    return (x @ x.T).sum(), float((a @ a.T).sum())


SHAPES = {"tree": tree, "fan-out-in": fan_out_in, "gemm": gemm}


@pytest.fixture
def armed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Arms kill points for the worker processes the test starts from now on."""

    def arm(point: str, times: int = 1, skip: int = 0) -> Path:
        ledger = tmp_path / "deaths"
        for name, value in faults.arm([point], str(ledger), times, skip).items():
            monkeypatch.setenv(name, value)
        return ledger

    yield arm


def deaths(ledger: Path) -> int:
    return len(list(ledger.parent.glob(ledger.name + ".*")))


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_pool_worker_killed_at_any_point_costs_no_result(
        redis_url: str, armed: Any, point: str, shape: str) -> None:
    ledger = armed(point)
    collection, expected = SHAPES[shape]()
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        assert dask.compute(collection, scheduler=engine.get)[0] == pytest.approx(expected)
    # The kill landed (and was survived, not avoided), where the shape reaches the point.
    assert deaths(ledger) == 1 or point in SOMETIMES


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_gateway_instance_killed_at_any_point_costs_no_result(
        redis_url: str, armed: Any, point: str, shape: str) -> None:
    ledger = armed(point)
    collection, expected = SHAPES[shape]()
    server = gateway(redis_url, max_instances=2)
    with serving(server) as url, dask.config.set({"daskless.auth.secret": SECRET}), \
            daskless.Engine(store=redis_url, invoker=url, workers=2) as engine:
        assert dask.compute(collection, scheduler=engine.get)[0] == pytest.approx(expected)
    assert deaths(ledger) == 1 or point in SOMETIMES


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_with_no_faults_no_task_runs_twice(redis_url: str, shape: str) -> None:
    collection, expected = SHAPES[shape]()
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        assert dask.compute(collection, scheduler=engine.get)[0] == pytest.approx(expected)
        assert engine.last_run is not None
        run = load_run(resources_store(engine), engine.last_run.run_id, settle_s=10)
    assert run.tasks and [t.runs for t in run.tasks] == [1] * len(run.tasks)
    assert not run.recoveries and not run.errors


def test_a_kill_deep_into_a_run_is_survived_too(redis_url: str, armed: Any) -> None:
    ledger = armed("mid-task", skip=10)  # a worker dies at its eleventh task
    collection, expected = tree()
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        assert dask.compute(collection, scheduler=engine.get)[0] == expected
    assert deaths(ledger) == 1


def test_a_kill_during_persist_computes_no_persisted_result_again(
        redis_url: str, armed: Any) -> None:
    """Results kept only as persisted values (they have no successors) count as done."""
    ledger = armed("mid-task", skip=20)
    xs = [delayed(slow_inc)(i) for i in range(40)]
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        kept = dask.persist(*xs, scheduler=engine.get)
        assert engine.last_run is not None
        run = load_run(resources_store(engine), engine.last_run.run_id, settle_s=10)
        assert list(dask.compute(*kept, scheduler=engine.get)) == list(range(1, 41))
    assert deaths(ledger) == 1 and len(run.recoveries) == 1
    # Run again: only what the workers had computed but not yet stored when the epoch moved on
    # (outputs wait up to daskless.event-interval to travel together) and the killed task;
    # counting every result kept only as a persisted value as lost re-ran about 30 of the 40.
    again = [t.key for t in run.tasks if t.runs > 1]
    assert len(again) <= 10, again


# -- retries (ports of distributed's tests with a task that fails a given number of times) ------

class Varying:
    """Raises each exception of ``items`` in turn, then returns the last item (distributed's
    ``varying``); the attempts are counted in a file, as worker processes cannot share memory."""

    def __init__(self, items: list[Any], counter: Path) -> None:
        self.items = items
        self.counter = counter

    def __call__(self) -> Any:
        with open(self.counter, "a") as f:
            f.write("x")
        n = self.counter.stat().st_size - 1
        item = self.items[min(n, len(self.items) - 1)]
        if isinstance(item, BaseException):
            raise item
        return item


@pytest.mark.parametrize("retries, outcome", [(0, "one"), (1, "two"), (2, 42), (5, 42)])
def test_compute_retries(redis_url: str, tmp_path: Path, retries: int, outcome: Any) -> None:
    counter = tmp_path / "attempts"
    task = delayed(Varying([ZeroDivisionError("one"), ZeroDivisionError("two"), 42], counter))()
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        if isinstance(outcome, str):
            with pytest.raises(ZeroDivisionError, match=outcome):
                dask.compute(task, scheduler=engine.get, retries=retries)
        else:
            assert dask.compute(task, scheduler=engine.get, retries=retries) == (outcome,)
    assert counter.stat().st_size == min(retries + 1, 3)  # exactly as many attempts


def test_annotated_retries(redis_url: str, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    with dask.annotate(retries=2):
        task = delayed(Varying([ValueError("a"), ValueError("b"), 7], counter))()
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        assert dask.compute(task, scheduler=engine.get, optimize_graph=False) == (7,)
        assert engine.last_run is not None
        run = load_run(resources_store(engine), engine.last_run.run_id, settle_s=10)
    assert counter.stat().st_size == 3
    # Every attempt is in the metrics: two failed, then the one that ran.
    assert [(e.attempt, e.type) for e in run.errors] == [(1, "ValueError"), (2, "ValueError")]
    (ran,) = [t for t in run.tasks if t.start is not None and not t.erred]
    assert ran.runs == 3


def resources_store(engine: daskless.Engine) -> Any:
    (resources,) = engine._resources.values()
    return resources.store


# -- workers that die on a task every time ----------------------------------------------------

def die(_: Any) -> None:
    os._exit(1)


@pytest.mark.parametrize("allowed", [0, 3, 5])
def test_a_task_that_kills_every_worker_is_a_killed_worker(redis_url: str,
                                                           allowed: int) -> None:
    with dask.config.set({"daskless.allowed-failures": allowed}), \
            daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        start = time.monotonic()
        with pytest.raises(KilledWorker) as info:
            engine.get({"x": 1, "poison": (die, "x")}, "poison")
        assert time.monotonic() - start < 60
        assert info.value.task == "poison" and info.value.allowed_failures == allowed
        assert isinstance(info.value, WorkerLostError)
        assert f"on {allowed + 1} different workers" in str(info.value)
        assert engine.get({"x": 1, "y": (slow_inc, "x")}, "y") == 2  # the pool is fine


def test_worker_deaths_do_not_consume_retries(redis_url: str, armed: Any,
                                              tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    armed("mid-task", times=1)  # the first worker to start a task dies
    task = delayed(Varying([ValueError("a"), 5], counter))()
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        assert dask.compute(task, scheduler=engine.get, retries=1) == (5,)
    assert counter.stat().st_size == 2  # the death cost no attempt: one failure, then 5


# -- what a failed run keeps ------------------------------------------------------------------

def broken(x: int) -> int:
    raise KeyError(f"no such thing as {x}")


def test_a_failed_run_keeps_its_errors(redis_url: str) -> None:
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        with pytest.raises(KeyError):
            engine.get({"x": 1, "bad": (broken, "x")}, "bad")
        assert engine.last_run is not None
        run = load_run(resources_store(engine), engine.last_run.run_id, settle_s=10)
        # The failed task is no longer what the pool would blame a later death on.
        (resources,) = engine._resources.values()
        assert [w.slot.task() for w in resources.invoker._workers.values()] == [-1, -1]
    (error,) = run.errors
    assert (error.key, error.type, error.attempt) == ("bad", "KeyError", 1)
    assert "no such thing as 1" in error.message and "def broken" not in error.message
    assert "broken" in error.traceback and error.worker
    assert run.status is not None and run.status.startswith("KeyError")
