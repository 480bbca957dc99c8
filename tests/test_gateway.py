"""The local FaaS gateway: real aiohttp servers, real worker instance processes, real Redis.

Cold and warm starts, idle retirement, the instance limit (queue or 429, the invoker retries),
an instance killed mid-invocation, refusals at the door, and the ``daskless gateway`` program.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest

import daskless
from daskless.exceptions import KilledWorker
from daskless.worker_runtime import auth
from daskless.worker_runtime.gateway import Gateway, GatewaySettings
from daskless.worker_runtime.protocol import Invocation
from tests.http_servers import SECRET, gateway_process, serving
from tests.test_http_worker import post

Compute = Callable[..., Any]


def wait_for_exit(pid: int, seconds: float) -> bool:
    """Block until the process exits (its pidfd becomes readable), at most ``seconds``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], seconds)[0])
    finally:
        os.close(fd)


def die(x: int) -> int:
    os._exit(3)


def secret_seen_by_task(_: int) -> tuple[object, object]:
    return os.environ.get(auth.SECRET_ENV), dask.config.get("daskless.auth.secret", None)


@pytest.fixture
def compute(redis_url: str) -> Iterator[Compute]:
    """``compute(gateway_url, collection_or_graph, key=None)`` with a signed http engine."""
    engines: list[daskless.Engine] = []

    def run(url: str, what: object, key: object = None) -> object:
        engine = daskless.Engine(store=redis_url, invoker=url, workers=4)
        engines.append(engine)
        if key is not None:
            return engine.get(what, key)
        return dask.compute(what, scheduler=engine.get)[0]

    with dask.config.set({"daskless.auth.secret": SECRET}):
        yield run
    for engine in engines:
        engine.close()


def gateway(redis_url: str, **kwargs: object) -> Gateway:
    return Gateway(GatewaySettings(store=redis_url, secret=SECRET, **kwargs))  # type: ignore[arg-type]


def matrix() -> tuple[da.Array, float]:
    x = da.from_array(np.arange(1600.0).reshape(40, 40), chunks=10)
    return (x @ x.T).sum(), float((np.arange(1600.0).reshape(40, 40) @
                                   np.arange(1600.0).reshape(40, 40).T).sum())


def test_cold_then_warm_starts_reuse_instances(redis_url: str, compute: Compute) -> None:
    server = gateway(redis_url, max_instances=2)
    total, expected = matrix()
    with serving(server) as url:
        assert compute(url, total) == expected
        pids = {i.proc.pid for i in server.instances}
        cold = server.counters["cold_starts"]
        assert compute(url, total) == expected
        assert 1 <= cold <= 2 and server.counters["cold_starts"] == cold
        assert server.counters["warm_starts"] > 0
        assert {i.proc.pid for i in server.instances} == pids
    assert all(wait_for_exit(pid, 10) for pid in pids)  # the gateway stops its instances


def test_idle_instances_are_retired(redis_url: str, compute: Compute) -> None:
    server = gateway(redis_url, max_instances=1, idle_timeout_s=0.2)
    with serving(server) as url:
        assert compute(url, {"x": (sum, [1, 2])}, "x") == 3
        (pid,) = {i.proc.pid for i in server.instances}
        assert wait_for_exit(pid, 30)
        assert compute(url, {"x": (sum, [3, 4])}, "x") == 7
        assert server.counters["retired"] >= 1 and server.counters["cold_starts"] == 2


def test_at_the_instance_limit_invocations_queue(redis_url: str, compute: Compute) -> None:
    server = gateway(redis_url, max_instances=1)
    total, expected = matrix()
    with serving(server) as url:
        assert compute(url, total) == expected
    assert server.counters["cold_starts"] == 1 and server.counters["rejected"] == 0


def test_over_the_queue_limit_429_is_retried_and_nothing_lost(redis_url: str,
                                                              compute: Compute) -> None:
    server = gateway(redis_url, max_instances=2, queue_limit=0)
    graph = {f"s{i}": (sum, [i, 1]) for i in range(64)}
    graph["x"] = (sum, [f"s{i}" for i in range(64)])
    # A generous attempt budget: the test is about nothing being lost, and a loaded machine
    # keeps the two instances busy for longer than the default budget of about 15 s.
    settings = {"daskless.partitions-per-worker": 8, "daskless.http.attempts": 60}
    with dask.config.set(settings), serving(server) as url:
        assert compute(url, graph, "x") == sum(i + 1 for i in range(64))
    assert server.counters["rejected"] > 0
    assert server.counters["cold_starts"] <= 2


def test_instance_killed_mid_invocation_is_a_worker_lost_error(redis_url: str,
                                                              compute: Compute) -> None:
    server = gateway(redis_url, max_instances=2)
    with serving(server) as url:
        # The instance's task slot names the task: every instance running it died.
        with pytest.raises(KilledWorker, match="'x'"):
            compute(url, {"x": (die, 1)}, "x")
        assert server.counters["lost"] >= 4
        # The gateway recovers: the next compute gets a fresh instance.
        assert compute(url, {"y": (sum, [1, 2])}, "y") == 3


def test_the_door_refuses_bad_invocations_before_queueing(redis_url: str) -> None:
    server = gateway(redis_url, max_body_bytes=2048)
    body = Invocation("r", 0, (0,)).to_bytes()
    signed = auth.Signer(SECRET).sign_headers(body)
    big = body + b" " * 4096
    with serving(server) as url:
        invoke = url + "/invoke"
        assert post(invoke, body)[0] == 401
        assert post(invoke, body.replace(b'"r"', b'"s"'), signed)[0] == 401
        assert post(invoke, big, auth.Signer(SECRET).sign_headers(big))[0] == 413
        assert post(invoke, body, auth.Signer(SECRET, clock=lambda: 1.0).sign_headers(body)
                    )[0] == 401
        assert server.counters["accepted"] == 0 and not server.instances
        assert post(invoke, body, signed)[0] == 202
        assert post(invoke, body, signed)[0] == 401  # replayed


def test_gateway_program_keeps_the_secret_from_tasks(redis_url: str, compute: Compute) -> None:
    with gateway_process(redis_url, "--max-instances", "1") as url:
        seen = compute(url, {"x": (secret_seen_by_task, 1)}, "x")
    assert seen == (None, None)


@pytest.mark.parametrize("command", ["worker", "gateway"])
def test_programs_refuse_to_start_without_a_secret(command: str, redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != auth.SECRET_ENV}
    env["DASK_DASKLESS__STORE"] = redis_url
    result = subprocess.run(
        [sys.executable, "-m", "daskless.cli", command, "--port", "0"],
        capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr and "--insecure" in result.stderr


@pytest.mark.parametrize("command", ["worker", "gateway"])
def test_programs_refuse_to_start_without_a_redis_url(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_DASKLESS__")}
    env[auth.SECRET_ENV] = SECRET
    result = subprocess.run(
        [sys.executable, "-m", "daskless.cli", command, "--port", "0"],
        capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr and "DASK_DASKLESS__STORE" in result.stderr
