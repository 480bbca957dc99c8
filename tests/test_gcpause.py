"""The collector is held off during a compute and restored exactly as it was."""

from __future__ import annotations

import gc
import threading

import dask
from dask.delayed import delayed

import daskless
from daskless import gcpause


def test_collection_is_paused_during_a_compute_and_restored_after() -> None:
    seen: list[bool] = []
    engine = daskless.Engine(store="memory", invoker="threads", workers=2)
    with engine:
        callback = dask.callbacks.Callback(pretask=lambda *a: seen.append(gc.isenabled()))
        with callback:
            assert dask.compute(delayed(sum)([1, 2, 3]), scheduler=engine.get) == (6,)
    assert seen and not any(seen)
    assert gc.isenabled()


def test_a_collector_disabled_by_the_caller_stays_disabled() -> None:
    gc.disable()
    try:
        with gcpause.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_pauses_restore_once_the_last_ends() -> None:
    first_in, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gcpause.paused():
            first_in.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    first_in.wait()
    with gcpause.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other pause is still on
    release.set()
    thread.join()
    assert gc.isenabled()


def test_the_pause_is_a_setting_that_can_be_turned_off() -> None:
    seen: list[bool] = []
    callback = dask.callbacks.Callback(pretask=lambda *a: seen.append(gc.isenabled()))
    with daskless.Engine(store="memory", invoker="threads", workers=2) as engine, callback, \
            dask.config.set({"daskless.tuning.gc-pause": False}):
        assert dask.compute(delayed(sum)([1, 2, 3]), scheduler=engine.get) == (6,)
    assert seen and all(seen)
