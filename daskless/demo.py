"""A real Dask computation through daskless, timed next to dask's threaded scheduler.

``python -m daskless.demo`` (what ``make demo`` runs) uses the default configuration: a private
redis-server and a warm pool of worker processes, started on first use and stopped at exit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from operator import add
from typing import Any

import dask.array as da
import dask.config
from dask.base import compute
from dask.delayed import delayed

import daskless


def _tree(leaves: int) -> Any:
    xs = [delayed(lambda i: i + 1)(i) for i in range(leaves)]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
    return xs[0]


def _workloads() -> dict[str, Callable[[], Any]]:
    matrix = da.random.default_rng(42).random((4000, 4000), chunks=(1000, 1000))
    return {
        "tree reduction, 4096 delayed leaves": lambda: _tree(4096),
        "(A @ A.T).sum(), 4000x4000 in 1000x1000 chunks": lambda: (matrix @ matrix.T).sum(),
    }


def _timed(collection: Any, scheduler: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    (result,) = compute(collection, scheduler=scheduler)
    return result, time.perf_counter() - start


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    print(f"daskless {daskless.__version__}: store={dask.config.get('daskless.store')}, "
          f"invoker={dask.config.get('daskless.invoker')}")
    for name, build in _workloads().items():
        collection = build()
        _timed(collection, daskless.get)  # warm-up: starts Redis and the worker pool once
        result, ours = _timed(collection, daskless.get)
        expected, theirs = _timed(collection, "threads")
        same = "matches" if abs(float(result) - float(expected)) <= 1e-6 * abs(float(expected)) \
            else "DIFFERS from"
        print(f"{name}\n  result {float(result):.6g} ({same} dask threads)\n"
              f"  daskless {ours:.3f} s | dask threads {theirs:.3f} s | ratio {ours / theirs:.2f}")
    daskless.default_engine.close()


if __name__ == "__main__":
    main()
