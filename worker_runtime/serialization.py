"""Serialization of tasks, outputs and errors.

Plain pickle is tried first (it is about twice as fast on large graphs); cloudpickle takes over
when plain pickle fails (lambdas, local functions) or when the result refers to ``__main__``,
whose functions plain pickle sends by reference and a worker process could not import. Code
objects that cloudpickle sends by value keep their file name (cloudpickle itself writes
``<dynamic-code>`` there, for deterministic payloads): a task defined in the user's script then
fails with a traceback that names the script and line, which debuggers and IDEs can open.

Outputs are checked against the store's largest value so that an oversized result fails with the
task's key instead of a store protocol error. Errors travel with their traceback (``tblib``, as
distributed does), so the client raises a task's exception as its own type with the task's
frames, not a copy with the remote traceback pasted into its message.
"""

from __future__ import annotations

import io
import marshal
import pickle
import types
from collections.abc import Hashable
from typing import Any

import cloudpickle
from tblib import Traceback

from daskless.worker_runtime.errors import SerializationError

# A Redis string (and hash value) holds at most 512 MiB.
MAX_VALUE_BYTES = 512 * 1024 * 1024


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, except that code objects keep their file name (see the module docstring).

    marshal is how Python itself stores code; it needs the same interpreter version on both
    ends, which cloudpickle's own code pickling needs too.
    """

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType:
            return marshal.loads, (marshal.dumps(obj),)
        return super().reducer_override(obj)


def _cloudpickled(obj: object, buffer_callback: Any = None) -> bytes:
    with io.BytesIO() as file:
        _Pickler(file, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=buffer_callback).dump(obj)
        return file.getvalue()


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
    return _cloudpickled(obj, callback)


def dumps(obj: object) -> bytes:
    """Serialize anything a graph may hold."""
    return _pickled(obj)


def loads(data: bytes) -> object:
    """Inverse of :func:`dumps`."""
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


def dumps_error(exc: BaseException, traceback: types.TracebackType | None) -> bytes:
    """An exception with ``traceback`` (the frames to show), for another process to raise.

    An exception that cannot be pickled, or not loaded back, becomes a ``RuntimeError`` naming
    its type and message, with the same traceback.
    """
    frames = Traceback(traceback).to_dict() if traceback is not None else None
    try:
        data = dumps((exc, frames))
        loads(data)
    except Exception:
        data = dumps((RuntimeError(f"{type(exc).__name__}: {exc}"), frames))
    return data


def loads_error(data: bytes) -> BaseException:
    """The exception :func:`dumps_error` sent, with its remote frames as its traceback."""
    exc: BaseException
    frames: dict[str, Any] | None
    exc, frames = loads(data)  # type: ignore[misc]
    if frames is not None:
        exc = exc.with_traceback(Traceback.from_dict(frames).as_traceback())
    return exc
