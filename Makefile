# Two commands do all the set-up on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test lint schema bench tests/browser

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

install: $(VENV)/.installed

run: install
	$(PY) -m app serve

# Headless Chromium from Debian's packages for the real-browser tests (Playwright drives it).
tests/browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test: install tests/audit/node_modules/.installed tests/browser
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check app tests

schema: install
	$(PY) -m app export-schema > schema.graphql

# The benchmark (by hand, not in CI): installs wrk from Debian's packages when missing.
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) bench/run.py
