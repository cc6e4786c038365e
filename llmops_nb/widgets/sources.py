"""What the form offers to pick from: registered models and versions, foundation model endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient


def registered_models(tracking_uri: str, registry_uri: str, *, limit: int = 100) -> dict[str, list[str]]:
    """``{model name: [versions, newest first]}`` from the MLflow registry ({} if unreachable)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    try:
        models = client.search_registered_models(max_results=limit)
        out = {}
        for model in models:
            versions = client.search_model_versions(f"name = '{model.name}'")
            out[model.name] = sorted((str(v.version) for v in versions), key=int, reverse=True)
        return out
    except Exception:  # noqa: BLE001 - an unreachable or busy registry must not break the form
        return {}


def foundation_endpoints(client: WorkspaceClient) -> list[str]:
    """Names of the workspace's pay-per-token foundation model endpoints."""
    from llmops_nb.endpoints.ops import list_endpoints

    names = []
    for endpoint in list_endpoints(client):
        entities = (endpoint.get("config") or {}).get("served_entities") or []
        if any(e.get("foundation_model") for e in entities):
            names.append(str(endpoint["name"]))
    return sorted(names)
