"""Values passed by reference between threads of one process.

With the in-memory store, client and workers share one process, so outputs and sub-DAGs need
not be copied through pickle at all: the store holds a small token and the object stays in this
registry until its run is deleted. Objects keep their identity (``compute()`` returns the very
object a task built) and values that cannot be pickled (generators, open handles) can flow
between tasks, exactly as with dask's threaded scheduler.
"""

from __future__ import annotations

import threading

PREFIX = b"\x00daskless-ref:"

_values: dict[str, dict[str, object]] = {}
_lock = threading.Lock()


def is_reference(data: bytes) -> bool:
    return data.startswith(PREFIX)


def put(run_id: str, name: str, value: object) -> bytes:
    """Keep ``value`` for the run and return the token that stands for it."""
    with _lock:
        _values.setdefault(run_id, {})[name] = value
    return PREFIX + f"{run_id}/{name}".encode()


def get(token: bytes) -> object:
    """The value a token stands for; ``KeyError`` once its run is gone."""
    run_id, name = token[len(PREFIX):].decode().split("/", 1)
    with _lock:
        return _values[run_id][name]


def drop_run(run_id: str) -> None:
    with _lock:
        _values.pop(run_id, None)
