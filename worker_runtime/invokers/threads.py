"""Thread workers: invocations run in an in-process pool, sharing the client's store object.

The cheapest platform, used with the in-memory store. Fan-out invocations made by a worker are
submitted to the same pool.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from daskless.worker_runtime import peer_memory
from daskless.worker_runtime.context import WorkerContext
from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.store.base import Store
from daskless.worker_runtime.worker import handle


class ThreadInvoker:
    """Runs each invocation on a thread of a bounded pool."""

    def __init__(self, store: Store, workers: int) -> None:
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="daskless-worker")
        self._context = WorkerContext(store=store, invoker=self, worker_id="threads")
        self._lock = threading.Lock()
        self._closed = False

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        with self._lock:
            if self._closed:
                return
            for invocation in invocations:
                self._pool.submit(handle, invocation, self._context)

    def release_run(self, run_id: str) -> None:
        """Outputs kept for peer reads live in this process (see ``peer_memory``)."""
        peer_memory.release(run_id)
        self._context.specs.forget(run_id)
        self._context.keepalive.release(run_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
