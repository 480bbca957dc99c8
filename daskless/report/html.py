"""Render runs' metrics as one self-contained HTML page (inline CSS and SVG, no external URL).

Sections per run, each a ``<section>`` with a stable id prefix so that tools and tests find them:
``timings`` (client-side phases, outcome, what is missing), ``task-stream`` (a Gantt chart, one
lane per worker), ``dag`` (tasks coloured by worker, the critical path outlined in red),
``transfers`` (edges by kind: local or via store, bytes and seconds), ``prefixes`` (counts and
times per dask key prefix, the task names dask's own dashboard shows), ``workers``
(invocations, cold starts, sub-DAG fetch times) and ``errors`` (every failed attempt of a task:
key, exception, message, traceback, worker, attempt; and the recoveries the run made). Every
task shape carries ``data-task`` and ``data-worker`` attributes, and a JSON block
(``run-data``) repeats the figures the page shows.
"""

from __future__ import annotations

import html
import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

from daskless import config
from daskless.report import analysis
from daskless.report.data import RunMetrics

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2",
           "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295", "#a0cbe8"]
WIDTH = 1100

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;
text-align:right}th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
svg{background:#fff;border:1px solid #ddd}.legend span{display:inline-block;margin-right:14px}
.swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
.warn{color:#a40}.muted{color:#777}pre{background:#fff;border:1px solid #eee;padding:6px;
overflow-x:auto;font-size:12px}
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def colours(workers: Sequence[str]) -> dict[str, str]:
    return {w: PALETTE[i % len(PALETTE)] for i, w in enumerate(workers)}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def legend(palette: dict[str, str]) -> str:
    items = "".join(f'<span><i class="swatch" style="background:{c}"></i>{esc(w)}</span>'
                    for w, c in palette.items())
    return f'<div class="legend">{items}</div>'


def timings_section(run: RunMetrics, sid: str) -> str:
    order = ["convert", "partition", "submit", "wait", "results", "total"]
    rows = [[name, fmt_s(run.timings[name])] for name in order if name in run.timings]
    first, last = run.span
    rows.append(["workers: first task start to last task end", fmt_s(last - first)])
    if run.makespan_s is not None:
        predicted = run.predicted_makespan_s
        rows.append(["makespan: submitted to results", fmt_s(run.makespan_s)])
        rows.append(["predicted makespan",
                     fmt_s(predicted) if predicted is not None else "none (no history)"])
    per_gb_s, per_request = config.prices()
    rows.append(["billed (invocations rounded up to 1 ms)",
                 f"{run.billed_gb_s:.3f} GB-s, {run.cost_usd(per_gb_s, per_request):.7f} USD"])
    missing = run.missing_tasks
    note = (f'<p class="warn">Metrics missing for {len(missing)} of {len(run.tasks)} tasks.</p>'
            if missing else f"<p>All {len(run.tasks)} tasks recorded.</p>")
    return (f'<section id="timings-{sid}"><h2>Run timings</h2>'
            f"<p>Status: <b>{esc(run.status or 'running')}</b>; {run.partitions} partitions, "
            f"{len(run.invocations)} invocations, upload strategy <code>{esc(run.strategy)}</code>."
            f"</p>{note}{table(['phase', 'time'], rows)}</section>")


def task_stream_section(run: RunMetrics, sid: str, palette: dict[str, str]) -> str:
    lanes = list(palette)
    lane_h, label_w = 22, 180
    first, last = run.span
    span = max(last - first, 1e-9)
    plot_w = WIDTH - label_w - 10
    height = lane_h * max(1, len(lanes)) + 30
    parts = []
    for i, worker in enumerate(lanes):
        y = i * lane_h + 4
        parts.append(f'<text x="4" y="{y + 14}" font-size="11">{esc(worker[-26:])}</text>')
    for task in run.tasks:
        if task.start is None or task.end is None or task.worker not in palette:
            continue
        x = label_w + (task.start - first) / span * plot_w
        w = max(0.5, (task.end - task.start) / span * plot_w)
        y = lanes.index(task.worker) * lane_h + 4
        fill = "#d62728" if task.erred else palette[task.worker]
        parts.append(
            f'<rect class="task" data-task="{task.id}" data-worker="{esc(task.worker)}" '
            f'x="{x:.1f}" y="{y}" width="{w:.2f}" height="{lane_h - 6}" fill="{fill}">'
            f"<title>{esc(task.key)} ({esc(task.prefix)}): {fmt_s(task.duration)}</title></rect>")
    axis_y = height - 8
    parts.append(f'<text x="{label_w}" y="{axis_y}" font-size="11">0</text>'
                 f'<text x="{WIDTH - 60}" y="{axis_y}" font-size="11">{fmt_s(span)}</text>')
    svg = f'<svg width="{WIDTH}" height="{height}">{"".join(parts)}</svg>'
    return (f'<section id="task-stream-{sid}"><h2>Task stream</h2>'
            f"<p class='muted'>One lane per worker; each bar is one task from its start to its "
            f"end (hover for its key).</p>{legend(palette)}{svg}</section>")


def dag_section(run: RunMetrics, sid: str, palette: dict[str, str]) -> str:
    positions = analysis.layout(run.tasks)
    path = analysis.critical_path(run.tasks)
    on_path = set(path)
    path_edges = set(itertools.pairwise(path))
    height = 520
    r = 5.0 if len(run.tasks) < 200 else 2.5 if len(run.tasks) < 2000 else 1.5

    def at(task_id: int) -> tuple[float, float]:
        x, y = positions[task_id]
        return 10 + x * (WIDTH - 20), 10 + y * (height - 20)
    edges: list[str] = []
    crit: list[str] = []
    nodes: list[str] = []
    for task in run.tasks:
        x2, y2 = at(task.id)
        for dep in task.deps:
            x1, y1 = at(dep)
            line = f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>'
            (crit if (dep, task.id) in path_edges else edges).append(line)
        fill = palette.get(task.worker or "", "#ccc")
        stroke = ' stroke="#d62728" stroke-width="2"' if task.id in on_path else ""
        nodes.append(f'<circle class="node" data-task="{task.id}" '
                     f'data-worker="{esc(task.worker or "")}" cx="{x2:.1f}" cy="{y2:.1f}" '
                     f'r="{r}" fill="{fill}"{stroke}><title>{esc(task.key)}</title></circle>')
    # Large graphs: hairline edges, or the lines hide the tasks.
    edge_colour, edge_width = ("#dde1e6", 0.25) if len(run.tasks) > 1000 else ("#bbb", 0.6)
    svg = (f'<svg width="{WIDTH}" height="{height}">'
           f'<g stroke="{edge_colour}" stroke-width="{edge_width}">{"".join(edges)}</g>'
           f'<g stroke="#d62728" stroke-width="2.5">{"".join(crit)}</g>{"".join(nodes)}</svg>')
    length = sum(run.tasks[t].duration for t in path)
    return (f'<section id="dag-{sid}"><h2>Task graph</h2>'
            f"<p class='muted'>Sources on the left; colour = worker that ran the task (grey: no "
            f"record). Red: the critical path, {len(path)} tasks, {fmt_s(length)} of execution."
            f'</p><p class="critical-path" data-tasks="{",".join(map(str, path))}"></p>'
            f"{legend(palette)}{svg}</section>")


def transfers_section(run: RunMetrics, sid: str) -> str:
    totals = analysis.transfers(run)
    rows = [[kind, t.edges, fmt_bytes(t.bytes), fmt_s(t.seconds)] for kind, t in totals.items()]
    return (f'<section id="transfers-{sid}"><h2>Data transfer</h2>'
            "<p class='muted'>local: the consumer found the value in its worker's memory; via "
            "store: it was read from the store (one fetch may read several inputs); uploads: "
            "outputs written for other workers or the client.</p>"
            f"{table(['edge type', 'count', 'bytes', 'time'], rows, 'transfers')}</section>")


def prefixes_section(run: RunMetrics, sid: str) -> str:
    rows = [[f.name, f.count, fmt_s(f.total_s), fmt_s(f.mean_s), fmt_s(f.max_s),
             fmt_bytes(f.output_bytes), f.erred] for f in analysis.by_prefix(run)]
    headers = ["key prefix", "tasks", "total", "mean", "max", "output uploaded", "erred"]
    return (f'<section id="prefixes-{sid}"><h2>Tasks by key prefix</h2>'
            f"{table(headers, rows, 'prefixes')}</section>")


def plan_section(run: RunMetrics, sid: str) -> str:
    """What the planner predicted next to what happened: the run, each prefix, the critical
    path (the planner's, simulated, and the one the measured times give)."""
    planning = run.planning
    if not planning:
        return ""
    names = [t.prefix for t in run.tasks]
    rows = [
        ["planner", esc(planning.get("planner")), ""],
        ["sizes (MB per sub-DAG)", esc(planning.get("sizes")), ""],
        ["makespan", fmt_s(planning.get("predicted_p50_s")) + " (p50), "
         + fmt_s(run.predicted_makespan_s) + " (target)", fmt_s(run.makespan_s)],
        ["GB-seconds", f"{planning.get('cost_gb_s') or 0:.3f}", f"{run.billed_gb_s:.3f}"],
        ["planning took", fmt_s(planning.get("seconds")),
         f"learnt from {planning.get('learnt_runs', 0)} run(s)"],
    ]
    prefixes = [[p.name, p.count, fmt_s(p.predicted_s), fmt_s(p.measured_s),
                 "-" if p.mdape is None else f"{100 * p.mdape:.0f} %"]
                for p in analysis.planned_by_prefix(run)]
    predicted_path = [names[t] for t in planning.get("critical_path", []) if t < len(names)]
    observed_path = [names[t] for t in analysis.critical_path(run.tasks)]
    headers = ["key prefix", "tasks", "planned", "measured", "median error"]
    return (f'<section id="plan-{sid}"><h2>Plan against run</h2>'
            f"{table(['', 'planned', 'measured'], rows, 'plan')}"
            f"{table(headers, prefixes, 'plan-prefixes')}"
            f"<p>Predicted critical path ({len(predicted_path)} tasks): "
            f"{esc(' → '.join(predicted_path)) or 'none'}</p>"
            f"<p>Observed critical path ({len(observed_path)} tasks): "
            f"{esc(' → '.join(observed_path)) or 'none'}</p></section>")


def workers_section(run: RunMetrics, sid: str) -> str:
    rows = [[i.worker, i.partition, i.tasks if i.end is not None else "lost/unflushed",
             "cold" if i.cold else "warm", fmt_s(i.startup_s), fmt_s(i.spec_s),
             "inline" if i.spec_inline else "store"]
            for i in sorted(run.invocations.values(), key=lambda i: i.start)]
    headers = ["worker", "partition", "tasks", "start", "start-up", "sub-DAG fetch", "spec from"]
    return (f'<section id="workers-{sid}"><h2>Worker invocations</h2>'
            f"{table(headers, rows, 'workers')}</section>")


def errors_section(run: RunMetrics, sid: str) -> str:
    if not run.errors and not run.recoveries:
        return (f'<section id="errors-{sid}"><h2>Errors</h2>'
                "<p class='muted'>No task raised, and no work was lost.</p></section>")
    rows = [[e.key, e.type, e.message, e.worker or "", e.attempt] for e in run.errors]
    frames = "".join(f"<details><summary>{esc(e.key)}, attempt {e.attempt}</summary>"
                     f"<pre>{esc(e.traceback)}</pre></details>" for e in run.errors)
    lost = "".join(f"<li>{esc(reason)}</li>" for reason in run.recoveries)
    recovered = (f"<p>The run recovered lost work {len(run.recoveries)} time(s):</p><ul>{lost}"
                 "</ul>") if run.recoveries else ""
    headers = ["key", "exception", "message", "worker", "attempt"]
    return (f'<section id="errors-{sid}"><h2>Errors</h2>'
            f"{table(headers, rows, 'errors') if rows else ''}{frames}{recovered}</section>")


def run_data(run: RunMetrics) -> dict[str, Any]:
    totals = analysis.transfers(run)
    return {
        "run_id": run.run_id, "status": run.status, "tasks": len(run.tasks),
        "recorded": len(run.tasks) - len(run.missing_tasks),
        "workers": {w: sum(t.worker == w for t in run.tasks) for w in analysis.workers(run)},
        "prefixes": {f.name: f.count for f in analysis.by_prefix(run)},
        "transfers": {k: {"edges": t.edges, "bytes": t.bytes} for k, t in totals.items()},
        "critical_path": analysis.critical_path(run.tasks), "timings": run.timings,
        "errors": [{"key": e.key, "type": e.type, "message": e.message, "worker": e.worker,
                    "attempt": e.attempt} for e in run.errors],
        "recoveries": run.recoveries,
    }


def render_run(run: RunMetrics) -> str:
    sid = run.run_id[:12]
    palette = colours(analysis.workers(run))
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.started))
    data = json.dumps(run_data(run)).replace("</", "<\\/")
    return (f'<article class="run" data-run="{esc(run.run_id)}"><h1>Run {esc(run.run_id)}</h1>'
            f"<p class='muted'>{when}: {esc(run.summary())}</p>"
            f"{timings_section(run, sid)}{task_stream_section(run, sid, palette)}"
            f"{dag_section(run, sid, palette)}{transfers_section(run, sid)}"
            f"{prefixes_section(run, sid)}{plan_section(run, sid)}{workers_section(run, sid)}"
            f"{errors_section(run, sid)}"
            f'<script type="application/json" class="run-data">{data}</script></article>')


def render(runs: Sequence[RunMetrics], title: str = "daskless performance report") -> str:
    """The whole page for ``runs`` (in order)."""
    body = "".join(render_run(r) for r in runs) or "<p>No computation ran.</p>"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}</body></html>")
