"""The ``daskless`` command line: plain help text, and ``info`` shows the settings in use."""

from __future__ import annotations

import os
import subprocess
import sys

import dask
import pytest

from daskless import cli, config


def test_pool_size_says_where_it_comes_from() -> None:
    with dask.config.set({"daskless.workers": None}):
        assert config.pool_size() == (os.cpu_count(), "the CPU count, as daskless.workers is null")
        assert config.pool_size(3) == (3, "given to the engine")
    with dask.config.set({"daskless.workers": 5}):
        assert config.pool_size() == (5, "set by daskless.workers")


def test_help_is_plain_text() -> None:
    out = subprocess.run([sys.executable, "-m", "daskless.cli", "--help"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert "``" not in out and ":class:" not in out and ":mod:" not in out
    assert "decentralized sub-DAGs" in " ".join(out.split())
    for command in ("info", "worker", "gateway", "runs", "report", "dashboard"):
        assert command in out


@pytest.mark.parametrize(
    ("workers", "shown"),
    [(None, f"{os.cpu_count()} (the CPU count, as daskless.workers is null)"),
     (3, "3 (set by daskless.workers)")],
)
def test_info_shows_the_pool_size_in_use(workers: int | None, shown: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with dask.config.set({"daskless.workers": workers}):
        assert cli.main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"  daskless.workers = {shown}" in lines
    assert f"  daskless.store = {config.get('store')!r}" in lines
