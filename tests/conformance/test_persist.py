"""``persist`` for every collection type, with deterministic tokens, on every backend.

Each collection is persisted through ``dask.persist(..., scheduler=engine.get)`` (dask calls
``Engine.persist``), then used: computed, extended by further operations, and persisted again
as a derived collection. Values are compared with dask's threaded scheduler. Tokens must be
deterministic: a persisted collection is rebuilt around ``PersistedValue`` objects, which
dask tokenizes when it names later graphs (a dataframe's expression name is such a token).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask.base import tokenize

import daskless
from daskless.futures import PersistedValue


def array() -> Any:
    return da.arange(40, chunks=7).reshape(5, 8).rechunk((2, 4)) * 3


def bag() -> Any:
    return db.from_sequence(range(30), npartitions=4).map(lambda v: v * 2)


def frame() -> Any:
    pdf = pd.DataFrame({"a": range(10), "k": list("xyzxyzxyzx")})
    return dd.from_pandas(pdf, npartitions=2)


def delayed_value() -> Any:
    return dask.delayed(sum)([dask.delayed(lambda v: v + 1)(i) for i in range(5)])


#: (builder, a further operation on the persisted collection)
COLLECTIONS: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]] = {
    "array": (array, lambda x: (x + 1).sum(axis=0)),
    "bag": (bag, lambda b: b.filter(lambda v: v % 3 == 0).map(lambda v: v + 1)),
    "dataframe": (frame, lambda d: d.assign(b=d.a * 2).groupby("k").b.sum()),
    "delayed": (delayed_value, lambda v: v * 10),
}


def assert_equal(got: Any, expected: Any) -> None:
    if isinstance(expected, (pd.DataFrame, pd.Series)):
        assert type(got) is type(expected)
        if isinstance(expected, pd.DataFrame):
            pd.testing.assert_frame_equal(got, expected)
        else:
            pd.testing.assert_series_equal(got, expected)
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected)
    else:
        assert got == expected


@pytest.mark.parametrize("name", sorted(COLLECTIONS))
def test_persisted_collection_is_usable_later(engine: daskless.Engine, name: str) -> None:
    build, further = COLLECTIONS[name]
    collection = build()
    (persisted,) = dask.persist(collection, scheduler=engine.get)
    # Deterministic tokens: the same collection persisted twice names the same graphs.
    (twice,) = dask.persist(collection, scheduler=engine.get)
    assert tokenize(persisted) == tokenize(twice)
    assert tokenize(further(persisted)) == tokenize(further(twice))
    assert_equal(persisted.compute(scheduler=engine.get), collection.compute(scheduler="threads"))
    derived = further(persisted)
    expected = further(collection).compute(scheduler="threads")
    assert_equal(derived.compute(scheduler=engine.get), expected)
    # A second persist, of a collection derived from a persisted one.
    (again,) = dask.persist(derived, scheduler=engine.get)
    assert_equal(again.compute(scheduler=engine.get), expected)


def test_same_key_same_token(engine: daskless.Engine) -> None:
    (persisted,) = dask.persist(array(), scheduler=engine.get)
    value = next(iter(dict(persisted.__dask_graph__()).values()))
    assert isinstance(value, PersistedValue)
    (resources,) = engine._resources.values()
    twin = PersistedValue(value.key, resources.store)
    assert tokenize(twin) == tokenize(value)
    assert tokenize(PersistedValue(("other", 0), resources.store)) != tokenize(value)


def test_persist_through_the_scheduler_name() -> None:
    collection = frame()
    (persisted,) = dask.persist(collection, scheduler="daskless")
    (again,) = dask.persist(collection, scheduler="daskless")
    assert tokenize(persisted) == tokenize(again)
    got = (persisted.a + 1).sum().compute(scheduler="daskless")
    assert got == (collection.a + 1).sum().compute(scheduler="threads")
    assert_equal(persisted.persist(scheduler="daskless").compute(scheduler="daskless"),
                 collection.compute(scheduler="threads"))
