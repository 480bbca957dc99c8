"""What a benchmark workflow is: a builder, a reference and a comparison, at named sizes.

A :class:`Workflow` builds a Dask collection from keyword parameters; ``reference`` computes the
same answer with plain numpy or pure Python (no Dask), and ``matches`` says whether a computed
result equals it. Sizes come in tiers: ``test`` (tiny, for the unit tests), ``quick`` (the
``--quick`` run), ``full`` and ``large`` (both in a full run). A :class:`Case` is one workflow at
one size; its name (``tree-delayed-4096``) is what results and tables are keyed by.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dask._expr import FinalizeCompute
from dask.base import collections_to_expr

TIERS = ("test", "quick", "full", "large")


@dataclass(frozen=True)
class Workflow:
    """A family of Dask graphs of one shape, with its reference answer."""

    name: str
    build: Callable[..., Any]
    reference: Callable[..., Any]
    matches: Callable[[Any, Any], bool]
    label: Callable[..., str]
    sizes: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)

    def cases(self, tier: str) -> list[Case]:
        return [Case(self, params) for params in self.sizes.get(tier, ())]


@dataclass(frozen=True)
class Case:
    """One workflow at one size."""

    workflow: Workflow
    params: Mapping[str, Any]

    @property
    def name(self) -> str:
        return f"{self.workflow.name}-{self.workflow.label(**self.params)}"

    def build(self) -> Any:
        return self.workflow.build(**self.params)

    def reference(self) -> Any:
        return self.workflow.reference(**self.params)

    def matches(self, result: Any, reference: Any) -> bool:
        return bool(self.workflow.matches(result, reference))


def graph_nodes(collection: Any) -> int:
    """Tasks in the graph a scheduler receives for ``dask.compute(collection)``.

    Built the way ``dask.compute`` builds it (optimized, with its finalize step), so the count is
    the one every scheduler in a comparison sees. A tuple (``svd``'s ``u, s, v``) counts as the
    collections it holds, as ``dask.compute`` treats it.
    """
    collections = list(collection) if isinstance(collection, tuple) else [collection]
    expr = FinalizeCompute(collections_to_expr(collections, True)).optimize()
    return len(expr.__dask_graph__())
