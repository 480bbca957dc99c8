"""The main program of a warm worker process: pop an invocation, run it, repeat.

The pool starts ``python -m daskless.worker_runtime.process_worker`` as an independent program, like
a function container: it does not import the client's ``__main__`` and shares nothing with the
client but the store. Its settings (store URL, queue name, config) arrive as one JSON line on
standard input, never as command-line arguments. Standard input then stays open: when it closes,
the client is gone and the worker exits, so a killed client leaves nothing behind.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from daskless.worker_runtime import peer_memory
from daskless.worker_runtime.context import WorkerContext
from daskless.worker_runtime.errors import StoreUnavailableError
from daskless.worker_runtime.heap import ImportFreezer
from daskless.worker_runtime.invokers.queue import QueueInvoker
from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.store.redis_store import RedisStore
from daskless.worker_runtime.worker import handle

IDLE_TIMEOUT_S = 30.0
READY_LINE = "daskless-worker-ready"


def _die_with_parent() -> None:
    """Ask Linux to stop this process when its parent dies (no-op elsewhere)."""
    if sys.platform != "linux":
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _follow_parent(context: WorkerContext | None = None) -> None:
    """Act on the pool's commands on standard input, and exit when it closes."""

    def watch() -> None:
        for line in sys.stdin:
            command, _, run_id = line.strip().partition(" ")
            if command == peer_memory.RELEASE_COMMAND:
                peer_memory.release(run_id)
                if context is not None:
                    context.specs.forget(run_id)
                    context.keepalive.release(run_id)
        os._exit(0)

    threading.Thread(target=watch, name="daskless-parent-watch", daemon=True).start()


def _nested_get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """``scheduler="daskless"`` inside a task: the client package is loaded only then."""
    return importlib.import_module("daskless").get(dsk, keys, **kwargs)


def _configure_nested_computes(store_url: str, settings: Mapping[str, object]) -> None:
    """A compute inside a task reuses this store with thread workers instead of a new pool.

    The worker runtime does not depend on the client package; a task that names the
    ``"daskless"`` scheduler gets it resolved by name when (and only if) it asks.
    """
    import dask.base

    dask.config.set({"daskless.store": store_url, "daskless.invoker": "threads", **settings})
    dask.base.named_schedulers.setdefault("daskless", _nested_get)


def serve(store_url: str, queue: str, settings: Mapping[str, object]) -> None:
    """Run invocations from ``queue`` forever."""
    _configure_nested_computes(store_url, settings)
    store = RedisStore(store_url)
    store.ping()
    context = WorkerContext(
        store=store, invoker=QueueInvoker(store, queue), forward_warnings=True
    )
    _follow_parent(context)
    freezer = ImportFreezer()
    print(READY_LINE, flush=True)
    backoff = 0.0
    while True:
        try:
            payload = store.pop_invocation(queue, IDLE_TIMEOUT_S)
        except StoreUnavailableError:
            # Like a container whose backing store went away: wait and retry, don't crash-loop.
            backoff = min(5.0, backoff * 2 or 0.1)
            time.sleep(backoff)
            continue
        backoff = 0.0
        if payload is not None:
            handle(Invocation.from_bytes(payload), context)
            freezer.after_invocation()


def main() -> None:
    _die_with_parent()
    peer_memory.allow_readers()
    config = json.loads(sys.stdin.readline())
    serve(config["store"], config["queue"], config.get("settings", {}))


if __name__ == "__main__":
    main()
