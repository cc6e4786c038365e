"""Reads of serving endpoints: get, list, delete, URL and state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient


def get_endpoint(w: WorkspaceClient, name: str) -> dict[str, Any] | None:
    """The endpoint's detailed view as the workspace sent it, or None when it does not exist.

    The JSON is read through the SDK's API client rather than ``serving_endpoints.get``:
    the SDK's dataclasses turn an enum value they do not know (a newer ``workload_type``)
    into None, and the plan must compare what the workspace reports.
    """
    from databricks.sdk.errors import NotFound

    try:
        found = w.api_client.do("GET", f"/api/2.0/serving-endpoints/{name}", headers={"Accept": "application/json"})
    except NotFound:
        return None
    return found if isinstance(found, dict) else {}


def list_endpoints(w: WorkspaceClient) -> list[dict[str, Any]]:
    """Every endpoint of the workspace (summary view)."""
    return [e.as_dict() for e in w.serving_endpoints.list()]


def delete_endpoint(w: WorkspaceClient, name: str) -> None:
    """Delete an endpoint (locally this also stops its scoring servers)."""
    w.serving_endpoints.delete(name)


def endpoint_url(w: WorkspaceClient, name: str, found: dict[str, Any] | None = None) -> str:
    """The full invocation URL of an endpoint: a route-optimized one's data-plane URL (its GET's
    ``endpoint_url``, "Endpoint invocation url if route optimization is enabled for endpoint",
    databricks-sdk-py service/serving.py), else ``<host>/serving-endpoints/<name>/invocations``.
    ``found``: the endpoint's GET JSON when the caller has it (else one GET)."""
    found = found if found is not None else get_endpoint(w, name)
    if found and found.get("route_optimized") and found.get("endpoint_url"):
        return str(found["endpoint_url"])
    return f"{(w.config.host or '').rstrip('/')}/serving-endpoints/{name}/invocations"


def state_of(endpoint: dict[str, Any]) -> tuple[str, str]:
    """``(ready, config_update)`` of an endpoint dict."""
    state = endpoint.get("state") or {}
    return str(state.get("ready", "NOT_READY")), str(state.get("config_update", "NOT_UPDATING"))
