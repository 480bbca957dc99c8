"""A warm pool of worker processes on one machine, fed through a queue in the store.

The pool starts ``size`` worker programs once (see :mod:`daskless.worker_runtime.process_worker`)
and keeps that many alive: a monitor thread waits on the processes' output pipes, which close when a
process exits. Each unexpected exit is reported through ``on_lost`` (the engine turns it into a
"lost" event for the runs that were using the worker) and a replacement is started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import wait
from typing import cast

from daskless.worker_runtime import keys, peer_memory
from daskless.worker_runtime.context import worker_id_for
from daskless.worker_runtime.invokers.queue import QueueInvoker
from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.store.base import Store

# glibc's allocator hands large blocks (from 128 KiB) back to the kernel when they are freed, so
# every new array of a warm worker pays a page fault per 4 KiB page again, and page faults are
# what large tasks mostly cost on virtual machines. Serving blocks up to 32 MiB (glibc's limit)
# from the heap and not trimming it keeps a warm worker's memory warm, as a long-lived threaded
# process's is. Honoured by glibc only; elsewhere these variables do nothing.
WARM_MEMORY_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(2**30),
    "MALLOC_TOP_PAD_": str(64 * 2**20),
}

LostCallback = Callable[[str, str], None]



class ProcessPool:
    """Warm worker processes serving one queue; see the module docstring."""

    def __init__(
        self,
        store: Store,
        size: int,
        on_lost: LostCallback,
        settings: Mapping[str, object] | None = None,
    ) -> None:
        self.size = size
        self.queue = keys.pool_queue(uuid.uuid4().hex[:12])
        self._store = store
        self._invoker = QueueInvoker(store, self.queue)
        self._on_lost = on_lost
        self._config = json.dumps(
            {"store": store.url, "queue": self.queue, "settings": dict(settings or {})}
        )
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._closing = False
        self._wake_r, self._wake_w = os.pipe()
        for _ in range(size):
            self._spawn()
        self._monitor = threading.Thread(target=self._watch, name="daskless-pool", daemon=True)
        self._monitor.start()

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        self._invoker.invoke(invocations)

    def pids(self) -> list[int]:
        with self._lock:
            return list(self._procs)

    def _spawn(self) -> None:
        env = dict(os.environ)
        # Workers import the same modules as the client (functions are sent by reference).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.update(WARM_MEMORY_ENV)
        proc = subprocess.Popen(
            [sys.executable, "-m", "daskless.worker_runtime.process_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=os.getcwd(),
        )
        assert proc.stdin is not None
        proc.stdin.write(self._config.encode() + b"\n")
        proc.stdin.flush()
        with self._lock:
            self._procs[proc.pid] = proc

    def _watch(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                pipes = {p.stdout.fileno(): p for p in self._procs.values() if p.stdout}
            for ready in wait([*pipes, self._wake_r]):
                fd = cast(int, ready)
                proc = pipes.get(fd)
                # A closed pipe means the process exited; anything else is its output.
                if proc is not None and not os.read(fd, 65536):
                    self._replace(proc)

    def _replace(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._lock:
            if self._closing:
                return
            self._procs.pop(proc.pid, None)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        self._on_lost(worker_id_for(proc.pid), f"worker process {proc.pid} exited with code {code}")
        self._spawn()

    def release_run(self, run_id: str) -> None:
        """Tell every worker to drop what it keeps for ``run_id``: outputs and sub-DAGs.

        One line on each worker's standard input, read by its parent-watch thread; a worker
        that exited meanwhile kept nothing anyway."""
        line = f"{peer_memory.RELEASE_COMMAND} {run_id}\n".encode()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            try:
                proc.stdin.write(line)  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
            except (BrokenPipeError, ValueError, OSError):
                pass

    def close(self) -> None:
        """Stop every process."""
        with self._lock:
            self._closing = True
            procs = list(self._procs.values())
            self._procs.clear()
        os.write(self._wake_w, b"x")
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        self._monitor.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)
