"""Distributed's ``LocalCluster``, measured in a fresh interpreter.

The parent (:func:`measure_in_subprocess`) starts ``python -m benchmarks.distributed_run`` with
a JSON request on stdin (cluster kind, size tier, case names, repeats, and the path of the
pickled references the parent computed) and reads one JSON record per case from its stdout. The
child starts one cluster, runs each case (a warm-up, then the repeats), and always shuts the
cluster down. If the child dies or overruns its time limit, the cases it did not report record
that as their error.

Peak memory: the client figure is the child interpreter, which also hosts the cluster's
scheduler (and, with ``processes=False``, its worker); with ``processes=True`` the worker
figure sums the worker processes (as reported by ``Client.run(os.getpid)``).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import json  # noqa: E402
import logging  # noqa: E402
import pickle  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import dask  # noqa: E402

from benchmarks.records import Record, timed_run  # noqa: E402
from benchmarks.workflows import Case, cases, graph_nodes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECONDS_PER_CASE_LIMIT = 900.0


def measure_in_subprocess(cluster: str, tier: str, chosen: list[Case], repeat: int,
                          references: Path, log: Callable[[str], None]) -> list[Record]:
    """Records of one cluster kind on every case, measured by a child interpreter."""
    request = {"cluster": cluster, "tier": tier, "cases": [c.name for c in chosen],
               "repeat": repeat, "references": str(references)}
    log(f"{cluster}: measuring {len(chosen)} case(s) in a fresh interpreter, {repeat} run(s) "
        f"each after a warm-up ({time.strftime('%H:%M:%S')})")
    records: dict[str, Record] = {}
    error = None
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.distributed_run"], input=json.dumps(request),
            capture_output=True, text=True, cwd=ROOT,
            timeout=SECONDS_PER_CASE_LIMIT * max(1, len(chosen)),
        )
        for line in done.stdout.splitlines():
            if line.startswith("{"):
                record = Record.from_dict(json.loads(line))
                records[record.case] = record
        if done.returncode != 0:
            error = f"exited with code {done.returncode}: {done.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        error = "the distributed measurement overran its time limit"
    out = []
    for case in chosen:
        record = records.get(case.name) or Record(case.name, case.workflow.name, cluster, 0)
        if case.name not in records:
            record.error = error or "no result reported"
        out.append(record)
        if record.samples:
            log(f"  {case.name:24s} {record.summary()['median_s']:8.3f} s")
        else:
            log(f"  {case.name:24s} failed: {record.error}")
    return out


def _cluster(kind: str) -> Any:
    from distributed import LocalCluster

    cores = os.cpu_count() or 1
    if kind == "distributed-threads":
        return LocalCluster(processes=False, n_workers=1, threads_per_worker=cores,
                            dashboard_address=None)
    if kind == "distributed-processes":
        return LocalCluster(processes=True, n_workers=cores, threads_per_worker=1,
                            dashboard_address=None)
    raise ValueError(f"unknown cluster kind {kind!r}")


def _run_case(client: Any, case: Case, reference: Any, repeat: int, kind: str) -> Record:
    def worker_pids() -> list[int]:
        return [int(p) for p in client.run(os.getpid).values()]

    def compute(collection: Any) -> Any:
        return dask.compute(collection, scheduler=client)[0]

    record = Record(case.name, case.workflow.name, kind, 0)
    try:
        if isinstance(reference, BaseException):
            raise reference
        collection = case.build()
        record.tasks = graph_nodes(collection)
        for round_ in range(repeat + 1):  # round 0 is the warm-up
            sample = timed_run(compute, collection, lambda r: case.matches(r, reference),
                               worker_pids)
            if round_ > 0:
                record.samples.append(sample)
    except Exception as exc:
        record.fail(exc)
    return record


def main() -> None:
    from distributed import Client

    logging.getLogger("distributed").setLevel(logging.ERROR)
    request = json.loads(sys.stdin.read())
    by_name = {c.name: c for c in cases(request["tier"])}
    references = pickle.loads(Path(request["references"]).read_bytes())
    with _cluster(request["cluster"]) as cluster, Client(cluster) as client:
        for name in request["cases"]:
            record = _run_case(client, by_name[name], references.get(name), request["repeat"],
                               request["cluster"])
            print(json.dumps(record.to_dict()), flush=True)


if __name__ == "__main__":
    main()
