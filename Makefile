# ptxplain — one entry point for developers and CI. Every target calls the `ptxplain` CLI.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PY := $(BIN)/python
PTX := $(BIN)/ptxplain
# Torch threads per process for tests and benchmarks (2 cores here).
export PTXPLAIN_TORCH_THREADS ?= 1
PYTEST_ARGS ?=

.PHONY: setup test lint format protos bench archive images deploy stop clean help \
	models evaluate study-shortcut preflight-local deploy-local stop-local deploy-compose stop-compose deploy-k8s stop-k8s loadtest

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## build .venv from scratch (idempotent)

test: setup  ## run the whole test suite (unit + live TorchServe)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup  ## ruff (lint + format check) and mypy on the project's own code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

protos: setup  ## regenerate the Python stubs from protos/
	$(PTX) protos generate

bench: setup  ## engine vs forward vs stock grad-cam per architecture; the live stack vs the in-process limit
	$(PTX) bench engine
	$(PTX) bench throughput --threads 1

archive: setup  ## build one .mar per architecture into model_store/
	$(PTX) archive --all --out model_store --device $(DEVICE)

# Both container images (docs/containers.md): Docker when its engine answers, else buildah
# (apt-installed when missing) with a local stand-in base image. IMAGES_ARGS: e.g. --only gateway,
# --no-host-pip, --torch-index-url URL.
IMAGES_ARGS ?=

images: setup  ## build the gateway and model-server images (Docker, or buildah without an engine)
	$(PTX) images --docker $(DOCKER) $(IMAGES_ARGS)

# The local stack of `make deploy` (TorchServe + gateway, in the background; logs and pid files
# in $(RUN_DIR)). Override on the command line, e.g. `make deploy GATEWAY_HTTP_PORT=9000`.
MODEL_STORE ?= model_store
RUN_DIR ?= run
GATEWAY_GRPC_PORT ?= 50051
GATEWAY_HTTP_PORT ?= 8000
TS_PORTS ?= --ts-inference-port 8080 --ts-management-port 8081 --ts-metrics-port 8082 --ts-grpc-port 7070 --ts-grpc-management-port 7071
DEPLOY_ARGS ?=

# The embedded default (`make models`): the phantom data set, the quick CPU profile, archives (each
# step skips what exists; archives or checkpoints trained on other data than DATA stop it unless
# FORCE=1). `make deploy` runs it with --if-empty: with archives already in model_store/ it only
# checks them against DATA.
DATA ?= data/phantom
CHECKPOINTS ?= checkpoints
TRAIN_PROFILE ?= quick
# The archives' device (docs/archive.md): auto = the model server's GPU where it has one.
DEVICE ?= auto
FORCE ?=
# TorchServe workers per model (docs/archive.md): auto = planned from each model's measured cost
# and the cores (handlers/placement.py); WORKERS=1 gives every model one.
WORKERS ?= auto
MODELS_ARGS = --data $(DATA) --checkpoints $(CHECKPOINTS) --model-store $(MODEL_STORE) --profile $(TRAIN_PROFILE) --device $(DEVICE) --workers $(WORKERS) $(if $(FORCE),--force)

models: setup  ## phantom data -> quick CPU training -> archives (skips what exists; FORCE=1 retrains other data; docs/train.md)
	$(PTX) models $(MODELS_ARGS)

# What `make deploy` needs, checked before the venv install and any training: Python 3.11, Java 17+
# (TorchServe), the stack's ports free on loopback, and disk (more before the first install).
JAVA ?= java
MIN_FREE_GIB ?= $(if $(wildcard $(STAMP)),2,8)
DEPLOY_PORTS = $(GATEWAY_GRPC_PORT) $(GATEWAY_HTTP_PORT) $(filter-out --%,$(TS_PORTS))
define port_probe
import socket, sys
busy = []
for port in sys.argv[1:]:
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", int(port)))
    except OSError:
        busy.append(port)
    finally:
        probe.close()
if busy:
    sys.exit("error: port(s) " + " ".join(busy) + " in use on 127.0.0.1: is a stack already running"
             " (make stop)? Or choose others, e.g. GATEWAY_HTTP_PORT=9000")
endef
export port_probe

preflight-local:  ## check Python 3.11, Java 17+, free ports and disk for `make deploy` (runs first)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 1; }
	@command -v $(JAVA) >/dev/null 2>&1 || { echo "error: TorchServe needs Java 17 or newer, and '$(JAVA)' is not on PATH (e.g. apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	@v=$$($(JAVA) -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); [ "$${v:-0}" -ge 17 ] 2>/dev/null || { echo "error: TorchServe needs Java 17 or newer; '$(JAVA)' is version $${v:-unknown}" >&2; exit 1; }
	@$(PYTHON) -c "$$port_probe" $(DEPLOY_PORTS)
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); [ "$$free" -ge $(MIN_FREE_GIB) ] || { echo "error: $$free GiB free here; make deploy needs $(MIN_FREE_GIB) GiB (virtualenv, phantom, checkpoints, archives)" >&2; exit 1; }

deploy-local: preflight-local setup  ## start TorchServe (every archive in model_store/) + the gateway in the background
	$(PTX) models $(MODELS_ARGS) --if-empty
	$(PTX) deploy --model-store $(MODEL_STORE) --run-dir $(RUN_DIR) --grpc-port $(GATEWAY_GRPC_PORT) --http-port $(GATEWAY_HTTP_PORT) $(TS_PORTS) $(DEPLOY_ARGS)

stop-local: setup  ## stop exactly what `make deploy` started (pid files in run/)
	$(PTX) stop --run-dir $(RUN_DIR)

EVAL_OUT ?= reports/evaluate
EVAL_ARGS ?=

evaluate: setup  ## replay the test split of $(DATA) through the local gateway; writes $(EVAL_OUT)/report.html
	$(PTX) evaluate --data $(DATA) --gateway 127.0.0.1:$(GATEWAY_GRPC_PORT) --out $(EVAL_OUT) $(EVAL_ARGS)

# The shortcut study (not part of `make deploy`): phantoms, training and evaluation in-process.
SHORTCUT_OUT ?= reports/shortcut
SHORTCUT_ARGS ?=

study-shortcut: setup  ## plant a chest-drain shortcut on a phantom and check the harness detects it
	$(PTX) study shortcut --out $(SHORTCUT_OUT) $(SHORTCUT_ARGS)

# -- where `make deploy` / `make stop` go: DEPLOY=local (the processes above), compose or k8s --------
# docs/containers.md, docs/kubernetes.md. PROFILE: Compose profiles (cpu | gpu, plus ,monitoring);
# OVERLAY: k8s/overlays/<OVERLAY>. DOCKER / KUBECTL: the binaries (kubectl: .venv's, pinned).
DEPLOY ?= local
PROFILE ?= cpu
OVERLAY ?= cpu
DOCKER ?= docker
KUBECTL ?= $(if $(wildcard $(BIN)/kubectl),$(BIN)/kubectl,kubectl)
COMPOSE_TOKEN := run/compose/gateway-token

deploy: deploy-$(DEPLOY)  ## start the stack: DEPLOY=local (default), compose [PROFILE=cpu|gpu] or k8s [OVERLAY=cpu|gpu]

stop: stop-$(DEPLOY)  ## stop the stack that `make deploy DEPLOY=...` started

deploy-% stop-%:
	@echo "error: DEPLOY=$* is not one of: local, compose, k8s" >&2; exit 2

define need_docker
	@command -v $(DOCKER) >/dev/null 2>&1 || { echo "error: DEPLOY=compose needs Docker, and '$(DOCKER)' is not on PATH (docs/containers.md)" >&2; exit 1; }
	@$(DOCKER) compose version >/dev/null 2>&1 || { echo "error: DEPLOY=compose needs the Docker Compose v2 plugin ('$(DOCKER) compose version' failed)" >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo "error: the Docker engine is not reachable ('$(DOCKER) info' failed): start it, or check DOCKER_HOST" >&2; exit 1; }
endef

define need_cluster
	@command -v $(KUBECTL) >/dev/null 2>&1 || { echo "error: DEPLOY=k8s needs kubectl, and '$(KUBECTL)' is not on PATH (make setup installs one in $(BIN))" >&2; exit 1; }
	@test -d k8s/overlays/$(OVERLAY) || { echo "error: OVERLAY=$(OVERLAY): no folder k8s/overlays/$(OVERLAY)" >&2; exit 1; }
	@$(KUBECTL) config current-context >/dev/null 2>&1 || { echo "error: DEPLOY=k8s needs a cluster: kubectl has no current context (set KUBECONFIG or 'kubectl config use-context')" >&2; exit 1; }
	@$(KUBECTL) version --request-timeout=10s >/dev/null 2>&1 || { echo "error: the cluster of context '$$($(KUBECTL) config current-context)' does not answer ('kubectl version' failed)" >&2; exit 1; }
endef

deploy-compose:  ## Docker Compose: build the images, start model server + gateway (PROFILE=cpu|gpu)
	$(need_docker)
	@ls model_store/*.mar >/dev/null 2>&1 || { echo "error: no archives in model_store/ (mounted into the model server): run 'make archive' first" >&2; exit 1; }
	@test -s $(COMPOSE_TOKEN) || { mkdir -p -m 700 $(dir $(COMPOSE_TOKEN)) \
	  && (umask 022 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))' > $(COMPOSE_TOKEN)) \
	  && echo "wrote the gateway's client token to $(COMPOSE_TOKEN) (clients send 'Authorization: Bearer <token>')"; }
	COMPOSE_PROFILES=$(PROFILE) $(DOCKER) compose up --detach --build --wait

stop-compose:  ## Docker Compose: stop and remove the containers (volumes kept)
	$(need_docker)
	COMPOSE_PROFILES=$(PROFILE) $(DOCKER) compose down

deploy-k8s:  ## Kubernetes: kubectl apply -k k8s/overlays/$(OVERLAY) (Secrets first: docs/kubernetes.md)
	$(need_cluster)
	$(KUBECTL) apply -k k8s/overlays/$(OVERLAY)

stop-k8s:  ## Kubernetes: delete what the overlay created (namespace ptxplain included)
	$(need_cluster)
	$(KUBECTL) delete -k k8s/overlays/$(OVERLAY) --ignore-not-found

# -- load test (docs/loadtest.md): Locust, headless and bounded, against the local stack -----------
USERS ?= 20
DURATION ?= 60s
PROTOCOL ?= both
LOADTEST_ARGS ?=

loadtest: setup  ## Locust vs the local stack: USERS=20 DURATION=60s PROTOCOL=both|http|grpc -> reports/loadtest/
	$(PTX) loadtest --users $(USERS) --duration $(DURATION) --protocol $(PROTOCOL) --gateway-http http://127.0.0.1:$(GATEWAY_HTTP_PORT) --gateway 127.0.0.1:$(GATEWAY_GRPC_PORT) --out reports/loadtest $(LOADTEST_ARGS)

clean:  ## remove built artefacts (keeps .venv)
	rm -rf model_store run build .pytest_cache .mypy_cache .ruff_cache
