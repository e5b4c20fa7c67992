# Two commands do all the set-up on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test lint schema bench

# The virtualenv is rebuilt only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The graphql-http audit suite the tests run (Node and npm from the machine).
tests/audit/node_modules/.installed: tests/audit/package.json
	cd tests/audit && npm install --no-audit --no-fund --silent
	touch $@

# The Sentry JavaScript SDK the ingestion tests report with (tests/test_sdk_node.py).
tests/sdk/node_modules/.installed: tests/sdk/package.json tests/sdk/package-lock.json
	cd tests/sdk && npm ci --no-audit --no-fund --silent
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m app serve

test: install tests/audit/node_modules/.installed tests/sdk/node_modules/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check app tests

schema: install
	$(PY) -m app export-schema > schema.graphql

# The benchmark (by hand, not in CI): installs wrk from Debian's packages when missing.
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) bench/run.py
	$(PY) bench/sdk_ingest.py
