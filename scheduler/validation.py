"""Structural validation of a :class:`~daskless.scheduler.dag.DAG`.

:class:`~daskless.scheduler.dag.DAG` construction is deliberately unchecked so that
building graphs stays cheap; :func:`validate` is the one place where a graph
is checked before it is scheduled.  It checks, in order:

1. every node is stored under its own key;
2. every dependency is a node or an external key (the first offending task in
   graph order is reported, with all of its missing keys);
3. the graph is acyclic (one actual cycle is reported).

Everything is iterative and linear in nodes plus edges: graphs can be long
chains, far deeper than the recursion limit.  Step 2 reuses the cached
integer adjacency, which lists the nodes with dependencies outside the graph,
so only those are looked at again.
"""

from __future__ import annotations

from daskless.scheduler.dag import DAG
from daskless.scheduler.errors import GraphError, MissingDependencyError, format_key

__all__ = ["validate"]


def validate(dag: DAG) -> None:
    """Raise a :class:`~daskless.scheduler.errors.GraphError` if ``dag`` is malformed.

    Raises :class:`~daskless.scheduler.errors.MissingDependencyError` for the first
    task (in graph order) depending on a key that is neither a node nor
    external, and :class:`~daskless.scheduler.errors.CycleError` naming the keys on a
    cycle.  A node stored under another key raises a plain
    :class:`~daskless.scheduler.errors.GraphError`.
    """
    _check_keys(dag)
    _check_dependencies(dag)
    dag.topological_indices()  # raises CycleError


def _check_keys(dag: DAG) -> None:
    for key, node in dag.nodes.items():
        # Identity first: comparing equal tuple keys element-wise is slower.
        if node.key is not key and node.key != key:
            raise GraphError(
                f"node {format_key(node.key)} is stored under key {format_key(key)}"
            )


def _check_dependencies(dag: DAG) -> None:
    graph = dag.indexed()
    nodes = dag.nodes
    external = dag.external
    for i in graph.incomplete:
        key = graph.keys[i]
        missing = [
            d for d in nodes[key].dependencies if d not in nodes and d not in external
        ]
        if missing:
            raise MissingDependencyError(key, missing)
