"""Serialization of tasks, outputs and events.

Plain pickle is tried first (it is about twice as fast on large graphs); cloudpickle takes over
when plain pickle fails (lambdas, local functions) or when the result refers to ``__main__``,
whose functions plain pickle sends by reference and a worker process could not import.

Outputs are checked against the store's largest value so that an oversized result fails with the
task's key instead of a store protocol error.
"""

from __future__ import annotations

import pickle
from collections.abc import Hashable

import cloudpickle

from daskless.worker_runtime import references
from daskless.worker_runtime.errors import SerializationError

# A Redis string (and hash value) holds at most 512 MiB.
MAX_VALUE_BYTES = 512 * 1024 * 1024


def _pickled(obj: object, buffers: list[pickle.PickleBuffer] | None = None) -> bytes:
    """Plain pickle, or cloudpickle where plain pickle fails or refers to ``__main__``.

    With ``buffers``, large buffers (array data) are collected there out of band.
    """
    callback = None if buffers is None else buffers.append
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=callback)
        if b"__main__" not in data:
            return data
    except Exception:
        pass
    if buffers is not None:
        buffers.clear()
    return bytes(
        cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=callback)
    )


def dumps(obj: object) -> bytes:
    """Serialize anything a graph may hold."""
    return _pickled(obj)


def loads(data: bytes) -> object:
    """Inverse of :func:`dumps`; also resolves in-process references (see ``references``)."""
    if references.is_reference(data):
        return references.get(data)
    return pickle.loads(data)


def dumps_out_of_band(key: Hashable, value: object) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """A pickle stream and its out-of-band buffers (array data is not copied into the stream)."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        return _pickled(value, buffers), buffers
    except Exception as exc:
        raise SerializationError(key, f"{type(exc).__name__}: {exc}") from exc


def dumps_output(key: Hashable, value: object, limit: int = MAX_VALUE_BYTES) -> bytes:
    """Serialize a task's output, naming the task when that is impossible or too large."""
    try:
        data = dumps(value)
    except Exception as exc:
        raise SerializationError(key, f"{type(exc).__name__}: {exc}") from exc
    check_size(key, len(data), limit)
    return data


def check_size(key: Hashable, size: int, limit: int = MAX_VALUE_BYTES) -> None:
    """Refuse an output larger than one store value can hold, naming its task."""
    if size > limit:
        raise SerializationError(
            key, f"{size} bytes serialized, above the store's limit of {limit} bytes"
        )
