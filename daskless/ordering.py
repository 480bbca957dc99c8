"""Run the side-effecting writers of a disk shuffle in the order dask's own schedulers do.

Dask's disk shuffles (``shuffle_method="disk"``, the default for dataframes when no
distributed client exists, and bag's ``groupby(shuffle="disk")``) are the one place where a
graph's *result* depends on the order its tasks run in. Each input partition is split by a
writer task that appends its pieces to a shared ``partd`` store on disk; a ``barrier`` task
depends on every writer, and each output partition is read back (``collect``) after the
barrier, as the concatenation of the pieces *in the order they were appended*. The rows of an
unsorted groupby, ``drop_duplicates`` or bag group therefore come out in writer order.

dask's local schedulers (sync, threads, processes) run tasks by the priorities of
``dask.order``, so the writers append in that order and those schedulers agree with each
other. daskless workers run partitions side by side and follow no global priority, so the
writers used to append in whatever order workers reached them, and ``.head()`` showed other
rows than under dask. Sorting results afterwards would hide that, and would be wrong for
operations whose order is meaningful.

:func:`sequenced_writers` therefore finds each barrier whose function is one of dask's
shuffle barriers, orders its inputs by ``dask.order`` and returns an ordering edge from each
writer to the next: writer ``i + 1`` gets writer ``i`` as an extra dependency. The plan adds
those edges before partitioning, so the writers append one after the other in dask's order on
every backend, while everything upstream of them still runs in parallel. A writer's output is
``None``, so an extra edge moves no data; a task ignores inputs it does not reference.
``dask.order`` runs only for graphs that hold such a barrier, so other graphs pay one pass
over their nodes' functions.
"""

from __future__ import annotations

from collections.abc import Hashable

from dask._task_spec import Task

from daskless.graph import Graph

#: Modules of the functions named ``barrier`` that dask runs after a disk shuffle's writers.
BARRIER_MODULES = frozenset({"dask.dataframe.shuffle", "dask.bag.chunk"})


def shuffle_barriers(graph: Graph) -> list[Hashable]:
    """Keys of the tasks that wait for a disk shuffle's writers (about 0.1 µs per node)."""
    found = []
    for key, node in graph.items():
        func = node.func if type(node) is Task else None
        # The name first: one string comparison rules out almost every task.
        if getattr(func, "__name__", None) == "barrier" and \
                getattr(func, "__module__", None) in BARRIER_MODULES:
            found.append(key)
    return found


def sequenced_writers(graph: Graph) -> dict[Hashable, Hashable]:
    """Ordering edges ``{writer: previous writer}`` that make writers append in dask's order."""
    barriers = shuffle_barriers(graph)
    if not barriers:
        return {}
    from dask.order import order  # only graphs with a disk shuffle pay for it

    priority = order(graph)  # type: ignore[arg-type]  # dask types keys narrower than Hashable
    edges: dict[Hashable, Hashable] = {}
    for barrier in barriers:
        writers = sorted((k for k in graph[barrier].dependencies if k in graph),
                         key=priority.__getitem__)
        edges.update(zip(writers[1:], writers[:-1]))
    return edges
