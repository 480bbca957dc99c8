"""Fixtures of the conformance suite: one engine per (store, invoker) pair that exists.

Engines are session-scoped (a warm process pool is started once, as it would be in use); the
Redis behind the Redis-backed engine is the session's real redis-server, flushed between tests
by the ``redis_url`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import dask
import pytest
import redis

import daskless
from daskless.worker_runtime import keys
from daskless.worker_runtime.store.memory import MemoryStore
from tests.http_servers import SECRET, gateway_process

BACKENDS = ["memory-threads", "redis-processes", "redis-http"]


@pytest.fixture(scope="session")
def memory_engine() -> Iterator[daskless.Engine]:
    with daskless.Engine(store="memory", invoker="threads", workers=2) as engine:
        yield engine


@pytest.fixture(scope="session")
def redis_engine(redis_server: object) -> Iterator[daskless.Engine]:
    url = redis_server.url  # type: ignore[attr-defined]
    with daskless.Engine(store=url, invoker="processes", workers=2) as engine:
        yield engine


@pytest.fixture(scope="session")
def http_engine(redis_server: object) -> Iterator[daskless.Engine]:
    """The ``http`` invoker against a ``daskless gateway`` program with two instances."""
    url = redis_server.url  # type: ignore[attr-defined]
    with gateway_process(url, "--max-instances", "2") as gateway_url, \
            dask.config.set({"daskless.auth.secret": SECRET}), \
            daskless.Engine(store=url, invoker=gateway_url, workers=2) as engine:
        yield engine


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest) -> daskless.Engine:
    """Each test runs once per backend."""
    if request.param == "memory-threads":
        return request.getfixturevalue("memory_engine")  # type: ignore[no-any-return]
    request.getfixturevalue("redis_url")  # flushes the server before the test
    if request.param == "redis-http":
        return request.getfixturevalue("http_engine")  # type: ignore[no-any-return]
    return request.getfixturevalue("redis_engine")  # type: ignore[no-any-return]


def stored_key_count(engine: daskless.Engine) -> int:
    """How many keys the engine's store holds (runs, persisted data, queues).

    Marks of used invocation signatures are not counted: they are not run state, and expire
    on their own once a replay could no longer pass the age check. Nor is a pool's bookkeeping
    (the invocation a worker holds, cleared just after it ends). Metrics are kept after a
    run on purpose (with their own retention) and are not counted either.
    """
    (resources,) = engine._resources.values()
    store = resources.store
    if isinstance(store, MemoryStore):
        # The memory store's state, read under its lock: runs, values, non-empty queues.
        with store._changed:
            queues = sum(1 for q in store._queues.values() if q)
            return len(store._runs) + len(store._data) + queues
    client: redis.Redis = store.client  # type: ignore[attr-defined]
    ignored = (keys.seen_signature("").encode(), f"{keys.METRICS_PREFIX}:".encode(),
               f"{keys.PREFIX}:pool:".encode())
    # One snapshot of the key names: pool keys come and go while workers take invocations.
    return sum(1 for key in client.keys("*") if not key.startswith(ignored))
