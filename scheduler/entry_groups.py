"""Split a partition's first invocation along the independent pieces of its local region.

A partition is run by one invocation, and inside it *local* tasks are counted down in that
invocation's memory (see :mod:`daskless.scheduler.partition`). That is what makes local
work cheap, but it also makes a partition a unit of parallelism: a partition holding six independent
chains of work (the six blocks a tall-skinny QR factorises before its reduction, say) runs them
one after the other on one worker while another worker idles.

The local region of a partition falls apart into connected components: no local task has
inputs in two of them, so they can be started by separate invocations of the same partition
without any local countdown ever needing an input from another invocation. This module groups a
partition's entry tasks (its sources) by component and packs the components into at most
``max_groups`` balanced groups; each group becomes its own invocation, and an idle worker picks
it up. Nothing else changes: no output crosses the store that did not before, since components
share no local edge.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from daskless.scheduler.dag import DAG, Key
from daskless.scheduler.partition import Partitioning

__all__ = ["entry_groups"]


def entry_groups(
    dag: DAG, parts: Partitioning, max_groups: int
) -> list[tuple[int, tuple[Key, ...]]]:
    """``(partition, entry tasks)`` pairs: each partition's sources, split as described above.

    Entries keep their order within the partition; groups come partition by partition, the
    largest group of a partition first. ``max_groups < 1`` is taken as 1.
    """
    graph = dag.indexed()
    index = graph.index
    root = _components(graph.deps, [index[k] for k in parts.local])
    result: list[tuple[int, tuple[Key, ...]]] = []
    for p, part in enumerate(parts.parts):
        sizes: dict[int, int] = {}
        entries: dict[int, list[Key]] = {}
        for key in part:
            v = index[key]
            if v in root:
                r = _find(root, v)
                sizes[r] = sizes.get(r, 0) + 1
                if not graph.deps[v]:
                    entries.setdefault(r, []).append(key)
        position = {k: i for i, k in enumerate(part)}
        for group in _pack(entries, sizes, max(max_groups, 1)):
            result.append((p, tuple(sorted(group, key=position.__getitem__))))
    return result


def _components(deps: Sequence[tuple[int, ...]], local: list[int]) -> dict[int, int]:
    """Union-find parents over local tasks, joined along local edges (same part by definition)."""
    parent = {v: v for v in local}
    for v in local:
        for d in deps[v]:
            a, b = _find(parent, v), _find(parent, d)
            if a != b:
                parent[a] = b
    return parent


def _find(parent: dict[int, int], v: int) -> int:
    while parent[v] != v:
        parent[v] = parent[parent[v]]
        v = parent[v]
    return v


def _pack(
    entries: dict[int, list[Key]], sizes: dict[int, int], max_groups: int
) -> list[list[Key]]:
    """Components with entries packed into at most ``max_groups`` groups of similar task counts
    (largest component first, each into the lightest group), heaviest group first."""
    n = min(max_groups, len(entries))
    groups: list[list[Key]] = [[] for _ in range(n)]
    load = [(0, i) for i in range(n)]
    for r in sorted(entries, key=lambda r: -sizes[r]):
        weight, i = heapq.heappop(load)
        groups[i].extend(entries[r])
        heapq.heappush(load, (weight + sizes[r], i))
    weights = dict((i, w) for w, i in load)
    return [groups[i] for i in sorted(range(n), key=lambda i: -weights[i])]
