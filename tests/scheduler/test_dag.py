"""Tests of the immutable DAG model."""

from __future__ import annotations

import dataclasses

import pytest

from daskless.scheduler.dag import DAG, Key, Node
from daskless.scheduler.errors import CycleError


def diamond() -> DAG:
    """a -> (b, c) -> d, plus e depending on the external key "x"."""
    return DAG.from_dependencies(
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
    dag = DAG.from_dependencies({"a": (), "b": ("a", "x")}, external=["a", "x", "y"])
    assert dag.external == frozenset({"x", "y"})


def test_tuple_keys() -> None:
    dag = DAG.from_dependencies({("x", 0): (), ("x", 1): (("x", 0),)})
    assert dag.topological_order() == [("x", 0), ("x", 1)]
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


def test_sources_and_sinks() -> None:
    dag = diamond()
    # "e" only depends on an external key, which does not count.
    assert dag.sources() == ("a", "e")
    assert dag.sinks() == ("d", "e")


def test_sources_and_sinks_of_empty_graph() -> None:
    dag = DAG({})
    assert len(dag) == 0
    assert dag.sources() == ()
    assert dag.sinks() == ()
    assert dag.topological_order() == []
    assert dict(dag.dependents()) == {}


def test_cull_keeps_exactly_the_needed_sub_graph() -> None:
    dag = diamond()
    culled = dag.cull(["b"])
    assert list(culled) == ["a", "b"]
    assert culled.external == frozenset()
    assert culled["b"] is dag["b"]


def test_cull_keeps_graph_order_and_referenced_external_keys() -> None:
    dag = DAG.from_dependencies(
        {"a": ("x",), "b": ("y",), "c": ("a", "b"), "d": ("c",), "z": ("y",)},
        external=["x", "y", "w"],
    )
    culled = dag.cull(["d", "b"])
    assert list(culled) == ["a", "b", "c", "d"]
    assert culled.external == frozenset({"x", "y"})
    assert dag.cull(["z"]).external == frozenset({"y"})


def test_cull_of_everything_is_the_whole_graph() -> None:
    dag = diamond()
    culled = dag.cull(dag.sinks())
    assert list(culled) == list(dag)
    assert culled.external == dag.external


def test_cull_unknown_key_raises_key_error_naming_it() -> None:
    dag = diamond()
    with pytest.raises(KeyError, match="nope"):
        dag.cull(["a", "nope"])
    with pytest.raises(KeyError, match="x"):
        dag.cull(["x"])  # external keys are not tasks


def test_cull_keeps_dangling_references_for_validation() -> None:
    dag = DAG.from_dependencies({"a": ("missing",), "b": ("a",)})
    culled = dag.cull(["b"])
    assert culled["a"].dependencies == ("missing",)


def test_topological_order_is_depth_first_post_order_from_sinks() -> None:
    dag = DAG.from_dependencies(
        {"s1": ("m1", "m2"), "m1": ("l1",), "m2": ("l2", "l1"), "l1": (), "l2": ()}
    )
    order = dag.topological_order()
    assert order == ["l1", "m1", "l2", "m2", "s1"]
    assert_topological(dag, order)


def test_topological_order_is_deterministic_and_fresh() -> None:
    deps = {
        f"n{i}": tuple(f"n{j}" for j in range(i) if (i * j) % 3 == 1) for i in range(30)
    }
    first = DAG.from_dependencies(deps).topological_order()
    again = DAG.from_dependencies(deps)
    assert again.topological_order() == first
    assert_topological(again, first)
    first.clear()  # the caller owns the returned list
    assert again.topological_order() != []


def test_topological_order_of_long_chain_needs_no_recursion() -> None:
    n = 10_000
    deps = {i: (() if i == 0 else (i - 1,)) for i in range(n)}
    dag = DAG.from_dependencies(deps)
    assert dag.topological_order() == list(range(n))
    assert dag.sources() == (0,)
    assert dag.sinks() == (n - 1,)
    assert list(dag.cull([n - 1])) == list(range(n))


def test_topological_order_raises_on_cycle() -> None:
    dag = DAG.from_dependencies({"a": ("c",), "b": ("a",), "c": ("b",), "d": ("c",)})
    with pytest.raises(CycleError) as info:
        dag.topological_order()
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
