"""``MemoryStore``: the in-process twin of the Redis store, for thread workers.

It keeps exactly the semantics of :class:`RedisStore` (outputs committed once, idempotent marks,
writes gated on the run and its epoch, claims and leases, blocking event reads) under one lock,
so the protocol can be tested and run without a server. It cannot be shared between processes.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from daskless.worker_runtime.errors import (
    DuplicateInvocationError,
    RunGoneError,
    StaleAttemptError,
)
from daskless.worker_runtime.events import Event, RunCreated
from daskless.worker_runtime.store.base import HISTORY_NOTES, Claim, Lease, Mark

_ids = itertools.count()
# The process's memory is the only place metrics live here: keep the most recent runs only.
MAX_METRIC_RUNS = 200


@dataclass
class _Run:
    specs: dict[tuple[int, int], bytes]  # (epoch, partition) -> sub-DAG
    outputs: dict[int, bytes] = field(default_factory=dict)
    edges: set[tuple[int, int]] = field(default_factory=set)
    counts: dict[int, int] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    epoch: int = 1
    claims: dict[str, str] = field(default_factory=dict)
    leases: dict[str, tuple[float, int]] = field(default_factory=dict)  # until, current task


class MemoryStore:
    """In-process store; see the module docstring."""

    def __init__(self) -> None:
        self._url = f"memory://{next(_ids)}"
        self._runs: dict[str, _Run] = {}
        self._data: dict[str, bytes] = {}
        self._queues: dict[str, deque[bytes]] = {}
        # run id -> (first record time, expiry time, records); metrics outlive the runs.
        self._metrics: dict[str, tuple[float, float, list[Any]]] = {}
        self._histories: dict[str, bytes] = {}
        self._history_runs: dict[str, list[str]] = {}
        self._changed = threading.Condition(threading.Lock())

    @property
    def url(self) -> str:
        return self._url

    def create_run(self, run_id: str, specs: Mapping[int, bytes], ttl_s: float) -> None:
        with self._changed:
            self._runs[run_id] = _Run(specs={(1, p): s for p, s in specs.items()},
                                      events=[RunCreated(time.time())])

    def _run(self, run_id: str, epoch: int | None = None) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise RunGoneError(f"run {run_id} is gone")
        if epoch is not None and run.epoch != epoch:
            raise StaleAttemptError(f"run {run_id} moved on from epoch {epoch}")
        return run

    def load_spec(self, run_id: str, partition: int, epoch: int = 1) -> bytes:
        with self._changed:
            spec = self._run(run_id).specs.get((epoch, partition))
            if spec is None:
                raise RunGoneError(f"run {run_id} (epoch {epoch}) is gone")
            return spec

    def deliver(
        self,
        run_id: str,
        outputs: Mapping[int, bytes] = {},
        marks: Sequence[Mark] = (),
        events: Sequence[Event] = (),
        persisted: Mapping[str, bytes] = {},
        persist_ttl_ms: int = 0,
        epoch: int = 1,
        claim: Claim | None = None,
    ) -> list[int]:
        with self._changed:
            run = self._run(run_id, epoch)
            if claim is not None:
                if claim.inv in run.claims:
                    raise DuplicateInvocationError(
                        f"an invocation of run {run_id} was taken over already")
                run.claims[claim.inv] = claim.worker
                run.leases[claim.inv] = (time.monotonic() + claim.lease_ms / 1000, -1)
            for task, value in outputs.items():
                run.outputs.setdefault(task, value)  # committed once: the first value stays
            self._data.update(persisted)
            completed = [m.task for m in marks if self._mark(run, m)]
            if events:
                run.events.extend(events)
                self._changed.notify_all()
            return completed

    @staticmethod
    def _mark(run: _Run, mark: Mark) -> bool:
        edge = (mark.task, mark.upstream)
        if edge in run.edges:
            return False
        run.edges.add(edge)
        count = run.counts.get(mark.task, 0) + 1
        run.counts[mark.task] = count
        return count == mark.n_deps

    def committed(self, run_id: str) -> list[int]:
        with self._changed:
            return list(self._run(run_id).outputs)

    def fetch(self, run_id: str, task_ids: Sequence[int]) -> list[bytes | None]:
        with self._changed:
            outputs = self._run(run_id).outputs
            return [outputs.get(t) for t in task_ids]

    def read_events(
        self, run_id: str, cursor: str, timeout_s: float
    ) -> tuple[str, list[Event]]:
        start = int(cursor)
        with self._changed:
            run = self._run(run_id)
            if len(run.events) <= start:
                self._changed.wait(timeout_s)
                run = self._run(run_id)
            return str(len(run.events)), run.events[start:]

    def renew_leases(self, run_id: str, epoch: int, lease_ms: int,
                     running: Mapping[str, int]) -> None:
        with self._changed:
            run = self._run(run_id, epoch)
            until = time.monotonic() + lease_ms / 1000
            run.leases.update((inv, (until, task)) for inv, task in running.items())

    def leases(self, run_id: str, invocations: Sequence[str]) -> dict[str, Lease]:
        with self._changed:
            leases, now = self._run(run_id).leases, time.monotonic()
            return {inv: Lease(leases[inv][1], leases[inv][0] < now)
                    for inv in invocations if inv in leases}

    def recover(self, run_id: str, epoch: int, new_epoch: int, specs: Mapping[int, bytes],
                lost: Sequence[int], event: Event) -> None:
        with self._changed:
            if self._run(run_id).epoch == new_epoch:  # this call ran already (as in Redis)
                return
            run = self._run(run_id, epoch)
            run.epoch = new_epoch
            run.edges.clear()
            run.counts.clear()
            run.claims.clear()
            run.leases.clear()
            run.specs.update(((new_epoch, p), s) for p, s in specs.items())
            for task in lost:
                run.outputs.pop(task, None)
            run.events.append(event)
            self._changed.notify_all()

    def instance(self) -> str:
        return self._url

    def run_alive(self, run_id: str) -> bool:
        with self._changed:
            return run_id in self._runs

    def delete_run(self, run_id: str) -> None:
        with self._changed:
            self._runs.pop(run_id, None)
            self._changed.notify_all()

    def fetch_persisted(self, names: Sequence[str]) -> list[bytes | None]:
        with self._changed:
            return [self._data.get(n) for n in names]

    def missing_persisted(self, names: Sequence[str]) -> set[str]:
        with self._changed:
            return {n for n in names if n not in self._data}

    def delete_persisted(self, names: Sequence[str]) -> None:
        with self._changed:
            for name in names:
                self._data.pop(name, None)

    def push_invocations(self, run_id: str, queue: str, payloads: Sequence[bytes],
                         epoch: int = 1) -> None:
        with self._changed:
            self._run(run_id, epoch)
            self._queues.setdefault(queue, deque()).extend(payloads)
            self._changed.notify_all()

    def pop_invocation(self, queue: str, timeout_s: float, hold: str | None = None
                       ) -> bytes | None:
        with self._changed:
            if hold is not None:
                self._queues.pop(hold, None)
            pending = self._queues.setdefault(queue, deque())
            if not pending:
                self._changed.wait_for(lambda: bool(pending), timeout_s)
            if not pending:
                return None
            payload = pending.popleft()
            if hold is not None:
                self._queues[hold] = deque([payload])
            return payload

    def take_held(self, hold: str) -> list[bytes]:
        with self._changed:
            return list(self._queues.pop(hold, ()))

    def add_metrics(self, run_id: str, records: Sequence[Any], retention_s: float) -> None:
        # A JSON round trip gives records exactly the shape Redis readers see (lists, str keys).
        decoded = json.loads(json.dumps(list(records)))
        now = time.time()
        with self._changed:
            self._drop_expired_metrics(now)
            first, _expiry, held = self._metrics.get(run_id, (now, now, []))
            held.extend(decoded)
            self._metrics[run_id] = (first, now + retention_s, held)
            while len(self._metrics) > MAX_METRIC_RUNS:
                oldest = min(self._metrics, key=lambda r: self._metrics[r][0])
                del self._metrics[oldest]
            self._changed.notify_all()

    def _drop_expired_metrics(self, now: float) -> None:
        for run_id in [r for r, (_, expiry, _) in self._metrics.items() if expiry < now]:
            del self._metrics[run_id]

    def read_metrics(
        self, run_id: str, cursor: str, timeout_s: float
    ) -> tuple[str, list[Any]]:
        start = int(cursor)
        with self._changed:
            if len(self._metrics.get(run_id, (0, 0, []))[2]) <= start and timeout_s > 0:
                self._changed.wait(timeout_s)
            records = self._metrics.get(run_id, (0, 0, []))[2]
            return str(max(start, len(records))), records[start:]

    def metric_runs(self) -> list[tuple[str, float]]:
        with self._changed:
            self._drop_expired_metrics(time.time())
            runs = [(run_id, first) for run_id, (first, _, _) in self._metrics.items()]
        return sorted(runs, key=lambda r: r[1], reverse=True)

    def note_history_run(self, name: str, run_id: str, retention_s: float) -> None:
        with self._changed:
            self._history_runs.setdefault(name, []).append(run_id)
            del self._history_runs[name][:-HISTORY_NOTES]

    def history(self, name: str) -> tuple[bytes | None, list[str]]:
        with self._changed:
            return self._histories.get(name), list(self._history_runs.get(name, ()))

    def save_history(self, name: str, blob: bytes, folded: Sequence[str],
                     retention_s: float) -> None:
        with self._changed:
            self._histories[name] = blob
            gone = set(folded)
            self._history_runs[name] = [r for r in self._history_runs.get(name, ())
                                        if r not in gone]

    def close(self) -> None:
        """Nothing to release."""
