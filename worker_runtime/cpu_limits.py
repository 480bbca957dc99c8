"""Give a worker process the CPU share of its size, as Lambda does (1,769 MB is one vCPU).

A platform that starts workers of several sizes (the gateway, the Lambda emulator) must make
a size mean something on one machine, or a plan's effect could not be measured there. Linux
control groups do it: a group per worker process whose CPU bandwidth is capped at its size's
vCPUs (``quota = vcpus * period``; one group per process, as a quota is shared by everything
in its group and every Lambda instance has its own share). Two layouts exist:

- cgroup v1, the ``cpu`` controller mounted at ``/sys/fs/cgroup/cpu``: ``cpu.cfs_period_us``,
  ``cpu.cfs_quota_us`` and ``cgroup.procs``;
- cgroup v2, a unified hierarchy at ``/sys/fs/cgroup`` with the ``cpu`` controller enabled:
  ``cpu.max`` (``"quota period"``) and ``cgroup.procs``.

Creating groups needs the right to write there (root, or a delegated subtree). Where neither
layout is writable, :func:`cpu_limiter` returns a :class:`NoLimits` that says so (``kind`` is
``"none"``), and sizes are then only billed, not enforced. Memory is not capped: a worker that
outgrew its size would be killed, where the point here is to measure speed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

from daskless.scheduler.prediction import vcpus

__all__ = [
    "CPU_PERIOD_US",
    "CgroupLimiter",
    "CpuLimiter",
    "NoLimits",
    "bandwidth_period_s",
    "cpu_limiter",
]

#: The bandwidth period: 10 ms. The kernel's default, 100 ms, lets a small size run at full
#: speed for its whole quota and then stop for the rest of the period, so a 10 ms task took
#: 10 ms or 60 ms depending on where it fell; a short period spreads the share evenly.
CPU_PERIOD_US = 10_000
V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")


class CpuLimiter(Protocol):
    """Puts processes under the CPU share of a worker size."""

    kind: str

    def limit(self, pid: int, memory_mb: int) -> None:
        """Cap process ``pid`` at the vCPUs of ``memory_mb``."""
        ...

    def release(self, pid: int) -> None:
        """Forget process ``pid`` (once it has exited)."""
        ...

    def close(self) -> None:
        """Remove what was created (once its processes have exited)."""
        ...


class NoLimits:
    """No writable cgroup hierarchy: sizes are billed, not enforced."""

    kind = "none"

    def limit(self, pid: int, memory_mb: int) -> None:
        pass

    def release(self, pid: int) -> None:
        pass

    def close(self) -> None:
        pass


class CgroupLimiter:
    """A group per process under ``base`` (see the module docstring)."""

    def __init__(self, base: Path, v2: bool) -> None:
        self.base = base
        self.v2 = v2
        self.kind = "cgroup-v2" if v2 else "cgroup-v1"
        self._groups: dict[int, Path] = {}

    def limit(self, pid: int, memory_mb: int) -> None:
        group = self._groups[pid] = self._make(pid, memory_mb)
        (group / "cgroup.procs").write_text(str(pid))

    def release(self, pid: int) -> None:
        group = self._groups.pop(pid, None)
        if group is not None:
            with contextlib.suppress(OSError):  # still busy: close() tries again
                group.rmdir()

    def _make(self, pid: int, memory_mb: int) -> Path:
        group = self.base / f"{pid}-{memory_mb}mb"
        group.mkdir(parents=True, exist_ok=True)
        quota = max(1000, round(vcpus(memory_mb) * CPU_PERIOD_US))  # the kernel's least: 1 ms
        if self.v2:
            (group / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        return group

    def close(self) -> None:
        # A group can only be removed once empty; one still in use is left to the system.
        for group in [*self._groups.values(), self.base]:
            with contextlib.suppress(OSError):
                group.rmdir()
        self._groups.clear()


def cpu_limiter(name: str) -> CpuLimiter:
    """A limiter whose groups live under a folder ``name`` (say, per gateway process), or
    :class:`NoLimits` where no hierarchy is writable."""
    candidates = []
    if (V2_ROOT / "cgroup.controllers").exists():
        controllers = (V2_ROOT / "cgroup.controllers").read_text().split()
        if "cpu" in controllers:
            candidates.append((V2_ROOT / name, True))
    if (V1_ROOT / "cpu.cfs_quota_us").exists():
        candidates.append((V1_ROOT / name, False))
    for base, v2 in candidates:
        try:
            base.mkdir(exist_ok=True)
            if v2:
                # Children of a v2 group get the cpu controller only if it is delegated.
                (base / "cgroup.subtree_control").write_text("+cpu")
            return CgroupLimiter(base, v2)
        except OSError:
            with contextlib.suppress(OSError):
                base.rmdir()
    return NoLimits()


def own_name(prefix: str) -> str:
    """A folder name unique to this process."""
    return f"{prefix}-{os.getpid()}"


def bandwidth_period_s(proc_cgroup: Path = Path("/proc/self/cgroup")) -> float:
    """The CPU bandwidth period this process runs under, in seconds: 0 when its group has
    no quota, or none can be read (inside a Lambda micro-VM the share is enforced outside).
    Workers report it with their metrics: how a size's share is enforced changes how long a
    short task takes at it (see ``daskless.scheduler.prediction``)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "cpu" in controllers.split(","):
                group = V1_ROOT / path.lstrip("/")
                quota = int((group / "cpu.cfs_quota_us").read_text())
                period = int((group / "cpu.cfs_period_us").read_text())
                return period / 1e6 if quota > 0 else 0.0
        for line in lines:
            if line.startswith("0::"):
                quota_text, period_text = (V2_ROOT / line[3:].lstrip("/") / "cpu.max") \
                    .read_text().split()
                return int(period_text) / 1e6 if quota_text != "max" else 0.0
    except (OSError, ValueError):
        pass
    return 0.0
