"""daskless: run any Dask graph as decentralized sub-DAGs on serverless-style workers.

``dask.compute(x, scheduler=daskless.get)`` (or ``scheduler="daskless"``) converts the graph,
partitions it and lets workers that share only a store (Redis) run it among themselves. With no
configuration a private redis-server and a warm pool of worker processes start on first use.

Importing this package is cheap on purpose: it loads the configuration defaults and registers
the scheduler name, and nothing else. Every worker process imports it as the parent of
``daskless.worker_runtime``, and a worker needs neither the engine nor the client's backends;
``Engine``, ``get``, ``default_engine`` and the other names below are loaded on first use.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import dask.base

from daskless import config as _config

_config.load_defaults()

__version__ = "0.1.0"

if TYPE_CHECKING:
    from daskless.engine import Engine
    from daskless.exceptions import DasklessError
    from daskless.progressbar import progress
    from daskless.report import performance_report

    default_engine: Engine

    def get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """The default engine's scheduler function (``default_engine.get``)."""

__all__ = ["DasklessError", "Engine", "default_engine", "get", "performance_report", "progress"]

# name -> (module, attribute); the attribute is None for ``default_engine``, made on first use.
_LAZY = {
    "Engine": ("daskless.engine", "Engine"),
    "DasklessError": ("daskless.exceptions", "DasklessError"),
    "progress": ("daskless.progressbar", "progress"),
    "performance_report": ("daskless.report", "performance_report"),
}
_default_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    import importlib

    if name in ("default_engine", "get"):
        engine = _default_engine()
        return engine if name == "default_engine" else engine.get
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'daskless' has no attribute {name!r}")


def _default_engine() -> Engine:
    """The engine behind ``daskless.get``, made once (thread-safe) when first needed."""
    with _default_lock:
        engine = globals().get("default_engine")
        if engine is None:
            from daskless.engine import Engine

            engine = Engine()
            globals()["default_engine"] = engine
            globals()["get"] = engine.get
        return engine


class _DefaultScheduler:
    """What ``scheduler="daskless"`` names: the default engine's ``get`` and ``persist``.

    dask calls ``get`` to compute, and for ``dask.persist`` calls ``persist`` on the object a
    scheduler method is bound to. Registering this small object's bound method lets the name
    exist from import on while the engine itself loads only when a compute needs it.
    """

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return _default_engine().get(dsk, keys, **kwargs)

    def persist(self, collections: Any, optimize_graph: bool = True, **kwargs: Any) -> Any:
        return _default_engine().persist(collections, optimize_graph=optimize_graph, **kwargs)

    def __reduce__(self) -> str:
        return "_scheduler"  # pickled by reference, like a module-level function


_scheduler = _DefaultScheduler()
dask.base.named_schedulers["daskless"] = _scheduler.get
