# SelfHelp Scheduled Jobs on Kubernetes. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/common:$(CURDIR)/operator:$(CURDIR)/api:$(CURDIR)/tools:$(CURDIR)
PORT ?= 8080
STATE_DIR ?= .cluster
HELM := bin/helm
IMAGE ?= selfhelp/scheduled-jobs:dev

.PHONY: help install run token kubectl cluster-up cluster-down cluster-status localcluster helm lint typecheck check \
        unit integration chart-test test upgrade-test docs screenshots bench bench-scale image kind-up deploy clean

help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv with the project and its dev tools (from pyproject.toml)

run: $(STAMP) kubectl ## Run the product: cluster (KUBECONFIG or local), operator, API on PORT (8080), samples; Ctrl-C stops all, state kept in STATE_DIR
	$(PY) -m devrun --port $(PORT) --state-dir $(STATE_DIR)

token: $(STAMP) ## Print a development JWT: every permission (PERMISSIONS=a,b narrows it), SUBJECT=dev-admin, TTL=1h (30m, 8h, 7d)
	@$(PY) -m scheduledjob_api.devtoken $(if $(PERMISSIONS),--permissions $(PERMISSIONS)) \
	  $(if $(SUBJECT),--subject '$(SUBJECT)') $(if $(TTL),--ttl $(TTL))

localcluster: ## Build (once, cached by input hash) the kube-apiserver/controller-manager/etcd binary
	tools/localcluster/build.sh

kubectl: ## Put kubectl (a subcommand of the control-plane binary) into bin/kubectl
	@mkdir -p bin && ln -sf "$$(tools/localcluster/build.sh)" bin/kubectl && echo "bin/kubectl -> $$(readlink bin/kubectl)"

cluster-up: $(STAMP) kubectl ## Start the local control plane in the background; writes .cluster/kubeconfig
	$(PY) -m localcluster_launcher up --state-dir $(STATE_DIR)

cluster-down: $(STAMP) ## Stop the local control plane (its data stays in STATE_DIR; make clean wipes it)
	$(PY) -m localcluster_launcher down --state-dir $(STATE_DIR)

cluster-status: $(STAMP) ## Show the local control plane's components and health ("not running" is exit 0)
	$(PY) -m localcluster_launcher status --state-dir $(STATE_DIR)

helm: ## Build Helm 4 from its Go module into bin/helm (cached)
	tools/helm/build.sh

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP) ## mypy --strict over the packages, tools and tests
	$(VENV)/bin/mypy common operator api tools tests bench

check: lint typecheck ## lint + typecheck

unit: $(STAMP) ## Fast tests of pure logic (no cluster)
	$(PY) -m pytest tests/unit -q

integration: $(STAMP) localcluster ## Tests on a real control plane (KUBECONFIG's, else a local one per session)
	$(PY) -m pytest tests/integration -q

chart-test: $(STAMP) helm localcluster ## Helm lint, render, dry-run, install/uninstall and RBAC proofs
	$(PY) -m pytest tests/chart -q

UPGRADE_SUITE := tests/integration/upgrade

test: check $(STAMP) localcluster helm ## Everything CI runs: lint, types, unit, integration, chart tests: three suites side by side (tools/testsuites)
	$(PY) -m testsuites

upgrade-test: $(STAMP) localcluster ## Only the N-1 -> N upgrade story (its own control plane and PostgreSQL)
	$(PY) -m pytest $(UPGRADE_SUITE) -q -p no:cacheprovider --durations=5

docs: $(STAMP) ## Regenerate docs/api.md from the OpenAPI document
	$(PY) -m apidocs

screenshots: $(STAMP) localcluster ## Regenerate the dashboard screenshots in docs/ui/ (the browser tests take them)
	UI_SCREENSHOTS=$(CURDIR)/docs/ui $(PY) -m pytest tests/integration/ui -q -p no:cacheprovider

bench: $(STAMP) localcluster ## Benchmarks against raw apiserver operations; writes bench/results.json, then docs/limits.md
	$(PY) -m bench
	$(PY) -m bench.limits

bench-scale: $(STAMP) localcluster ## 2,000 -> 20,000 ScheduledJobs (~50 min on 2 cores): merged into bench/results.json, then docs/limits.md
	$(PY) -m bench --scale
	$(PY) -m bench.limits

image: ## Build the container image (needs Docker)
	docker build -t $(IMAGE) .

kind-up: ## Create a kind cluster (needs Docker and kind)
	kind create cluster --name scheduled-jobs

deploy: helm ## helm upgrade --install the chart into the current kube context
	$(HELM) upgrade --install scheduled-jobs charts/scheduled-jobs --namespace scheduled-jobs --create-namespace \
	  --set image.repository=$(firstword $(subst :, ,$(IMAGE))) --set image.tag=$(lastword $(subst :, ,$(IMAGE)))

clean: ## Stop the local cluster and remove its state: etcd data, ids, samples marker, logs (not the Go caches)
	-$(PY) -m localcluster_launcher down --state-dir $(STATE_DIR)
	rm -rf $(STATE_DIR) bin .mypy_cache .ruff_cache .pytest_cache
