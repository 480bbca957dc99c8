"""The ``daskless`` command line."""

from __future__ import annotations

import argparse
import sys

import dask.config

import daskless


def _info(_: argparse.Namespace) -> int:
    from worker_runtime.redis_server import RedisServerNotFound, find_redis_server

    print(f"daskless {daskless.__version__}")
    for name in ("store", "invoker", "workers"):
        print(f"  daskless.{name} = {dask.config.get(f'daskless.{name}')!r}")
    try:
        print(f"  redis-server: {find_redis_server()}")
    except RedisServerNotFound as exc:
        print(f"  redis-server: {exc}")
    return 0


def _demo(_: argparse.Namespace) -> int:
    from daskless import demo

    demo.main()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="daskless", description=daskless.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="show configuration and the redis-server in use")
    commands.add_parser("demo", help="run the demo computation")
    args = parser.parse_args(argv)
    return {"info": _info, "demo": _demo}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
