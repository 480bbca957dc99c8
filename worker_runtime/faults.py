"""Fault injection for tests: kill points in the worker loop, and a faulty invoker.

Tests cause faults instead of imitating them. This is not a setting users have: it is armed only
by the ``DASKLESS_TEST_FAULTS`` environment variable that a test gives the processes it starts
(read once when the module is imported), or by :func:`install` in the test's own process; when
unarmed, a kill point costs one comparison and invokers are left as they are.

**Kill points.** A process reaching an armed point sends itself ``SIGKILL``, exactly what a
platform does to an instance it reclaims. A plan names its ``points``; ``skip`` lets that many
arrivals at a point pass in each process first (to hit, say, the third task); ``times`` bounds
how many processes die in all, across every process of the test: each death first creates
``<ledger>.<i>`` exclusively, so exactly ``times`` processes win, whatever their timing.

Points, in the order an invocation meets them: ``before-start`` (taken, nothing reported),
``after-claim`` (claimed and leased, nothing run), ``mid-task`` (a task's inputs at hand, the
task not run), ``after-task`` (a task ran, its output not delivered), ``after-deliver`` (outputs
and fan-in marks delivered, the successors they completed neither run nor invoked),
``mid-fan-out`` (one fan-out invocation sent, the others not), ``in-become`` (continuing with
another partition), ``after-end`` (the invocation ended; what the worker keeps for other
readers dies with it).

**Invocations.** With an ``invocations`` section, every invoker a worker program or the engine
makes is wrapped in :class:`FaultyInvoker`, which, drawing from a seeded random generator,
delivers an invocation twice (``duplicate``, the second after up to ``delay_s``), late
(``late``: again after the run may have ended) or not at all (``drop``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

ENV = "DASKLESS_TEST_FAULTS"


class _Invoker(Protocol):
    def invoke(self, invocations: Sequence[Any]) -> None:
        ...


@dataclass(frozen=True)
class InvocationFaults:
    """What a :class:`FaultyInvoker` does to invocations; probabilities in 0..1."""

    seed: int = 0
    duplicate: float = 0.0
    drop: float = 0.0
    late: float = 0.0
    delay_s: float = 0.5


@dataclass
class FaultPlan:
    points: frozenset[str] = frozenset()
    times: int = 1
    ledger: str = ""
    skip: int = 0
    invocations: InvocationFaults | None = None
    _arrivals: dict[str, int] = field(default_factory=dict)

    def claim(self, point: str) -> bool:
        """Whether this arrival at ``point`` is one that dies (see the module docstring)."""
        arrivals = self._arrivals.get(point, 0) + 1
        self._arrivals[point] = arrivals
        if arrivals <= self.skip:
            return False
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
    invocations = spec.get("invocations")
    return FaultPlan(frozenset(spec.get("points", ())), int(spec.get("times", 1)),
                     str(spec.get("ledger", "")), int(spec.get("skip", 0)),
                     InvocationFaults(**invocations) if invocations else None)


_PLAN = _plan(os.environ.get(ENV))


def kill_point(name: str) -> None:
    """Die here if a test armed this point (see the module docstring)."""
    if _PLAN is not None and name in _PLAN.points and _PLAN.claim(name):
        os.kill(os.getpid(), signal.SIGKILL)


def armed(name: str) -> bool:
    return _PLAN is not None and name in _PLAN.points


def arm(points: Sequence[str] = (), ledger: str = "", times: int = 1, skip: int = 0,
        invocations: InvocationFaults | None = None) -> dict[str, str]:
    """The environment entry that arms a plan in processes started with it."""
    spec: dict[str, Any] = {"points": list(points), "times": times, "ledger": ledger,
                            "skip": skip}
    if invocations is not None:
        spec["invocations"] = invocations.__dict__
    return {ENV: json.dumps(spec)}


def install(environ: dict[str, str]) -> None:
    """Arm (or, with an empty mapping, disarm) this process as :func:`arm` describes."""
    global _PLAN
    _PLAN = _plan(environ.get(ENV))


def wrap(invoker: Any) -> Any:
    """``invoker``, or a :class:`FaultyInvoker` around it when invocation faults are armed."""
    if _PLAN is None or _PLAN.invocations is None:
        return invoker
    return FaultyInvoker(invoker, _PLAN.invocations)


class FaultyInvoker:
    """Delivers invocations twice, late or never, as an at-least-once platform may."""

    def __init__(self, inner: _Invoker, faults: InvocationFaults) -> None:
        self.inner = inner
        self.faults = faults
        self._random = random.Random(faults.seed ^ os.getpid())
        self._lock = threading.Lock()

    def invoke(self, invocations: Sequence[Any]) -> None:
        now: list[Any] = []
        for invocation in invocations:
            with self._lock:
                draw = self._random.random()
                delay = self._random.random() * self.faults.delay_s
            f = self.faults
            if draw < f.drop:
                continue
            now.append(invocation)
            if draw < f.drop + f.duplicate:
                self._later(invocation, delay)
            elif draw < f.drop + f.duplicate + f.late:
                self._later(invocation, f.delay_s + delay)
        if now:
            self.inner.invoke(now)

    def _later(self, invocation: Any, seconds: float) -> None:
        def deliver() -> None:
            # A late delivery to a gone run or a closed invoker fails, as real ones do.
            with contextlib.suppress(Exception):
                self.inner.invoke([invocation])

        timer = threading.Timer(seconds, deliver)
        timer.daemon = True
        timer.start()

    def __getattr__(self, name: str) -> Any:  # release_run, peer_reads, close, ...
        return getattr(self.inner, name)
