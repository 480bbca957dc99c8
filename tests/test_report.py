"""The performance report, the ``runs``/``report`` commands and the progress bar.

The report's HTML is parsed and its sections and figures are checked against the run's raw
metric records read straight from the store.
"""

from __future__ import annotations

import io
import itertools
import json
import pathlib
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import dask
import dask.array as da
import pytest
from dask import delayed
from dask._expr import FinalizeCompute
from dask.base import collections_to_expr
from dask.utils import key_split

import daskless
from daskless import cli
from daskless.report.data import load_run
from daskless.worker_runtime import metrics
from daskless.worker_runtime.store.redis_store import RedisStore


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def tree(leaves: int) -> Any:
    xs = [delayed(inc)(i) for i in range(leaves)]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
    return xs[0]


class Page(HTMLParser):
    """Collects sections, task shapes and the embedded run data of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.bars: list[dict[str, str]] = []
        self.nodes: list[dict[str, str]] = []
        self.critical: list[int] = []
        self.urls: list[str] = []
        self.data: list[dict[str, Any]] = []
        self._in_data = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.urls += [v for k, v in a.items() if k in ("src", "href")]
        if tag == "section":
            self.sections.append(a["id"].rsplit("-", 1)[0])
        elif tag == "rect" and a.get("class") == "task":
            self.bars.append(a)
        elif tag == "circle" and a.get("class") == "node":
            self.nodes.append(a)
        elif tag == "p" and a.get("class") == "critical-path":
            self.critical = [int(t) for t in a["data-tasks"].split(",")]
        self._in_data = tag == "script" and a.get("class") == "run-data"

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data.append(json.loads(data))
            self._in_data = False


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    store = RedisStore(redis_url)
    yield store
    store.close()


def test_report_sections_and_figures_match_the_run_events(
    redis_url: str, store: RedisStore, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "report.html"
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine, \
            daskless.performance_report(path) as report:
        (total,) = dask.compute(tree(64), scheduler=engine.get)
    assert total == sum(range(1, 65))
    (run,) = report.metrics
    _, compact = store.read_metrics(run.run_id, "0", timeout_s=0)
    records = list(metrics.expand(compact))
    plan = next(r[1] for r in records if r[0] == "run")
    prefixes = [key_split(k) for k in plan["keys"]]
    workers = {r[1]: r[2] for r in records if r[0] == "inv"}
    tasks = {r[2]: r for r in records if r[0] == "task"}
    assert len(tasks) == len(plan["keys"]) == len(plan["deps"]) == 127

    page = Page()
    page.feed(path.read_text())
    assert page.sections == ["timings", "task-stream", "dag", "transfers", "prefixes", "workers",
                             "errors"]
    assert page.urls == []  # self-contained: nothing is loaded from elsewhere
    assert {int(b["data-task"]): b["data-worker"] for b in page.bars} == {
        task_id: workers[r[1]] for task_id, r in tasks.items()}
    assert len(page.nodes) == 127
    (data,) = page.data
    assert data["run_id"] == run.run_id and data["status"] == "ok"
    assert data["recorded"] == 127
    assert data["prefixes"] == dict(Counter(prefixes[t] for t in tasks))
    assert data["workers"] == dict(Counter(workers[r[1]] for r in tasks.values()))
    downloads = [i for r in tasks.values() for i in r[5]]
    assert data["transfers"]["via store"] == {"edges": len(downloads),
                                              "bytes": sum(n for _, n, _ in downloads)}
    edges = sum(len(deps) for deps in plan["deps"])
    assert data["transfers"]["local"]["edges"] == edges - len(downloads)
    # The critical path is a chain of the DAG from a source to the final task.
    path_ids = page.critical
    assert plan["deps"][path_ids[0]] == []
    for before, after in itertools.pairwise(path_ids):
        assert before in plan["deps"][after]
    assert path_ids[-1] == plan["requested"][0]


def test_fused_array_tasks_are_named_by_key_prefix(
    redis_url: str, store: RedisStore, tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    x = (da.ones((40, 40), chunks=10) + 1).T.sum(axis=0)
    graph = FinalizeCompute(collections_to_expr([x], True)).optimize().__dask_graph__()
    # The graph really is fused: its tasks run dask's subgraph executor.
    assert any(getattr(getattr(n, "func", None), "__name__", "") == "_execute_subgraph"
               for n in graph.values())
    expected = Counter(key_split(k) for k in graph if not key_split(k).startswith("finalize"))
    path = tmp_path / "fused.html"
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine, \
            daskless.performance_report(path) as report:
        assert x.compute(scheduler=engine.get).tolist() == [80.0] * 40
    (run,) = report.metrics
    assert Counter(t.prefix for t in run.tasks) == expected
    assert "_execute_subgraph" not in expected
    page = Page()
    page.feed(path.read_text())
    assert page.data[0]["prefixes"] == dict(expected)
    assert cli.main(["runs", "--store", redis_url]) == 0
    listing = capsys.readouterr().out
    (name, count) = expected.most_common(1)[0]
    assert f"{name} {count}" in listing and "_execute_subgraph" not in listing


def test_runs_and_report_commands_read_stored_metrics(
    redis_url: str, store: RedisStore, tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with daskless.Engine(store=redis_url, invoker="threads", workers=2) as engine:
        dask.compute(tree(16), scheduler=engine.get)
        assert engine.last_run is not None
        run_id = engine.last_run.run_id
    assert cli.main(["runs", "--store", redis_url]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["run", "started", "(UTC)"]
    assert listing[1].split()[0] == run_id and "ok" in listing[1].split()
    out = tmp_path / "r.html"
    assert cli.main(["report", run_id[:8], "-o", str(out), "--store", redis_url]) == 0
    assert "31/31 tasks recorded" in capsys.readouterr().out
    assert f'data-run="{run_id}"' in out.read_text()
    assert cli.main(["report", "nope", "--store", redis_url]) == 2
    assert "has no stored metrics" in capsys.readouterr().err
    assert cli.main(["runs", "--store", "embedded"]) == 2
    assert "need a Redis store" in capsys.readouterr().err
    assert load_run(store, run_id).missing_tasks == []


def test_progress_bar_counts_every_task() -> None:
    stream = io.StringIO()
    with daskless.Engine(store="memory", invoker="threads", workers=2) as engine:
        with daskless.progress(file=stream, ascii=True):
            dask.compute(tree(16), scheduler=engine.get)
        assert "31/31" in stream.getvalue()
        with dask.config.set({"daskless.progress": True}):
            # The configured bar writes to stderr; here it must simply not break the compute.
            assert dask.compute(tree(4), scheduler=engine.get) == (10,)


class Flaky:
    """Fails on its first ``failures`` calls in each process (attempts of one worker), then
    returns ``x + 1``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, x: int) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise ZeroDivisionError(f"attempt {self.calls} of {x} failed")
        return x + 1


def test_a_failed_run_shows_its_errors_in_the_report_and_the_run_list(
    redis_url: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "failed.html"
    graph = {"x": 1, "flaky": (Flaky(5), "x"), "y": (inc, "flaky")}
    with daskless.Engine(store=redis_url, invoker="threads", workers=2) as engine, \
            daskless.performance_report(path) as report, \
            pytest.raises(ZeroDivisionError, match="attempt 3 of 1 failed"):
        engine.get(graph, "y", retries=2)
    (run,) = report.metrics
    assert [(e.key, e.type, e.attempt) for e in run.errors] == [
        ("flaky", "ZeroDivisionError", n) for n in (1, 2, 3)]
    html = path.read_text()
    page = Page()
    page.feed(html)
    assert "errors" in page.sections
    assert [(e["key"], e["attempt"]) for e in page.data[0]["errors"]] == [
        ("flaky", 1), ("flaky", 2), ("flaky", 3)]
    assert "attempt 3 of 1 failed" in html and "Traceback" in html and "__call__" in html
    assert cli.main(["runs", "--store", redis_url]) == 0
    header, line = capsys.readouterr().out.splitlines()[:2]
    assert line.split()[0] == run.run_id and "ZeroDivisionError" in line
    assert line[header.index("errors"):].split()[:2] == ["3", "0"]  # errors, recoveries
