"""The client's part of a run's metrics, and the hooks that reports listen to.

Workers record what happens inside a run (``daskless.worker_runtime.metrics``); the client adds what
only it knows: the plan (every task's key, partition and inputs, see :func:`task_columns`)
in a ``run`` record written while the workers start, and its own timings (graph conversion,
partitioning, submission, waiting, collecting results, total) with the run's outcome in a
``run-end`` record. Both go to the same per-run metrics stream, so a report or the dashboard
reads one place.

:class:`RunListener` objects (``performance_report``) are told when a run starts and ends in
this process; :func:`listening` registers one for the duration of a ``with`` block.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from daskless import config
from daskless.exceptions import ConfigurationError
from daskless.plan import Plan
from daskless.worker_runtime.metrics import STRATEGIES
from daskless.worker_runtime.protocol import MetricsSettings
from daskless.worker_runtime.store.base import Store


class RunListener(Protocol):
    """Told about the runs of this process (for example to write a report afterwards)."""

    def run_finished(self, store: Store, run_id: str) -> None:
        """A run ended (successfully or not); its metrics are in ``store``."""
        ...


_listeners: list[RunListener] = []
#: The phases of a run (``RunRecorder.timings``) that make its makespan.
EXECUTION_PHASES = ("submit", "wait", "results")
_lock = threading.Lock()


@contextlib.contextmanager
def listening(listener: RunListener) -> Iterator[None]:
    """Tell ``listener`` about every run that ends inside the block."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def metrics_settings() -> MetricsSettings | None:
    """``daskless.metrics`` as run options; ``None`` when metrics are off."""
    if not config.get("metrics.enabled"):
        return None
    strategy = str(config.get("metrics.strategy"))
    if strategy not in STRATEGIES:
        raise ConfigurationError(
            f"daskless.metrics.strategy is {strategy!r}; expected one of {', '.join(STRATEGIES)}"
        )
    return MetricsSettings(
        strategy=strategy,
        batch_size=int(config.get("metrics.batch-size")),
        interval_s=float(config.get("metrics.interval")),
        retention_s=float(config.get("metrics.retention")),
    )


def task_columns(plan: Plan) -> dict[str, list[Any]]:
    """What readers need of the plan, as columns indexed by task id.

    ``keys`` (as text); ``partition``; ``deps`` (input ids). Columns of strings and integers
    are what JSON encodes fastest, and this runs on the client while the workers start.
    Readers name tasks by dask's key prefix (``dask.utils.key_split`` of the key, the names
    dask's own dashboard shows), so the client names nothing: a fused array task is still
    ``sum-aggregate`` or ``random_sample``, not the ``_execute_subgraph`` that runs it.
    """
    partition = [-1] * len(plan.keys)
    deps: list[tuple[int, ...]] = [()] * len(plan.keys)
    for part, spec in plan.specs.items():
        for task_id, info in spec.tasks.items():
            partition[task_id] = part
            deps[task_id] = info.deps
    return {"keys": [str(k) for k in plan.keys], "partition": partition, "deps": list(deps)}


class RunRecorder:
    """Client-side timings and plan of one run; writes nothing when metrics are off."""

    def __init__(self, store: Store, run_id: str, settings: MetricsSettings | None,
                 convert_s: float) -> None:
        self.store = store
        self.run_id = run_id
        self.settings = settings
        self.started = time.time()
        self.timings: dict[str, float] = {"convert": convert_s}
        self._t0 = self._mark = time.perf_counter()
        self._plan: tuple[Plan, list[int]] | None = None

    def lap(self, name: str) -> None:
        """Close the phase ``name`` (it began when the previous phase ended)."""
        now = time.perf_counter()
        self.timings[name] = now - self._mark
        self._mark = now

    @property
    def makespan_s(self) -> float:
        """From submitting the run to having its results (the phases after planning)."""
        return sum(self.timings.get(phase, 0.0) for phase in EXECUTION_PHASES)

    def planned(self, plan: Plan, wanted_ids: list[int]) -> None:
        self.lap("partition")
        if self.settings is not None and plan.keys:
            self._plan = (plan, wanted_ids)

    def submitted(self) -> None:
        """The run is invoked: describe its plan now, while the workers start on it.

        Describing a large plan takes a while (about 15 ms for 8191 tasks); written here it
        overlaps with the workers instead of delaying them, and nothing else runs on the client
        meanwhile (a thread doing it competed with event handling for the GIL and cost more).
        Readers hold workers' records until the plan arrives.
        """
        self.lap("submit")
        self._write_plan()

    def _write_plan(self) -> None:
        if self._plan is None or self.settings is None:
            return
        (plan, wanted_ids), self._plan = self._plan, None
        record = {
            "run_id": self.run_id, "t": self.started, **task_columns(plan),
            "partitions": len(plan.specs), "requested": wanted_ids,
            "strategy": self.settings.strategy,
        }
        self._write([["run", record]])

    def finished(self, error: BaseException | None, lost: Iterable[str] = (),
                 recoveries: Iterable[str] = (), invocations: int = 0,
                 predicted_makespan_s: float | None = None,
                 planning: dict[str, Any] | None = None) -> None:
        """The run ended: record how (``invocations``: how many invocations' metrics readers
        are to wait for, see ``RunMetrics.complete``)."""
        self.timings["total"] = self.timings["convert"] + time.perf_counter() - self._t0
        self._write_plan()  # a run that failed before it was submitted still has a plan
        if self.settings is not None:
            status = "ok" if error is None else f"{type(error).__name__}: {error}"[:500]
            self._write([["run-end", {"t": time.time(), "status": status,
                                      "timings": self.timings, "lost": sorted(lost),
                                      "recoveries": list(recoveries),
                                      "invocations": invocations,
                                      "predicted_makespan_s": predicted_makespan_s,
                                      "planning": planning}]])
        with _lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener.run_finished(self.store, self.run_id)

    def _write(self, records: list[Any]) -> None:
        assert self.settings is not None
        # The run itself matters more than its metrics: a failing write is not the run's error.
        with contextlib.suppress(Exception):
            self.store.add_metrics(self.run_id, records, self.settings.retention_s)
