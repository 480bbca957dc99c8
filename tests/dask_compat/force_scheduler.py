"""pytest plugin: force every dask scheduler choice to one target ``get`` and count its calls.

Load it with ``-p tests.dask_compat.force_scheduler`` (the repository root must be importable)
when running dask's installed test modules. Configuration comes from the environment, so that
xdist workers, which re-run ``pytest_configure``, see the same values:

``DASKLESS_COMPAT_TARGET``
    ``module:attr`` of the target ``get``, default ``dask.local:get_sync``.
``DASKLESS_COMPAT_CONFIG``
    Optional JSON object of ``dask.config`` settings (dotted keys allowed), applied before the
    target module is imported, e.g. ``{"daskless.store": "memory"}``.
``DASKLESS_COMPAT_COUNT_FILE``
    Optional path. At the end of the session every pytest process (the xdist controller and
    each worker) appends one JSON line ``{"worker", "pid", "target", "calls", "reforced"}``
    under an exclusive lock; the runner sums ``calls``.
``DASKLESS_COMPAT_QUICK``
    Optional N > 0: keep only the first N collected tests of every module (debugging).

Why two mechanisms are needed: ``dask.config.set(scheduler=...)`` covers ``compute()`` calls
that name no scheduler, but dask's ``assert_eq`` helpers (array, dataframe, bag) pass
``scheduler="sync"`` explicitly, and an explicit string beats the config. So in
``pytest_configure`` the plugin both sets the config for the whole session (it is never
restored) and rebinds every entry of ``dask.base.named_schedulers`` ("sync", "threads",
"processes", their aliases, and "daskless" once the target has registered it) to the same
counting wrapper. Before each test it checks both again and re-applies them if a test or
fixture left something else behind (counted as ``reforced``). Tests that call a scheduler
function directly (``dask.get(...)``, ``scheduler=dask.threaded.get``) are not redirected.

The plugin also stands in for what dask's repository-level ``conftest.py`` does and the
installed package lacks: the ``--runslow``/``--runarrayexpr`` options with their skips, and
assertion rewriting of dask's ``assert_eq`` helpers. Options that the installed
``dask/conftest.py`` already defines are not added a second time.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.dask_compat import (
    DESELECTED,
    ENV_CONFIG,
    ENV_COUNT_FILE,
    ENV_TARGET,
    SYNC_TARGET,
    TRIMMED,
    quick_limit,
)

if TYPE_CHECKING:
    from dask.typing import Graph, Key, SchedulerGetCallable

# Must run before dask's test modules import these helpers; dask's root conftest does the same.
pytest.register_assert_rewrite("dask.array.utils", "dask.dataframe.utils", "dask.bag.utils")

#: Aliases rebound even if a dask version stops defining them.
STANDARD_NAMES = (
    "sync",
    "synchronous",
    "single-threaded",
    "threads",
    "threading",
    "processes",
    "multiprocessing",
)

_STATE_KEY = pytest.StashKey["ForcedScheduler"]()


class CountedGet:
    """A ``get`` function that counts its calls and delegates to the target."""

    def __init__(self, target: SchedulerGetCallable, name: str) -> None:
        self.target = target
        self.name = name
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, dsk: Graph, keys: Sequence[Key] | Key, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        return self.target(dsk, keys, **kwargs)

    def __repr__(self) -> str:
        return f"<forced get -> {self.name}: {self.calls} calls>"

    # It sits in dask.config, which some code deep-copies (distributed.utils_test does on
    # import); like the plain function it stands for, it must copy to itself.
    def __copy__(self) -> CountedGet:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> CountedGet:
        return self


class ForcedScheduler:
    """Session state: the counting wrapper and how often forcing had to be re-applied."""

    def __init__(self, counted: CountedGet) -> None:
        self.counted = counted
        self.reforced = 0

    def apply(self) -> None:
        """Point dask's config and every named scheduler at the counting wrapper."""
        import dask
        from dask.base import named_schedulers

        dask.config.set(scheduler=self.counted)  # plain call: kept for the whole session
        for name in {*named_schedulers, *STANDARD_NAMES}:
            named_schedulers[name] = self.counted

    def is_applied(self) -> bool:
        import dask
        from dask.base import named_schedulers

        if dask.config.get("scheduler", None) is not self.counted:
            return False
        return all(get is self.counted for get in named_schedulers.values())

    def ensure_applied(self) -> None:
        if not self.is_applied():
            self.reforced += 1
            self.apply()


def load_target(spec: str) -> SchedulerGetCallable:
    """Import ``module:attr`` (``attr`` may be dotted) and return the callable it names."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise pytest.UsageError(f"{ENV_TARGET} must look like 'module:attr', got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            obj = getattr(obj, attr)
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(f"{ENV_TARGET}={spec!r} cannot be loaded: {exc!r}") from exc
    if not callable(obj):
        raise pytest.UsageError(f"{ENV_TARGET}={spec!r} is not callable")
    return obj  # type: ignore[no-any-return]


def extra_config() -> dict[str, Any]:
    """The JSON object in DASKLESS_COMPAT_CONFIG, or an empty dict."""
    raw = os.environ.get(ENV_CONFIG, "").strip()
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise pytest.UsageError(f"{ENV_CONFIG} must hold a JSON object, got {raw!r}")
    return value


def dask_conftest_defines(option: str) -> bool:
    """Whether the installed ``dask/conftest.py`` already adds ``option`` (avoid duplicates)."""
    spec = importlib.util.find_spec("dask")
    if spec is None or spec.origin is None:
        return False
    conftest = Path(spec.origin).with_name("conftest.py")
    return conftest.is_file() and f'"{option}"' in conftest.read_text(encoding="utf-8")


def pytest_addoption(parser: pytest.Parser) -> None:
    options = {"--runslow": "run slow tests", "--runarrayexpr": "run array-expr tests"}
    for option, help_text in options.items():
        if not dask_conftest_defines(option):
            parser.addoption(option, action="store_true", help=help_text)


def pytest_configure(config: pytest.Config) -> None:
    import dask

    dask.config.set(extra_config())  # plain call: kept for the whole session
    spec = os.environ.get(ENV_TARGET, "").strip() or SYNC_TARGET
    state = ForcedScheduler(CountedGet(load_target(spec), spec))
    state.apply()
    config.stash[_STATE_KEY] = state


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash[_STATE_KEY]
    return [
        f"daskless-compat: every scheduler forced to {state.counted.name}",
        f"daskless-compat: extra dask config {json.dumps(extra_config(), sort_keys=True)}",
    ]


def is_deselected(nodeid: str) -> str | None:
    """The reason ``nodeid`` is deselected (by design, or trimmed for time), or None."""
    base = nodeid.split("[", 1)[0]
    for key, reason in {**DESELECTED, **TRIMMED}.items():
        if nodeid.endswith(key) or base.endswith(key):
            return reason
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    limit = quick_limit()
    per_module: dict[Path, int] = {}
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        seen = per_module.get(item.path, 0)
        if is_deselected(item.nodeid) or (limit > 0 and seen >= limit):
            dropped.append(item)
            continue
        per_module[item.path] = seen + 1
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def skip_reason(item: pytest.Item) -> str | None:
    """dask's repository-level skips for ``slow`` and ``array_expr`` tests."""
    runslow = item.config.getoption("--runslow", default=False)
    run_array_expr = item.config.getoption("--runarrayexpr", default=False)
    if "slow" in item.keywords and not runslow:
        return "need --runslow option to run"
    if "array_expr" in item.keywords and not run_array_expr:
        return "need --runarrayexpr option to run"
    if run_array_expr and not {"array_expr", "normal_and_array_expr"} & set(item.keywords):
        return "only array-expr tests are being run"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.config.stash[_STATE_KEY].ensure_applied()
    reason = skip_reason(item)
    if reason is not None:
        pytest.skip(reason)


def append_count(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``path`` under an exclusive lock (xdist workers share it)."""
    line = json.dumps(record, sort_keys=True) + "\n"
    with path.open("a", encoding="utf-8") as handle:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(line)
        handle.flush()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # At session end, before an xdist worker reports that it has finished: a worker may be
    # stopped as soon as the controller is done, before its unconfigure hooks run.
    config = session.config
    state = config.stash.get(_STATE_KEY, None)
    count_file = os.environ.get(ENV_COUNT_FILE, "").strip()
    if state is None or not count_file:
        return
    record = {
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "pid": os.getpid(),
        "target": state.counted.name,
        "calls": state.counted.calls,
        "reforced": state.reforced,
    }
    append_count(Path(count_file), record)
