"""Exceptions raised by the scheduling layer.

Every error the project raises derives from :class:`DasklessError`, so callers
can catch the whole family with one clause.  Graph problems additionally derive
from :class:`ValueError`: a malformed graph is a bad argument, and code that
already guards against ``ValueError`` keeps working.

The errors carry structured attributes (the keys involved) besides a readable
message.  They define ``__reduce__`` because exceptions cross process
boundaries (workers report failures back through pickling), and the default
``Exception`` pickling would call ``__init__`` with the message instead of the
original arguments.
"""

from __future__ import annotations

import reprlib
from collections.abc import Hashable, Iterable

__all__ = [
    "CycleError",
    "DasklessError",
    "GraphError",
    "MissingDependencyError",
    "format_key",
    "format_keys",
]

# Keys are shown with repr, but a graph can have very long keys (hashes,
# nested tuples) and very long cycles; keep messages to a readable size.
_MAX_KEYS_SHOWN = 8
_KEY_REPR = reprlib.Repr()
_KEY_REPR.maxstring = 80
_KEY_REPR.maxother = 80
_KEY_REPR.maxtuple = 8
_KEY_REPR.maxlevel = 3


def format_key(key: Hashable) -> str:
    """Return a readable, length-limited ``repr`` of a task key."""
    return _KEY_REPR.repr(key)


def format_keys(keys: Iterable[Hashable], sep: str = ", ") -> str:
    """Join the reprs of ``keys``, eliding the middle of long sequences."""
    items = list(keys)
    if len(items) <= _MAX_KEYS_SHOWN:
        return sep.join(format_key(k) for k in items)
    head = _MAX_KEYS_SHOWN // 2
    tail = _MAX_KEYS_SHOWN - head - 1
    omitted = len(items) - head - tail
    shown = [format_key(k) for k in items[:head]]
    shown.append(f"... {omitted} more ...")
    shown.extend(format_key(k) for k in items[len(items) - tail :])
    return sep.join(shown)


class DasklessError(Exception):
    """Base of every error the project raises."""


class GraphError(DasklessError, ValueError):
    """A task graph is malformed."""


class CycleError(GraphError):
    """The graph contains a dependency cycle.

    ``cycle`` lists the keys on one cycle in order: each key depends on the
    next one, and the last key depends on the first.  A task depending on
    itself gives a cycle of length one.
    """

    cycle: tuple[Hashable, ...]

    def __init__(self, cycle: Iterable[Hashable]) -> None:
        self.cycle = tuple(cycle)
        path = format_keys((*self.cycle, *self.cycle[:1]), sep=" -> ")
        super().__init__(
            f"task graph contains a cycle of {len(self.cycle)} task(s): {path}"
        )

    def __reduce__(self) -> tuple[type[CycleError], tuple[tuple[Hashable, ...]]]:
        return (type(self), (self.cycle,))


class MissingDependencyError(GraphError):
    """A task depends on keys that are neither tasks nor external inputs."""

    key: Hashable
    missing: tuple[Hashable, ...]

    def __init__(self, key: Hashable, missing: Iterable[Hashable]) -> None:
        self.key = key
        self.missing = tuple(missing)
        super().__init__(
            f"task {format_key(key)} depends on {len(self.missing)} missing "
            f"key(s): {format_keys(self.missing)} (neither a task of the graph "
            "nor an external input)"
        )

    def __reduce__(
        self,
    ) -> tuple[type[MissingDependencyError], tuple[Hashable, tuple[Hashable, ...]]]:
        return (type(self), (self.key, self.missing))
