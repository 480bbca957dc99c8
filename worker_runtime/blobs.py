"""Large outputs as files in a directory every worker of one machine shares.

Redis is the coordination store; it is a poor bulk data path (a single large value costs far
more to write than to copy in memory). When all workers run on the client's machine (thread or
process pools), outputs above a size threshold are written to a run directory, preferably in
shared memory (``/dev/shm``), and the store keeps only a small reference to them. Marks, events
and invocations still go through the store, so the protocol is unchanged: only where the bytes
of a large output live differs. Deleting a run deletes its directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile

MARKER = b"\x00daskless-blob:"


def shared_memory_dir() -> str:
    """A fresh private directory, in shared memory where the system has it."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="daskless-blobs-", dir=base)


def is_reference(data: bytes) -> bool:
    return data.startswith(MARKER)


class LocalBlobs:
    """Files under ``root``/``run_id``; see the module docstring."""

    def __init__(self, root: str, threshold: int) -> None:
        self.root = root
        self.threshold = threshold

    def maybe_put(self, run_id: str, task_id: int, data: bytes) -> bytes:
        """A reference to ``data`` written to a file if it is large, else ``data`` itself."""
        if len(data) < self.threshold:
            return data
        folder = os.path.join(self.root, run_id)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, str(task_id))
        with open(path, "wb") as f:
            f.write(data)
        return MARKER + path.encode()

    def resolve(self, data: bytes) -> bytes:
        """The bytes a stored value stands for."""
        if not is_reference(data):
            return data
        path = data[len(MARKER):].decode()
        if not os.path.realpath(path).startswith(os.path.realpath(self.root) + os.sep):
            raise ValueError(f"blob reference outside {self.root}: {path}")
        with open(path, "rb") as f:
            return f.read()

    def delete_run(self, run_id: str) -> None:
        shutil.rmtree(os.path.join(self.root, run_id), ignore_errors=True)


def open_blobs(root: str | None, threshold: int) -> LocalBlobs | None:
    """The blob tier a run's options describe, if any."""
    return LocalBlobs(root, threshold) if root else None
