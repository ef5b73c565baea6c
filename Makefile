# Two entry points for a fresh machine:
#   make pipeline   set up .venv and run the whole DVC pipeline on params.yaml
#   make test       set up .venv (with the test, peers and postgres extras) and run the whole test suite (CI)
# and a fast tier while you work:
#   make check      unit tests only: no dvc repro, no servers (about a minute)
# Every install takes the exact versions in constraints.txt (the lock); `make lock` refreshes it.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# Stage commands in dvc.yaml call `python`: make it the project's interpreter.
export PATH := $(BIN):$(PATH)

.PHONY: setup dev pipeline test check benchmark ui lock

setup: $(VENV)/.installed

# torch is pinned in pyproject.toml to the CPU build that pip finds locally; every other
# package to the version constraints.txt names, so that a fresh machine installs what the
# committed dvc.lock was made with.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# The tests and benchmarks also need the peers (CatBoost, NGBoost) and the PostgreSQL driver:
# the `peers` and `postgres` extras.
dev: $(VENV)/.installed-extras
$(VENV)/.installed-extras: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,peers,postgres]'
	touch $@

# Refresh the lock: resolve pyproject.toml (every extra) afresh in a scratch environment and
# write what pip installed. Commit constraints.txt with the dvc.lock it produces.
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV) && python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[test,peers,postgres]'
	{ echo "# The exact versions \`make setup\` and \`make dev\` install (pip -c); \`make lock\` rewrites"; \
	  echo "# this file from pyproject.toml. Made on Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version())'), Linux x86_64."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.txt
	rm -rf $(LOCK_VENV)

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
