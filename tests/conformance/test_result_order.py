"""Rows come back in the order dask's own schedulers give them, not just with equal values.

Each collection is lowered once to a graph, as ``dask.compute`` does, and that same graph is
computed by dask's scheduler and by the engine; the results must be identical including row
order (``.head()`` shows the same rows). The reference is dask's threaded scheduler, except for
graphs with a disk shuffle: their order is the order in which the shuffle's writers ran (see
``daskless.ordering``), which is ``dask.order``'s order for that very graph. dask's threaded
scheduler occasionally runs two writers at once and then differs from itself (2 computes in 6
on ``groupby-sum-unsorted-keys`` with 30 partitions), so there the reference is dask's sync
scheduler, whose order threads and processes give whenever their writers do not overlap. (The
same collection lowered twice is two graphs: a disk shuffle's keys carry a fresh random token,
and ``dask.order`` breaks ties by key, so even sync may order the writers differently from one
``compute`` to the next; comparing one graph is what makes the comparison exact.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask._expr import FinalizeCompute
from dask.base import collections_to_expr
from dask.core import flatten
from dask.local import get_sync
from dask.threaded import get as get_threaded

import daskless
from daskless.graph import Graph, materialize
from daskless.ordering import shuffle_barriers


def frame(npartitions: int) -> dd.DataFrame:
    rng = np.random.default_rng(7)
    n = 4000
    pdf = pd.DataFrame({
        "k": rng.integers(0, 300, n),
        "s": rng.choice([f"w{i}" for i in range(40)], n),
        "v": rng.random(n),
    })
    return dd.from_pandas(pdf, npartitions=npartitions)


OPERATIONS: dict[str, Callable[[dd.DataFrame], Any]] = {
    "groupby-sort-false-agg": lambda d: d.groupby("k", sort=False).agg({"v": ["sum", "max"]}),
    "groupby-sort-false-sum-strings": lambda d: d.groupby("s", sort=False).v.sum(),
    "groupby-sum-unsorted-keys": lambda d: d.groupby("k").v.sum(),
    "value-counts": lambda d: d.s.value_counts(),
    "value-counts-unsorted": lambda d: d.k.value_counts(sort=False),
    "drop-duplicates": lambda d: d.k.drop_duplicates(),
    "concat-of-partitions": lambda d: dd.concat([d, d.assign(v=d.v * 2)]),
    "groupby-shuffle-tasks": lambda d: d.groupby("k", sort=False).v.sum(
        split_out=3, shuffle_method="tasks"),
    "groupby-shuffle-disk": lambda d: d.groupby("s", sort=False).v.mean(
        split_out=3, shuffle_method="disk"),
}


def lowered(collection: Any) -> tuple[Graph, list[Any]]:
    """The graph and keys ``dask.compute`` hands a scheduler for ``collection``."""
    expr = FinalizeCompute(collections_to_expr([collection], True)).optimize()
    graph, _ = materialize(expr)
    return graph, list(flatten(expr.__dask_keys__()))


def assert_same_rows(expected: Any, got: Any) -> None:
    assert list(got.index) == list(expected.index)
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected)
    else:
        pd.testing.assert_series_equal(got, expected)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
@pytest.mark.parametrize("npartitions", [5, 30])
def test_dataframe_rows_in_dask_order(engine: daskless.Engine, name: str,
                                      npartitions: int) -> None:
    graph, keys = lowered(OPERATIONS[name](frame(npartitions)))
    reference = get_sync if shuffle_barriers(graph) else get_threaded
    (expected,) = reference(graph, keys)
    for _ in range(2):  # an order left to chance would differ sooner or later
        (got,) = engine.get(graph, keys)
        assert_same_rows(expected, got)


def test_bag_disk_groupby_keeps_dask_order(engine: daskless.Engine) -> None:
    words = [f"w{(i * 7) % 23}" for i in range(600)]
    groups = db.from_sequence(list(enumerate(words)), npartitions=12).groupby(
        lambda pair: pair[1], shuffle="disk")
    graph, keys = lowered(groups)
    assert engine.get(graph, keys) == get_sync(graph, keys)
