"""Large outputs read straight out of the memory of the worker process that made them.

On one machine, copying a large output into a shared-memory file and mapping it back costs a
page fault per 4 KiB page on both sides, and page faults are what moving data costs most on
virtual machines. Here the producer keeps the output object itself, and stores only a small
reference: its process id, the pickle stream of the object with the array data left out
(pickle protocol 5), and the address and length of each out-of-band buffer. A reader copies the
buffers with one ``process_vm_readv`` call into freshly allocated memory (large allocations get
transparent huge pages) and unpickles around them: one copy, no file, nothing written by the
producer. A reader in the producing process itself gets the kept object, with no copy.

Lifetime: an output is kept until its run is released (:func:`release`), which the client asks
of every local worker when it deletes the run; a worker process that exits frees everything.

Whether it works is the platform's decision: Linux, the same user, no ptrace restriction between
the processes (Yama's ``ptrace_scope`` 1 restricts reads to descendants unless the target calls
``PR_SET_PTRACER``, see :func:`allow_readers`; container seccomp profiles may forbid the call
outright). The process pool therefore probes it between two real sibling workers before any run
uses it (:func:`probe_buffer`, :func:`probe`). A read that fails because the producer is gone
raises :class:`~daskless.worker_runtime.errors.WorkerLostError`; one the kernel refuses raises
:class:`~daskless.worker_runtime.errors.PeerReadError`, which says so.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import struct
import sys
import threading
from collections.abc import Hashable
from functools import lru_cache
from typing import Any

from daskless.worker_runtime.errors import PeerReadError, WorkerLostError

MARKER = b"\x00daskless-peer:"
_HEADER = struct.Struct("<4Q")  # pid, its start time, stream length, number of buffers
_BUFFER = struct.Struct("<2Q")  # address, length
PROBE_BYTES = b"daskless-peer-probe-0123456789ab"

_kept: dict[str, dict[int, tuple[object, list[memoryview], bytes]]] = {}
_here: dict[bytes, object] = {}  # reference -> value, for readers in the producing process
_lock = threading.Lock()
_probe = ctypes.create_string_buffer(PROBE_BYTES, len(PROBE_BYTES))


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def is_reference(data: bytes) -> bool:
    return data.startswith(MARKER)


def share(run_id: str, task_id: int, value: object, stream: bytes,
          buffers: list[pickle.PickleBuffer]) -> bytes:
    """Keep ``value`` for its run and return a reference other local processes can read."""
    import numpy as np

    views = [b.raw() for b in buffers]
    parts = [MARKER, _HEADER.pack(os.getpid(), _own_start(), len(stream), len(views))]
    for view in views:
        address = np.frombuffer(view, dtype=np.uint8).ctypes.data if view.nbytes else 0
        parts.append(_BUFFER.pack(address, view.nbytes))
    parts.append(stream)
    reference = b"".join(parts)
    with _lock:
        kept = _kept.setdefault(run_id, {})
        if task_id in kept:  # a task that ran again replaces its output
            _here.pop(kept[task_id][2], None)
        kept[task_id] = (value, views, reference)
        _here[reference] = value
    return reference


def load(data: bytes, key: Hashable) -> object:
    """The value a reference stands for, copied out of its producer's memory.

    A reader in the producing process itself (a later invocation on the same worker) gets the
    kept object, as tasks of one invocation share their inputs: no copy at all. The reference
    names the buffers' addresses and the object's pickle stream, so equal references stand for
    equal objects.
    """
    import numpy as np

    offset = len(MARKER)
    pid, started, stream_len, count = _HEADER.unpack_from(data, offset)
    if pid == os.getpid():
        with _lock:
            here = _here.get(bytes(data), _here)
        if here is not _here:
            return here
    offset += _HEADER.size
    if not alive(pid, started):  # checked first: a reused pid would hand over other bytes
        raise WorkerLostError(f"the worker process {pid} that holds the output of {key!r} is "
                              "gone")
    buffers: list[Any] = []
    for _ in range(count):
        address, length = _BUFFER.unpack_from(data, offset)
        offset += _BUFFER.size
        target = np.empty(length, dtype=np.uint8)
        if length:
            _read(pid, address, target.ctypes.data, length, key)
        buffers.append(target)
    return pickle.loads(data[offset:offset + stream_len], buffers=buffers)


def owner(data: bytes) -> tuple[int, int]:
    """The process that keeps the value a reference stands for: its pid and start time."""
    pid, started, _, _ = _HEADER.unpack_from(data, len(MARKER))
    return int(pid), int(started)


def alive(pid: int, started: int) -> bool:
    """Whether process ``pid`` is the one that started at ``started`` and still runs (a pid
    of a dead process may be reused; a zombie is dead)."""
    if pid == os.getpid():
        return True
    return _start_time(pid) == started


def _start_time(pid: int) -> int | None:
    """The start time of a running process (clock ticks since boot), None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in (b"Z", b"X"):  # a zombie or dead process: its memory is gone
        return None
    return int(fields[19])


_own: tuple[int, int] = (0, 0)  # (pid, start time) of this process, once read


def _own_start() -> int:
    global _own
    if _own[0] != os.getpid():  # read once per process (a forked child reads its own)
        _own = (os.getpid(), _start_time(os.getpid()) or 0)
    return _own[1]


def release(run_id: str) -> None:
    """Drop what this process keeps for ``run_id``."""
    with _lock:
        for _value, _views, reference in _kept.pop(run_id, {}).values():
            _here.pop(reference, None)


def kept_runs() -> list[str]:
    with _lock:
        return list(_kept)


def allow_readers() -> None:
    """Let sibling processes read this one where Yama restricts ptrace to descendants.

    This widens who may attach to the process to every process of the same user, which is why
    worker processes call it only when ``daskless.tuning.peer-reads`` is on.
    """
    if sys.platform.startswith("linux"):
        # PR_SET_PTRACER, PR_SET_PTRACER_ANY; fails harmlessly where Yama is not built in.
        _libc().prctl(0x59616D61, ctypes.c_ulong(2**64 - 1), 0, 0, 0)


def probe_buffer() -> int:
    """The address of this process's probe bytes, for a sibling to read (see :func:`probe`)."""
    return ctypes.addressof(_probe)


def probe(pid: int, address: int) -> str | None:
    """Read another process's probe bytes; ``None`` if that works, else why it does not."""
    if not sys.platform.startswith("linux"):
        return f"{sys.platform} has no process_vm_readv"
    target = ctypes.create_string_buffer(len(PROBE_BYTES))
    try:
        _read(pid, address, ctypes.addressof(target), len(PROBE_BYTES), "the probe")
    except (PeerReadError, WorkerLostError, OSError, AttributeError) as exc:
        return str(exc)
    if target.raw != PROBE_BYTES:
        return f"process {pid} returned other bytes than its probe"
    return None


def _read(pid: int, address: int, into: int, length: int, key: Hashable) -> None:
    local = _IoVec(into, length)
    remote = _IoVec(address, length)
    done = _libc().process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if done == length:
        return
    code = ctypes.get_errno() if done < 0 else 0
    why = os.strerror(code) if code else f"read {done} of {length} bytes"
    if code in (errno.EPERM, errno.EACCES, errno.ENOSYS):
        raise PeerReadError(
            f"reading the output of {key!r} out of worker process {pid} was refused ({why}): "
            "this platform forbids process_vm_readv between worker processes; set "
            "daskless.tuning.peer-reads to false"
        )
    raise WorkerLostError(f"the worker process {pid} that holds the output of {key!r} is gone "
                          f"({why})")


@lru_cache(maxsize=1)
def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.process_vm_readv.argtypes = [
        ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong,
        ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong,
    ]
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    return libc
