"""Pure scheduling layer: task graphs, validation and partitioning.

This package is the bottom layer of daskless.  It uses only the standard
library and treats task payloads as opaque objects, so it can be imported by
the scheduler plugin and by workers alike without pulling in dask or a store
client.

* :mod:`scheduler.dag`: the immutable :class:`DAG` of :class:`Node` objects.
* :mod:`scheduler.validation`: :func:`validate` (missing keys, cycles).
* :mod:`scheduler.partition`: ``partition()`` into balanced sub-DAGs and
  the :func:`local_tasks` a worker runs in memory.  Import ``partition`` from
  that module: re-exporting the function here would shadow the submodule of
  the same name (``import scheduler.partition`` would yield the function).
* :mod:`scheduler.errors`: the project's exception hierarchy.
"""

from __future__ import annotations

from scheduler.dag import DAG, IndexedGraph, Key, Node
from scheduler.errors import (
    CycleError,
    DasklessError,
    GraphError,
    MissingDependencyError,
)
from scheduler.partition import Partitioning, local_tasks
from scheduler.validation import validate

__all__ = [
    "DAG",
    "CycleError",
    "DasklessError",
    "GraphError",
    "IndexedGraph",
    "Key",
    "MissingDependencyError",
    "Node",
    "Partitioning",
    "local_tasks",
    "validate",
]
