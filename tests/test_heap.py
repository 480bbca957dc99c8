"""Long-lived workers freeze what invocations imported and forget the sub-DAGs of ended runs."""

from __future__ import annotations

import gc
import pathlib
import sys
from collections.abc import Callable, Iterator

import pytest

from daskless.worker_runtime import serialization
from daskless.worker_runtime.context import SpecCache
from daskless.worker_runtime.heap import ImportFreezer
from daskless.worker_runtime.store.memory import MemoryStore


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # give the test process its ordinary collector back


def collections_during(action: Callable[[], None]) -> int:
    """How many collections ``action`` ran."""
    seen: list[str] = []

    def count(phase: str, _info: dict[str, int]) -> None:
        seen.append(phase)

    gc.callbacks.append(count)
    try:
        action()
    finally:
        gc.callbacks.remove(count)
    return seen.count("start")


def test_an_invocation_that_imported_modules_freezes_the_heap(
    unfrozen: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    freezer = ImportFreezer()
    freezer.after_invocation()  # the modules imported so far
    assert gc.get_freeze_count() > 0
    gc.unfreeze()

    assert collections_during(freezer.after_invocation) == 0  # nothing new: nothing to do
    assert gc.get_freeze_count() == 0

    (tmp_path / "heap_probe_module.py").write_text("TABLE = [[i] for i in range(1000)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import heap_probe_module  # noqa: F401  (an invocation importing a library)

    assert collections_during(freezer.after_invocation) == 1  # garbage goes before freezing
    assert gc.get_freeze_count() >= 1000
    sys.modules.pop("heap_probe_module", None)


def test_forgetting_a_run_drops_only_its_sub_dags() -> None:
    cache, store = SpecCache(), MemoryStore()

    def spec(run_id: str, version: str) -> object:
        return cache.get(store, run_id, 0, inline=serialization.dumps(version))

    assert spec("ended", "first") == "first"
    assert spec("running", "first") == "first"
    assert spec("ended", "second") == "first"  # cached: the inline copy is not read again
    cache.forget("ended")
    assert spec("ended", "second") == "second"
    assert spec("running", "second") == "first"
