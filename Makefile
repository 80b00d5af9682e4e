# Two commands do everything on a fresh Debian machine (as root) from a clean clone:
#   make demo   set up, then run the incident drill end to end and print its timeline
#   make test   set up, then run the whole test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export RUNBOOK_HOME ?= $(HOME)/.runbook
export PREFECT_API_URL ?= http://127.0.0.1:4200/api
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_LOGGING_LEVEL ?= WARNING
PYTEST_ARGS ?=
# The suite runs in two phases: most tests spread over PYTEST_WORKERS processes (they wait on
# services far more than they use the CPU), then the few marked `serial` alone, because they change
# what every other test shares (the RabbitMQ cluster's membership).
PYTEST_WORKERS ?= 6

.PHONY: demo test check setup venv services prefect-server lint bench-small clean-state

demo: setup
	$(PY) -m runbook_devtools.demo

test: setup check
	scripts/services.sh browser
	scripts/services.sh monitoring
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m 'not serial' $(PYTEST_ARGS)
	$(VENV)/bin/pytest -p no:xdist -m serial $(PYTEST_ARGS)

# the static checks: style and complexity, the layer contracts, types, the shipped playbooks
check: venv
	$(VENV)/bin/ruff check src devtools tests benchmarks flows
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(VENV)/bin/runbook lint playbooks/

setup: venv services prefect-server

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml devtools/pyproject.toml
	@python3 -c 'import sys; assert sys.version_info >= (3, 11), "runbook needs Python 3.11+"'
	@python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]' -e ./devtools
	@touch $@

services:
	scripts/services.sh

# RUNBOOK_PREFECT_DB=postgres: the Prefect server on the local PostgreSQL (docs/DEPLOY.md)
prefect-server: venv
	RUNBOOK_PREFECT_DB=$(or $(RUNBOOK_PREFECT_DB),sqlite) scripts/prefect_server.sh start

lint: venv
	$(VENV)/bin/runbook lint playbooks/

bench-small: setup
	for b in benchmarks/*.py; do $(PY) $$b --small || exit 1; done
