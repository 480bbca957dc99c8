"""The data that travels between client, store and workers.

A run is described once by the client as one :class:`SubDAG` per partition; tasks are numbered
so that everything in the store is addressed by small integers. A worker receives an
:class:`Invocation` (run id, partition, entry task ids, optionally the sub-DAG inline when it is
small) and reports events (:mod:`daskless.worker_runtime.events`) through the run's stream.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from daskless.worker_runtime.errors import InvocationError


class Successor(NamedTuple):
    """What a producer needs to know about one of its dependents to hand its output over.

    Named tuples rather than dataclasses: a run has one per edge, and tuples are several times
    cheaper to build and to pickle.
    """

    id: int
    partition: int
    n_deps: int
    local: bool


class TaskInfo(NamedTuple):
    """One task as a worker sees it.

    ``node`` is the opaque callable (a Dask ``GraphNode``) called with a mapping of its inputs;
    ``deps``/``dep_keys`` are the in-graph inputs by id and by Dask key, ``external`` the inputs
    read from persisted data. ``local`` tasks only depend on local tasks of their own partition,
    so the invocation that runs the partition's sources runs them with no store traffic.
    ``retries``: how many times the task is run again after it raised (``retries=N``: N + 1
    attempts in all, as in distributed).
    """

    id: int
    key: Hashable
    node: Any
    deps: tuple[int, ...]
    dep_keys: tuple[Hashable, ...]
    external: tuple[Hashable, ...]
    successors: tuple[Successor, ...]
    partition: int
    local: bool
    wanted: bool
    retries: int = 0


@dataclass(frozen=True)
class MetricsSettings:
    """How workers record and upload metrics (``daskless.metrics``; see ``worker_runtime.metrics``).

    ``strategy`` is one of ``task`` (upload after each task), ``batch`` (every ``batch_size``
    records), ``interval`` (every ``interval_s`` seconds) or ``exit`` (once, when the worker
    finishes its invocation). Every strategy uploads what is left when an invocation ends.
    """

    strategy: str = "interval"
    batch_size: int = 256
    interval_s: float = 0.5
    retention_s: float = 7 * 86400


@dataclass(frozen=True)
class TierChoice:
    """Which value tier a run uses (see ``worker_runtime.values``), chosen once by the client.

    ``kind`` is ``pickle``, ``reference``, ``files`` or ``peer``; the last two keep values of
    ``threshold`` bytes or more out of the store, under ``folder`` on this machine.
    """

    kind: str = "pickle"
    folder: str | None = None
    threshold: int = 256 * 1024


@dataclass(frozen=True)
class RunOptions:
    """Run-wide switches every worker needs."""

    persist: bool = False
    persist_ttl_ms: int = 0
    rerun_locally: bool = False
    event_interval_s: float = 0.02
    tier: TierChoice = field(default_factory=TierChoice)
    # A running invocation renews its lease this often (a third of it); one whose lease lapsed
    # is taken as lost (``daskless.lease``).
    lease_ms: int = 10_000
    # The memory (MB) the run's workers are billed at, unless the platform says otherwise
    # (``daskless.worker-memory``).
    memory_mb: int = 1769
    # The size the planner chose per sub-DAG (empty: every one at ``memory_mb``).
    sizes_mb: tuple[int, ...] = ()
    # None: no metrics are recorded for the run.
    metrics: MetricsSettings | None = None

    def memory_of(self, partition: int) -> int:
        """The worker size (MB) sub-DAG ``partition`` runs at."""
        sizes = self.sizes_mb
        return sizes[partition] if 0 <= partition < len(sizes) else self.memory_mb

    def requested_size(self, partition: int) -> int:
        """What an invocation of ``partition`` asks the platform for: its planned size, or 0
        (the platform's one size) when the planner sized nothing."""
        sizes = self.sizes_mb
        return sizes[partition] if 0 <= partition < len(sizes) else 0


@dataclass(frozen=True)
class SubDAG:
    """The tasks of one partition of a run, with the run-wide options."""

    run_id: str
    partition: int
    tasks: dict[int, TaskInfo]
    options: RunOptions = field(default_factory=RunOptions)


@dataclass(frozen=True)
class Invocation:
    """A small request to run ``entries`` (task ids whose inputs are all available).

    It travels as JSON; a serialized sub-DAG rides along inline only when it is small, otherwise
    the worker reads it from the store where the client stored it once. ``id`` names it (the
    first worker to claim it runs it; a duplicate delivery finds it claimed) and ``epoch`` is
    the attempt of the run it belongs to (writes of an older epoch are refused).
    """

    run_id: str
    partition: int
    entries: tuple[int, ...]
    inline_spec: bytes | None = None
    id: str = field(default_factory=lambda: new_invocation_id())
    epoch: int = 1
    #: The worker size (MB) to run it on; 0: the platform's one size. Platforms that start
    #: workers of several sizes (the gateway, Lambda with a function per size) route by it.
    memory_mb: int = 0

    def to_bytes(self) -> bytes:
        body: dict[str, object] = {
            "run": self.run_id,
            "part": self.partition,
            "entries": list(self.entries),
            "id": self.id,
            "epoch": self.epoch,
        }
        if self.memory_mb:
            body["mem"] = self.memory_mb
        if self.inline_spec is not None:
            body["spec"] = base64.b64encode(self.inline_spec).decode("ascii")
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Invocation:
        try:
            body = json.loads(data)
            spec = body.get("spec")
            return cls(
                run_id=str(body["run"]),
                partition=int(body["part"]),
                entries=tuple(int(e) for e in body["entries"]),
                inline_spec=base64.b64decode(spec) if spec is not None else None,
                id=str(body["id"]),
                epoch=int(body["epoch"]),
                memory_mb=int(body.get("mem", 0)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvocationError(f"malformed invocation: {exc}") from exc


def new_invocation_id() -> str:
    """A fresh invocation id: 64 random bits in hex (short, as invocations are JSON)."""
    return os.urandom(8).hex()
