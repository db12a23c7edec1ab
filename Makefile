# mi50-llm-stack: the two commands are `make lab` and `make test`.
# Everything else is a step they call; each step installs what it needs.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
PYTHON       ?= python3
VENV         ?= .venv
BIN          := $(VENV)/bin
export MI50_CACHE_DIR ?= $(HOME)/.cache/mi50-llm-stack
export MI50_LAB_IMAGE ?= mi50-lab/debian-12:latest
export PATH          := $(abspath $(BIN)):$(PATH)
export ANSIBLE_FORCE_COLOR ?= 1
LABCTL       := $(BIN)/python tests/lab/labctl.py
# Molecule scenarios: default first, then every other scenario directory.
SCENARIOS    ?= default $(sort $(filter-out default,$(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))))

.PHONY: docs help replay venv docker image fixtures serve lint unit molecule test lab lab-summary lab-destroy lab-benchmark clean

help:
	@echo "make lab    provision the lab container with site.yml and print a summary"
	@echo "make test   lint, unit tests and every Molecule scenario ($(SCENARIOS))"
	@echo "make lab-benchmark   the box benchmark against the lab container (after make lab)"
	@echo "make lab-destroy | clean"
	@echo "make replay REPORT=<field report archive>   what gpu_backend and diagnose decide from it"

# The controller toolchain, pinned in requirements.txt; rebuilt when it changes.
$(BIN)/.installed: requirements.txt files/llm_router/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q -e 'files/llm_router[test]'
	touch $@

venv: $(BIN)/.installed

docker: venv
	$(LABCTL) docker

image: docker
	$(LABCTL) image

fixtures: image
	$(LABCTL) fixtures

serve: fixtures
	$(LABCTL) serve

lint: venv
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production
	$(BIN)/ansible-playbook site.yml --syntax-check
	$(BIN)/ruff check --config files/llm_router/pyproject.toml tests/router tests/standins/cloud_api.py benchmarks files/benchmark
	$(BIN)/mypy --python-version 3.10 --ignore-missing-imports --cache-dir .cache/mypy files/benchmark/box_benchmark.py files/benchmark/render_report.py
	cd files/llm_router && $(abspath $(BIN))/ruff check && $(abspath $(BIN))/ruff format --check \
	  && $(abspath $(BIN))/mypy --python-version 3.10

# Unit tests of the plugins and lab tools, and the router's own tests (its
# end-to-end tests run against the real llama-server and model from the cache).
unit: fixtures
	eval "$$($(LABCTL) env)" && $(BIN)/pytest -q tests/unit tests/router

# Scenarios run MOLECULE_JOBS at a time (tests/lab/molecule_all.py), each logging
# to .cache/molecule-logs/<scenario>.log; `make molecule SCENARIOS=rocm` runs one.
MOLECULE_JOBS ?= 3
molecule: serve
	MI50_FIXTURES_URL=$$($(LABCTL) serve) MOLECULE_JOBS=$(MOLECULE_JOBS) \
	  $(BIN)/python tests/lab/molecule_all.py $(SCENARIOS)

# Lint, the unit tests and the scenarios run side by side once their shared
# prerequisites (venv, Docker, image, fixtures) are there: on two cores the
# scenarios mostly wait on apt and systemd in their containers.
test:
	@$(MAKE) --no-print-directory -j3 lint unit molecule
	@echo "make test: all green"

lab: serve
	$(LABCTL) up
	MI50_FIXTURES_URL=$$($(LABCTL) serve) $(BIN)/ansible-playbook -i inventory/lab site.yml
	@$(MAKE) --no-print-directory lab-summary

# The box benchmark against the lab container (after `make lab`). CPU figures of a
# 270M model: they show the benchmark works, not what an MI50 does.
lab-benchmark: serve
	$(BIN)/ansible-playbook -i inventory/lab playbooks/benchmark.yml $(BENCHMARK_ARGS)

lab-summary: venv
	@$(BIN)/python tests/lab/summary.py

lab-destroy: venv
	$(LABCTL) down

clean: lab-destroy
	$(LABCTL) unserve
	rm -rf $(VENV) .cache

docs: venv
	$(BIN)/python tests/tools/role_docs.py

# A field report (playbooks/field_report.yml) replayed offline: the tier gpu_backend would
# record and what diagnose finds, from the report alone (docs/field-report.md).
replay: venv
	@test -n "$(REPORT)" || { echo "usage: make replay REPORT=reports/field/field-report-host-1-<time>.tar.gz"; exit 2; }
	@$(BIN)/python files/field_report/field_report.py replay $(REPORT)
