"""The value tier: how a run's outputs cross between tasks, workers and the client.

Every value that leaves the task that made it (to a task in another worker, or to the client)
goes through one :class:`ValueTier`, chosen once per run by the client from where its workers
run (``RunOptions.tier``, see :func:`tier_for`) and used alike by the worker loop and by the
client. A tier turns a value into the bytes the store holds (:meth:`~ValueTier.dump`) and back
(:meth:`~ValueTier.load`); those bytes are either the value itself or a small reference to where
it lives on this machine:

========== ============================================= =========================================
tier       when                                          what the store holds
========== ============================================= =========================================
pickle     workers may be remote (HTTP, Lambda)          the pickled value
reference  the in-memory store (threads in one process)  a token; the object stays in a registry
files      workers share the client's machine            pickles; large values as a reference to
                                                         a file in shared memory
peer       as files, where processes may read each       as files; large arrays stay in their
           other's memory (Linux)                        producer and are copied out on read
========== ============================================= =========================================

What a process keeps for a run (values others read out of its memory, tokens, the originals of
values it shipped as copies) lives in process-wide registries (:mod:`.registry`), and a run's
data is released through one path: the client calls :meth:`ValueTier.release_run` when it
deletes the run, and local invokers have their worker processes call :func:`release_run` (see
``ReleasesRuns``).
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import lru_cache
from typing import Protocol

from daskless.worker_runtime.protocol import TierChoice
from daskless.worker_runtime.values.files import PeerTier, SharedFileTier
from daskless.worker_runtime.values.in_store import PickleTier, ReferenceTier
from daskless.worker_runtime.values.registry import release_run

__all__ = ["TIERS", "ValueTier", "release_run", "tier_for"]
TIERS = ("pickle", "reference", "files", "peer")


class ValueTier(Protocol):
    """Where a run's values live between the task that made them and their readers."""

    def dump(self, run_id: str, task_id: int, key: Hashable, value: object,
             result: bool = False) -> bytes:
        """The bytes the store holds for ``value``, the output of task ``key``.

        ``result``: the client asked for it, so it must be storable on every backend (a tier
        that never copies it checks that it could). ``SerializationError`` names the key of a
        value that cannot be stored.
        """
        ...

    def load(self, data: bytes, key: Hashable) -> object:
        """The value ``data`` stands for (``key`` names it in errors)."""
        ...

    def keep(self, run_id: str, value: object, nbytes: int) -> None:
        """Keep the original of a value that left as a copy of ``nbytes`` until its run ends."""
        ...

    def release_run(self, run_id: str) -> None:
        """Drop everything kept for the run in this process and on this machine."""
        ...


@lru_cache(maxsize=32)
def tier_for(choice: TierChoice) -> ValueTier:
    """The tier a run's options name; ``ValueError`` lists the valid names."""
    if choice.kind == "pickle":
        return PickleTier()
    if choice.kind == "reference":
        return ReferenceTier()
    if choice.folder and choice.kind == "files":
        return SharedFileTier(choice.folder, choice.threshold)
    if choice.folder and choice.kind == "peer":
        return PeerTier(choice.folder, choice.threshold)
    raise ValueError(f"unknown value tier {choice!r}; expected one of {', '.join(TIERS)} "
                     "(files and peer need a folder)")
