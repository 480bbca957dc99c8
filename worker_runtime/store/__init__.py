"""Stores: the few atomic primitives the worker protocol needs; Redis and an in-memory twin."""

from daskless.worker_runtime.store.base import Mark, Store
from daskless.worker_runtime.store.memory import MemoryStore
from daskless.worker_runtime.store.redis_store import RedisStore

__all__ = ["Mark", "MemoryStore", "RedisStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """Connect to the store a URL names (``redis://``, ``rediss://``, ``unix://``)."""
    return RedisStore(url)
