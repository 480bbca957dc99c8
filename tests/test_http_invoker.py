"""The ``http`` invoker against real aiohttp servers: retries, refusals, bounds, configuration."""

from __future__ import annotations

import json

import dask
import pytest

import daskless
from daskless.exceptions import ConfigurationError, InvocationError, SignatureError
from daskless.worker_runtime import auth
from daskless.worker_runtime.invokers.http import HttpInvoker, invoke_endpoint
from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.redis_server import free_port
from tests.http_servers import SECRET, Recorder, serving_app

INVOCATIONS = [Invocation("r1", p, (p,), inline_spec=b"x" * 100) for p in range(5)]


def test_endpoint_is_url_plus_invoke() -> None:
    assert invoke_endpoint("http://h:1") == "http://h:1/invoke"
    assert invoke_endpoint("http://h:1/fn/") == "http://h:1/fn/invoke"


def test_signed_small_payloads_reach_the_url() -> None:
    recorder = Recorder()
    with serving_app(recorder.app()) as url:
        invoker = HttpInvoker(url + "/fn", auth.Signer(SECRET))
        try:
            invoker.invoke(INVOCATIONS)
        finally:
            invoker.close()
    received = [recorder.requests.get(timeout=5) for _ in INVOCATIONS]
    verifier = auth.Signer(SECRET)
    parts = set()
    for body, headers in received:
        verifier.verify_headers(body, headers)
        parsed = json.loads(body)
        assert "spec" not in parsed  # inline sub-DAGs are never sent over HTTP
        parts.add(parsed["part"])
    assert parts == {0, 1, 2, 3, 4}


def test_429_and_5xx_are_retried_each_attempt_signed_afresh() -> None:
    recorder = Recorder(answers=[429, 503, 500])
    with serving_app(recorder.app()) as url:
        invoker = HttpInvoker(url + "/fn", auth.Signer(SECRET), attempts=5)
        try:
            invoker.invoke(INVOCATIONS[:1])
        finally:
            invoker.close()
    attempts = [recorder.requests.get(timeout=5) for _ in range(4)]
    signatures = {headers[auth.SIGNATURE_HEADER] for _, headers in attempts}
    assert len(signatures) == 4
    assert recorder.requests.empty()


def test_401_is_a_signature_error_without_retries() -> None:
    recorder = Recorder(answers=[401])
    with serving_app(recorder.app()) as url:
        invoker = HttpInvoker(url + "/fn", auth.Signer(SECRET), attempts=5)
        try:
            with pytest.raises(SignatureError, match="refused"):
                invoker.invoke(INVOCATIONS[:1])
        finally:
            invoker.close()
    assert recorder.requests.qsize() == 1


def test_other_4xx_is_an_invocation_error_without_retries() -> None:
    recorder = Recorder(answers=[400])
    with serving_app(recorder.app()) as url:
        invoker = HttpInvoker(url + "/fn", None, attempts=5)
        try:
            with pytest.raises(InvocationError, match="HTTP 400"):
                invoker.invoke(INVOCATIONS[:1])
        finally:
            invoker.close()
    assert recorder.requests.qsize() == 1


def test_giving_up_after_bounded_retries_names_the_url() -> None:
    recorder = Recorder(answers=[503] * 10)
    with serving_app(recorder.app()) as url:
        invoker = HttpInvoker(url + "/fn", None, attempts=3)
        try:
            with pytest.raises(InvocationError, match=r"after 3 attempts: HTTP 503"):
                invoker.invoke(INVOCATIONS[:1])
        finally:
            invoker.close()
    assert recorder.requests.qsize() == 3


def test_fan_out_is_concurrent_and_bounded() -> None:
    recorder = Recorder(hold=3)
    invocations = [Invocation("r", p, (p,)) for p in range(9)]
    with serving_app(recorder.app()) as url:
        invoker = HttpInvoker(url + "/fn", None, concurrency=3)
        try:
            invoker.invoke(invocations)
        finally:
            invoker.close()
    assert recorder.max_in_flight == 3
    assert recorder.requests.qsize() == 9


def test_without_waiting_failures_go_to_the_callback() -> None:
    failed: list[tuple[Invocation, InvocationError]] = []
    invoker = HttpInvoker(f"http://127.0.0.1:{free_port()}", None, attempts=2, wait=False,
                          on_failure=lambda i, e: failed.append((i, e)))
    invoker.invoke(INVOCATIONS[:2])
    invoker.close()  # finishes pending sends first
    assert sorted(i.partition for i, _ in failed) == [0, 1]
    assert all("after 2 attempts" in str(e) for _, e in failed)


def test_closed_port_fails_a_compute_with_invocation_error(redis_url: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    settings = {"daskless.auth.secret": SECRET, "daskless.http.attempts": 3}
    with dask.config.set(settings), daskless.Engine(store=redis_url, invoker=url) as engine:
        with pytest.raises(InvocationError, match=f"{url}/invoke after 3 attempts"):
            dask.delayed(sum)([1, 2]).compute(scheduler=engine.get)
        (resources,) = engine._resources.values()
        assert resources.store.client.keys("dl:run:*") == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("store", "settings", "match"),
    [
        ("memory", {"daskless.auth.secret": SECRET}, "not 'memory'"),
        ("embedded", {"daskless.auth.secret": SECRET}, "'embedded' store is private"),
        ("REDIS", {"daskless.auth.secret": None}, "needs daskless.auth.secret"),
    ],
)
def test_configuration_errors(store: str, settings: dict[str, object], match: str,
                              redis_url: str) -> None:
    store = redis_url if store == "REDIS" else store
    engine = daskless.Engine(store=store, invoker="http://127.0.0.1:9")
    with dask.config.set(settings), engine, pytest.raises(ConfigurationError, match=match):
        dask.delayed(sum)([1, 2]).compute(scheduler=engine.get)


def test_a_non_http_url_is_refused() -> None:
    with pytest.raises(InvocationError, match="http:// or https://"):
        HttpInvoker("ftp://x", None)
