# The two commands a new user needs: `make demo` and `make test`. Both create the
# environment first (.venv, from pyproject.toml) on a machine with only Python 3.10+ and pip.

PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
STAMP = $(VENV)/.installed

.PHONY: demo test lint typecheck unit compat bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m daskless.demo

lint: $(STAMP)
	$(PY) -m ruff check daskless worker_runtime scheduler tests benchmarks

typecheck: $(STAMP)
	$(PY) -m mypy daskless worker_runtime scheduler

unit: $(STAMP)
	$(PY) -m pytest -q -n 2

compat: $(STAMP)
	$(PY) -m tests.dask_compat

test: lint typecheck unit compat

bench: $(STAMP)
	$(PY) -m benchmarks.engine_speed --distributed

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
