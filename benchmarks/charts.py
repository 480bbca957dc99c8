"""PNG charts of one benchmark run (matplotlib, no display needed).

``times``: median wall time of every case on every scheduler (log scale, grouped bars).
``ratios``: each daskless configuration's time over dask threads' time per case, with the
target of each case marked; below 1 daskless is faster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report import TARGETS
from benchmarks.schedulers import ALL, DASKLESS_DEFAULT, DASKLESS_THREADS


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def times_chart(summaries: list[dict[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    cases = list(dict.fromkeys(s["case"] for s in summaries))
    schedulers = [n for n in ALL if any(s["scheduler"] == n for s in summaries)]
    medians = {(s["case"], s["scheduler"]): s.get("median_s") for s in summaries}
    width = 0.8 / max(1, len(schedulers))
    fig, ax = plt.subplots(figsize=(max(8.0, 1.2 * len(cases)), 5))
    for i, name in enumerate(schedulers):
        xs = [c + (i - (len(schedulers) - 1) / 2) * width for c in range(len(cases))]
        ys = [medians.get((case, name)) or 0.0 for case in cases]
        ax.bar(xs, ys, width, label=name)
    ax.set_yscale("log")
    ax.set_ylabel("median wall time (s, log scale)")
    ax.set_xticks(range(len(cases)), cases, rotation=30, ha="right")
    ax.legend(fontsize="small", ncol=2)
    ax.set_title("Time per workflow per scheduler")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ratios_chart(summaries: list[dict[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    cases = list(dict.fromkeys((s["case"], s["workflow"]) for s in summaries))
    medians = {(s["case"], s["scheduler"]): s.get("median_s") for s in summaries}
    fig, ax = plt.subplots(figsize=(max(8.0, 1.0 * len(cases)), 4.5))
    for i, name in enumerate((DASKLESS_DEFAULT, DASKLESS_THREADS)):
        xs, ys = [], []
        for c, (case, _) in enumerate(cases):
            ours, threads = medians.get((case, name)), medians.get((case, "threads"))
            if ours and threads:
                xs.append(c + (i - 0.5) * 0.38)
                ys.append(ours / threads)
        ax.bar(xs, ys, 0.38, label=f"{name} / threads")
    for c, (_, workflow) in enumerate(cases):
        sense, value = TARGETS.get(workflow, ("<=", 1.0))
        ratio = value if sense == "<=" else 1 / value
        ax.hlines(ratio, c - 0.45, c + 0.45, colors="black", linestyles="dashed")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel("time ratio (dashed: target)")
    ax.set_xticks(range(len(cases)), [c for c, _ in cases], rotation=30, ha="right")
    ax.legend(fontsize="small")
    ax.set_title("daskless time / dask threads time (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
