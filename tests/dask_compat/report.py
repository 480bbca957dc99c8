"""Compare the runs against the sync baseline, print the table and write ``last_run.json``.

The baseline is dask's synchronous scheduler forced through the same plugin, so every
difference between it and a daskless configuration is due to the target ``get`` alone. A
configuration fails the comparison when it passes more than ``tolerance`` fewer tests than
the baseline; the per-test diagnostic lists every test that passed under the baseline and
did not pass under the configuration, with its new status.
"""

from __future__ import annotations

import json
import platform
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tests.dask_compat import BASELINE_FAILURES, PROCESS_ISOLATION
from tests.dask_compat.junit import count_statuses
from tests.dask_compat.runner import BASELINE, Outcome, RunSettings

COLUMNS = (
    ("configuration", 14),
    ("passed", 7),
    ("failed", 7),
    ("errors", 7),
    ("skipped", 8),
    ("xfailed", 8),
    ("forced get calls", 17),
    ("seconds", 8),
)
MAX_LISTED = 200


def table_rows(outcomes: list[Outcome]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [tuple(title for title, _ in COLUMNS)]
    for o in outcomes:
        c = o.counts
        rows.append(
            (
                o.configuration.name,
                str(c["passed"]),
                str(c["failed"]),
                str(c["error"]),
                str(c["skipped"]),
                str(c["xfailed"]),
                str(o.calls),
                f"{o.seconds:.1f}",
            )
        )
    return rows


def format_table(outcomes: list[Outcome]) -> str:
    """A fixed-width table: name left-aligned, numbers right-aligned."""
    lines = []
    for row in table_rows(outcomes):
        cells = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, (_, width)) in enumerate(zip(row, COLUMNS, strict=True))
        ]
        lines.append("  ".join(cells))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def within(baseline: Outcome, outcome: Outcome) -> Outcome:
    """The baseline's results of the modules ``outcome`` ran (all of them for most)."""
    modules = outcome.configuration.modules
    if modules is None:
        return baseline
    statuses = {t: s for t, s in baseline.statuses.items() if t.split("::")[0] in modules}
    return replace(baseline, statuses=statuses, counts=count_statuses(statuses))


def regressions(baseline: Outcome, outcome: Outcome) -> dict[str, str]:
    """Tests that passed under the baseline but not under ``outcome`` (``missing`` if absent)."""
    baseline = within(baseline, outcome)
    return {
        test: outcome.statuses.get(test, "missing")
        for test, status in sorted(baseline.statuses.items())
        if status == "passed" and outcome.statuses.get(test) != "passed"
    }


def fixes(baseline: Outcome, outcome: Outcome) -> list[str]:
    """Tests that did not pass under the baseline but pass under ``outcome``."""
    baseline = within(baseline, outcome)
    return sorted(
        test
        for test, status in outcome.statuses.items()
        if status == "passed" and baseline.statuses.get(test, "passed") != "passed"
    )


def find_baseline(outcomes: list[Outcome]) -> Outcome | None:
    return next((o for o in outcomes if o.configuration.name == BASELINE), None)


def excused(baseline: Outcome, outcome: Outcome) -> dict[str, str]:
    """Regressions of an isolated configuration that ``PROCESS_ISOLATION`` explains."""
    if not outcome.configuration.isolated:
        return {}
    lost = regressions(baseline, outcome)
    return {t: PROCESS_ISOLATION[t] for t in lost if t in PROCESS_ISOLATION}


def comparison_problems(outcomes: list[Outcome], tolerance: int) -> list[str]:
    """Configurations passing more than ``tolerance`` fewer tests than the baseline.

    An isolated configuration's documented process-isolation failures are counted as passes.
    """
    baseline = find_baseline(outcomes)
    if baseline is None:
        return []
    problems = []
    for o in outcomes:
        if o is baseline:
            continue
        same = within(baseline, o)
        counted = o.counts["passed"] + len(excused(baseline, o))
        if counted < same.counts["passed"] - tolerance:
            problems.append(
                f"{o.configuration.name}: {o.counts['passed']} passed "
                f"(+{counted - o.counts['passed']} excused), below the baseline's "
                f"{same.counts['passed']} by more than {tolerance}"
            )
    return problems


def format_regressions(outcomes: list[Outcome]) -> str:
    """The diagnostic: per configuration, tests passing under sync but not under it."""
    baseline = find_baseline(outcomes)
    others = [o for o in outcomes if o is not baseline]
    if not others:
        return ""
    if baseline is None:
        return f"No {BASELINE} baseline in this run: pass counts and tests not compared."
    blocks = []
    for o in others:
        if not o.statuses:
            blocks.append(f"No results for {o.configuration.name}: see {o.log}")
            continue
        lost = regressions(baseline, o)
        head = f"Passed under {BASELINE}, not under {o.configuration.name}: {len(lost)}"
        why = excused(baseline, o)
        if why:
            head += f" ({len(why)} excused: process isolation, marked *)"
            lost = {t: s + ("*" if t in why else "") for t, s in lost.items()}
        listed = [f"  {status:8} {test}" for test, status in list(lost.items())[:MAX_LISTED]]
        if len(lost) > MAX_LISTED:
            listed.append(f"  ... and {len(lost) - MAX_LISTED} more (see the JSON file)")
        blocks.append("\n".join([head, *listed]))
    return "\n\n".join(blocks)


def explained_failures(outcome: Outcome) -> dict[str, str]:
    """This run's failures and errors that ``BASELINE_FAILURES`` explains, with the reason."""
    return {
        test: BASELINE_FAILURES.get(test, "unexplained")
        for test, status in sorted(outcome.statuses.items())
        if status in ("failed", "error") and test in BASELINE_FAILURES
    }


def format_baseline_failures(outcomes: list[Outcome]) -> str:
    """Why the baseline's own failures fail (printed under the table); '' if none."""
    baseline = find_baseline(outcomes)
    if baseline is None:
        return ""
    failing = [t for t, s in sorted(baseline.statuses.items()) if s in ("failed", "error")]
    if not failing:
        return ""
    lines = [f"Failing under {BASELINE} itself: {len(failing)}"]
    for test in failing:
        reason = BASELINE_FAILURES.get(test, "not explained: see the log")
        lines.append(f"  {test}\n      why: {reason}")
    return "\n".join(lines)


def not_passing(outcome: Outcome, status: str) -> list[str]:
    return sorted(test for test, s in outcome.statuses.items() if s == status)


def outcome_record(outcome: Outcome, baseline: Outcome | None) -> dict[str, Any]:
    c = outcome.configuration
    record: dict[str, Any] = {
        "excused_process_isolation": excused(baseline, outcome) if baseline else {},
        "name": c.name,
        "target": c.target,
        "config": c.config,
        "modules": list(c.modules) if c.modules is not None else "all",
        **outcome.counts,
        "forced_get_calls": outcome.calls,
        "reforced": outcome.reforced,
        "seconds": round(outcome.seconds, 1),
        "pytest_exit": outcome.returncode,
        "pytest_summary": outcome.summary,
        "log": str(outcome.log),
        "failed_tests": not_passing(outcome, "failed"),
        "error_tests": not_passing(outcome, "error"),
        "explained_failures": explained_failures(outcome),
    }
    if baseline is not None and outcome is not baseline:
        record["regressions"] = regressions(baseline, outcome)
        record["fixes"] = fixes(baseline, outcome)
    return record


def run_record(
    outcomes: list[Outcome], settings: RunSettings, quick: int, problems: list[str]
) -> dict[str, Any]:
    """Everything printed, as JSON-ready data."""
    baseline = find_baseline(outcomes)
    return {
        "dask_version": version("dask"),
        "python": platform.python_version(),
        "modules": list(settings.modules),
        "workers": settings.workers,
        "timeout": settings.timeout,
        "quick": quick or None,
        "baseline": BASELINE if baseline is not None else None,
        "configurations": [outcome_record(o, baseline) for o in outcomes],
        "problems": problems,
        "ok": not problems,
    }


def write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n", encoding="utf-8")
