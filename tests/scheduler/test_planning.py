"""The planner's decisions on simulated plans: targets, planners, yardsticks, no history."""

from __future__ import annotations

import random

import pytest

from daskless.scheduler.history import History, Observation, Predictor
from daskless.scheduler.planning import (
    PLANNERS,
    SEED_UNIFORM_MB,
    Decision,
    Target,
    parse_sla,
    plan_sizes,
    predict_tasks,
)
from daskless.scheduler.simulation import SimGraph

LADDER = (512, 1024, 1769, 3538)
# source -> (heavy branch: 4 tasks that use 2 CPUs, light branch: 4 one-CPU tasks) -> join
DEPS: list[list[int]] = [[], [0], [1], [2], [3], [0], [5], [6], [7], [4, 8]]
PREFIXES = ["load"] + ["blas"] * 4 + ["py"] * 4 + ["join"]
PARTITION = [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
WORK = {"load": (0.05, 1.0), "blas": (1.0, 2.0), "py": (0.3, 1.0), "join": (0.05, 1.0)}


def history(seed: int = 0, spread: float = 0.05) -> History:
    """Runs of the fork-join at three sizes: 'blas' uses two CPUs, the others one."""
    rng = random.Random(seed)
    observed = []
    for size in (1024, 1769, 3538):
        for prefix, (cpu_s, parallelism) in WORK.items():
            for _ in range(6):
                seconds = 0.005 + cpu_s / min(size / 1769, parallelism)
                observed.append(Observation(prefix, seconds * rng.uniform(1 - spread, 1 + spread),
                                            1e5, size, 1e5))
    folded = History()
    folded.add_run("r", observed, [(1e5, 0.002)] * 5, 1.0, 0.05)
    return folded


def decide(planner: str, target: Target | None = None, predictor: Predictor | None = None,
           default_mb: int = 1769) -> Decision:
    target = target or Target()
    predictions = predict_tasks(DEPS, PREFIXES, predictor or Predictor(history()))
    graph = SimGraph(DEPS, PARTITION, predictions.output_bytes)
    return plan_sizes(graph, predictions, planner, target, default_mb, LADDER)


@pytest.mark.parametrize("text,expected", [
    ("average", Target()), ("p50", Target(50.0)), ("P95", Target(95.0)), ("p99", Target(99.0)),
])
def test_sla_names_are_read(text: str, expected: Target) -> None:
    assert parse_sla(text) == expected
    assert parse_sla(text, 30.0).bound_s == 30.0


@pytest.mark.parametrize("text", ["p100", "p49", "p5", "fast", "", "95"])
def test_bad_sla_names_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="average"):
        parse_sla(text)


@pytest.mark.parametrize("bound", [0, -1.0, "soon"])
def test_bad_bounds_are_refused(bound: object) -> None:
    with pytest.raises(ValueError, match="positive"):
        parse_sla("p95", bound)  # type: ignore[arg-type]


@pytest.mark.parametrize("planner", PLANNERS)
def test_without_history_every_planner_plans_as_today(planner: str) -> None:
    decision = decide(planner, predictor=Predictor())
    assert decision.sizes == (1769,) * 4
    assert decision.predicted_makespan_s is None and decision.cost_gb_s is None


def test_wukong_keeps_one_size_but_predicts() -> None:
    decision = decide("wukong")
    assert decision.sizes == (1769,) * 4
    assert decision.predicted_makespan_s is not None and decision.predicted_makespan_s > 0
    assert decision.critical_path[0] == 0 and decision.critical_path[-1] == 9


def test_non_uniform_upgrades_the_critical_path_and_saves_elsewhere() -> None:
    wukong = decide("wukong")
    decision = decide("non-uniform")
    # The heavy branch is the critical path; two CPUs halve it.
    assert decision.sizes[1] == 3538
    assert decision.sizes[2] < 1769  # the light branch has time to spare
    assert decision.predicted_makespan_s is not None and wukong.predicted_makespan_s is not None
    assert decision.predicted_makespan_s <= wukong.predicted_makespan_s * 1.001


def test_a_bound_out_of_reach_gets_the_fastest_plan() -> None:
    decision = decide("non-uniform", Target(None, bound_s=0.01))
    assert decision.sizes[1] == 3538


def test_a_loose_bound_gets_the_cheapest_plan() -> None:
    tight, loose = decide("uniform"), decide("uniform", Target(None, bound_s=100.0))
    assert loose.cost_gb_s is not None and tight.cost_gb_s is not None
    assert loose.cost_gb_s <= tight.cost_gb_s
    assert len(set(loose.sizes)) == 1


def test_a_percentile_target_predicts_at_least_the_median() -> None:
    predictor = Predictor(history(spread=0.3))
    p95 = decide("non-uniform", Target(95.0), predictor)
    assert p95.predicted_p50_s is not None and p95.predicted_makespan_s is not None
    assert p95.predicted_makespan_s >= p95.predicted_p50_s


def test_the_yardsticks_plan_as_their_rules_say() -> None:
    assert decide("seed-uniform").sizes == (SEED_UNIFORM_MB,) * 4
    seed = decide("seed-non-uniform")
    assert seed.sizes[1] == 3538  # the fastest size for the critical path, kept
    oracle, ours = decide("oracle"), decide("non-uniform")
    assert oracle.cost_gb_s is not None and ours.cost_gb_s is not None
    assert oracle.cost_gb_s <= ours.cost_gb_s * 1.001


def test_unknown_planners_are_refused() -> None:
    with pytest.raises(ValueError, match="non-uniform"):
        decide("fastest")


def test_predicted_sizes_flow_from_producers_to_consumers() -> None:
    predictions = predict_tasks(DEPS, PREFIXES, Predictor(history()))
    assert predictions.input_bytes[0] == 0
    assert predictions.input_bytes[9] == pytest.approx(2e5)  # two inputs of 1e5 each
    assert predictions.output_bytes[9] == pytest.approx(1e5)


def with_starts(starts: list[tuple[float, float, float]]) -> Predictor:
    """The fork-join's history with runs of ``(worker MB, share of cold invocations,
    overhead)``."""
    folded = history()
    for i, record in enumerate(starts):
        folded.add_run(f"s{i}", [], [], None, record[2], starts=record)
    return Predictor(folded)


WARM, COLD = (1769, 0.0, 0.05), (1769, 0.5, 0.55)


def test_cold_starts_as_frequent_as_recent_runs_had_them_lengthen_the_prediction() -> None:
    warm = decide("uniform", predictor=with_starts([WARM] * 5))
    # The last five runs at 1769 MB all met a cold start, which took 0.5 s more.
    cold = decide("uniform", predictor=with_starts([WARM] * 5 + [COLD] * 5))
    assert warm.predicted_makespan_s is not None and cold.predicted_makespan_s is not None
    assert cold.predicted_makespan_s - warm.predicted_makespan_s == pytest.approx(0.5, rel=0.1)
    # Old runs count less than recent ones: a platform that has warmed up stays warm.
    warmed = decide("uniform", predictor=with_starts([COLD] * 5 + [WARM] * 5))
    assert warmed.predicted_makespan_s == pytest.approx(warm.predicted_makespan_s, rel=0.02)


def test_a_cold_start_takes_longer_at_a_smaller_share() -> None:
    predictor = with_starts([WARM] * 3 + [COLD])
    assert predictor.cold_start(1769) == (0.25, pytest.approx(0.5))
    assert predictor.cold_start(884.5) == (0.25, pytest.approx(1.0))  # half a vCPU
    assert with_starts([WARM] * 3).cold_start(1769) == (0.0, 0.0)  # never met one
    assert predictor.overhead_s(1769) == pytest.approx(0.05)  # the warm runs' overhead


def test_a_run_far_outside_the_overheads_is_left_out_of_the_percentiles() -> None:
    folded = history()
    for i, overhead in enumerate([0.05, 0.06, 0.04, 0.05, 8.0]):
        folded.add_run(f"o{i}", [], [], 1.0, overhead)
    assert max(Predictor(folded).overhead_spread()) < 1.0
    p95 = decide("uniform", Target(95.0), Predictor(folded))
    assert p95.predicted_makespan_s is not None and p95.predicted_makespan_s < 8.0


def test_a_node_unlike_its_prefix_keeps_its_own_time_added_not_multiplied() -> None:
    # Three "copy" tasks: two take 10 ms, the third (node 2) always 100 ms.
    rng = random.Random(5)
    observed = [Observation("copy", (0.1 if node == 2 else 0.01) * rng.uniform(0.98, 1.02),
                            1e3, 1769, 1e3, node) for _ in range(3) for node in range(3)]
    folded = History()
    folded.add_run("r", observed, [], 1.0, 0.0)
    predictor = Predictor(folded)
    predictions = predict_tasks([[], [], []], ["copy"] * 3, predictor, [0, 1, 2])
    assert predictions.factors[0] is None and predictions.factors[2] is not None
    assert predictions.typical(2, 1769) == pytest.approx(0.1, rel=0.05)
    # Its mean is the prefix's mean plus what the node takes beyond the prefix's typical task.
    prefix_mean = predictor.duration("copy", 1e3, 1769)
    shift = predictions.typical(2, 1769) - predictor.typical("copy", 1e3, 1769)
    assert predictions.duration(2, 1769) == pytest.approx(prefix_mean + shift)
