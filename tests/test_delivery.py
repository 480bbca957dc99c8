"""At-least-once delivery: invocations delivered twice, late, or not at all; and the store failing.

Platforms deliver asynchronous invocations at least once and now and then drop one. Here every
invoker (the client's and each worker's) is wrapped in the test-only faulty invoker of
``worker_runtime.faults``, with its seed printed, and each run must still give the exact result:
a duplicate finds its invocation claimed and runs nothing, a late delivery to a run that ended
writes nothing, a dropped invocation is noticed and its work run again. The store itself failing
(killed, or restarted empty) ends a run with ``StoreUnavailableError`` naming it, never with a
wrong or partial result.
"""

from __future__ import annotations

import random
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
from daskless.exceptions import StoreUnavailableError
from daskless.worker_runtime import faults
from daskless.worker_runtime.faults import InvocationFaults
from daskless.worker_runtime.redis_server import RedisServer, free_port
from tests.http_servers import SECRET, serving
from tests.test_faults import run_state_keys
from tests.test_gateway import gateway


def inc(x: int) -> int:
    time.sleep(0.002)
    return x + 1


def shapes() -> list[tuple[str, Any, int]]:
    xs = [delayed(inc)(i) for i in range(32)]
    tree = xs
    while len(tree) > 1:
        tree = [delayed(add)(tree[i], tree[i + 1]) for i in range(0, len(tree), 2)]
    source = delayed(inc)(0)
    fan = delayed(sum)([delayed(add)(source, i) for i in range(40)])
    return [("tree", tree[0], sum(range(1, 33))), ("fan", fan, 40 + sum(range(40)))]


@pytest.fixture
def faulty(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Arms invocation faults here and in the worker processes started from now on."""

    def arm(**kwargs: Any) -> int:
        seed = random.randrange(2**31)
        print(f"invocation faults {kwargs}, seed {seed}")  # shown when a test fails: replay
        plan = faults.arm(invocations=InvocationFaults(seed=seed, **kwargs))
        for name, value in plan.items():
            monkeypatch.setenv(name, value)
        faults.install(plan)
        return seed

    yield arm
    faults.install({})


@pytest.mark.parametrize("kind", ["duplicate", "late"])
def test_every_invocation_delivered_twice_gives_exact_results(
        redis_url: str, faulty: Any, kind: str) -> None:
    faulty(**{kind: 1.0, "delay_s": 0.3})
    client = redis.Redis.from_url(redis_url)
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        for _name, collection, expected in shapes():
            assert dask.compute(collection, scheduler=engine.get)[0] == expected
        time.sleep(1.0)  # the late copies arrive after their runs ended ...
        assert run_state_keys(client) == 0  # ... and write nothing
    client.close()


def test_dropped_invocations_are_noticed_and_run_again(redis_url: str, faulty: Any) -> None:
    faulty(drop=0.3)
    with dask.config.set({"daskless.lease": 1}), \
            daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        for _name, collection, expected in shapes():
            assert dask.compute(collection, scheduler=engine.get)[0] == expected


def test_the_gateway_path_survives_duplicates_and_drops(redis_url: str, faulty: Any) -> None:
    faulty(duplicate=0.3, drop=0.1, delay_s=0.2)
    server = gateway(redis_url, max_instances=2)
    with serving(server) as url, \
            dask.config.set({"daskless.auth.secret": SECRET, "daskless.lease": 1}), \
            daskless.Engine(store=redis_url, invoker=url, workers=2) as engine:
        for _name, collection, expected in shapes():
            assert dask.compute(collection, scheduler=engine.get)[0] == expected


# -- the store failing -------------------------------------------------------------------------

def slow_inc(x: int) -> int:
    time.sleep(0.3)
    return x + 1


@pytest.mark.parametrize("how", ["killed", "restarted empty"])
def test_a_store_lost_mid_run_is_a_named_error_never_a_wrong_result(how: str) -> None:
    port = free_port()
    server = RedisServer(port=port)
    server.start()
    replacement: list[RedisServer] = []

    def lose_the_store() -> None:
        server.stop()
        if how == "restarted empty":
            replacement.append(RedisServer(port=port))
            replacement[0].start()

    try:
        with daskless.Engine(store=server.url, invoker="processes", workers=2) as engine:
            assert engine.get({"x": 1}, "x") == 1
            timer = threading.Timer(0.5, lose_the_store)
            timer.start()
            start = time.monotonic()
            with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{port}"):
                dask.compute([delayed(slow_inc)(i) for i in range(40)], scheduler=engine.get)
            assert time.monotonic() - start < 10 + 0.5 + 3  # the bound, after the loss
            timer.join()
    finally:
        server.stop()
        for r in replacement:
            r.stop()
