"""Performance reports: ``with daskless.performance_report("report.html"): ...``.

Like ``distributed.performance_report``: the computations inside the block are remembered as
they end, and when the block exits their metrics are read back from the store (waiting briefly
for workers' last uploads) and written as one self-contained HTML file (:mod:`.html`). The same
page can be made later from stored metrics with ``daskless report RUN_ID -o file.html``.
"""

from __future__ import annotations

import pathlib
import threading
from types import TracebackType

from daskless import observe
from daskless.report.data import RunMetrics, load_run
from daskless.report.html import render
from daskless.worker_runtime.store.base import Store

__all__ = ["RunMetrics", "load_run", "performance_report", "render", "write_report"]


def write_report(filename: str | pathlib.Path, runs: list[RunMetrics]) -> pathlib.Path:
    path = pathlib.Path(filename)
    path.write_text(render(runs), encoding="utf-8")
    return path


class performance_report:  # lower case: it reads like distributed's, ``with performance_report():``
    """Write an HTML report of every compute that ends inside the block."""

    def __init__(self, filename: str | pathlib.Path = "daskless-report.html",
                 settle_s: float = 5.0) -> None:
        self.filename = pathlib.Path(filename)
        self.settle_s = settle_s
        self.runs: list[tuple[Store, str]] = []
        self.metrics: list[RunMetrics] = []
        self._lock = threading.Lock()
        self._listening = observe.listening(self)

    def run_finished(self, store: Store, run_id: str) -> None:
        with self._lock:
            self.runs.append((store, run_id))

    def __enter__(self) -> performance_report:
        self._listening.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._listening.__exit__(exc_type, exc, tb)
        self.metrics = [load_run(store, run_id, self.settle_s) for store, run_id in self.runs]
        write_report(self.filename, self.metrics)
