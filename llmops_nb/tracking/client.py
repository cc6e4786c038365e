"""The one MlflowClient factory: every caller gets the same tracking and registry resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmops_nb.tracking.uris import resolve_uris

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient


def mlflow_client(tracking_uri: str | None = None, registry_uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` of these URIs (see :func:`~llmops_nb.tracking.uris.resolve_uris`)."""
    from mlflow import MlflowClient

    tracking, registry = resolve_uris(tracking_uri, registry_uri)
    return MlflowClient(tracking_uri=tracking, registry_uri=registry)
