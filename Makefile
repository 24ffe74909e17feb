# Two commands for a fresh machine with Python 3.11+:
#   make run    set up .venv and serve on the embedded default bundle
#   make test   set up .venv and run lint, type checks and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test lint typecheck unit bench check-python redis-server clean

run: $(STAMP)
	$(BIN)/sidecar run

test: $(STAMP) lint typecheck redis-server
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/proxy_bench.py
	$(BIN)/python bench/authz_bench.py
	$(BIN)/python bench/limits_bench.py
	$(BIN)/python bench/resilience_bench.py
	$(BIN)/python bench/guard_bench.py
	$(BIN)/python bench/guards.py

# The shared-limit tests run a real redis-server; on Debian/Ubuntu it is installed here.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package) for the shared-limit tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-install-recommends redis-server; } \
	    || echo "could not install redis-server: its tests are skipped here (and fail under CI)"; }

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; set PYTHON=python3.11")'

$(STAMP): pyproject.toml constraints.txt | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
