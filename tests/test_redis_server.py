"""The private redis-server: found, started, reachable, stopped without leftovers."""

from __future__ import annotations

import os

import pytest
import redis

from worker_runtime.redis_server import RedisServer, find_redis_server, free_port


def test_a_binary_is_found() -> None:
    assert os.access(find_redis_server(), os.X_OK)


def test_unix_socket_server_starts_and_leaves_nothing() -> None:
    server = RedisServer()
    server.start()
    folder = os.path.dirname(server.socket_path)
    assert redis.Redis.from_url(server.url).ping()
    proc = server._proc
    server.stop()
    assert proc is not None and proc.poll() is not None
    assert not os.path.exists(folder)
    server.stop()  # idempotent


def test_password_is_required() -> None:
    with RedisServer(port=free_port(), password="s3cret") as server:
        assert redis.Redis.from_url(server.url).ping()
        anonymous = server.url.replace(":s3cret@", "")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(anonymous).ping()
