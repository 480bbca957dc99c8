"""What the planner learns from past runs: structure keys, folded history, predictions."""

from __future__ import annotations

import math
import random

import pytest

from daskless.scheduler.history import (
    MAX_SAMPLES,
    Averages,
    History,
    Observation,
    Predictor,
    structure_key,
)
from daskless.scheduler.prediction import DEFAULT_DURATION_S, bandwidth_time, vcpus

TREE_PREFIXES = ["load"] * 4 + ["add"] * 2 + ["total"]
TREE_DEPS: list[list[int]] = [[], [], [], [], [0, 1], [2, 3], [4, 5]]


def renumbered(prefixes: list[str], deps: list[list[int]],
               seed: int) -> tuple[list[str], list[list[int]]]:
    """The same graph with its tasks in another order (as a rebuild with new keys gives)."""
    order = list(range(len(prefixes)))
    random.Random(seed).shuffle(order)
    new_id = {old: new for new, old in enumerate(order)}
    return ([prefixes[old] for old in order],
            [sorted(new_id[d] for d in deps[old]) for old in order])


def test_a_rebuilt_graph_has_the_same_structure_key() -> None:
    key = structure_key(TREE_PREFIXES, TREE_DEPS, "processes")
    for seed in range(5):
        prefixes, deps = renumbered(TREE_PREFIXES, TREE_DEPS, seed)
        assert structure_key(prefixes, deps, "processes") == key, f"seed {seed}"


def test_other_shapes_prefixes_or_backends_have_other_keys() -> None:
    key = structure_key(TREE_PREFIXES, TREE_DEPS, "processes")
    rewired = [[], [], [], [], [0, 1, 2], [3], [4, 5]]
    renamed = ["load"] * 4 + ["mul"] * 2 + ["total"]
    assert structure_key(TREE_PREFIXES, rewired, "processes") != key
    assert structure_key(renamed, TREE_DEPS, "processes") != key
    assert structure_key(TREE_PREFIXES, TREE_DEPS, "http://") != key


def observations(prefix: str, cpu_s: float, fixed_s: float, sizes: list[int], n: int,
                 seed: int, noise: float = 0.05) -> list[Observation]:
    """Tasks of a CPU-bound prefix: fixed + cpu / vCPUs, with a little multiplicative noise."""
    rng = random.Random(seed)
    return [Observation(prefix, (fixed_s + cpu_s * 1769 / m) * rng.uniform(1 - noise, 1 + noise),
                        1000.0, m, 800.0)
            for m in sizes for _ in range(n)]


def test_a_run_is_folded_in_once_and_history_survives_json() -> None:
    history = History()
    observed = observations("inc", 0.1, 0.01, [1024], 10, seed=1)
    history.add_run("r1", observed, [(1e6, 0.002)] * 4, 1.5, 0.2, cpu_period_s=0.01)
    history.add_run("r1", observed, [(1e6, 0.002)] * 4, 1.5, 0.2)
    assert len(history.samples["inc"]) == 10
    assert history.runs == ["r1"] and history.makespans_s == [1.5]
    assert history.cpu_period_s == 0.01
    again = History.from_json(history.to_json())
    assert again == history


def test_samples_per_prefix_are_capped_keeping_the_newest() -> None:
    history = History()
    for run in range(3):
        history.add_run(f"r{run}", observations("inc", 0.1 * (run + 1), 0.0, [1769],
                                                 MAX_SAMPLES // 2 + 1, seed=run), [], None, None)
    kept = history.samples["inc"]
    assert len(kept) == MAX_SAMPLES
    assert kept[-1].seconds > 0.25  # the last run's tasks (0.3 s each) are the ones kept


def test_durations_are_predicted_at_sizes_seen_and_not_seen() -> None:
    history = History()
    history.add_run("r1", observations("mul", 0.2, 0.02, [512, 1024], 20, seed=7), [], 1.0, 0.1)
    predictor = Predictor(history)
    for size in (512, 1024, 768, 1769):  # seen, seen, between, beyond
        truth = 0.02 + 0.2 * 1769 / size
        predicted = predictor.duration("mul", 1000.0, size)
        assert abs(predicted - truth) / truth < 0.05, (size, predicted, truth)
    assert predictor.output_bytes("mul", 1000.0) == pytest.approx(800.0)


def test_parallel_prefixes_are_fitted_with_the_cpus_they_use() -> None:
    # BLAS-like work that uses 2 CPUs: it speeds up from one vCPU to two.
    rng = random.Random(3)
    observed = [Observation("matmul", 1.0 / min(m / 1769, 2.0) * rng.uniform(0.97, 1.03),
                            0.0, m, 0.0) for m in (1769, 3538, 7076) for _ in range(10)]
    history = History()
    history.add_run("r", observed, [], None, None)
    model = Predictor(history).duration_model("matmul")
    assert model.parallelism == 2.0
    assert Predictor(history).duration("matmul", 0.0, 10240) == pytest.approx(0.5, rel=0.05)


def test_prefixes_without_history_fall_back_to_averages_then_to_the_default() -> None:
    averages = Averages()
    averages.add(observations("parse", 0.3, 0.0, [1769], 4, seed=2, noise=0.0))
    predictor = Predictor(History(), averages)
    assert predictor.informed
    assert predictor.duration("parse", 0.0, 1769) == pytest.approx(0.3)
    assert predictor.duration("parse", 0.0, 3538) == pytest.approx(0.3)  # one CPU's work
    assert predictor.duration("never-seen", 0.0, 1769) == DEFAULT_DURATION_S
    assert predictor.output_bytes("never-seen", 5000.0) == 5000.0  # as big as its input
    assert Averages.from_json(averages.to_json()) == averages
    assert not Predictor().informed


def test_the_link_is_fitted_on_past_fetches() -> None:
    history = History()
    transfers = [(float(b), 0.001 + b / 50e6) for b in (1e3, 1e5, 1e6, 5e6, 2e7)]
    history.add_run("r", [], transfers, None, None)
    link = Predictor(history).link()
    assert link.latency_s == pytest.approx(0.001, rel=0.05)
    assert link.bandwidth_bps == pytest.approx(50e6, rel=0.05)
    assert Predictor().link().bandwidth_bps == math.inf


def test_the_overhead_is_fitted_on_warm_runs_as_fixed_time_and_cpu_work() -> None:
    # 20 ms of the client's own, and 30 ms of CPU work in the workers beyond their tasks.
    history = History()
    for i, size in enumerate([512, 512, 1024, 1024, 1769, 1769]):
        overhead = 0.02 + 0.03 / min(size / 1769, 1.0)
        history.add_run(f"r{i}", [], [], 1.0, overhead, starts=(size, 0.0, overhead))
    # A run that met a cold start took longer: it is not what a warm run's overhead is.
    history.add_run("cold", [], [], 3.0, 2.0, starts=(1024, 0.5, 2.0))
    predictor = Predictor(history)
    assert predictor.overhead_s(768) == pytest.approx(0.02 + 0.03 * 1769 / 768, rel=1e-3)
    assert predictor.overhead_s(3538) == pytest.approx(0.05, rel=1e-3)
    assert max(abs(r) for r in predictor.overhead_spread()) < 1e-6
    assert Predictor(History()).overhead_s(1024) == 0.0


def test_a_history_with_a_cpu_period_fits_the_bandwidth_curve() -> None:
    # 3 ms tasks under a 10 ms period: within the quota at 1024 MB, a little past it at 512.
    rng = random.Random(11)
    observed = [Observation("inc", bandwidth_time(0.003, vcpus(m), 1.0, 0.01)
                            * rng.uniform(0.97, 1.03), 10.0, m, 8.0)
                for m in (512, 1024) for _ in range(10)]
    smooth, burst = History(), History()
    smooth.add_run("r", observed, [], None, None)
    burst.add_run("r", observed, [], None, None, cpu_period_s=0.01)
    for size in (256, 768):
        truth = bandwidth_time(0.003, vcpus(size), 1.0, 0.01)
        error = abs(Predictor(burst).typical("inc", 10.0, size) / truth - 1)
        assert error < 0.05, size
        assert abs(Predictor(smooth).typical("inc", 10.0, size) / truth - 1) > error, size
