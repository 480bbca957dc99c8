"""Faults of the Redis + processes runtime: each ends in a named error, quickly, never a hang."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from operator import add
from typing import Any

import dask
import pytest
import redis
from dask import delayed

import daskless
from daskless.exceptions import (
    KilledWorker,
    SerializationError,
    StoreUnavailableError,
    WorkerLostError,
)
from daskless.worker_runtime import keys
from daskless.worker_runtime.redis_server import RedisServer, free_port


def inc(x: int) -> int:
    return x + 1


def die(_: Any) -> None:
    os._exit(3)


def slow_inc(x: int) -> int:
    time.sleep(0.5)  # a task that takes a while, so the server can be stopped under it
    return x + 1


def huge(_: Any) -> bytes:
    return b"x" * (512 * 1024 * 1024 + 1)


def run_state_keys(client: redis.Redis) -> int:
    """Keys that hold run state; runs' metrics are kept on purpose and not counted, and a
    pool's bookkeeping (a worker's held invocation, until it clears it) is not run state."""
    ignored = (f"{keys.METRICS_PREFIX}:".encode(), f"{keys.PREFIX}:pool:".encode())
    # One snapshot of the key names: pool keys come and go while workers take invocations.
    return sum(1 for key in client.keys("*") if not key.startswith(ignored))


def tree(n: int) -> Any:
    xs = [delayed(inc)(i) for i in range(n)]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
    return xs[0]


@pytest.fixture
def engine(redis_url: str) -> Iterator[daskless.Engine]:
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        yield engine


def test_unreachable_store_names_the_url() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=re.escape(url)):
        daskless.Engine(store=url, invoker="threads").get({"x": 1}, "x")
    assert time.monotonic() - start < 30


def test_store_killed_mid_run() -> None:
    server = RedisServer(port=free_port())
    server.start()
    try:
        with daskless.Engine(store=server.url, invoker="processes", workers=2) as engine:
            engine.get({"x": 1}, "x")
            threading.Timer(0.5, server.stop).start()
            start = time.monotonic()
            with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1"):
                dask.compute([delayed(slow_inc)(i) for i in range(40)], scheduler=engine.get)
            assert time.monotonic() - start < 60
    finally:
        server.stop()


def test_worker_dying_mid_task_is_reported_and_replaced(engine: daskless.Engine) -> None:
    engine.get({"x": 1}, "x")
    (resources,) = engine._resources.values()
    before = set(resources.invoker.pids())  # type: ignore[attr-defined]
    start = time.monotonic()
    # Each death is recovered from; the task kills every worker it runs on: KilledWorker.
    with pytest.raises(KilledWorker, match="'y'") as info:
        engine.get({"x": 1, "y": (die, "x")}, "y")
    assert isinstance(info.value, WorkerLostError)
    assert time.monotonic() - start < 60
    assert engine.get({"x": 1, "y": (inc, "x")}, "y") == 2
    after = set(resources.invoker.pids())  # type: ignore[attr-defined]
    assert len(after) == 2 and after != before


def test_result_above_the_store_limit_names_the_key(engine: daskless.Engine) -> None:
    with pytest.raises(SerializationError, match=r"'big'.*above the store's limit"):
        engine.get({"x": 1, "big": (huge, "x")}, "big")


def test_eight_threads_at_once_leave_no_keys(engine: daskless.Engine, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    engine.get({"x": 1}, "x")
    before = run_state_keys(client)
    results: dict[int, Any] = {}

    def work(i: int) -> None:
        results[i] = dask.compute(tree(64), delayed(inc)(i), scheduler=engine.get)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: (sum(range(1, 65)), i + 1) for i in range(8)}
    assert run_state_keys(client) == before


CLIENT = """
import sys, dask, daskless
from dask import delayed
from operator import add
factor = int(sys.argv[2])
xs = [delayed(lambda i: i * factor)(i) for i in range(256)]
while len(xs) > 1:
    xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
with daskless.Engine(store=sys.argv[1], invoker="processes", workers=1) as engine:
    print(dask.compute(xs[0], scheduler=engine.get)[0])
"""


def test_two_client_processes_share_one_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    before = run_state_keys(client)
    procs = [
        subprocess.Popen([sys.executable, "-c", CLIENT, redis_url, str(m)],
                         stdout=subprocess.PIPE, text=True)
        for m in (1, 2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outputs == [str(sum(range(256))), str(2 * sum(range(256)))]
    assert run_state_keys(client) == before


class _Nowhere:
    """An invoker whose platform never starts a worker."""

    def invoke(self, invocations: Any) -> None:
        pass


def test_no_worker_ever_starting_is_an_invocation_error() -> None:
    from daskless.backends import Resources
    from daskless.exceptions import InvocationError
    from daskless.worker_runtime.store.memory import MemoryStore

    engine = daskless.Engine()
    resources = Resources(MemoryStore(), _Nowhere(), 1)
    engine._resources[daskless.config.Backend.from_config()] = resources
    start = time.monotonic()
    with dask.config.set({"daskless.start-timeout": 1}), \
            pytest.raises(InvocationError, match="not taken over by any worker within 1 s"):
        engine.get({"x": 1}, "x")
    assert time.monotonic() - start < 10


def test_unpicklable_task_names_it(engine: daskless.Engine) -> None:
    gen = (i for i in range(3))
    with pytest.raises(SerializationError, match=r"task 'g' cannot be sent to workers"):
        engine.get({"g": (list, gen)}, "g")


def test_a_pool_first_used_from_a_short_lived_thread_outlives_it(redis_url: str) -> None:
    """Workers die with their parent; on Linux that means the thread that forked them. A pool
    started by a thread that ends at once must keep its workers all the same."""
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        first = threading.Thread(target=engine.get, args=({"x": 1}, "x"))
        first.start()
        first.join()
        (resources,) = engine._resources.values()
        pids = set(resources.invoker.pids())  # type: ignore[attr-defined]
        for i in range(3):
            assert engine.get({"x": i, "y": (inc, "x")}, "y") == i + 1
        assert set(resources.invoker.pids()) == pids  # type: ignore[attr-defined]
