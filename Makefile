# Two commands do all the set-up on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run check test lint format schema lock bench

# The virtualenv is rebuilt only when the project or its lock file changes. Every package comes from the
# lock file, pinned and hash-checked; the project itself is installed on top, without resolving again.
$(VENV)/.installed: pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# The graphql-http audit suite the tests run (Node and npm from the machine).
tests/audit/node_modules/.installed: tests/audit/package.json tests/audit/package-lock.json
	cd tests/audit && npm ci --no-audit --no-fund --silent
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m app serve

# Lint, format, strict types and the architecture's import contracts (pyproject.toml).
check: install
	$(VENV)/bin/ruff check app tests bench
	$(VENV)/bin/ruff format --check app tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: check tests/audit/node_modules/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

lint: check

format: install
	$(VENV)/bin/ruff check --fix app tests bench
	$(VENV)/bin/ruff format app tests bench

schema: install
	$(PY) -m app export-schema > schema.graphql

# After changing dependencies in pyproject.toml: pin them again (uv resolves; pip installs).
lock: install
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --quiet -o requirements/runtime.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes --quiet -o requirements/dev.lock

# The benchmark (by hand, not in CI): installs wrk from Debian's packages when missing.
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) bench/run.py
