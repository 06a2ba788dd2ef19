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

.PHONY: setup test test-fast lint format typecheck protos bench archive deploy stop clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

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

bench: setup  ## forward vs stock grad-cam vs ptxplain, side by side per architecture
	$(PTX) bench engine

archive: setup  ## build one .mar per architecture into model_store/
	$(PTX) archive --all --out model_store

clean:  ## remove built artefacts (keeps .venv)
	rm -rf model_store run build .pytest_cache .mypy_cache .ruff_cache
