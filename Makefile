# The README's commands. `make demo` and `make test` each set up .venv on a fresh clone first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The stamp is named after the hash of what was installed: a changed lock or pyproject reinstalls,
# an unchanged one installs nothing and needs no network.
INSTALL_HASH := $(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(INSTALL_HASH)
# Sovereign by construction: no telemetry, no hub access, from any component.
export DAGSTER_DISABLE_TELEMETRY := 1
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: setup demo test test-all test-e2e ui lint format wheelhouse

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing pinned dependencies into $(VENV) (requirements.lock) ..."
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(VENV)/bin/apertus demo

test: setup
	$(PY) -m pytest -q -m "not slow and not gpu and not e2e"

test-all: setup
	$(PY) -m pytest -q -m "not gpu"

# The browser test (tests/e2e/): Debian's chromium, driven by Playwright from the venv (no browser
# download). Installs chromium with apt-get the first time, as root or through sudo.
test-e2e: setup
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser test ..."; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }
	APERTUS_E2E_REQUIRED=1 $(PY) -m pytest -q -m e2e tests/e2e

ui: setup
	@echo "Dagster UI on http://127.0.0.1:3000 (DAGSTER_HOME=$(DAGSTER_HOME))"
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Wheels of every pin but torch, triton and the CUDA wheels, for an air-gapped GPU host
# (bench/gpu_check.sh installs them there); PYTHON_VERSION is the host's Python. Needs the network.
PYTHON_VERSION ?= 3.11
wheelhouse: setup
	$(PY) bench/wheelhouse.py download --python-version $(PYTHON_VERSION) --dest wheelhouse

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .
