"""``python -m benchmarks run [--quick] [--workflows ...] [--schedulers ...]``; also
``python -m benchmarks planner`` (:mod:`benchmarks.planner`).

Compares both local daskless configurations with dask's ``sync``, ``threads`` and ``processes``
schedulers and distributed's ``LocalCluster`` (threads and processes) on the workflows of
:mod:`benchmarks.workflows`, and writes ``benchmarks/results/<date>[-quick].json``, a markdown
report and PNG charts next to it. ``--update-readme`` also rewrites the README's performance
block. BLAS threads are pinned to 1 here, before numpy is first imported, and worker processes
inherit the setting.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import dask  # noqa: E402
import distributed  # noqa: E402

from benchmarks import charts, report  # noqa: E402
from benchmarks.runner import run_all  # noqa: E402
from benchmarks.schedulers import ALL  # noqa: E402
from benchmarks.workflows import WORKFLOWS, cases  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the comparison and write the reports")
    run.add_argument("--quick", action="store_true",
                     help="small sizes, fewer repeats, no large sizes (a few minutes)")
    run.add_argument("--large", action="store_true",
                     help="also the large sizes (GEMM 10000x10000: tens of minutes on 2 cores)")
    run.add_argument("--workflows", nargs="+", metavar="NAME",
                     choices=[w.name for w in WORKFLOWS], help="only these workflows")
    run.add_argument("--schedulers", nargs="+", metavar="NAME", choices=ALL,
                     help=f"only these schedulers (of {', '.join(ALL)})")
    run.add_argument("--repeat", type=int, help="timed runs per pair (default 3, quick 1)")
    run.add_argument("--distributed-repeat", type=int,
                     help="timed runs per case on distributed (default 2, quick 1)")
    run.add_argument("--output", type=Path, default=report.RESULTS,
                     help="folder for the reports (default benchmarks/results)")
    run.add_argument("--update-readme", action="store_true",
                     help="rewrite the README's performance block with this run")
    prof = commands.add_parser("profile", help="where a daskless run of one case spends time")
    prof.add_argument("case", help="a case name, such as gemm-4000")
    prof.add_argument("--quick", action="store_true", help="look the case up in the quick sizes")
    prof.add_argument("--py-spy", type=float, default=0.0, metavar="SECONDS",
                      help="also sample the worker processes with py-spy for this long")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["planner"]:  # its own options: python -m benchmarks planner --help
        from benchmarks import planner

        sys.exit(planner.main(argv[1:]))
    args = _parser().parse_args(argv)
    if args.command == "profile":
        from benchmarks.profile import profile

        profile(args.case, "quick" if args.quick else "full", args.py_spy)
        return
    tier = "quick" if args.quick else "full"
    repeat = args.repeat or (1 if args.quick else 3)
    distributed_repeat = args.distributed_repeat or min(repeat, 1 if args.quick else 2)
    schedulers = args.schedulers or list(ALL)
    chosen = cases(tier, args.workflows, large=args.large)
    started = time.perf_counter()
    records = run_all(chosen, schedulers, repeat, tier, distributed_repeat)
    summaries = [r.summary() for r in records]
    order = {n: i for i, n in enumerate(ALL)}
    summaries.sort(key=lambda s: ([c.name for c in chosen].index(s["case"]),
                                  order[s["scheduler"]]))
    date = datetime.date.today().isoformat()
    meta: dict[str, Any] = {
        "date": date, "mode": tier, "repeat": repeat, "distributed_repeat": distributed_repeat,
        "schedulers": schedulers,
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "cores": os.cpu_count(), "python": platform.python_version(),
        "dask": dask.__version__, "distributed": distributed.__version__,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    result = {"meta": meta, "targets": report.targets(summaries), "results": summaries,
              "records": [r.to_dict() for r in records]}
    args.output.mkdir(parents=True, exist_ok=True)
    stem = args.output / (date if tier == "full" else f"{date}-{tier}")
    chart_paths = [charts.times_chart(summaries, stem.with_name(stem.name + "-times.png")),
                   charts.ratios_chart(summaries, stem.with_name(stem.name + "-ratios.png"))]
    json_path = report.write_json(result, stem)
    markdown = report.write_markdown(result, stem, chart_paths)
    print("\n".join(report.targets_table(result["targets"])))
    print(f"\nwrote {json_path}, {markdown} and {len(chart_paths)} charts "
          f"in {meta['elapsed_s']} s")
    if args.update_readme:
        report.update_readme(report.readme_section(result, chart_paths, markdown))
        print("updated the README's performance block")


if __name__ == "__main__":
    main()
