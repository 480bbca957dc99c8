"""No silent hangs: every way an invocation can fail reaches the client as a named error, fast.

Each case is caused for real, with real worker processes and a real redis-server: a module that
exists only on the client, a store that refuses writes, worker processes and gateway instances
killed (``SIGKILL``, through the test-only kill points of ``worker_runtime.faults``) after they
took an invocation but before they reported it, a run whose keys vanish mid-run, an invocation
that is dropped. Each must end within 10 s on these local backends, naming what happened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from operator import add
from pathlib import Path
from typing import Any

import dask
import pytest
import redis
from dask import delayed

import daskless
from daskless.backends import Resources
from daskless.config import Backend
from daskless.exceptions import (
    InvocationError,
    RunGoneError,
    RunStalledError,
)
from daskless.report.data import load_run
from daskless.worker_runtime import faults, keys
from daskless.worker_runtime.events import InvocationStarted
from daskless.worker_runtime.invokers.threads import ThreadInvoker
from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.redis_server import RedisServer, free_port
from daskless.worker_runtime.store.base import Claim
from daskless.worker_runtime.store.memory import MemoryStore
from tests.http_servers import SECRET, serving
from tests.test_gateway import gateway

BOUND_S = 10.0


def inc(x: int) -> int:
    return x + 1


def slow_inc(x: int) -> int:
    time.sleep(0.3)
    return x + 1


def block(_: Any) -> bytes:
    return b"x" * 200_000  # under the blob threshold: it goes through Redis


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    start = time.monotonic()
    yield
    elapsed = time.monotonic() - start
    assert elapsed < seconds, f"took {elapsed:.1f} s"


@pytest.fixture
def pool(redis_url: str) -> Iterator[daskless.Engine]:
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        assert engine.get({"x": 1, "y": (inc, "x")}, "y") == 2  # workers are up
        yield engine


@pytest.fixture
def client_only_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    """Makes a module the client can import and workers started before cannot."""

    def make() -> Any:
        name = f"client_only_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text("def shout(x):\n    return str(x).upper()\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        return __import__(name)

    return make


def graph_with_one_missing_task(module: Any) -> Any:
    """64 tasks any worker can run, and one that needs the client-only module."""
    parts = [delayed(inc)(i) for i in range(64)]
    return delayed(module.shout)(delayed(sum)(parts))


def test_a_module_missing_where_workers_run_names_worker_and_module(
        pool: daskless.Engine, client_only_module: Callable[[], Any]) -> None:
    module = client_only_module()
    with within(BOUND_S), pytest.raises(InvocationError) as info:
        dask.compute(graph_with_one_missing_task(module), scheduler=pool.get)
    message = str(info.value)
    assert "ModuleNotFoundError" in message and module.__name__ in message
    assert "installed where workers run" in message and "worker " in message
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert pool.get({"x": 1, "y": (inc, "x")}, "y") == 2  # the pool is fine afterwards


def test_a_module_missing_on_gateway_instances_names_it_too(
        redis_url: str, client_only_module: Callable[[], Any]) -> None:
    server = gateway(redis_url, max_instances=2)
    with serving(server) as url, dask.config.set({"daskless.auth.secret": SECRET}), \
            daskless.Engine(store=redis_url, invoker=url, workers=2) as engine:
        warm = [delayed(inc)(i) for i in range(8)]  # both instances start
        assert dask.compute(delayed(sum)(warm), scheduler=engine.get)[0] == 36
        module = client_only_module()
        with within(BOUND_S), pytest.raises(InvocationError, match="ModuleNotFoundError"):
            dask.compute(graph_with_one_missing_task(module), scheduler=engine.get)


def test_a_store_that_refuses_writes_names_the_worker_and_cause() -> None:
    with RedisServer(port=free_port()) as server, \
            daskless.Engine(store=server.url, invoker="processes", workers=2) as engine:
        assert engine.get({"x": 1, "y": (inc, "x")}, "y") == 2
        client = redis.Redis.from_url(server.url)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + 2_000_000)  # the run's outputs will not fit
        client.config_set("maxmemory-policy", "noeviction")
        outputs = [delayed(block)(i) for i in range(40)]
        with within(BOUND_S), pytest.raises(InvocationError, match="OOM") as info:
            dask.compute(delayed(len)(outputs), scheduler=engine.get)
        assert "worker " in str(info.value)
        client.config_set("maxmemory", 0)
        assert engine.get({"x": 1, "y": (inc, "x")}, "y") == 2
        client.close()


def test_a_worker_killed_before_it_reports_its_start_is_noticed_at_once(
        redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in faults.arm(["before-start"], str(tmp_path / "kills")).items():
        monkeypatch.setenv(name, value)
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine, \
            within(BOUND_S):
        assert engine.get({"x": 1, "y": (inc, "x")}, "y") == 2  # its work ran again
    assert (tmp_path / "kills.0").exists()


@pytest.mark.parametrize("deaths", [1, 2])
def test_gateway_instances_dying_before_their_start_are_survived(
        redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deaths: int) -> None:
    """The gateway retries an invocation once on another instance, and when the retry dies
    too the run recovers the work itself: no hang, no error."""
    for name, value in faults.arm(["before-start"], str(tmp_path / "kills"), deaths).items():
        monkeypatch.setenv(name, value)
    server = gateway(redis_url, max_instances=2)
    with serving(server) as url, dask.config.set({"daskless.auth.secret": SECRET}), \
            daskless.Engine(store=redis_url, invoker=url, workers=2) as engine, \
            within(BOUND_S + 5):  # instances start cold, twice
        assert engine.get({"x": 1, "y": (inc, "x")}, "y") == 2
    assert server.counters["lost"] == deaths


def test_a_run_whose_keys_vanish_mid_run_is_a_named_error(
        pool: daskless.Engine, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)

    def delete_runs() -> None:  # another client (or an operator) deletes the run's keys
        for key in client.scan_iter(keys.run_key("*", "meta")):
            client.delete(key)

    work = [delayed(slow_inc)(i) for i in range(20)]
    timer = threading.Timer(0.6, delete_runs)
    timer.start()
    with within(BOUND_S), pytest.raises(RunGoneError, match="are gone from the store"):
        dask.compute(delayed(sum)(work), scheduler=pool.get)
    timer.join()
    client.close()


class LossyThreads(ThreadInvoker):
    """Thread workers on a platform that loses the work of invocations: it drops them
    (``drop``) or runs them without their entry tasks, for the fan-outs that workers make
    only or (``everything``) for the client's invocations too."""

    def __init__(self, store: MemoryStore, workers: int, drop: bool, everything: bool) -> None:
        super().__init__(store, workers)
        self.drop, self.everything = drop, everything

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        fan_out = threading.current_thread().name.startswith("daskless-worker")
        if fan_out or self.everything:
            if self.drop:
                return
            invocations = [dataclasses.replace(i, entries=()) for i in invocations]
        super().invoke(invocations)


def fan_out(n: int) -> Any:
    """One task feeding ``n`` that one task sums: the first worker must invoke others."""
    source = delayed(inc)(0)
    return delayed(sum)([delayed(add)(source, i) for i in range(n)])


@contextlib.contextmanager
def lossy_engine(drop: bool, everything: bool = False) -> Iterator[daskless.Engine]:
    engine, store = daskless.Engine(), MemoryStore()
    invoker = LossyThreads(store, 2, drop, everything)
    engine._resources[Backend.from_config()] = Resources(store, invoker, 2, [invoker.close])
    with dask.config.set({"daskless.partitions-per-worker": 4, "daskless.lease": 1}):
        yield engine
    engine.close()


def test_fan_outs_run_without_their_work_are_recovered() -> None:
    """Every invocation ran and ended, yet requested tasks never ran: the client notices and
    starts the lost work again itself."""
    with lossy_engine(drop=False) as engine, within(BOUND_S):
        assert dask.compute(fan_out(64), scheduler=engine.get) == (64 + sum(range(64)),)


def test_dropped_fan_outs_are_recovered_after_the_lease() -> None:
    with lossy_engine(drop=True) as engine, within(BOUND_S):
        assert dask.compute(fan_out(64), scheduler=engine.get) == (64 + sum(range(64)),)


def test_lost_work_stalls_into_a_named_error() -> None:
    """A platform that loses every invocation's work: after recovering in vain a few times in
    a row, the run says so."""
    with lossy_engine(drop=False, everything=True) as engine, within(BOUND_S), \
            pytest.raises(RunStalledError, match="can no longer make progress"):
        dask.compute(fan_out(64), scheduler=engine.get)


@pytest.mark.parametrize("lease", [10, 0.5])
def test_invocations_nobody_takes_over_fail_after_the_start_timeout(lease: float) -> None:
    """A platform that takes no invocation at all: the start timeout tells a misconfigured
    platform from a dropped invocation (which the lease recovers). Invoking again after each
    lease is no lost progress, and does not stop the start timeout's clock."""
    with lossy_engine(drop=True, everything=True) as engine, within(BOUND_S), \
            dask.config.set({"daskless.start-timeout": 3, "daskless.lease": lease}), \
            pytest.raises(InvocationError, match="not taken over by any worker within 3 s"):
        dask.compute(fan_out(64), scheduler=engine.get)


class VanishingHost(ThreadInvoker):
    """Thread workers, but the client's first invocations all go to one host that takes them
    over (claim, lease, start event, as a worker does) and then vanishes without a trace."""

    def __init__(self, store: MemoryStore, workers: int) -> None:
        super().__init__(store, workers)
        self.store, self.vanished, self.taken = store, False, 0

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        if self.vanished:
            super().invoke(invocations)
            return
        self.vanished, self.taken = True, len(invocations)
        for inv in invocations:
            started = InvocationStarted("host-1", inv.partition, len(inv.entries), time.time(),
                                        inv.id, inv.epoch)
            self.store.deliver(inv.run_id, events=[started], epoch=inv.epoch,
                               claim=Claim(inv.id, "host-1", 1000))


def test_leases_that_lapse_together_are_one_recovery() -> None:
    """Every running invocation of a host that vanished lapses at once: one new epoch runs
    them all again (a recovery each would count as lost progress and end the run)."""
    engine, store = daskless.Engine(), MemoryStore()
    invoker = VanishingHost(store, 2)
    engine._resources[Backend.from_config()] = Resources(store, invoker, 2, [invoker.close])
    with dask.config.set({"daskless.partitions-per-worker": 4, "daskless.lease": 1}), \
            within(BOUND_S):
        xs = [delayed(inc)(i) for i in range(16)]
        assert dask.compute(delayed(sum)(xs), scheduler=engine.get) == (sum(range(1, 17)),)
    assert engine.last_run is not None
    run = load_run(store, engine.last_run.run_id)
    engine.close()
    assert invoker.taken > 1 and len(run.recoveries) == 1 and "lease lapsed" in run.recoveries[0]
    assert run.lost_workers == ["host-1"]
