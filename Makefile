# Two commands do all the set-up on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run check test lint format schema lock bench graphiql browser compose-up compose-admin-key compose-down

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

# The Sentry JavaScript SDK the ingestion tests report with (tests/test_sdk_node.py).
tests/sdk/node_modules/.installed: tests/sdk/package.json tests/sdk/package-lock.json
	cd tests/sdk && npm ci --no-audit --no-fund --silent
	touch $@

# GraphiQL's bundle (app/web/static/graphiql, committed so a pip install needs no Node) is rebuilt from
# the pinned npm packages in frontend/graphiql when its lock file or sources change: `make graphiql`.
GRAPHIQL_BUNDLE := app/web/static/graphiql/graphiql.js
$(GRAPHIQL_BUNDLE): frontend/graphiql/package-lock.json frontend/graphiql/src/index.jsx frontend/graphiql/build.mjs
	cd frontend/graphiql && npm ci --no-audit --no-fund --silent && node build.mjs
	touch $@

graphiql:
	cd frontend/graphiql && npm ci --no-audit --no-fund --silent && node build.mjs

# Headless Chromium from Debian's packages for the browser tests (Playwright drives it; it never
# downloads a browser of its own). Skipped quietly where apt cannot install it.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the browser tests will be skipped"

# The graphql-sse client the HTTP subscription tests run.
tests/sse/node_modules/.installed: tests/sse/package.json tests/sse/package-lock.json
	cd tests/sse && npm ci --no-audit --no-fund --silent
	touch $@

install: $(VENV)/.installed $(GRAPHIQL_BUNDLE)

run: install
	$(PY) -m app serve

# Lint, format, strict types and the architecture's import contracts (pyproject.toml).
check: install
	$(VENV)/bin/ruff check app tests bench
	$(VENV)/bin/ruff format --check app tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: check browser tests/audit/node_modules/.installed tests/sdk/node_modules/.installed tests/sse/node_modules/.installed
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
	$(PY) bench/sdk_ingest.py
	$(PY) bench/alerts.py

# The production-like path (compose.yaml): the server on a one-node MongoDB replica set.
compose-up:
	docker compose up --build -d --wait

compose-admin-key:
	docker compose run --rm admin-key

compose-down:
	docker compose down
