"""Pure scheduling layer: task graphs, validation and partitioning.

This package is the bottom layer of daskless.  It uses only the standard
library and treats task payloads as opaque objects, so it can be imported by
the scheduler plugin and by workers alike without pulling in dask or a store
client.

* :mod:`daskless.scheduler.dag`: the immutable :class:`DAG` of :class:`Node` objects.
* :mod:`daskless.scheduler.validation`: :func:`validate` (missing keys, cycles).
* :mod:`daskless.scheduler.partition`: ``partition()`` into balanced sub-DAGs and
  the :func:`local_tasks` a worker runs in memory.  Import ``partition`` from
  that module: re-exporting the function here would shadow the submodule of
  the same name (``import daskless.scheduler.partition`` would yield the function).
* :mod:`daskless.scheduler.errors`: the project's exception hierarchy.
"""

from __future__ import annotations

from daskless.scheduler.dag import DAG, IndexedGraph, Key, Node
from daskless.scheduler.errors import (
    CycleError,
    DasklessError,
    GraphError,
    MissingDependencyError,
)
from daskless.scheduler.partition import Partitioning, local_tasks
from daskless.scheduler.validation import validate

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
