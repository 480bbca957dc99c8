"""Metrics end to end: upload strategies over a real redis-server and real worker processes.

A worker killed by ``os._exit`` in a task loses at most what it buffered since its last upload,
and the run's metrics say how many tasks are missing. Every strategy loses nothing when workers
finish normally.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import dask
import pytest
from dask import delayed

import daskless
from daskless.exceptions import ConfigurationError, WorkerLostError
from daskless.report.data import RunMetrics, load_run
from daskless.worker_runtime.redis_server import RedisServer
from daskless.worker_runtime.store.redis_store import RedisStore

CHAIN = 10
KILLED_AT = 7  # tasks 0..6 run, task 7 kills its worker


def inc(x: int) -> int:
    return x + 1


def slow_inc(x: int) -> int:
    time.sleep(0.3)  # longer than the 0.2 s upload interval of the interval test
    return x + 1


def die(_: Any) -> None:
    os._exit(3)


def chain(killer: bool, slow_at: int | None = None) -> dict[str, Any]:
    graph: dict[str, Any] = {"t0": (inc, 0)}
    for i in range(1, CHAIN):
        func = slow_inc if i == slow_at else inc
        if killer and i == KILLED_AT:
            func = die
        graph[f"t{i}"] = (func, f"t{i - 1}")
    return graph


@pytest.fixture(scope="module")
def engine(redis_server: RedisServer) -> Iterator[daskless.Engine]:
    """One worker process, one partition: a chain runs in order inside one invocation."""
    with daskless.Engine(store=redis_server.url, invoker="processes", workers=1) as engine, \
            dask.config.set({"daskless.partitions-per-worker": 1}):
        yield engine


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    store = RedisStore(redis_url)
    yield store
    store.close()


def run_metrics(engine: daskless.Engine, store: RedisStore) -> RunMetrics:
    assert engine.last_run is not None
    return load_run(store, engine.last_run.run_id, settle_s=10)


def recorded(run: RunMetrics) -> list[int]:
    return sorted(t.id for t in run.tasks if t.start is not None)


def ids_of(run: RunMetrics, keys: list[str]) -> list[int]:
    by_key = {t.key: t.id for t in run.tasks}
    return sorted(by_key[k] for k in keys)


STRATEGIES = [
    # (settings, tasks among the 7 that ran that must have been uploaded before the kill)
    ({"strategy": "task"}, 7),
    ({"strategy": "batch", "batch-size": 3}, 7 - 2),  # at most batch-size - 1 unflushed
    ({"strategy": "interval", "interval": 0.2}, 4),  # t3 is slow: uploaded right after it
    ({"strategy": "exit"}, 0),
]


@pytest.mark.parametrize(("settings", "at_least"), STRATEGIES,
                         ids=[s["strategy"] for s, _ in STRATEGIES])
def test_killed_worker_loses_at_most_its_unflushed_batch(
    engine: daskless.Engine, store: RedisStore, settings: dict[str, Any], at_least: int
) -> None:
    graph = chain(killer=True, slow_at=3 if settings["strategy"] == "interval" else None)
    # No second attempt: the first death ends the run, and with it what the worker buffered.
    config = {"daskless.metrics": settings, "daskless.allowed-failures": 0}
    with dask.config.set(config), pytest.raises(WorkerLostError):
        engine.get(graph, f"t{CHAIN - 1}")
    run = run_metrics(engine, store)
    ran = ids_of(run, [f"t{i}" for i in range(KILLED_AT)])
    got = recorded(run)
    assert set(got) <= set(ran)
    assert got == ran[: len(got)]  # what arrived is everything up to the last upload
    assert len(got) >= at_least
    if settings["strategy"] == "task":
        assert got == ran
    if settings["strategy"] == "exit":
        assert got == []
    assert run.status is not None and run.status.startswith("KilledWorker")
    assert len(run.lost_workers) == 1
    assert run.missing_tasks == sorted(set(range(CHAIN)) - set(got))
    assert f"metrics missing for {CHAIN - len(got)} tasks" in run.summary()


def tree(leaves: int) -> Any:
    xs = [delayed(inc)(i) for i in range(leaves)]
    while len(xs) > 1:
        xs = [delayed(inc)(xs[i]) + xs[i + 1] for i in range(0, len(xs), 2)]
    return xs[0]


@pytest.mark.parametrize("settings", [
    {"strategy": "task"}, {"strategy": "batch", "batch-size": 1000},
    {"strategy": "interval", "interval": 3600}, {"strategy": "exit"},
], ids=["task", "batch", "interval", "exit"])
def test_every_strategy_keeps_everything_when_workers_finish(
    redis_url: str, store: RedisStore, settings: dict[str, Any]
) -> None:
    with dask.config.set({"daskless.metrics": settings}), \
            daskless.Engine(store=redis_url, invoker="threads", workers=3) as engine:
        (value,) = dask.compute(tree(32), scheduler=engine.get)
        run = run_metrics(engine, store)
    assert value == dask.compute(tree(32), scheduler="sync")[0]
    assert run.status == "ok"
    assert run.missing_tasks == []
    assert all(i.end is not None for i in run.invocations.values())
    assert sum(i.tasks for i in run.invocations.values()) == len(run.tasks)
    assert set(run.timings) >= {"convert", "partition", "submit", "wait", "results", "total"}


def test_worker_and_transfer_metrics_are_recorded(engine: daskless.Engine,
                                                  store: RedisStore) -> None:
    with dask.config.set({"daskless.metrics": {"strategy": "interval", "interval": 0.5},
                          "daskless.partitions-per-worker": 4}):
        dask.compute(tree(64), scheduler=engine.get)
    run = run_metrics(engine, store)
    assert run.missing_tasks == []
    invocations = list(run.invocations.values())
    assert all(i.spec_s >= 0 and i.worker for i in invocations)
    assert sum(not i.cold for i in invocations) >= 1  # a warm pool reuses its process
    fetched = [(t, d) for t in run.tasks for d in t.downloads]
    assert fetched, "a partitioned tree reads some inputs from the store"
    for task, dep in fetched:
        assert dep in task.deps and task.downloads[dep][0] > 0
    uploaded = [t for t in run.tasks if t.output_bytes]
    assert {dep for _, dep in fetched} <= {t.id for t in uploaded}


def test_metrics_off_records_nothing(redis_url: str, store: RedisStore) -> None:
    with dask.config.set({"daskless.metrics.enabled": False}), \
            daskless.Engine(store=redis_url, invoker="threads", workers=2) as engine:
        expected = dask.compute(tree(8), scheduler="sync")
        assert dask.compute(tree(8), scheduler=engine.get) == expected
    assert store.metric_runs() == []


def test_unknown_strategy_is_a_configuration_error(redis_url: str) -> None:
    with dask.config.set({"daskless.metrics.strategy": "sometimes"}), \
            daskless.Engine(store=redis_url, invoker="threads", workers=1) as engine, \
            pytest.raises(ConfigurationError, match=r"sometimes.*task, batch, interval, exit"):
        engine.get({"x": 1}, "x")


def test_memory_store_records_the_same_metrics(tmp_path: Any) -> None:
    with daskless.Engine(store="memory", invoker="threads", workers=2) as engine, \
            daskless.performance_report(tmp_path / "r.html") as report:
        dask.compute(tree(16), scheduler=engine.get)
        assert engine.last_run is not None
    (run,) = report.metrics
    assert run.status == "ok" and run.missing_tasks == []
    assert len(run.tasks) == engine.last_run.tasks
    assert {i.worker.split("/")[0] for i in run.invocations.values()} == {"threads"}
