"""Shared fixtures: a real redis-server per test process, emptied before each test that uses it.

Each pytest-xdist worker is its own process and so starts its own server on its own port;
tests therefore never see each other's keys, and FLUSHALL before a test only clears that
worker's server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from daskless.worker_runtime.redis_server import RedisServer, free_port


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free loopback port, for the whole session."""
    with RedisServer(port=free_port()) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session server's URL, with the server emptied first."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the emptied session server."""
    with redis.Redis.from_url(redis_url) as client:
        yield client
