"""A warm pool of worker processes on one machine, fed through a queue in the store.

The pool starts ``size`` worker programs once (see :mod:`daskless.worker_runtime.process_worker`)
and keeps that many alive. Workers share this process's standard output and error, so what
tasks print appears where the user's own prints do, as with dask's processes scheduler (workers
write it line by line). One monitor thread waits on every worker's control pipe, which says
when a worker is ready, answers peer-read probes and carries failures the store could not take;
its end means the process exited.

When a worker exits unexpectedly, the pool reads the invocation it held (see the held list in
``process_worker``) and tells that invocation's run through ``notify`` (the engine passes the
event to the run's client, in this process), then starts a replacement. A worker that exits
while idle affects no run.

**Peer reads** (see :mod:`daskless.worker_runtime.values.peer`) are only used once they were seen
to work here: when two workers are ready, one is asked to read the other's probe bytes, and this
process reads one worker's too (results are read from workers' memory). Until then, and if
either is refused, runs use shared-memory files instead (:meth:`ProcessPool.peer_reads`).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import cast

from daskless.worker_runtime import hosting, keys, launcher, serialization
from daskless.worker_runtime.context import worker_id_for
from daskless.worker_runtime.events import Event, WorkerLost
from daskless.worker_runtime.invokers.queue import QueueInvoker
from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.store.base import Store
from daskless.worker_runtime.task_slot import TaskSlot
from daskless.worker_runtime.values import peer

# glibc's allocator hands large blocks (from 128 KiB) back to the kernel when they are freed, so
# every new array of a warm worker pays a page fault per 4 KiB page again, and page faults are
# what large tasks mostly cost on virtual machines. Serving blocks up to 32 MiB (glibc's limit)
# from the heap and not trimming it keeps a warm worker's memory warm, as a long-lived threaded
# process's is; the price is that a worker returns freed memory to the system later
# (``daskless.tuning.warm-malloc``). Honoured by glibc only; elsewhere these do nothing.
WARM_MEMORY_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(2**30),
    "MALLOC_TOP_PAD_": str(64 * 2**20),
}

Notify = Callable[[str, Event], None]
"""``notify(run_id, event)``: tell a run's client what the pool saw."""


@dataclass(eq=False)
class _Worker:
    """One worker process, its control pipe, the store list of what it holds, and the shared
    slot where it writes the task it runs."""

    proc: subprocess.Popen[bytes]
    control: int
    held: str
    slot: TaskSlot
    partial: bytes = b""  # an unfinished control line

    @property
    def id(self) -> str:
        return worker_id_for(self.proc.pid)


@dataclass
class _Probe:
    """What is known about peer reads between this pool's processes."""

    ready: list[tuple[int, int]] = field(default_factory=list)  # (pid, probe address)
    result: bool | None = None
    reason: str = "not probed yet"


class ProcessPool:
    """Warm worker processes serving one queue; see the module docstring."""

    def __init__(self, store: Store, size: int, notify: Notify,
                 settings: Mapping[str, object] | None = None, warm_malloc: bool = True) -> None:
        self.size = size
        self.pool_id = uuid.uuid4().hex[:12]
        self.queue = keys.pool_queue(self.pool_id)
        self._store = store
        self._invoker = QueueInvoker(store, self.queue)
        self._notify = notify
        self._settings = dict(settings or {})
        self._warm_malloc = warm_malloc
        self._numbers = itertools.count()
        self._workers: dict[int, _Worker] = {}  # by control fd
        self._lock = threading.Lock()
        self._closing = False
        self._probe = _Probe()
        self._wake_r, self._wake_w = os.pipe()
        for _ in range(size):
            self._spawn()
        self._monitor = threading.Thread(target=self._watch, name="daskless-pool", daemon=True)
        self._monitor.start()

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        self._invoker.invoke(invocations)

    def pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._workers.values()]

    def peer_reads(self) -> bool:
        """Whether runs may read outputs out of workers' memory (probed; see module doc)."""
        return self._probe.result is True

    def peer_reads_reason(self) -> str:
        return self._probe.reason

    # -- processes -------------------------------------------------------------------------

    def _spawn(self) -> None:
        env = dict(os.environ)
        # Workers import the same modules as the client (functions are sent by reference).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        if self._warm_malloc:
            env.update(WARM_MEMORY_ENV)
        control_r, control_w = os.pipe()
        held = keys.pool_held(self.pool_id, next(self._numbers))
        slot = TaskSlot()
        config = json.dumps({"store": self._store.url, "queue": self.queue, "held": held,
                             "control_fd": control_w, "slot_fd": slot.fd,
                             "settings": self._settings})
        try:
            # Forked from a thread that outlives the caller: the worker's parent-death signal
            # must not fire when the thread that first used the pool ends (see ``launcher``).
            proc = launcher.spawn(lambda: subprocess.Popen(
                [sys.executable, "-m", "daskless.worker_runtime.process_worker"],
                stdin=subprocess.PIPE, pass_fds=(control_w, slot.fd), env=env,
                cwd=os.getcwd(),
            ))
        finally:
            os.close(control_w)
            slot.started()
        assert proc.stdin is not None
        proc.stdin.write(config.encode() + b"\n")
        proc.stdin.flush()
        with self._lock:
            self._workers[control_r] = _Worker(proc, control_r, held, slot)
        os.write(self._wake_w, b"x")  # the monitor waits on the new pipes from now on

    def _watch(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                workers = dict(self._workers)
            for ready in wait([*workers, self._wake_r]):
                fd = cast(int, ready)
                if fd == self._wake_r:
                    os.read(fd, 4096)
                else:
                    self._control(workers[fd])

    def _control(self, worker: _Worker) -> None:
        data = os.read(worker.control, 65536)
        if not data:
            self._exited(worker)
            return
        *lines, worker.partial = (worker.partial + data).split(b"\n")
        for line in lines:
            self._on_line(worker, line.decode())

    def _on_line(self, worker: _Worker, line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind == "ready":
            pid, address = (int(x) for x in rest.split())
            self._probe.ready.append((pid, address))
            self._start_probe()
        elif kind == "probed":
            _pid, _, answer = rest.partition(" ")
            self._probe_answered(answer)
        elif kind == "failed":
            run_id, event = cast("tuple[str, Event]", serialization.loads(base64.b64decode(rest)))
            self._notify(run_id, event)

    def _exited(self, worker: _Worker) -> None:
        code = worker.proc.wait()
        os.close(worker.control)
        with self._lock:
            if self._closing:
                return
            self._workers.pop(worker.control, None)
        if worker.proc.stdin is not None:
            worker.proc.stdin.close()
        reason = f"worker process {worker.proc.pid} exited with code {code}"
        try:
            held = self._store.take_held(worker.held)
        except Exception as exc:  # the store is gone too: the client hears of that itself
            print(f"daskless pool: could not read what worker {worker.id} held: {exc}",
                  file=sys.stderr)
            held = []
        for payload in held:
            inv = Invocation.from_bytes(payload)
            self._notify(inv.run_id, WorkerLost(worker.id, reason, inv.partition, False, inv.id,
                                                inv.epoch, worker.slot.task()))
        worker.slot.close()
        self._spawn()

    # -- peer-read probe -------------------------------------------------------------------

    def _start_probe(self) -> None:
        probe = self._probe
        if probe.result is not None or len(probe.ready) < min(2, self.size):
            return
        pid, address = probe.ready[-1]
        refusal = peer.probe(pid, address)  # this process reads a worker (results)
        if refusal is not None or self.size < 2:
            self._probe_answered(refusal or "ok")
            return
        reader = next((w for w in self._workers.values() if w.proc.pid == probe.ready[0][0]),
                      None)
        if reader is None or reader.proc.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            reader.proc.stdin.write(f"{hosting.PROBE_COMMAND} {pid} {address}\n".encode())
            reader.proc.stdin.flush()

    def _probe_answered(self, answer: str) -> None:
        self._probe.result = answer == "ok"
        self._probe.reason = "probed between sibling workers" if answer == "ok" else answer

    # -- runs ------------------------------------------------------------------------------

    def release_run(self, run_id: str) -> None:
        """Tell every worker to drop what it keeps for ``run_id``: values and sub-DAGs.

        One line on each worker's standard input, read by its parent-watch thread; a worker
        that exited meanwhile kept nothing anyway."""
        line = f"{hosting.RELEASE_COMMAND} {run_id}\n".encode()
        with self._lock:
            procs = [w.proc for w in self._workers.values()]
        for proc in procs:
            with contextlib.suppress(BrokenPipeError, ValueError, OSError):
                proc.stdin.write(line)  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]

    def close(self) -> None:
        """Stop every process."""
        with self._lock:
            self._closing = True
            workers = list(self._workers.values())
            self._workers.clear()
        os.write(self._wake_w, b"x")
        for worker in workers:
            worker.proc.terminate()
        for worker in workers:
            try:
                worker.proc.wait(5)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        self._monitor.join(5)
        for worker in workers:
            with contextlib.suppress(OSError):
                os.close(worker.control)
            worker.slot.close()
            if worker.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    worker.proc.stdin.close()
        with contextlib.suppress(Exception):  # the store may be gone at interpreter exit
            for worker in workers:
                self._store.take_held(worker.held)
        os.close(self._wake_r)
        os.close(self._wake_w)
