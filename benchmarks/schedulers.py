"""The schedulers a benchmark compares, behind one small interface.

In-process schedulers (both daskless local configurations, dask's ``sync``, ``threads`` and
``processes``) run in the benchmark process, interleaved. Distributed's ``LocalCluster`` runs in
a fresh interpreter (:mod:`benchmarks.distributed_run`), so that its scheduler and worker
threads never run beside another scheduler's measurement; it is listed here by name only.

A :class:`Scheduler` computes a collection and names the processes that do the work besides the
client (for peak memory) and the Redis server it uses (for traffic), if any.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

import dask
from dask.multiprocessing import get_context

import daskless
from daskless.worker_runtime.store.memory import MemoryStore

DASKLESS_DEFAULT = "daskless"
DASKLESS_THREADS = "daskless-threads"
DISTRIBUTED = ("distributed-threads", "distributed-processes")
IN_PROCESS = (DASKLESS_DEFAULT, DASKLESS_THREADS, "sync", "threads", "processes")
ALL = IN_PROCESS + DISTRIBUTED

DESCRIPTIONS = {
    DASKLESS_DEFAULT: "daskless.Engine(): embedded Redis, warm worker processes",
    DASKLESS_THREADS: 'daskless.Engine(store="memory", invoker="threads")',
    "sync": "dask's single-threaded scheduler",
    "threads": "dask's threaded scheduler",
    "processes": "dask's multiprocessing scheduler, with a warm process pool",
    "distributed-threads": "distributed LocalCluster(processes=False): 1 worker, 1 thread per core",
    "distributed-processes": "distributed LocalCluster(processes=True): 1 worker per core",
}


class Scheduler(Protocol):
    name: str

    def compute(self, collection: Any) -> Any: ...

    def worker_pids(self) -> list[int]: ...

    def redis_url(self) -> str | None: ...

    def close(self) -> None: ...


class DasklessScheduler:
    """A daskless engine of one configuration."""

    def __init__(self, name: str, **settings: Any) -> None:
        self.name = name
        self.engine = daskless.Engine(**settings)

    def compute(self, collection: Any) -> Any:
        return dask.compute(collection, scheduler=self.engine.get)[0]

    def _resources(self) -> list[Any]:
        # The engine starts its store and invoker on first use; before that there is nothing.
        return list(getattr(self.engine, "_resources", {}).values())

    def worker_pids(self) -> list[int]:
        pids: list[int] = []
        for resources in self._resources():
            pids += getattr(resources.invoker, "pids", list)()
        return pids

    def redis_url(self) -> str | None:
        for resources in self._resources():
            if not isinstance(resources.store, MemoryStore):
                return str(resources.store.url)
        return None

    def close(self) -> None:
        self.engine.close()


class DaskScheduler:
    """One of dask's local schedulers; ``processes`` keeps one warm pool for all runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pool: ProcessPoolExecutor | None = None
        if name == "processes":
            self.pool = ProcessPoolExecutor(os.cpu_count() or 1, mp_context=get_context())

    def compute(self, collection: Any) -> Any:
        if self.pool is not None:
            return dask.compute(collection, scheduler="processes", pool=self.pool)[0]
        return dask.compute(collection, scheduler=self.name)[0]

    def worker_pids(self) -> list[int]:
        return list(getattr(self.pool, "_processes", None) or {})

    def redis_url(self) -> str | None:
        return None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def open_scheduler(name: str) -> Scheduler:
    """Start an in-process scheduler by its benchmark name."""
    if name == DASKLESS_DEFAULT:
        return DasklessScheduler(name)
    if name == DASKLESS_THREADS:
        return DasklessScheduler(name, store="memory", invoker="threads")
    if name in ("sync", "threads", "processes"):
        return DaskScheduler(name)
    raise ValueError(
        f"{name!r} is not an in-process scheduler; choose from {', '.join(IN_PROCESS)}"
    )
