"""Building and reading small DAGs in tests: from a dependency table, in key order.

The scheduling layer itself works on :class:`DAG` objects built from dask graphs and on integer
indices; these helpers give tests the readable key-level views.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

from daskless.scheduler.dag import DAG, Key, Node


def dag_of(
    deps: Mapping[Hashable, Iterable[Key]],
    payloads: Mapping[Hashable, object] | None = None,
    external: Iterable[Key] = (),
) -> DAG:
    """A DAG from ``key -> dependencies``; payloads default to ``None``."""
    table = payloads or {}
    return DAG({k: Node(k, table.get(k), tuple(ds)) for k, ds in deps.items()}, external)


def topological_order(dag: DAG) -> list[Key]:
    """The keys in the DAG's topological order (:meth:`DAG.topological_indices`)."""
    keys = dag.indexed().keys
    return [keys[i] for i in dag.topological_indices()]


def sources(dag: DAG) -> tuple[Key, ...]:
    """Nodes without in-graph dependencies (external ones do not count)."""
    graph = dag.indexed()
    return tuple(k for k, row in zip(graph.keys, graph.deps) if not row)


def sinks(dag: DAG) -> tuple[Key, ...]:
    """Nodes that no other node depends on."""
    graph = dag.indexed()
    return tuple(k for k, c in zip(graph.keys, graph.n_dependents) if not c)


def local_tasks(dag: DAG, assignment: Mapping[Key, int]) -> set[Key]:
    """The definition of local tasks, evaluated as a fixpoint: a task is local when all its
    in-graph inputs are local tasks of its own partition (so sources are local)."""
    local: set[Key] = set()
    changed = True
    while changed:
        changed = False
        for key, node in dag.nodes.items():
            if key in local:
                continue
            inside = [d for d in node.dependencies if d in dag]
            if all(assignment[d] == assignment[key] and d in local for d in inside):
                local.add(key)
                changed = True
    return local
