"""The speed settings that reach beyond one compute (``daskless.tuning``) do what they say.

The garbage collector pause has its own tests (``test_gcpause.py``); peer reads are probed and
switched in ``test_values.py``. Here: the worker heap freeze never freezes what a running
invocation uses, and the allocator settings reach worker processes only when they are on.
"""

from __future__ import annotations

import gc
import pathlib
import sys
import threading
from collections.abc import Iterator

import dask
import pytest

import daskless
from daskless.worker_runtime.hosting import InvocationGate
from daskless.worker_runtime.invokers.processes import WARM_MEMORY_ENV


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def import_a_module(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    (tmp_path / f"{name}.py").write_text("TABLE = [[i] for i in range(100)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__(name)
    monkeypatch.delitem(sys.modules, name)


def test_the_heap_is_frozen_only_when_no_invocation_is_running(
        unfrozen: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = InvocationGate(freeze=True)
    running, release = threading.Event(), threading.Event()

    def long_invocation() -> None:
        with gate.invocation():
            running.set()
            release.wait(30)

    other = threading.Thread(target=long_invocation)
    other.start()
    running.wait(30)
    with gate.invocation():
        import_a_module(tmp_path, monkeypatch, "gate_probe_one")
    assert gc.get_freeze_count() == 0  # the other invocation still runs: nothing frozen
    release.set()
    other.join()
    assert gc.get_freeze_count() > 0  # the last one to end froze what the first imported
    assert gate.running == 0


def test_the_freeze_can_be_turned_off(
        unfrozen: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = InvocationGate(freeze=False)
    with gate.invocation():
        import_a_module(tmp_path, monkeypatch, "gate_probe_two")
    assert gc.get_freeze_count() == 0


def worker_environ(pid: int) -> dict[str, str]:
    raw = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.parametrize("warm", [True, False])
def test_allocator_settings_reach_workers_only_when_on(redis_url: str, warm: bool) -> None:
    with dask.config.set({"daskless.tuning.warm-malloc": warm}), \
            daskless.Engine(store=redis_url, invoker="processes", workers=1) as engine:
        assert engine.get({"x": 1}, "x") == 1
        (resources,) = engine._resources.values()
        (pid,) = resources.invoker.pids()  # type: ignore[attr-defined]
        environ = worker_environ(pid)
    for name, value in WARM_MEMORY_ENV.items():
        assert (environ.get(name) == value) is warm
