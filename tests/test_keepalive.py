"""``Keepalive``: originals of shipped outputs live while their run may still need them."""

from __future__ import annotations

import gc
import os

import partd

from daskless.worker_runtime.context import Keepalive


def test_a_run_going_on_keeps_its_partd_folder_until_it_is_released() -> None:
    keepalive = Keepalive(runs=1, min_age_s=3600)
    original = partd.File()
    path = original.path
    keepalive.keep("a", original)
    del original
    for run in ("b", "c", "d"):  # more runs than the count: "a" may still be going on
        keepalive.keep(run, object())
    gc.collect()
    assert os.path.isdir(path)
    assert keepalive.runs() == ["a", "b", "c", "d"]
    keepalive.release("a")  # ended, and more than one run is kept: it goes
    gc.collect()
    assert not os.path.exists(path)
    assert keepalive.runs() == ["b", "c", "d"]


def test_ended_runs_stay_among_the_most_recent() -> None:
    keepalive = Keepalive(runs=2, min_age_s=3600)
    keepalive.keep("a", object())
    keepalive.release("a")
    assert keepalive.runs() == ["a"]
    keepalive.keep("b", object())
    keepalive.release("b")
    keepalive.keep("c", object())
    assert keepalive.runs() == ["b", "c"]


def test_without_release_runs_past_the_age_and_the_count_are_dropped() -> None:
    keepalive = Keepalive(runs=2, min_age_s=0)
    for run in ("a", "b", "c", "d"):
        keepalive.keep(run, object())
    assert keepalive.runs() == ["c", "d"]
    keepalive.keep("c", object())  # the most recently kept run is the newest
    keepalive.keep("e", object())
    assert keepalive.runs() == ["c", "e"]
