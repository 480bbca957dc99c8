"""Stores: the few atomic primitives the worker protocol needs; Redis and an in-memory twin.

:mod:`~daskless.worker_runtime.store.base` is the protocol, :mod:`.redis_store` and :mod:`.memory`
implement it, :mod:`.urls` says which URLs name a Redis store. Nothing is imported here, so that
importing one of them does not load the Redis client library with it.
"""
