"""What one process keeps for runs, and the one way to let go of it.

Three registries, all keyed by run id, all told by :func:`release_run` that a run ended:

- **Kept originals** (:class:`KeptOriginals`). Some objects act on the world when they are
  garbage collected: ``partd.File()`` deletes its directory, which holds data that the copies
  other tasks received keep appending to (dask bag's ``groupby(shuffle="disk")`` would lose
  rows). A worker that dropped such an original as soon as its output was stored would destroy
  shared data mid-run, so tiers that ship copies keep the originals of small values for as long
  as their run may go on: until the run is released or, where nobody tells (HTTP and Lambda
  instances), for ``min_age_s`` after the run's last original was kept. A count of recent runs
  alone is not enough: an instance shared by busy clients sees 8 other runs within a second.
  Ended runs then stay among the ``runs`` most recent, as dask's process pool keeps its
  objects for a while after a compute (a disk shuffle's folder outlives the compute, as
  there). Bounded twice, so that a long-lived worker never grows without limit: values whose
  copy is ``largest`` bytes or more are not kept (array blocks delete nothing when collected),
  and past ``max_bytes`` the ended runs, then the stale ones, go first; what a run still going
  on needs is never dropped.
- **References** (:func:`put`, :func:`get`): with the in-memory store, objects passed by
  reference between threads; the store holds a token (see ``ReferenceTier``). Dropped when the
  run is released.
- **Peer values** (:mod:`.peer`): outputs that sibling processes read out of this one's memory.
  Dropped when the run is released.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from daskless.worker_runtime.values import peer

DEFAULT_RUNS = 8
DEFAULT_MIN_AGE_S = 300.0
DEFAULT_MAX_BYTES = 64 * 2**20
DEFAULT_LARGEST = 256 * 2**10
REFERENCE_PREFIX = b"\x00daskless-ref:"


@dataclass
class _Kept:
    values: list[object] = field(default_factory=list)
    nbytes: int = 0
    last: float = 0.0  # when the last original was kept
    ended: bool = False


class KeptOriginals:
    """Originals per run, kept while their run may go on; see the module docstring."""

    def __init__(self, runs: int = DEFAULT_RUNS, min_age_s: float = DEFAULT_MIN_AGE_S,
                 max_bytes: int = DEFAULT_MAX_BYTES, largest: int = DEFAULT_LARGEST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_runs = runs
        self.min_age_s = min_age_s
        self.max_bytes = max_bytes
        self.largest = largest
        self._clock = clock
        self._runs: OrderedDict[str, _Kept] = OrderedDict()  # least recently kept first
        self._total = 0
        self._lock = threading.Lock()

    def keep(self, run_id: str, value: object, nbytes: int) -> None:
        if nbytes >= self.largest:
            return
        with self._lock:
            kept = self._runs.pop(run_id, None) or _Kept()
            kept.values.append(value)
            kept.nbytes += nbytes
            kept.last = self._clock()
            self._runs[run_id] = kept
            self._total += nbytes
            dropped = self._evict()
        del dropped  # collected outside the lock: a dropped original may delete files

    def end(self, run_id: str) -> None:
        """The run ended: its originals may go once newer runs need the room."""
        with self._lock:
            if run_id in self._runs:
                self._runs[run_id].ended = True
            dropped = self._evict()
        del dropped

    def runs(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    @property
    def nbytes(self) -> int:
        return self._total

    def _evict(self) -> list[_Kept]:
        dropped: list[_Kept] = []
        now = self._clock()
        while len(self._runs) > self.max_runs or self._total > self.max_bytes:
            victim = next((r for r, k in self._runs.items() if k.ended), None) or next(
                (r for r, k in self._runs.items() if now - k.last >= self.min_age_s), None)
            if victim is None:  # every run kept may still go on: nothing can go
                break
            kept = self._runs.pop(victim)
            self._total -= kept.nbytes
            dropped.append(kept)
        return dropped


ORIGINALS = KeptOriginals()

_references: dict[str, dict[str, object]] = {}
_references_lock = threading.Lock()


def is_reference(data: bytes) -> bool:
    return data.startswith(REFERENCE_PREFIX)


def put(run_id: str, name: str, value: object) -> bytes:
    """Keep ``value`` for the run and return the token that stands for it."""
    with _references_lock:
        _references.setdefault(run_id, {})[name] = value
    return REFERENCE_PREFIX + f"{run_id}/{name}".encode()


def get(token: bytes) -> object:
    """The value a token stands for; ``KeyError`` once its run is released."""
    run_id, name = token[len(REFERENCE_PREFIX):].decode().split("/", 1)
    with _references_lock:
        return _references[run_id][name]


def release_run(run_id: str) -> None:
    """The run ended: drop its readable values; its originals may go (idempotent)."""
    ORIGINALS.end(run_id)
    with _references_lock:
        _references.pop(run_id, None)
    peer.release(run_id)


def readable_runs() -> set[str]:
    """Runs whose values this process still serves to readers (references, peer values)."""
    with _references_lock:
        runs = set(_references)
    return runs | set(peer.kept_runs())
