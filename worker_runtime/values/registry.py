"""What one process keeps for runs, and the one way to let go of it.

Three registries, all keyed by run id and all emptied by :func:`release_run`:

- **Kept originals** (:class:`KeptOriginals`). Some objects act on the world when they are
  garbage collected: ``partd.File()`` deletes its directory, which holds data that the copies
  other tasks received keep appending to (dask bag's ``groupby(shuffle="disk")`` would lose
  rows). A worker that dropped such an original as soon as its output was stored would destroy
  shared data mid-run, so tiers that ship copies keep the originals of small values until the
  run is released. The registry is bounded twice, so that a long-lived worker never grows
  without limit: values whose copy is ``largest`` bytes or more are not kept (array blocks
  delete nothing when collected), and past ``max_bytes`` the runs kept longest go first.
- **References** (:func:`put`, :func:`get`): with the in-memory store, objects passed by
  reference between threads; the store holds a token (see ``ReferenceTier``).
- **Peer values** (:mod:`.peer`): outputs that sibling processes read out of this one's memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from daskless.worker_runtime.values import peer

DEFAULT_MAX_BYTES = 64 * 2**20
DEFAULT_LARGEST = 256 * 2**10
REFERENCE_PREFIX = b"\x00daskless-ref:"


class KeptOriginals:
    """Originals per run, bounded in bytes; see the module docstring."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, largest: int = DEFAULT_LARGEST) -> None:
        self.max_bytes = max_bytes
        self.largest = largest
        self._runs: OrderedDict[str, list[object]] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    def keep(self, run_id: str, value: object, nbytes: int) -> None:
        if nbytes >= self.largest:
            return
        with self._lock:
            self._runs.setdefault(run_id, []).append(value)
            self._runs.move_to_end(run_id)
            self._sizes[run_id] = self._sizes.get(run_id, 0) + nbytes
            self._total += nbytes
            while self._total > self.max_bytes and len(self._runs) > 1:
                self._forget(next(iter(self._runs)))

    def drop(self, run_id: str) -> None:
        with self._lock:
            if run_id in self._runs:
                self._forget(run_id)

    def _forget(self, run_id: str) -> None:
        del self._runs[run_id]
        self._total -= self._sizes.pop(run_id)

    def runs(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    @property
    def nbytes(self) -> int:
        return self._total


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
    """Drop what this process keeps for a run, whatever its tier (idempotent)."""
    ORIGINALS.drop(run_id)
    with _references_lock:
        _references.pop(run_id, None)
    peer.release(run_id)


def kept_runs() -> set[str]:
    """Runs this process still keeps anything for (tests check that releasing empties it)."""
    with _references_lock:
        runs = set(_references)
    return runs | set(ORIGINALS.runs()) | set(peer.kept_runs())
