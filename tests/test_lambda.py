"""The ``lambda://`` invoker end to end: real boto3, a real Invoke API emulator, a real Redis.

A smoke set of the ``daskless.get`` contract runs through Lambda invocations (the contract's own
test functions, called with a Lambda engine), then the Lambda-specific behaviour: warm instances,
signed envelopes only, throttling, a function instance dying mid-invocation, bad settings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import dask
import pytest
import redis
from dask import delayed

import daskless
from daskless.worker_runtime import keys, serialization
from daskless.worker_runtime.auth import Signer
from daskless.worker_runtime.context import current
from daskless.worker_runtime.events import InvocationStarted, WorkerLost
from daskless.worker_runtime.invokers.aws_lambda import make_client
from daskless.worker_runtime.lambda_emulator import EmulatorThread
from daskless.worker_runtime.protocol import Invocation, SubDAG, TaskInfo, new_invocation_id
from daskless.worker_runtime.redis_server import RedisServer
from daskless.worker_runtime.store.redis_store import RedisStore
from tests.conformance import test_contract as contract
from tests.lambda_support import (
    FUNCTION,
    SECRET,
    emulator,
    invoke_sync,
    lambda_config,
    lambda_engine,
    settings_for,
)


@pytest.fixture(scope="module")
def running(redis_server: RedisServer) -> Iterator[EmulatorThread]:
    # Two instances at most: a cold start imports dask, numpy and boto3, on a shared machine.
    # Event invocations beyond them wait, as AWS queues them, unless a test asks for ``strict``.
    with emulator(redis_server.url, max_concurrency=2, queue_limit=1000) as emu:
        yield emu


@pytest.fixture(scope="module")
def engine(redis_server: RedisServer, running: EmulatorThread) -> Iterator[daskless.Engine]:
    with lambda_engine(redis_server.url, running.url) as eng:
        yield eng


@pytest.fixture
def lambda_engine_clean(engine: daskless.Engine, redis_url: str) -> daskless.Engine:
    """The module's engine, its Redis emptied first."""
    return engine


@pytest.fixture
def strict(running: EmulatorThread) -> Iterator[EmulatorThread]:
    """The module's emulator, answering 429 as soon as both instances are busy."""
    config = running.emulator.configs[FUNCTION]
    config.queue_limit = 0
    try:
        yield running
    finally:
        config.queue_limit = 1000


@pytest.fixture
def client(running: EmulatorThread) -> Any:
    return make_client(settings_for(FUNCTION, region="us-east-1", endpoint_url=running.url))


# -- the contract, through Lambda ---------------------------------------------------------------


def test_delayed_tree(lambda_engine_clean: daskless.Engine) -> None:
    assert dask.compute(contract.tree(64), scheduler=lambda_engine_clean.get) == (
        sum(range(1, 65)),
    )


def test_collections(lambda_engine_clean: daskless.Engine) -> None:
    contract.test_collections(lambda_engine_clean)


def test_task_error_keeps_its_type(lambda_engine_clean: daskless.Engine) -> None:
    contract.test_task_error_keeps_its_type_and_remote_traceback(lambda_engine_clean)


def test_compute_nested_in_a_task(lambda_engine_clean: daskless.Engine) -> None:
    contract.test_compute_nested_in_a_task(lambda_engine_clean)


def test_persist(lambda_engine_clean: daskless.Engine) -> None:
    contract.test_persist_keeps_data_in_the_store(lambda_engine_clean)


def test_task_warnings_reach_the_caller(lambda_engine_clean: daskless.Engine) -> None:
    contract.test_task_warnings_reach_the_caller(lambda_engine_clean)


def test_run_keys_are_gone_afterwards(
    lambda_engine_clean: daskless.Engine, redis_client: redis.Redis
) -> None:
    dask.compute(contract.tree(128), scheduler=lambda_engine_clean.get)
    left = [k.decode() for k in redis_client.scan_iter()]
    # Accepted signatures (replay protection) outlive a run; its own keys do not.
    assert any(k.startswith("dl:auth:seen:") for k in left)
    assert not [k for k in left if k.startswith(keys.PREFIX + ":run:")]


def test_workers_fan_out_through_lambda(lambda_engine_clean: daskless.Engine,
                                       running: EmulatorThread) -> None:
    # One source feeding 16 branches: the client invokes only the source's partition; the
    # worker that runs it invokes the function again for every other partition.
    x = delayed(contract.inc)(0)
    total = delayed(sum)([delayed(contract.inc)(x) for _ in range(16)])
    (resources,) = lambda_engine_clean._resources.values()
    invoker: Any = resources.invoker
    sent, calls = invoker.attempts, running.stats(FUNCTION).invocations
    assert dask.compute(total, scheduler=lambda_engine_clean.get, num_workers=4) == (32,)
    assert invoker.attempts - sent == 1
    assert running.stats(FUNCTION).invocations - calls > 1


def test_instances_are_reused_warm(lambda_engine_clean: daskless.Engine,
                                   running: EmulatorThread) -> None:
    before = running.stats(FUNCTION)
    cold_before, calls_before = before.cold_starts, before.invocations
    for _ in range(3):
        dask.compute(contract.tree(32), scheduler=lambda_engine_clean.get)
    after = running.stats(FUNCTION)
    calls, cold = after.invocations - calls_before, after.cold_starts - cold_before
    assert calls >= 3
    # Instances outlive their invocations: later computes run on instances started earlier,
    # and no more instances exist than may run at once.
    assert cold < calls
    assert after.cold_starts - after.crashed <= 2


# -- only signed invocations run --------------------------------------------------------------


MARKER = "test:lambda:marker"


def _write_marker(values: Any) -> int:
    """The only task of the live run below: proves that an invocation ran."""
    context = current()
    assert context is not None
    context.store.client.set(MARKER, b"ran")  # type: ignore[attr-defined]
    return 1


def _live_run(store_url: str) -> Invocation:
    """A real stored run whose one task writes :data:`MARKER`, and an invocation of it."""
    task = TaskInfo(0, "marker", _write_marker, (), (), (), (), 0, True, True)
    spec = SubDAG("victim", 0, {0: task})
    store = RedisStore(store_url)
    store.create_run("victim", {0: serialization.dumps(spec)}, 60)
    store.close()
    return Invocation(run_id="victim", partition=0, entries=(0,))


@pytest.mark.parametrize("kind", ["unsigned", "tampered", "stale", "wrong-secret", "replayed"])
def test_bad_envelopes_are_refused_and_run_nothing(
    kind: str, client: Any, redis_url: str, redis_client: redis.Redis
) -> None:
    body = _live_run(redis_url).to_bytes()
    signer = Signer(SECRET)
    envelope: Any
    if kind == "unsigned":
        envelope = {"invocation": body.decode()}
    elif kind == "tampered":
        envelope = signer.sign_envelope(body)
        envelope["invocation"] = envelope["invocation"].replace('"entries":[0]', '"entries":[1]')
    elif kind == "stale":
        envelope = Signer(SECRET, clock=lambda: time.time() - 3600).sign_envelope(body)
    elif kind == "wrong-secret":
        envelope = Signer("not-the-secret").sign_envelope(body)
    else:
        envelope = signer.sign_envelope(body)
        assert invoke_sync(client, envelope)[0] is None  # accepted once: it ran
        assert redis_client.getdel(MARKER) == b"ran"
    events_before = redis_client.xlen(keys.run_key("victim", "events"))
    error, payload = invoke_sync(client, envelope)
    assert error == "Unhandled"
    assert payload["errorType"] == "SignatureError"
    # Nothing ran: no marker, no event on the run.
    assert redis_client.get(MARKER) is None
    assert redis_client.xlen(keys.run_key("victim", "events")) == events_before


def test_a_stale_event_invocation_of_a_live_run_fails_the_run(
    client: Any, redis_url: str, redis_client: redis.Redis
) -> None:
    # Signed correctly, but it waited too long (in AWS: the asynchronous queue): refused, and
    # the failure record tells the run, whose client would otherwise wait forever.
    body = _live_run(redis_url).to_bytes()
    envelope = Signer(SECRET, clock=lambda: time.time() - 3600).sign_envelope(body)
    store = RedisStore(redis_url)
    cursor, _ = store.read_events("victim", "0", 1)  # the run's "created" event
    accepted = client.invoke(FunctionName=FUNCTION, InvocationType="Event",
                             Payload=json.dumps(envelope).encode())
    assert accepted["StatusCode"] == 202
    events: list[Any] = []
    while not any(isinstance(e, WorkerLost) for e in events):  # blocking reads of the stream
        cursor, batch = store.read_events("victim", cursor, 30)
        assert batch, "no lost event within 30 s"
        events += batch
    store.close()
    (lost,) = [e for e in events if isinstance(e, WorkerLost)]
    assert lost.worker.startswith(f"{FUNCTION}:") and "stale" in lost.reason
    assert lost.partition == 0 and not lost.retried  # the client fails the run at once
    assert not any(isinstance(e, InvocationStarted) for e in events)  # it never started
    assert redis_client.get(MARKER) is None  # the task never ran


def test_an_event_delivered_twice_runs_once_and_loses_no_worker(
    client: Any, running: EmulatorThread, redis_url: str, redis_client: redis.Redis
) -> None:
    # Lambda delivers asynchronous events at least once: the copy is refused as a replay, and
    # its failure record is known for what it is, not taken for a lost worker.
    envelope = json.dumps(Signer(SECRET).sign_envelope(_live_run(redis_url).to_bytes()))
    before = running.stats(FUNCTION)
    failed, completed = before.failed, before.completed
    for _ in range(2):
        accepted = client.invoke(FunctionName=FUNCTION, InvocationType="Event",
                                 Payload=envelope.encode())
        assert accepted["StatusCode"] == 202
    deadline = time.monotonic() + 60
    while running.stats(FUNCTION).completed < completed + 3:  # both copies and the record
        assert time.monotonic() < deadline, "the failure record was never handled"
        time.sleep(0.05)
    assert running.stats(FUNCTION).failed == failed + 1
    store = RedisStore(redis_url)
    _, events = store.read_events("victim", "0", 1)
    store.close()
    assert sum(isinstance(e, InvocationStarted) for e in events) == 1
    assert not any(isinstance(e, WorkerLost) for e in events)
    assert redis_client.get(MARKER) == b"ran"


def test_a_signed_invocation_runs_on_a_warm_instance(
    client: Any, redis_url: str, redis_client: redis.Redis
) -> None:
    invocation = _live_run(redis_url)
    signer = Signer(SECRET)
    error, first = invoke_sync(client, signer.sign_envelope(invocation.to_bytes()))
    assert error is None and first["run"] == "victim"
    assert first["worker"].startswith(f"{FUNCTION}:")
    assert redis_client.getdel(MARKER) == b"ran"
    # The platform delivers the same invocation again (at least once): it finds it claimed.
    error, _ = invoke_sync(client, signer.sign_envelope(invocation.to_bytes()))
    assert error is None and redis_client.get(MARKER) is None
    # The next invocation finds the instance idle and reuses its connections: a warm start.
    again = dataclasses.replace(invocation, id=new_invocation_id())
    error, second = invoke_sync(client, signer.sign_envelope(again.to_bytes()))
    assert error is None and second["cold"] is False and second["pid"] == first["pid"]
    assert second["worker"] != first["worker"]  # one worker id per invocation
    assert redis_client.get(MARKER) == b"ran"


def test_a_signed_invocation_of_a_gone_run_is_accepted_quietly(
    client: Any, redis_client: redis.Redis
) -> None:
    body = Invocation(run_id="gone", partition=0, entries=(0,)).to_bytes()
    error, payload = invoke_sync(client, Signer(SECRET).sign_envelope(body))
    assert error is None and payload["run"] == "gone"
    assert payload["worker"].startswith(f"{FUNCTION}:")


# -- throttling, crashes, settings -------------------------------------------------------------


def _wide(n: int) -> Any:
    return delayed(sum)([delayed(contract.inc)(i) for i in range(n)])


def test_throttled_invocations_are_retried(redis_url: str, strict: EmulatorThread) -> None:
    before = dataclasses.replace(strict.stats(FUNCTION))
    with lambda_engine(redis_url, strict.url, max_concurrency=8, max_attempts=40,
                       max_backoff=0.5) as eng:
        (resources,) = eng._resources.values()
        invoker: Any = resources.invoker
        sent_before = invoker.attempts
        # 24 independent branches in many partitions: the client invokes them all at once.
        got = dask.compute(_wide(24), scheduler=eng.get, num_workers=4)
        assert got == (sum(range(1, 25)),)
        # Requests were refused with 429, and every refused one was sent again until accepted.
        stats = strict.stats(FUNCTION)
        assert stats.throttled > before.throttled
        assert invoker.attempts - sent_before > stats.invocations - before.invocations - 1


def test_queued_event_invocations_wait_for_a_free_instance(
    redis_url: str, running: EmulatorThread
) -> None:
    before = dataclasses.replace(running.stats(FUNCTION))
    with lambda_engine(redis_url, running.url, max_attempts=1) as eng:
        assert dask.compute(_wide(24), scheduler=eng.get, num_workers=4) == (sum(range(1, 25)),)
    stats = running.stats(FUNCTION)
    assert stats.throttled == before.throttled
    assert stats.invocations - before.invocations > 2  # more than the instances, one at a time


def test_throttling_past_the_retry_budget_is_an_invocation_error(
    redis_url: str, strict: EmulatorThread
) -> None:
    with lambda_engine(redis_url, strict.url, max_concurrency=8, max_attempts=1) as eng, \
            pytest.raises(daskless.exceptions.InvocationError, match="TooManyRequests"):
        eng.get({f"s{i}": (time.sleep, 0.2) for i in range(16)}, [f"s{i}" for i in range(16)],
                num_workers=4)


DIED = "test:lambda:died"


def _die_once(x: int) -> int:
    """Kills the first instance that runs it; later attempts return."""
    context = current()
    assert context is not None
    if context.store.client.set(DIED, b"1", nx=True):  # type: ignore[attr-defined]
        os._exit(3)
    return x + 1


def _die(x: int) -> int:
    os._exit(3)


def _die_in_a_while(x: int) -> int:
    time.sleep(1.5)  # long enough for the instance's lease to say which task it runs
    os._exit(3)


def test_an_instance_killed_mid_invocation_costs_no_result(
    lambda_engine_clean: daskless.Engine, running: EmulatorThread
) -> None:
    crashed = running.stats(FUNCTION).crashed
    # The on-failure record tells the client, which runs the lost work again.
    assert lambda_engine_clean.get({"a": 1, "b": (_die_once, "a"), "c": (contract.inc, "b")},
                                   "c") == 3
    assert running.stats(FUNCTION).crashed == crashed + 1


def test_a_task_that_kills_every_instance_is_a_killed_worker(
    lambda_engine_clean: daskless.Engine, running: EmulatorThread
) -> None:
    crashed = running.stats(FUNCTION).crashed
    with pytest.raises(daskless.exceptions.KilledWorker, match=r"'b'.*exit status 3"):
        lambda_engine_clean.get({"a": 1, "b": (_die_in_a_while, "a")}, "b")
    assert running.stats(FUNCTION).crashed == crashed + 4  # allowed-failures + 1
    # One that kills its instance at once cannot be named (the lease had no time to say which
    # task ran), but it is no hang either: the run gives up, with the platform's reason.
    with pytest.raises(daskless.exceptions.WorkerLostError, match="exit status 3"):
        lambda_engine_clean.get({"a": 1, "b": (_die, "a")}, "b")
    # The function keeps serving.
    assert dask.compute(contract.tree(16), scheduler=lambda_engine_clean.get) == (136,)


def test_an_invocation_past_the_function_timeout_is_a_named_error(
    lambda_engine_clean: daskless.Engine, running: EmulatorThread
) -> None:
    config = running.emulator.configs[FUNCTION]
    config.timeout_s = 1.0
    try:
        with pytest.raises(daskless.exceptions.WorkerLostError, match=r"timed out after 1\.00"):
            lambda_engine_clean.get({"a": 30, "b": (time.sleep, "a")}, "b")
    finally:
        config.timeout_s = 900.0


def test_the_emulator_speaks_the_invoke_api(client: Any) -> None:
    from botocore.exceptions import ClientError

    accepted = client.invoke(FunctionName=FUNCTION, InvocationType="Event", Payload=b"{}")
    assert accepted["StatusCode"] == 202
    dry = client.invoke(FunctionName=FUNCTION, InvocationType="DryRun", Payload=b"{}")
    assert dry["StatusCode"] == 204
    with pytest.raises(ClientError) as missing:
        client.invoke(FunctionName="nope", InvocationType="Event", Payload=b"{}")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as garbage:
        client.invoke(FunctionName=FUNCTION, Payload=b"not json")
    assert garbage.value.response["Error"]["Code"] == "InvalidRequestContentException"
    with pytest.raises(ClientError) as big:
        client.invoke(FunctionName=FUNCTION, InvocationType="Event",
                      Payload=b'"' + b"x" * (256 * 1024) + b'"')
    assert big.value.response["Error"]["Code"] == "RequestEntityTooLargeException"


def test_a_missing_boto3_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without the extra sees
    with pytest.raises(daskless.exceptions.ConfigurationError, match=r"daskless\[aws\]"):
        make_client(settings_for(FUNCTION))


def test_an_unknown_function_is_an_invocation_error(
    redis_url: str, running: EmulatorThread
) -> None:
    with dask.config.set(lambda_config(running.url)), daskless.Engine(
        store=redis_url, invoker="lambda://no-such-function"
    ) as eng, pytest.raises(daskless.exceptions.InvocationError, match="ResourceNotFound"):
        eng.get({"x": 1}, "x")


@pytest.mark.parametrize(
    ("store", "settings", "message"),
    [
        ("memory", {}, "needs a Redis the Lambda function can reach"),
        ("embedded", {}, "needs a Redis the Lambda function can reach"),
        (None, {"daskless.auth.secret": None}, "needs daskless.auth.secret"),
        (None, {"daskless.lambda.max-concurrency": 0}, "max_concurrency must be at least 1"),
        (None, {"daskless.lambda.colour": "blue"}, "unknown daskless.lambda settings"),
        (None, {"daskless.lambda.max-attempts": "lots"}, "bad daskless.lambda settings"),
    ],
)
def test_bad_settings_are_configuration_errors(
    redis_url: str, running: EmulatorThread, store: str | None, settings: dict[str, Any],
    message: str,
) -> None:
    config = {**lambda_config(running.url), **settings}
    with dask.config.set(config), daskless.Engine(
        store=store or redis_url, invoker=f"lambda://{FUNCTION}"
    ) as eng, pytest.raises(daskless.exceptions.ConfigurationError, match=message):
        eng.get({"x": 1}, "x")
