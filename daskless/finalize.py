"""Run Dask's ``finalize`` step on the client, as dask's local schedulers effectively do.

``dask.compute`` adds one task per computation that assembles the result (``finalize-…``:
concatenating array chunks, joining dataframe partitions, flattening bag partitions). Run by a
worker, its output, often the largest value of the run, is written to the store only to be read
back by the client at once. Run by the client instead, the chunks it needs come from the store
(from shared memory, on one machine) and the assembled value is built once, in the process that
returns it: the same work and memory as with ``scheduler="threads"``, with one full copy of the
result less. Only that step moves; everything else still runs on workers.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from dask._task_spec import DataNode

from daskless.graph import Graph

PREFIX = "finalize-"


def client_steps(graph: Graph, wanted: Sequence[Hashable]) -> dict[Hashable, tuple[Hashable, ...]]:
    """Requested finalize tasks the client runs itself, with their inputs."""
    steps: dict[Hashable, tuple[Hashable, ...]] = {}
    for key in wanted:
        node = graph.get(key)
        if not (isinstance(key, str) and key.startswith(PREFIX)) or node is None:
            continue
        deps = tuple(node.dependencies)
        if not isinstance(node, DataNode) and deps and all(d in graph for d in deps):
            steps[key] = deps
    return steps


def run_keys(wanted: Sequence[Hashable], steps: Mapping[Hashable, tuple[Hashable, ...]]
             ) -> list[Hashable]:
    """What the workers compute: ``wanted`` with each client step replaced by its inputs."""
    keys: dict[Hashable, None] = {}
    for key in wanted:
        for k in steps.get(key, (key,)):
            keys[k] = None
    return list(keys)


def run_step(graph: Graph, key: Hashable, deps: tuple[Hashable, ...],
             values: Mapping[Hashable, object]) -> object:
    """The output of the client step ``key`` from its inputs in ``values``."""
    return graph[key]({d: values[d] for d in deps})
