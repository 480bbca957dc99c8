"""Engines pickle by reference, so a task can capture ``daskless.get`` or an engine.

A task that captured a scheduler runs a nested compute with it. In the engine's own process the
captured engine is the live one; in a worker process it is the default engine or an engine of
the same settings, made lazily; either way the nested compute runs on the worker's store.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da

import daskless
from daskless.engine import Engine


def nested_sum(get: Callable[..., Any]) -> int:
    return int(da.arange(30, chunks=4).sum().compute(scheduler=get))


def test_task_capturing_daskless_get(engine: daskless.Engine) -> None:
    captured = daskless.get
    task = dask.delayed(lambda: nested_sum(captured))()
    assert dask.compute(task, scheduler=engine.get) == (435,)


def test_task_capturing_an_explicit_engine(engine: daskless.Engine) -> None:
    task = dask.delayed(lambda: nested_sum(engine.get))()
    assert dask.compute(task, scheduler=engine.get) == (435,)
    # The engine itself as an argument, not a bound method.
    as_argument = dask.delayed(lambda e: nested_sum(e.get))(engine)
    assert dask.compute(as_argument, scheduler=engine.get) == (435,)


def test_unpickled_in_the_same_process_is_the_same_engine() -> None:
    engine = Engine(store="memory", invoker="threads")
    assert pickle.loads(pickle.dumps(engine)) is engine
    assert pickle.loads(pickle.dumps(engine.get)).__self__ is engine
    assert pickle.loads(pickle.dumps(daskless.get)).__self__ is daskless.default_engine


def test_unpickled_elsewhere_is_an_engine_of_the_same_settings_that_started_nothing() -> None:
    from daskless import engine as engine_module

    original = Engine(store="memory", invoker="threads", workers=3)
    blob = pickle.dumps(original)
    # What another process sees: no live engine under that id.
    with engine_module._by_id_lock:
        del engine_module._by_id[original._id]
    copy = pickle.loads(blob)
    assert copy is not original
    assert copy._settings == ("memory", "threads", 3)
    assert copy._resources == {}
    assert pickle.loads(blob) is copy  # later copies in that process are the same engine
