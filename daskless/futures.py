"""Persisted data: values that stay in the store after a run, referenced from graphs by key.

``Engine.persist`` rebuilds each collection around :class:`PersistedValue` objects. Dask
recognizes them as futures (``__dask_future__``), so a later graph that uses the collection
refers to the key without carrying the value; workers read it from the store directly.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from daskless.worker_runtime import serialization
from daskless.worker_runtime.keys import key_name

if TYPE_CHECKING:
    from daskless.worker_runtime.store.base import Store


class PersistedValue:
    """A value kept in the store under a Dask key."""

    __dask_future__ = True

    def __init__(self, key: Hashable, store: Store) -> None:
        self.key = key
        self._store = store

    def result(self) -> object:
        """Read the value from the store."""
        (blob,) = self._store.fetch_persisted([key_name(self.key)])
        if blob is None:
            raise KeyError(self.key)
        return serialization.loads(blob)

    def __dask_tokenize__(self) -> tuple[str, Hashable, str]:
        """Deterministic: the key and the store it lives in, as distributed's ``Future`` does.

        Collections rebuilt around persisted values name their graphs after these tokens, so
        persisting the same collection twice gives equal tokens, and so do later graphs.
        """
        return type(self).__name__, self.key, self._store.url

    def __repr__(self) -> str:
        return f"<PersistedValue {self.key!r}>"
