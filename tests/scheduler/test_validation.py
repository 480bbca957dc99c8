"""Tests of graph validation: missing dependencies, cycles, error types."""

from __future__ import annotations

import pickle
import random
from collections.abc import Hashable, Sequence

import pytest

from daskless.scheduler.dag import DAG, Key, Node
from daskless.scheduler.errors import (
    CycleError,
    DasklessError,
    GraphError,
    MissingDependencyError,
)
from daskless.scheduler.validation import validate
from tests.scheduler.graphs import dag_of, sinks, sources, topological_order


def assert_is_cycle(dag: DAG, cycle: Sequence[Key]) -> None:
    """Each key depends on the next, the last on the first; no repeats."""
    assert cycle
    assert len(set(cycle)) == len(cycle)
    for i, key in enumerate(cycle):
        following = cycle[(i + 1) % len(cycle)]
        assert following in dag[key].dependencies, (key, following)


def cycle_of(dag: DAG) -> tuple[Hashable, ...]:
    with pytest.raises(CycleError) as info:
        validate(dag)
    assert_is_cycle(dag, info.value.cycle)
    return info.value.cycle


def random_dag(rng: random.Random, n: int) -> dict[int, tuple[int, ...]]:
    """Node i depends on a few earlier nodes: acyclic by construction."""
    deps: dict[int, tuple[int, ...]] = {}
    for i in range(n):
        width = min(i, rng.randint(0, 3))
        deps[i] = tuple(rng.sample(range(i), width))
    return deps


def test_valid_graph_passes() -> None:
    dag = dag_of(
        {"a": (), "b": ("a", "x"), "c": ("a", "b")}, external=["x"]
    )
    validate(dag)
    assert topological_order(dag) == ["a", "b", "c"]


def test_empty_graph_is_valid() -> None:
    validate(DAG({}))


def test_self_dependency_is_a_cycle_of_length_one() -> None:
    dag = dag_of({"a": (), "b": ("a", "b"), "c": ("b",)})
    assert cycle_of(dag) == ("b",)


def test_cycle_of_length_two() -> None:
    dag = dag_of({"a": (), "b": ("a", "c"), "c": ("b",), "d": ("c",)})
    assert set(cycle_of(dag)) == {"b", "c"}


def test_long_cycle_reachable_from_a_sink() -> None:
    n = 500
    deps: dict[Hashable, tuple[Hashable, ...]] = {
        ("ring", i): (("ring", (i + 1) % n),) for i in range(n)
    }
    deps["tail"] = (("ring", 7),)
    cycle = cycle_of(dag_of(deps))
    assert len(cycle) == n


def test_cycle_without_any_sink() -> None:
    # Every node is on the cycle, so a search from the sinks sees nothing.
    dag = dag_of({"a": ("b",), "b": ("c",), "c": ("a",)})
    assert sinks(dag) == ()
    assert set(cycle_of(dag)) == {"a", "b", "c"}


def test_cycle_upstream_of_valid_part_reports_only_cycle_keys() -> None:
    dag = dag_of(
        {"s": (), "a": ("s", "c"), "b": ("a",), "c": ("b",), "out": ("c", "s")}
    )
    assert set(cycle_of(dag)) == {"a", "b", "c"}


@pytest.mark.parametrize("seed", range(20))
def test_random_graph_with_a_back_edge(seed: int) -> None:
    rng = random.Random(seed)
    deps = random_dag(rng, 200)
    validate(dag_of(deps))
    low, high = sorted(rng.sample(range(200), 2))
    # Make sure a path low -> high exists, then close it with high -> low.
    deps[high] = (*deps[high], high - 1)
    for i in range(low + 1, high):
        deps[i] = (*deps[i], i - 1)
    deps[low] = (*deps[low], high)
    cycle_of(dag_of(deps))


def test_cycle_message_names_keys_and_stays_short() -> None:
    n = 10_000
    deps = {f"task-{i}": (f"task-{(i + 1) % n}",) for i in range(n)}
    with pytest.raises(CycleError) as info:
        validate(dag_of(deps))
    assert len(info.value.cycle) == n
    message = str(info.value)
    assert "'task-0'" in message
    assert "more" in message
    assert len(message) < 500


def test_small_cycle_message_lists_the_path() -> None:
    with pytest.raises(CycleError, match=r"'a' -> 'b' -> 'a'"):
        validate(dag_of({"a": ("b",), "b": ("a",)}))


def test_missing_dependency_names_task_and_all_its_missing_keys() -> None:
    dag = dag_of(
        {"a": (), "b": ("a", "m1", "ext", "m2"), "c": ("m3",)}, external=["ext"]
    )
    with pytest.raises(MissingDependencyError) as info:
        validate(dag)
    error = info.value
    assert error.key == "b"
    assert error.missing == ("m1", "m2")
    assert "'b'" in str(error)
    assert "'m1'" in str(error)
    assert "'m2'" in str(error)


def test_missing_dependency_reported_before_cycles() -> None:
    dag = dag_of({"a": ("b",), "b": ("a",), "c": (("x", 1),)})
    with pytest.raises(MissingDependencyError) as info:
        validate(dag)
    assert info.value.key == "c"
    assert info.value.missing == (("x", 1),)


def test_external_keys_are_not_missing() -> None:
    dag = dag_of({"a": ("x",), "b": ("a", "y")}, external=["x", "y"])
    validate(dag)
    assert sources(dag) == ("a",)


def test_node_stored_under_another_key_is_rejected() -> None:
    dag = DAG({"a": Node("b", None, ())})
    with pytest.raises(GraphError, match=r"'b'.*'a'"):
        validate(dag)


def test_long_chain_validates_without_recursion() -> None:
    n = 10_000
    validate(dag_of({i: (() if i == 0 else (i - 1,)) for i in range(n)}))


def test_error_hierarchy() -> None:
    for cls in (CycleError, MissingDependencyError):
        assert issubclass(cls, GraphError)
    assert issubclass(GraphError, DasklessError)
    assert issubclass(GraphError, ValueError)


def test_errors_survive_pickling() -> None:
    cycle = pickle.loads(pickle.dumps(CycleError(["a", ("b", 1)])))
    assert isinstance(cycle, CycleError)
    assert cycle.cycle == ("a", ("b", 1))
    assert "'a' -> ('b', 1) -> 'a'" in str(cycle)
    missing = pickle.loads(pickle.dumps(MissingDependencyError("t", ["m"])))
    assert isinstance(missing, MissingDependencyError)
    assert (missing.key, missing.missing) == ("t", ("m",))
    assert str(missing) == str(MissingDependencyError("t", ["m"]))
