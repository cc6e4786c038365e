# llmops-nb: `make run` and `make test` set themselves up (a .venv with the project installed).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# `make test` adds the transformers extra (torch and transformers, ~3 GB with torch's CUDA wheels from
# PyPI) for the transformers-source tests; `make run` and `make install` do not install it.
TEST_STAMP := $(VENV)/.installed-test
# mlflow's scoring server execs `uvicorn`, and papermill/nbval start the venv's kernel.
export PATH := $(BIN):$(PATH)
# Build llama-cpp-python with both cores (once per version: llmops_nb/models/runtime.py keeps the
# portable wheel in ~/.cache/llmops-nb/wheels, or $LLMOPS_WHEELHOUSE).
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install run test nbval conformance lint stop clean clean-runtime help

help:
	@echo "make run   - set up .venv, then register -> deploy -> serve -> evaluate on the local workspace"
	@echo "make test  - set up .venv (with the transformers extra), then run every test"
	@echo "make nbval NB=notebooks/02_deploy.ipynb [BACKEND=local] - nbval over the chain up to NB (fake workspace by default)"
	@echo "make conformance - the Databricks serving-endpoints scenarios on the fake and local workspaces (LLMOPS_LIVE_DATABRICKS=1: a real one too)"
	@echo "make lint  - ruff check, ruff format --check, mypy, then import-linter's layer contracts"
	@echo "make stop  - stop the local workspace and its endpoints"
	@echo "make clean-runtime - forget the built llama.cpp wheel (the next install builds it again)"

# llama-cpp-python first, from the project's own portable build (no -march=native: AMX kernels die
# with SIGILL on Intel Xeon VMs), so the `local` extra finds it installed; then a smoke check that
# loads the model and decodes a few tokens in a subprocess and stops make with one line if it crashes.
# pip -qq: errors only (the editable-install notice and index-location warnings are not news).
$(STAMP): pyproject.toml llmops_nb/models/runtime.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip wheel
	$(BIN)/python -m llmops_nb.models.runtime install
	$(BIN)/python -m pip install -qq -e '.[local,dev]'
	@$(BIN)/python -m llmops_nb.models.runtime check
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (llmops-nb)" >/dev/null
	@touch $@

install: $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -qq -e '.[local,dev,transformers,spark]'
	@touch $@

run: $(STAMP)
	$(BIN)/llmops-nb run --config configs/local.yml

# Two workers (pytest-xdist), each running whole test files (--dist loadfile: a file's module and
# session fixtures, such as the served real model, start once per worker). Most tests wait on a
# server, a kernel or a model for much of their time: one process alone kept 0.8 of the 2 cores busy.
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# nbval over the notebooks up to NB (all when NB is empty), on the fake workspace or BACKEND=local.
BACKEND ?= fake
conformance: $(STAMP)
	$(BIN)/python -m pytest tests/conformance -v

nbval: $(STAMP)
	LLMOPS_NBVAL_UPTO=$(NB) $(BIN)/python -m pytest tests/notebooks -k $(if $(filter local,$(BACKEND)),local_workspace,fake_databricks)

# ruff's lint and format checks, mypy (config in pyproject.toml), then the layers (import-linter).
lint: $(STAMP)
	$(BIN)/ruff check llmops_nb tests bench
	$(BIN)/ruff format --check llmops_nb tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

stop:
	@test -x $(BIN)/llmops-nb && $(BIN)/llmops-nb workspace stop || true

clean: stop
	rm -rf $(VENV) .llmops mlflow.db mlruns runs

clean-runtime:
	rm -rf "$${LLMOPS_WHEELHOUSE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/llmops-nb/wheels}"
	rm -f $(STAMP) $(TEST_STAMP)
