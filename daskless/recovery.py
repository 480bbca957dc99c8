"""Recovery: when work is lost, the run goes on in a new epoch with what is left.

Serverless platforms lose work: a worker dies (the pool or the gateway sees it exit, a Lambda
on-failure record arrives, a lease lapses), an invocation is dropped (made, never taken over),
outputs kept in a dead worker's memory are still needed. The client waits for the run anyway,
so it is the one that notices and acts, as Beldi's intent collector does. It does not re-run
single invocations, whose partial effects (marks delivered, successors claimed, values held
only in memory) cannot be known; it starts a new *epoch* of the run:

1. It reads which outputs the store holds (:func:`surviving_outputs`), dropping those that
   lived in the memory of a process that is gone.
2. It plans the tasks still needed for the requested results from the outputs left
   (:func:`needed_tasks`, ``plan.recovery_plan``), with the same task ids.
3. One atomic store script (``Store.recover``) bumps the epoch, which fences every attempt of
   the old one (their writes are refused from then on, so no late or duplicate attempt ever
   writes), forgets fan-in marks, claims and leases, drops the lost outputs and stores the new
   sub-DAGs, together with a ``RunRecovered`` event that marks where the new epoch begins in
   the event stream.
4. It invokes the new entries.

Within an epoch, every invocation is claimed once (a duplicate delivery finds it claimed and
runs nothing) and every output is committed once (``HSETNX``), so a result is exactly one
committed value whatever the platform delivered twice. A task's exception is retried by the
worker that ran it (``retries``); a worker's death is blamed on the task it ran
(:class:`Blame`), and a task whose workers died ``allowed-failures + 1`` times fails the run
with ``KilledWorker``, as in distributed.

:class:`Attempt` is the client's bookkeeping of one epoch's invocations (made, taken over,
ended), from which it tells a run still going from one whose work was lost.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

from daskless.plan import Plan
from daskless.worker_runtime.errors import KilledWorker
from daskless.worker_runtime.keys import key_name
from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.store.base import Store
from daskless.worker_runtime.values import peer


@dataclass
class _Invocation:
    partition: int
    made: float
    worker: str | None = None
    started: bool = False
    ended: bool = False


@dataclass
class Attempt:
    """What the client knows of one epoch's invocations."""

    epoch: int
    plan: Plan
    invocations: dict[str, _Invocation] = field(default_factory=dict)
    began: float = field(default_factory=time.monotonic)
    last_start: float = field(default_factory=time.monotonic)
    #: When the epoch before began to wait, if it was given up because nothing was taken
    #: over: the start timeout counts from there, not from this epoch's start.
    unserved_since: float | None = None

    def made(self, invocations: Iterable[Invocation]) -> None:
        now = time.monotonic()
        for inv in invocations:
            self.invocations.setdefault(inv.id, _Invocation(inv.partition, now))

    def made_ids(self, ids: Iterable[str], partition: int = -1) -> None:
        now = time.monotonic()
        for inv in ids:
            self.invocations.setdefault(inv, _Invocation(partition, now))

    def started(self, inv: str, partition: int, worker: str) -> None:
        entry = self.invocations.setdefault(inv, _Invocation(partition, time.monotonic()))
        entry.started, entry.worker = True, worker
        self.last_start = time.monotonic()

    def ended(self, inv: str) -> None:
        entry = self.invocations.get(inv)
        if entry is not None:
            entry.ended = True

    def is_running(self, inv: str) -> bool:
        entry = self.invocations.get(inv)
        return entry is not None and entry.started and not entry.ended

    def has_ended(self, inv: str) -> bool:
        entry = self.invocations.get(inv)
        return entry is not None and entry.ended

    def running(self) -> list[str]:
        return [i for i, e in self.invocations.items() if e.started and not e.ended]

    def waiting(self) -> list[tuple[str, float]]:
        """Invocations made and not yet taken over, with how long they have waited."""
        now = time.monotonic()
        return [(i, now - e.made) for i, e in self.invocations.items() if not e.started]

    def idle_since(self) -> float:
        """Since when invocations have waited with none of this run taken over (the clock of
        ``start-timeout``)."""
        if self.unserved_since is not None and not any(
                e.started for e in self.invocations.values()):
            return self.unserved_since
        waiting = [e.made for e in self.invocations.values() if not e.started]
        return max(self.last_start, min(waiting, default=time.monotonic()))

    @property
    def counts(self) -> tuple[int, int, int]:
        """Invocations made, taken over, ended."""
        entries = self.invocations.values()
        return (len(self.invocations), sum(e.started for e in entries),
                sum(e.ended for e in entries))


class Blame:
    """Counts worker deaths per task; too many for one task is ``KilledWorker``."""

    def __init__(self, allowed_failures: int) -> None:
        self.allowed_failures = allowed_failures
        self.deaths: Counter[int] = Counter()

    def death(self, task: int, worker: str, key: Hashable, cause: str = "") -> None:
        """A worker died running ``task`` (``-1``: not known), of ``cause``."""
        if task < 0:
            return
        self.deaths[task] += 1
        if self.deaths[task] > self.allowed_failures:
            raise KilledWorker(key, worker, self.allowed_failures, cause)


def surviving_outputs(store: Store, run_id: str, peer_tier: bool) -> tuple[set[int], list[int]]:
    """The outputs the store holds that can still be read, and those whose value died with the
    process that kept it (only the peer tier keeps values in worker memory)."""
    committed = store.committed(run_id)
    if not peer_tier or not committed:
        return set(committed), []
    lost = [task for task, data in zip(committed, store.fetch(run_id, committed))
            if data is not None and peer.is_reference(data) and not peer.alive(*peer.owner(data))]
    return set(committed) - set(lost), lost


def persisted_results(store: Store, plan: Plan, wanted: Iterable[int]) -> set[int]:
    """Requested tasks of a ``persist`` run whose value is already persisted: a result kept
    only there (it has no successors in the run) is not computed, or written, again."""
    if not plan.options.persist:
        return set()
    names = {key_name(plan.keys[t]): t for t in wanted}
    missing = store.missing_persisted(list(names))
    return {t for name, t in names.items() if name not in missing}


def needed_tasks(plan: Plan, available: set[int], wanted: Iterable[int]) -> set[int]:
    """The tasks to run again for the ``wanted`` results, given the ``available`` outputs."""
    needed: set[int] = set()
    stack = [t for t in wanted if t not in available]
    while stack:
        task = stack.pop()
        if task in needed:
            continue
        needed.add(task)
        stack.extend(d for d in plan.task(task).deps if d not in available and d not in needed)
    return needed


def stored_inputs(plan: Plan, needed: set[int], available: set[int]) -> set[Hashable]:
    """Keys of the available outputs that needed tasks read."""
    keys = plan.keys
    return {keys[d] for t in needed for d in plan.task(t).deps if d in available}


def recovery_reason(reasons: Mapping[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in reasons.items())
