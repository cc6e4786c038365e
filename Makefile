# llmops-nb: `make run` and `make test` set themselves up (a .venv with the project installed).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# mlflow's scoring server execs `uvicorn`, and papermill/nbval start the venv's kernel.
export PATH := $(BIN):$(PATH)
# Build llama-cpp-python with both cores; pip caches the wheel afterwards.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install run test nbval lint stop clean help

help:
	@echo "make run   - set up .venv, then register -> deploy -> serve -> evaluate on the local workspace"
	@echo "make test  - set up .venv, then run every test"
	@echo "make nbval NB=notebooks/02_deploy.ipynb [BACKEND=local] - nbval over the chain up to NB (fake workspace by default)"
	@echo "make stop  - stop the local workspace and its endpoints"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (llmops-nb)" >/dev/null
	@touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/llmops-nb run --config configs/local.yml

test: $(STAMP)
	$(BIN)/python -m pytest

# nbval over the notebooks up to NB (all when NB is empty), on the fake workspace or BACKEND=local.
BACKEND ?= fake
nbval: $(STAMP)
	LLMOPS_NBVAL_UPTO=$(NB) $(BIN)/python -m pytest tests/notebooks -k $(if $(filter local,$(BACKEND)),local_workspace,fake_databricks)

lint: $(STAMP)
	$(BIN)/lint-imports

stop:
	@test -x $(BIN)/llmops-nb && $(BIN)/llmops-nb workspace stop || true

clean: stop
	rm -rf $(VENV) .llmops mlflow.db mlruns runs
