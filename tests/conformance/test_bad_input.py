"""Bad input fails fast with a named error and leaves the store as it was."""

from __future__ import annotations

import threading
from typing import Any

import dask
import pytest
from dask import delayed

import daskless
from daskless.exceptions import CycleError, MissingDependencyError, SerializationError
from tests.conformance.conftest import stored_key_count


def inc(x: int) -> int:
    return x + 1


def unpicklable(_: int) -> Any:
    return threading.Lock()


@pytest.fixture
def clean(engine: daskless.Engine) -> Any:
    engine.get({"x": 1}, "x")
    before = stored_key_count(engine)
    yield engine
    assert stored_key_count(engine) == before


def test_cycle_names_its_keys(clean: daskless.Engine) -> None:
    with pytest.raises(CycleError) as info:
        clean.get({"a": (inc, "b"), "b": (inc, "c"), "c": (inc, "a"), "d": (inc, "a")}, "d")
    assert {"a", "b", "c"} <= set(info.value.cycle)
    assert "'a'" in str(info.value)


def test_missing_dependency_names_it(clean: daskless.Engine) -> None:
    from dask._task_spec import Task, TaskRef

    graph = {"y": Task("y", inc, TaskRef("nowhere"))}
    with pytest.raises(MissingDependencyError) as info:
        clean.get(graph, "y")
    assert "nowhere" in str(info.value) and "'y'" in str(info.value)


def test_unknown_key_is_a_key_error(clean: daskless.Engine) -> None:
    with pytest.raises(KeyError):
        clean.get({"x": 1}, "nope")


def test_task_raising(clean: daskless.Engine) -> None:
    def fail(v: int) -> int:
        raise ValueError(f"bad value {v}")

    with pytest.raises(ValueError, match="bad value 1"):
        dask.compute(delayed(fail)(1), scheduler=clean.get)


def test_unpicklable_result_names_the_key(clean: daskless.Engine) -> None:
    with pytest.raises(SerializationError) as info:
        clean.get({"x": 1, "lock": (unpicklable, "x")}, "lock")
    assert "lock" in str(info.value)


def test_engine_still_works_afterwards(clean: daskless.Engine) -> None:
    with pytest.raises(ZeroDivisionError):
        clean.get({"x": (lambda: 1 / 0,)}, "x")
    assert clean.get({"x": 1, "y": (inc, "x")}, "y") == 2
