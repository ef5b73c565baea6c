# Two entry points for a fresh machine:
#   make pipeline   set up .venv and run the whole DVC pipeline on params.yaml
#   make test       set up .venv (with the test, peers and postgres extras) and run the whole test suite (CI)
# and a fast tier while you work:
#   make check      unit tests only: no dvc repro, no servers (about a minute)
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# Stage commands in dvc.yaml call `python`: make it the project's interpreter.
export PATH := $(BIN):$(PATH)

.PHONY: setup dev pipeline test check benchmark ui

setup: $(VENV)/.installed

# torch is pinned in pyproject.toml to the CPU build that pip finds locally.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The tests and benchmarks also need the peers (CatBoost, NGBoost) and the PostgreSQL driver:
# the `peers` and `postgres` extras.
dev: $(VENV)/.installed-extras
$(VENV)/.installed-extras: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,peers,postgres]'
	touch $@

pipeline: setup
	dvc repro

test: dev
	python -m pytest

check: dev
	python -m pytest -m "not pipeline"

benchmark: dev
	python -m benchmarks.performance

ui: setup
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000
