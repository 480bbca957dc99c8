"""The main program of a warm worker process: take an invocation, run it, repeat.

The pool starts ``python -m daskless.worker_runtime.process_worker`` as an independent program,
like a function container: it does not import the client's ``__main__`` and shares nothing with
the client but the store. Its settings (store URL, queue, the list where it records the
invocation it holds, its control pipe, dask settings) arrive as one JSON line on standard input,
never as command-line arguments. Standard input then stays open for the pool's commands (see
:mod:`.hosting`); when it closes, the client is gone and the worker exits.

Channels to the pool:

- **Standard output and error** are the client's own: what tasks print appears in the user's
  terminal, line by line, as with dask's processes scheduler.
- **The control pipe** (a file descriptor the pool passed) carries the pool's own protocol, one
  line each: ``ready <pid> <probe address>`` once the worker serves; ``probed <pid> <result>``
  after a ``probe`` command; ``failed <base64 pickle>`` for an invocation whose failure the
  store could not take. Its end tells the pool the process has exited.
- **The held list** in the store: an invocation is moved there atomically when it is taken
  (``BLMOVE``) and cleared when it ends, so a pool that sees this worker die knows exactly
  which invocation died with it, even one that had not yet reported its start.
- **The task slot**: 8 bytes of memory shared with the pool, where the worker writes the id of
  the task it runs, so that a death is blamed on that task (see ``KilledWorker``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from daskless.worker_runtime import faults, hosting, serialization, task_slot
from daskless.worker_runtime.context import WorkerContext
from daskless.worker_runtime.errors import StoreUnavailableError
from daskless.worker_runtime.invokers.queue import QueueInvoker
from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.store.redis_store import RedisStore
from daskless.worker_runtime.values import peer
from daskless.worker_runtime.worker import failure_event, handle

IDLE_TIMEOUT_S = 30.0


def _report_to_pool(control: TextIO, worker_id: str) -> Any:
    def report(invocation: Invocation, exc: BaseException) -> None:
        event = failure_event(worker_id, invocation, exc)
        payload = base64.b64encode(serialization.dumps((invocation.run_id, event))).decode()
        control.write(f"failed {payload}\n")
        control.flush()

    return report


def serve(config: Mapping[str, Any], control: TextIO) -> None:
    """Run invocations from the pool's queue until standard input closes."""
    store_url, queue, held = config["store"], config["queue"], config["held"]
    hosting.configure_nested_computes(store_url, config.get("settings", {}))
    store = RedisStore(store_url)
    store.ping()
    context = WorkerContext(store=store, invoker=faults.wrap(QueueInvoker(store, queue)),
                            forward_warnings=True)
    context.on_undeliverable = _report_to_pool(control, context.worker_id)
    context.on_task = task_slot.writer(int(config["slot_fd"]))
    hosting.follow_parent(context.release_run, control)
    gate = hosting.InvocationGate(freeze=hosting.tuning("freeze-worker-heap"))
    control.write(f"ready {os.getpid()} {peer.probe_buffer()}\n")
    control.flush()
    backoff = 0.0
    while True:
        try:
            payload = store.pop_invocation(queue, IDLE_TIMEOUT_S, hold=held)
        except StoreUnavailableError:
            # Like a container whose backing store went away: wait and retry, don't crash-loop.
            backoff = min(5.0, backoff * 2 or 0.1)
            time.sleep(backoff)
            continue
        backoff = 0.0
        if payload is None:
            continue
        with gate.invocation():
            handle(Invocation.from_bytes(payload), context)
        faults.kill_point("after-end")
        with contextlib.suppress(StoreUnavailableError):  # the next pop clears it anyway
            store.take_held(held)  # done: nothing to report if this process dies from here on


def main() -> None:
    hosting.die_with_parent()
    hosting.line_buffered_output()
    config = json.loads(sys.stdin.readline())
    if config.get("settings", {}).get("daskless.tuning.peer-reads"):
        peer.allow_readers()
    with os.fdopen(int(config["control_fd"]), "w") as control:
        serve(config, control)


if __name__ == "__main__":
    main()
