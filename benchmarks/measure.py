"""What one timed run records besides its wall time: peak memory, Redis traffic, invocations.

- **Peak memory** is the kernel's high-water mark of resident memory (``VmHWM``), which
  :func:`reset_peaks` rewinds before a run (``clear_refs`` 5) and :func:`peak_mb` reads after it.
  This needs no sampling thread that would steal time from the run being measured. Processes are
  found with psutil. Where the kernel offers no resettable high-water mark, the resident size
  after the run is recorded instead.
- **Redis traffic** is the delta of the server's ``total_net_input_bytes`` (bytes clients wrote
  to Redis) and ``total_net_output_bytes`` (bytes they read) across a run, less the bytes of the
  ``INFO`` calls themselves. Outputs that the local blob tier keeps in shared-memory files never
  reach Redis and are not counted.
- **Invocations** are counted from the run's ``start`` events: every worker invocation sends one
  as it begins, and the run client reads them all before the run ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

MB = 1024 * 1024


def reset_peaks(pids: list[int]) -> None:
    """Rewind the resident-memory high-water mark of each process (Linux ``clear_refs``)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_mb(pid: int) -> float | None:
    """Peak resident memory of a process since its last reset, in MiB (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    try:
        return psutil.Process(pid).memory_info().rss / MB
    except psutil.Error:
        return None


def total_peak_mb(pids: list[int]) -> float | None:
    """Sum of the peaks of a group of processes (an upper bound of their peak together)."""
    peaks = [p for p in (peak_mb(pid) for pid in pids) if p is not None]
    return sum(peaks) if peaks else None


@dataclass
class RedisTraffic:
    """Bytes written to and read from one Redis server, measured through ``INFO stats``."""

    url: str

    def __post_init__(self) -> None:
        self._client = redis.Redis.from_url(self.url)
        first, second = self._counters(), self._counters()
        # What one INFO exchange adds to the counters, subtracted from every delta.
        self._overhead = (second[0] - first[0], second[1] - first[1])

    def _counters(self) -> tuple[int, int]:
        stats: dict[str, Any] = self._client.info("stats")
        return int(stats["total_net_input_bytes"]), int(stats["total_net_output_bytes"])

    @contextlib.contextmanager
    def measure(self) -> Iterator[dict[str, int]]:
        """Yields a dict that holds ``written`` and ``read`` once the block has run."""
        delta: dict[str, int] = {}
        before = self._counters()
        yield delta
        after = self._counters()
        delta["written"] = max(0, after[0] - before[0] - self._overhead[0])
        delta["read"] = max(0, after[1] - before[1] - self._overhead[1])

    def close(self) -> None:
        self._client.close()


class InvocationCounter:
    """Counts worker invocations of daskless runs (the invocations each run saw start)."""

    def __init__(self) -> None:
        self.count = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[InvocationCounter]:
        """Wraps the run client's last step, which every run takes, for the block."""
        from daskless.run import RunClient

        original: Callable[..., None] = RunClient.delete

        def counting(client: RunClient) -> None:
            self.count += client.started
            original(client)

        RunClient.delete = counting  # type: ignore[method-assign]
        try:
            yield self
        finally:
            RunClient.delete = original  # type: ignore[method-assign]
