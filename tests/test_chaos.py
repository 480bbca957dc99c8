"""The chaos job in the unit run: 100 seeded runs, each with a worker killed at a random moment.

See :mod:`tests.chaos` for what each run checks, and for the 1,000-run command. The seed is
fixed here so that the unit run is the same each time; a failure prints the seed of its run.
"""

from __future__ import annotations

from tests.chaos import Outcome, run_job

SEED = 20261128
RUNS = 100


def test_a_hundred_runs_each_with_a_worker_killed_are_all_exact() -> None:
    seen: list[Outcome] = []
    outcomes = run_job(RUNS, SEED, workers=2, report=seen.append)
    failed = [o.describe() for o in outcomes if o.problems]
    assert len(outcomes) == RUNS, "the job stopped early: " + "\n".join(failed)
    assert not failed, f"{len(failed)} of {RUNS} runs failed (job seed {SEED}):\n" + \
        "\n".join(failed)
    assert sum(1 for o in outcomes if o.recoveries) > RUNS // 4  # kills did land mid-run
