# One place for the project's routines; .ci/run calls the same targets.
#   make demo    the main job, on the built-in mock provider
#   make test    the whole test suite (installs what it needs first)
#   make lint    rustfmt, clippy, ruff, mypy --strict, stubtest
#   make bench   every benchmark, ratekeeper beside its peers
SHELL := /bin/bash
VENV ?= .venv
export VENV

.PHONY: install test lint demo bench ci

install:
	bash .ci/install.sh

test: install
	bash .ci/test.sh

lint: install
	bash .ci/lint.sh

demo:
	RK_SKIP_REDIS=1 RK_SKIP_CHROMIUM=1 bash .ci/install.sh
	$(VENV)/bin/ratekeeper demo

bench: install
	$(VENV)/bin/python bench/run_all.py

ci: lint test
