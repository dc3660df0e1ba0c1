# mozart_luigi developer entry points. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3.11
VENV        := .venv
PY          := $(VENV)/bin/python
STACK       := scripts/stack
LUIGID_PORT ?= 8082
LUIGID_DIR  ?= $(or $(MOZART_DATA_DIR),.mozart)/luigid
PYTEST_ARGS ?= --durations=25
BENCH_ARGS  ?=
# KEEP_STACK=1 leaves the stack running after `make test`.
KEEP_STACK  ?=

PKG_FILES   := $(wildcard setup.cfg setup.py pyproject.toml)
TEST_STAMP  := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: help venv venv-bench stack-up stack-down stack-status test test-unit demo luigid lint format bench clean distclean

help:
	@echo "venv          create .venv and pip install -e '.[test]' (again only when setup.cfg changes)"
	@echo "stack-up      start the native stack (scripts/stack up)"
	@echo "stack-down    stop it (scripts/stack down)"
	@echo "stack-status  one line per service"
	@echo "test          venv + lint (ruff check, ruff format --check, mypy) + stack-up + all tests + stack-down (KEEP_STACK=1 keeps it up)"
	@echo "test-unit     unit tests only, no stack"
	@echo "demo          run 'mozart demo'"
	@echo "luigid        Luigi central scheduler on 127.0.0.1:$(LUIGID_PORT) (foreground)"
	@echo "lint          ruff check + ruff format --check (mozart_luigi tests benchmarks); mypy, strict, over mozart_luigi (first steps of make test)"
	@echo "format        ruff format mozart_luigi tests benchmarks (what the format check expects)"
	@echo "bench         venv with the bench extra + stack-up + python -m benchmarks"
	@echo "clean         stop the stack; remove .stack and build/test leftovers (keeps .venv, .cache)"
	@echo "distclean     clean + remove .venv and .cache"

# ------------------------------------------------------------------ venv
venv: $(TEST_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(TEST_STAMP): $(PY) $(PKG_FILES)
	$(PY) -m pip install -e '.[test]'
	@touch $@

venv-bench: $(BENCH_STAMP)

$(BENCH_STAMP): $(TEST_STAMP) $(PKG_FILES)
	$(PY) -m pip install -e '.[test,bench]'
	@touch $@

# ----------------------------------------------------------------- stack
stack-up:
	$(STACK) up

stack-down:
	$(STACK) down

stack-status:
	$(STACK) status

# ----------------------------------------------------------------- tests
# The stack always goes down afterwards (unless KEEP_STACK=1), also when the
# tests fail; the exit status is pytest's (or stack-up's, if that failed).
test: venv
	$(VENV)/bin/ruff check mozart_luigi tests benchmarks
	$(VENV)/bin/ruff format --check mozart_luigi tests benchmarks
	$(VENV)/bin/mypy
	@rc=0; \
	$(STACK) up || rc=$$?; \
	if [ $$rc -eq 0 ]; then \
	  eval "$$($(STACK) env)"; \
	  $(VENV)/bin/pytest $(PYTEST_ARGS) || rc=$$?; \
	fi; \
	if [ -z "$(KEEP_STACK)" ]; then $(STACK) down || true; fi; \
	exit $$rc

test-unit: venv
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

# ------------------------------------------------------------------ misc
demo: venv
	$(VENV)/bin/mozart demo

# Loopback only; state and logs next to the pipeline's data (MOZART_DATA_DIR, default .mozart).
luigid: venv
	@mkdir -p $(LUIGID_DIR)
	$(VENV)/bin/luigid --address 127.0.0.1 --port $(LUIGID_PORT) \
	  --state-path $(LUIGID_DIR)/state.pickle --logdir $(LUIGID_DIR)

format: venv
	$(VENV)/bin/ruff format mozart_luigi tests benchmarks

lint: venv
	$(VENV)/bin/ruff check mozart_luigi tests benchmarks
	$(VENV)/bin/ruff format --check mozart_luigi tests benchmarks
	$(VENV)/bin/mypy

bench: venv-bench stack-up
	eval "$$($(STACK) env)"; $(PY) -m benchmarks $(BENCH_ARGS)

clean:
	-$(STACK) down
	rm -rf .stack .pytest_cache .ruff_cache .mypy_cache .hypothesis dbt/target dbt/logs build dist
	find . -path ./.venv -prune -o -path ./.cache -prune -o -name __pycache__ -type d -print0 \
	  | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV) .cache
