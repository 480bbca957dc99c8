# The two commands a new user needs: `make demo` and `make test`. Both first create the
# environment ($(VENV), from pyproject.toml) on a machine with only Python 3.10+ and pip; it is
# rebuilt whenever pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
STAMP = $(VENV)/.installed
# Lint only the folders that exist: some are added later than others.
LINT_DIRS = $(wildcard daskless worker_runtime scheduler tests benchmarks)

.PHONY: demo test lint typecheck unit compat bench clean browser
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
	$(PY) -m mypy

unit: $(STAMP) browser
	$(PY) -m pytest -q -n 2 tests

# The dashboard test drives the system's Chromium (never a downloaded browser). Install it when
# it is missing and this user may; otherwise the test fails and says how to install it.
CHROMIUM = /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ] && command -v apt-get >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
		elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
			sudo apt-get update -q && sudo apt-get install -y -q chromium; \
		else echo "$(CHROMIUM) is missing and this user cannot install it" \
			"(apt-get install -y chromium): the dashboard test will fail" >&2; fi; \
	fi

compat: $(STAMP)
	$(PY) -m tests.dask_compat

test: lint typecheck unit compat

bench: $(STAMP)
	$(PY) -m benchmarks run --large --update-readme

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
