# The commands: `make demo` (the whole live fight), `make test` (the developer suite, about a
# minute: no process-spawning or browser tests), `make test-all` (everything, as CI runs it).
# Each creates .venv and installs everything on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
UV_HOME := .tools/uv
UV := $(UV_HOME)/bin/uv
UV_ENV := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never
# Tests use their own Redis dbs (10: authority, 11: broker, 12: fan-out) and flush them.
TEST_REDIS_URL ?= redis://127.0.0.1:6379/10
PYTEST_ARGS ?=
# Test worker processes (pytest-xdist); each gets its own test database and its own Redis
# server (tests/support/worker_redis.py). 0: one process, on TEST_REDIS_URL.
TEST_WORKERS ?= 2
# make test-all: the process, fault and browser tests mostly wait on the processes they
# start, so more workers than cores shorten it (whole suite, this 2-core machine: 520 s with
# 2 workers, 415 s with 4). A TEST_WORKERS given on the command line wins.
ifeq ($(origin TEST_WORKERS),command line)
TEST_ALL_WORKERS ?= $(TEST_WORKERS)
else
TEST_ALL_WORKERS ?= 4
endif
# Which tests: the developer suite leaves out `slow` (process and browser imply it;
# docs/testing.md). `make test-all` empties it.
TEST_SELECT ?= -m "not slow"
ARGS ?=

.PHONY: install lock lint test test-all test-postgres faults demo bench browser conformance mono clean print-fault-tests

# uv, at the version pyproject.toml requires, installs the locked set (uv.lock) into .venv.
# --locked: refuses to install when pyproject.toml and uv.lock disagree (run `make lock`).
# uv itself is fetched inside this recipe, not as a prerequisite: an up-to-date stamp (or a
# STAMP/VENV given on the command line, as the demo test does) then installs nothing.
$(STAMP): pyproject.toml sdk/pyproject.toml uv.lock
	test -x $(UV) || $(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target $(UV_HOME) uv==$(UV_VERSION)
	$(UV_ENV) $(UV) sync --locked --all-groups --python $(PYTHON) --quiet
	touch $(STAMP)

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target $(UV_HOME) uv==$(UV_VERSION)

# Re-resolve the lock after a change of pyproject.toml (or to take newer releases: ARGS=--upgrade),
# and export it for pip users: requirements.txt (the server, hashed) and pylock.toml (PEP 751).
lock: $(UV)
	$(UV_ENV) $(UV) lock $(ARGS)
	$(UV_ENV) $(UV) export --locked --format requirements-txt --no-default-groups --no-dev --no-emit-workspace -o requirements.txt --quiet
	$(UV_ENV) $(UV) export --locked --format pylock.toml --all-groups -o pylock.toml --quiet

install: $(STAMP)

# Headless Chromium for the page tests (Debian's package; Playwright's download is blocked).
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium: install failed; browser tests will be skipped"; \
	  else echo "chromium: not installed and not root; browser tests will be skipped"; fi; }

# Lint: style (ruff), formatting, function length (scripts/check_function_size.py: ruff
# counts statements and branches, not lines), the one-way layers (lint-imports), strict
# types on the core and the SDK (mypy), and that the generated SDK files are current: the
# TypeScript protocol (scripts/ts_protocol.py) and the conformance vectors. CI runs it first.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_function_size.py
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/python scripts/ts_protocol.py --check
	DJANGO_SETTINGS_MODULE=liveops.settings $(BIN)/python -m conformance.vectors --check

# Exit code 5 (nothing collected) from the developer suite most often means every selected
# test is slow: say so, and still fail, so that a slow test never passes by not running.
test: $(STAMP)
	$(BIN)/python scripts/ensure_services.py redis $(TEST_REDIS_URL) --data-dir .services
	@if [ -n "$$DATABASE_URL" ]; then $(BIN)/python scripts/ensure_services.py postgres "$$DATABASE_URL"; fi
	@echo "pytest -n $(TEST_WORKERS) $(TEST_SELECT) $(PYTEST_ARGS)"
	@status=0; REDIS_URL=$(TEST_REDIS_URL) BROKER_URL= CHANNELS_URL= $(BIN)/python -m pytest \
	  -p tests.support.worker_redis -n $(TEST_WORKERS) --dist loadfile $(TEST_SELECT) $(PYTEST_ARGS) \
	  || status=$$?; \
	if [ $$status = 5 ] && [ -n '$(TEST_SELECT)' ]; then \
	  echo "make test: no test selected; the developer suite leaves out slow tests (process," \
	    "browser): run them with make test-all PYTEST_ARGS=..." >&2; fi; \
	exit $$status

# Everything, as CI runs it: the developer suite plus the process, fault and browser tests.
test-all: browser
	$(MAKE) test TEST_SELECT= TEST_WORKERS=$(TEST_ALL_WORKERS)

test-postgres:
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(MAKE) test

# The fault rig (docs/faults.md, "The fault rig"): game servers in network namespaces behind
# a user-space link emulator (tools/faults), and the database outage on a PostgreSQL cluster
# of its own. Prints each scenario's availability figures. Needs root: elsewhere it says so
# and exits 0. `make test-all` (CI) runs the same tests with the suite.
FAULT_TESTS ?= tests/faults/netns tests/faults/test_database_outage.py tests/faults/test_two_beats.py
print-fault-tests:
	@echo $(FAULT_TESTS)

faults: $(STAMP)
	@if [ "$$(id -u)" != 0 ]; then echo "make faults: needs root (ip netns, TUN devices, initdb as postgres); skipped"; exit 0; fi
	$(MAKE) test TEST_SELECT= TEST_WORKERS=1 PYTEST_ARGS="$(FAULT_TESTS) -rP $(PYTEST_ARGS)"

# The SDK conformance kit (conformance/README.md): the shared vectors and the TypeScript SDK's
# generated protocol file (scripts/ts_protocol.py) must be current, then one real platform
# (its own Redis and SQLite database in .conformance/) runs every scenario against every
# SDK's driver behind the fault proxy. Installs each SDK's own dependencies
# (npm ci in sdk-ts, whose build and unit tests run there too). One line per SDK and
# scenario, then a table; exit 0 only if all pass.
# The C# SDK (sdk-cs) is built and tested with Mono: `make mono` installs Debian's mono-devel
# (mcs, mono) when mcs is missing and this runs as root; without it the C# SDK is skipped
# with a message, or the run fails when CI=true.
conformance: $(STAMP)
	$(BIN)/python scripts/ts_protocol.py --check
	DJANGO_SETTINGS_MODULE=liveops.settings $(BIN)/python -m conformance.vectors --check
	@skip=""; if ! $(MAKE) --no-print-directory mono; then \
	  if [ "$${CI:-}" = true ]; then echo "make conformance: no Mono (mcs, mono) and it could not be installed: the C# SDK cannot be held to the kit (CI=true: failing)"; exit 1; fi; \
	  echo "make conformance: no Mono (mcs, mono) and it could not be installed (apt-get install mono-devel, as root): the C# SDK is SKIPPED"; skip="--skip csharp"; \
	fi; \
	echo "$(BIN)/python -m conformance $$skip $(ARGS)"; $(BIN)/python -m conformance $$skip $(ARGS)

# Mono's compiler and runtime for the C# SDK: Debian's mono-devel, installed when mcs is missing
# and this runs as root (apt-get); exit 1 when they are missing and cannot be installed.
MCS ?= mcs
mono:
	@if ! command -v $(MCS) >/dev/null 2>&1 || ! command -v mono >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make mono: apt-get install mono-devel"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mono-devel >/dev/null \
	      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mono-devel >/dev/null; } || true; \
	  fi; \
	fi; \
	command -v $(MCS) >/dev/null 2>&1 && command -v mono >/dev/null 2>&1

demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput >/dev/null
	$(BIN)/python manage.py demo $(ARGS)

bench: $(STAMP)
	$(BIN)/python manage.py bench $(ARGS)

clean:
	rm -rf $(VENV) .tools .services .demo .conformance .test-db.sqlite3 db.sqlite3 sdk-cs/bin
