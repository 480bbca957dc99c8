"""Run dask's installed test modules once per configuration, each in its own pytest process.

A configuration is a target ``get`` (``module:attr``) plus extra ``dask.config`` settings. For
each one the runner starts ``python -m pytest`` on the installed dask test modules with:

* ``-c tests/dask_compat/pytest.ini`` and ``--rootdir``/``--confcutdir`` at the directory that
  holds the dask package, so only that ini file and dask's own ``conftest.py`` files apply and
  node ids read ``dask/bag/tests/test_bag.py::...`` whatever the environment;
* ``-p tests.dask_compat.force_scheduler``, the plugin that forces the target; it reads the
  target, the settings and the call-count file from environment variables, which xdist workers
  inherit; the repository root is put on ``PYTHONPATH`` so workers (and any processes the
  target starts) can import the plugin and the project;
* ``-n`` xdist workers, a per-test ``--timeout`` (pytest-timeout) and ``--junitxml``.

The pytest process runs in a scratch directory (some dask tests write into the working
directory) in its own session, and the whole process group is killed if the run exceeds the
session timeout, so nothing can hang the runner. Each run leaves ``pytest.log``,
``junit.xml`` and ``counts.jsonl`` in its artifacts directory (by default
``tests/output/compat/<configuration>/``), where they stay until the next run of that
configuration replaces them.

While pytest runs, the runner prints a progress line every ``PROGRESS_EVERY_S`` seconds: the
tests done so far by outcome, read from pytest's own progress characters in the log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.dask_compat import ENV_CONFIG, ENV_COUNT_FILE, ENV_TARGET, ENV_TARGETS, SYNC_TARGET
from tests.dask_compat.junit import count_statuses, read_statuses

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent.parent
INI_FILE = PACKAGE_DIR / "pytest.ini"
PLUGIN = "tests.dask_compat.force_scheduler"
DEFAULT_ARTIFACTS = REPO_ROOT / "tests" / "output" / "compat"
PROGRESS_EVERY_S = 30.0

BASELINE = "sync"
DEFAULT_MODULES = (
    "dask/tests/test_delayed.py",
    "dask/array/tests/test_reductions.py",
    "dask/bag/tests/test_bag.py",
    # Dataframes: shuffles (disk and tasks), set_index and sort_values; categoricals (known
    # and unknown categories found by computing); get_dummies and pivot tables; loc/iloc.
    # Measured on 2 cores (summed test time, sync / default / http): test_shuffle 14 / 36 /
    # 81 s (with test_dataframe_shuffle_on_arg trimmed), test_categorical 8 / 17 / 34 s,
    # test_reshape 5 / 9 / 16 s, test_indexing 2 / 9 / 24 s. Left out for the budget of
    # `make test`: test_rolling 26 / 75 / 177 s (it passed in full under every
    # configuration while it was in), test_dataframe 116 / 258 s, test_groupby 501 s under
    # sync alone, test_multi 127 s and test_arithmetics_reduction 144 s under sync.
    "dask/dataframe/tests/test_shuffle.py",
    "dask/dataframe/tests/test_categorical.py",
    "dask/dataframe/tests/test_reshape.py",
    "dask/dataframe/tests/test_indexing.py",
)


@dataclass(frozen=True)
class Configuration:
    """One way of running the modules: a target ``get`` and extra dask config."""

    name: str
    target: str
    config: dict[str, Any] = field(default_factory=dict)
    #: Workers run in other processes: ``PROCESS_ISOLATION`` failures are excused.
    isolated: bool = False
    #: What the runner starts for the run: ``"gateway"`` is a redis-server and a
    #: ``daskless gateway`` program; their URLs and a fresh secret are added to ``config``.
    services: str | None = None
    #: Only these of the run's modules (None: all); it is compared with the baseline's
    #: results of the same modules.
    modules: tuple[str, ...] | None = None

    def runs(self, modules: tuple[str, ...]) -> tuple[str, ...]:
        """Which of ``modules`` this configuration runs."""
        if self.modules is None:
            return modules
        return tuple(m for m in modules if m in self.modules)


DEFAULT_CONFIGURATIONS = (
    Configuration(BASELINE, SYNC_TARGET),
    Configuration(
        "memory", "daskless:get", {"daskless.store": "memory", "daskless.invoker": "threads"}
    ),
    Configuration("default", "daskless:get", isolated=True),
    # Through the gateway every invocation is an HTTP request and every output crosses Redis:
    # the slowest configuration (test_reductions 264 s, test_shuffle 81 s, test_categorical
    # 34 s, test_indexing 24 s, test_reshape 16 s summed, 2 cores). It runs dask's core modules;
    # the dataframe modules run under the three others, for the budget of `make test`.
    Configuration("http", "daskless:get", isolated=True, services="gateway",
                  modules=DEFAULT_MODULES[:3]),
)


@dataclass(frozen=True)
class RunSettings:
    """What is the same for every configuration of one invocation."""

    modules: tuple[str, ...]
    workers: int
    timeout: int
    session_timeout: int
    artifacts: Path


@dataclass
class Outcome:
    """The result of running the modules under one configuration."""

    configuration: Configuration
    counts: dict[str, int]
    statuses: dict[str, str]
    calls: int
    reforced: int
    seconds: float
    returncode: int
    log: Path
    summary: str
    problems: list[str] = field(default_factory=list)


def parse_configuration(entry: object) -> Configuration:
    """One entry of DASKLESS_COMPAT_TARGETS: ``{"name", "target", "config"?}``."""
    if not isinstance(entry, dict) or not {"name", "target"} <= entry.keys():
        raise ValueError(f"{ENV_TARGETS}: each entry needs 'name' and 'target': {entry!r}")
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{ENV_TARGETS}: 'config' must be an object: {entry!r}")
    return Configuration(str(entry["name"]), str(entry["target"]), config)


def configurations_from_env() -> tuple[Configuration, ...]:
    """The configurations to run: the defaults, or DASKLESS_COMPAT_TARGETS if set.

    An override without an entry named ``sync`` gets the default sync baseline put first.
    """
    raw = os.environ.get(ENV_TARGETS, "").strip()
    if not raw:
        return DEFAULT_CONFIGURATIONS
    entries = json.loads(raw)
    if not isinstance(entries, list):
        raise ValueError(f"{ENV_TARGETS} must hold a JSON list, got {raw!r}")
    configurations = [parse_configuration(entry) for entry in entries]
    if all(c.name != BASELINE for c in configurations):
        configurations.insert(0, DEFAULT_CONFIGURATIONS[0])
    return tuple(configurations)


def dask_root() -> Path:
    """The directory holding the installed ``dask`` package (site-packages, usually)."""
    import dask

    return Path(dask.__file__).resolve().parent.parent


def resolve_module(spec: str, root: Path) -> str:
    """An absolute path (keeping any ``::node`` suffix) for a module given relative to root."""
    path, sep, node = spec.partition("::")
    absolute = Path(path) if Path(path).is_absolute() else root / path
    if not absolute.exists():
        raise FileNotFoundError(f"no such dask test module: {absolute}")
    return f"{absolute}{sep}{node}"


def pytest_command(settings: RunSettings, xml: Path) -> list[str]:
    root = dask_root()
    return [
        sys.executable,
        "-m",
        "pytest",
        *(resolve_module(module, root) for module in settings.modules),
        "-c",
        str(INI_FILE),
        f"--rootdir={root}",
        f"--confcutdir={root}",
        "-p",
        PLUGIN,
        f"--numprocesses={settings.workers}",
        f"--timeout={settings.timeout}",
        f"--junitxml={xml}",
        "-o",
        "junit_family=xunit1",
        "-q",
        "--tb=short",
        "-rfE",
    ]


@contextmanager
def started_services(configuration: Configuration) -> Iterator[dict[str, Any]]:
    """Start what the configuration needs; yields the settings that point at it."""
    if configuration.services is None:
        yield {}
        return
    if configuration.services != "gateway":
        raise ValueError(f"unknown services {configuration.services!r}")
    from daskless.worker_runtime.auth import generate_secret
    from daskless.worker_runtime.redis_server import RedisServer, free_port
    from tests.http_servers import gateway_process

    secret = generate_secret()
    with RedisServer(port=free_port()) as server, \
            gateway_process(server.url, "--max-instances", "4", secret=secret) as url:
        yield {"daskless.store": server.url, "daskless.invoker": url,
               "daskless.auth.secret": secret}


def pytest_env(configuration: Configuration, count_file: Path,
               services: dict[str, Any] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_TARGET] = configuration.target
    env[ENV_CONFIG] = json.dumps({**configuration.config, **(services or {})})
    env[ENV_COUNT_FILE] = str(count_file)
    path = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


_PROGRESS_LINE = re.compile(r"^([.FEsxX]+)\s*(?:\[\s*(\d+)%\])?\s*$")
_OUTCOMES = {".": "passed", "F": "failed", "E": "errors", "s": "skipped", "x": "xfailed",
             "X": "xpassed"}


def progress_counts(log: Path) -> tuple[Counter[str], int | None]:
    """Outcomes so far, from pytest's progress characters in ``log``, and the last percentage."""
    counts: Counter[str] = Counter()
    percent = None
    for line in log.read_text(errors="replace").splitlines():
        match = _PROGRESS_LINE.match(line.strip())
        if match:
            counts.update(_OUTCOMES[c] for c in match.group(1))
            if match.group(2) is not None:
                percent = int(match.group(2))
    return counts, percent


def format_progress(counts: Counter[str], percent: int | None) -> str:
    done = sum(counts.values())
    parts = ", ".join(f"{counts[k]} {k}" for k in _OUTCOMES.values() if counts[k])
    where = f" ({percent}%)" if percent is not None else ""
    return f"{done} tests done{where}" + (f": {parts}" if parts else "")


def run_process(command: list[str], env: dict[str, str], workdir: Path, limit: int,
                report: Callable[[float], None] | None = None) -> int:
    """Run ``command`` with output to ``workdir/pytest.log``; kill its group after ``limit`` s.

    ``report(elapsed_s)`` is called every ``PROGRESS_EVERY_S`` seconds while it runs. Returns
    the exit status, or -9 if the run was killed for taking too long.
    """
    scratch = workdir / "cwd"
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (workdir / "pytest.log").open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            command,
            cwd=scratch,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        while True:
            left = limit - (time.monotonic() - started)
            try:
                return proc.wait(timeout=max(0.0, min(PROGRESS_EVERY_S, left)))
            except subprocess.TimeoutExpired:
                if left <= PROGRESS_EVERY_S:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return -9
                if report is not None:
                    log.flush()
                    report(time.monotonic() - started)


def read_counts(count_file: Path) -> tuple[int, int]:
    """Total forced ``get`` calls and re-forcings over all pytest processes."""
    if not count_file.exists():
        return 0, 0
    records = [json.loads(line) for line in count_file.read_text().splitlines() if line]
    return sum(r["calls"] for r in records), sum(r["reforced"] for r in records)


def closing_line(log: Path) -> str:
    """pytest's last non-empty output line (its summary), for display."""
    lines = [line.strip("= ") for line in log.read_text(errors="replace").splitlines()]
    return next((line for line in reversed(lines) if line), "(no output)")


def run_configuration(configuration: Configuration, settings: RunSettings) -> Outcome:
    """Run the modules under one configuration and collect what happened."""
    workdir = settings.artifacts / configuration.name
    # The previous run's artifacts stay until this run replaces them.
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    xml, count_file = workdir / "junit.xml", workdir / "counts.jsonl"
    log = workdir / "pytest.log"

    def report(elapsed_s: float) -> None:
        line = format_progress(*progress_counts(log))
        print(f"[{configuration.name}] {elapsed_s:5.0f} s: {line}", flush=True)

    started = time.monotonic()
    with started_services(configuration) as services:
        env = pytest_env(configuration, count_file, services)
        mine = replace(settings, modules=configuration.runs(settings.modules))
        returncode = run_process(
            pytest_command(mine, xml), env, workdir, settings.session_timeout, report
        )
    seconds = time.monotonic() - started
    statuses = read_statuses(xml) if xml.exists() else {}
    calls, reforced = read_counts(count_file)
    outcome = Outcome(
        configuration,
        count_statuses(statuses),
        statuses,
        calls,
        reforced,
        seconds,
        returncode,
        log,
        closing_line(log),
    )
    outcome.problems.extend(run_problems(outcome, settings))
    return outcome


def run_problems(outcome: Outcome, settings: RunSettings) -> list[str]:
    """What makes a single run unusable, independent of any comparison."""
    name = outcome.configuration.name
    problems = []
    killed = outcome.returncode == -9
    if killed:
        problems.append(f"{name}: killed after the session timeout of {settings.session_timeout}s")
    if not outcome.statuses:
        problems.append(f"{name}: no test results (pytest exit {outcome.returncode})")
    if outcome.calls == 0 and not killed:  # a killed run never wrote its counts
        problems.append(f"{name}: the forced get was never called (forcing did not work)")
    return problems
