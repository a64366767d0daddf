# Two commands for a new user:  `make demo`  and  `make test`.
# Both create .venv, install the project, and build the control plane on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup demo test lint unit integration bench crds chart-docs cluster-up cluster-down clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is needed")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP)

## The main job on the embedded default: control plane, CRDs, operator, examples, results.
demo: setup
	$(BIN)/album-operator demo $(DEMO_ARGS)

## Every test: lint, types, import layers, CRD drift, unit tests, integration tests on a real API server.
test: setup
	$(BIN)/album-operator local-cluster build
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/album-operator crds check
	$(BIN)/python -m album_operator_dev.chartdocs check

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

bench: setup
	$(BIN)/album-operator local-cluster build
	$(BIN)/python -m bench $(BENCH_ARGS)

crds: setup
	$(BIN)/album-operator crds generate

## The chart README's table of values, from values.schema.json and values.yaml.
chart-docs: setup
	$(BIN)/python -m album_operator_dev.chartdocs generate

cluster-up: setup
	$(BIN)/album-operator local-cluster up

cluster-down: setup
	$(BIN)/album-operator local-cluster down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
