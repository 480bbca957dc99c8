"""One test suite for every ``Store``: the in-memory twin and Redis must behave alike."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from daskless.worker_runtime import keys
from daskless.worker_runtime.errors import (
    DuplicateInvocationError,
    RunGoneError,
    StaleAttemptError,
    StoreUnavailableError,
)
from daskless.worker_runtime.events import RunRecovered, TasksFinished
from daskless.worker_runtime.redis_server import free_port
from daskless.worker_runtime.store.base import Claim, Lease, Mark, Store
from daskless.worker_runtime.store.memory import MemoryStore
from daskless.worker_runtime.store.redis_store import RedisStore

FIN = TasksFinished("worker-1", (1, 5))


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    redis_store = RedisStore(request.getfixturevalue("redis_url"))
    yield redis_store
    redis_store.close()


def test_spec_round_trip_and_gone(store: Store) -> None:
    store.create_run("r1", {0: b"spec0", 3: b"spec3"}, ttl_s=60)
    assert store.load_spec("r1", 3) == b"spec3"
    store.delete_run("r1")
    with pytest.raises(RunGoneError):
        store.load_spec("r1", 0)


def test_marks_are_idempotent_and_report_completion_once(store: Store) -> None:
    store.create_run("r", {}, ttl_s=60)
    assert store.deliver("r", marks=[Mark(7, 1, 3)]) == []
    assert store.deliver("r", marks=[Mark(7, 1, 3)]) == []  # re-delivered edge: not counted
    assert store.deliver("r", marks=[Mark(7, 2, 3), Mark(8, 2, 1)]) == [8]
    assert store.deliver("r", marks=[Mark(7, 3, 3)]) == [7]
    assert store.deliver("r", marks=[Mark(7, 3, 3), Mark(7, 1, 3)]) == []


def test_outputs_events_and_persisted_data(store: Store) -> None:
    store.create_run("r", {}, ttl_s=60)
    store.deliver("r", outputs={1: b"one"}, events=[FIN], persisted={"p": b"kept"},
                  persist_ttl_ms=60_000)
    assert store.fetch("r", [1, 2]) == [b"one", None]
    cursor, events = store.read_events("r", "0", timeout_s=1)
    assert events[0] == events[0]._make(events[0])  # typed events come back, created first
    assert type(events[0]).__name__ == "RunCreated" and events[1:] == [FIN]
    assert store.read_events("r", cursor, timeout_s=0.05)[1] == []
    assert store.fetch_persisted(["p", "q"]) == [b"kept", None]
    assert store.missing_persisted(["p", "q"]) == {"q"}
    store.delete_run("r")
    assert store.fetch_persisted(["p"]) == [b"kept"]  # persisted data outlives the run
    store.delete_persisted(["p"])
    assert store.missing_persisted(["p"]) == {"p"}


def test_writes_after_delete_are_refused_and_leave_nothing(store: Store) -> None:
    store.create_run("r", {}, ttl_s=60)
    store.delete_run("r")
    with pytest.raises(RunGoneError):
        store.deliver("r", outputs={1: b"x"}, marks=[Mark(2, 1, 2)], events=[FIN])
    with pytest.raises(RunGoneError):
        store.push_invocations("r", "q", [b"inv"])
    assert store.pop_invocation("q", timeout_s=0.05) is None


def test_blocking_event_read_wakes_on_delivery(store: Store) -> None:
    store.create_run("r", {}, ttl_s=60)
    cursor, _ = store.read_events("r", "0", timeout_s=0.05)
    timer = threading.Timer(0.2, lambda: store.deliver("r", events=[FIN]))
    timer.start()
    start = time.monotonic()
    _, events = store.read_events("r", cursor, timeout_s=5)
    timer.join()
    assert events == [FIN]
    assert time.monotonic() - start < 4


def test_invocation_queue(store: Store) -> None:
    store.create_run("r", {}, ttl_s=60)
    store.push_invocations("r", "q", [b"a", b"b"])
    assert store.pop_invocation("q", timeout_s=1) == b"a"
    assert store.pop_invocation("q", timeout_s=1) == b"b"


def test_a_taken_invocation_is_held_until_the_next_pop_or_taken_back(store: Store) -> None:
    store.create_run("r", {}, ttl_s=60)
    store.push_invocations("r", "q", [b"a", b"b", b"c"])
    assert store.pop_invocation("q", timeout_s=1, hold="held") == b"a"
    assert store.pop_invocation("q", timeout_s=1, hold="held") == b"b"  # a's hold is gone
    assert store.take_held("held") == [b"b"]  # what a watcher learns if the worker dies now
    assert store.take_held("held") == []
    assert store.pop_invocation("q", timeout_s=1, hold="held") == b"c"
    assert store.pop_invocation("q", timeout_s=0.05, hold="held") is None
    assert store.take_held("held") == []


def test_a_run_is_alive_until_deleted(store: Store) -> None:
    assert not store.run_alive("r")
    store.create_run("r", {}, ttl_s=60)
    assert store.run_alive("r")
    store.delete_run("r")
    assert not store.run_alive("r")


def test_every_run_key_has_a_ttl_and_is_deleted(redis_url: str) -> None:
    store = RedisStore(redis_url)
    store.create_run("r", {0: b"s"}, ttl_s=30)
    client = store.client
    for name in keys.run_keys("r"):
        assert 0 < client.pttl(name) <= 30_000, name
    store.deliver("r", outputs={1: b"v"}, marks=[Mark(2, 1, 2)], events=[FIN])
    store.delete_run("r")
    assert client.dbsize() == 0


def test_unreachable_redis_is_a_named_error_and_fast() -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        RedisStore(url, connect_timeout_s=1).ping()
    assert time.monotonic() - start < 10
    assert "127.0.0.1" in str(info.value) and "secret" not in str(info.value)


def test_metrics_outlive_the_run_and_are_listed(store: Store) -> None:
    store.create_run("r", {}, ttl_s=60)
    store.add_metrics("r", [["task", "i", 1, 0.5, 1.0, []]], retention_s=60)
    store.delete_run("r")  # metrics are not part of the run's disposable keys
    store.add_metrics("r", [("end", "i", 2.0, 1, 0)], retention_s=60)
    cursor, records = store.read_metrics("r", "0", timeout_s=0)
    assert records == [["task", "i", 1, 0.5, 1.0, []], ["end", "i", 2.0, 1, 0]]
    assert store.read_metrics("r", cursor, timeout_s=0)[1] == []
    assert [run for run, _ in store.metric_runs()] == ["r"]


def test_metrics_read_blocks_until_a_batch_arrives(store: Store) -> None:
    cursor, _ = store.read_metrics("m", "0", timeout_s=0)
    timer = threading.Timer(0.1, lambda: store.add_metrics("m", [["x"]], retention_s=60))
    timer.start()
    _, records = store.read_metrics("m", cursor, timeout_s=5)
    timer.join()
    assert records == [["x"]]


def test_metrics_expire_after_their_retention(store: Store) -> None:
    store.add_metrics("old", [["x"]], retention_s=0.001)
    store.add_metrics("new", [["y"]], retention_s=60)
    threading.Event().wait(0.05)  # let the 1 ms retention pass
    assert [run for run, _ in store.metric_runs()] == ["new"]
    if isinstance(store, RedisStore):
        assert not store.client.exists(keys.metrics_stream("old"))


def test_an_invocation_is_claimed_once(store: Store) -> None:
    store.create_run("r", {}, ttl_s=60)
    store.deliver("r", events=[FIN], claim=Claim("inv-1", "w1", 10_000))
    with pytest.raises(DuplicateInvocationError):  # a platform delivered it twice
        store.deliver("r", outputs={9: b"dup"}, events=[FIN], claim=Claim("inv-1", "w2", 10_000))
    _, events = store.read_events("r", "0", timeout_s=1)
    assert events[1:] == [FIN] and store.fetch("r", [9]) == [None]  # the duplicate wrote nothing


def test_outputs_are_committed_once(store: Store) -> None:
    store.create_run("r", {}, ttl_s=60)
    store.deliver("r", outputs={1: b"first"})
    store.deliver("r", outputs={1: b"second", 2: b"other"})
    assert store.fetch("r", [1, 2]) == [b"first", b"other"]
    assert sorted(store.committed("r")) == [1, 2]


def test_a_new_epoch_fences_every_attempt_of_the_old_one(store: Store) -> None:
    store.create_run("r", {0: b"spec1"}, ttl_s=60)
    store.deliver("r", outputs={1: b"a", 2: b"b"}, marks=[Mark(5, 1, 2)],
                  claim=Claim("inv-1", "w1", 10_000))
    store.recover("r", 1, 2, {0: b"spec2"}, lost=[2], event=RunRecovered(2, "a test"))
    for late in (lambda: store.deliver("r", events=[FIN], epoch=1),
                 lambda: store.push_invocations("r", "q", [b"inv"], epoch=1),
                 lambda: store.renew_leases("r", 1, 10_000, {"inv-1": 3}),
                 lambda: store.recover("r", 1, 3, {}, [], RunRecovered(3, "again"))):
        with pytest.raises(StaleAttemptError):
            late()
    assert store.fetch("r", [1, 2]) == [b"a", None]  # the lost output is dropped
    assert store.load_spec("r", 0, epoch=2) == b"spec2" and store.load_spec("r", 0) == b"spec1"
    # Marks and claims start over: the new epoch's plan counts its own inputs.
    assert store.deliver("r", marks=[Mark(5, 1, 2)], epoch=2) == []
    assert store.deliver("r", marks=[Mark(5, 3, 2)], epoch=2) == [5]
    store.deliver("r", events=[FIN], epoch=2, claim=Claim("inv-1", "w3", 10_000))
    _, events = store.read_events("r", "0", timeout_s=1)
    assert RunRecovered(2, "a test") in events
    assert store.pop_invocation("q", timeout_s=0.05) is None


def test_a_recovery_resent_after_a_lost_reply_changes_nothing(store: Store) -> None:
    store.create_run("r", {0: b"spec1"}, ttl_s=60)
    store.recover("r", 1, 2, {0: b"spec2"}, lost=[], event=RunRecovered(2, "first"))
    store.deliver("r", outputs={1: b"a"}, marks=[Mark(5, 1, 2)], epoch=2)
    store.recover("r", 1, 2, {0: b"other"}, lost=[1], event=RunRecovered(2, "resent"))
    assert store.fetch("r", [1]) == [b"a"] and store.load_spec("r", 0, epoch=2) == b"spec2"
    assert store.deliver("r", marks=[Mark(5, 3, 2)], epoch=2) == [5]  # the mark was kept
    _, events = store.read_events("r", "0", timeout_s=1)
    assert RunRecovered(2, "first") in events and RunRecovered(2, "resent") not in events


def test_leases_lapse_by_the_store_clock_unless_renewed(store: Store) -> None:
    store.create_run("r", {}, ttl_s=60)
    store.deliver("r", claim=Claim("inv-1", "w1", 100))
    assert store.leases("r", ["inv-1", "unknown"]) == {"inv-1": Lease(-1, lapsed=False)}
    time.sleep(0.25)
    assert store.leases("r", ["inv-1"]) == {"inv-1": Lease(-1, lapsed=True)}
    store.renew_leases("r", 1, 10_000, {"inv-1": 7})
    assert store.leases("r", ["inv-1"]) == {"inv-1": Lease(7, lapsed=False)}
    store.renew_leases("r", 1, 1, {"inv-1": 7})
    time.sleep(0.05)
    assert store.leases("r", ["inv-1"]) == {"inv-1": Lease(7, lapsed=True)}  # lost in task 7


def test_the_store_instance_is_stable(store: Store) -> None:
    assert store.instance() == store.instance() != ""
