"""Leases: running invocations tell the store they are alive, so a vanished worker is noticed.

A worker on another machine can disappear without anyone being told: a container is reclaimed,
a machine loses power, a network splits. Each running invocation therefore holds a lease in its
run's ``leases`` hash, taken together with its claim (``Store.deliver``) and renewed by one
:class:`LeaseKeeper` thread per process every third of the lease, in one round trip per run,
together with the task each invocation is running. The client treats a lease that lapsed, by
the store's own clock, as a worker lost while running that task (the task is also whom a
worker death is blamed on; see ``KilledWorker``). So that a remote worker that dies in a long
task (out of memory, past the platform's timeout) is blamed on it, the keeper also looks every
:data:`REPORT_S` whether an invocation moved on to another task, and renews at once if so: a
task running that long is named in the store within about a second, at the cost of at most one
round trip per second per busy process. A worker that dies within a second of starting a task
cannot be blamed on it this way (the process pool and the gateway know exactly, from the
task slot their workers write; see ``task_slot``).

The thread only renews; it never decides anything. A renewal the store refuses (the run ended,
or recovered in a newer epoch) drops the invocation from the keeper, whose worker finds out at
its own next write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from daskless.worker_runtime.errors import RunGoneError, StoreError
from daskless.worker_runtime.store.base import Store

CurrentTask = Callable[[], int]

#: How often the keeper looks whether a running invocation moved on to another task.
REPORT_S = 1.0


@dataclass(frozen=True)
class _Held:
    store: Store
    run_id: str
    epoch: int
    inv: str
    current: CurrentTask


class LeaseKeeper:
    """Renews the leases of this process's running invocations; see the module docstring."""

    def __init__(self, lease_ms: int) -> None:
        self.lease_ms = lease_ms
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, store: Store, run_id: str, epoch: int, inv: str,
                current: CurrentTask) -> Iterator[None]:
        """Keep ``inv``'s lease (taken with its claim) alive for the duration of the block."""
        with self._lock:
            self._held[inv] = _Held(store, run_id, epoch, inv, current)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._renew_forever,
                                                name="daskless-leases", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(inv, None)

    def _renew_forever(self) -> None:
        every_s = self.lease_ms / 3000
        renewed = time.monotonic()
        reported: dict[str, int] = {}
        while True:
            self._wake.wait(min(every_s, REPORT_S))
            with self._lock:
                held = list(self._held.values())
            running = {h.inv: h.current() for h in held}
            due = time.monotonic() - renewed >= every_s
            if not due and all(reported.get(inv, -1) == t for inv, t in running.items()):
                continue
            renewed, reported = time.monotonic(), running
            runs: dict[tuple[int, str, int], list[_Held]] = {}
            for h in held:
                runs.setdefault((id(h.store), h.run_id, h.epoch), []).append(h)
            for group in runs.values():
                self._renew(group, running)

    def _renew(self, group: list[_Held], running: dict[str, int]) -> None:
        first = group[0]
        try:
            first.store.renew_leases(first.run_id, first.epoch, self.lease_ms,
                                     {h.inv: running[h.inv] for h in group})
        except RunGoneError:  # ended or recovered without us: its worker will find out
            with self._lock:
                for h in group:
                    self._held.pop(h.inv, None)
        except StoreError:
            pass  # unreachable for now: the next renewal tries again, the client decides


_keepers: dict[int, LeaseKeeper] = {}
_keepers_lock = threading.Lock()


def keeper(lease_ms: int) -> LeaseKeeper:
    """This process's keeper for leases of ``lease_ms`` (one per lease length in use)."""
    with _keepers_lock:
        if lease_ms not in _keepers:
            _keepers[lease_ms] = LeaseKeeper(lease_ms)
        return _keepers[lease_ms]
