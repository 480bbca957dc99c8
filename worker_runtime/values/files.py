"""The tiers of one machine: large values as shared-memory files, or read out of peer memory.

Redis is the coordination store; it is a poor bulk data path (a single large value costs far
more to write than to copy in memory). When all workers run on the client's machine (thread or
process pools), values whose pickle is at least ``threshold`` bytes are written to a run folder,
preferably in shared memory (``/dev/shm``), and the store keeps only a small reference to them.
Marks, events and invocations still go through the store, so the protocol is unchanged: only
where the bytes of a large value live differs. Releasing a run deletes its folder.

Files hold a pickle (protocol 5) with its buffers out of band: array data is written once,
straight from the array, and readers map the file copy-on-write, so arrays come back without
being copied (and stay writable; a write copies only the touched pages).

File layout: ``MAGIC``, then little-endian u64 counts and lengths: the number of buffers, the
length of the pickle stream and of each buffer, followed by the stream and the buffers.

:class:`PeerTier` goes one step further where processes may read each other's memory (see
:mod:`.peer`): a large value whose pickle stream is small (array data out of band) is not
written anywhere; its producer keeps it and readers copy the buffers out of its memory.
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

from daskless.worker_runtime import serialization
from daskless.worker_runtime.values import peer, registry

MARKER = b"\x00daskless-blob:"
MAGIC = b"DLB1"


def shared_memory_dir() -> str:
    """A fresh private directory, in shared memory where the system has it."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="daskless-blobs-", dir=base)


class SharedFileTier:
    """Pickles in the store, large values in files under ``root/run_id``."""

    def __init__(self, root: str, threshold: int) -> None:
        self.root = root
        self.threshold = threshold

    def dump(self, run_id: str, task_id: int, key: Hashable, value: object,
             result: bool = False) -> bytes:
        stream, buffers = serialization.dumps_out_of_band(key, value)
        views = [b.raw() for b in buffers]
        size = len(stream) + sum(v.nbytes for v in views)
        # The store's limit holds here too: a graph that runs locally must also run on a
        # platform whose workers exchange data through the store.
        serialization.check_size(key, size)
        if size < self.threshold:
            # Without out-of-band buffers the stream already is the ordinary pickle.
            data = stream if not views else serialization.dumps_output(key, value)
            self.keep(run_id, value, len(data))
            return data
        return self._dump_large(run_id, task_id, value, stream, buffers)

    def _dump_large(self, run_id: str, task_id: int, value: object, stream: bytes,
                    buffers: list[pickle.PickleBuffer]) -> bytes:
        folder = os.path.join(self.root, run_id)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, str(task_id))
        views = [b.raw() for b in buffers]
        header = struct.pack(f"<{len(views) + 2}Q", len(views), len(stream),
                             *(v.nbytes for v in views))
        with open(path, "wb") as f:
            f.write(MAGIC + header)
            f.write(stream)
            for view in views:
                f.write(view)
        return MARKER + path.encode()

    def load(self, data: bytes, key: Hashable) -> object:
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

    def keep(self, run_id: str, value: object, nbytes: int) -> None:
        registry.ORIGINALS.keep(run_id, value, nbytes)

    def release_run(self, run_id: str) -> None:
        """Drop what this process keeps and remove the run's files, in the background:
        freeing hundreds of MB of shared memory takes a while, and nobody waits for it."""
        registry.release_run(run_id)
        folder = os.path.join(self.root, run_id)
        if os.path.isdir(folder):
            threading.Thread(
                target=shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True},
                name="daskless-blob-cleanup", daemon=True,
            ).start()


class PeerTier(SharedFileTier):
    """As :class:`SharedFileTier`, but large arrays stay in their producer's memory."""

    def _dump_large(self, run_id: str, task_id: int, value: object, stream: bytes,
                    buffers: list[pickle.PickleBuffer]) -> bytes:
        if len(stream) < self.threshold:
            return peer.share(run_id, task_id, value, stream, buffers)
        return super()._dump_large(run_id, task_id, value, stream, buffers)

    def load(self, data: bytes, key: Hashable) -> object:
        if peer.is_reference(data):
            return peer.load(data, key)
        return super().load(data, key)
