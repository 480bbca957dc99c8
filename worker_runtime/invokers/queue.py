"""Queue invocations: a pool's pending invocations wait in a store list for a warm worker.

This is how the warm process pool is fed: the client and every worker push invocations to the
pool's list (only while their run is alive), and idle worker processes pop them with a blocking
read, like a FaaS platform's internal queue in front of warm containers.
"""

from __future__ import annotations

from collections.abc import Sequence

from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.store.base import Store


class QueueInvoker:
    """Pushes invocations to a pool's queue in the store."""

    def __init__(self, store: Store, queue: str) -> None:
        self.store = store
        self.queue = queue

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        by_run: dict[tuple[str, int], list[bytes]] = {}
        for invocation in invocations:
            key = (invocation.run_id, invocation.epoch)
            by_run.setdefault(key, []).append(invocation.to_bytes())
        for (run_id, epoch), payloads in by_run.items():
            self.store.push_invocations(run_id, self.queue, payloads, epoch)
