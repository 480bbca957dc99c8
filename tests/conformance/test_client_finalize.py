"""dask's finalize step runs on the client; everything before it on workers."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import dask
import dask.array as da
import dask.bag as db
import numpy as np
from dask.callbacks import Callback

import daskless


class Recorder(Callback):
    """Keys seen by pretask and posttask, and the worker each posttask names."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[Hashable] = []
        self.done: dict[Hashable, Any] = {}

    def _pretask(self, key: Hashable, dsk: Any, state: Any) -> None:
        self.started.append(key)

    def _posttask(self, key: Hashable, result: Any, dsk: Any, state: Any, worker: Any) -> None:
        self.done[key] = worker
        assert key in state["finished"]


def finalize_keys(keys: list[Hashable]) -> list[str]:
    return [k for k in keys if isinstance(k, str) and k.startswith("finalize-")]


def test_array_finalize_runs_on_the_client_under_callbacks(engine: daskless.Engine) -> None:
    x = da.arange(1000, chunks=100) * 2
    recorder = Recorder()
    with recorder:
        (result,) = dask.compute(x, scheduler=engine.get)
    np.testing.assert_array_equal(result, np.arange(1000) * 2)
    steps = finalize_keys(list(recorder.done))
    assert len(steps) == 1
    assert recorder.done[steps[0]] == "client"
    assert steps[0] in recorder.started
    assert engine.last_run is not None
    workers_ran = {k for k, *_ in engine.last_run.timeline}
    assert steps[0] not in workers_ran
    # Every chunk still ran on a worker, and the summary counts the client's step too.
    assert len(workers_ran) == engine.last_run.tasks - 1


def test_bag_and_several_collections_at_once(engine: daskless.Engine) -> None:
    bag = db.from_sequence(range(20), npartitions=4).map(lambda v: v + 1)
    arr = da.ones((10, 10), chunks=5).sum(axis=0)
    got_bag, got_arr, got_plain = dask.compute(bag, arr, 7, scheduler=engine.get)
    assert got_bag == list(range(1, 21))
    np.testing.assert_array_equal(got_arr, np.full(10, 10.0))
    assert got_plain == 7


def test_a_requested_chunk_and_its_finalize_in_one_get(engine: daskless.Engine) -> None:
    x = da.arange(10, chunks=5)
    graph = dict(x.__dask_graph__())
    chunk = (x.name, 1)
    # A direct call may ask for a chunk and for a finalize-style key that uses it.
    graph["finalize-direct"] = (np.concatenate, [(x.name, 0), chunk])
    got = engine.get(graph, ["finalize-direct", chunk])
    np.testing.assert_array_equal(got[0], np.arange(10))
    np.testing.assert_array_equal(got[1], np.arange(5, 10))
