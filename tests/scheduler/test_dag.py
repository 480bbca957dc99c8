"""Tests of the immutable DAG model."""

from __future__ import annotations

import dataclasses

import pytest

from daskless.scheduler.dag import DAG, Key, Node
from daskless.scheduler.errors import CycleError
from tests.scheduler.graphs import dag_of, topological_order


def diamond() -> DAG:
    """a -> (b, c) -> d, plus e depending on the external key "x"."""
    return dag_of(
        {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c"), "e": ("x",)},
        payloads={"a": 1, "d": 4},
        external=["x"],
    )


def assert_topological(dag: DAG, order: list[Key]) -> None:
    assert sorted(map(repr, order)) == sorted(map(repr, dag))
    position = {k: i for i, k in enumerate(order)}
    for key, node in dag.nodes.items():
        for dep in node.dependencies:
            if dep in dag:
                assert position[dep] < position[key], (dep, key)


def test_node_deduplicates_dependencies_keeping_order() -> None:
    node = Node("k", None, ("b", "a", "b", "c", "a"))
    assert node.dependencies == ("b", "a", "c")


def test_node_turns_any_iterable_into_a_tuple() -> None:
    node = Node("k", None, ["a", "b"])  # type: ignore[arg-type]
    assert node.dependencies == ("a", "b")


def test_node_is_frozen() -> None:
    node = Node("k", "payload", ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.key = "other"  # type: ignore[misc]


def test_mapping_protocol() -> None:
    dag = diamond()
    assert len(dag) == 5
    assert list(dag) == ["a", "b", "c", "d", "e"]
    assert "d" in dag
    assert "x" not in dag
    assert dag["d"].dependencies == ("b", "c")
    assert dag["d"].payload == 4
    assert dag["b"].payload is None
    with pytest.raises(KeyError):
        dag["x"]


def test_nodes_view_is_read_only_and_detached_from_input() -> None:
    source = {"a": Node("a", None, ())}
    dag = DAG(source)
    source["b"] = Node("b", None, ("a",))
    assert list(dag.nodes) == ["a"]
    with pytest.raises(TypeError):
        dag.nodes["c"] = Node("c", None, ())  # type: ignore[index]


def test_external_keys_that_are_nodes_are_dropped() -> None:
    dag = dag_of({"a": (), "b": ("a", "x")}, external=["a", "x", "y"])
    assert dag.external == frozenset({"x", "y"})


def test_tuple_keys() -> None:
    dag = dag_of({("x", 0): (), ("x", 1): (("x", 0),)})
    assert topological_order(dag) == [("x", 0), ("x", 1)]
    assert dag.dependents()[("x", 0)] == (("x", 1),)


def test_dependents_cover_every_node_and_skip_external_keys() -> None:
    dag = diamond()
    dependents = dag.dependents()
    assert dict(dependents) == {
        "a": ("b", "c"),
        "b": ("d",),
        "c": ("d",),
        "d": (),
        "e": (),
    }
    assert "x" not in dependents
    assert dag.dependents() is dependents  # computed once


def test_empty_graph() -> None:
    dag = DAG({})
    assert len(dag) == 0
    assert topological_order(dag) == []
    assert dict(dag.dependents()) == {}


def test_topological_order_is_depth_first_post_order_from_sinks() -> None:
    dag = dag_of(
        {"s1": ("m1", "m2"), "m1": ("l1",), "m2": ("l2", "l1"), "l1": (), "l2": ()}
    )
    order = topological_order(dag)
    assert order == ["l1", "m1", "l2", "m2", "s1"]
    assert_topological(dag, order)


def test_topological_order_is_deterministic_and_cached() -> None:
    deps = {
        f"n{i}": tuple(f"n{j}" for j in range(i) if (i * j) % 3 == 1) for i in range(30)
    }
    first = topological_order(dag_of(deps))
    again = dag_of(deps)
    assert topological_order(again) == first
    assert_topological(again, first)
    assert again.topological_indices() is again.topological_indices()


def test_topological_order_of_long_chain_needs_no_recursion() -> None:
    n = 10_000
    deps = {i: (() if i == 0 else (i - 1,)) for i in range(n)}
    dag = dag_of(deps)
    assert topological_order(dag) == list(range(n))


def test_topological_order_raises_on_cycle() -> None:
    dag = dag_of({"a": ("c",), "b": ("a",), "c": ("b",), "d": ("c",)})
    with pytest.raises(CycleError) as info:
        dag.topological_indices()
    assert set(info.value.cycle) == {"a", "b", "c"}


def test_indexed_form() -> None:
    dag = diamond()
    graph = dag.indexed()
    assert graph.keys == ("a", "b", "c", "d", "e")
    assert graph.deps == ((), (0,), (0,), (1, 2), ())
    assert graph.n_dependents == (2, 1, 1, 0, 0)
    assert graph.incomplete == (4,)
    assert graph.index["d"] == 3
    assert dag.indexed() is graph


def test_repr_mentions_sizes() -> None:
    assert repr(diamond()) == "DAG(5 nodes, 1 external keys)"
