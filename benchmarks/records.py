"""Timed runs and their summaries: what a benchmark result file holds for each pair.

:func:`timed_run` measures one compute: wall time around ``compute`` only (building the
collection, checking the result and reading counters happen outside it), then peak memory of the
client and of the worker processes, Redis traffic and invocations. A :class:`Record` gathers the
runs of one (case, scheduler) pair and summarizes them as medians with their spread.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.measure import InvocationCounter, RedisTraffic, peak_mb, reset_peaks, total_peak_mb


@dataclass
class Sample:
    """One timed run."""

    seconds: float
    matched: bool
    client_mb: float | None = None
    workers_mb: float | None = None
    redis_written: int | None = None
    redis_read: int | None = None
    invocations: int | None = None


@dataclass
class Record:
    """Every run of one scheduler on one case."""

    case: str
    workflow: str
    scheduler: str
    tasks: int
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    def fail(self, exc: BaseException) -> None:
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        self.error = last[:500]

    def summary(self) -> dict[str, Any]:
        """Medians (and min/max of the wall time) of the samples, ready for JSON."""
        out: dict[str, Any] = {"case": self.case, "workflow": self.workflow,
                               "scheduler": self.scheduler, "tasks": self.tasks,
                               "error": self.error, "runs": len(self.samples)}
        if not self.samples:
            return out
        times = [s.seconds for s in self.samples]
        median = statistics.median(times)
        out.update(
            median_s=median, min_s=min(times), max_s=max(times), times=times,
            spread=(max(times) - min(times)) / median if median else 0.0,
            per_task_us=median / max(1, self.tasks) * 1e6,
            matched=all(s.matched for s in self.samples),
            client_peak_mb=_max(s.client_mb for s in self.samples),
            workers_peak_mb=_max(s.workers_mb for s in self.samples),
            redis_written_bytes=_median(s.redis_written for s in self.samples),
            redis_read_bytes=_median(s.redis_read for s in self.samples),
            invocations=_median(s.invocations for s in self.samples),
        )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        samples = [Sample(**s) for s in data.pop("samples")]
        return cls(samples=samples, **data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _max(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _median(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def timed_run(
    compute: Callable[[Any], Any],
    collection: Any,
    check: Callable[[Any], bool],
    worker_pids: Callable[[], list[int]],
    traffic: RedisTraffic | None = None,
    invocations: InvocationCounter | None = None,
) -> Sample:
    """Compute once and measure it; see the module docstring."""
    gc.collect()
    client = os.getpid()
    workers = [pid for pid in worker_pids() if pid != client]
    reset_peaks([client, *workers])
    invoked = invocations.count if invocations is not None else 0
    measuring: contextlib.AbstractContextManager[dict[str, int]] = (
        traffic.measure() if traffic is not None else contextlib.nullcontext({}))
    with measuring as delta:
        start = time.perf_counter()
        result = compute(collection)
        seconds = time.perf_counter() - start
    client_mb = peak_mb(client)
    workers = [pid for pid in worker_pids() if pid != client] or workers
    return Sample(
        seconds=seconds,
        matched=check(result),
        client_mb=client_mb,
        workers_mb=total_peak_mb(workers) if workers else None,
        redis_written=delta.get("written"),
        redis_read=delta.get("read"),
        invocations=invocations.count - invoked if invocations is not None else None,
    )
