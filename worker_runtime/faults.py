"""Fault injection for tests: named kill points in the worker loop.

Tests cause faults instead of imitating them: a worker process that reaches an armed kill point
sends itself ``SIGKILL``, exactly what a platform does to an instance it reclaims. This is not a
setting users have: it is armed only by the ``DASKLESS_TEST_FAULTS`` environment variable that a
test gives the worker processes it starts (JSON ``{"points": [...], "times": n, "ledger": path}``),
read once when the module is imported, and a kill point costs one comparison when unarmed.

``times`` bounds how many processes die in all, across every process of the test: each death
first creates ``<ledger>.<i>`` exclusively, so exactly ``times`` processes win, whatever their
number and timing.

Kill points: ``before-start`` (an invocation was taken, nothing has been reported yet).
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass

ENV = "DASKLESS_TEST_FAULTS"


@dataclass(frozen=True)
class FaultPlan:
    points: frozenset[str]
    times: int
    ledger: str

    def claim(self) -> bool:
        """Whether this process is one of the ``times`` that die."""
        for i in range(self.times):
            try:
                os.close(os.open(f"{self.ledger}.{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            return True
        return False


def _plan(text: str | None) -> FaultPlan | None:
    if not text:
        return None
    spec = json.loads(text)
    return FaultPlan(frozenset(spec["points"]), int(spec.get("times", 1)), str(spec["ledger"]))


_PLAN = _plan(os.environ.get(ENV))


def kill_point(name: str) -> None:
    """Die here if a test armed this point (see the module docstring)."""
    if _PLAN is not None and name in _PLAN.points and _PLAN.claim():
        os.kill(os.getpid(), signal.SIGKILL)


def arm(points: list[str], ledger: str, times: int = 1) -> dict[str, str]:
    """The environment entry that arms ``points`` in processes started with it."""
    return {ENV: json.dumps({"points": points, "times": times, "ledger": ledger})}
