"""The benchmark workflows: each a function that builds a Dask collection at a given size.

Every workflow also has a reference (plain numpy or pure Python, no Dask) and a comparison, so
that a benchmark run records whether each scheduler computed the right answer. ``WORKFLOWS``
lists them in the order tables show them; ``cases(tier)`` gives the sizes of one tier.
"""

from __future__ import annotations

from benchmarks.workflows.base import TIERS, Case, Workflow, graph_nodes
from benchmarks.workflows.images import IMAGE_TRANSFORM, image_transform
from benchmarks.workflows.linalg import (
    GEMM,
    SVD_COMPRESSED,
    SVD_TALL_SKINNY,
    gemm,
    svd_compressed,
    svd_tall_skinny,
)
from benchmarks.workflows.python import FAN_OUT, GIL_BOUND, fan_out, gil_bound
from benchmarks.workflows.text import WORD_COUNT, word_count
from benchmarks.workflows.trees import TREE_ARRAY, TREE_DELAYED, tree_array, tree_delayed

WORKFLOWS: tuple[Workflow, ...] = (
    TREE_DELAYED, TREE_ARRAY, GEMM, WORD_COUNT, IMAGE_TRANSFORM, SVD_TALL_SKINNY,
    SVD_COMPRESSED, GIL_BOUND, FAN_OUT,
)


def cases(tier: str, names: list[str] | None = None, large: bool = True) -> list[Case]:
    """Cases of a tier (``full`` includes ``large`` unless told not to), optionally only the
    named workflows."""
    if tier not in TIERS:
        raise ValueError(f"unknown size tier {tier!r}; choose from {', '.join(TIERS)}")
    unknown = sorted(set(names or ()) - {w.name for w in WORKFLOWS})
    if unknown:
        raise ValueError(f"unknown workflow(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(w.name for w in WORKFLOWS)}")
    tiers = ("full", "large") if tier == "full" and large else (tier,)
    chosen = [w for w in WORKFLOWS if not names or w.name in names]
    return [case for w in chosen for t in tiers for case in w.cases(t)]


__all__ = [
    "TIERS", "WORKFLOWS", "Case", "Workflow", "cases", "fan_out", "gemm", "gil_bound",
    "graph_nodes", "image_transform", "svd_compressed", "svd_tall_skinny", "tree_array",
    "tree_delayed", "word_count",
]
