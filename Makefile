# The two commands a new user needs: `make demo` and `make test`. Both first create the
# environment ($(VENV), from pyproject.toml) on a machine with only Python 3.10+ and pip; it is
# rebuilt whenever pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
STAMP = $(VENV)/.installed
# Lint only the folders that exist: some are added later than others.
LINT_DIRS = $(wildcard daskless worker_runtime scheduler tests benchmarks)

.PHONY: demo test lint typecheck unit compat bench clean
# `make test` runs its steps in order and stops at the first failure, even under `make -j`.
.NOTPARALLEL:

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
		|| { echo "daskless needs Python 3.10 or newer: run make PYTHON=python3.x" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m daskless.demo

lint: $(STAMP)
	$(PY) -m ruff check $(LINT_DIRS)

typecheck: $(STAMP)
	$(PY) -m mypy daskless worker_runtime scheduler

unit: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

compat: $(STAMP)
	$(PY) -m tests.dask_compat

test: lint typecheck unit compat

bench: $(STAMP)
	$(PY) -m benchmarks.engine_speed --distributed

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
