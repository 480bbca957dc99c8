"""daskless: run any Dask graph as decentralized sub-DAGs on serverless-style workers.

``dask.compute(x, scheduler=daskless.get)`` (or ``scheduler="daskless"``) converts the graph,
partitions it and lets workers that share only a store (Redis) run it among themselves. With no
configuration a private redis-server and a warm pool of worker processes start on first use.
"""

from __future__ import annotations

import dask.base

from daskless import config as _config

_config.load_defaults()

from daskless.engine import Engine  # noqa: E402
from daskless.exceptions import DasklessError  # noqa: E402
from daskless.progress import progress  # noqa: E402
from daskless.report import performance_report  # noqa: E402

__version__ = "0.1.0"

default_engine = Engine()
get = default_engine.get
"""The default scheduler: a bound method of :data:`default_engine`, so persist keeps data remote."""

dask.base.named_schedulers["daskless"] = get

__all__ = ["DasklessError", "Engine", "default_engine", "get", "performance_report", "progress"]
