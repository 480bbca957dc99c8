"""The HTTP function worker on a real aiohttp server and a real Redis: it runs what is signed,
and refuses, without running anything, what is unsigned, tampered, stale, replayed or too big."""

from __future__ import annotations

import json
import pathlib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import dask
import dask.array as da
import pytest

import daskless
from daskless.worker_runtime import auth
from daskless.worker_runtime.errors import ConfigurationError
from daskless.worker_runtime.http_worker import WAIT_HEADER, HttpWorker, WorkerSettings
from daskless.worker_runtime.protocol import Invocation
from tests.http_servers import SECRET, Recorder, serving, serving_app

STARTED = threading.Event()
GATE = threading.Event()


def post(url: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    """POST and return (status, text), 4xx/5xx included."""
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def mark(path: str) -> int:
    pathlib.Path(path).write_text("ran")
    return 1


def wait_at_gate(x: int) -> int:
    STARTED.set()
    GATE.wait(30)
    return x + 1


@pytest.fixture
def worker(redis_url: str) -> Iterator[tuple[HttpWorker, str]]:
    server = HttpWorker(WorkerSettings(store=redis_url, secret=SECRET, concurrency=2,
                                       max_body_bytes=4096))
    with serving(server) as url:
        yield server, url


def test_health(worker: tuple[HttpWorker, str]) -> None:
    _, url = worker
    with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["concurrency"] == 2


def test_a_compute_with_fan_out_runs_on_the_worker(worker: tuple[HttpWorker, str],
                                                   redis_url: str) -> None:
    server, url = worker
    x = da.arange(400, chunks=25).reshape(20, 20).rechunk(5)
    with dask.config.set({"daskless.auth.secret": SECRET}), \
            daskless.Engine(store=redis_url, invoker=url, workers=2) as engine:
        assert int((x + x.T).sum().compute(scheduler=engine.get)) == int((x + x.T).sum())
    assert server.finished > 1  # the entries and the fan-out it sent itself


def _capture_entry(engine: daskless.Engine, graph: dict[str, object], recorder: Recorder
                   ) -> tuple[Future[object], bytes, dict[str, str]]:
    """Start a compute whose entry invocation goes to ``recorder``; return it, unsent."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(engine.get, graph, "x")
    pool.shutdown(wait=False)
    body, headers = recorder.requests.get(timeout=30)
    return future, body, {k: v for k, v in headers.items() if k.startswith("X-Daskless")}


def test_only_the_genuine_invocation_runs_and_only_once(
    worker: tuple[HttpWorker, str], redis_url: str, tmp_path: pathlib.Path
) -> None:
    server, url = worker
    marker = tmp_path / "ran"
    recorder = Recorder()
    with serving_app(recorder.app()) as fn_url, \
            dask.config.set({"daskless.auth.secret": SECRET}), \
            daskless.Engine(store=redis_url, invoker=fn_url + "/fn") as engine:
        future, body, headers = _capture_entry(engine, {"x": (mark, str(marker))}, recorder)
        invoke = url + "/invoke"
        stale = auth.Signer(SECRET, clock=lambda: 1_000_000.0).sign_headers(body)
        tampered = body.replace(b'"entries":[0]', b'"entries":[0,0]')
        assert tampered != body
        big = body + b" " * 5000
        refusals = {
            "unsigned": post(invoke, body),
            "tampered": post(invoke, tampered, headers),
            "wrong secret": post(invoke, body, auth.Signer("nope").sign_headers(body)),
            "stale": post(invoke, body, stale),
            "oversized": post(invoke, big, auth.Signer(SECRET).sign_headers(big)),
        }
        assert {k: s for k, (s, _) in refusals.items()} == {
            "unsigned": 401, "tampered": 401, "wrong secret": 401, "stale": 401, "oversized": 413,
        }
        assert "stale" in refusals["stale"][1]
        assert not marker.exists() and server.finished == 0  # nothing ran
        # Answered once the invocation has finished, so its count below is not a race.
        assert post(invoke, body, {**headers, WAIT_HEADER: "1"})[0] == 200
        assert future.result(60) == 1
        assert marker.read_text() == "ran"
        status, text = post(invoke, body, headers)
        assert (status, "replayed" in text) == (401, True)
        assert server.finished == 1


def test_malformed_signed_invocation_is_400(worker: tuple[HttpWorker, str]) -> None:
    _, url = worker
    body = b'{"run": "r"}'
    status, text = post(url + "/invoke", body, auth.Signer(SECRET).sign_headers(body))
    assert status == 400 and "malformed" in text


def test_excess_invocations_are_answered_429(redis_url: str) -> None:
    server = HttpWorker(WorkerSettings(store=redis_url, secret=SECRET, concurrency=1))
    STARTED.clear()
    GATE.clear()
    with serving(server) as url, dask.config.set({"daskless.auth.secret": SECRET}), \
            daskless.Engine(store=redis_url, invoker=url) as engine:
        pool = ThreadPoolExecutor(1)
        future = pool.submit(engine.get, {"x": (wait_at_gate, 1)}, "x")
        assert STARTED.wait(30)
        body = Invocation("other-run", 0, (0,)).to_bytes()
        status, text = post(url + "/invoke", body, auth.Signer(SECRET).sign_headers(body))
        GATE.set()
        assert future.result(60) == 2
        pool.shutdown()
    assert status == 429 and "already run here" in text


def test_no_secret_refuses_to_start_unless_insecure(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="--insecure"):
        HttpWorker(WorkerSettings(store=redis_url))
    server = HttpWorker(WorkerSettings(store=redis_url, insecure=True))
    with serving(server) as url, dask.config.set({"daskless.auth.insecure": True}), \
            daskless.Engine(store=redis_url, invoker=url) as engine:
        assert engine.get({"x": (sum, [1, 2])}, "x") == 3


def test_settings_never_show_the_secret() -> None:
    settings = WorkerSettings(store="redis://:pw@h:1", secret="topsecret")
    assert "topsecret" not in repr(settings) and "pw" not in repr(settings)
    assert WorkerSettings.from_json(settings.to_json()) == settings
