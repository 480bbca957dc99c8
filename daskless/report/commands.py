"""The observability commands: ``daskless runs``, ``daskless report`` and ``daskless dashboard``.

All three read stored metrics, so they need a store that outlives one process: a Redis URL
given with ``--store`` or set as ``daskless.store``. The embedded store lives only as long as
the engine that started it, and an in-process memory store cannot be reached from a command.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from daskless import config
from daskless.exceptions import ConfigurationError, DasklessError
from daskless.report.data import RunMetrics, load_run
from daskless.worker_runtime.store import urls
from daskless.worker_runtime.store.redis_store import RedisStore

Handler = Callable[[argparse.Namespace], int]


class RunNotFoundError(DasklessError, LookupError):
    """No stored metrics for the run id (or prefix) asked for."""


def open_metrics_store(url: str | None) -> RedisStore:
    """The store named by ``--store`` or ``daskless.store``; a clear error if it cannot be one."""
    url = url or str(config.get("store"))
    if not urls.is_redis_url(url):
        raise ConfigurationError(
            f"stored metrics need a Redis store, not {urls.masked(url)!r}: pass --store with a URL "
            f"starting with {urls.listed(urls.SCHEMES)} (or set daskless.store); the embedded "
            f"store lives only while its engine runs"
        )
    store = RedisStore(url)
    store.ping()
    return store


def resolve_run(store: RedisStore, wanted: str) -> str:
    """A full run id from an id or a unique prefix of one."""
    ids = [run_id for run_id, _ in store.metric_runs()]
    matches = [r for r in ids if r.startswith(wanted)]
    if wanted in ids:
        return wanted
    if len(matches) == 1:
        return matches[0]
    what = "matches several runs" if matches else "has no stored metrics"
    raise RunNotFoundError(f"run {wanted!r} {what}; `daskless runs` lists the stored runs")


def largest_prefixes(run: RunMetrics, shown: int = 3) -> str:
    """The run's most numerous task groups by dask key prefix, as ``name count`` pairs."""
    counts = Counter(task.prefix for task in run.tasks)
    return ", ".join(f"{name} {n}" for name, n in counts.most_common(shown))


def runs_table(runs: list[RunMetrics]) -> str:
    headers = ["run", "started (UTC)", "status", "tasks", "recorded", "workers", "total",
               "makespan", "predicted", "GB-s", "cost (USD)", "errors", "recoveries",
               "largest key prefixes"]
    rows = [headers]
    per_gb_s, per_request = config.prices()
    for run in runs:
        rows.append([
            run.run_id, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run.started)),
            (run.status or "running")[:40], str(len(run.tasks)),
            str(len(run.tasks) - len(run.missing_tasks)),
            str(len({i.worker for i in run.invocations.values()})),
            _seconds(run.timings.get("total")), _seconds(run.makespan_s),
            _seconds(run.predicted_makespan_s), f"{run.billed_gb_s:.3f}",
            f"{run.cost_usd(per_gb_s, per_request):.7f}",
            str(len(run.errors)), str(len(run.recoveries)),
            largest_prefixes(run),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _seconds(value: float | None) -> str:
    return f"{value:.3f} s" if value is not None else "-"


def _runs(args: argparse.Namespace) -> int:
    store = open_metrics_store(args.store)
    runs = [load_run(store, run_id, settle_s=0) for run_id, _ in store.metric_runs()]
    print(runs_table(runs) if runs else "no stored runs")
    return 0


def _report(args: argparse.Namespace) -> int:
    from daskless.report import write_report

    store = open_metrics_store(args.store)
    run = load_run(store, resolve_run(store, args.run_id), settle_s=0)
    path = write_report(args.output, [run])
    print(f"{path}: {run.summary()}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from daskless.dashboard.app import serve

    store = open_metrics_store(args.store)
    serve(store, args.host, args.port)
    return 0


def _guarded(handler: Handler) -> Handler:
    """Named errors become one line on stderr and exit status 2, not a traceback."""
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except DasklessError as exc:
            print(f"daskless {args.command}: {exc}", file=sys.stderr)
            return 2
    return run


def add_commands(commands: Any) -> dict[str, Handler]:
    """Register the commands on the CLI's sub-parsers; returns their handlers by name."""
    store_help = "Redis URL of the stored metrics (default: daskless.store)"
    runs = commands.add_parser("runs", help="list the runs that have stored metrics")
    runs.add_argument("--store", help=store_help)
    report = commands.add_parser("report", help="write a run's performance report (HTML)")
    report.add_argument("run_id", help="run id, or a unique prefix of one")
    report.add_argument("-o", "--output", default="daskless-report.html")
    report.add_argument("--store", help=store_help)
    dashboard = commands.add_parser("dashboard", help="serve the live dashboard of runs")
    dashboard.add_argument("--store", help=store_help)
    dashboard.add_argument("--port", type=int, default=8787)
    dashboard.add_argument("--host", default="127.0.0.1")
    return {"runs": _guarded(_runs), "report": _guarded(_report),
            "dashboard": _guarded(_dashboard)}
