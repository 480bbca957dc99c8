"""The planner end to end: history in the store, predictions, sizes on every backend."""

from __future__ import annotations

import os
import re
import time
from operator import add
from pathlib import Path
from typing import Any

import dask
import pytest
from dask import delayed

import daskless
from daskless.exceptions import ConfigurationError
from daskless.planner import engine_cpu_s, learn
from daskless.report.data import RunMetrics, load_run
from daskless.report.html import render
from daskless.worker_runtime import gateway
from daskless.worker_runtime.cpu_limits import CPU_PERIOD_US, bandwidth_period_s, cpu_limiter
from daskless.worker_runtime.invokers.aws_lambda import Invocation, LambdaInvoker
from daskless.worker_runtime.lambda_emulator import EmulatorThread, FunctionConfig
from tests.http_servers import SECRET, serving
from tests.lambda_support import SECRET as LAMBDA_SECRET
from tests.lambda_support import dummy_aws_credentials, settings_for


def busy(x: int, salt: int) -> int:
    """About 20 ms of work (the salt makes each build's keys new, as a rebuild's are)."""
    time.sleep(0.02)
    return x + 1


def tree(salt: int, leaves: int = 16) -> Any:
    xs = [delayed(busy)(i, salt) for i in range(leaves)]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) for i in range(0, len(xs), 2)]
    return xs[0]


def answer(leaves: int = 16) -> int:
    return sum(range(1, leaves + 1))


def stored(engine: daskless.Engine) -> RunMetrics:
    assert engine.last_run is not None and engine.last_run.store is not None
    return load_run(engine.last_run.store, engine.last_run.run_id, settle_s=10)


def until_predicted(engine: daskless.Engine, runs: int = 6) -> list[float | None]:
    """Compute rebuilt trees until one is predicted; the predictions seen, first to last."""
    seen: list[float | None] = []
    for salt in range(runs):
        assert dask.compute(tree(salt), scheduler=engine.get) == (answer(),)
        assert engine.last_run is not None
        seen.append(engine.last_run.predicted_makespan_s)
        stored(engine)  # this run's metrics are all in before the next plan reads them
        if seen[-1] is not None:
            break
    return seen


@pytest.mark.parametrize("setting,value,named", [
    ("planner", "fastest", "daskless.planner"),
    ("sla", "p100", "daskless.sla"),
    ("sla", "quick", "daskless.sla"),
    ("sla-bound", -1, "daskless.sla-bound"),
    ("sla-bound", "soon", "daskless.sla-bound"),
    ("sizes", [0, 512], "daskless.sizes"),
    ("sizes", "big", "daskless.sizes"),
    ("sizes", [], "daskless.sizes"),
])
def test_bad_planner_settings_are_named_errors(setting: str, value: Any, named: str) -> None:
    with dask.config.set({f"daskless.{setting}": value}), \
            daskless.Engine(store="memory", invoker="threads", workers=1) as engine, \
            pytest.raises(ConfigurationError, match=named.replace(".", r"\.")):
        engine.get({"x": 1}, "x")


def test_a_rebuilt_graph_is_planned_from_the_history_of_its_earlier_builds(
        redis_url: str) -> None:
    with dask.config.set({"daskless.planner": "uniform"}), \
            daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        seen = until_predicted(engine)
        run = stored(engine)
    assert seen[0] is None  # nothing to go on the first time
    assert seen[-1] is not None and seen[-1] > 0, seen
    assert run.predicted_makespan_s == pytest.approx(seen[-1])
    planning = run.planning
    assert planning is not None and planning["planner"] == "uniform"
    assert planning["learnt_runs"] >= 1
    # One prediction per task, and the tree's root ends the predicted critical path.
    assert len(planning["durations"]) == len(run.tasks)
    consumed = {d for t in run.tasks for d in t.deps}
    (root,) = [t.id for t in run.tasks if t.id not in consumed]
    assert planning["critical_path"][-1] == root
    busy_times = [planning["durations"][t.id] for t in run.tasks if t.prefix == "busy"]
    assert all(0.01 < d < 0.2 for d in busy_times), busy_times
    page = render([run])  # the report puts plan and run side by side
    assert "Plan against run" in page
    # The simulated path also counts tasks queued behind others on one worker.
    assert re.search(r"Predicted critical path \(\d+ tasks\): busy → [^<]*add → add → add → add<",
                     page)
    assert "Observed critical path (5 tasks): busy → add → add → add → add" in page
    # What was learnt: the share of cold starts, and the pool's size, per run.
    starts = learn(engine.last_run.store, planning["structure"]).history.starts
    assert starts and all(memory > 0 and 0 <= share <= 1 for memory, share, _ in starts)


def test_every_task_reports_its_output_size(redis_url: str) -> None:
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        assert dask.compute(tree(0), scheduler=engine.get) == (answer(),)
        run = stored(engine)
    assert all(t.nbytes is not None and t.nbytes > 0 for t in run.tasks)


def test_wukong_reads_and_notes_no_history(redis_url: str) -> None:
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        for salt in range(3):
            dask.compute(tree(salt), scheduler=engine.get)
            assert engine.last_run is not None
            assert engine.last_run.predicted_makespan_s is None
        assert stored(engine).planning is None


def in_group(pid: int) -> Path | None:
    """The cpu cgroup (v1) folder of a process, if it is in one of its own."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(",") and path != "/":
            return Path("/sys/fs/cgroup/cpu") / path.lstrip("/")
    return None


def cgroups_writable() -> bool:
    limiter = cpu_limiter("daskless-probe")
    limiter.close()
    return limiter.kind != "none"


def test_the_gateway_starts_instances_at_the_planned_size(redis_url: str) -> None:
    if not cgroups_writable():
        pytest.skip("no writable cgroup hierarchy on this machine (needs root or delegation)")
    server = gateway.Gateway(gateway.GatewaySettings(store=redis_url, secret=SECRET,
                                                     max_instances=4))
    # Without history the plan is worker-memory for every sub-DAG, as the platform's size.
    settings = {"daskless.planner": "uniform", "daskless.sizes": [512],
                "daskless.worker-memory": 512, "daskless.auth.secret": SECRET}
    with serving(server) as url, dask.config.set(settings), \
            daskless.Engine(store=redis_url, invoker=url, workers=2) as engine:
        assert dask.compute(tree(0), scheduler=engine.get) == (answer(),)
        run = stored(engine)
        instances = list(server.instances)
        groups = {i.proc.pid: in_group(i.proc.pid) for i in instances}
        quotas = {pid: int((g / "cpu.cfs_quota_us").read_text()) if g else None
                  for pid, g in groups.items()}
    assert instances and {i.memory_mb for i in instances} == {512}
    for pid, quota in quotas.items():
        assert quota == round(512 / 1769 * CPU_PERIOD_US), f"instance {pid}: {groups[pid]}"
    assert not any(g is not None and g.exists() for g in groups.values())  # removed at close
    assert {i.memory_mb for i in run.invocations.values()} == {512}  # and billed at it
    # Workers report how their share is enforced: the planner's burst model needs it.
    assert {i.cpu_period_s for i in run.invocations.values()} == {CPU_PERIOD_US / 1e6}


def test_the_gateway_keeps_sizes_apart_and_retires_idle_ones_for_room(redis_url: str) -> None:
    server = gateway.Gateway(gateway.GatewaySettings(store=redis_url, secret=SECRET,
                                                     max_instances=2))
    with serving(server) as url, dask.config.set({"daskless.auth.secret": SECRET}), \
            daskless.Engine(store=redis_url, invoker=url, workers=2) as engine:
        for size in (512, 1024, 512):
            with dask.config.set({"daskless.planner": "uniform", "daskless.sizes": [size],
                                  "daskless.worker-memory": size}):
                assert dask.compute(tree(size), scheduler=engine.get) == (answer(),)
            assert {i.memory_mb for i in server.instances} <= {size, 512, 1024}
            assert any(i.memory_mb == size for i in server.instances)
        counters = dict(server.counters)
    assert counters["evicted"] >= 1  # room was made for the other size, never more than 2


def test_lambda_invocations_go_to_the_function_of_their_size(redis_server: Any) -> None:
    environment = {"DASKLESS_STORE": redis_server.url, "DASK_DASKLESS__AUTH__SECRET":
                   LAMBDA_SECRET}
    functions = [FunctionConfig("small", environment=environment, memory_mb=1024),
                 FunctionConfig("big", environment=environment, memory_mb=2048)]
    with dummy_aws_credentials(), EmulatorThread(functions, cpu_limits=True) as running:
        settings = settings_for("small", endpoint_url=running.url,
                                functions={1024: "small", "2048": "big"})
        assert settings.function_for(2048) == "big" and settings.function_for(0) == "small"
        config = {"daskless.auth.secret": LAMBDA_SECRET, "daskless.planner": "uniform",
                  "daskless.sizes": [2048], "daskless.worker-memory": 2048,
                  "daskless.lambda.endpoint-url": running.url,
                  # dask's configuration keys are text: sizes are written "1024"
                  "daskless.lambda.functions": {"1024": "small", "2048": "big"}}
        with dask.config.set(config), daskless.Engine(
                store=redis_server.url, invoker="lambda://small", workers=2) as engine:
            assert dask.compute(tree(0), scheduler=engine.get) == (answer(),)
            run = stored(engine)
        big, small = running.stats("big"), running.stats("small")
    assert big.invocations >= 1 and small.invocations == 0
    assert {i.memory_mb for i in run.invocations.values()} == {2048}


@pytest.mark.parametrize("functions", [{"0": "f"}, {"1024": ""}, ["f"]])
def test_a_bad_lambda_function_mapping_is_a_named_error(functions: Any) -> None:
    with pytest.raises(ConfigurationError, match="functions"):
        settings_for("f", functions=functions)


def test_a_lambda_payload_too_big_for_its_spec_keeps_its_identity() -> None:
    settings = settings_for("f", max_payload_bytes=2048)
    invoker = LambdaInvoker(settings, signer=None, lazy=True)  # type: ignore[arg-type]
    invocation = Invocation("run", 3, (1, 2), inline_spec=b"x" * 4096, epoch=2, memory_mb=512)
    small = Invocation.from_bytes(invoker._small_body(invocation))
    assert small.inline_spec is None
    assert (small.id, small.epoch, small.memory_mb) == (invocation.id, 2, 512)


def test_a_cpu_group_is_made_per_process_and_removed_after(tmp_path: Path) -> None:
    if not cgroups_writable():
        pytest.skip("no writable cgroup hierarchy on this machine (needs root or delegation)")
    import subprocess
    import sys

    limiter = cpu_limiter(f"daskless-test-{os.getpid()}")
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
             for _ in range(2)]
    try:
        for proc, size in zip(procs, (512, 3538)):
            limiter.limit(proc.pid, size)
        groups = [in_group(p.pid) for p in procs]
        assert groups[0] != groups[1] and None not in groups
        quotas = [int((g / "cpu.cfs_quota_us").read_text()) for g in groups if g]
        assert quotas == [round(512 / 1769 * CPU_PERIOD_US), round(3538 / 1769 * CPU_PERIOD_US)]
        periods = [bandwidth_period_s(Path(f"/proc/{p.pid}/cgroup")) for p in procs]
        assert periods == [CPU_PERIOD_US / 1e6] * 2
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            limiter.release(proc.pid)
        limiter.close()
    assert all(g is not None and not g.exists() for g in groups)


def test_the_engine_time_per_task_leaves_out_waits_for_other_workers() -> None:
    # One invocation at one vCPU: five tasks 1 ms apart, then a 0.5 s wait for an input.
    run = RunMetrics("r")
    run.add([
        ["run", {"t": 0.0, "partitions": 1, "requested": [5], "keys": [f"t-{i}" for i in range(6)],
                 "partition": [0] * 6, "deps": [[]] * 6}],
        ["inv", "i1", "w", 0, 1, 0.0, False, None, 0.0, False, 1769, 0.0],
        *[["task", "i1", i, 0.011 * i, 0.011 * i + 0.01, [], 8] for i in range(5)],
        ["task", "i1", 5, 0.6, 0.61, [], 8],
        ["end", "i1", 0.62, 6, 0],
    ])
    assert engine_cpu_s(run) == pytest.approx(0.001)
