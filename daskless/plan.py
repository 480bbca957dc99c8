"""Turn a task graph into a run plan: the DAG, its partitions and one sub-DAG spec per partition.

The plan is everything the client decides before a run starts (invariant: afterwards it never
decides what runs next). Tasks get small integer ids; each ``TaskInfo`` carries what a worker
needs to run the task and to hand its output over to each successor (partition, number of
inputs, whether the successor is local to its partition), and how often to retry it.

When a run recovers from lost work (``daskless/recovery.py``), :func:`recovery_plan` plans what
is left the same way: the tasks still needed, partitioned anew, with the same ids, reading the
outputs that survived from the store as inputs that are already there.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace

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

    def task(self, task_id: int) -> TaskInfo:
        """A task of this plan by id."""
        key = self.keys[task_id]
        return self.specs[self.parts.assignment[key]].tasks[task_id]


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
    retries: Retries | None = None,
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
    described = _Described(run_id, ids, set(wanted), options, retries or Retries())
    specs = _specs(dag, parts, described)
    return Plan(dag, ids, keys, parts, specs, _entries(dag, parts, ids, workers),
                wanted_external, options)


def recovery_plan(plan: Plan, run_id: str, needed: set[Hashable], stored: set[Hashable],
                  parallelism: int, workers: int, retries: Retries) -> Plan:
    """Plan the ``needed`` tasks of ``plan`` anew, ``stored`` being outputs already there.

    Task ids stay those of ``plan`` (outputs in the store are addressed by them); only the
    partitions, sub-DAGs and entries are new. A stored input is read from the store when its
    task runs, and counts neither for the fan-in of its consumer nor for its locality.
    """
    nodes = {k: plan.dag.nodes[k] for k in needed}
    dag = DAG(nodes, external=set(plan.dag.external) | stored)
    parts = partition(dag, max(1, min(parallelism, len(nodes) // 4)), follow_single_input=True)
    wanted = {k for k in plan.dag.nodes if plan.task(plan.ids[k]).wanted}
    options = plan.options
    if options.sizes_mb:  # the planner's sizes were per old sub-DAG: the new ones get one size
        options = replace(options, sizes_mb=(options.memory_mb,) * len(parts.parts))
    described = _Described(run_id, plan.ids, wanted, options, retries, stored)
    specs = _specs(dag, parts, described)
    return Plan(dag, plan.ids, plan.keys, parts, specs, _entries(dag, parts, plan.ids, workers),
                plan.wanted_external, options)


def _entries(dag: DAG, parts: Partitioning, ids: Mapping[Hashable, int],
             workers: int) -> list[tuple[int, tuple[int, ...]]]:
    # Independent pieces of a partition start as separate invocations, so idle workers share
    # them (see daskless.scheduler.entry_groups).
    return [(p, tuple([ids[k] for k in group])) for p, group in entry_groups(dag, parts, workers)]


@dataclass(frozen=True)
class Retries:
    """How often tasks are retried after an exception: ``default`` for every task, ``by_key``
    for the keys ``dask.annotate(retries=...)`` names (see ``Engine``)."""

    default: int = 0
    by_key: Mapping[Hashable, int] = field(default_factory=dict)

    def of(self, key: Hashable) -> int:
        return int(self.by_key.get(key, self.default))


@dataclass(frozen=True)
class _Described:
    """What every task of one plan's sub-DAGs shares."""

    run_id: str
    ids: Mapping[Hashable, int]
    wanted: set[Hashable]
    options: RunOptions
    retries: Retries
    stored: set[Hashable] = field(default_factory=set)


def _specs(dag: DAG, parts: Partitioning, described: _Described) -> dict[int, SubDAG]:
    nodes, assignment, local = dag.nodes, parts.assignment, parts.local
    ids, stored = described.ids, described.stored
    dependents = dag.dependents()
    in_graph = {k: tuple(d for d in nodes[k].dependencies if d in nodes) for k in nodes}
    # One Successor per task, shared by all its producers; only inputs made in this plan count.
    successor = {
        k: Successor(ids[k], assignment[k], len(in_graph[k]), k in local) for k in nodes
    }
    specs: dict[int, SubDAG] = {}
    for p, part in enumerate(parts.parts):
        tasks: dict[int, TaskInfo] = {}
        for key in part:
            node = nodes[key]
            deps = in_graph[key] if not stored else tuple(
                d for d in node.dependencies if d in nodes or d in stored)
            tasks[ids[key]] = TaskInfo(
                ids[key],
                key,
                node.payload,
                tuple([ids[d] for d in deps]),
                deps,
                tuple([d for d in node.dependencies if d not in nodes and d not in stored])
                if len(deps) != len(node.dependencies) else (),
                tuple([successor[s] for s in dependents[key]]),
                p,
                key in local,
                key in described.wanted,
                described.retries.of(key),
            )
        specs[p] = SubDAG(described.run_id, p, tasks, described.options)
    return specs
