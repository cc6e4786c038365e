"""Shared pytest configuration: the fake workspace and fake provider fixtures, and MLflow's
process-wide URIs restored after every test."""

from __future__ import annotations

import os
import sys

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
