"""Workloads as functions that build a Dask collection at a given size."""

from __future__ import annotations

from operator import add
from typing import Any

import dask.array as da
from dask.delayed import delayed


def _inc(i: int) -> int:
    return i + 1


def tree_delayed(leaves: int = 4096) -> Any:
    """Binary tree reduction of ``delayed`` adds: ``2 * leaves - 1`` tiny tasks."""
    xs = [delayed(_inc)(i) for i in range(leaves)]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
    return xs[0]


def gemm(n: int = 4000, chunk: int = 1000) -> Any:
    """``(A @ B).sum()`` on random matrices generated inside the graph."""
    rng = da.random.default_rng(0)
    a = rng.random((n, n), chunks=(chunk, chunk))
    b = rng.random((n, n), chunks=(chunk, chunk))
    return (a @ b).sum()


def svd_tall_skinny(rows: int = 200_000, cols: int = 100, chunk: int = 10_000) -> Any:
    """``da.linalg.svd`` of a tall-skinny random array (TSQR): returns u, s, v."""
    x = da.random.default_rng(1).random((rows, cols), chunks=(chunk, cols))
    return da.linalg.svd(x)


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def gil_bound(tasks: int = 24, loops: int = 1_500_000) -> Any:
    """Pure-Python CPU-bound tasks (they hold the GIL), summed."""
    return delayed(sum)([delayed(_spin)(loops) for _ in range(tasks)])
