"""Tests of splitting a partition's first invocation along independent local components."""

from __future__ import annotations

import random
from collections.abc import Hashable

from daskless.scheduler.dag import DAG
from daskless.scheduler.entry_groups import entry_groups
from daskless.scheduler.partition import Partitioning, partition
from tests.scheduler.graphs import dag_of, local_tasks
from tests.scheduler.test_partition import random_dag, tree_reduction


def chains_then_join(n: int) -> DAG:
    """``n`` independent chains source -> work -> piece, joined by one reduction."""
    deps: dict[Hashable, tuple[Hashable, ...]] = {}
    for i in range(n):
        deps[("src", i)] = ()
        deps[("work", i)] = (("src", i),)
        deps[("piece", i)] = (("work", i),)
    deps["join"] = tuple(("piece", i) for i in range(n))
    return dag_of(deps)


def one_part(dag: DAG) -> Partitioning:
    return partition(dag, 1)


def join_apart(dag: DAG) -> Partitioning:
    """The chains in partition 0, their join alone in partition 1 (reached by fan-in)."""
    order = [k for k in one_part(dag).parts[0] if k != "join"]
    assignment = {k: 0 for k in order} | {"join": 1}
    local = frozenset(local_tasks(dag, assignment))
    return Partitioning(assignment, (tuple(order), ("join",)), local)


def test_independent_chains_of_one_partition_are_split_and_balanced() -> None:
    dag = chains_then_join(6)
    groups = entry_groups(dag, join_apart(dag), max_groups=2)
    assert [p for p, _ in groups] == [0, 0]
    assert sorted(len(g) for _, g in groups) == [3, 3]
    assert sorted(k for _, g in groups for k in g) == sorted(("src", i) for i in range(6))


def test_a_connected_local_region_stays_one_invocation() -> None:
    dag = tree_reduction(64)
    assert entry_groups(dag, one_part(dag), max_groups=4) == [
        (0, tuple(k for k in one_part(dag).parts[0] if not dag[k].dependencies))
    ]


def test_never_more_groups_than_asked_and_never_fewer_than_one() -> None:
    dag = chains_then_join(10)
    assert len(entry_groups(dag, join_apart(dag), max_groups=3)) == 3
    assert len(entry_groups(dag, join_apart(dag), max_groups=0)) == 1


def test_entries_keep_their_partition_order() -> None:
    dag = chains_then_join(8)
    parts = join_apart(dag)
    position = {k: i for i, k in enumerate(parts.parts[0])}
    for _, group in entry_groups(dag, parts, max_groups=3):
        assert list(group) == sorted(group, key=position.__getitem__)


def test_every_source_starts_exactly_once_and_no_local_task_spans_two_groups() -> None:
    """The property that makes splitting safe, on random graphs and partitionings."""
    rng = random.Random(7)
    for trial in range(30):
        dag = random_dag(rng, rng.randint(1, 300), n_external=rng.randint(0, 3))
        parts = partition(dag, rng.randint(1, 8), follow_single_input=bool(trial % 2))
        groups = entry_groups(dag, parts, max_groups=rng.randint(1, 4))
        started = [k for _, g in groups for k in g]
        sources = [k for k in dag if not [d for d in dag[k].dependencies if d in dag]]
        assert sorted(map(repr, started)) == sorted(map(repr, sources))
        for p, group in groups:
            assert all(parts.assignment[k] == p for k in group)
        # Local tasks reachable from each group's entries along local edges are disjoint.
        owner: dict[Hashable, int] = {}
        dependents = dag.dependents()
        for i, (_, group) in enumerate(groups):
            stack = list(group)
            while stack:
                key = stack.pop()
                assert owner.setdefault(key, i) == i, f"{key!r} reached from two groups"
                stack.extend(s for s in dependents[key] if s in parts.local
                             and parts.assignment[s] == parts.assignment[key])
