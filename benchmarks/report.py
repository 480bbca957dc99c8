"""Benchmark reports: the JSON file, the markdown tables, the charts and the README section.

Everything is derived from the per-(case, scheduler) summaries of one run. Targets are ratios of
the default daskless configuration to dask's threaded scheduler in the same run (for GIL-bound
work, a speed-up), plus a minimum speed-up over distributed's ``LocalCluster`` on the workflows
where its per-task overhead dominates.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.schedulers import ALL, DASKLESS_DEFAULT, DESCRIPTIONS, DISTRIBUTED

RESULTS = Path(__file__).with_name("results")
README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- performance:begin -->", "<!-- performance:end -->"

# workflow -> (sense, value) for daskless / dask threads; ">=" is a speed-up (threads / daskless)
TARGETS: dict[str, tuple[str, float]] = {
    "tree-delayed": ("<=", 1.0), "tree-array": ("<=", 1.0), "gemm": ("<=", 1.3),
    "svd1": ("<=", 1.3), "svd2": ("<=", 1.3), "image": ("<=", 1.2),
    "wordcount": (">=", 1.6), "gil-bound": (">=", 1.6), "fan-out": ("<=", 1.0),
}
DISTRIBUTED_SPEEDUP = 5.0
PER_TASK_BOUND = ("tree-delayed", "tree-array", "fan-out")


def save_json(name: str, record: dict[str, Any]) -> Path:
    """Write one measurement's record to ``results/<name>-<today>.json``; its path."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    return out


def _median(rows: dict[tuple[str, str], dict[str, Any]], case: str, scheduler: str) -> float | None:
    row = rows.get((case, scheduler))
    return row.get("median_s") if row else None


def targets(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per case: the ratio to threads, its target, and the speed-up over distributed."""
    rows = {(s["case"], s["scheduler"]): s for s in summaries}
    out = []
    for case, workflow in dict.fromkeys((s["case"], s["workflow"]) for s in summaries):
        ours, threads = _median(rows, case, DASKLESS_DEFAULT), _median(rows, case, "threads")
        sense, value = TARGETS.get(workflow, ("<=", 1.0))
        goal = f"<= {value:g}" if sense == "<=" else f"speed-up >= {value:g}"
        row: dict[str, Any] = {"case": case, "workflow": workflow, "target": goal}
        if ours and threads:
            row["ratio"] = ours / threads
            row["met"] = ours / threads <= value if sense == "<=" else threads / ours >= value
        dist = [m for m in (_median(rows, case, d) for d in DISTRIBUTED) if m]
        if ours and dist:
            row["vs_distributed"] = min(dist) / ours
            if workflow in PER_TASK_BOUND:
                row["distributed_met"] = min(dist) / ours >= DISTRIBUTED_SPEEDUP
        out.append(row)
    return out


def write_json(report: dict[str, Any], stem: Path) -> Path:
    path = stem.with_suffix(".json")
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return path


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    if row.get("error"):
        return "error"
    text = _fmt(row.get("median_s"))
    return text if row.get("matched", True) else f"{text} (wrong)"


def times_table(summaries: list[dict[str, Any]]) -> list[str]:
    rows = {(s["case"], s["scheduler"]): s for s in summaries}
    schedulers = [n for n in ALL if any(s["scheduler"] == n for s in summaries)]
    cases = list(dict.fromkeys(s["case"] for s in summaries))
    tasks = {s["case"]: s["tasks"] for s in summaries if s.get("tasks")}
    lines = ["| case | tasks | " + " | ".join(schedulers) + " |",
             "|---|---:|" + "---:|" * len(schedulers)]
    for case in cases:
        cells = [_cell(rows.get((case, n))) for n in schedulers]
        lines.append(f"| {case} | {tasks.get(case, '')} | " + " | ".join(cells) + " |")
    return lines


def targets_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| case | daskless / threads | target | met | distributed / daskless |",
             "|---|---:|---|---|---:|"]
    for row in rows:
        met = {True: "yes", False: "**no**"}.get(row.get("met"), "-")  # type: ignore[arg-type]
        dist = row.get("vs_distributed")
        dist_text = "-" if dist is None else f"{dist:.1f}x"
        if "distributed_met" in row:
            dist_text += f" (target ≥ {DISTRIBUTED_SPEEDUP:g}x: " \
                         f"{'yes' if row['distributed_met'] else '**no**'})"
        lines.append(f"| {row['case']} | {_fmt(row.get('ratio'), 2)} | {row['target']} | "
                     f"{met} | {dist_text} |")
    return lines


def details_table(summaries: list[dict[str, Any]]) -> list[str]:
    lines = ["| case | scheduler | median (s) | min-max (s) | µs/task | client peak (MB) | "
             "workers peak (MB) | Redis written | Redis read | invocations | result |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        if s.get("error") or "median_s" not in s:
            lines.append(f"| {s['case']} | {s['scheduler']} | | | | | | | | | error: "
                         f"{str(s.get('error')).replace('|', '/')[:120]} |")
            continue
        lines.append(
            f"| {s['case']} | {s['scheduler']} | {_fmt(s['median_s'])} | "
            f"{_fmt(s['min_s'])}-{_fmt(s['max_s'])} | {s['per_task_us']:.0f} | "
            f"{_fmt(s['client_peak_mb'], 0)} | {_fmt(s['workers_peak_mb'], 0)} | "
            f"{_bytes(s['redis_written_bytes'])} | {_bytes(s['redis_read_bytes'])} | "
            f"{_fmt(s['invocations'], 0)} | {'matched' if s['matched'] else 'WRONG'} |")
    return lines


def legend(schedulers: Iterable[str]) -> list[str]:
    return [f"- `{n}`: {DESCRIPTIONS[n]}" for n in schedulers if n in DESCRIPTIONS]


def write_markdown(report: dict[str, Any], stem: Path, charts: list[Path]) -> Path:
    summaries, meta = report["results"], report["meta"]
    lines = [f"# Benchmark {meta['date']} ({meta['mode']})", "",
             f"`{meta['command']}` on {meta['cores']} cores, Python {meta['python']}, "
             f"dask {meta['dask']}, distributed {meta['distributed']}; BLAS threads pinned to "
             f"1; medians of {meta['repeat']} warm interleaved runs after one warm-up "
             f"(distributed: {meta.get('distributed_repeat', meta['repeat'])} runs, measured "
             "afterwards in a fresh interpreter).", "",
             *legend(meta["schedulers"]), "", "## Targets (daskless default vs dask threads)", "",
             *targets_table(report["targets"]), "", "## Wall time (median seconds)", "",
             *times_table(summaries), "",
             *[f"![{p.stem}]({p.name})" for p in charts], "", "## Details", "",
             *details_table(summaries), ""]
    path = stem.with_suffix(".md")
    path.write_text("\n".join(lines))
    return path


def readme_section(report: dict[str, Any], charts: list[Path], markdown: Path) -> str:
    meta = report["meta"]
    root = README.parent
    lines = [BEGIN, f"Latest run: `{meta['command']}`, {meta['date']}, {meta['cores']} cores, "
             f"medians of {meta['repeat']} warm interleaved runs "
             f"(full report: [{markdown.relative_to(root)}]({markdown.relative_to(root)})).", "",
             *targets_table(report["targets"]), "", *times_table(report["results"]), "",
             *[f"![{p.stem}]({p.relative_to(root)})" for p in charts], END]
    return "\n".join(lines)


def update_readme(section: str) -> None:
    """Replace the text between the performance markers of the README, nothing else."""
    text = README.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise RuntimeError(f"README.md has no {BEGIN} ... {END} block to update")
    README.write_text(pattern.sub(lambda _: section, text, count=1))
