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


def endpoint_url(w: WorkspaceClient, name: str) -> str:
    """The full invocation URL of an endpoint on this workspace."""
    return f"{(w.config.host or '').rstrip('/')}/serving-endpoints/{name}/invocations"


def state_of(endpoint: dict[str, Any]) -> tuple[str, str]:
    """``(ready, config_update)`` of an endpoint dict."""
    state = endpoint.get("state") or {}
    return str(state.get("ready", "NOT_READY")), str(state.get("config_update", "NOT_UPDATING"))
