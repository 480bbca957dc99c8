"""The dashboard in a real headless Chromium (the system's ``/usr/bin/chromium``).

A computation is held open by a gated task while the page follows it live through server-sent
events; once the gate opens every task must reach "done" on the page, the replay slider must
take the run back to its start, and the run list must show the run. Screenshots are kept in the
test's folder and copied to ``tests/output/``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dask
import dask.array as da
import pytest
from dask import delayed

import daskless
from daskless.dashboard.app import BackgroundDashboard
from daskless.worker_runtime.redis_server import free_port
from daskless.worker_runtime.store.redis_store import RedisStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUTPUT = pathlib.Path(__file__).parent / "output"
GATE = threading.Event()
STARTED = threading.Event()
LEAVES = 32
SEEK = "s => { s.value = VALUE; s.dispatchEvent(new Event('input')) }"  # move the replay slider
TASKS = 2 * LEAVES - 1


def inc(x: int) -> int:
    return x + 1


def gated_inc(x: int) -> int:
    STARTED.set()
    GATE.wait(60)  # the test opens the gate once the page shows the run in progress
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def tree() -> Any:
    xs = [delayed(gated_inc if i == LEAVES // 2 else inc)(i) for i in range(LEAVES)]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
    return xs[0]


@pytest.fixture
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"the dashboard test needs Chromium at {CHROMIUM}: `make test` installs it "
                    "when the user can (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def keep(page: Any, tmp_path: pathlib.Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    OUTPUT.mkdir(exist_ok=True)
    shutil.copy(path, OUTPUT / name)


def count(page: Any, selector: str) -> int:
    return int(page.locator(selector).count())


def test_dashboard_follows_a_run_live_and_replays_it(
    redis_url: str, browser: Any, tmp_path: pathlib.Path
) -> None:
    GATE.clear()
    STARTED.clear()
    store = RedisStore(redis_url)
    engine = daskless.Engine(store=redis_url, invoker="threads", workers=3)
    results: list[Any] = []

    def compute() -> None:
        with dask.config.set({"daskless.metrics": {"strategy": "task"}}):
            results.extend(dask.compute(tree(), scheduler=engine.get))

    runner = threading.Thread(target=compute)
    try:
        with BackgroundDashboard(store, port=free_port()) as dashboard:
            runner.start()
            assert STARTED.wait(60)
            assert engine.last_run is not None
            run_id = engine.last_run.run_id
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{dashboard.url}/#run={run_id}")
            page.wait_for_function(
                f"document.querySelectorAll('#dag circle.task').length === {TASKS}")
            page.wait_for_selector("#dag circle[data-state=running]", state="attached")
            assert count(page, "#dag circle[data-state=done]") < TASKS
            assert "live" in page.inner_text("#status-line")
            keep(page, tmp_path, "dashboard-live.png")

            GATE.set()
            runner.join(60)
            assert results == [sum(range(1, LEAVES + 1))]
            page.wait_for_function(
                f"document.querySelectorAll('#dag circle[data-state=done]').length === {TASKS}")
            page.wait_for_selector("#replay:not([hidden])", state="attached")
            assert page.inner_text("#progress-text") == f"{TASKS} / {TASKS} tasks done"
            assert "finished: status ok" in page.inner_text("#status-line")
            workers = page.inner_text("#workers")
            assert "threads/daskless-worker" in workers
            keep(page, tmp_path, "dashboard-run.png")

            page.click("button[data-colour=worker]")
            page.eval_on_selector("#slider", SEEK.replace("VALUE", "0"))
            page.wait_for_function(
                "document.querySelectorAll('#dag circle[data-state=done]').length === 0")
            page.eval_on_selector("#slider", SEEK.replace("VALUE", "500"))
            keep(page, tmp_path, "dashboard-replay.png")

            page.goto(f"{dashboard.url}/")
            page.wait_for_selector(f"#runs a[href='#run={run_id}']")
            assert f"{TASKS} / {TASKS}" in page.inner_text("#runs")
            keep(page, tmp_path, "dashboard-runs.png")
            with urllib.request.urlopen(f"{dashboard.url}/api/runs") as reply:
                listed = json.load(reply)
            assert [r["run_id"] for r in listed] == [run_id]
            page.close()
    finally:
        GATE.set()
        if runner.is_alive():
            runner.join(60)
        engine.close()
        store.close()


def test_dashboard_names_fused_array_tasks_by_key_prefix(
    redis_url: str, browser: Any
) -> None:
    x = (da.ones((40, 40), chunks=10) + 1).T.sum(axis=0)
    store = RedisStore(redis_url)
    try:
        with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine, \
                BackgroundDashboard(store, port=free_port()) as dashboard:
            assert x.compute(scheduler=engine.get).tolist() == [80.0] * 40
            assert engine.last_run is not None
            run_id, tasks = engine.last_run.run_id, engine.last_run.tasks - 1  # less finalize
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{dashboard.url}/#run={run_id}")
            page.wait_for_function(
                f"document.querySelectorAll('#dag circle.task').length === {tasks}")
            titles = page.eval_on_selector_all(
                "#dag circle.task", "cs => cs.map(c => c.firstChild.textContent)")
            page.close()
    finally:
        store.close()
    # "<key> (<prefix>)": fused blocks run dask's subgraph executor but keep their names.
    names = Counter(t.split("\n")[0].rsplit(" (", 1)[1].rstrip(")") for t in titles)
    assert names == {"sum": 16, "sum-aggregate": 4}


def broken(x: int) -> int:
    raise KeyError(f"no such thing as {x}")


def test_dashboard_shows_a_failed_task_and_its_exception(redis_url: str, browser: Any) -> None:
    store = RedisStore(redis_url)
    try:
        with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine, \
                BackgroundDashboard(store, port=free_port()) as dashboard:
            with pytest.raises(KeyError):
                engine.get({"x": 1, "bad": (broken, "x"), "y": (inc, "bad")}, "y", retries=1)
            assert engine.last_run is not None
            run_id = engine.last_run.run_id
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{dashboard.url}/#run={run_id}")
            page.wait_for_selector("#dag circle[data-state=erred]", state="attached")
            title = page.eval_on_selector("#dag circle[data-state=erred]",
                                          "c => c.firstChild.textContent")
            status = page.inner_text("#status-line")
            page.close()
    finally:
        store.close()
    assert title.startswith("bad (bad)\nerred")
    assert "KeyError: 'no such thing as 1' (attempt 2)" in title
    assert "KeyError" in status


def test_dashboard_assets_are_local(redis_url: str) -> None:
    """No page or script refers to anything outside the dashboard itself."""
    static = pathlib.Path(daskless.__file__).parent / "static" / "dashboard"
    for path in static.iterdir():
        text = path.read_text()
        for scheme in ("http://", "https://", "//cdn"):
            assert scheme not in text.replace("http://www.w3.org/2000/svg", ""), path


def test_dashboard_command_serves_stored_runs(redis_url: str) -> None:
    with daskless.Engine(store=redis_url, invoker="threads", workers=2) as engine:
        dask.compute(delayed(inc)(1), scheduler=engine.get)
        assert engine.last_run is not None
        run_id = engine.last_run.run_id
    port = free_port()
    command = [sys.executable, "-m", "daskless.cli", "dashboard", "--store", redis_url,
               "--port", str(port)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            assert f"http://127.0.0.1:{port}/" in server.stdout.readline()  # printed when ready
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs") as reply:
                assert [r["run_id"] for r in json.load(reply)] == [run_id]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as reply:
                assert b"daskless dashboard" in reply.read()
        finally:
            server.terminate()
