"""Tree reductions: thousands of tiny tasks, where per-task overhead is all there is to measure.

``tree_delayed`` adds ``delayed`` leaves pairwise (a binary tree of ``2 * leaves - 1`` tasks);
``tree_array`` is the same shape written as an array reduction,
``da.ones(leaves, chunks=1).sum(split_every=2)``.
"""

from __future__ import annotations

from operator import add
from typing import Any

import dask.array as da
from dask.delayed import delayed

from benchmarks.workflows.base import Workflow


def _inc(i: int) -> int:
    return i + 1


def tree_delayed(leaves: int = 4096) -> Any:
    """Binary tree reduction of ``delayed`` adds: ``2 * leaves - 1`` tiny tasks."""
    xs = [delayed(_inc)(i) for i in range(leaves)]
    while len(xs) > 1:
        pairs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs) - 1, 2)]
        xs = pairs + xs[len(pairs) * 2:]
    return xs[0]


def tree_delayed_reference(leaves: int = 4096) -> int:
    return leaves * (leaves + 1) // 2  # sum of i + 1 for i < leaves


def tree_array(leaves: int = 4096) -> Any:
    """``da.ones(leaves, chunks=1).sum(split_every=2)``: one chunk per leaf, pairwise sums."""
    return da.ones(leaves, chunks=1).sum(split_every=2)


def tree_array_reference(leaves: int = 4096) -> float:
    return float(leaves)


def _equal(result: Any, reference: Any) -> bool:
    return bool(result == reference)


def _leaves(leaves: int) -> str:
    return str(leaves)


TREE_DELAYED = Workflow(
    "tree-delayed", tree_delayed, tree_delayed_reference, _equal, _leaves,
    {"test": ({"leaves": 64},), "quick": ({"leaves": 512},),
     "full": ({"leaves": 1024}, {"leaves": 4096})},
)
TREE_ARRAY = Workflow(
    "tree-array", tree_array, tree_array_reference, _equal, _leaves,
    {"test": ({"leaves": 64},), "quick": ({"leaves": 512},),
     "full": ({"leaves": 1024}, {"leaves": 4096})},
)
