"""What tasks print reaches the user, and a task's exception shows the task's own file and line.

Both are seen as a user sees them: a script run as its own program (``python script.py``), whose
tasks are defined in the script itself (so they travel by value to worker processes), with its
standard output and error captured as a terminal would show them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask
from dask import delayed

import daskless
from tests.http_servers import SECRET, gateway_process

SCRIPT = textwrap.dedent("""
    import pdb, sys, traceback
    import dask
    import daskless

    def chatty(x):
        print(f"task says {x}")
        print(f"task complains {x}", file=sys.stderr)
        return x + 1

    def broken(x):
        return x / 0

    engine = daskless.Engine(store=sys.argv[1], invoker="processes", workers=2)
    print("result", dask.compute([dask.delayed(chatty)(i) for i in range(3)],
                                 scheduler=engine.get)[0], flush=True)
    try:
        dask.compute(dask.delayed(broken)(1), scheduler=engine.get)
    except ZeroDivisionError as exc:
        print("type", type(exc).__module__, type(exc).__qualname__)
        traceback.print_exc(file=sys.stdout)
        sys.stdin = __import__("io").StringIO("where\\nquit\\n")
        pdb.post_mortem(exc.__traceback__)
    engine.close()
""")


def test_a_script_sees_what_its_tasks_print_and_where_they_fail(
        tmp_path: Path, redis_url: str) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    raising = 1 + SCRIPT.splitlines().index("    return x / 0")
    done = subprocess.run([sys.executable, str(script), redis_url], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out, err = done.stdout, done.stderr
    assert "result [1, 2, 3]" in out
    for i in range(3):  # from worker processes, as with dask's processes scheduler
        assert f"task says {i}" in out and f"task complains {i}" in err
    # The exception is the builtin type itself, not a copy made in another module ...
    assert "type builtins ZeroDivisionError" in out
    # ... and its traceback ends in the task's own file and line, also for pdb.
    location = f'File "{script}", line {raising}, in broken'
    assert location in out and "<dynamic-code>" not in out
    assert "return x / 0" in out
    assert f"{script}({raising})broken()" in out  # pdb's "where" at the failing frame


def test_gateway_instances_print_to_the_gateway_output(tmp_path: Path, redis_url: str) -> None:
    log = tmp_path / "gateway.log"

    def shout(x: int) -> int:
        print(f"instance says {x}", flush=True)
        return x

    with gateway_process(redis_url, "--max-instances", "1", output=log) as url, \
            dask.config.set({"daskless.auth.secret": SECRET}), \
            daskless.Engine(store=redis_url, invoker=url, workers=1) as engine:
        assert dask.compute(delayed(shout)(41), scheduler=engine.get) == (41,)
        deadline = time.monotonic() + 10  # the gateway passes the line on as it comes
        while "instance says 41" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "instance says 41" in log.read_text()
    assert os.path.getsize(log) > 0
