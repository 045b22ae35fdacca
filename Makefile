# Profile Audit — everything needs only Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
# The browser tests drive this Chromium; on Debian it is installed if missing.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install run test lint format clean chromium wrk screenshots fuzz deploy-check lock bench

help:
	@echo "make run    serve the app on http://127.0.0.1:$${PORT:-5000} (embedded PostgreSQL unless DATABASE_URL is set)"
	@echo "make test   run the whole test suite (throwaway embedded PostgreSQL unless TEST_DATABASE_URL is set)"
	@echo "make lint   ruff checks and the import rules between layers (.importlinter)"
	@echo "make fuzz   fuzz the JSON API against its OpenAPI document"
	@echo "make screenshots   pictures of the main pages in screenshots/"
	@echo "make bench  every benchmark, one table of figures (about an hour; BENCH_ARGS=--quick)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

# The benchmarks' own extras (the audit libraries they compare against).
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

# Debian's Chromium for the browser tests (Playwright never downloads one).
chromium:
	@[ -x "$(CHROMIUM)" ] || { \
	  command -v apt-get >/dev/null || { echo "No apt-get: install Chromium yourself and set CHROMIUM=..."; exit 1; }; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The HTTP load generator of the benchmarks; on Debian it is installed if missing.
wrk:
	@command -v wrk >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "No apt-get: install wrk yourself"; exit 1; }; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

run: $(STAMP)
	$(BIN)/python -m webapp.dev.server

test: $(STAMP)
	@$(MAKE) --no-print-directory chromium || echo "Chromium is not available: the browser tests will be skipped."
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest $(PYTEST_ARGS)

# Schemathesis against the live API on a throwaway database: no server error,
# no response the OpenAPI document does not describe.
fuzz: $(STAMP)
	$(BIN)/python tests/fuzz_api.py

# The Dockerfile (hadolint) and the compose file (`docker compose config`),
# checked without a Docker engine.
deploy-check: $(STAMP)
	$(BIN)/python deploy/validate.py

# Regenerate the pinned, hash-checked dependency locks after changing pyproject.toml.
lock:
	deploy/lock.sh

# Screenshots of the main pages at desktop and phone widths, into screenshots/.
screenshots: $(STAMP) chromium
	SCREENSHOT_DIR=screenshots CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q tests/browser/screenshots.py

# Benchmarks against the peers and at scale, on their own embedded PostgreSQL
# (bench/README.md). They print figures and never fail on speed.
bench: $(BENCH_STAMP) wrk
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
