"""Large outputs as files in a directory every worker of one machine shares.

Redis is the coordination store; it is a poor bulk data path (a single large value costs far
more to write than to copy in memory). When all workers run on the client's machine (thread or
process pools), outputs above a size threshold are written to a run directory, preferably in
shared memory (``/dev/shm``), and the store keeps only a small reference to them. Marks, events
and invocations still go through the store, so the protocol is unchanged: only where the bytes
of a large output live differs. Deleting a run deletes its directory.

Files hold a pickle (protocol 5) with its buffers out of band: array data is written once,
straight from the array, and readers map the file copy-on-write, so arrays come back without
being copied (and stay writable; a write copies only the touched pages).

File layout: ``MAGIC``, then little-endian u64 counts and lengths: the number of buffers, the
length of the pickle stream and of each buffer, followed by the stream and the buffers.
"""

from __future__ import annotations

import mmap
import os
import pickle
import shutil
import struct
import tempfile
import threading
from collections.abc import Hashable

from daskless.worker_runtime import peer_memory, serialization
from daskless.worker_runtime.protocol import RunOptions

MARKER = b"\x00daskless-blob:"
MAGIC = b"DLB1"


def shared_memory_dir() -> str:
    """A fresh private directory, in shared memory where the system has it."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="daskless-blobs-", dir=base)


def is_reference(data: bytes) -> bool:
    """Whether stored bytes only point at data kept elsewhere on this machine."""
    return data.startswith(MARKER) or peer_memory.is_reference(data)


class LocalBlobs:
    """Files under ``root``/``run_id``; see the module docstring."""

    def __init__(self, root: str, threshold: int, peer_reads: bool = False) -> None:
        self.root = root
        self.threshold = threshold
        self.peer_reads = peer_reads

    def dumps(self, run_id: str, task_id: int, key: Hashable, value: object) -> bytes:
        """A reference to a file holding ``value`` if it is large, else its usual bytes."""
        stream, buffers = serialization.dumps_out_of_band(key, value)
        views = [b.raw() for b in buffers]
        size = len(stream) + sum(v.nbytes for v in views)
        # The store's limit holds here too: a graph that runs locally must also run on a
        # platform whose workers exchange data through the store.
        serialization.check_size(key, size)
        if size < self.threshold:
            # Without out-of-band buffers the stream already is the ordinary pickle.
            return stream if not views else serialization.dumps_output(key, value)
        if self.peer_reads and len(stream) < self.threshold:
            return peer_memory.share(run_id, task_id, value, stream, buffers)
        folder = os.path.join(self.root, run_id)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, str(task_id))
        header = struct.pack(f"<{len(views) + 2}Q", len(views), len(stream),
                             *(v.nbytes for v in views))
        with open(path, "wb") as f:
            f.write(MAGIC + header)
            f.write(stream)
            for view in views:
                f.write(view)
        return MARKER + path.encode()

    def loads(self, data: bytes) -> object:
        """The value stored bytes stand for (inline bytes or a file reference)."""
        if peer_memory.is_reference(data):
            return peer_memory.load(data, "an input")
        if not data.startswith(MARKER):
            return serialization.loads(data)
        path = self._checked(data[len(MARKER):].decode())
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        view = memoryview(mapped)
        if bytes(view[:4]) != MAGIC:
            raise ValueError(f"not a daskless blob: {path}")
        count, stream_len = struct.unpack_from("<2Q", view, 4)
        sizes = struct.unpack_from(f"<{count}Q", view, 20)
        offset = 20 + 8 * count
        stream = view[offset:offset + stream_len]
        offset += stream_len
        buffers = []
        for size in sizes:
            buffers.append(view[offset:offset + size])
            offset += size
        return pickle.loads(stream, buffers=buffers)

    def _checked(self, path: str) -> str:
        if not os.path.realpath(path).startswith(os.path.realpath(self.root) + os.sep):
            raise ValueError(f"blob reference outside {self.root}: {path}")
        return path

    def delete_run(self, run_id: str, wait: bool = True) -> None:
        """Remove a run's files; without ``wait`` in the background (freeing hundreds of MB
        of shared memory takes a while, and nobody needs to wait for it)."""
        folder = os.path.join(self.root, run_id)
        if wait:
            shutil.rmtree(folder, ignore_errors=True)
            return
        threading.Thread(
            target=shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True},
            name="daskless-blob-cleanup", daemon=True,
        ).start()


def open_blobs(options: RunOptions) -> LocalBlobs | None:
    """The blob tier a run's options describe, if any."""
    if not options.blob_dir:
        return None
    return LocalBlobs(options.blob_dir, options.blob_threshold, options.peer_reads)
