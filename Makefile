# sidecar-chaos: every target sets itself up; `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test check lint typecheck bench soak clean e2e-kind

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/sidecar-chaos demo

test: install
	PYTEST=$(BIN)/pytest .ci/test

lint: install
	$(BIN)/ruff check chaos tests
	$(BIN)/ruff format --check chaos tests

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

bench: install
	$(BIN)/python -m chaos.bench

# Needs docker, kind and istioctl (not available where this project is built and tested):
# cluster up, the kind-marked tests, the game day on the cluster, cluster down.
# The game day's cert-expiry sets connection_lifetime, which the cluster cannot honour
# (the platform refuses it at its line): the kind run leaves it out.
e2e-kind: install
	$(BIN)/sidecar-chaos cluster up
	$(BIN)/pytest -q -m kind tests/kubernetes; rc=$$?; \
	if [ $$rc = 0 ]; then \
	  $(BIN)/sidecar-chaos run experiments/gameday-kind.yaml; rc=$$?; \
	fi; \
	$(BIN)/sidecar-chaos cluster down; exit $$rc

# 30 minutes, a crash every minute: the runner's memory stays flat, no sample is lost
soak: install
	$(BIN)/python -m chaos.bench.soak --minutes $(or $(SOAK_MINUTES),30)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
