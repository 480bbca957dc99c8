"""The ``daskless.get`` contract: collections, keys, kwargs, callbacks, persist, errors, nesting."""

from __future__ import annotations

import threading
import traceback
from operator import add
from typing import Any

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask import delayed
from dask.callbacks import Callback
from dask.diagnostics import Profiler, ProgressBar

import daskless
from tests.conformance.conftest import stored_key_count


def inc(x: int) -> int:
    return x + 1


def tree(n: int) -> Any:
    xs = [delayed(inc)(i) for i in range(n)]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
    return xs[0]


def test_name_is_registered_and_config_selects_it() -> None:
    registered = dask.base.named_schedulers["daskless"]
    assert daskless.get.__self__ is daskless.default_engine
    assert dask.config.get("daskless.partitions-per-worker") >= 1
    with dask.config.set(scheduler="daskless"):
        assert dask.base.get_scheduler() == registered
    # The name stands for the default engine: computes and persist both go through it.
    engine = daskless.default_engine
    assert delayed(inc)(1).compute(scheduler="daskless") == 2
    assert engine.last_run is not None
    persisted = dask.persist(da.ones(4, chunks=2), scheduler="daskless")[0]
    assert engine.last_run is not None and engine._persisted
    assert float(persisted.sum().compute(scheduler="daskless")) == 4.0


def test_collections(engine: daskless.Engine) -> None:
    x = da.arange(100, chunks=10)
    assert int((x * 2).sum().compute(scheduler=engine.get)) == 9900
    b = db.from_sequence(range(20), npartitions=4).map(lambda v: v * v)
    assert b.sum().compute(scheduler=engine.get) == sum(v * v for v in range(20))
    pdf = pd.DataFrame({"k": [1, 2, 1, 2], "v": [1.0, 2.0, 3.0, 4.0]})
    ddf = dd.from_pandas(pdf, npartitions=2)
    got = ddf.groupby("k").v.sum().compute(scheduler=engine.get)
    pd.testing.assert_series_equal(got.sort_index(), pdf.groupby("k").v.sum())
    assert dask.compute(tree(64), scheduler=engine.get) == (sum(range(1, 65)),)


def test_several_collections_and_unknown_kwargs(engine: daskless.Engine) -> None:
    a, b = delayed(inc)(1), da.ones(4, chunks=2).sum()
    got = dask.compute(a, b, scheduler=engine.get, foo="bar", num_workers=1)
    assert got == (2, 4.0)


def test_num_workers_sets_the_partitioning(engine: daskless.Engine) -> None:
    t = tree(256)
    dask.compute(t, scheduler=engine.get, num_workers=1)
    one = engine.last_run
    dask.compute(t, scheduler=engine.get, num_workers=4)
    four = engine.last_run
    assert one is not None and four is not None
    assert one.partitions < four.partitions


def test_nested_keys_and_single_key(engine: daskless.Engine) -> None:
    dsk = {"x": 1, "y": (inc, "x"), ("z", 0): (add, "x", "y")}
    assert engine.get(dsk, ("z", 0)) == 3
    assert engine.get(dsk, [[("z", 0)], ["x", ["y"]]]) == ((3,), (1, (2,)))


class Recorder(Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    def _start(self, dsk: Any) -> None:
        self.calls.append(("start", None))

    def _start_state(self, dsk: Any, state: Any) -> None:
        self.calls.append(("start_state", dict(state["cache"])))

    def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
        self.calls.append(("pretask", key))

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker: Any) -> None:
        self.calls.append(("posttask", key))

    def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
        self.calls.append(("finish", errored))


def test_callbacks_in_order(engine: daskless.Engine) -> None:
    dsk = {"x": 1, "y": (inc, "x"), "z": (add, "x", "y")}
    rec = Recorder()
    with rec:
        assert engine.get(dsk, "z") == 3
    kinds = [c[0] for c in rec.calls]
    assert kinds[:2] == ["start", "start_state"] and kinds[-1] == "finish"
    assert rec.calls[1][1] == {"x": 1}
    assert rec.calls[-1] == ("finish", False)
    finished = [c[1] for c in rec.calls if c[0] == "posttask"]
    assert sorted(finished) == ["x", "y", "z"]
    assert finished.index("x") < finished.index("y") < finished.index("z")


def test_callbacks_kwarg_and_finish_on_error(engine: daskless.Engine) -> None:
    rec = Recorder()
    with pytest.raises(ZeroDivisionError):
        engine.get({"x": 1, "y": (lambda v: v / 0, "x")}, "y", callbacks=[rec])
    assert rec.calls[0][0] == "start"
    assert rec.calls[-1] == ("finish", True)


def test_progress_bar_and_profiler(engine: daskless.Engine, capsys: Any) -> None:
    x = da.ones((40, 40), chunks=10)
    with ProgressBar(), Profiler() as prof:
        (x + 1).sum().compute(scheduler=engine.get)
    out = capsys.readouterr().out
    assert "100%" in out
    assert engine.last_run is not None
    assert len(prof.results) == engine.last_run.tasks


def test_task_error_keeps_its_type_and_remote_traceback(engine: daskless.Engine) -> None:
    def boom(v: int) -> float:
        return v / 0

    line = boom.__code__.co_firstlineno + 1
    with pytest.raises(ZeroDivisionError) as info:
        dask.compute(delayed(boom)(1), scheduler=engine.get)
    # Its own type, not a copy: it prints as ZeroDivisionError and its message is its own.
    assert type(info.value) is ZeroDivisionError and str(info.value) == "division by zero"
    # The task's frames are the traceback: the last one is the line that raised, in this file.
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert (last.filename, last.lineno, last.name) == (__file__, line, "boom")
    assert last.line == "return v / 0"


def test_rerun_exceptions_locally(engine: daskless.Engine) -> None:
    def boom(v: int) -> float:
        return v / 0

    with pytest.raises(ZeroDivisionError) as info:
        engine.get({"a": 1, "b": (inc, "a"), "c": (boom, "b")}, "c", rerun_exceptions_locally=True)
    # The local rerun raises the plain exception in this process, not the remote wrapper, and
    # its traceback ends in the task's own frame.
    assert type(info.value) is ZeroDivisionError
    tb = info.value.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    assert tb is not None and tb.tb_frame.f_code.co_name == "boom"


def test_compute_nested_in_a_task(engine: daskless.Engine) -> None:
    def inner(n: int) -> int:
        return int(da.arange(n, chunks=5).sum().compute(scheduler="daskless"))

    assert dask.compute(delayed(inner)(20), scheduler=engine.get) == (190,)


def test_concurrent_computes_are_isolated(engine: daskless.Engine) -> None:
    results: dict[int, Any] = {}

    def work(i: int) -> None:
        results[i] = dask.compute(tree(2 ** (i % 4 + 3)), scheduler=engine.get)[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: sum(range(1, 2 ** (i % 4 + 3) + 1)) for i in range(8)}


def test_persist_keeps_data_in_the_store(engine: daskless.Engine) -> None:
    x = da.arange(16, chunks=4) * 3
    (y,) = dask.persist(x, scheduler=engine.get)
    values = list(dict(y.__dask_graph__()).values())
    assert all(type(v).__name__ == "PersistedValue" for v in values)
    assert values[0].result() is not None
    total = (y + 1).sum().compute(scheduler=engine.get)
    assert int(total) == int((np.arange(16) * 3 + 1).sum())
    np.testing.assert_array_equal(y.compute(scheduler=engine.get), np.arange(16) * 3)


def test_run_keys_are_gone_afterwards(engine: daskless.Engine) -> None:
    engine.get({"x": 1}, "x")  # backend started
    before = stored_key_count(engine)
    dask.compute(tree(128), scheduler=engine.get)
    assert stored_key_count(engine) == before


def test_task_warnings_reach_the_caller(engine: daskless.Engine) -> None:
    import warnings

    def warns(v: int) -> int:
        warnings.warn("careful with " + str(v), RuntimeWarning, stacklevel=1)
        return v

    with pytest.warns(RuntimeWarning, match="careful with 3"):
        assert engine.get({"x": 3, "y": (warns, "x")}, "y") == 3


def test_bag_groupby_on_disk_loses_nothing(engine: daskless.Engine) -> None:
    # partd.File() deletes its folder when the original object is collected: the worker that
    # made it must keep it while copies elsewhere still write there.
    b = db.from_sequence(list(range(10)) * 3, npartitions=3)
    got = dict(b.groupby(lambda x: x, shuffle="disk").compute(scheduler=engine.get))
    assert got == {i: [i, i, i] for i in range(10)}


def test_disk_shuffle_survives_other_runs_meanwhile(engine: daskless.Engine) -> None:
    # The worker that made the partd store keeps its original (whose collection deletes the
    # folder) while the run goes on, however many other runs pass through that worker.
    import time

    def slow_key(x: int) -> int:
        time.sleep(0.01)
        return x % 7

    done = threading.Event()

    def other_runs() -> None:
        while not done.is_set():
            engine.get({"x": 1, "y": (inc, "x")}, "y")

    others = [threading.Thread(target=other_runs) for _ in range(2)]
    for t in others:
        t.start()
    try:
        b = db.from_sequence(list(range(210)), npartitions=21)
        got = dict(b.groupby(slow_key, shuffle="disk").compute(scheduler=engine.get))
    finally:
        done.set()
        for t in others:
            t.join()
    assert {k: sorted(v) for k, v in got.items()} == {
        k: [x for x in range(210) if x % 7 == k] for k in range(7)}
