"""The ``http`` invoker's speed next to the warm process pool and dask's threads.

``python -m benchmarks.http_speed [--repeat N] [--instances K]`` starts a redis-server on a
loopback port and a ``daskless gateway`` program (``K`` instances at most, default the CPU
count), then times each workload, warm and interleaved, under three schedulers:

- ``http``: ``daskless.Engine(store=<that Redis>, invoker=<gateway URL>)``: every invocation is
  a signed HTTP request to the gateway, which forwards it to a worker instance process; all
  outputs cross Redis (workers may be remote, so there is no shared-memory blob tier);
- ``processes``: the default engine (embedded Redis on a unix socket, warm worker processes,
  shared-memory blob tier for large outputs);
- ``threads``: ``dask.threaded``.

It prints medians and the ratios to threads and to processes, and writes
``benchmarks/results/http-speed-<date>.json`` and ``.md``. BLAS threads are pinned to 1.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import dask  # noqa: E402
from dask.base import compute  # noqa: E402

import daskless  # noqa: E402
from benchmarks import workflows  # noqa: E402
from daskless.worker_runtime.auth import generate_secret  # noqa: E402
from daskless.worker_runtime.gateway import GATEWAY_READY_LINE  # noqa: E402
from daskless.worker_runtime.redis_server import RedisServer, free_port  # noqa: E402

RESULTS = pathlib.Path(__file__).with_name("results")
WORKLOADS: list[tuple[str, Callable[[], Any]]] = [
    ("tree-4096-delayed", workflows.tree_delayed),
    ("gemm-4000", workflows.gemm),
]


@contextlib.contextmanager
def gateway(store_url: str, secret: str, instances: int) -> Iterator[str]:
    """``daskless gateway`` as a program; settings in its environment; yields its URL."""
    env = dict(os.environ, DASK_DASKLESS__AUTH__SECRET=secret, DASK_DASKLESS__STORE=store_url)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "daskless.cli", "gateway", "--port", "0",
         "--max-instances", str(instances), "--idle-timeout", "600"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    drain = threading.Thread(target=proc.stdout.read, daemon=True)
    drain.start()
    try:
        if not line.startswith(GATEWAY_READY_LINE):
            raise RuntimeError(f"the gateway did not start: {line!r}")
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(30)
        drain.join(10)


def timed(collection: Any, scheduler: Any) -> float:
    start = time.perf_counter()
    compute(collection, scheduler=scheduler)
    return time.perf_counter() - start


def measure(collection: Any, schedulers: dict[str, Any], repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in schedulers}
    for scheduler in schedulers.values():
        timed(collection, scheduler)  # warm-up (and the gateway's cold starts)
    for _ in range(repeat):
        for name, scheduler in schedulers.items():
            times[name].append(timed(collection, scheduler))
    return times


def run(repeat: int, instances: int) -> dict[str, Any]:
    secret = generate_secret()
    rows: dict[str, Any] = {}
    with RedisServer(port=free_port()) as redis, gateway(redis.url, secret, instances) as url, \
            dask.config.set({"daskless.auth.secret": secret}), \
            daskless.Engine(store=redis.url, invoker=url, workers=instances) as http, \
            daskless.Engine() as processes:
        schedulers = {"http": http.get, "processes": processes.get, "threads": "threads"}
        for name, build in WORKLOADS:
            times = measure(build(), schedulers, repeat)
            medians = {k: statistics.median(v) for k, v in times.items()}
            rows[name] = {
                "median_s": medians,
                "times_s": times,
                "http_over_threads": medians["http"] / medians["threads"],
                "processes_over_threads": medians["processes"] / medians["threads"],
                "http_over_processes": medians["http"] / medians["processes"],
            }
            print(f"{name}: " + ", ".join(f"{k} {v:.3f}s" for k, v in medians.items())
                  + f"; http/threads {rows[name]['http_over_threads']:.2f}, "
                  f"processes/threads {rows[name]['processes_over_threads']:.2f}", flush=True)
    return rows


def markdown(record: dict[str, Any]) -> str:
    lines = [
        f"# HTTP invoker speed ({record['date']})",
        "",
        f"{record['cpus']} CPUs, {record['instances']} gateway instances, median of "
        f"{record['repeat']} warm runs.",
        "",
        "| workload | http (s) | processes (s) | threads (s) | http/threads | "
        "processes/threads | http/processes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in record["workloads"].items():
        m = row["median_s"]
        lines.append(
            f"| {name} | {m['http']:.3f} | {m['processes']:.3f} | {m['threads']:.3f} | "
            f"{row['http_over_threads']:.2f} | {row['processes_over_threads']:.2f} | "
            f"{row['http_over_processes']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_speed", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--instances", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    today = datetime.date.today().isoformat()
    record = {
        "date": today, "cpus": os.cpu_count(), "instances": args.instances,
        "repeat": args.repeat, "workloads": run(args.repeat, args.instances),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"http-speed-{today}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"http-speed-{today}.md").write_text(markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
