"""Test fixtures: a real redis-server per test session, flushed before each test that uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from worker_runtime.redis_server import RedisServer, free_port


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free loopback port (each xdist worker has its own)."""
    with RedisServer(port=free_port()) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, emptied first."""
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
