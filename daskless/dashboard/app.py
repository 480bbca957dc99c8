"""The live dashboard: an aiohttp application over the stored metrics of runs.

Pages and assets are static files shipped in the package (``daskless/static/dashboard``: plain
HTML, CSS and a small hand-written script that draws SVG; nothing is loaded from the network).
The browser asks this server for two things:

- ``GET /api/runs[?limit=N]``: the newest stored runs with their status and counts (JSON).
- ``GET /api/runs/<run_id>/events``: a server-sent event stream of one run. It starts with a
  ``plan`` event (every task with its key, key prefix, partition, inputs and layout position),
  then ``records`` events carrying the run's metric records as they arrive, and ends with a
  ``complete`` event once everything is accounted for. The server follows the run's metrics
  stream with blocking reads (in a worker thread, so the event loop never blocks), so a run in
  progress is pushed to the page as workers upload, and a finished run arrives at once and is
  replayed in the page with a timeline slider.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import threading
from typing import Any

from aiohttp import web

from daskless.report import analysis
from daskless.report.data import RunMetrics, load_run
from daskless.worker_runtime import metrics
from daskless.worker_runtime.store.base import Store

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static" / "dashboard"
READ_BLOCK_S = 5.0
RUN_LIST_LIMIT = 50  # newest runs listed; each is read in full to summarize it
STORE_KEY: web.AppKey[Store] = web.AppKey("store", Store)


def _event(kind: str, data: object) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def list_runs(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    limit = int(request.query.get("limit", RUN_LIST_LIMIT))
    ids = (await asyncio.to_thread(store.metric_runs))[:limit]
    runs = await asyncio.gather(*(asyncio.to_thread(load_run, store, r, 0) for r, _ in ids))
    return web.json_response([_run_row(run) for run in runs])


def _run_row(run: RunMetrics) -> dict[str, Any]:
    return {
        "run_id": run.run_id, "started": run.started, "status": run.status or "running",
        "tasks": len(run.tasks), "recorded": len(run.tasks) - len(run.missing_tasks),
        "workers": len({i.worker for i in run.invocations.values()}),
        "total_s": run.timings.get("total"),
    }


async def run_events(request: web.Request) -> web.StreamResponse:
    """Push one run's plan and records as server-sent events (see the module docstring)."""
    store = request.app[STORE_KEY]
    run_id = request.match_info["run_id"]
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    run = RunMetrics(run_id)
    cursor, plan_sent = "0", False
    pending: list[Any] = []
    try:
        while not run.complete:
            cursor, compact = await asyncio.to_thread(
                store.read_metrics, run_id, cursor, READ_BLOCK_S)
            records = list(metrics.expand(compact))  # the page reads one record per task
            run.add(records)
            pending.extend(r for r in records if r[0] != "run")
            if not run.has_plan:
                await response.write(b": waiting for the run's plan\n\n")
                continue
            if not plan_sent:
                await response.write(_event("plan", plan_payload(run)))
                plan_sent = True
            # Comments keep the connection alive (and notice a closed page) while nothing comes.
            await response.write(_event("records", pending) if pending else b": keep-alive\n\n")
            pending = []
        await response.write(_event("complete", {"summary": run.summary()}))
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the page was closed
    return response


def plan_payload(run: RunMetrics) -> dict[str, Any]:
    view = analysis.plan_view(run)
    view["strategy"] = run.strategy
    return view


def make_app(store: Store) -> web.Application:
    app = web.Application()
    app[STORE_KEY] = store
    app.router.add_get("/", index)
    app.router.add_get("/api/runs", list_runs)
    app.router.add_get("/api/runs/{run_id}/events", run_events)
    app.router.add_static("/static/", STATIC)
    return app


def serve(store: Store, host: str, port: int) -> None:
    """Run the dashboard until interrupted."""
    def ready(_: str) -> None:  # called once the socket is bound: the line means "ready"
        print(f"daskless dashboard on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)

    web.run_app(make_app(store), host=host, port=port, print=ready)


class BackgroundDashboard:
    """The dashboard served from a thread of this process (notebooks, tests)."""

    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 8787) -> None:
        self.url = f"http://{host}:{port}"
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(make_app(store), shutdown_timeout=1.0)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        # Everything runs on the thread's own loop: the caller may be running a loop already.
        self._thread = threading.Thread(target=self._serve, args=(host, port),
                                        name="daskless-dashboard", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _serve(self, host: str, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, host, port)
            self._loop.run_until_complete(site.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def __enter__(self) -> BackgroundDashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
