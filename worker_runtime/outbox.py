"""What an invocation owes the store, buffered so that many small writes become one.

Outputs to upload, fan-in marks, hand-offs and events accumulate here and leave together in a
single atomic ``Store.deliver`` (one round trip), followed by the invocations for successors
that now have all their inputs. This is WUKONG's delayed I/O in its simplest form: a worker
keeps running local work and pays for store traffic in batches, at the latest when it runs out
of local work or when the flush interval passes. The outbox only buffers and decides when a
flush is due; it does no I/O, and its clock is injected so that tests can drive it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from daskless.worker_runtime.events import Event
from daskless.worker_runtime.protocol import Successor
from daskless.worker_runtime.store.base import Mark

Clock = Callable[[], float]


class Outbox:
    """Pending uploads, marks, hand-offs, finished tasks and events of one invocation."""

    def __init__(self, interval_s: float, clock: Clock = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self.outputs: set[int] = set()
        self.marks: dict[int, tuple[Mark, Successor]] = {}
        self.extra_marks: list[tuple[Mark, Successor]] = []
        self.handoffs: dict[int, list[int]] = {}
        self.finished: list[int] = []
        self.events: list[Event] = []
        self.last_flush = clock()

    def upload(self, task: int) -> None:
        self.outputs.add(task)

    def mark(self, producer: int, successor: Successor) -> None:
        mark = Mark(successor.id, producer, successor.n_deps)
        if successor.id in self.marks:
            # Several producers of one successor in one batch: keep each edge.
            self.extra_marks.append((mark, successor))
        else:
            self.marks[successor.id] = (mark, successor)

    def forget_marks(self, successor: int) -> None:
        """The successor runs here after all: its pending marks must never complete it."""
        self.marks.pop(successor, None)
        if self.extra_marks:
            self.extra_marks = [m for m in self.extra_marks if m[0].task != successor]

    def hand_off(self, partition: int, task: int) -> None:
        self.handoffs.setdefault(partition, []).append(task)

    def all_marks(self) -> Iterable[tuple[Mark, Successor]]:
        yield from self.marks.values()
        yield from self.extra_marks

    def pending(self) -> bool:
        return bool(self.outputs or self.marks or self.handoffs or self.events or self.finished)

    def due(self, has_local_work: bool) -> bool:
        """Flush when local work runs out, or when the interval has passed."""
        if not has_local_work:
            return self.pending()
        return self._clock() - self.last_flush >= self.interval_s

    def clear(self) -> None:
        """Start a new batch (fresh containers: the caller may still hold the old ones)."""
        self.outputs = set()
        self.marks = {}
        self.extra_marks = []
        self.handoffs = {}
        self.finished = []
        self.events = []
        self.last_flush = self._clock()
