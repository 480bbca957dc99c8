"""Turn a task graph into a run plan: the DAG, its partitions and one sub-DAG spec per partition.

The plan is everything the client decides before a run starts (invariant: afterwards it never
decides what runs next). Tasks get small integer ids; each ``TaskInfo`` carries what a worker
needs to run the task and to hand its output over to each successor (partition, number of
inputs, whether the successor is local to its partition).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

from daskless.graph import Graph
from daskless.ordering import sequenced_writers
from daskless.scheduler.dag import DAG, Node
from daskless.scheduler.entry_groups import entry_groups
from daskless.scheduler.partition import Partitioning, partition
from daskless.scheduler.validation import validate
from daskless.worker_runtime.keys import key_name
from daskless.worker_runtime.protocol import RunOptions, SubDAG, Successor, TaskInfo

MissingFn = Callable[[Sequence[str]], set[str]]


@dataclass(frozen=True)
class Plan:
    """A validated, partitioned run."""

    dag: DAG
    ids: dict[Hashable, int]
    keys: list[Hashable]
    parts: Partitioning
    specs: dict[int, SubDAG]
    entries: list[tuple[int, tuple[int, ...]]]
    """The first invocations: (partition, entry task ids), several per partition at times."""
    wanted_external: list[Hashable]
    options: RunOptions


def cull(graph: Graph, wanted: Sequence[Hashable],
         after: Mapping[Hashable, Hashable] | None = None,
         ) -> tuple[dict[Hashable, Node], set[Hashable]]:
    """The nodes needed for ``wanted`` and the keys they need from outside the graph.

    ``after`` adds ordering edges ``{task: task it must follow}`` (see
    :mod:`daskless.ordering`) to the dependencies the nodes carry.
    """
    nodes: dict[Hashable, Node] = {}
    external: set[Hashable] = set()
    stack = [k for k in wanted if k in graph]
    while stack:
        key = stack.pop()
        if key in nodes:
            continue
        deps = tuple(graph[key].dependencies)
        if after and key in after:
            deps += (after[key],)
        nodes[key] = Node(key, graph[key], deps)
        for dep in deps:
            if dep in graph:
                if dep not in nodes:
                    stack.append(dep)
            else:
                external.add(dep)
    return nodes, external


def check_requested(graph: Graph, wanted: Sequence[Hashable], missing: MissingFn) -> list[Hashable]:
    """Requested keys that are not in the graph must be persisted data, else ``KeyError``."""
    outside = [k for k in wanted if k not in graph]
    absent = missing([key_name(k) for k in outside])
    for key in outside:
        if key_name(key) in absent:
            raise KeyError(key)
    return outside


def make_plan(
    run_id: str,
    graph: Graph,
    wanted: Sequence[Hashable],
    parallelism: int,
    missing: MissingFn,
    options: RunOptions,
    workers: int = 1,
) -> Plan:
    """Validate, partition and describe a run; see the module docstring."""
    wanted_external = check_requested(graph, wanted, missing)
    nodes, external = cull(graph, wanted, sequenced_writers(graph))
    absent = missing([key_name(k) for k in external])
    available = {k for k in external if key_name(k) not in absent}
    dag = DAG(nodes, external=available)
    validate(dag)
    parts = partition(dag, parallelism, follow_single_input=True)
    keys = [k for part in parts.parts for k in part]
    ids = {k: i for i, k in enumerate(keys)}
    specs = _specs(run_id, dag, parts, ids, set(wanted), options)
    # Independent pieces of a partition start as separate invocations, so idle workers share
    # them (see daskless.scheduler.entry_groups).
    entries = [(p, tuple([ids[k] for k in group]))
               for p, group in entry_groups(dag, parts, workers)]
    return Plan(dag, ids, keys, parts, specs, entries, wanted_external, options)


def _in_graph_deps(dag: DAG, key: Hashable) -> tuple[Hashable, ...]:
    nodes = dag.nodes
    return tuple(d for d in nodes[key].dependencies if d in nodes)


def _specs(
    run_id: str,
    dag: DAG,
    parts: Partitioning,
    ids: dict[Hashable, int],
    wanted: set[Hashable],
    options: RunOptions,
) -> dict[int, SubDAG]:
    nodes, assignment, local = dag.nodes, parts.assignment, parts.local
    dependents = dag.dependents()
    in_graph = {k: _in_graph_deps(dag, k) for k in nodes}
    # One Successor per task, shared by all its producers.
    successor = {
        k: Successor(ids[k], assignment[k], len(in_graph[k]), k in local) for k in nodes
    }
    specs: dict[int, SubDAG] = {}
    for p, part in enumerate(parts.parts):
        tasks: dict[int, TaskInfo] = {}
        for key in part:
            deps = in_graph[key]
            node = nodes[key]
            tasks[ids[key]] = TaskInfo(
                ids[key],
                key,
                node.payload,
                tuple([ids[d] for d in deps]),
                deps,
                tuple([d for d in node.dependencies if d not in nodes])
                if len(deps) != len(node.dependencies) else (),
                tuple([successor[s] for s in dependents[key]]),
                p,
                key in local,
                key in wanted,
            )
        specs[p] = SubDAG(run_id, p, tasks, options)
    return specs
