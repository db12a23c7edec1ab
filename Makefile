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

.PHONY: docs help venv docker image fixtures serve lint unit molecule test lab lab-summary lab-destroy clean

help:
	@echo "make lab    provision the lab container with site.yml and print a summary"
	@echo "make test   lint, unit tests and every Molecule scenario ($(SCENARIOS))"
	@echo "make lab-destroy | clean"

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
	$(BIN)/ruff check --config files/llm_router/pyproject.toml tests/router tests/standins/cloud_api.py benchmarks
	cd files/llm_router && $(abspath $(BIN))/ruff check && $(abspath $(BIN))/ruff format --check \
	  && $(abspath $(BIN))/mypy --python-version 3.10

# Unit tests of the plugins and lab tools, and the router's own tests (its
# end-to-end tests run against the real llama-server and model from the cache).
unit: fixtures
	eval "$$($(LABCTL) env)" && $(BIN)/pytest -q tests/unit tests/router

molecule: serve
	@export MI50_FIXTURES_URL=$$($(LABCTL) serve); \
	for s in $(SCENARIOS); do \
	  echo "=== molecule test -s $$s"; \
	  $(BIN)/molecule test -s $$s || exit 1; \
	done

test: lint unit molecule
	@echo "make test: all green"

lab: serve
	$(LABCTL) up
	MI50_FIXTURES_URL=$$($(LABCTL) serve) $(BIN)/ansible-playbook -i inventory/lab site.yml
	@$(MAKE) --no-print-directory lab-summary

lab-summary: venv
	@$(BIN)/python tests/lab/summary.py

lab-destroy: venv
	$(LABCTL) down

clean: lab-destroy
	$(LABCTL) unserve
	rm -rf $(VENV) .cache

docs: venv
	$(BIN)/python tests/tools/role_docs.py
