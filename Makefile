# Two commands for a new user:  `make demo`  and  `make test`.
# Both create .venv, install the project, and build the control plane on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup demo test e2e lint unit integration bench crds chart-docs chart-package version \
        cluster-up cluster-down clean

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

## The end-to-end suite on a real node (needs root): the image built here, `helm install`, the
## operator's lifecycle (restart, upgrade, eviction, failover). Builds the node on first use.
e2e: setup
	$(BIN)/python -m album_operator_dev.localcluster.node build
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

node-up: setup
	$(BIN)/python -m album_operator_dev.localcluster.node up

node-down: setup
	$(BIN)/python -m album_operator_dev.localcluster.node down

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

## The chart as dist/album-operator-<version>.tgz, for `helm push` (docs/release.md); helm from
## the cache (built on first use) unless HELM names one.
chart-package: setup
	@mkdir -p dist
	helm="$(HELM)"; test -n "$$helm" || helm=$$($(BIN)/python -c \
	  'from album_operator_dev.localcluster import build; print(build.build(build.HELM))') \
	  && "$$helm" package charts/album-operator --destination dist

## pyproject.toml's version is the project's; Chart.yaml's version and appVersion (the image
## tag's default) and the Dockerfile's VERSION follow it. `make version` checks that they
## agree; `make version NEW_VERSION=0.2.0` sets all of them, reinstalls, then checks.
version: setup
ifdef NEW_VERSION
	@echo '$(NEW_VERSION)' | grep -Eqx '[0-9]+\.[0-9]+\.[0-9]+' \
	  || { echo "NEW_VERSION must be MAJOR.MINOR.PATCH, got '$(NEW_VERSION)'"; exit 2; }
	sed -i -E 's/^version = "[^"]*"/version = "$(NEW_VERSION)"/' pyproject.toml
	sed -i -E 's/^version: .*/version: $(NEW_VERSION)/; s/^appVersion: .*/appVersion: "$(NEW_VERSION)"/' \
	  charts/album-operator/Chart.yaml
	sed -i -E 's/^ARG VERSION=.*/ARG VERSION=$(NEW_VERSION)/' Dockerfile
	$(MAKE) --no-print-directory setup
endif
	$(BIN)/pytest -q -p no:cacheprovider tests/unit/test_packaging.py -k version

cluster-up: setup
	$(BIN)/album-operator local-cluster up

cluster-down: setup
	$(BIN)/album-operator local-cluster down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
