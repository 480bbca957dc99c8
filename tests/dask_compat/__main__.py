"""``python -m tests.dask_compat``: dask's own tests under daskless, compared with sync.

Run from the repository root. For each configuration in turn (``sync``, the baseline with
every scheduler forced to ``dask.local:get_sync``; ``memory``, ``daskless:get`` with the
in-memory store and thread invoker; ``default``, ``daskless:get`` with its default embedded
Redis and worker processes; ``http``, ``daskless:get`` through a local gateway, on the core
modules only) the installed dask test modules run in a separate pytest process (see
:mod:`tests.dask_compat.runner`); a configuration that runs only some modules is compared with
the baseline's results of those. Then a table of passed / failed / errors / skipped /
xfailed / forced ``get`` calls / seconds is printed and written to
``tests/dask_compat/last_run.json``, followed by the tests that passed under sync but not
under each daskless configuration and the reasons for the baseline's own failures. Each
configuration prints when it starts, a progress line every 30 s and its counts and time when
it ends; its ``pytest.log``, ``junit.xml`` and call counts stay in
``tests/output/compat/<configuration>/`` (or ``--artifacts``) until the next run.

Exit status 1 if any configuration passes more than ``--tolerance`` (2) fewer tests than the
baseline, if any configuration's forced ``get`` was never called (the forcing did not work),
or if a run produced no results or hit the session timeout; 0 otherwise. Without the baseline
in the run (``--only memory``) there is nothing to compare with and only the run checks apply.

Environment: ``DASKLESS_COMPAT_TARGETS`` (JSON list of ``{"name", "target", "config"}``)
replaces the configurations, e.g. to check the machinery with ``dask.threaded:get``;
``DASKLESS_COMPAT_QUICK=N`` keeps only the first N tests of every module.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.dask_compat import DESELECTED, ENV_QUICK, ENV_TARGETS, TRIMMED, quick_limit
from tests.dask_compat.report import (
    comparison_problems,
    format_baseline_failures,
    format_regressions,
    format_table,
    run_record,
    write_json,
)
from tests.dask_compat.runner import (
    DEFAULT_ARTIFACTS,
    DEFAULT_MODULES,
    PACKAGE_DIR,
    Configuration,
    Outcome,
    RunSettings,
    configurations_from_env,
    run_configuration,
)


def build_parser(names: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.dask_compat",
        description="Run dask's own test modules with every scheduler forced to daskless, "
        "and compare with dask's sync scheduler forced the same way.",
        epilog=f"Environment: {ENV_TARGETS} (JSON list of configurations), "
        f"{ENV_QUICK}=N (first N tests per module).",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME[,NAME]",
        help=f"run only these configurations (of: {', '.join(names)}); repeatable",
    )
    parser.add_argument(
        "--modules",
        nargs="+",
        metavar="PATH",
        default=list(DEFAULT_MODULES),
        help="dask test modules (or node ids), relative to the dask package's parent "
        "directory, or absolute (default: %(default)s)",
    )
    add_limits(parser)
    return parser


def add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--workers", type=int, default=2, help="xdist workers (2)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per test (120)")
    parser.add_argument(
        "--session-timeout",
        type=int,
        default=3600,
        help="seconds per configuration before its pytest is killed (3600)",
    )
    parser.add_argument(
        "--tolerance",
        type=int,
        default=2,
        help="how many fewer passes than the baseline are accepted (2)",
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=DEFAULT_ARTIFACTS,
        help="keep logs, JUnit XML and counts here, one folder per configuration, until the "
        "next run (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=PACKAGE_DIR / "last_run.json",
        help="where to write the results (default: %(default)s)",
    )


def select(
    configurations: Sequence[Configuration], only: list[str] | None, parser: argparse.ArgumentParser
) -> list[Configuration]:
    """The configurations named by ``--only`` (all if not given), in their defined order."""
    if not only:
        return list(configurations)
    wanted = {name.strip() for value in only for name in value.split(",") if name.strip()}
    unknown = wanted - {c.name for c in configurations}
    if unknown:
        parser.error(f"--only: unknown configuration(s): {', '.join(sorted(unknown))}")
    return [c for c in configurations if c.name in wanted]


def applicable_deselections(modules: Sequence[str],
                            reasons: dict[str, str] = DESELECTED) -> list[str]:
    files = {module.split("::", 1)[0] for module in modules}
    return [
        f"{node}: {reason}"
        for node, reason in reasons.items()
        if any(f.endswith(node.split("::", 1)[0]) for f in files)
    ]


def print_intro(selected: Sequence[Configuration], settings: RunSettings, quick: int) -> None:
    print(f"dask test modules: {', '.join(settings.modules)}")
    print(f"workers: {settings.workers}, per-test timeout: {settings.timeout}s")
    if quick:
        print(f"quick mode ({ENV_QUICK}): first {quick} tests of every module only")
    for line in applicable_deselections(settings.modules):
        print(f"deselected by design: {line}")
    for line in applicable_deselections(settings.modules, TRIMMED):
        print(f"trimmed for time: {line}")
    print(f"artifacts: {settings.artifacts}/<configuration>/ (pytest.log, junit.xml)")
    print(f"configurations: {', '.join(c.name for c in selected)}\n", flush=True)


def run_all(selected: Sequence[Configuration], settings: RunSettings) -> list[Outcome]:
    outcomes = []
    for configuration in selected:
        config = json.dumps(configuration.config, sort_keys=True)
        started = time.strftime("%H:%M:%S")
        print(f"[{configuration.name}] started {started}: {configuration.target} {config}",
              flush=True)
        outcome = run_configuration(configuration, settings)
        c = outcome.counts
        print(f"[{configuration.name}] finished in {outcome.seconds:.0f} s: {c['passed']} "
              f"passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} skipped, "
              f"{c['xfailed']} xfailed (pytest: {outcome.summary})", flush=True)
        outcomes.append(outcome)
    return outcomes


def report(outcomes: list[Outcome], settings: RunSettings, args: argparse.Namespace) -> int:
    """Print the table and the diagnostic, write the JSON, return the exit status."""
    problems = [p for o in outcomes for p in o.problems]
    problems += comparison_problems(outcomes, args.tolerance)
    print("\n" + format_table(outcomes))
    for outcome in outcomes:
        only = outcome.configuration.modules
        if only is not None:
            print(f"{outcome.configuration.name} ran only {', '.join(only)}: it is compared "
                  f"with the baseline's results of those")
    explained = format_baseline_failures(outcomes)
    if explained:
        print("\n" + explained)
    diagnostic = format_regressions(outcomes)
    if diagnostic:
        print("\n" + diagnostic)
    write_json(args.json, run_record(outcomes, settings, quick_limit(), problems))
    print(f"\nresults: {args.json}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("OK" if not problems else f"FAILED ({len(problems)} problem(s))")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    configurations = configurations_from_env()
    parser = build_parser([c.name for c in configurations])
    args = parser.parse_args(argv)
    selected = select(configurations, args.only, parser)
    settings = RunSettings(
        tuple(args.modules), args.workers, args.timeout, args.session_timeout,
        Path(args.artifacts).resolve(),
    )
    print_intro(selected, settings, quick_limit())
    status = report(run_all(selected, settings), settings, args)
    print(f"logs, JUnit XML and call counts: {settings.artifacts}/<configuration>/")
    return status


if __name__ == "__main__":
    sys.exit(main())
