"""Configuration under ``daskless.*`` in ``dask.config``.

Defaults ship in ``daskless.yaml`` next to this module and are merged *under* whatever the user
set (``dask.config.set``, YAML files, ``DASK_DASKLESS__...`` environment variables).
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import Any

import dask.config
import yaml

_DEFAULTS = pathlib.Path(__file__).with_name("daskless.yaml")


def load_defaults() -> None:
    """Register the shipped defaults with dask's configuration."""
    with _DEFAULTS.open() as f:
        dask.config.update_defaults(yaml.safe_load(f))


def get(name: str) -> Any:
    """One ``daskless.<name>`` setting."""
    return dask.config.get(f"daskless.{name}")


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
            workers=int(workers or get("workers") or os.cpu_count() or 1),
        )
