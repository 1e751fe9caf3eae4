# The two commands: `make demo` (the whole live fight) and `make test`.
# Both create .venv and install everything on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests use their own Redis dbs (10: authority, 11: broker, 12: fan-out) and flush them.
TEST_REDIS_URL ?= redis://127.0.0.1:6379/10
PYTEST_ARGS ?=
# Test worker processes (pytest-xdist); each gets its own test database and its own Redis
# server (tests/support/worker_redis.py). 0: one process, on TEST_REDIS_URL.
TEST_WORKERS ?= 2
ARGS ?=

.PHONY: install lint test test-postgres demo bench browser clean

$(STAMP): pyproject.toml sdk/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./sdk -e ".[test,lint]"
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium for the page tests (Debian's package; Playwright's download is blocked).
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium: install failed; browser tests will be skipped"; \
	  else echo "chromium: not installed and not root; browser tests will be skipped"; fi; }

# Lint: style (ruff), formatting, the one-way layers (lint-imports) and strict types on
# the core and the SDK (mypy). CI runs it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

test: $(STAMP) browser
	$(BIN)/python scripts/ensure_services.py redis $(TEST_REDIS_URL) --data-dir .services
	@if [ -n "$$DATABASE_URL" ]; then $(BIN)/python scripts/ensure_services.py postgres "$$DATABASE_URL"; fi
	REDIS_URL=$(TEST_REDIS_URL) BROKER_URL= CHANNELS_URL= $(BIN)/python -m pytest \
	  -p tests.support.worker_redis -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-postgres:
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(MAKE) test

demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput >/dev/null
	$(BIN)/python manage.py demo $(ARGS)

bench: $(STAMP)
	$(BIN)/python manage.py bench $(ARGS)

clean:
	rm -rf $(VENV) .services .demo .test-db.sqlite3 db.sqlite3
