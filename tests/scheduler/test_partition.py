"""Tests of partitioning: invariants, local tasks, quality on known shapes."""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Mapping

import pytest

from daskless.scheduler.dag import DAG, Key
from daskless.scheduler.errors import CycleError
from daskless.scheduler.partition import BALANCE_SLACK, Partitioning, partition
from tests.scheduler.graphs import dag_of, local_tasks, topological_order


def random_dag(rng: random.Random, n: int, n_external: int = 0) -> DAG:
    """Acyclic graph in shuffled insertion order, with external inputs."""
    external = [("ext", i) for i in range(n_external)]
    deps: dict[Hashable, list[Hashable]] = {}
    for i in range(n):
        window = range(max(0, i - rng.choice((3, 20, 200))), i)
        deps[i] = rng.sample(window, min(len(window), rng.randint(0, 4)))
        if external and rng.random() < 0.1:
            deps[i].append(rng.choice(external))
    keys = list(deps)
    rng.shuffle(keys)
    return dag_of({k: deps[k] for k in keys}, external=external)


def tree_reduction(leaves: int) -> DAG:
    deps: dict[Hashable, tuple[Hashable, ...]] = {
        ("leaf", i): () for i in range(leaves)
    }
    level: list[Hashable] = [("leaf", i) for i in range(leaves)]
    depth = 0
    while len(level) > 1:
        depth += 1
        above: list[Hashable] = []
        for i in range(0, len(level), 2):
            key = ("sum", depth, i // 2)
            deps[key] = (level[i], level[i + 1])
            above.append(key)
        level = above
    return dag_of(deps)


def chain(n: int) -> DAG:
    return dag_of({i: (() if i == 0 else (i - 1,)) for i in range(n)})


def reference_cross_edges(dag: DAG, assignment: Mapping[Key, int]) -> int:
    return sum(
        1
        for key, node in dag.nodes.items()
        for d in node.dependencies
        if d in dag and assignment[d] != assignment[key]
    )


def check_invariants(dag: DAG, result: Partitioning, parallelism: int) -> None:
    parts = result.parts
    members = [k for part in parts for k in part]
    assert sorted(map(repr, members)) == sorted(map(repr, dag))
    assert len(members) == len(dag)
    assert all(parts)
    assert len(parts) <= max(1, min(parallelism, len(dag)))
    for index, part in enumerate(parts):
        seen: set[Key] = set()
        for key in part:
            assert result.assignment[key] == index
            for dep in dag[key].dependencies:
                if dep in dag:
                    # Topological inside a part; parts only use earlier parts.
                    assert result.assignment[dep] <= index
                    if result.assignment[dep] == index:
                        assert dep in seen
            seen.add(key)
    assert len(result.assignment) == len(dag)
    assert result.local == local_tasks(dag, result.assignment)
    assert result.cross_edges(dag) == reference_cross_edges(dag, result.assignment)


def part_weights(result: Partitioning, weights: Mapping[Key, float]) -> list[float]:
    return [sum(weights.get(k, 1.0) for k in part) for part in result.parts]


def test_empty_graph_has_no_parts() -> None:
    result = partition(DAG({}), 8)
    assert result.parts == ()
    assert dict(result.assignment) == {}
    assert result.local == frozenset()
    assert result.cross_edges(DAG({})) == 0


@pytest.mark.parametrize(
    ("parallelism", "expected"), [(-3, 1), (0, 1), (1, 1), (3, 3), (50, 5)]
)
def test_number_of_parts_is_clamped(parallelism: int, expected: int) -> None:
    dag = chain(5)
    result = partition(dag, parallelism)
    assert len(result.parts) == expected
    check_invariants(dag, result, parallelism)


def test_single_part_makes_everything_local() -> None:
    dag = random_dag(random.Random(7), 300, n_external=5)
    result = partition(dag, 1)
    assert result.parts == (tuple(topological_order(dag)),)
    assert result.local == frozenset(dag)
    assert result.cross_edges(dag) == 0


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("parallelism", [2, 3, 7, 16])
def test_invariants_on_random_graphs(seed: int, parallelism: int) -> None:
    rng = random.Random(seed * 100 + parallelism)
    n = rng.randint(1, 400)
    dag = random_dag(rng, n, n_external=rng.randint(0, 5))
    result = partition(dag, parallelism)
    check_invariants(dag, result, parallelism)
    # With equal weights every requested part exists and is balanced.
    assert len(result.parts) == min(parallelism, n)
    ideal = n / len(result.parts)
    slack = 2 * max(BALANCE_SLACK * ideal, 0.5)
    for part in result.parts:
        assert abs(len(part) - ideal) <= slack + 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_balance_with_random_weights(seed: int) -> None:
    rng = random.Random(seed)
    dag = random_dag(rng, 1000)
    weights = {k: rng.uniform(0.5, 2.0) for k in dag}
    result = partition(dag, 8, weights)
    check_invariants(dag, result, 8)
    assert len(result.parts) == 8
    ideal = sum(weights.values()) / 8
    slack = 2 * max(BALANCE_SLACK * ideal, max(weights.values()) / 2)
    for weight in part_weights(result, weights):
        assert abs(weight - ideal) <= slack + 1e-6


def test_heavy_task_gets_a_part_of_its_own() -> None:
    dag = chain(100)
    weights = {50: 1000.0}
    result = partition(dag, 3, weights)
    check_invariants(dag, result, 3)
    assert (50,) in result.parts


def test_missing_weights_count_as_one_and_zero_weights_fall_back() -> None:
    dag = chain(12)
    assert partition(dag, 4, {}).parts == partition(dag, 4).parts
    assert partition(dag, 4, {k: 0.0 for k in dag}).parts == partition(dag, 4).parts


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_invalid_weights_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="weights"):
        partition(chain(10), 2, {3: bad})


def test_cyclic_graph_raises_cycle_error() -> None:
    dag = dag_of({"a": ("b",), "b": ("a",), "c": ()})
    with pytest.raises(CycleError):
        partition(dag, 2)


def test_partition_is_deterministic() -> None:
    rng = random.Random(3)
    dag = random_dag(rng, 500)
    again = DAG(dag.nodes, dag.external)
    first, second = partition(dag, 6), partition(again, 6)
    assert first.parts == second.parts
    assert first.local == second.local


@pytest.mark.parametrize("parallelism", [2, 4, 8, 16])
def test_tree_reduction_is_cut_into_whole_subtrees(parallelism: int) -> None:
    dag = tree_reduction(4096)
    result = partition(dag, parallelism)
    check_invariants(dag, result, parallelism)
    assert len(result.parts) == parallelism
    # One edge from each subtree's root to the part holding the top levels.
    assert result.cross_edges(dag) == parallelism - 1
    assert len(dag) - len(result.local) == parallelism - 1
    sizes = [len(part) for part in result.parts]
    assert max(sizes) - min(sizes) <= parallelism


@pytest.mark.parametrize("parallelism", [3, 5, 6, 12])
def test_tree_reduction_with_uneven_parallelism(parallelism: int) -> None:
    dag = tree_reduction(1024)
    result = partition(dag, parallelism)
    check_invariants(dag, result, parallelism)
    assert result.cross_edges(dag) <= 3 * parallelism
    assert len(dag) - len(result.local) <= 5 * parallelism


@pytest.mark.parametrize("parallelism", [2, 3, 8, 100])
def test_chain_has_one_cross_edge_per_boundary(parallelism: int) -> None:
    n = 10_000
    dag = chain(n)
    result = partition(dag, parallelism)
    check_invariants(dag, result, parallelism)
    assert result.cross_edges(dag) == parallelism - 1
    sizes = [len(p) for p in result.parts]
    assert max(sizes) - min(sizes) <= 1
    # Everything after the first boundary waits on another part.
    assert result.local == frozenset(result.parts[0])
    assert result.parts[0] == tuple(range(len(result.parts[0])))


def test_fan_out_fan_in() -> None:
    width = 2000
    deps: dict[Hashable, tuple[Hashable, ...]] = {"src": ()}
    deps.update({("mid", i): ("src",) for i in range(width)})
    deps["sink"] = tuple(("mid", i) for i in range(width))
    dag = dag_of(deps)
    result = partition(dag, 4)
    check_invariants(dag, result, 4)
    assert len(result.parts) == 4
    assert result.assignment["src"] == 0
    # Only the first part can run in memory: the others wait for "src".
    assert len(result.local) == len(result.parts[0])


def test_the_definition_of_local_tasks_on_a_hand_worked_graph() -> None:
    dag = dag_of(
        {
            "a": (),
            "b": ("a",),
            "c": ("b",),
            "d": ("c",),
            "e": ("x",),
            "f": ("e", "d"),
            "g": ("a", "x"),
        },
        external=["x"],
    )
    assignment: dict[Key, int] = {
        "a": 0,
        "b": 0,
        "c": 1,
        "d": 1,
        "e": 1,
        "f": 1,
        "g": 0,
    }
    # c waits for b (part 0), so d and f wait too; e only needs external x.
    assert local_tasks(dag, assignment) == {"a", "b", "e", "g"}



# -- following single inputs -------------------------------------------------------------------


def _selector_graph(blocks: int) -> DAG:
    """Per block: a source, a producer with two single-input selectors, a consumer of both."""
    deps: dict[str, list[str]] = {}
    for i in range(blocks):
        deps[f"src{i}"] = []
        deps[f"qr{i}"] = [f"src{i}"]
        deps[f"q{i}"] = [f"qr{i}"]
        deps[f"r{i}"] = [f"qr{i}"]
    deps["stack"] = [f"r{i}" for i in range(blocks)]
    for i in range(blocks):
        deps[f"u{i}"] = [f"q{i}", "stack"]
    deps["out"] = [f"u{i}" for i in range(blocks)]
    return dag_of(deps)


def test_single_input_tasks_follow_their_producer() -> None:
    dag = _selector_graph(20)
    plain = partition(dag, 4)
    follow = partition(dag, 4, follow_single_input=True)
    for i in range(20):
        assert follow.assignment[f"q{i}"] == follow.assignment[f"qr{i}"]
        assert follow.assignment[f"r{i}"] == follow.assignment[f"qr{i}"]
    assert follow.cross_edges(dag) < plain.cross_edges(dag)
    assert sorted(k for p in follow.parts for k in p) == sorted(dag)
    for i, part in enumerate(follow.parts):
        assert part and all(follow.assignment[k] == i for k in part)
        assert list(part) == [k for k in topological_order(dag) if k in set(part)]


def test_fan_out_dependents_do_not_follow() -> None:
    deps: dict[str, list[str]] = {"s": []}
    deps.update({f"m{i}": ["s"] for i in range(100)})
    deps["sink"] = [f"m{i}" for i in range(100)]
    follow = partition(dag_of(deps), 4, follow_single_input=True)
    assert len(follow.parts) == 4
    assert len({follow.assignment[f"m{i}"] for i in range(100)}) == 4
