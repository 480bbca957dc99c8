"""Dask's scheduler callbacks, driven from the events workers push.

``dask.diagnostics`` (ProgressBar, Profiler, ...) read a ``state`` dict shaped like the one of
``dask.local.get_async``. The client keeps such a dict up to date as "task finished" events
arrive and calls ``pretask``/``posttask`` per key at that moment. Nothing is built when no
callback is active, so plain computes pay nothing for this.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dask.callbacks import local_callbacks, unpack_callbacks

from daskless.graph import Graph, data_values
from daskless.scheduler.dag import DAG


class CallbackDriver:
    """Calls the active dask callbacks of one compute."""

    def __init__(self, callbacks: Any, graph: Graph) -> None:
        self._cbs = callbacks
        self._graph = graph
        self.start, self.start_state, self.pretask, self.posttask, self.finish = (
            unpack_callbacks(callbacks)
        )
        self.state: dict[str, Any] = {}
        self.active = bool(callbacks)

    def started(self, dag: DAG, client_steps: Mapping[Hashable, tuple[Hashable, ...]]) -> None:
        """Build the state of a run of ``dag`` plus the steps the client runs itself."""
        if not self.active:
            return
        dependencies = {k: set(dag[k].dependencies) for k in dag}
        dependents = {k: set(v) for k, v in dag.dependents().items()}
        for key, deps in client_steps.items():
            dependencies[key] = set(deps)
            dependents[key] = set()
            for d in deps:
                dependents[d].add(key)
        self.state = {
            "dependencies": dependencies,
            "dependents": dependents,
            "waiting": {k: set(v) for k, v in dependencies.items()},
            "waiting_data": {k: set(v) for k, v in dependents.items()},
            "cache": data_values(self._graph),
            "ready": [],
            "running": set(),
            "finished": set(),
            "released": set(),
        }
        for f in self.start_state:
            f(self._graph, self.state)

    def task_finished(self, key: Hashable, worker_id: str) -> None:
        """A worker ran ``key``: its callbacks learn of start and end together."""
        self.task_started(key)
        self.task_done(key, worker_id)

    def task_started(self, key: Hashable) -> None:
        if not self.active:
            return
        for f in self.pretask:
            f(key, self._graph, self.state)

    def task_done(self, key: Hashable, worker_id: str) -> None:
        if not self.active:
            return
        self.state["waiting"].pop(key, None)
        self.state["finished"].add(key)
        for f in self.posttask:
            f(key, None, self._graph, self.state, worker_id)


@contextmanager
def driving(callbacks: Any, graph: Graph) -> Iterator[CallbackDriver]:
    """Activate callbacks (the ``callbacks=`` kwarg or the global ones) around a compute."""
    if callbacks is not None:
        # dask takes 5-tuples; Callback objects are accepted too, as their tuple.
        callbacks = [getattr(cb, "_callback", cb) for cb in callbacks]
    with local_callbacks(callbacks) as cbs:
        driver = CallbackDriver(cbs, graph)
        for f in driver.start:
            f(graph)
        errored = True
        try:
            yield driver
            errored = False
        finally:
            for f in driver.finish:
                f(graph, driver.state, errored)
