"""A task slot: 8 bytes of memory a worker process shares with the platform that started it.

The worker writes the id of the task it runs there (``-1`` between tasks), which costs a memory
write per task and no system call. When the worker dies, the platform (the process pool, the
local gateway) reads the slot and blames the death on that task, so that a task that kills
every worker running it ends the run with ``KilledWorker`` naming it, as in distributed.

The slot is an unnamed temporary file, created by the platform and handed to the child as an
inherited file descriptor; both sides map it.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
from collections.abc import Callable

_SLOT = struct.Struct("<q")


class TaskSlot:
    """The platform's side of one worker's slot."""

    def __init__(self) -> None:
        with tempfile.TemporaryFile() as file:
            file.write(_SLOT.pack(-1))
            file.flush()
            self.fd = os.dup(file.fileno())  # inherited by the child, closed once it started
        self._map = mmap.mmap(self.fd, _SLOT.size)

    def started(self) -> None:
        """The child has its own copy of the descriptor: ours can go."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def task(self) -> int:
        """The task the worker ran last (``-1``: between tasks, or none yet)."""
        return int(_SLOT.unpack_from(self._map, 0)[0])

    def close(self) -> None:
        self.started()
        self._map.close()


def writer(fd: int) -> Callable[[int], None]:
    """The worker's side: maps the inherited descriptor and returns how to write the slot."""
    slot = mmap.mmap(fd, _SLOT.size)
    os.close(fd)
    pack = _SLOT.pack_into

    def running(task_id: int) -> None:
        pack(slot, 0, task_id)

    return running
