"""From what Dask hands a scheduler to a plain ``{key: GraphNode}`` mapping and a key list.

Dask 2026 passes ``dask.compute``'s graph as an expression (``__dask_graph__()`` materializes it,
``__dask_annotations__()`` gives per-key annotations); ``compute_as_if_collection`` passes a
HighLevelGraph and direct callers a plain dict, possibly in the legacy tuple format. All of them
end up as task-spec nodes through ``convert_legacy_graph``. Requested keys may be a single key or
(nested) lists of keys, as in ``dask.local.get_async``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from dask._task_spec import DataNode, GraphNode, convert_legacy_graph
from dask.core import flatten

Graph = dict[Hashable, GraphNode]
Annotations = dict[str, dict[Hashable, Any]]
"""``{annotation: {key: value}}``, as ``__dask_annotations__()`` gives them (``retries``...)."""


def materialize(dsk: Any) -> tuple[Graph, Annotations]:
    """The task-spec graph and the annotations of whatever Dask passed as ``dsk``."""
    annotations: Annotations = {}
    if not isinstance(dsk, Mapping):
        if hasattr(dsk, "__dask_annotations__"):
            annotations = dict(dsk.__dask_annotations__() or {})
        dsk = dsk.__dask_graph__()
    return convert_legacy_graph(dsk), annotations


def requested_keys(keys: Any) -> list[Hashable]:
    """The flat list of keys asked for; a tuple is one key, a list nests."""
    if isinstance(keys, list):
        return list(flatten(keys))
    return [keys]


def data_values(graph: Graph) -> dict[Hashable, object]:
    """Literal values already present in the graph (what dask puts in ``state['cache']``)."""
    return {k: node.value for k, node in graph.items() if isinstance(node, DataNode)}
