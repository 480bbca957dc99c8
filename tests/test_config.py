"""Configuration: defaults live in ``daskless/daskless.yaml`` only, and every process sees them.

Code reads ``daskless.*`` keys without a fallback of its own; a scan of the packages keeps it
that way. Worker-side modules get the defaults because importing ``daskless.worker_runtime``
runs ``daskless/__init__.py``, which loads them; a fresh interpreter proves it.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys

import dask
import yaml

from daskless import config

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("daskless", "worker_runtime", "scheduler")
SHIPPED = yaml.safe_load((ROOT / "daskless" / "daskless.yaml").read_text())["daskless"]


def _key_prefix(node: ast.expr) -> str | None:
    """The text a key argument starts with: a literal, or the literal head of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        head = node.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return head.value
    return None


def fallbacks(source: str) -> list[int]:
    """Lines of ``<...>config.get("daskless....", default)`` calls in ``source``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get" and node.args):
            continue
        owner = node.func.value
        is_config = (isinstance(owner, ast.Name) and owner.id == "config") or (
            isinstance(owner, ast.Attribute) and owner.attr == "config")
        key = _key_prefix(node.args[0])
        has_default = len(node.args) > 1 or any(k.arg == "default" for k in node.keywords)
        if is_config and key is not None and key.startswith("daskless.") and has_default:
            lines.append(node.lineno)
    return lines


def test_the_scan_finds_a_fallback() -> None:
    source = (
        "import dask.config\n"
        "a = dask.config.get('daskless.run-ttl', 3600)\n"
        "b = dask.config.get(f'daskless.http.{name}', default=16)\n"
        "c = dask.config.get('daskless.run-ttl')\n"
        "d = dask.config.get('num_workers', None)\n"
    )
    assert fallbacks(source) == [2, 3]


def test_no_daskless_setting_is_read_with_a_fallback_default() -> None:
    found = {
        str(path.relative_to(ROOT)): lines
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if (lines := fallbacks(path.read_text()))
    }
    assert found == {}, f"defaults belong in daskless.yaml, not in code: {found}"


def test_a_worker_side_module_sees_the_shipped_defaults() -> None:
    """A fresh interpreter that imports only worker-runtime modules, as a function does."""
    code = (
        "import json, sys, dask.config\n"
        "from daskless.worker_runtime.auth import Signer\n"
        "from daskless.worker_runtime.invokers.http import HttpInvoker\n"
        "invoker = HttpInvoker('http://127.0.0.1:9', None, wait=False)\n"
        "invoker.close()\n"
        "print(json.dumps({'max_age': Signer('k').max_age_s, 'attempts': invoker._attempts,\n"
        "                  'lambda': dask.config.get('daskless.lambda'),\n"
        "                  'client_modules': [m for m in ('daskless.engine', 'daskless.backends')\n"
        "                                     if m in sys.modules]}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, timeout=60).stdout
    seen = json.loads(out)
    assert seen["max_age"] == SHIPPED["auth"]["max-age"]
    assert seen["attempts"] == SHIPPED["http"]["attempts"]
    assert seen["lambda"] == SHIPPED["lambda"]
    assert seen["client_modules"] == []


def test_a_worker_follows_a_setting_from_its_environment() -> None:
    code = (
        "from daskless.worker_runtime.invokers.http import HttpInvoker\n"
        "invoker = HttpInvoker('http://127.0.0.1:9', None, wait=False)\n"
        "invoker.close()\n"
        "print(invoker._attempts)\n"
    )
    env = dict(os.environ, DASK_DASKLESS__HTTP__ATTEMPTS="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, timeout=60).stdout
    assert out.strip() == "3"


def test_a_replaced_section_keeps_the_shipped_defaults_of_keys_it_leaves_out() -> None:
    with dask.config.set({"daskless.metrics": {"strategy": "task"}}):
        assert config.get("metrics.strategy") == "task"
        assert config.get("metrics.retention") == SHIPPED["metrics"]["retention"]
    with dask.config.set({"daskless.lambda": {"region": "eu-west-1"}}):
        assert config.section("lambda") == {**SHIPPED["lambda"], "region": "eu-west-1"}
