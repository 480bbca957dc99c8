"""What a run took and cost: makespan, billed GB-seconds per invocation, prices."""

from __future__ import annotations

import math
import time
from operator import add
from typing import Any

import dask
import pytest
from dask import delayed

import daskless
from daskless.exceptions import ConfigurationError
from daskless.report.commands import runs_table
from daskless.report.data import RunMetrics, load_run
from tests.conformance import test_contract as contract
from tests.lambda_support import emulator as lambda_emulator
from tests.lambda_support import lambda_engine


def slow_inc(x: int) -> int:
    time.sleep(0.01)
    return x + 1


def tree() -> Any:
    xs = [delayed(slow_inc)(i) for i in range(16)]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
    return xs[0]


def by_hand(run: RunMetrics) -> float:
    """The run's GB-seconds as Lambda bills them: per invocation, whole milliseconds."""
    return sum(math.ceil(round((i.end - i.start) * 1000, 6)) / 1000 * i.memory_mb / 1024
               for i in run.invocations.values() if i.end is not None)


def stored(engine: daskless.Engine) -> RunMetrics:
    assert engine.last_run is not None and engine.last_run.store is not None
    return load_run(engine.last_run.store, engine.last_run.run_id, settle_s=10)


@pytest.mark.parametrize("memory", [1769, 3538])
def test_a_run_reports_its_makespan_and_billed_gb_seconds(redis_url: str, memory: int) -> None:
    with dask.config.set({"daskless.worker-memory": memory}), \
            daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        started = time.perf_counter()
        assert dask.compute(tree(), scheduler=engine.get) == (sum(range(1, 17)),)
        took = time.perf_counter() - started
        summary = engine.last_run
        assert summary is not None
        run = stored(engine)
        cost = summary.cost_gb_s
    assert summary.predicted_makespan_s is None  # nothing planned from history
    assert summary.makespan_s is not None and 0 < summary.makespan_s <= took
    assert run.makespan_s == pytest.approx(summary.makespan_s)
    assert {i.memory_mb for i in run.invocations.values()} == {memory}
    assert cost is not None and cost > 0
    assert cost == pytest.approx(by_hand(run)) == pytest.approx(run.billed_gb_s)
    assert run.cost_usd(1e-5, 1e-7) == pytest.approx(cost * 1e-5 + len(run.invocations) * 1e-7)
    table = runs_table([run])
    assert "makespan" in table and "GB-s" in table and f"{cost:.3f}" in table


def test_a_failed_run_has_no_makespan_but_is_billed(redis_url: str) -> None:
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        with pytest.raises(ZeroDivisionError):
            engine.get({"x": 1, "y": (lambda v: v / 0, "x")}, "y")
        assert engine.last_run is not None and engine.last_run.makespan_s is None
        assert stored(engine).billed_gb_s > 0


@pytest.mark.parametrize("bad", [0, -128, 1.5, "lots", None])
def test_a_bad_worker_memory_is_a_named_error(redis_url: str, bad: Any) -> None:
    with dask.config.set({"daskless.worker-memory": bad}), \
            daskless.Engine(store=redis_url, invoker="processes", workers=1) as engine, \
            pytest.raises(ConfigurationError, match=r"daskless\.worker-memory"):
        engine.get({"x": 1}, "x")


def test_lambda_workers_are_billed_at_the_function_memory(redis_server: Any,
                                                          redis_url: str) -> None:
    with lambda_emulator(redis_server.url, memory_mb=2048, max_concurrency=2) as running, \
            lambda_engine(redis_server.url, running.url) as engine:
        assert dask.compute(contract.tree(16), scheduler=engine.get) == (sum(range(1, 17)),)
        run = stored(engine)
    assert {i.memory_mb for i in run.invocations.values()} == {2048}  # not worker-memory
    assert run.billed_gb_s == pytest.approx(by_hand(run)) and run.billed_gb_s > 0
