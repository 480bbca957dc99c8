"""``Engine``: the object behind ``daskless.get``.

An engine owns the store and invoker it started (lazily, on first use, per configuration) and
turns each ``get`` into one run: materialize the graph, plan it (validate, partition, describe
sub-DAGs), submit it, follow its events, return the results. ``persist`` does the same but leaves
the requested values in the store and returns collections that refer to them, which is what
``dask.persist`` calls when the scheduler is a bound method of an object with ``persist``.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
import uuid
import weakref
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dask
from dask.base import collections_to_expr
from dask.core import flatten
from dask.local import nested_get

from daskless import config, finalize, gcpause, observe, planner
from daskless.backends import Resources, start
from daskless.callbacks import CallbackDriver, driving
from daskless.config import Backend, worker_memory_mb
from daskless.futures import PersistedValue
from daskless.graph import Annotations, Graph, materialize, requested_keys
from daskless.plan import Retries, make_plan
from daskless.progressbar import configured_progress
from daskless.run import Following, RunClient, TaskFailed, fetch_persisted
from daskless.worker_runtime import context
from daskless.worker_runtime.errors import StoreUnavailableError
from daskless.worker_runtime.events import Event
from daskless.worker_runtime.invokers.threads import ThreadInvoker
from daskless.worker_runtime.keys import key_name
from daskless.worker_runtime.protocol import RunOptions
from daskless.worker_runtime.store.base import Store

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
# Engines by the id they pickle under: unpickling in the same process finds the live engine.
_by_id: weakref.WeakValueDictionary[str, Engine] = weakref.WeakValueDictionary()
_by_id_lock = threading.RLock()


@dataclass(frozen=True)
class RunSummary:
    """What the last run of an engine looked like."""

    run_id: str
    tasks: int
    """Tasks run, by workers and (the finalize step) by the client."""
    partitions: int
    cross_edges: int
    store: Store | None = field(default=None, repr=False, compare=False)
    makespan_s: float | None = None
    """From submitting the run to having its results; ``None`` until it succeeded."""
    predicted_makespan_s: float | None = None
    """What the planner expected the makespan to be; ``None`` without history to go on (the
    plan is then today's, see ``docs/architecture.md``)."""

    @property
    def cost_gb_s(self) -> float | None:
        """GB-seconds billed for the run's invocations (each rounded up to the millisecond, at
        ``daskless.worker-memory`` or a Lambda function's own memory), from its metrics;
        ``None`` without metrics."""
        from daskless.report.data import load_run

        if self.store is None:
            return None
        return load_run(self.store, self.run_id, settle_s=5.0).billed_gb_s

    @property
    def timeline(self) -> list[tuple[Hashable, float, float, str]]:
        """``(key, start, end, worker)`` of every task the workers ran, from the run's metrics.

        Task times travel once, in the metrics (``daskless.metrics.enabled``); reading them
        waits briefly for the workers' last uploads.
        """
        from daskless.report.data import load_run

        if self.store is None:
            return []
        run = load_run(self.store, self.run_id, settle_s=5.0)
        return [(t.key, t.start, t.end, t.worker or "")
                for t in run.tasks if t.start is not None and t.end is not None]


class Engine:
    """Runs Dask graphs on daskless workers; ``Engine(...).get`` is a Dask scheduler.

    An engine pickles by reference (:meth:`__reduce__`), so a task may capture
    ``daskless.get`` or an engine and compute with it: unpickled in the process that holds the
    engine it is that very engine; elsewhere (a worker process, an HTTP instance) it is the
    default engine, or an engine of the same settings, made lazily and starting nothing until
    used. Inside a task, a compute then runs on the worker's own store (see
    :meth:`_resources_for_call`).
    """

    def __init__(
        self, store: str | None = None, invoker: str | None = None, workers: int | None = None
    ) -> None:
        self._settings = (store, invoker, workers)
        self._resources: dict[Backend, Resources] = {}
        self._lock = threading.Lock()
        self._runs: dict[str, RunClient] = {}
        self._persisted: dict[Store, set[str]] = {}
        self.last_run: RunSummary | None = None
        self._id = uuid.uuid4().hex
        _engines.add(self)
        with _by_id_lock:
            _by_id[self._id] = self

    def __reduce__(self) -> tuple[Any, tuple[str, tuple[Any, ...], bool]]:
        import daskless

        default = vars(daskless).get("default_engine") is self
        return _engine_by_reference, (self._id, self._settings, default)

    # -- the scheduler interface -----------------------------------------------------------

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """Compute ``keys`` of ``dsk``; Dask's scheduler contract."""
        start = time.perf_counter()
        with gcpause.paused(config.get("tuning.gc-pause")):  # see daskless.gcpause
            graph, annotations = materialize(dsk)
            wanted = requested_keys(keys)
            _store, results = self._compute(graph, wanted, kwargs, annotations, persist=False,
                                            convert_s=time.perf_counter() - start)
        return nested_get(keys, results)

    def persist(self, collections: Sequence[Any], optimize_graph: bool = True,
                **kwargs: Any) -> list[Any]:
        """Compute collections and keep their values in the store (``dask.persist`` protocol)."""
        with gcpause.paused(config.get("tuning.gc-pause")):  # see daskless.gcpause
            expr = collections_to_expr(collections, optimize_graph).optimize()
            keys_per_collection = [list(flatten(k)) for k in expr.__dask_keys__()]
            wanted = [k for ks in keys_per_collection for k in ks]
            graph, annotations = materialize(expr)
            store, _ = self._compute(graph, wanted, kwargs, annotations, persist=True)
        futures = {k: PersistedValue(k, store) for k in wanted}
        pairs = zip(collections, keys_per_collection)
        return [self._rebuild(c, ks, futures) for c, ks in pairs]

    # -- runs ------------------------------------------------------------------------------

    def _compute(self, graph: Graph, wanted: list[Hashable], kwargs: dict[str, Any],
                 annotations: Annotations, persist: bool,
                 convert_s: float = 0.0) -> tuple[Store, dict[Hashable, object]]:
        resources, owned = self._resources_for_call()
        retries = Retries(int(kwargs.get("retries") or 0), annotations.get("retries", {}))
        try:
            return resources.store, self._run(resources, graph, wanted, kwargs, persist,
                                              convert_s, retries)
        finally:
            if owned:
                resources.close()

    def _run(self, resources: Resources, graph: Graph, wanted: list[Hashable],
             kwargs: dict[str, Any], persist: bool, convert_s: float,
             retries: Retries) -> dict[Hashable, object]:
        run_id = uuid.uuid4().hex
        options = self._options(kwargs, persist, resources)
        recorder = observe.RunRecorder(resources.store, run_id, options.metrics, convert_s)
        workers = kwargs.get("num_workers") or dask.config.get("num_workers", None)
        workers = int(workers or resources.workers)
        parallelism = workers * int(config.get("partitions-per-worker"))
        # Tiny graphs gain nothing from more partitions than a few tasks each.
        parallelism = max(1, min(parallelism, len(graph) // 4))
        store = resources.store
        with configured_progress(), driving(kwargs.get("callbacks"), graph) as driver:
            steps = {} if persist else finalize.client_steps(graph, wanted)
            requested, wanted = wanted, finalize.run_keys(wanted, steps)
            plan = make_plan(run_id, graph, wanted, parallelism, store.missing_persisted,
                             options, workers, retries)
            settings = config.planner_settings()
            sizes = (resources.sizes or settings.sizes) if resources.sized else None
            planned = planner.plan_run(store, plan, resources.kind, sizes, settings,
                                       options.memory_mb)
            plan = planned.plan
            recorder.planned(plan, [plan.ids[k] for k in wanted if k in plan.ids])
            driver.started(plan.dag, steps)
            self.last_run = RunSummary(run_id, len(plan.keys) + len(steps),
                                       len(plan.parts.parts), plan.parts.cross_edges(plan.dag),
                                       store if options.metrics is not None else None,
                                       predicted_makespan_s=planned.decision
                                       .predicted_makespan_s)
            if not plan.keys:
                return {} if persist else fetch_persisted(store, wanted)
            following = Following(
                start_timeout_s=float(config.get("start-timeout")),
                lease_s=float(config.get("lease")),
                allowed_failures=int(config.get("allowed-failures")),
                parallelism=parallelism, workers=workers, retries=retries,
            )
            client = RunClient(run_id, plan, store, resources.invoker, driver, wanted,
                               int(config.get("inline-spec-bytes")),
                               float(config.get("run-ttl")), following)
            self._runs[run_id] = client
            error: BaseException | None = None
            try:
                client.submit()
                recorder.submitted()
                client.wait()
                recorder.lap("wait")
                if persist:
                    self._remember_persisted(store, wanted)
                    return {}
                values = client.collect(wanted)
                _run_client_steps(graph, steps, values, driver)
                return {k: values[k] for k in requested}
            except TaskFailed as failed:
                error = failed.error
                if options.rerun_locally and failed.task_id >= 0:
                    _rerun_locally(client, failed.task_id)
                # Not chained to TaskFailed (an internal carrier); its own cause stays.
                raise failed.error from failed.error.__cause__
            except BaseException as exc:
                error = exc
                raise
            finally:
                recorder.lap("results")
                recorder.finished(error, client.lost, client.recoveries,
                                  client.recorded_invocations(),
                                  planned.decision.predicted_makespan_s,
                                  planner.record(planned) if planned.structure else None)
                if error is None:
                    self.last_run = replace(self.last_run, makespan_s=recorder.makespan_s)
                    if planned.structure and options.metrics is not None:
                        planner.note_run(store, planned.structure, run_id,
                                         options.metrics.retention_s)
                self._runs.pop(run_id, None)
                # An unreachable store has already failed the run; its keys expire on their own.
                with contextlib.suppress(StoreUnavailableError):
                    client.delete()

    @staticmethod
    def _options(kwargs: dict[str, Any], persist: bool, resources: Resources) -> RunOptions:
        rerun = kwargs.get("rerun_exceptions_locally")
        if rerun is None:
            rerun = dask.config.get("rerun_exceptions_locally", False)
        return RunOptions(
            persist=persist,
            persist_ttl_ms=int(float(config.get("persist-ttl")) * 1000),
            rerun_locally=bool(rerun),
            event_interval_s=float(config.get("event-interval")),
            tier=resources.tier(int(config.get("blob-threshold-bytes"))),
            lease_ms=int(float(config.get("lease")) * 1000),
            memory_mb=worker_memory_mb(),
            metrics=observe.metrics_settings(),
        )

    @staticmethod
    def _rebuild(collection: Any, keys: list[Hashable],
                 futures: dict[Hashable, PersistedValue]) -> Any:
        rebuild, state = collection.__dask_postpersist__()
        return rebuild({k: futures[k] for k in keys}, *state)

    # -- resources -------------------------------------------------------------------------

    def _resources_for_call(self) -> tuple[Resources, bool]:
        """The engine's resources, or for a compute nested in a task, the worker's store."""
        worker = context.current()
        if worker is not None:
            workers = int(self._settings[2] or config.get("workers") or 2)
            threads = ThreadInvoker(worker.store, workers)
            return Resources(worker.store, threads, workers, [threads.close], kind="threads"), True
        backend = Backend.from_config(*self._settings)
        with self._lock:
            if backend not in self._resources:
                self._resources[backend] = start(backend, self._notify)
                atexit.register(self.close)
            return self._resources[backend], False

    def _notify(self, run_id: str, event: Event) -> None:
        """A local platform saw something happen to a run (a worker it held died)."""
        client = self._runs.get(run_id)
        if client is not None:
            client.notify(event)

    def _remember_persisted(self, store: Store, keys: list[Hashable]) -> None:
        with self._lock:
            self._persisted.setdefault(store, set()).update(key_name(k) for k in keys)

    def close(self) -> None:
        """Release persisted data and stop everything this engine started."""
        with self._lock:
            resources, self._resources = list(self._resources.values()), {}
            persisted, self._persisted = self._persisted, {}
        for store, names in persisted.items():
            # The store may already be gone at interpreter exit.
            with contextlib.suppress(Exception):
                store.delete_persisted(sorted(names))
        for res in resources:
            res.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _engine_by_reference(engine_id: str, settings: tuple[Any, ...], default: bool) -> Engine:
    """What an unpickled engine is: see :class:`Engine`."""
    with _by_id_lock:
        engine = _by_id.get(engine_id)
    if engine is not None:
        return engine
    import daskless

    if default:
        return daskless.default_engine
    with _by_id_lock:
        engine = _by_id.get(engine_id)
        if engine is None:
            engine = Engine(*settings)
            # Later copies of the same engine in this process resolve to this one.
            del _by_id[engine._id]
            engine._id = engine_id
            _by_id[engine_id] = engine
        return engine


def _run_client_steps(graph: Graph, steps: Mapping[Hashable, tuple[Hashable, ...]],
                      values: dict[Hashable, object], driver: CallbackDriver) -> None:
    """Run the steps the client keeps (see :mod:`daskless.finalize`) under the callbacks."""
    for key, deps in steps.items():
        driver.task_started(key)
        values[key] = finalize.run_step(graph, key, deps, values)
        driver.task_done(key, "client")


def _rerun_locally(client: RunClient, task_id: int) -> None:
    """Run a failed task again in this process, so its exception can be debugged here."""
    plan = client.plan
    key = plan.keys[task_id]
    node = plan.dag[key].payload
    node(client.inputs_of(task_id))  # type: ignore[operator]
