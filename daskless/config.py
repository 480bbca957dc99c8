"""Configuration under ``daskless.*`` in ``dask.config``.

Defaults ship in ``daskless.yaml`` next to this module and are merged *under* whatever the user
set (``dask.config.set``, YAML files, ``DASK_DASKLESS__...`` environment variables). That file is
the only place a default is written: code reads a key without a fallback of its own, and a key
that is ``null`` there means "none" or "decide at run time" (as its comment says). Importing
any part of the ``daskless`` namespace, ``daskless.worker_runtime`` in a worker included, runs
``daskless/__init__.py``, which loads the defaults, so every process that reads a key has them.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import Any

import dask.config
import yaml

from daskless.scheduler.planning import PLANNERS, Target, parse_sla
from daskless.worker_runtime.errors import ConfigurationError

_DEFAULTS = pathlib.Path(__file__).with_name("daskless.yaml")
_shipped: dict[str, Any] = {}
"""The parsed ``daskless.yaml``, for keys left out of a section that a user replaced."""


def load_defaults() -> None:
    """Register the shipped defaults with dask's configuration."""
    with _DEFAULTS.open() as f:
        shipped = yaml.safe_load(f)
    _shipped.clear()
    _shipped.update(shipped)
    dask.config.update_defaults(shipped)


def get(name: str) -> Any:
    """One ``daskless.<name>`` setting (``name`` may be dotted: ``"auth.secret"``).

    ``dask.config.set({"daskless.metrics": {...}})`` replaces a whole section instead of
    merging into it; a key that such a section leaves out still reads its shipped default.
    """
    key = f"daskless.{name}"
    try:
        return dask.config.get(key)
    except KeyError:
        return dask.config.get(key, config=_shipped)


def section(name: str) -> dict[str, Any]:
    """A whole ``daskless.<name>`` section: what is set, over the shipped defaults."""
    key = f"daskless.{name}"
    merged: dict[str, Any] = dask.config.merge(
        dask.config.get(key, config=_shipped), dask.config.get(key)
    )
    return merged


def pool_size(workers: int | None = None) -> tuple[int, str]:
    """The size of a local worker pool, and where that number comes from.

    ``workers`` (an ``Engine`` argument) wins, then ``daskless.workers``; that setting is
    ``null`` by default, which means the machine's CPU count.
    """
    if workers:
        return int(workers), "given to the engine"
    configured = get("workers")
    if configured:
        return int(configured), "set by daskless.workers"
    return os.cpu_count() or 1, "the CPU count, as daskless.workers is null"


def worker_memory_mb() -> int:
    """``daskless.worker-memory``: the MB a worker has (and is billed at), a positive number."""
    value = get("worker-memory")
    try:
        memory = float(value)
    except (TypeError, ValueError):
        memory = 0.0
    if not memory > 0 or memory != int(memory):
        raise ConfigurationError(f"daskless.worker-memory must be a positive whole number of "
                                 f"MB, not {value!r}")
    return int(memory)


@dataclass(frozen=True)
class PlannerSettings:
    """``daskless.planner``, ``daskless.sla``, ``daskless.sla-bound`` and ``daskless.sizes``,
    checked."""

    planner: str
    target: Target
    sizes: tuple[int, ...]


def planner_settings() -> PlannerSettings:
    """The planner's settings; a :class:`ConfigurationError` names a bad one."""
    planner = str(get("planner"))
    if planner not in PLANNERS:
        raise ConfigurationError(f"daskless.planner is {planner!r}; expected one of "
                                 f"{', '.join(PLANNERS)}")
    bound = get("sla-bound")
    try:
        target = parse_sla(str(get("sla")), None if bound is None else _seconds(bound))
    except ValueError as exc:
        raise ConfigurationError(f"daskless.sla: {exc}") from None
    sizes = get("sizes")
    if not isinstance(sizes, (list, tuple)) or not sizes or not all(
            isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in sizes):
        raise ConfigurationError(f"daskless.sizes must be a list of positive whole numbers "
                                 f"of MB, not {sizes!r}")
    return PlannerSettings(planner, target, tuple(sorted(set(sizes))))


def _seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if not seconds > 0:
        raise ConfigurationError(f"daskless.sla-bound must be a positive number of seconds "
                                 f"or null, not {value!r}")
    return seconds


def prices() -> tuple[float, float]:
    """``daskless.price``: USD per GB-second and per invocation."""
    return float(get("price.gb-s")), float(get("price.request"))


@dataclass(frozen=True)
class Backend:
    """Which store and invoker an engine uses, and how many workers."""

    store: str
    invoker: str
    workers: int

    @classmethod
    def from_config(
        cls, store: str | None = None, invoker: str | None = None, workers: int | None = None
    ) -> Backend:
        return cls(
            store=store or str(get("store")),
            invoker=invoker or str(get("invoker")),
            workers=pool_size(workers)[0],
        )
