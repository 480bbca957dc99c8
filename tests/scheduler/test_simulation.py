"""Tests of the plan simulator: the engine's execution model, computed without running it."""

from __future__ import annotations

import itertools
import random

import pytest

from daskless.scheduler.simulation import (
    Link,
    Scenario,
    SimGraph,
    billed_gb_s,
    percentile,
    sample_makespans,
    simulate,
)


def test_a_chain_in_one_sub_dag_is_its_start_plus_its_tasks() -> None:
    graph = SimGraph(deps=[(), (0,), (1,)], partition=[0, 0, 0], output_bytes=[8, 8, 8])
    out = simulate(graph, Scenario([1.0, 2.0, 3.0], start_s=[0.5]), sizes_mb=[2048])
    assert out.makespan_s == pytest.approx(6.5)
    assert out.critical_path == (0, 1, 2)
    assert out.busy_s == (6.0,) and out.billed_s == (pytest.approx(6.5),)
    assert out.cost_gb_s == pytest.approx(13.0)  # 6.5 s at 2 GB


def test_an_input_from_another_sub_dag_is_transferred_and_starts_an_invocation() -> None:
    graph = SimGraph(deps=[(), (0,)], partition=[0, 1], output_bytes=[1000, 8])
    link = Link(latency_s=0.01, bandwidth_bps=10_000)
    out = simulate(graph, Scenario([1.0, 1.0], start_s=[0.0, 0.2]), [1024, 1024], link)
    # Task 1 is ready at 1 + 0.01 + 0.1; its invocation is made then and starts 0.2 later.
    assert out.starts[1] == pytest.approx(1.31)
    assert out.makespan_s == pytest.approx(2.31)
    assert out.billed_s == (pytest.approx(1.0), pytest.approx(1.2))
    assert out.critical_path == (0, 1)


def test_a_worker_runs_one_task_at_a_time_earliest_ready_first() -> None:
    # Two independent tasks and a sum in one sub-DAG: they queue; the sum waits for both.
    graph = SimGraph(deps=[(), (), (0, 1)], partition=[0, 0, 0], output_bytes=[8, 8, 8])
    out = simulate(graph, Scenario([2.0, 1.0, 0.5], [0.0]), [1024])
    assert (out.starts[0], out.starts[1], out.starts[2]) == (0.0, 2.0, 3.0)
    assert out.critical_path == (0, 1, 2)


def test_parallel_sub_dags_overlap_and_the_slowest_branch_is_critical() -> None:
    graph = SimGraph(deps=[(), (), (0, 1)], partition=[0, 1, 2], output_bytes=[8, 8, 8])
    out = simulate(graph, Scenario([1.0, 3.0, 1.0], [0.1, 0.1, 0.1]), [1024] * 3)
    assert out.makespan_s == pytest.approx(3.1 + 0.1 + 1.0)
    assert out.critical_path == (1, 2)


def test_billing_rounds_up_to_the_millisecond() -> None:
    assert billed_gb_s(0.003, 1024) == pytest.approx(0.003)
    assert billed_gb_s(0.0031, 1024) == pytest.approx(0.004)
    assert billed_gb_s(1.0, 1769) == pytest.approx(1769 / 1024)
    assert billed_gb_s(0.0, 1024) == 0.0


def test_a_percentile_of_the_run_is_not_a_sum_of_task_percentiles() -> None:
    # Ten tasks in a row, each 1 s or 2 s with even odds: each task's p90 is 2 s, so summing
    # them says 20 s; the run's p90 is far below, as the simulated makespans show.
    n = 10
    graph = SimGraph(deps=[()] + [(i,) for i in range(n - 1)], partition=[0] * n,
                     output_bytes=[8] * n)

    def draw(rng: random.Random) -> Scenario:
        return Scenario([rng.choice((1.0, 2.0)) for _ in range(n)], [0.0])

    makespans = sample_makespans(graph, [1024], draw, draws=2000, seed=7)
    assert makespans == sorted(makespans)
    assert percentile(makespans, 50) == pytest.approx(15.0, abs=0.5)
    assert 16.0 <= percentile(makespans, 90) <= 18.0 < 10 * 2.0


def test_percentile_interpolates_and_checks_its_input() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0], 99) == 5.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_bad_plans_are_named_errors() -> None:
    with pytest.raises(ValueError, match="needs 2 partitions"):
        SimGraph(deps=[(), (0,)], partition=[0], output_bytes=[1, 1])
    with pytest.raises(ValueError, match="cycle"):
        simulate(SimGraph([(1,), (0,)], [0, 0], [1, 1]), Scenario([1, 1], [0]), [1024])
    with pytest.raises(ValueError, match="1 durations for 2 tasks"):
        simulate(SimGraph([(), (0,)], [0, 0], [1, 1]), Scenario([1], [0]), [1024])
    with pytest.raises(ValueError, match="2 sub-DAGs"):
        simulate(SimGraph([(), (0,)], [0, 1], [1, 1]), Scenario([1, 1], [0]), [1024])


def random_plan(rng: random.Random, n: int, parts: int) -> tuple[SimGraph, Scenario]:
    deps = [tuple(sorted(rng.sample(range(i), min(i, rng.randint(0, 3))))) for i in range(n)]
    graph = SimGraph(deps, [rng.randrange(parts) for _ in range(n)],
                     [rng.uniform(0, 1e6) for _ in range(n)])
    return graph, Scenario([rng.uniform(0.01, 1) for _ in range(n)],
                           [rng.uniform(0, 0.5) for _ in range(parts)])


@pytest.mark.parametrize("seed", range(20))
def test_simulated_runs_keep_the_execution_model(seed: int) -> None:
    """Random plans: inputs arrive before a task starts, a worker never runs two tasks at once,
    and the critical path is a chain of tasks each waiting for the one before."""
    print(f"seed {seed}")  # shown when it fails: replay
    rng = random.Random(seed)
    graph, scenario = random_plan(rng, n=60, parts=5)
    link = Link(latency_s=0.005, bandwidth_bps=5e7)
    out = simulate(graph, scenario, [1024] * 5, link)
    for task, deps in enumerate(graph.deps):
        for dep in deps:
            cross = graph.partition[dep] != graph.partition[task]
            arrival = out.ends[dep] + (link.seconds(graph.output_bytes[dep]) if cross else 0)
            assert out.starts[task] >= arrival - 1e-9
    for part in range(5):
        spans = sorted((out.starts[t], out.ends[t]) for t in range(60)
                       if graph.partition[t] == part)
        assert all(a[1] <= b[0] + 1e-9 for a, b in itertools.pairwise(spans))
    assert out.makespan_s == pytest.approx(max(out.ends))
    assert out.ends[out.critical_path[-1]] == pytest.approx(out.makespan_s)
    for before, after in zip(out.critical_path, out.critical_path[1:]):
        assert out.ends[before] <= out.starts[after] + 1e-9
