"""Run dask's own installed test modules with every scheduler choice forced to one ``get``.

dask's test suite exercises collections (delayed, array, bag, ...) through ``compute``, and
picks a scheduler in several ways: ``dask.config`` ``scheduler``, explicit
``scheduler="sync"``/``"threads"``/``"processes"`` strings (``assert_eq`` helpers default to
``"sync"``), and each collection's ``__dask_scheduler__`` default. The pytest plugin in
:mod:`tests.dask_compat.force_scheduler` routes all of them to a single target ``get``
function and counts its calls, so the same test modules can be run once against dask's
synchronous scheduler (the baseline) and once per daskless configuration, and the pass counts
compared. ``python -m tests.dask_compat`` (see :mod:`tests.dask_compat.__main__`) does that.

This package only holds the machinery; it contains no test modules of its own, so the
project's normal test run does not collect anything here.

The environment variables shared by the runner and the plugin are defined here, and this module
imports nothing heavy: the plugin is imported by pytest before dask's tests are collected.
"""

from __future__ import annotations

import os

#: ``module:attr`` of the ``get`` function every scheduler choice is forced to.
ENV_TARGET = "DASKLESS_COMPAT_TARGET"
#: JSON object of extra ``dask.config`` settings, applied before the target is imported.
ENV_CONFIG = "DASKLESS_COMPAT_CONFIG"
#: File to which each pytest process appends one JSON line with its forced-call count.
ENV_COUNT_FILE = "DASKLESS_COMPAT_COUNT_FILE"
#: Debugging aid: keep only the first N tests of every module (unset or 0: keep all).
ENV_QUICK = "DASKLESS_COMPAT_QUICK"
#: JSON list replacing the runner's configurations: ``[{"name", "target", "config"}, ...]``.
ENV_TARGETS = "DASKLESS_COMPAT_TARGETS"

#: The baseline target: dask's own single-threaded scheduler.
SYNC_TARGET = "dask.local:get_sync"

#: Tests deselected by design, by node id relative to the dask package's parent directory
#: (a key without ``[...]`` covers every parametrization). Only tests asserting *which*
#: scheduler dask chooses belong here: under forcing they fail for every target alike.
#: None of the default modules (test_delayed, test_reductions, test_bag) has such a test; the
#: entries below are for ``--modules dask/tests/test_base.py``.
DESELECTED: dict[str, str] = {
    "dask/tests/test_base.py::test_get_scheduler": (
        "asserts get_scheduler() is None and which function each scheduler name maps to"
    ),
    "dask/tests/test_base.py::test_compute_array_bag": (
        "asserts compute() refuses collections with differing default schedulers"
    ),
    "dask/tests/test_base.py::test_persist_array_bag": (
        "asserts persist() refuses collections with differing default schedulers"
    ),
}


#: Tests left out to keep the job's time within budget (``make test`` on 2 cores), by node id as
#: above; the rest of their module still runs. Measured per test under the default
#: configuration, so the trimmed subset is deterministic and documented.
TRIMMED: dict[str, str] = {
    "dask/dataframe/tests/test_shuffle.py::test_dataframe_shuffle_on_arg": (
        "about 230 parametrizations of one shuffle: 118 s of the module's 256 s under the "
        "default configuration (16 s under sync); the module's other shuffle, set_index and "
        "sort_values tests exercise the same shuffle paths"
    ),
}

#: Tests that fail under the sync baseline itself, and why. They are printed with the table
#: and written to the JSON so a baseline failure is never left unexplained.
BASELINE_FAILURES: dict[str, str] = {
    "dask/bag/tests/test_bag.py::test_temporary_directory": (
        "needs a process pool so that the partd files persist: the test passes "
        "a ProcessPoolExecutor as `pool` and checks that bag groupby's disk shuffle left a "
        ".partd folder in the temporary directory. Forced to the synchronous scheduler, the "
        "pool is never used, and the only partd.File object lives in the test's process; it "
        "is garbage-collected when compute() returns and deletes its folder before the "
        "assertion looks. In dask's pool the worker processes still hold their objects until "
        "the pool closes, so the folder outlives the compute, and so it does under daskless's "
        "default and http configurations, whose workers keep the originals of shipped outputs "
        "among their 8 most recent runs after a run ends. The memory configuration fails it "
        "like sync: its runs pass values by reference and drop the only original with the run"
    ),
}


def quick_limit() -> int:
    """N from DASKLESS_COMPAT_QUICK, or 0 when it is unset (keep every test)."""
    raw = os.environ.get(ENV_QUICK, "").strip()
    return int(raw) if raw else 0


#: Tests that depend on objects never leaving the caller's process. A configuration whose
#: workers are separate processes (``isolated``) may fail these, and only these, for the stated
#: reason; dask's own process-based scheduler shares the limitation. Node ids as above.
PROCESS_ISOLATION = {
    "dask/tests/test_delayed.py::test_traverse_false":
        "asserts that compute() returns the very object in the graph (`is`)",
    "dask/tests/test_delayed.py::test_callable_obj":
        "asserts that compute() returns the very callable object in the graph (`is`)",
    "dask/bag/tests/test_bag.py::test_bag_with_single_callable":
        "compares a lambda in the result with the original by identity",
    "dask/bag/tests/test_bag.py::test_repartition_partition_size_complex_dtypes":
        "list equality of numpy arrays only holds when the elements are the same objects",
    "dask/bag/tests/test_bag.py::test_to_delayed_optimize_graph":
        "counts calls through a closure variable that a worker process cannot update",
    "dask/bag/tests/test_bag.py::test_reductions_are_lazy":
        "the graph holds a generator, which cannot be sent to another process",
    "dask/dataframe/tests/test_shuffle.py::test_disk_shuffle_with_unknown_compression":
        "the disk shuffle's partd factory drops its compression setting when pickled and "
        "reads dask.config again where it is unpickled; the test sets the bad value with "
        "dask.config.set in the caller only, so a worker process never sees it (dask's "
        "processes scheduler raises no error either)",
}
