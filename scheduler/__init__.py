"""Pure scheduling layer: task graphs, validation and partitioning.

This package is the bottom layer of daskless.  Its modules import only the
standard library and treat task payloads as opaque objects, so the plugin and
workers share it and it is tested and benchmarked with no I/O.  (It installs as
``daskless.scheduler``, so importing it runs ``daskless/__init__.py`` first,
which loads dask's configuration, but no store client.)

* :mod:`daskless.scheduler.dag`: the immutable :class:`DAG` of :class:`Node` objects.
* :mod:`daskless.scheduler.validation`: :func:`validate` (missing keys, cycles).
* :mod:`daskless.scheduler.partition`: ``partition()`` into balanced sub-DAGs, with
  the *local* tasks a worker runs in memory.  Import ``partition`` from that
  module: re-exporting the function here would shadow the submodule of the same
  name (``import daskless.scheduler.partition`` would yield the function).
* :mod:`daskless.scheduler.entry_groups`: the first invocations of each partition.
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
from daskless.scheduler.partition import Partitioning
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
    "validate",
]
