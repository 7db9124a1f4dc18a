# The two commands a newcomer needs: `make run` and `make test`. Both bootstrap everything
# (virtual environment, dependencies from the lock file, Redis and Postgres if none is
# reachable) on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXECUTORS ?= 2

.PHONY: run test lint typecheck all bench clean venv

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m tools up --executors $(EXECUTORS)

test: $(STAMP)
	$(BIN)/python -m tools deps
	PATH="$(CURDIR)/.local/bin:$$PATH" $(BIN)/python -m tools with-stores -- $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@$(BIN)/python -m tools deps >/dev/null
	@PATH="$(CURDIR)/.local/bin:$$PATH"; if command -v promtool >/dev/null 2>&1; then \
		set -e; \
		promtool check rules deploy/prometheus/alerts.yml; \
		promtool test rules deploy/prometheus/alerts_test.yml; \
		promtool check config deploy/prometheus/prometheus.yml; \
	else \
		echo "lint: promtool not found (apt-get install prometheus): alert rules not checked"; \
	fi

typecheck: $(STAMP)
	$(BIN)/mypy

all: lint typecheck test

# The standard scenarios beside the raw ceilings (several minutes; never part of `make test`).
# BENCH_ARGS: --quick, --only A,C, --json, --executors N, --memory-1m. PEERS=1 also measures
# taskiq and dramatiq (installed on first use into a virtual environment of their own).
bench: $(STAMP)
	$(BIN)/python -m tools bench $(if $(filter 1,$(PEERS)),--peers) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .local .mypy_cache .ruff_cache .pytest_cache
