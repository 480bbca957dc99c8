"""Run every selected scheduler on every selected case: warm, interleaved, repeated.

For each case the collection is built and its reference computed once. Each in-process
scheduler then computes it once as a warm-up (its result is checked too), and then ``repeat``
rounds follow; each round runs every scheduler once, starting one scheduler further along than
the round before, so that slow drifts of a shared machine spread over all of them. A scheduler
that fails on a case (including a wrong answer type that breaks the check) records the error and
sits out the rest of that case; the run goes on.

Distributed is measured afterwards, one fresh interpreter per cluster kind
(:mod:`benchmarks.distributed_run`), with the same cases, warm-up and repeats.
"""

from __future__ import annotations

import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import distributed_run
from benchmarks.measure import InvocationCounter, RedisTraffic
from benchmarks.records import Record, timed_run
from benchmarks.schedulers import DISTRIBUTED, Scheduler, open_scheduler
from benchmarks.workflows import Case, graph_nodes

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_all(cases: list[Case], names: list[str], repeat: int, tier: str,
            distributed_repeat: int | None = None, log: Log = _stderr) -> list[Record]:
    """Every (case, scheduler) record, in-process schedulers first, then distributed.

    Distributed may take fewer repeats (``distributed_repeat``): it is several times slower on
    the per-task-bound workflows, where a run's noise matters least.
    """
    in_process = [n for n in names if n not in DISTRIBUTED]
    references: dict[str, Any] = {}
    records = run_in_process(cases, in_process, repeat, references, log)
    clusters = [n for n in names if n in DISTRIBUTED]
    if clusters:
        with tempfile.TemporaryDirectory(prefix="daskless-bench-") as folder:
            path = Path(folder) / "references.pickle"
            for case in cases:
                if case.name not in references:
                    references[case.name] = _reference_or_error(case)
            path.write_bytes(pickle.dumps(references))
            for cluster in clusters:
                records += distributed_run.measure_in_subprocess(
                    cluster, tier, cases, distributed_repeat or repeat, path, log)
    return records


def _reference_or_error(case: Case) -> Any:
    try:
        return case.reference()
    except Exception as exc:  # recorded per scheduler by whoever needs it
        return exc


def run_in_process(cases: list[Case], names: list[str], repeat: int,
                   references: dict[str, Any], log: Log = _stderr) -> list[Record]:
    """Records of the in-process schedulers; ``references`` is filled as cases are prepared."""
    schedulers: dict[str, Scheduler] = {}
    broken: dict[str, BaseException] = {}
    for name in names:
        try:
            schedulers[name] = open_scheduler(name)
        except Exception as exc:
            broken[name] = exc
    invocations = InvocationCounter()
    records: list[Record] = []
    try:
        with invocations.installed():
            for case in cases:
                records += _run_case(case, schedulers, broken, repeat, references,
                                     invocations, log)
    finally:
        for scheduler in schedulers.values():
            scheduler.close()
    return records


def _run_case(case: Case, schedulers: dict[str, Scheduler], broken: dict[str, BaseException],
              repeat: int, references: dict[str, Any], invocations: InvocationCounter,
              log: Log) -> list[Record]:
    try:
        collection = case.build()
        tasks = graph_nodes(collection)
        references[case.name] = reference = case.reference()
    except Exception as exc:
        failed = [Record(case.name, case.workflow.name, n, 0) for n in [*schedulers, *broken]]
        for record in failed:
            record.fail(exc)
        return failed
    records = {n: Record(case.name, case.workflow.name, n, tasks) for n in [*schedulers, *broken]}
    for name, error in broken.items():
        records[name].fail(error)
    log(f"{case.name}: {tasks} tasks ({time.strftime('%H:%M:%S')})")
    order = list(schedulers)
    for round_ in range(repeat + 1):  # round 0 is the warm-up
        shift = round_ % max(1, len(order))
        for name in order[shift:] + order[:shift]:
            record = records[name]
            if record.error is not None:
                continue
            try:
                sample = _measure(schedulers[name], case, collection, reference, invocations)
            except Exception as exc:
                record.fail(exc)
                log(f"  {name}: failed: {record.error}")
                continue
            if round_ > 0:
                record.samples.append(sample)
    for record in records.values():
        summary = record.summary()
        if "median_s" in summary:
            log(f"  {record.scheduler:22s} {summary['median_s']:8.3f} s"
                f"  matched={summary['matched']}")
    return list(records.values())


def _measure(scheduler: Scheduler, case: Case, collection: Any, reference: Any,
             invocations: InvocationCounter) -> Any:
    url = scheduler.redis_url()
    traffic = RedisTraffic(url) if url else None
    counter = invocations if scheduler.name.startswith("daskless") else None
    try:
        return timed_run(scheduler.compute, collection,
                         lambda result: case.matches(result, reference),
                         scheduler.worker_pids, traffic, counter)
    finally:
        if traffic is not None:
            traffic.close()
