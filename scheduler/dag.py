"""Immutable task graph.

A :class:`DAG` maps task keys to :class:`Node` objects.  Payloads are opaque:
this layer only looks at keys and dependencies.  A dependency is either

* *in-graph*: the key of another node of the same DAG, or
* *external*: a key listed in ``DAG.external``, provided from outside the
  graph (for example data already persisted in a store).

Anything else is a missing dependency; :func:`daskless.scheduler.validation.validate`
reports it.  Construction does not validate, so building a graph costs one
dictionary copy.

Derived structures are computed lazily, once, and cached on the instance:
the integer-indexed adjacency (:class:`IndexedGraph`), the dependents map and
the topological order (as indices into the adjacency).  Algorithms over the
graph (validation, ordering, partitioning) work on the integer form, because
list indexing is several times cheaper than hashing keys, and dask keys are
often tuples whose hash is recomputed at every lookup.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from types import MappingProxyType
from typing import TypeAlias, TypeVar, cast

from daskless.scheduler.errors import CycleError

__all__ = ["DAG", "IndexedGraph", "Key", "Node"]

Key: TypeAlias = Hashable
"""A task key: dask uses strings and tuples such as ``("x", 0, 1)``."""

# Mapping is invariant in its key type, so a ``dict[str, Node]`` is not a
# ``Mapping[Hashable, Node]``; inputs are typed with this variable instead so
# that callers with concrete key types type-check.
_K = TypeVar("_K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Node:
    """One task: its key, an opaque payload and the keys it depends on.

    ``dependencies`` is normalised to a tuple without duplicates, keeping the
    first occurrence of each key, so edge counts are exact downstream.
    """

    key: Key
    payload: object
    dependencies: tuple[Key, ...]

    def __post_init__(self) -> None:
        deps = self.dependencies
        # Cheap check first: most tasks have 0-2 distinct dependencies.
        if type(deps) is not tuple or (len(deps) > 1 and len(set(deps)) != len(deps)):
            object.__setattr__(self, "dependencies", tuple(dict.fromkeys(deps)))


@dataclass(frozen=True, slots=True)
class IndexedGraph:
    """Integer form of a DAG: node ``i`` is ``keys[i]``.

    ``deps[i]`` holds the indices of the in-graph dependencies of node ``i``
    (external and missing keys are left out) and ``n_dependents[i]`` counts
    the nodes depending on it.  ``incomplete`` lists, in graph order, the
    nodes having dependencies outside the graph, so validation need not look
    at any other node.
    """

    keys: tuple[Key, ...]
    index: Mapping[Key, int]
    deps: tuple[tuple[int, ...], ...]
    n_dependents: tuple[int, ...]
    incomplete: tuple[int, ...]


def _build_indexed(nodes: Mapping[Key, Node]) -> IndexedGraph:
    keys = tuple(nodes)
    index = dict(zip(keys, range(len(keys))))
    lookup = index.__getitem__
    incomplete: list[int] = []
    try:
        # Fast path, mostly in C: every dependency is a node.
        deps = [tuple(map(lookup, node.dependencies)) for node in nodes.values()]
    except KeyError:
        deps = []
        for i, node in enumerate(nodes.values()):
            row = tuple([index[d] for d in node.dependencies if d in index])
            if len(row) != len(node.dependencies):
                incomplete.append(i)
            deps.append(row)
    counts = [0] * len(keys)
    for j in chain.from_iterable(deps):
        counts[j] += 1
    return IndexedGraph(
        keys, MappingProxyType(index), tuple(deps), tuple(counts), tuple(incomplete)
    )


def _depth_first_order(graph: IndexedGraph) -> list[int] | None:
    """Post-order of an iterative depth-first search from the sinks.

    Sinks are visited in graph order and each node's dependencies in their
    listed order; a node is emitted after all its dependencies, so the result
    is a topological order in which every subtree is contiguous (which the
    partitioner relies on).  Returns ``None`` if the graph has a cycle.
    """
    deps = graph.deps
    n = len(deps)
    state = bytearray(n)  # 0: unseen, 1: on the current path, 2: emitted
    order: list[int] = []
    emit = order.append
    for sink, count in enumerate(graph.n_dependents):
        if count:
            continue
        stack = [sink]
        push, pop = stack.append, stack.pop
        while stack:
            v = pop()
            s = state[v]
            if s == 0:
                state[v] = 1
                push(v)  # marker: emit v once everything above it is done
                for d in reversed(deps[v]):
                    sd = state[d]
                    if sd == 0:
                        push(d)
                    elif sd == 1:
                        return None  # back edge to the current path
            elif s == 1:
                state[v] = 2
                emit(v)
            # s == 2: a stale copy pushed by another dependent; already done.
    # Nodes on a cycle that reaches no sink are never visited.
    return order if len(order) == n else None


def _find_cycle(graph: IndexedGraph) -> tuple[int, ...] | None:
    """Return the indices of the nodes on one cycle, or ``None`` if acyclic.

    Peels the graph from the sources (Kahn's algorithm).  Every node left over
    has a dependency that is also left over, so following leftover
    dependencies from any leftover node must revisit a node: the walk from
    that node's first visit on is a cycle.  Each returned node depends on the
    next, and the last on the first.
    """
    deps = graph.deps
    n = len(deps)
    dependents: list[list[int]] = [[] for _ in range(n)]
    for v, row in enumerate(deps):
        for d in row:
            dependents[d].append(v)
    pending = [len(row) for row in deps]
    ready = [v for v in range(n) if not pending[v]]
    while ready:
        v = ready.pop()
        for w in dependents[v]:
            pending[w] -= 1
            if not pending[w]:
                ready.append(w)
    start = next((v for v in range(n) if pending[v]), None)
    if start is None:
        return None
    position: dict[int, int] = {}
    path: list[int] = []
    v = start
    while v not in position:
        position[v] = len(path)
        path.append(v)
        v = next(d for d in deps[v] if pending[d])
    return tuple(path[position[v] :])


class DAG:
    """Immutable DAG of :class:`Node` objects.

    Construction does not validate (it is a dictionary copy): use
    :func:`daskless.scheduler.validation.validate` for that.  ``external`` lists keys
    that may be depended on but are provided from outside the graph; keys
    that are also nodes are dropped from it, so the two sets are disjoint.
    """

    __slots__ = ("_dependents", "_external", "_indexed", "_nodes", "_order", "_view")

    def __init__(self, nodes: Mapping[_K, Node], external: Iterable[Key] = ()) -> None:
        # Sound: keys are only ever read.  dict(mapping) is a fast C copy,
        # ten times cheaper than rebuilding from items().
        self._nodes = cast("dict[Key, Node]", dict(nodes))
        self._view: Mapping[Key, Node] = MappingProxyType(self._nodes)
        ext = frozenset(external)
        self._external = ext.difference(self._nodes) if ext else ext
        self._indexed: IndexedGraph | None = None
        self._order: tuple[int, ...] | None = None
        self._dependents: Mapping[Key, tuple[Key, ...]] | None = None

    @property
    def nodes(self) -> Mapping[Key, Node]:
        """Read-only view of ``key -> Node``, in insertion order."""
        return self._view

    @property
    def external(self) -> frozenset[Key]:
        """Keys provided from outside the graph (disjoint from the nodes)."""
        return self._external

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._nodes)

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def __getitem__(self, key: Key) -> Node:
        return self._nodes[key]

    def __repr__(self) -> str:
        return f"DAG({len(self._nodes)} nodes, {len(self._external)} external keys)"

    def indexed(self) -> IndexedGraph:
        """The integer-indexed adjacency, built on first use and cached."""
        if self._indexed is None:
            self._indexed = _build_indexed(self._nodes)
        return self._indexed

    def topological_indices(self) -> tuple[int, ...]:
        """Topological order as indices into ``indexed().keys`` (cached).

        It is the depth-first post-order from the sinks described in
        :func:`_depth_first_order`.  Raises :class:`CycleError` naming the keys of
        one cycle.
        """
        if self._order is None:
            graph = self.indexed()
            order = _depth_first_order(graph)
            if order is None:
                cycle = _find_cycle(graph)
                assert cycle is not None, "depth-first search saw a cycle Kahn did not"
                raise CycleError(graph.keys[i] for i in cycle)
            self._order = tuple(order)
        return self._order

    def dependents(self) -> Mapping[Key, tuple[Key, ...]]:
        """``key -> keys depending on it``, for every node (cached).

        Dependents are listed in graph order; external keys are not included.
        """
        if self._dependents is None:
            graph = self.indexed()
            keys = graph.keys
            rows: list[list[Key]] = [[] for _ in keys]
            for v, row in enumerate(graph.deps):
                key = keys[v]
                for d in row:
                    rows[d].append(key)
            self._dependents = MappingProxyType(
                {k: tuple(r) for k, r in zip(keys, rows)}
            )
        return self._dependents
