"""The benchmark workflows compute the right answer through daskless, with the expected graphs.

Each workflow runs at its ``test`` size on both local daskless configurations (the in-memory
store with thread workers, and the default embedded Redis with worker processes) and is compared
with its plain numpy / pure-Python reference. Graph sizes are the ones dask hands a scheduler;
daskless must run exactly that many tasks. The runner's bookkeeping is checked on a tiny run:
records, Redis traffic, invocations, and a failing case that must not stop the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dask
import pytest
from dask.delayed import delayed

import daskless
from benchmarks import report
from benchmarks.runner import run_in_process
from benchmarks.workflows import WORKFLOWS, Case, Workflow, cases, graph_nodes
from benchmarks.workflows.python import fan_out
from benchmarks.workflows.trees import tree_delayed

# Tasks dask hands a scheduler for each workflow at its test size (dask's optimized graph,
# with its finalize step where the collection has one).
TEST_GRAPH_NODES = {
    "tree-delayed-64": 2 * 64 - 1,  # 64 leaves, 63 pairwise adds
    "tree-array-64": 64 + 63 + 1,  # 64 leaf sums, 63 pairwise sums, the array finalize
    "gemm-400": 134,
    "wordcount-0.2MB": 10,
    "image-4x64": 6 * 4 + 1,  # six steps per image, one summary
    "svd1-2000x10": 78,
    "svd2-400": 148,
    "gil-bound-4": 4 + 1,  # the tasks and their sum
    "fan-out-100": 1 + 100 + 1,  # source, branches, sum
}


@pytest.fixture(scope="module")
def memory_threads() -> Iterator[daskless.Engine]:
    with daskless.Engine(store="memory", invoker="threads") as engine:
        yield engine


@pytest.fixture(scope="module")
def embedded_processes() -> Iterator[daskless.Engine]:
    with daskless.Engine() as engine:
        yield engine


TEST_CASES = cases("test")


def test_every_workflow_has_a_test_size() -> None:
    assert sorted(c.workflow.name for c in TEST_CASES) == sorted(w.name for w in WORKFLOWS)
    assert sorted(TEST_GRAPH_NODES) == sorted(c.name for c in TEST_CASES)


@pytest.mark.parametrize("case", TEST_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("engine_name", ["memory_threads", "embedded_processes"])
def test_workflow_matches_reference_on_daskless(
    case: Case, engine_name: str, request: pytest.FixtureRequest
) -> None:
    engine: daskless.Engine = request.getfixturevalue(engine_name)
    collection = case.build()
    (result,) = dask.compute(collection, scheduler=engine.get)
    assert graph_nodes(collection) == TEST_GRAPH_NODES[case.name]
    assert engine.last_run is not None
    assert engine.last_run.tasks == TEST_GRAPH_NODES[case.name]
    assert case.matches(result, case.reference())


def test_a_wrong_result_does_not_match() -> None:
    by_name = {c.name: c for c in TEST_CASES}
    case = by_name["fan-out-100"]
    assert not case.matches(case.reference() + 1, case.reference())
    words = by_name["wordcount-0.2MB"]
    top = dask.compute(words.build(), scheduler="sync")[0]
    assert not words.matches([(w, c + 1) for w, c in top], words.reference())


def test_benchmark_sizes_have_the_documented_shape() -> None:
    assert graph_nodes(tree_delayed(1024)) == 2 * 1024 - 1
    assert graph_nodes(fan_out(10_000)) == 10_000 + 2
    image = next(c for c in cases("full", ["image"]))
    assert graph_nodes(image.build()) == 6 * 64 + 1


def _broken(size: int) -> object:
    return delayed(_fail)(size)


def _fail(size: int) -> int:
    raise ValueError(f"broken workflow of size {size}")


def test_runner_records_every_pair_and_goes_on_after_a_failure() -> None:
    broken = Workflow("broken", _broken, lambda size: 0, lambda r, ref: r == ref,
                      lambda size: str(size), {"test": ({"size": 1},)})
    chosen = [*broken.cases("test"), *cases("test", ["tree-delayed", "fan-out"])]
    references: dict[str, object] = {}
    records = run_in_process(chosen, ["daskless", "daskless-threads", "sync"], 1, references,
                             log=lambda _: None)
    summaries = {(r.case, r.scheduler): r.summary() for r in records}
    assert len(summaries) == 3 * 3
    for scheduler in ("daskless", "daskless-threads", "sync"):
        assert "broken workflow of size 1" in summaries["broken-1", scheduler]["error"]
        for case in ("tree-delayed-64", "fan-out-100"):
            row = summaries[case, scheduler]
            assert row["error"] is None and row["runs"] == 1 and row["matched"]
            assert row["tasks"] == TEST_GRAPH_NODES[case]
            assert row["client_peak_mb"] > 0
    fan = summaries["fan-out-100", "daskless"]
    assert fan["redis_written_bytes"] > 0 and fan["redis_read_bytes"] > 0
    assert fan["invocations"] >= 1 and fan["workers_peak_mb"] > 0
    assert summaries["fan-out-100", "sync"]["invocations"] is None
    assert references["fan-out-100"] == 100 * 7 + 100 * 99 // 2


def test_report_tables_and_targets(tmp_path: Path) -> None:
    summaries = [
        {"case": "tree-delayed-64", "workflow": "tree-delayed", "scheduler": s, "tasks": 127,
         "error": None, "median_s": t, "min_s": t, "max_s": t, "per_task_us": t / 127 * 1e6,
         "matched": True, "client_peak_mb": 1.0, "workers_peak_mb": None,
         "redis_written_bytes": None, "redis_read_bytes": None, "invocations": None}
        for s, t in (("daskless", 0.5), ("threads", 1.0), ("distributed-threads", 4.0))
    ]
    (row,) = report.targets(summaries)
    assert row["ratio"] == 0.5 and row["met"] is True
    assert row["vs_distributed"] == 8.0 and row["distributed_met"] is True
    meta = {"date": "2000-01-01", "mode": "quick", "command": "python -m benchmarks run",
            "cores": 2, "python": "3", "dask": "x", "distributed": "y", "repeat": 1,
            "schedulers": ["daskless", "threads", "distributed-threads"]}
    result = {"meta": meta, "targets": [row], "results": summaries}
    text = report.write_markdown(result, tmp_path / "r", []).read_text()
    assert "| tree-delayed-64 | 0.50 | <= 1 | yes | 8.0x" in text
    assert "| tree-delayed-64 | 127 | 0.500 | 1.000 | 4.000 |" in text
