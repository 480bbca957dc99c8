"""What workers measure about a run, buffered in memory and uploaded to the store by a policy.

Each invocation gets a :class:`Recorder`. The worker loop calls it at a few points (the sub-DAG
was loaded, inputs were fetched, a task ran or failed, a flush delivered outputs and marks, the
invocation ends); the recorder appends to in-memory buffers (a task's id and times go into
columns, other points make one small list each) and checks its :class:`UploadPolicy`'s
thresholds. An upload is one pipelined ``Store.add_metrics`` call (one round trip) to the run's
metrics stream, which lives apart from the run's disposable keys and outlives them
(``daskless.metrics.retention``).

Policies (``daskless.metrics.strategy``): ``task`` uploads after every task, ``batch`` every
``batch-size`` records, ``interval`` every ``interval`` seconds (checked after each task), ``exit``
once at the end of the invocation. Every policy uploads what is left when an invocation ends, so a
worker that finishes normally loses nothing; a worker killed mid-run loses at most what it had
buffered since its last upload.

Records are JSON lists (the first item names the kind; ``inv`` is the invocation id):

- ``["inv", inv, worker, partition, n_entries, t, cold, startup_s, spec_s, spec_inline,
  memory_mb, cpu_period_s]``: ``memory_mb`` is the size the worker is billed at,
  ``cpu_period_s`` the CPU bandwidth period it runs under (0: none; see
  :func:`~daskless.worker_runtime.cpu_limits.bandwidth_period_s`)
- ``["tasks", inv, n, ids, starts, ends, [[i, input_id, nbytes, download_s], ...], sizes]``:
  the ``n`` tasks that ran since the last upload, as columns packed by
  :mod:`daskless.worker_runtime.columns` (task ids and output sizes as ``INT``, start and end
  times as ``FLOAT``); inputs are those read from the store only (the others were in this
  worker's memory), ``i`` indexing the columns. ``sizes`` is each output's size in memory
  (``dask.sizeof``, what dask's own scheduler measures), so that every task's output size is
  known, stored or not: the planner predicts transfers and input-dependent durations from it.
  :func:`expand` turns such a record into one ``["task", inv, task_id, t_start, t_end,
  [[input_id, nbytes, download_s], ...], size]`` per task, the form readers use.
- ``["err", inv, task_id, t_start, t_end, attempt, exception type, message, traceback]``: one
  per failed attempt, so a task that raised and then succeeded on a retry shows both
- ``["flush", inv, t_start, t_end, [[task_id, nbytes], ...], [producer ids of marks]]``
- ``["end", inv, t, n_tasks, dropped]``

The client adds ``run`` and ``run-end`` records (plan and client-side timings).
"""

from __future__ import annotations

import math
import os
import threading
import time
import traceback
import uuid
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from daskless.worker_runtime.columns import FLOAT, INT, pack, unpack
from daskless.worker_runtime.cpu_limits import bandwidth_period_s
from daskless.worker_runtime.protocol import Invocation, MetricsSettings, TaskInfo
from daskless.worker_runtime.store.base import Mark, Store

STRATEGIES = ("task", "batch", "interval", "exit")
_IMPORTED_AT = time.time()
_seen_workers: set[str] = set()
_bandwidth_period: float | None = None
_seen_lock = threading.Lock()


@dataclass(frozen=True)
class UploadPolicy:
    """When buffered records are uploaded: once ``records`` wait, or ``seconds`` after the last
    upload, whichever comes first (checked after each task).

    Two thresholds rather than a method: the recorder compares them after every task, and a
    call there cost as much as the rest of the recording.
    """

    records: float = math.inf
    seconds: float = math.inf


def policy_for(settings: MetricsSettings) -> UploadPolicy:
    """The policy a strategy name stands for; ``ValueError`` names the valid ones."""
    if settings.strategy == "task":
        return UploadPolicy(records=1)  # nothing is ever lost; one round trip per task
    if settings.strategy == "batch":
        return UploadPolicy(records=max(1, settings.batch_size))
    if settings.strategy == "interval":
        return UploadPolicy(seconds=settings.interval_s)
    if settings.strategy == "exit":
        return UploadPolicy()
    raise ValueError(
        f"unknown metrics strategy {settings.strategy!r}; expected one of {', '.join(STRATEGIES)}"
    )


class MetricsRecorder(Protocol):
    """The hooks the worker loop calls (see the module docstring for the records they make)."""

    def fetch(self, store: Store, run_id: str, task_ids: Sequence[int]) -> list[bytes | None]:
        """``store.fetch``, remembering each input's size and the download time."""
        ...

    def task(self, info: TaskInfo, start: float, end: float, value: object) -> None:
        """A task ran and returned ``value``; may upload, as the policy says."""
        ...

    def failed(self, task_id: int, start: float, attempt: int, exc: BaseException) -> None:
        """A task's ``attempt`` (1, 2, ...) raised ``exc``."""
        ...

    def flushed(self, start: float, outputs: Mapping[int, bytes], marks: Sequence[Mark]) -> None:
        """The outbox delivered these outputs and marks (the delivery began at ``start``)."""
        ...

    def finish(self) -> None:
        """The invocation ends: upload everything left."""
        ...


class Recorder:
    """Metrics of one invocation; see the module docstring."""

    def __init__(self, store: Store, run_id: str, settings: MetricsSettings) -> None:
        self.store = store
        self.run_id = run_id
        self.retention_s = settings.retention_s
        self.policy = policy_for(settings)
        self.inv = uuid.uuid4().hex[:12]
        self.records: list[list[Any]] = []
        self.downloads: dict[int, tuple[int, float]] = {}
        # The "tasks" columns waiting for the next upload.
        self.ids, self.starts, self.ends = array(INT), array(FLOAT), array(FLOAT)
        self.sizes = array(INT)
        self.inputs: list[list[Any]] = []
        # Imported here: the worker runtime itself does not depend on dask, its tasks do.
        from dask.sizeof import sizeof

        self._sizeof = sizeof
        self._sizers: dict[type, Any] = {}
        self.tasks = 0
        self.dropped = 0
        self.deadline = time.time() + self.policy.seconds

    def started(self, worker_id: str, invocation: Invocation, spec_s: float,
                memory_mb: int = 0, cold: bool | None = None) -> None:
        """The invocation began (``cold``: the first its worker serves; None: find out)."""
        worker = _lane(worker_id)
        if cold is None:
            cold = first_invocation(worker_id)
        startup = _process_startup_s() if cold else None
        self.records.append([
            "inv", self.inv, worker, invocation.partition, len(invocation.entries), time.time(),
            cold, startup, spec_s, invocation.inline_spec is not None, memory_mb,
            _own_period_s(),
        ])
        if len(self.records) >= self.policy.records:  # "task": the start is news too
            self.upload()

    def fetch(self, store: Store, run_id: str, task_ids: Sequence[int]) -> list[bytes | None]:
        """``store.fetch`` with each input's size and the download time remembered."""
        start = time.perf_counter()
        blobs = store.fetch(run_id, task_ids)
        seconds = time.perf_counter() - start
        for task_id, blob in zip(task_ids, blobs):
            self.downloads[task_id] = (len(blob) if blob is not None else 0, seconds)
        return blobs

    def task(self, info: TaskInfo, start: float, end: float, value: object) -> None:
        downloads = self.downloads
        if downloads:
            at = len(self.ids)
            self.inputs.extend([at, d, *downloads[d]] for d in info.deps if d in downloads)
        self.ids.append(info.id)
        self.starts.append(start)
        self.ends.append(end)
        sizer = self._sizers.get(type(value))
        if sizer is None:  # dask's dispatch, once per type (a lookup per task cost twice as much)
            sizer = self._sizers[type(value)] = self._sizeof.dispatch(type(value))
        self.sizes.append(sizer(value))
        if len(self.ids) + len(self.records) >= self.policy.records or end >= self.deadline:
            self.upload()

    def failed(self, task_id: int, start: float, attempt: int, exc: BaseException) -> None:
        frames = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.records.append(["err", self.inv, task_id, start, time.time(), attempt,
                             type(exc).__name__, str(exc)[:2000], frames[-8000:]])

    def flushed(self, start: float, outputs: Mapping[int, bytes], marks: Sequence[Mark]) -> None:
        sizes = [[t, len(v)] for t, v in outputs.items()]
        self.records.append(
            ["flush", self.inv, start, time.time(), sizes, [m.upstream for m in marks]]
        )

    def finish(self) -> None:
        """The invocation ends: upload everything that is left."""
        self._take_tasks()
        self.records.append(["end", self.inv, time.time(), self.tasks, self.dropped])
        self.upload()

    def upload(self) -> None:
        self._take_tasks()
        records, self.records = self.records, []
        self.deadline = time.time() + self.policy.seconds
        try:
            self.store.add_metrics(self.run_id, records, self.retention_s)
        except Exception:
            # Metrics never fail a run; the reader sees the gap (and ``dropped`` on ``end``).
            self.dropped += sum(r[2] if r[0] == "tasks" else 1 for r in records)

    def _take_tasks(self) -> None:
        """Move the buffered task columns into one ``tasks`` record."""
        if not self.ids:
            return
        self.tasks += len(self.ids)
        self.records.append([
            "tasks", self.inv, len(self.ids), pack(self.ids, INT), pack(self.starts, FLOAT),
            pack(self.ends, FLOAT), self.inputs, pack(self.sizes, INT),
        ])
        self.ids, self.starts, self.ends = array(INT), array(FLOAT), array(FLOAT)
        self.sizes = array(INT)
        self.inputs = []


class NoRecorder:
    """Metrics off: every hook is a no-op, so the worker loop needs no branches."""

    def fetch(self, store: Store, run_id: str, task_ids: Sequence[int]) -> list[bytes | None]:
        return store.fetch(run_id, task_ids)

    def task(self, info: TaskInfo, start: float, end: float, value: object) -> None:
        pass

    def failed(self, task_id: int, start: float, attempt: int, exc: BaseException) -> None:
        pass

    def flushed(self, start: float, outputs: Mapping[int, bytes], marks: Sequence[Mark]) -> None:
        pass

    def finish(self) -> None:
        pass


def recorder_for(
    store: Store, worker_id: str, invocation: Invocation, settings: MetricsSettings | None,
    spec_s: float, memory_mb: int = 0,
) -> MetricsRecorder:
    """The recorder of one invocation (a no-op one when the run records no metrics);
    ``memory_mb``: what the run's client says workers have (see :func:`billed_memory_mb`)."""
    # Counted with metrics off too: a worker warmed by a run without metrics is warm.
    cold = first_invocation(worker_id)
    if settings is None:
        return NoRecorder()
    recorder = Recorder(store, invocation.run_id, settings)
    recorder.started(worker_id, invocation, spec_s, billed_memory_mb(memory_mb), cold)
    return recorder


def _own_period_s() -> float:
    """This process's CPU bandwidth period, read once (about 70 us of file reads): the
    gateway and the emulator put an instance in its group before it serves anything."""
    global _bandwidth_period
    if _bandwidth_period is None:
        _bandwidth_period = bandwidth_period_s()
    return _bandwidth_period


def first_invocation(worker_id: str) -> bool:
    """Whether this is the first invocation worker ``worker_id`` of this process serves
    (a cold start)."""
    with _seen_lock:
        cold = worker_id not in _seen_workers
        _seen_workers.add(worker_id)
    return cold


def billed_memory_mb(configured: int) -> int:
    """The memory this worker is billed at: a Lambda function's own (the platform sets
    ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``), else what the client configured."""
    own = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    return int(own) if own.isdigit() else configured


def expand(records: Iterable[list[Any]]) -> Iterator[list[Any]]:
    """The records with each ``tasks`` record replaced by one ``task`` record per task."""
    for record in records:
        if record[0] != "tasks":
            yield record
            continue
        _, inv, _n, ids, starts, ends, inputs, *rest = record
        # Records of older workers have no sizes column.
        sizes = unpack(rest[0], INT) if rest else [None] * _n
        per_task: dict[int, list[list[Any]]] = {}
        for i, input_id, nbytes, download_s in inputs:
            per_task.setdefault(i, []).append([input_id, nbytes, download_s])
        for i, (task_id, start, end, size) in enumerate(
            zip(unpack(ids, INT), unpack(starts, FLOAT), unpack(ends, FLOAT), sizes)
        ):
            yield ["task", inv, task_id, start, end, per_task.get(i, []), size]


def _lane(worker_id: str) -> str:
    """Thread workers share one worker id; their thread name tells them apart."""
    thread = threading.current_thread()
    if thread is threading.main_thread():
        return worker_id
    return f"{worker_id}/{thread.name}"


def _process_startup_s() -> float | None:
    """Seconds from this process's start until the worker runtime was imported."""
    try:
        import psutil

        return max(0.0, _IMPORTED_AT - psutil.Process(os.getpid()).create_time())
    except Exception:  # psutil missing or the platform hides process times
        return None
