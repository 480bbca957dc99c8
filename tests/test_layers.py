"""The packages import one way only: daskless -> daskless.worker_runtime -> daskless.scheduler.

The three folders of the repository install as one namespace: ``daskless/``, and
``scheduler/`` and ``worker_runtime/`` as ``daskless.scheduler`` and ``daskless.worker_runtime``
(``daskless/scheduler`` and ``daskless/worker_runtime`` are links to them). Nothing may import
them under their folder names, which would load the same files a second time as other modules.
"""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCHEDULER = "daskless.scheduler"
WORKER_RUNTIME = "daskless.worker_runtime"
# What each layer may import from the daskless namespace.
ALLOWED = {
    "scheduler": (SCHEDULER,),
    "worker_runtime": (WORKER_RUNTIME, SCHEDULER),
}


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_go_one_way(layer: str) -> None:
    offenders = {}
    for path in (ROOT / layer).rglob("*.py"):
        wrong = sorted(m for m in imported_modules(path)
                       if m.split(".")[0] == "daskless" and not _within(m, ALLOWED[layer]))
        if wrong:
            offenders[str(path.relative_to(ROOT))] = wrong
    assert not offenders, f"{layer} imports what it must not: {offenders}"


def test_scheduler_uses_only_the_standard_library() -> None:
    for path in (ROOT / "scheduler").rglob("*.py"):
        outside = {m for m in imported_modules(path) if m.split(".")[0] not in
                   sys.stdlib_module_names and not _within(m, (SCHEDULER,))}
        assert not outside, f"{path} imports {sorted(outside)}"


@pytest.mark.parametrize(
    "folder", ["daskless", "scheduler", "worker_runtime", "tests", "benchmarks"])
def test_nothing_imports_the_folders_by_their_own_names(folder: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path)
                                            if m.split(".")[0] in ("scheduler", "worker_runtime"))
        for path in (ROOT / folder).rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"imports outside the daskless namespace: {offenders}"


def test_the_namespace_links_point_at_the_folders() -> None:
    for name in ("scheduler", "worker_runtime"):
        link = ROOT / "daskless" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve()
