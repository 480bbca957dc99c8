"""Linear algebra: GEMM, a tall-skinny SVD (TSQR) and a compressed (randomized) SVD.

Input matrices are generated inside the graph, one task per block, from a seed and the block's
position (:func:`random_matrix`), so that the reference can regenerate exactly the same numbers
with numpy, block by block, without Dask:

- GEMM: ``sum(A @ B)`` equals ``colsum(A) . rowsum(B)``, so the reference needs O(n^2) work
  even at the large size.
- SVD1: the reference is numpy's singular values of the same matrix, plus its first rows to
  check ``u * s @ v`` against.
- SVD2: the matrix is exactly of rank ``rank`` (each block is ``L_i @ R_j``), so a
  ``svd_compressed`` with ``k = rank`` recovers its singular values to rounding, and the
  reference gets them from two thin QR factorizations instead of a full 5000x5000 SVD.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from benchmarks.workflows.base import Workflow

SEED_A, SEED_B, SEED_TALL, SEED_LOW_RANK = 11, 12, 13, 14


def _uniform_block(seed: int, i: int, j: int, rows: int, cols: int) -> np.ndarray:
    return np.random.default_rng((seed, i, j)).random((rows, cols))


def _factor(seed: int, side: int, index: int, rows: int, cols: int) -> np.ndarray:
    return np.random.default_rng((seed, side, index)).standard_normal((rows, cols))


def _low_rank_block(seed: int, i: int, j: int, rows: int, cols: int, rank: int) -> np.ndarray:
    return _factor(seed, 0, i, rows, rank) @ _factor(seed, 1, j, rank, cols)


def _splits(n: int, chunk: int) -> tuple[int, ...]:
    return tuple(min(chunk, n - start) for start in range(0, n, chunk))


def random_matrix(seed: int, shape: tuple[int, int], chunks: tuple[int, int],
                  block: Callable[..., np.ndarray] = _uniform_block, *extra: int) -> da.Array:
    """A matrix whose block ``(i, j)`` is ``block(seed, i, j, rows, cols, *extra)``."""
    rows, cols = _splits(shape[0], chunks[0]), _splits(shape[1], chunks[1])
    name = f"{block.__name__.strip('_')}-{tokenize(seed, shape, chunks, extra)}"
    graph = {(name, i, j): (block, seed, i, j, r, c, *extra)
             for i, r in enumerate(rows) for j, c in enumerate(cols)}
    return da.Array(graph, name, (rows, cols), dtype=float)


def _numpy_matrix(seed: int, shape: tuple[int, int], chunks: tuple[int, int]) -> np.ndarray:
    rows, cols = _splits(shape[0], chunks[0]), _splits(shape[1], chunks[1])
    return np.block([[_uniform_block(seed, i, j, r, c) for j, c in enumerate(cols)]
                     for i, r in enumerate(rows)])


def gemm(n: int = 4000, chunk: int = 1000) -> Any:
    """``(A @ B).sum()`` on random matrices generated inside the graph."""
    a = random_matrix(SEED_A, (n, n), (chunk, chunk))
    b = random_matrix(SEED_B, (n, n), (chunk, chunk))
    return (a @ b).sum()


def gemm_reference(n: int = 4000, chunk: int = 1000) -> float:
    col_sums, row_sums = np.zeros(n), np.zeros(n)
    splits = _splits(n, chunk)
    for i, r in enumerate(splits):
        for j, c in enumerate(splits):
            col_sums[j * chunk:j * chunk + c] += _uniform_block(SEED_A, i, j, r, c).sum(axis=0)
            row_sums[i * chunk:i * chunk + r] += _uniform_block(SEED_B, i, j, r, c).sum(axis=1)
    return float(col_sums @ row_sums)


def _close(result: Any, reference: Any) -> bool:
    return bool(np.isclose(float(result), reference, rtol=1e-9, atol=0))


def svd_tall_skinny(rows: int = 200_000, cols: int = 100, chunk: int = 10_000) -> Any:
    """``da.linalg.svd`` of a tall-skinny random array (TSQR): returns u, s, v."""
    return da.linalg.svd(random_matrix(SEED_TALL, (rows, cols), (chunk, cols)))


HEAD_ROWS = 64


def svd_tall_skinny_reference(rows: int = 200_000, cols: int = 100,
                              chunk: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Singular values of the same matrix, and its first rows."""
    x = _numpy_matrix(SEED_TALL, (rows, cols), (chunk, cols))
    return np.linalg.svd(x, compute_uv=False), x[:HEAD_ROWS].copy()


def _svd_matches(result: Any, reference: tuple[np.ndarray, np.ndarray]) -> bool:
    u, s, v = (np.asarray(part) for part in result)
    s_ref, head = reference
    if s.shape != s_ref.shape or not np.allclose(s, s_ref, rtol=1e-8, atol=0):
        return False
    rebuilt = (u[:HEAD_ROWS] * s) @ v
    return bool(np.allclose(rebuilt, head, rtol=0, atol=1e-8 * max(1.0, float(s[0]))))


def svd_compressed(n: int = 5000, chunk: int = 1000, rank: int = 100) -> Any:
    """``da.linalg.svd_compressed(x, k=rank)`` of an ``n x n`` matrix of rank ``rank``."""
    x = random_matrix(SEED_LOW_RANK, (n, n), (chunk, chunk), _low_rank_block, rank)
    return da.linalg.svd_compressed(x, k=rank, seed=0)


def svd_compressed_reference(n: int = 5000, chunk: int = 1000, rank: int = 100) -> np.ndarray:
    """Singular values of ``L @ R`` from the triangular factors of ``L`` and ``R.T``."""
    splits = _splits(n, chunk)
    left = np.vstack([_factor(SEED_LOW_RANK, 0, i, r, rank) for i, r in enumerate(splits)])
    right = np.hstack([_factor(SEED_LOW_RANK, 1, j, rank, c) for j, c in enumerate(splits)])
    r_left = np.linalg.qr(left, mode="r")
    r_right = np.linalg.qr(right.T, mode="r")
    return np.linalg.svd(r_left @ r_right.T, compute_uv=False)


def _singular_values_match(result: Any, reference: np.ndarray) -> bool:
    s = np.asarray(result[1])
    return bool(s.shape == reference.shape and np.allclose(s, reference, rtol=1e-6, atol=0))


def _square(n: int, chunk: int, rank: int = 0) -> str:
    return str(n)


def _tall(rows: int, cols: int, chunk: int) -> str:
    return f"{rows}x{cols}"


GEMM = Workflow(
    "gemm", gemm, gemm_reference, _close, _square,
    {"test": ({"n": 400, "chunk": 100},), "quick": ({"n": 2000, "chunk": 500},),
     "full": ({"n": 4000, "chunk": 1000},), "large": ({"n": 10_000, "chunk": 2000},)},
)
SVD_TALL_SKINNY = Workflow(
    "svd1", svd_tall_skinny, svd_tall_skinny_reference, _svd_matches, _tall,
    {"test": ({"rows": 2000, "cols": 10, "chunk": 250},),
     "quick": ({"rows": 50_000, "cols": 100, "chunk": 5000},),
     "full": ({"rows": 200_000, "cols": 100, "chunk": 10_000},)},
)
SVD_COMPRESSED = Workflow(
    "svd2", svd_compressed, svd_compressed_reference, _singular_values_match, _square,
    {"test": ({"n": 400, "chunk": 100, "rank": 10},),
     "quick": ({"n": 2000, "chunk": 500, "rank": 50},),
     "full": ({"n": 5000, "chunk": 1000, "rank": 100},)},
)
