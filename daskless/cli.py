"""The ``daskless`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import daskless
from daskless import config

DESCRIPTION = (
    "Run Dask graphs as decentralized sub-DAGs on serverless-style workers that coordinate "
    "only through Redis. Configuration: dask.config keys daskless.* (environment variables "
    "DASK_DASKLESS__...); 'daskless info' shows the settings in use."
)


def _info(_: argparse.Namespace) -> int:
    from daskless.worker_runtime.redis_server import RedisServerNotFound, find_redis_server

    print(f"daskless {daskless.__version__}")
    for name in ("store", "invoker"):
        print(f"  daskless.{name} = {config.get(name)!r}")
    workers, source = config.pool_size()
    print(f"  daskless.workers = {workers} ({source})")
    try:
        print(f"  redis-server: {find_redis_server()}")
    except RedisServerNotFound as exc:
        print(f"  redis-server: {exc}")
    return 0


def _demo(_: argparse.Namespace) -> int:
    from daskless import demo

    demo.main()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from daskless.worker_runtime import http_worker

    return http_worker.command(args.store, args.host, args.port, args.concurrency,
                               args.invoke_url, args.insecure)


def _gateway(args: argparse.Namespace) -> int:
    from daskless.worker_runtime import gateway

    return gateway.command(args.store, args.host, args.port, args.max_instances,
                           args.idle_timeout, args.queue_limit, args.insecure)


def _add_serving_commands(commands: Any) -> None:
    """``worker`` and ``gateway``: the HTTP function worker and the local FaaS gateway."""
    store_help = ("Redis URL (default: daskless.store; a URL with a password is better given "
                  "as DASK_DASKLESS__STORE than on the command line)")
    insecure_help = "accept unsigned invocations when no daskless.auth.secret is set"
    worker = commands.add_parser("worker", help="serve invocations over HTTP (POST /invoke)")
    worker.add_argument("--port", type=int, default=8080)
    worker.add_argument("--host", default="127.0.0.1")
    worker.add_argument("--store", help=store_help)
    worker.add_argument("--concurrency", type=int, default=1,
                        help="invocations run at once; more are answered 429")
    worker.add_argument("--invoke-url", help="where fan-out goes (default: this worker)")
    worker.add_argument("--insecure", action="store_true", help=insecure_help)
    gateway = commands.add_parser("gateway", help="a local FaaS gateway over HTTP workers")
    gateway.add_argument("--port", type=int, default=8080)
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--store", help=store_help)
    gateway.add_argument("--max-instances", type=int, default=os.cpu_count() or 1)
    gateway.add_argument("--idle-timeout", type=float, default=60.0,
                         help="seconds an idle instance lives")
    gateway.add_argument("--queue-limit", type=int, default=None,
                         help="invocations waiting for an instance before 429 (default: no limit)")
    gateway.add_argument("--insecure", action="store_true", help=insecure_help)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="daskless", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="show configuration and the redis-server in use")
    commands.add_parser("demo", help="run the demo computation")
    _add_serving_commands(commands)
    from daskless.report.commands import add_commands as add_observability_commands

    observability = add_observability_commands(commands)  # runs, report, dashboard
    args = parser.parse_args(argv)
    handlers = {"info": _info, "demo": _demo, "worker": _worker, "gateway": _gateway}
    return {**handlers, **observability}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
