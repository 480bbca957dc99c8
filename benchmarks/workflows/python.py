"""Pure-Python workflows: CPU-bound tasks that hold the GIL, and a wide fan-out / fan-in.

``gil_bound`` is where separate worker processes pay off against threads: each task spins a
Python loop, so threads take turns on one interpreter lock. ``fan_out`` measures the cost of
spreading one output to many consumers and gathering them back: one source task feeds
``width`` tasks, and a single task sums them.
"""

from __future__ import annotations

from typing import Any

from dask.base import tokenize
from dask.delayed import Delayed, delayed

from benchmarks.workflows.base import Workflow


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def gil_bound(tasks: int = 24, loops: int = 1_500_000) -> Any:
    """Pure-Python CPU-bound tasks (they hold the GIL), summed."""
    return delayed(sum)([delayed(_spin)(loops) for _ in range(tasks)])


def gil_bound_reference(tasks: int = 24, loops: int = 1_500_000) -> int:
    return tasks * ((loops - 1) * loops * (2 * loops - 1) // 6)  # tasks * sum of i*i, i < loops


def _source(seed: int) -> int:
    return seed * 3 + 1


def _branch(source: int, i: int) -> int:
    return source + i


def fan_out(width: int = 10_000, seed: int = 2) -> Any:
    """One task feeding ``width`` tasks, summed back by one task: ``width + 2`` tasks.

    Written as one graph layer rather than ``width`` separate ``delayed`` calls: dask turns a
    ``delayed`` over a list of 10000 delayed values (10000 graph layers) into a task graph in
    time that grows faster than linearly (tens of seconds here, for every scheduler alike),
    which would drown what this workflow measures.
    """
    token = tokenize(width, seed)
    source, branch, total = (f"fan-out-{part}-{token}" for part in ("source", "branch", "sum"))
    graph: dict[Any, Any] = {source: (_source, seed),
                             total: (sum, [(branch, i) for i in range(width)])}
    graph.update({(branch, i): (_branch, source, i) for i in range(width)})
    return Delayed(total, graph)


def fan_out_reference(width: int = 10_000, seed: int = 2) -> int:
    return width * _source(seed) + width * (width - 1) // 2


def _equal(result: Any, reference: Any) -> bool:
    return bool(result == reference)


def _tasks(tasks: int, loops: int) -> str:
    return str(tasks)


def _width(width: int, seed: int = 2) -> str:
    return str(width)


GIL_BOUND = Workflow(
    "gil-bound", gil_bound, gil_bound_reference, _equal, _tasks,
    {"test": ({"tasks": 4, "loops": 1000},), "quick": ({"tasks": 8, "loops": 1_000_000},),
     "full": ({"tasks": 24, "loops": 1_500_000},)},
)
FAN_OUT = Workflow(
    "fan-out", fan_out, fan_out_reference, _equal, _width,
    {"test": ({"width": 100},), "quick": ({"width": 1000},), "full": ({"width": 10_000},)},
)
