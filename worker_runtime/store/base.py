"""The ``Store`` protocol: everything workers and clients share goes through these primitives.

The protocol is deliberately small. Besides plain reads, every write a worker makes is one
:meth:`Store.deliver` call, which atomically (a) claims an invocation, if asked, (b) commits
outputs (each once), (c) marks fan-in edges and reports which tasks this very call completed,
and (d) appends an event batch, all only while the run is alive *and at the writer's epoch*.
Atomicity makes fan-in marks idempotent (a re-delivered edge never counts twice), cancellation
clean (once the client deletes a run, no worker can write to it again) and recovery safe (once
the client starts a new epoch with :meth:`Store.recover`, no attempt of the old one can write).

Refusals are exceptions: ``RunGoneError`` (the run is gone), ``StaleAttemptError`` (the run is
at another epoch) and ``DuplicateInvocationError`` (the invocation was claimed already), all
of which a worker takes as the sign to stop quietly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from daskless.worker_runtime.events import Event

#: Runs of one structure noted for the planner at most (the oldest are forgotten first).
HISTORY_NOTES = 64


class Mark(NamedTuple):
    """One delivered edge ``upstream -> task``; ``n_deps`` inputs complete the task."""

    task: int
    upstream: int
    n_deps: int


class Claim(NamedTuple):
    """A worker takes invocation ``inv`` over, leased for ``lease_ms`` (see ``renew_leases``)."""

    inv: str
    worker: str
    lease_ms: int


class Lease(NamedTuple):
    """What the store knows of a running invocation's lease."""

    task: int  # the task it last said it was running, -1 before its first renewal
    lapsed: bool  # it ran out (by the store's clock): the worker vanished


class Store(Protocol):
    """Shared state of runs: specs, outputs, fan-in marks, events, persisted data, queues."""

    @property
    def url(self) -> str:
        """Where a worker process connects to reach the same store."""
        ...

    def create_run(self, run_id: str, specs: Mapping[int, bytes], ttl_s: float) -> None:
        """Create a run's keys (alive marker, sub-DAG specs, event stream) with a TTL."""
        ...

    def load_spec(self, run_id: str, partition: int, epoch: int = 1) -> bytes:
        """One partition's serialized sub-DAG of an epoch; ``RunGoneError`` if it is gone."""
        ...

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
        """Atomically claim, commit outputs (first commit wins) and persisted data, mark edges
        and append events, as a writer of ``epoch``.

        Returns the tasks whose last missing input this call delivered (their new owner is the
        caller). Writes nothing and raises when the run is gone, at another epoch, or the
        claimed invocation was taken (see the module docstring).
        """
        ...

    def renew_leases(self, run_id: str, epoch: int, lease_ms: int,
                     running: Mapping[str, int]) -> None:
        """Extend the leases of running invocations (id -> the task each is running)."""
        ...

    def leases(self, run_id: str, invocations: Sequence[str]) -> dict[str, Lease]:
        """The leases of these invocations that the run holds."""
        ...

    def recover(self, run_id: str, epoch: int, new_epoch: int, specs: Mapping[int, bytes],
                lost: Sequence[int], event: Event) -> None:
        """Start ``new_epoch`` of a run that is at ``epoch``: fence the old attempts, forget
        fan-in marks, claims and leases, drop the ``lost`` outputs, store the new sub-DAGs and
        append ``event``, all at once. Repeating the call once it took effect changes nothing
        (a client may resend it when the reply was lost)."""
        ...

    def instance(self) -> str:
        """Who the store is: changes when the server restarts (and forgets every run)."""
        ...

    def committed(self, run_id: str) -> list[int]:
        """The ids of the tasks whose outputs the run holds."""
        ...

    def fetch(self, run_id: str, task_ids: Sequence[int]) -> list[bytes | None]:
        """Stored outputs of tasks, ``None`` where absent."""
        ...

    def read_events(
        self, run_id: str, cursor: str, timeout_s: float
    ) -> tuple[str, list[Event]]:
        """Block until events after ``cursor`` arrive or the timeout passes."""
        ...

    def run_alive(self, run_id: str) -> bool:
        """Whether the run's keys still exist (they go when it ends, is cancelled or expires)."""
        ...

    def delete_run(self, run_id: str) -> None:
        """Remove every key of a run; cancels it for workers still running."""
        ...

    def fetch_persisted(self, names: Sequence[str]) -> list[bytes | None]:
        """Persisted values by name, ``None`` where absent."""
        ...

    def missing_persisted(self, names: Sequence[str]) -> set[str]:
        """Which of these persisted values do not exist."""
        ...

    def delete_persisted(self, names: Sequence[str]) -> None:
        """Release persisted values."""
        ...

    def push_invocations(self, run_id: str, queue: str, payloads: Sequence[bytes],
                         epoch: int = 1) -> None:
        """Queue invocations for a worker pool, only while the run is alive at ``epoch``."""
        ...

    def pop_invocation(self, queue: str, timeout_s: float, hold: str | None = None
                       ) -> bytes | None:
        """Block until an invocation is queued or the timeout passes.

        With ``hold``, the invocation is moved atomically into that list, which is emptied
        first: whoever watches the worker can tell what it held if it dies (:meth:`take_held`).
        """
        ...

    def take_held(self, hold: str) -> list[bytes]:
        """Empty a worker's ``hold`` list and return what it held."""
        ...

    def add_metrics(self, run_id: str, records: Sequence[Any], retention_s: float) -> None:
        """Append a batch of metric records (JSON-able) to the run's metrics stream.

        Metrics are not gated on the run being alive: they outlive its disposable keys and are
        kept for ``retention_s`` seconds after the last batch. One round trip per batch.
        """
        ...

    def read_metrics(
        self, run_id: str, cursor: str, timeout_s: float
    ) -> tuple[str, list[Any]]:
        """Metric records after ``cursor`` (``"0"``: from the start); blocks up to
        ``timeout_s`` when there are none yet (``0``: never blocks)."""
        ...

    def metric_runs(self) -> list[tuple[str, float]]:
        """Runs that still have metrics, as ``(run_id, first record time)``, newest first."""
        ...

    def note_history_run(self, name: str, run_id: str, retention_s: float) -> None:
        """Remember that ``run_id`` ran the structure ``name`` (for the planner to fold in)."""
        ...

    def history(self, name: str) -> tuple[bytes | None, list[str]]:
        """The planner's saved history of ``name`` and the runs noted since (oldest first)."""
        ...

    def save_history(self, name: str, blob: bytes, folded: Sequence[str],
                     retention_s: float) -> None:
        """Replace the history of ``name`` and forget the ``folded`` runs' notes."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
