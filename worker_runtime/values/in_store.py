"""The two tiers whose values live entirely in the store's bytes: pickles, or tokens.

- :class:`PickleTier`: the store holds each value pickled. Used where workers may run anywhere
  (HTTP workers, the gateway's instances, Lambda): the store is all they share.
- :class:`ReferenceTier`: with the in-memory store, client and workers are threads of one
  process, so nothing is copied at all: the store holds a token and the object stays in the
  process's registry until its run is released. Objects keep their identity (``compute()``
  returns the very object a task built) and values that cannot be pickled (generators, open
  handles) flow between tasks, exactly as with dask's threaded scheduler. Requested results
  are still pickled once to check them, so an unpicklable or oversized result fails here as on
  every other backend.
"""

from __future__ import annotations

from collections.abc import Hashable

from daskless.worker_runtime import serialization
from daskless.worker_runtime.values import registry


class PickleTier:
    """Values as pickles in the store; originals of small ones are kept for their run."""

    def dump(self, run_id: str, task_id: int, key: Hashable, value: object,
             result: bool = False) -> bytes:
        data = serialization.dumps_output(key, value)
        self.keep(run_id, value, len(data))
        return data

    def load(self, data: bytes, key: Hashable) -> object:
        return serialization.loads(data)

    def keep(self, run_id: str, value: object, nbytes: int) -> None:
        registry.ORIGINALS.keep(run_id, value, nbytes)

    def release_run(self, run_id: str) -> None:
        registry.release_run(run_id)


class ReferenceTier:
    """Tokens in the store, objects in this process."""

    def dump(self, run_id: str, task_id: int, key: Hashable, value: object,
             result: bool = False) -> bytes:
        if result:  # must be storable anywhere, even though this tier never copies it
            serialization.dumps_output(key, value)
        return registry.put(run_id, str(task_id), value)

    def load(self, data: bytes, key: Hashable) -> object:
        return registry.get(data)

    def keep(self, run_id: str, value: object, nbytes: int) -> None:
        """Nothing to do: readers get the original itself."""

    def release_run(self, run_id: str) -> None:
        registry.release_run(run_id)
