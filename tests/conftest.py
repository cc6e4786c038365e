"""Shared pytest configuration: the fake workspace and fake provider fixtures, and MLflow's
process-wide URIs restored after every test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["llmops_nb.testing.pytest_plugin"]

URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if "mlflow" in sys.modules:  # the in-process globals behind the variables
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = saved["MLFLOW_TRACKING_URI"]
        registry_utils._registry_uri = saved["MLFLOW_REGISTRY_URI"]


@pytest.fixture(autouse=True)
def _mlflow_uris_restored():
    """``mlflow.set_tracking_uri``/``set_registry_uri`` (called by ``register_model`` and
    ``evaluate_endpoint``, as a notebook wants) also export ``MLFLOW_*_URI``: left behind, a
    test's URI (a stopped tracking server, a deleted SQLite file) reaches every later test's
    subprocesses (``mlflow models prepare-env``, Voila's kernels). Put both back after each test."""
    saved = {k: os.environ.get(k) for k in URI_VARS}
    yield
    _restore(saved)


@pytest.fixture(autouse=True, scope="module")
def _mlflow_uris_restored_per_module():
    """The same around each module (its module-scoped fixtures may register a model)."""
    saved = {k: os.environ.get(k) for k in URI_VARS}
    yield
    _restore(saved)


@pytest.fixture(scope="session")
def other_gguf(tmp_path_factory) -> Path:  # noqa: ANN001
    """A second GGUF: the bundled Q4_1 file requantized to Q4_0 by llama.cpp's quantize API."""
    import llama_cpp

    from llmops_nb.models.gguf import bundled_gguf_path

    out = tmp_path_factory.mktemp("gguf") / "other-llm.Q4_0.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(bundled_gguf_path()).encode(), str(out).encode(), params) == 0
    return out


@pytest.fixture(scope="session")
def tiny_hf_model(tmp_path_factory) -> Path:  # noqa: ANN001
    """A tiny random-weight Llama with a trained BPE tokenizer and a ChatML chat template (a
    real Hugging Face model folder, built offline; torch is imported once, here, per session)."""
    from llmops_nb.testing.tiny_hf import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("hf") / "tiny-llama")
